use zt_server::callers;

#[callers("spiffe://example.org/billing", http = "GET /invoices")]
struct Invoices;

#[derive(zt_server::Declared)]
struct NotAnEnum;

struct Service;

#[callers("spiffe://example.org/billing")]
impl Service {
    fn call(&self) {}
}

fn main() {
    let _ = Invoices;
    Service.call();
}
