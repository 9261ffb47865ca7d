//! Callers declared in code, end to end over mutual TLS on 127.0.0.1:
//! `#[callers]` on axum handlers and on a tonic service, combined with a
//! policy file, enforced by `AuthorizeLayer` before the request body is
//! read, and audited with a rule naming the endpoint.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use tonic::{Code, Request, Response, Status};
use tower::Layer as _;
use zt_authz::Authorizer;
use zt_authz::policy::{Policy, PolicyEngine};
use zt_client::ZtClient;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_examples::billing::billing_client::BillingClient;
use zt_examples::billing::billing_server::{Billing, BillingServer};
use zt_examples::billing::{Invoice, InvoiceRequest};
use zt_server::macros::{Declarations, DeclaredRouter};
use zt_server::{AuthorizeLayer, ZtServer, callers};
use zt_tests::audit_capture::AuditCapture;

mod common;
use common::{field, single};

const TTL: Duration = Duration::from_secs(300);

/// The operator's file: every workload of example.org, but never `intruder`.
const POLICY: &str = r#"
version = "ops-1"

[[rule]]
id = "mesh"
effect = "allow"
callers = ["spiffe://example.org/**"]

[[rule]]
id = "no-intruder"
effect = "deny"
callers = ["spiffe://example.org/intruder"]
"#;

#[callers("spiffe://example.org/orders", http = "GET /invoices/{id}")]
async fn get_invoice(Path(id): Path<u64>) -> String {
    format!("invoice {id}")
}

#[callers(
    "spiffe://example.org/orders",
    "spiffe://example.org/intruder",
    http = "POST /invoices"
)]
async fn create_invoice(Json(body): Json<serde_json::Value>) -> String {
    format!("created {body}")
}

#[callers(trust_domain = "example.org", http = "GET /health")]
async fn health() -> &'static str {
    "ok"
}

/// Routed but not declared.
async fn undeclared() -> &'static str {
    "undeclared"
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn workload(ca: &FakeCa, name: &str) -> Arc<FakeCaSource> {
    FakeCaSource::new(ca.clone(), id(&format!("spiffe://example.org/{name}")), TTL).unwrap()
}

fn client(ca: &FakeCa, name: &str) -> reqwest::Client {
    ZtClient::builder(workload(ca, name))
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap()
}

/// Serves `service` behind billing's mTLS server.
async fn serve<S, B>(ca: &FakeCa, service: S) -> (SocketAddr, tokio::sync::oneshot::Sender<()>)
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server = ZtServer::builder(workload(ca, "billing")).build().unwrap();
    common::serve(server, service).await.into_parts()
}

fn router(engine: impl PolicyEngine + 'static) -> Router {
    Router::new()
        .route("/invoices/{id}", get(get_invoice))
        .route("/invoices", post(create_invoice))
        .route("/health", get(health))
        .route("/undeclared", get(undeclared))
        .route_layer(AuthorizeLayer::new(
            Authorizer::builder(engine).target("billing").build(),
        ))
}

async fn call(
    client: &reqwest::Client,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> (u16, String) {
    let url = format!("https://{addr}{path}");
    let request = match method {
        "GET" => client.get(url),
        // Not JSON: a handler that read the body would answer 400.
        _ => client
            .post(url)
            .header("content-type", "application/json")
            .body("not json {"),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn axum_handlers_enforce_their_declared_callers_with_the_policy_file() {
    let (audit, _guard) = AuditCapture::install();
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let declarations = Declarations::builder()
        .add::<get_invoice>()
        .add::<create_invoice>()
        .add::<health>()
        .build()
        .unwrap();
    let code_version = declarations.version().to_owned();
    let engine = declarations.with_policy(Policy::from_toml_str(POLICY, "policy.toml").unwrap());
    let (addr, _stop) = serve(&ca, router(engine)).await;
    let version = format!("ops-1+{code_version}");
    let orders = client(&ca, "orders");
    let ledger = client(&ca, "ledger");
    let intruder = client(&ca, "intruder");

    // Declared caller, allowed by the file too.
    assert_eq!(
        call(&orders, addr, "GET", "/invoices/7").await,
        (200, "invoice 7".into())
    );
    let event = single(&audit);
    assert_eq!(field(&event, "decision"), "allow");
    assert_eq!(field(&event, "rule"), "mesh");
    assert_eq!(field(&event, "route"), "/invoices/{id}");
    assert_eq!(field(&event, "policy_version"), version);

    // A caller the file allows but the code does not declare: the same 403
    // body as a policy denial, and an audit record naming the endpoint.
    assert_eq!(
        call(&ledger, addr, "GET", "/invoices/7").await,
        (403, r#"{"error":"permission_denied"}"#.into())
    );
    let event = single(&audit);
    assert_eq!(field(&event, "level"), "WARN");
    assert_eq!(field(&event, "caller"), "spiffe://example.org/ledger");
    assert_eq!(field(&event, "target_service"), "billing");
    assert_eq!(field(&event, "decision"), "deny");
    assert_eq!(field(&event, "reason"), "caller-not-declared");
    assert_eq!(field(&event, "rule"), "code:get_invoice");
    assert_eq!(field(&event, "path"), "/invoices/7");
    assert_eq!(field(&event, "policy_version"), version);

    // The refusal comes before the body is read: an undeclared caller
    // sending a body the handler could not parse gets 403, not 400.
    assert_eq!(call(&ledger, addr, "POST", "/invoices").await.0, 403);
    assert_eq!(field(&single(&audit), "rule"), "code:create_invoice");
    // The declared caller reaches the handler, whose extractor rejects the
    // body.
    assert_eq!(call(&orders, addr, "POST", "/invoices").await.0, 400);
    assert_eq!(field(&single(&audit), "decision"), "allow");

    // Declared in code, denied by the file: the operator's deny wins.
    assert_eq!(call(&intruder, addr, "POST", "/invoices").await.0, 403);
    let event = single(&audit);
    assert_eq!(field(&event, "reason"), "matched-deny");
    assert_eq!(field(&event, "rule"), "no-intruder");

    // `trust_domain = "example.org"` admits the whole mesh.
    assert_eq!(
        call(&ledger, addr, "GET", "/health").await,
        (200, "ok".into())
    );
    single(&audit);
    // A route with no declaration: the file alone decides.
    assert_eq!(call(&ledger, addr, "GET", "/undeclared").await.0, 200);
    assert_eq!(field(&single(&audit), "rule"), "mesh");
}

#[tokio::test]
async fn require_declared_refuses_routes_without_declared_callers() {
    let (audit, _guard) = AuditCapture::install();
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    // The declarations alone, no policy file.
    let declarations = Declarations::builder()
        .add::<get_invoice>()
        .add::<create_invoice>()
        .add::<health>()
        .require_declared(true)
        .build()
        .unwrap();
    // At startup: a router whose routes are recorded refuses to be built
    // while one has no declared callers.
    let err = DeclaredRouter::<()>::new(&declarations)
        .route("/invoices/{id}", get(get_invoice))
        .route("/health", get(health))
        .route("/undeclared", get(undeclared))
        .into_router()
        .unwrap_err();
    assert!(err.to_string().contains("route /undeclared"), "{err}");
    let checked = DeclaredRouter::<()>::new(&declarations)
        .route("/invoices/{id}", get(get_invoice))
        .route("/health", get(health))
        .into_router();
    assert!(checked.is_ok());

    // At request time, for a route added without the check.
    let (addr, _stop) = serve(&ca, router(declarations)).await;
    let orders = client(&ca, "orders");

    assert_eq!(call(&orders, addr, "GET", "/invoices/7").await.0, 200);
    assert_eq!(field(&single(&audit), "rule"), "code:get_invoice");
    assert_eq!(call(&orders, addr, "GET", "/undeclared").await.0, 403);
    let event = single(&audit);
    assert_eq!(field(&event, "reason"), "undeclared-endpoint");
    assert_eq!(field(&event, "rule"), "-");
}

struct Svc;

#[callers]
#[tonic::async_trait]
impl Billing for Svc {
    #[callers("spiffe://example.org/orders")]
    async fn get_invoice(&self, req: Request<InvoiceRequest>) -> Result<Response<Invoice>, Status> {
        Ok(Response::new(Invoice {
            order_id: req.into_inner().order_id,
            amount_cents: 100,
            caller: String::new(),
        }))
    }
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
async fn tonic_methods_enforce_their_declared_callers() {
    let (audit, _guard) = AuditCapture::install();
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let declarations = Declarations::builder()
        .add::<Svc>()
        .require_declared(true)
        .build()
        .unwrap();
    let engine = declarations.with_policy(Policy::from_toml_str(POLICY, "policy.toml").unwrap());
    let routes = tonic::service::Routes::new(BillingServer::new(Svc)).prepare();
    let service =
        AuthorizeLayer::new(Authorizer::builder(engine).target("billing").build()).layer(routes);
    let (addr, _stop) = serve(&ca, service).await;

    let mut orders = grpc_client(&ca, "orders", addr).await;
    let invoice = orders
        .get_invoice(InvoiceRequest {
            order_id: "42".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invoice.order_id, "42");
    let event = single(&audit);
    assert_eq!(field(&event, "decision"), "allow");
    assert_eq!(field(&event, "grpc_method"), "/billing.Billing/GetInvoice");

    let mut ledger = grpc_client(&ca, "ledger", addr).await;
    let status = ledger
        .get_invoice(InvoiceRequest {
            order_id: "42".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Nothing about the rules reaches the caller.
    assert!(!status.message().contains("code:"), "{status:?}");
    let event = single(&audit);
    assert_eq!(field(&event, "caller"), "spiffe://example.org/ledger");
    assert_eq!(field(&event, "decision"), "deny");
    assert_eq!(field(&event, "reason"), "caller-not-declared");
    assert_eq!(field(&event, "rule"), "code:Svc::get_invoice");
    assert_eq!(field(&event, "grpc_method"), "/billing.Billing/GetInvoice");
}
