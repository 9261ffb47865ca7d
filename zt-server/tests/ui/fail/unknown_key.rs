use zt_server::callers;

#[callers("spiffe://example.org/billing", path = "/invoices")]
async fn invoices() {}

#[derive(zt_server::Declared)]
enum Api {
    #[endpoint("spiffe://example.org/billing", http = "GET /a", method = "Get")]
    A,
}

fn main() {}
