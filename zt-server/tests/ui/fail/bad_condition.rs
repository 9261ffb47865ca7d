use zt_server::callers;

#[callers("spiffe://example.org/ns/{ns}/{ns}", http = "GET /a")]
async fn twice() {}

#[callers("spiffe://example.org/ci", http = "GET /b", when = r#"{ ref = { glob = "re*fs" } }"#)]
async fn bad_glob() {}

#[callers("spiffe://example.org/ci", http = "GET /c", when = "ref = 1")]
async fn not_a_table() {}

fn main() {}
