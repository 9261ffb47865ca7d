//! No connection outlives the trust it was opened on, end to end: a zt
//! server and its callers, each with its own source, over real sockets.
//!
//! - a server-streaming gRPC call from a caller revoked mid-stream ends with
//!   `PERMISSION_DENIED` within a second, and the server stops producing;
//! - a keep-alive HTTP/2 connection is closed when its caller's SVID
//!   expires (a short-lived SVID, not rotated);
//! - a root removed from the bundle ends the connections chained to it,
//!   while connections chained to the new root carry on;
//! - the client side ends its stream when the server is revoked;
//! - every end is in the audit log with the peer, serial, reason and age.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use zt_client::{TrustEnded, ZtClient};
use zt_core::SpiffeId;
use zt_core::revocation::Revocations;
use zt_dev::{FakeCa, FakeCaSource};
use zt_examples::billing::invoice_feed_client::InvoiceFeedClient;
use zt_examples::billing::invoice_feed_server::{InvoiceFeed, InvoiceFeedServer};
use zt_examples::billing::{Invoice, InvoiceRequest};
use zt_server::ZtServer;
use zt_tests::audit_capture::{AuditCapture, Fields};

use common::{field, serve};

const TTL: Duration = Duration::from_secs(300);
/// Bound on waiting for an event that must happen.
const WAIT: Duration = Duration::from_secs(10);

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn ca() -> FakeCa {
    FakeCa::new("example.org".parse().unwrap()).unwrap()
}

fn source(ca: &FakeCa, path: &str, ttl: Duration) -> Arc<FakeCaSource> {
    FakeCaSource::new(ca.clone(), id(&format!("spiffe://example.org/{path}")), ttl).unwrap()
}

fn client(source: Arc<FakeCaSource>) -> ZtClient {
    ZtClient::builder(source)
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .build()
        .unwrap()
}

/// A feed that sends an invoice every 20 ms until its stream is dropped,
/// then reports on `stopped`.
struct Feed {
    stopped: mpsc::UnboundedSender<()>,
}

#[tonic::async_trait]
impl InvoiceFeed for Feed {
    type FollowStream = ReceiverStream<Result<Invoice, Status>>;

    async fn follow(
        &self,
        request: Request<InvoiceRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let order_id = request.into_inner().order_id;
        let (tx, rx) = mpsc::channel(1);
        let stopped = self.stopped.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0u64.. {
                tick.tick().await;
                let invoice = Invoice {
                    order_id: order_id.clone(),
                    amount_cents: n,
                    caller: String::new(),
                };
                if tx.send(Ok(invoice)).await.is_err() {
                    break;
                }
            }
            let _ = stopped.send(());
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn ended_events(audit: &AuditCapture, peer: &str) -> Vec<Fields> {
    audit
        .connection_events()
        .into_iter()
        .filter(|e| field(e, "event") == "connection-ended" && field(e, "peer") == peer)
        .collect()
}

#[tokio::test]
async fn a_stream_of_a_caller_revoked_mid_stream_ends_within_a_second() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let revocations = Revocations::new();
    let server = ZtServer::builder(source(&ca, "billing", TTL))
        .revocations(revocations.clone())
        .build()
        .unwrap();
    let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
    let routes = tonic::service::Routes::new(InvoiceFeedServer::new(Feed {
        stopped: stopped_tx,
    }));
    let running = serve(server.clone(), routes).await;

    // Two callers, each with its own source; only one is revoked.
    let orders = source(&ca, "orders", TTL);
    let orders_serial = {
        use zt_core::source::SvidSource as _;
        orders.current().unwrap().svid().serial_hex()
    };
    let channel = client(orders.clone())
        .grpc_channel(&format!("http://{}", running.addr))
        .await
        .unwrap();
    let payments_channel = client(source(&ca, "payments", TTL))
        .grpc_channel(&format!("http://{}", running.addr))
        .await
        .unwrap();
    let mut stream = InvoiceFeedClient::new(channel)
        .follow(InvoiceRequest {
            order_id: "o-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut other = InvoiceFeedClient::new(payments_channel)
        .follow(InvoiceRequest {
            order_id: "o-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        stream.message().await.unwrap().unwrap();
        other.message().await.unwrap().unwrap();
    }
    assert_eq!(server.trust_monitor().open_connections(), 2);

    revocations.revoke_id(id("spiffe://example.org/orders"));
    let revoked_at = Instant::now();
    let status = loop {
        match tokio::time::timeout(WAIT, stream.message()).await.unwrap() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    let took = revoked_at.elapsed();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        took < Duration::from_secs(1),
        "the stream ran on for {took:?}"
    );
    // Nothing of the reason reaches the caller.
    assert!(!status.message().contains("revoked"), "{status:?}");

    // The server stopped producing for it.
    tokio::time::timeout(WAIT, stopped.recv()).await.unwrap();

    // The other caller's stream carries on.
    for _ in 0..3 {
        other.message().await.unwrap().unwrap();
    }

    let events = ended_events(&audit, "spiffe://example.org/orders");
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(field(event, "reason"), "revoked");
    assert_eq!(field(event, "side"), "server");
    assert_eq!(field(event, "serial"), orders_serial);
    assert!(field(event, "lived_ms").parse::<u64>().is_ok(), "{event:?}");
    assert!(ended_events(&audit, "spiffe://example.org/payments").is_empty());
}

async fn h2_connection(
    client: &ZtClient,
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = client.connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

async fn get_on(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
) -> Result<u16, hyper::Error> {
    sender.ready().await?;
    let response = sender
        .send_request(
            http::Request::get("https://billing/")
                .body(Empty::new())
                .unwrap(),
        )
        .await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// One request on a new connection; any failure on the way is an error.
async fn fresh_get(client: &ZtClient, addr: SocketAddr) -> Result<u16, String> {
    let stream = client.connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    get_on(&mut sender).await.map_err(|e| e.to_string())
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_when_its_callers_svid_expires() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let server = ZtServer::builder(source(&ca, "billing", TTL))
        .build()
        .unwrap();
    let running = serve(server, hello()).await;

    // The caller's SVID lives 4 s and is not renewed: the server gives the
    // connection half of that, then closes it gracefully.
    let batch = client(source(&ca, "batch", Duration::from_secs(4)));
    let opened = Instant::now();
    let (mut sender, conn) = h2_connection(&batch, running.addr).await;
    assert_eq!(get_on(&mut sender).await.unwrap(), 200);

    let closed = tokio::time::timeout(WAIT, conn).await.unwrap().unwrap();
    let lived = opened.elapsed();
    assert!(closed.is_ok(), "{closed:?}");
    assert!(
        lived > Duration::from_millis(1500) && lived < Duration::from_secs(4),
        "closed after {lived:?}"
    );
    assert!(get_on(&mut sender).await.is_err());

    let events = ended_events(&audit, "spiffe://example.org/batch");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "reason"), "expired");
}

#[tokio::test]
async fn a_root_removed_from_the_bundle_ends_only_the_connections_chained_to_it() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let billing = source(&ca, "billing", TTL);
    let server = ZtServer::builder(billing.clone()).build().unwrap();
    let running = serve(server, hello()).await;

    // `orders` holds an SVID of the first root.
    let orders = client(source(&ca, "orders", TTL));
    let (mut old_root, old_conn) = h2_connection(&orders, running.addr).await;
    assert_eq!(get_on(&mut old_root).await.unwrap(), 200);

    // The CA rotates; both roots are trusted while they overlap, and
    // `payments` gets an SVID of the new one.
    ca.rotate().unwrap();
    billing.refresh_bundles().unwrap();
    let payments = client(source(&ca, "payments", TTL));
    let (mut new_root, new_conn) = h2_connection(&payments, running.addr).await;
    assert_eq!(get_on(&mut new_root).await.unwrap(), 200);
    assert_eq!(get_on(&mut old_root).await.unwrap(), 200);

    // The old root is removed from the server's bundle.
    ca.end_rotation_overlap();
    billing.refresh_bundles().unwrap();
    tokio::time::timeout(WAIT, old_conn)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(get_on(&mut old_root).await.is_err());

    // The connection chained to the new root carries on.
    assert_eq!(get_on(&mut new_root).await.unwrap(), 200);
    assert!(!new_conn.is_finished());

    let events = ended_events(&audit, "spiffe://example.org/orders");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "reason"), "bundle");
    assert!(
        field(&events[0], "detail").contains("signature")
            || field(&events[0], "detail").contains("issuer")
            || field(&events[0], "detail").contains("trust"),
        "{:?}",
        events[0]
    );
    assert!(ended_events(&audit, "spiffe://example.org/payments").is_empty());
}

#[tokio::test]
async fn a_client_ends_its_stream_when_the_server_is_revoked() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let server = ZtServer::builder(source(&ca, "billing", TTL))
        .build()
        .unwrap();
    let running = serve(server, hello()).await;

    let revocations = Revocations::new();
    let orders = ZtClient::builder(source(&ca, "orders", TTL))
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .revocations(revocations.clone())
        .build()
        .unwrap();
    let stream = orders.connect(running.addr).await.unwrap();
    let signal = stream.signal();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    assert_eq!(get_on(&mut sender).await.unwrap(), 200);

    revocations.revoke_id(id("spiffe://example.org/billing"));
    let ended = tokio::time::timeout(WAIT, conn).await.unwrap().unwrap();
    let error = ended.expect_err("the connection must fail, not close cleanly");
    // hyper reports the stream's error by its message...
    let chain = zt_tests::error_chain(&error);
    assert!(chain.contains("no longer trusted: revoked"), "{chain}");
    // ...and the signal kept from the stream gives the reason itself.
    let trust: &TrustEnded = signal.reason().expect("the connection ended");
    assert_eq!(trust.reason(), zt_client::EndReason::Revoked);
    assert_eq!(trust.peer().to_string(), "spiffe://example.org/billing");
    assert_eq!(orders.trust_monitor().open_connections(), 0);

    let events = ended_events(&audit, "spiffe://example.org/billing");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "side"), "client");
}

#[tokio::test]
async fn replacing_the_accepted_callers_ends_the_connections_they_exclude() {
    let ca = ca();
    let server = ZtServer::builder(source(&ca, "billing", TTL))
        .accept_callers("spiffe://example.org/*".parse().unwrap())
        .build()
        .unwrap();
    let running = serve(server.clone(), hello()).await;
    let (mut orders, orders_conn) =
        h2_connection(&client(source(&ca, "orders", TTL)), running.addr).await;
    let (mut payments, _payments_conn) =
        h2_connection(&client(source(&ca, "payments", TTL)), running.addr).await;
    assert_eq!(get_on(&mut orders).await.unwrap(), 200);
    assert_eq!(get_on(&mut payments).await.unwrap(), 200);

    server.replace_accepted_callers(Some("spiffe://example.org/payments".parse().unwrap()));
    tokio::time::timeout(WAIT, orders_conn)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(get_on(&mut payments).await.unwrap(), 200);
    // And a new connection of the excluded caller is refused (TLS 1.3: the
    // client learns it at the handshake or at its first read).
    let again = client(source(&ca, "orders", TTL));
    assert!(fresh_get(&again, running.addr).await.is_err());
}

#[tokio::test]
async fn a_pooled_client_drops_its_connection_to_a_revoked_server() {
    let ca = ca();
    let server = ZtServer::builder(source(&ca, "billing", TTL))
        .build()
        .unwrap();
    let running = serve(server, hello()).await;

    let revocations = Revocations::new();
    let orders = ZtClient::builder(source(&ca, "orders", TTL))
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .revocations(revocations.clone())
        .build()
        .unwrap();
    let http = orders.http_client::<Empty<Bytes>>();
    let url: http::Uri = format!("https://{}/", running.addr).parse().unwrap();
    for _ in 0..3 {
        let response = http.get(url.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }
    // The three requests shared one pooled connection.
    assert_eq!(orders.trust_monitor().open_connections(), 1);

    revocations.revoke_id(id("spiffe://example.org/billing"));
    // The pooled connection fails and leaves the pool (polled with a
    // deadline: the connection task runs on its own).
    let deadline = Instant::now() + WAIT;
    while orders.trust_monitor().open_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "the pooled connection stayed open"
        );
        tokio::task::yield_now().await;
    }
    // The next request dials again, and the handshake refuses the server.
    let refused = http.get(url).await.unwrap_err();
    let chain = zt_tests::error_chain(&refused);
    assert!(chain.contains("revoked"), "{chain}");
}
