//! JWT-SVIDs and delegated user context end to end over mutual TLS on
//! 127.0.0.1: orders → billing → ledger, each hop carrying a JWT-SVID for
//! the next one's audience and a user context that names it as the current
//! actor. Ledger's policy requires a scope of the user; the audit shows the
//! user and the chain.

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
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::oneshot;
use zt_authz::Authorizer;
use zt_authz::policy::Policy;
use zt_client::{JwtSvids, ZtClient};
use zt_core::SpiffeId;
use zt_core::TrustDomain;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource as _;
use zt_core::user::{ActorExchange as _, USER_CONTEXT_HEADER};
use zt_dev::{DevUserIssuer, FakeCa, FakeCaSource};
use zt_tests::audit_capture::{AuditCapture, Fields};
mod common;
use common::field;
use zt_server::{AuthorizeLayer, JwtAuthLayer, VerifiedUser, ZtServer};

const ORDERS: &str = "spiffe://example.org/orders";
const BILLING: &str = "spiffe://example.org/billing";
const LEDGER: &str = "spiffe://example.org/ledger";
const TTL: Duration = Duration::from_secs(300);

const BILLING_POLICY: &str = r#"
version = "billing-1"

[[rule]]
id = "orders-reads-invoices-for-users"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }, { method = "GET", path = "/unexchanged/{id}" }]
scopes = ["invoices:read"]
"#;

const LEDGER_POLICY: &str = r#"
version = "ledger-1"

[[rule]]
id = "billing-reads-entries-for-users"
effect = "allow"
callers = ["spiffe://example.org/billing"]
http = [{ method = "GET", path = "/entries/{id}" }]
scopes = ["ledger:read"]
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

struct Mesh {
    ca: FakeCa,
    issuer: DevUserIssuer,
    billing: SocketAddr,
    ledger: SocketAddr,
    /// Ledger's revocation list (JWT subjects and callers).
    revocations: Revocations,
    _stop: Vec<oneshot::Sender<()>>,
}

fn workload(ca: &FakeCa, spiffe_id: &str) -> Arc<FakeCaSource> {
    FakeCaSource::new(ca.clone(), id(spiffe_id), TTL).unwrap()
}

fn http_client(source: Arc<FakeCaSource>, server: &str) -> reqwest::Client {
    ZtClient::builder(source)
        .pin_server(server.parse().unwrap())
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap()
}

async fn serve(server: ZtServer, app: Router) -> (SocketAddr, oneshot::Sender<()>) {
    common::serve(server, app).await.into_parts()
}

/// What billing needs to call ledger for a user.
struct Billing {
    me: SpiffeId,
    issuer: DevUserIssuer,
    ledger: reqwest::Client,
    tokens: JwtSvids,
    ledger_addr: SocketAddr,
}

impl Billing {
    async fn call_ledger(&self, n: &str, user_token: &str) -> (StatusCode, String) {
        let response = self
            .tokens
            .send(
                self.ledger
                    .get(format!("https://{}/entries/{n}", self.ledger_addr))
                    .header(USER_CONTEXT_HEADER, user_token),
                LEDGER,
            )
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.text().await.unwrap())
    }
}

/// Exchanges the user context for one naming billing, then calls ledger.
async fn invoice(
    State(billing): State<Arc<Billing>>,
    user: VerifiedUser,
    Path(n): Path<String>,
) -> (StatusCode, String) {
    let token = billing
        .issuer
        .exchange(&user, &billing.me, None)
        .await
        .unwrap();
    billing.call_ledger(&n, &token).await
}

/// Forwards the user context as received: ledger must refuse it.
async fn unexchanged(
    State(billing): State<Arc<Billing>>,
    user: VerifiedUser,
    Path(n): Path<String>,
) -> (StatusCode, String) {
    billing.call_ledger(&n, user.token()).await
}

async fn entry(user: VerifiedUser, Path(n): Path<String>) -> String {
    let chain: Vec<String> = user.actors().iter().map(ToString::to_string).collect();
    format!("entry {n} for {} via {}", user.subject(), chain.join(" > "))
}

async fn mesh() -> Mesh {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let issuer = DevUserIssuer::new("https://idp.example.org", "example.org").unwrap();

    // ledger
    let revocations = Revocations::new();
    let ledger_source = workload(&ca, LEDGER);
    let ledger_app = Router::new()
        .route("/entries/{id}", get(entry))
        .route_layer(AuthorizeLayer::new(
            Authorizer::builder(Policy::from_toml_str(LEDGER_POLICY, "ledger.toml").unwrap())
                .target("ledger")
                .build(),
        ))
        .layer(
            JwtAuthLayer::builder(ledger_source.clone(), LEDGER)
                .bind_to_peer(true)
                .revocations(revocations.clone())
                .user_context(issuer.validator().unwrap())
                .require_user_context(true)
                .target("ledger")
                .build(),
        );
    let (ledger_addr, stop_ledger) = serve(
        ZtServer::builder(ledger_source).build().unwrap(),
        ledger_app,
    )
    .await;

    // billing
    let billing_source = workload(&ca, BILLING);
    let state = Arc::new(Billing {
        me: id(BILLING),
        issuer: issuer.clone(),
        ledger: http_client(billing_source.clone(), LEDGER),
        tokens: JwtSvids::new(billing_source.clone()),
        ledger_addr,
    });
    let billing_app = Router::new()
        .route("/invoices/{id}", get(invoice))
        .route("/unexchanged/{id}", get(unexchanged))
        .route_layer(AuthorizeLayer::new(
            Authorizer::builder(Policy::from_toml_str(BILLING_POLICY, "billing.toml").unwrap())
                .target("billing")
                .build(),
        ))
        .layer(
            JwtAuthLayer::builder(billing_source.clone(), BILLING)
                .bind_to_peer(true)
                .user_context(issuer.validator().unwrap())
                .target("billing")
                .build(),
        )
        .with_state(state);
    let (billing_addr, stop_billing) = serve(
        ZtServer::builder(billing_source).build().unwrap(),
        billing_app,
    )
    .await;

    Mesh {
        ca,
        issuer,
        billing: billing_addr,
        ledger: ledger_addr,
        revocations,
        _stop: vec![stop_ledger, stop_billing],
    }
}

/// Orders calls billing for `user` holding `scopes`; orders is the first
/// actor of the user context.
async fn orders_calls_billing(
    mesh: &Mesh,
    path: &str,
    user: &str,
    scopes: &[&str],
) -> (u16, String) {
    let orders = workload(&mesh.ca, ORDERS);
    let http = http_client(orders.clone(), BILLING);
    let tokens = JwtSvids::new(orders);
    let context = mesh.issuer.mint_for(user, scopes, &[id(ORDERS)]).unwrap();
    let response = tokens
        .send(
            http.get(format!("https://{}{path}", mesh.billing))
                .header(USER_CONTEXT_HEADER, context),
            BILLING,
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn events_of(audit: &AuditCapture, service: &str) -> Vec<Fields> {
    audit
        .take()
        .into_iter()
        .filter(|e| e.get("target_service").map(String::as_str) == Some(service))
        .collect()
}

#[tokio::test]
async fn ledger_allows_a_user_with_the_scope_and_the_audit_shows_the_chain() {
    let (audit, _guard) = AuditCapture::install();
    let mesh = mesh().await;
    let (status, body) = orders_calls_billing(
        &mesh,
        "/invoices/7",
        "alice",
        &["invoices:read", "ledger:read"],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("entry 7 for alice via {ORDERS} > {BILLING}"));

    let events = audit.events();
    let ledger: Vec<&Fields> = events
        .iter()
        .filter(|e| e.get("target_service").map(String::as_str) == Some("ledger"))
        .collect();
    assert_eq!(ledger.len(), 1, "{events:?}");
    let event = ledger[0];
    assert_eq!(field(event, "decision"), "allow");
    assert_eq!(field(event, "caller"), BILLING);
    assert_eq!(field(event, "user"), "alice");
    assert_eq!(field(event, "act_chain"), format!("{ORDERS},{BILLING}"));
    assert_eq!(field(event, "rule"), "billing-reads-entries-for-users");

    let billing: Vec<&Fields> = events
        .iter()
        .filter(|e| e.get("target_service").map(String::as_str) == Some("billing"))
        .collect();
    assert_eq!(billing.len(), 1, "{events:?}");
    assert_eq!(field(billing[0], "caller"), ORDERS);
    assert_eq!(field(billing[0], "user"), "alice");
    assert_eq!(field(billing[0], "act_chain"), ORDERS);

    // No event, field or value holds a token.
    for event in &events {
        for value in event.values() {
            assert!(!value.contains("eyJ"), "{event:?}");
        }
    }
}

#[tokio::test]
async fn ledger_denies_a_user_without_the_scope() {
    let (audit, _guard) = AuditCapture::install();
    let mesh = mesh().await;
    let (status, body) =
        orders_calls_billing(&mesh, "/invoices/7", "bob", &["invoices:read"]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body, r#"{"error":"permission_denied"}"#);

    let events = events_of(&audit, "ledger");
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(field(event, "decision"), "deny");
    assert_eq!(field(event, "reason"), "no-matching-rule");
    assert_eq!(field(event, "caller"), BILLING);
    assert_eq!(field(event, "user"), "bob");
    assert_eq!(field(event, "act_chain"), format!("{ORDERS},{BILLING}"));
}

#[tokio::test]
async fn billing_denies_a_user_without_its_own_scope_before_calling_ledger() {
    let (audit, _guard) = AuditCapture::install();
    let mesh = mesh().await;
    let (status, _) = orders_calls_billing(&mesh, "/invoices/7", "carol", &["ledger:read"]).await;
    assert_eq!(status, 403);
    let all = audit.take();
    assert!(
        all.iter()
            .all(|e| e.get("target_service").map(String::as_str) != Some("ledger")),
        "{all:?}"
    );
    let billing: Vec<&Fields> = all
        .iter()
        .filter(|e| e.get("target_service").map(String::as_str) == Some("billing"))
        .collect();
    assert_eq!(billing.len(), 1);
    assert_eq!(field(billing[0], "decision"), "deny");
    assert_eq!(field(billing[0], "user"), "carol");
}

#[tokio::test]
async fn a_user_context_forwarded_without_exchange_is_refused_as_unauthenticated() {
    let (audit, _guard) = AuditCapture::install();
    let mesh = mesh().await;
    let (status, body) = orders_calls_billing(
        &mesh,
        "/unexchanged/7",
        "alice",
        &["invoices:read", "ledger:read"],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body, r#"{"error":"unauthenticated"}"#);
    let events = events_of(&audit, "ledger");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "decision"), "deny");
    assert_eq!(field(&events[0], "reason"), "user-context:actor-mismatch");
    // The reason is in the log, the token is not.
    assert!(field(&events[0], "detail").contains(ORDERS));
    assert!(!field(&events[0], "detail").contains("eyJ"));
}

#[tokio::test]
async fn a_jwt_svid_of_another_workload_is_refused_when_bound_to_the_mtls_peer() {
    let (audit, _guard) = AuditCapture::install();
    let mesh = mesh().await;
    // Orders connects with its own certificate but presents billing's
    // JWT-SVID for ledger.
    let billing_token = JwtSvids::new(workload(&mesh.ca, BILLING))
        .header_value(LEDGER)
        .await
        .unwrap();
    let orders = workload(&mesh.ca, ORDERS);
    assert!(orders.current().is_ok());
    let http = http_client(orders, LEDGER);
    let context = mesh
        .issuer
        .mint_for("alice", &["ledger:read"], &[id(BILLING)])
        .unwrap();
    let response = http
        .get(format!("https://{}/entries/1", mesh.ledger))
        .header("authorization", billing_token)
        .header(USER_CONTEXT_HEADER, context)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let events = events_of(&audit, "ledger");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "reason"), "jwt-svid:not-bound-to-peer");
    assert_eq!(field(&events[0], "caller"), ORDERS);
}

#[tokio::test]
async fn a_revoked_jwt_subject_is_refused_at_its_next_request() {
    let (audit, _guard) = AuditCapture::install();
    let mesh = mesh().await;
    let scopes = ["invoices:read", "ledger:read"];
    assert_eq!(
        orders_calls_billing(&mesh, "/invoices/1", "alice", &scopes)
            .await
            .0,
        200
    );
    audit.take();

    // Ledger's handshake does not consult the list; the per-request check
    // does, and finds the peer (the JWT-SVID's subject too) revoked.
    mesh.revocations.revoke_id(id(BILLING));
    let (status, body) = orders_calls_billing(&mesh, "/invoices/1", "alice", &scopes).await;
    assert_eq!(status, 401, "{body}");
    let events = events_of(&audit, "ledger");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "reason"), "peer:revoked");
    assert_eq!(field(&events[0], "caller"), BILLING);
}
