//! `service = "…"` names the gRPC service when tonic's server type is not
//! in scope.
use zt_server::macros::{Declared, EndpointTarget};

mod pb {
    pub trait Ledger {
        fn append(&self) -> u32;
    }
}

struct LedgerService;

#[zt_server::callers("spiffe://example.org/billing", service = "ledger.v1.Ledger")]
impl pb::Ledger for LedgerService {
    fn append(&self) -> u32 {
        1
    }
}

fn main() {
    use pb::Ledger as _;
    assert_eq!(LedgerService.append(), 1);
    let [spec] = <LedgerService as Declared>::ENDPOINTS else {
        panic!("one declaration expected");
    };
    assert_eq!(spec.name(), "LedgerService::append");
    assert_eq!(
        spec.target(),
        EndpointTarget::Grpc { service: "ledger.v1.Ledger", method: "Append" }
    );
}
