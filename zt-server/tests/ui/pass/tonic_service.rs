//! `#[callers]` on a tonic service implementation: service-wide callers,
//! per-method callers, a renamed method and an undeclared one.
use tonic::{Request, Response, Status};
use zt_server::callers;
use zt_server::macros::{Declarations, Declared, EndpointTarget};

/// What tonic-build generates for `service Billing` in package `billing`.
mod billing_server {
    #[tonic::async_trait]
    pub trait Billing: Send + Sync + 'static {
        async fn get_invoice(&self, request: tonic::Request<()>) -> Result<tonic::Response<()>, tonic::Status>;
        async fn list_invoices(&self, request: tonic::Request<()>) -> Result<tonic::Response<()>, tonic::Status>;
        async fn export_csv(&self, request: tonic::Request<()>) -> Result<tonic::Response<()>, tonic::Status>;
    }
    pub struct BillingServer<T>(pub T);
    impl<T> tonic::server::NamedService for BillingServer<T> {
        const NAME: &'static str = "billing.Billing";
    }
}
use billing_server::{Billing, BillingServer};

struct BillingService;

#[callers(trust_domain = "example.org")]
#[tonic::async_trait]
impl Billing for BillingService {
    #[callers("spiffe://example.org/orders")]
    async fn get_invoice(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn list_invoices(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    #[zt_server::callers("spiffe://example.org/reports", method = "ExportCSV")]
    async fn export_csv(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
}

/// A service with one method left undeclared.
struct Partial;

#[callers]
#[tonic::async_trait]
impl Billing for Partial {
    #[callers("spiffe://example.org/orders")]
    async fn get_invoice(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
    async fn list_invoices(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
    #[callers("spiffe://example.org/reports", method = "ExportCSV")]
    async fn export_csv(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
}

fn main() {
    let _server = BillingServer(BillingService);
    let specs = <BillingService as Declared>::ENDPOINTS;
    let names: Vec<_> = specs.iter().map(|s| (s.name(), s.target(), s.callers(), s.trust_domains())).collect();
    assert_eq!(
        names,
        [
            (
                "BillingService::get_invoice",
                EndpointTarget::Grpc { service: "billing.Billing", method: "GetInvoice" },
                &["spiffe://example.org/orders"][..],
                &[][..],
            ),
            (
                "BillingService::list_invoices",
                EndpointTarget::Grpc { service: "billing.Billing", method: "ListInvoices" },
                &[][..],
                &["example.org"][..],
            ),
            (
                "BillingService::export_csv",
                EndpointTarget::Grpc { service: "billing.Billing", method: "ExportCSV" },
                &["spiffe://example.org/reports"][..],
                &[][..],
            ),
        ]
    );
    assert!(specs.iter().all(|s| s.is_declared()));

    let partial = Declarations::builder().add::<Partial>().build().unwrap();
    assert_eq!(partial.undeclared().len(), 1);
    assert_eq!(partial.undeclared()[0].name(), "Partial::list_invoices");
    let err = Declarations::builder()
        .add::<Partial>()
        .require_declared(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("Partial::list_invoices"), "{err}");
}
