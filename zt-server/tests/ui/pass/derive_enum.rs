//! `#[derive(Declared)]`: a service's endpoints declared in one place.
use zt_server::Declared;
use zt_server::macros::{Declarations, Declared as _, EndpointTarget};

#[derive(Declared)]
enum LedgerApi {
    #[endpoint(http = "GET /entries/{id}", "spiffe://example.org/billing")]
    GetEntry,
    #[endpoint("spiffe://example.org/ns/*/sa/billing", grpc = "/ledger.Ledger/Append", trust_domain = "partner.example")]
    Append,
    #[endpoint(trust_domain = "example.org", http = "* /health")]
    Health(()),
}

fn main() {
    let specs = LedgerApi::ENDPOINTS;
    assert_eq!(specs.len(), 3);
    assert_eq!(specs[0].name(), "LedgerApi::GetEntry");
    assert_eq!(
        specs[1].target(),
        EndpointTarget::Grpc { service: "ledger.Ledger", method: "Append" }
    );
    assert_eq!(specs[1].trust_domains(), ["partner.example"]);
    assert_eq!(LedgerApi::GetEntry.rule_id(), "code:LedgerApi::GetEntry");
    assert_eq!(LedgerApi::Health(()).rule_id(), "code:LedgerApi::Health");
    let _ = LedgerApi::Append;
    let declarations = Declarations::builder().add::<LedgerApi>().build().unwrap();
    assert_eq!(declarations.rules().count(), 3);
}
