use zt_server::callers;

#[callers("spiffe://example.org/billing")]
async fn no_route() {}

#[callers("spiffe://example.org/billing", http = "get /invoices")]
async fn lowercase_method() {}

#[callers("spiffe://example.org/billing", http = "GET invoices")]
async fn relative_path() {}

#[callers(http = "GET /nobody")]
async fn nobody() {}

#[derive(zt_server::Declared)]
enum Api {
    #[endpoint("spiffe://example.org/billing", grpc = "ledger.Ledger/Append")]
    Append,
    #[endpoint("spiffe://example.org/billing")]
    Neither,
    Undeclared,
}

fn main() {}
