//! gRPC over mutual TLS: tonic server behind zt-server, tonic channel
//! through zt-client's connector.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use zt_client::{PeerRejected, ZtClient};
use zt_core::matcher::IdMatcher;
use zt_core::peer::PeerError;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_examples::billing::billing_client::BillingClient;
use zt_examples::billing::billing_server::{Billing, BillingServer};
use zt_examples::billing::{Invoice, InvoiceRequest};
use zt_server::{PeerExt as _, ZtServer};

struct Svc;

#[tonic::async_trait]
impl Billing for Svc {
    async fn get_invoice(&self, req: Request<InvoiceRequest>) -> Result<Response<Invoice>, Status> {
        let peer = req
            .verified_peer()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no peer"))?;
        Ok(Response::new(Invoice {
            order_id: req.into_inner().order_id,
            amount_cents: 1,
            caller: format!("{} {}", peer.id(), peer.serial_hex()),
        }))
    }
}

const TTL: Duration = Duration::from_secs(300);

async fn start(ca: &FakeCa) -> (SocketAddr, oneshot::Sender<()>) {
    let billing = FakeCaSource::new(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/billing").unwrap(),
        TTL,
    )
    .unwrap();
    let server = ZtServer::builder(billing).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let routes = tonic::service::Routes::new(BillingServer::new(Svc));
    tokio::spawn(async move {
        server
            .serve(listener, routes, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (addr, tx)
}

#[tokio::test]
async fn tonic_call_carries_the_verified_caller_to_the_handler() {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let (addr, _stop) = start(&ca).await;
    let orders = FakeCaSource::new(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/orders").unwrap(),
        TTL,
    )
    .unwrap();
    let serial = orders.current_serial();
    let client = ZtClient::builder(orders)
        .pin_server("spiffe://example.org/billing".parse::<IdMatcher>().unwrap())
        .build()
        .unwrap();
    let channel = client
        .grpc_channel(&format!("http://{addr}"))
        .await
        .unwrap();
    let mut grpc = BillingClient::new(channel);
    for n in 0..3 {
        let invoice = grpc
            .get_invoice(InvoiceRequest {
                order_id: format!("o-{n}"),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(invoice.order_id, format!("o-{n}"));
        assert_eq!(
            invoice.caller,
            format!("spiffe://example.org/orders {serial}")
        );
    }
}

#[tokio::test]
async fn tonic_channel_refuses_a_server_outside_the_pin() {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let (addr, _stop) = start(&ca).await;
    let orders = FakeCaSource::new(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/orders").unwrap(),
        TTL,
    )
    .unwrap();
    let client = ZtClient::builder(orders)
        .pin_server("spiffe://example.org/ledger".parse::<IdMatcher>().unwrap())
        .build()
        .unwrap();
    let err = client
        .grpc_channel(&format!("http://{addr}"))
        .await
        .unwrap_err();
    let text = zt_tests::error_chain(&err);
    assert!(text.contains("spiffe://example.org/billing"), "{text}");
    assert!(text.contains("spiffe://example.org/ledger"), "{text}");
    let refusal = PeerRejected::find(&err).expect("the typed refusal in the channel error");
    assert!(
        matches!(refusal.error(), PeerError::NotAccepted { presented, .. } if presented.path() == "/billing"),
        "{refusal}"
    );

    // A lazily connected channel fails the call instead: the refusal is in
    // the tonic::Status too.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let channel = endpoint.connect_with_connector_lazy(client.grpc_connector());
    let status = BillingClient::new(channel)
        .get_invoice(InvoiceRequest {
            order_id: "o-1".into(),
        })
        .await
        .unwrap_err();
    let refusal = PeerRejected::find(&status).expect("the typed refusal in the tonic::Status");
    assert!(
        matches!(refusal.error(), PeerError::NotAccepted { expected, .. } if expected.contains("/ledger")),
        "{refusal}"
    );
}

trait Serial {
    fn current_serial(&self) -> String;
}

impl Serial for std::sync::Arc<FakeCaSource> {
    fn current_serial(&self) -> String {
        use zt_core::source::SvidSource as _;
        self.current().unwrap().svid().serial_hex()
    }
}
