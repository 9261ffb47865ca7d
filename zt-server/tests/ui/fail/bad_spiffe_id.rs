use zt_server::callers;

#[callers("spiffe://Example.org/billing", http = "GET /invoices")]
async fn invoices() -> &'static str {
    "invoices"
}

fn main() {
    // The handler is still emitted: only the declaration is in error.
    let _ = invoices();
}
