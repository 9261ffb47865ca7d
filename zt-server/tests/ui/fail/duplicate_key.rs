use zt_server::callers;

#[callers(trust_domain = "example.org", trust_domain = "partner.example", http = "GET /a")]
async fn a() {}

fn main() {}
