use zt_server::callers;

#[callers("spiffe://example.org/ns/prod*", http = "GET /invoices")]
async fn invoices() {}

#[callers("spiffe://example.org/**/sa", http = "GET /other")]
async fn other() {}

fn main() {}
