//! Authorization end to end over mutual TLS on 127.0.0.1: AuthorizeLayer in
//! front of axum and tonic, hot reload, revocation on a live keep-alive
//! connection, dry run, and the audit events each decision emits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};
use tower::{Layer as _, ServiceExt as _};
use zt_authz::Authorizer;
use zt_authz::policy::{Policy, PolicyStore};
use zt_client::ZtClient;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource as _;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_examples::billing::billing_client::BillingClient;
use zt_examples::billing::billing_server::{Billing, BillingServer};
use zt_examples::billing::{Invoice, InvoiceRequest};
use zt_server::{AuthorizeLayer, ZtServer};
use zt_tests::audit_capture::AuditCapture;

mod common;
use common::{Running, field, serve, single};

const TTL: Duration = Duration::from_secs(300);

const POLICY: &str = r#"
version = "e2e-1"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]
grpc = ["/billing.Billing/GetInvoice"]

[[rule]]
id = "workloads-see-admin"
effect = "allow"
callers = ["spiffe://example.org/**"]
http = [{ method = "GET", path = "/admin/**" }]

[[rule]]
id = "no-admin-for-orders"
effect = "deny"
callers = ["spiffe://example.org/orders"]
http = [{ method = "*", path = "/admin/**" }]
"#;

const POLICY_V2: &str = r#"
version = "e2e-2"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]

[[rule]]
id = "invoice-42-is-sealed"
effect = "deny"
http = [{ method = "*", path = "/invoices/42" }]
"#;

const BROKEN: &str = r#"
version = "e2e-broken"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]
colour = "blue"
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn ca() -> FakeCa {
    FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap()
}

fn workload(ca: &FakeCa, name: &str) -> Arc<FakeCaSource> {
    FakeCaSource::new(ca.clone(), id(&format!("spiffe://example.org/{name}")), TTL).unwrap()
}

fn client(ca: &FakeCa, name: &str) -> (Arc<FakeCaSource>, reqwest::Client) {
    let source = workload(ca, name);
    let client = ZtClient::builder(source.clone())
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap();
    (source, client)
}

fn app(authorizer: Authorizer) -> Router {
    Router::new()
        .route(
            "/invoices/{id}",
            get(|Path(n): Path<String>| async move { format!("invoice {n}") }),
        )
        .route("/admin/users", get(|| async { "users" }))
        .route_layer(AuthorizeLayer::new(authorizer))
}

fn authorizer(policy: impl zt_authz::policy::PolicyEngine + 'static) -> Authorizer {
    Authorizer::builder(policy).target("billing").build()
}

async fn billing_server(ca: &FakeCa, authorizer: Authorizer) -> Running {
    let server = ZtServer::builder(workload(ca, "billing")).build().unwrap();
    serve(server, app(authorizer)).await
}

async fn get_text(client: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, String) {
    let response = client
        .get(format!("https://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn axum_routes_are_allowed_denied_and_audited_over_mtls() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let server = billing_server(&ca, authorizer(policy)).await;
    let (orders_source, orders) = client(&ca, "orders");
    let orders_serial = orders_source.current().unwrap().svid().serial_hex();

    // Allowed by the route template.
    assert_eq!(
        get_text(&orders, server.addr, "/invoices/7").await,
        (200, "invoice 7".into())
    );
    let event = single(&audit);
    assert_eq!(field(&event, "level"), "INFO");
    assert_eq!(field(&event, "caller"), "spiffe://example.org/orders");
    assert_eq!(field(&event, "caller_serial"), orders_serial);
    assert_eq!(field(&event, "target_service"), "billing");
    assert_eq!(field(&event, "method"), "GET");
    assert_eq!(field(&event, "path"), "/invoices/7");
    assert_eq!(field(&event, "route"), "/invoices/{id}");
    assert_eq!(field(&event, "grpc_method"), "-");
    assert_eq!(field(&event, "decision"), "allow");
    assert_eq!(field(&event, "reason"), "matched-allow");
    assert_eq!(field(&event, "rule"), "orders-reads-invoices");
    assert_eq!(field(&event, "policy_version"), "e2e-1");
    assert_eq!(field(&event, "audit_rules"), "-");
    // Decisions are not timed unless the authorizer is asked to.
    assert_eq!(field(&event, "eval_ns"), "-");

    // Denied by a deny rule that overrides an allow rule: 403, a fixed
    // body, no rule text.
    let response = orders
        .get(format!("https://{}/admin/users", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{response:?}"
    );
    let body = response.text().await.unwrap();
    assert_eq!(body, r#"{"error":"permission_denied"}"#);
    let event = single(&audit);
    assert_eq!(field(&event, "level"), "WARN");
    assert_eq!(field(&event, "decision"), "deny");
    assert_eq!(field(&event, "reason"), "matched-deny");
    assert_eq!(field(&event, "rule"), "no-admin-for-orders");
    assert_eq!(field(&event, "path"), "/admin/users");

    // Another workload: the allow rule for the admin prefix applies.
    let (_, ledger) = client(&ca, "ledger");
    assert_eq!(
        get_text(&ledger, server.addr, "/admin/users").await,
        (200, "users".into())
    );
    assert_eq!(field(&single(&audit), "rule"), "workloads-see-admin");

    // …but no rule lets it read invoices: default deny.
    assert_eq!(get_text(&ledger, server.addr, "/invoices/7").await.0, 403);
    let event = single(&audit);
    assert_eq!(field(&event, "reason"), "no-matching-rule");
    assert_eq!(field(&event, "rule"), "-");

    // An unknown path stays a 404 and is not a decision.
    assert_eq!(get_text(&orders, server.addr, "/nope").await.0, 404);
    assert!(audit.take().is_empty());
}

#[tokio::test]
async fn around_the_router_the_layer_decides_before_routing_on_the_raw_path() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    // The layer wraps the whole router: no per-route wrapping, and every
    // request is decided, routed or not.
    let service = AuthorizeLayer::new(authorizer(policy)).layer(
        Router::new()
            .route(
                "/invoices/{id}",
                get(|Path(n): Path<String>| async move { format!("invoice {n}") }),
            )
            .route("/admin/users", get(|| async { "users" })),
    );
    let server = serve(
        ZtServer::builder(workload(&ca, "billing")).build().unwrap(),
        service,
    )
    .await;
    let (_, orders) = client(&ca, "orders");
    let (_, ledger) = client(&ca, "ledger");

    // The rule's path pattern matches the raw path; no route is known.
    assert_eq!(
        get_text(&orders, server.addr, "/invoices/7").await,
        (200, "invoice 7".into())
    );
    let event = single(&audit);
    assert_eq!(field(&event, "decision"), "allow");
    assert_eq!(field(&event, "rule"), "orders-reads-invoices");
    assert_eq!(field(&event, "path"), "/invoices/7");
    assert_eq!(field(&event, "route"), "-");

    assert_eq!(get_text(&orders, server.addr, "/admin/users").await.0, 403);
    assert_eq!(field(&single(&audit), "rule"), "no-admin-for-orders");
    assert_eq!(get_text(&ledger, server.addr, "/invoices/7").await.0, 403);
    assert_eq!(field(&single(&audit), "reason"), "no-matching-rule");

    // A path no route serves is decided too: a caller no rule covers
    // there learns nothing of which paths exist (403, not 404)…
    assert_eq!(get_text(&orders, server.addr, "/nope").await.0, 403);
    assert_eq!(field(&single(&audit), "reason"), "no-matching-rule");
    // …and one a rule lets through reaches the router's 404.
    assert_eq!(get_text(&ledger, server.addr, "/admin/nope").await.0, 404);
    assert_eq!(field(&single(&audit), "rule"), "workloads-see-admin");
}

#[tokio::test]
async fn a_request_without_a_verified_peer_is_unauthenticated() {
    let (audit, _guard) = AuditCapture::install();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    // The same router served over plain TCP, with no ZtServer in front.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(authorizer(policy));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            http::Request::get("/invoices/7")
                .header("host", "billing")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"unauthenticated"}"#);
    let event = single(&audit);
    assert_eq!(field(&event, "caller"), "-");
    assert_eq!(field(&event, "decision"), "deny");
    assert_eq!(field(&event, "reason"), "unauthenticated");
    assert_eq!(field(&event, "policy_version"), "e2e-1");
}

struct Svc;

#[tonic::async_trait]
impl Billing for Svc {
    async fn get_invoice(&self, req: Request<InvoiceRequest>) -> Result<Response<Invoice>, Status> {
        Ok(Response::new(Invoice {
            order_id: req.into_inner().order_id,
            amount_cents: 100,
            caller: String::new(),
        }))
    }
}

fn grpc_routes(policy: Policy) -> zt_server::Authorize<tonic::service::Routes> {
    let routes = tonic::service::Routes::new(BillingServer::new(Svc)).prepare();
    AuthorizeLayer::new(authorizer(policy)).layer(routes)
}

async fn grpc_client(
    ca: &FakeCa,
    name: &str,
    addr: SocketAddr,
) -> BillingClient<tonic::transport::Channel> {
    let channel = ZtClient::builder(workload(ca, name))
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .build()
        .unwrap()
        .grpc_channel(&format!("http://{addr}"))
        .await
        .unwrap();
    BillingClient::new(channel)
}

#[tokio::test]
async fn tonic_methods_are_authorized_per_method_over_mtls() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let server = ZtServer::builder(workload(&ca, "billing")).build().unwrap();
    let server = serve(server, grpc_routes(policy)).await;

    let mut orders = grpc_client(&ca, "orders", server.addr).await;
    let invoice = orders
        .get_invoice(InvoiceRequest {
            order_id: "o-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invoice.order_id, "o-1");
    let event = single(&audit);
    assert_eq!(field(&event, "decision"), "allow");
    assert_eq!(field(&event, "method"), "POST");
    assert_eq!(field(&event, "grpc_method"), "/billing.Billing/GetInvoice");
    assert_eq!(field(&event, "path"), "/billing.Billing/GetInvoice");
    assert_eq!(field(&event, "rule"), "orders-reads-invoices");

    let mut ledger = grpc_client(&ca, "ledger", server.addr).await;
    let status = ledger
        .get_invoice(InvoiceRequest {
            order_id: "o-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(status.message(), "permission denied");
    let event = single(&audit);
    assert_eq!(field(&event, "caller"), "spiffe://example.org/ledger");
    assert_eq!(field(&event, "decision"), "deny");
    assert_eq!(field(&event, "reason"), "no-matching-rule");
    assert_eq!(field(&event, "grpc_method"), "/billing.Billing/GetInvoice");
}

#[tokio::test]
async fn a_grpc_call_without_a_verified_peer_is_unauthenticated() {
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let request = http::Request::post("/billing.Billing/GetInvoice")
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::empty())
        .unwrap();
    let response = grpc_routes(policy).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(response.headers()["content-type"], "application/grpc");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

/// One HTTP/1.1 connection over mutual TLS, for requests that must share it.
async fn keep_alive(
    source: Arc<FakeCaSource>,
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    keep_alive_task(source, addr).await.0
}

/// As [`keep_alive`], with the task driving the connection.
async fn keep_alive_task(
    source: Arc<FakeCaSource>,
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tls = ZtClient::builder(source)
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .build()
        .unwrap()
        .connect(addr)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    (sender, tokio::spawn(conn))
}

async fn status_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> u16 {
    sender.ready().await.unwrap();
    let response = sender
        .send_request(
            http::Request::get(path)
                .header("host", "billing")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn revocation_in_the_authorizer_refuses_the_next_request_on_an_open_connection() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let revocations = Revocations::new();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let authz = Authorizer::builder(policy)
        .target("billing")
        .revocations(revocations.clone())
        .build();
    // The list is the authorizer's only: the TLS layer does not know it,
    // so the connection stays open and each request is judged.
    let server = ZtServer::builder(workload(&ca, "billing")).build().unwrap();
    let server = serve(server, app(authz)).await;
    let orders = workload(&ca, "orders");

    let mut conn = keep_alive(orders.clone(), server.addr).await;
    assert_eq!(status_on(&mut conn, "/invoices/1").await, 200);

    revocations.revoke_id(id("spiffe://example.org/orders"));
    assert_eq!(status_on(&mut conn, "/invoices/2").await, 403);
    assert!(!conn.is_closed(), "the same connection answered");
    let events = audit.take();
    assert_eq!(events.len(), 2);
    assert_eq!(field(&events[1], "reason"), "revoked");
    assert_eq!(field(&events[1], "rule"), "-");

    // Reinstated, then one certificate revoked by serial: a rotation to a
    // new certificate is accepted again.
    revocations.reinstate_id(&id("spiffe://example.org/orders"));
    assert_eq!(status_on(&mut conn, "/invoices/4").await, 200);
    let serial = orders.current().unwrap().svid().serial().to_vec();
    revocations.revoke_serial(&serial);
    assert_eq!(status_on(&mut conn, "/invoices/5").await, 403);
    orders.rotate_now().unwrap();
    let mut rotated = keep_alive(orders.clone(), server.addr).await;
    assert_eq!(status_on(&mut rotated, "/invoices/6").await, 200);
    assert_eq!(
        status_on(&mut conn, "/invoices/7").await,
        403,
        "old certificate"
    );
}

#[tokio::test]
async fn revocation_in_the_server_ends_open_connections_and_refuses_new_handshakes() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let revocations = Revocations::new();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let authz = Authorizer::builder(policy)
        .target("billing")
        .revocations(revocations.clone())
        .build();
    let server = ZtServer::builder(workload(&ca, "billing"))
        .revocations(revocations.clone())
        .build()
        .unwrap();
    let server = serve(server, app(authz)).await;
    let orders = workload(&ca, "orders");

    let (mut conn, task) = keep_alive_task(orders.clone(), server.addr).await;
    assert_eq!(status_on(&mut conn, "/invoices/1").await, 200);

    // Revoked while the connection is open: the server closes it.
    revocations.revoke_id(id("spiffe://example.org/orders"));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the connection was not closed")
        .unwrap()
        .unwrap();
    assert!(conn.is_closed());
    let ended = audit.connection_events();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(field(&ended[0], "reason"), "revoked");
    assert_eq!(field(&ended[0], "peer"), "spiffe://example.org/orders");

    // A new connection is refused at the handshake.
    let (_, fresh) = client(&ca, "orders");
    let refused = fresh
        .get(format!("https://{}/invoices/3", server.addr))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // Reinstated: connections are accepted again.
    revocations.reinstate_id(&id("spiffe://example.org/orders"));
    let mut again = keep_alive(orders.clone(), server.addr).await;
    assert_eq!(status_on(&mut again, "/invoices/4").await, 200);
}

#[tokio::test]
async fn hot_reload_changes_decisions_and_a_bad_file_keeps_the_running_policy() {
    let (audit, _guard) = AuditCapture::install();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let store = PolicyStore::from_file(&path).unwrap();
    let ca = ca();
    let server = billing_server(&ca, authorizer(store.clone())).await;
    let (_, orders) = client(&ca, "orders");

    assert_eq!(get_text(&orders, server.addr, "/invoices/42").await.0, 200);
    assert_eq!(field(&single(&audit), "policy_version"), "e2e-1");

    // A broken file (unknown field) is rejected with its line and rule;
    // the running policy stays.
    std::fs::write(&path, BROKEN).unwrap();
    let err = store.reload().unwrap_err();
    assert_eq!(err.line(), Some(9), "{err}");
    assert_eq!(err.rule_id(), Some("orders-reads-invoices"), "{err}");
    assert!(err.to_string().contains("colour"), "{err}");
    assert_eq!(store.last_error(), Some(err));
    assert_eq!(get_text(&orders, server.addr, "/invoices/42").await.0, 200);
    assert_eq!(field(&single(&audit), "policy_version"), "e2e-1");

    // A good file is swapped in; the same client's next request is decided
    // by it.
    std::fs::write(&path, POLICY_V2).unwrap();
    store.reload().unwrap();
    assert_eq!(get_text(&orders, server.addr, "/invoices/42").await.0, 403);
    let event = single(&audit);
    assert_eq!(field(&event, "policy_version"), "e2e-2");
    assert_eq!(field(&event, "rule"), "invoice-42-is-sealed");
    assert_eq!(get_text(&orders, server.addr, "/invoices/41").await.0, 200);
}

#[tokio::test]
async fn dry_run_lets_denied_requests_through_and_audits_them_as_would_deny() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let authz = Authorizer::builder(policy)
        .target("billing")
        .dry_run(true)
        .build();
    let server = billing_server(&ca, authz).await;
    let (_, ledger) = client(&ca, "ledger");
    assert_eq!(
        get_text(&ledger, server.addr, "/invoices/9").await,
        (200, "invoice 9".into())
    );
    let event = single(&audit);
    assert_eq!(field(&event, "decision"), "would-deny");
    assert_eq!(field(&event, "reason"), "no-matching-rule");
    assert_eq!(field(&event, "level"), "WARN");
}

async fn status_with_token(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
    token: &str,
) -> u16 {
    sender.ready().await.unwrap();
    let response = sender
        .send_request(
            http::Request::get(path)
                .header("host", "billing")
                .header("authorization", format!("Bearer {token}"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn a_revoked_peer_gets_nothing_through_with_another_workloads_jwt_svid() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let revocations = Revocations::new();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let authz = Authorizer::builder(policy)
        .target("billing")
        .revocations(revocations.clone())
        .build();
    let billing = workload(&ca, "billing");
    // Unbound on purpose (a gateway setting): the peer may carry a token
    // whose subject is another workload. The JWT layer has no revocation
    // list, so the AuthorizeLayer alone must refuse the revoked peer.
    let app = app(authz).layer(
        zt_server::JwtAuthLayer::builder(billing.clone(), "spiffe://example.org/billing")
            .bind_to_peer(false)
            .build(),
    );
    let server = serve(ZtServer::builder(billing).build().unwrap(), app).await;
    let orders_token = ca
        .issue_jwt_svid(
            &id("spiffe://example.org/orders"),
            &["spiffe://example.org/billing"],
            TTL,
        )
        .unwrap();
    let mallory = workload(&ca, "mallory");
    let mut conn = keep_alive(mallory.clone(), server.addr).await;
    assert_eq!(
        status_with_token(&mut conn, "/invoices/1", orders_token.token()).await,
        200
    );

    // The peer is revoked by ID while its connection is open.
    revocations.revoke_id(id("spiffe://example.org/mallory"));
    assert_eq!(
        status_with_token(&mut conn, "/invoices/2", orders_token.token()).await,
        403
    );
    let events = audit.take();
    assert_eq!(field(&events[events.len() - 1], "reason"), "revoked");

    // …and by the serial of its certificate.
    revocations.reinstate_id(&id("spiffe://example.org/mallory"));
    assert_eq!(
        status_with_token(&mut conn, "/invoices/3", orders_token.token()).await,
        200
    );
    let serial = mallory.current().unwrap().svid().serial().to_vec();
    revocations.revoke_serial(&serial);
    assert_eq!(
        status_with_token(&mut conn, "/invoices/4", orders_token.token()).await,
        403
    );
    assert!(!conn.is_closed(), "the same connection answered");
}

#[tokio::test]
async fn an_expired_peer_on_an_open_connection_is_refused_at_its_next_request() {
    let (audit, _guard) = AuditCapture::install();
    let ca = ca();
    let clock = zt_core::time::ManualClock::starting_now();
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let authz = Authorizer::builder(policy)
        .target("billing")
        .clock(Arc::new(clock.clone()))
        .build();
    let server = billing_server(&ca, authz).await;
    let orders = workload(&ca, "orders");
    let mut conn = keep_alive(orders.clone(), server.addr).await;
    assert_eq!(status_on(&mut conn, "/invoices/1").await, 200);

    // The connection outlives the peer's certificate.
    clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(status_on(&mut conn, "/invoices/2").await, 403);
    let events = audit.take();
    assert_eq!(field(&events[events.len() - 1], "reason"), "expired");
}

#[tokio::test]
async fn the_server_ends_a_connection_before_its_peers_certificate_expires() {
    let ca = ca();
    let server = billing_server(
        &ca,
        authorizer(Policy::from_toml_str(POLICY, "policy.toml").unwrap()),
    )
    .await;
    let orders = FakeCaSource::new(
        ca.clone(),
        id("spiffe://example.org/orders"),
        Duration::from_secs(2),
    )
    .unwrap();
    let expires = orders.current().unwrap().svid().not_after();
    let mut conn = keep_alive(orders, server.addr).await;
    assert_eq!(status_on(&mut conn, "/invoices/1").await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !conn.is_closed() {
        assert!(
            std::time::Instant::now() < deadline,
            "still open after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        std::time::SystemTime::now() < expires,
        "closed only after the certificate expired"
    );
}
