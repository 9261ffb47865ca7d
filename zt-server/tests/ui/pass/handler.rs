//! `#[callers]` on axum handlers: IDs, patterns, a trust domain, a route.
use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use zt_server::callers;
use zt_server::macros::{Declarations, Declared, EndpointTarget};

#[callers(
    "spiffe://example.org/ns/prod/sa/billing",
    "spiffe://example.org/ns/*/sa/audit",
    trust_domain = "partner.example",
    http = "GET /invoices/{id}"
)]
async fn get_invoice(Path(id): Path<u64>) -> String {
    format!("invoice {id}")
}

mod probes {
    /// Reachable from the whole mesh.
    #[zt_server::callers(http = "* /health", trust_domain = "example.org")]
    pub async fn health() -> &'static str {
        "ok"
    }
}
use probes::health;

fn main() {
    // The handlers are untouched and route as usual.
    let _app: Router = Router::new()
        .route("/invoices/{id}", get(get_invoice))
        .route("/health", get(health));

    let [spec] = <get_invoice as Declared>::ENDPOINTS else {
        panic!("one declaration expected");
    };
    assert_eq!(spec.name(), "get_invoice");
    assert_eq!(
        spec.target(),
        EndpointTarget::Http { method: "GET", path: "/invoices/{id}" }
    );
    assert_eq!(
        spec.callers(),
        ["spiffe://example.org/ns/prod/sa/billing", "spiffe://example.org/ns/*/sa/audit"]
    );
    assert_eq!(spec.trust_domains(), ["partner.example"]);
    assert!(spec.location().contains("handler.rs:"), "{}", spec.location());

    let declarations = Declarations::builder()
        .add::<get_invoice>()
        .add::<health>()
        .require_declared(true)
        .build()
        .unwrap();
    let ids: Vec<&str> = declarations.rules().map(|r| r.id()).collect();
    assert_eq!(ids, ["code:get_invoice", "code:health"]);
}
