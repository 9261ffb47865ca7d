//! gRPC over mutual TLS with tonic: a `billing` server that reads the
//! caller's verified SPIFFE ID, and an `orders` client that pins billing's.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example grpc
//! ```
//!
//! Both sides use the fake CA. Against a SPIRE agent, replace each
//! `FakeCaSource` with `WorkloadApiSource::builder().build().await?`, which
//! reads `SPIFFE_ENDPOINT_SOCKET` (for example
//! `unix:///run/spire/agent/public/api.sock`).

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use zt_client::ZtClient;
use zt_core::matcher::IdMatcher;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_examples::billing::billing_client::BillingClient;
use zt_examples::billing::billing_server::{Billing, BillingServer};
use zt_examples::billing::{Invoice, InvoiceRequest};
use zt_server::{PeerExt as _, ZtServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The billing service: the caller comes from the TLS layer, not from the
/// request body.
struct BillingService;

#[tonic::async_trait]
impl Billing for BillingService {
    async fn get_invoice(
        &self,
        request: Request<InvoiceRequest>,
    ) -> Result<Response<Invoice>, Status> {
        let caller = request
            .verified_peer()
            .ok_or_else(|| Status::unauthenticated("no verified peer"))?
            .id()
            .to_string();
        let order_id = request.into_inner().order_id;
        Ok(Response::new(Invoice {
            order_id,
            amount_cents: 4_200,
            caller,
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    zt_examples::init_tracing();
    let ca = FakeCa::new(TrustDomain::new("example.org")?)?;
    let ttl = Duration::from_secs(60);
    let billing_id = SpiffeId::new("spiffe://example.org/billing")?;
    let billing = FakeCaSource::new(ca.clone(), billing_id.clone(), ttl)?;
    let orders = FakeCaSource::new(ca, SpiffeId::new("spiffe://example.org/orders")?, ttl)?;

    // billing: tonic routes served by zt's accept loop.
    let server = ZtServer::builder(billing).build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let routes = tonic::service::Routes::new(BillingServer::new(BillingService));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve(listener, routes, async {
                let _ = stopped.await;
            })
            .await
    });
    println!("billing serves gRPC on {addr}");

    // orders: a tonic channel through zt's connector, pinned to billing.
    let client = ZtClient::builder(orders)
        .pin_server(IdMatcher::exact(billing_id))
        .build()?;
    let channel = client.grpc_channel(&format!("http://{addr}")).await?;
    let invoice = BillingClient::new(channel)
        .get_invoice(InvoiceRequest {
            order_id: "o-17".into(),
        })
        .await?
        .into_inner();
    println!(
        "orders got invoice for {}: {} cents; billing saw the caller as {}",
        invoice.order_id, invoice.amount_cents, invoice.caller
    );

    let _ = stop.send(());
    serving.await??;
    Ok(())
}
