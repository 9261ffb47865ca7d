//! Credentials that end with the task, end to end over mutual TLS on
//! 127.0.0.1: a bot obtains a task token from the development issuer
//! (deadline, audience and scopes of the task, task and token IDs), calls
//! a zt server (`JwtAuthLayer` + `AuthorizeLayer` with policy) with it,
//! and once the task completes, or its guard is dropped, the next request
//! with the token is refused. The audit trail carries the task ID for
//! issuance, use, refusal and revocation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::get;
use tokio::sync::oneshot;
use zt_authz::Authorizer;
use zt_authz::policy::Policy;
use zt_client::ZtClient;
use zt_core::revocation::Revocations;
use zt_core::task::{TaskCredential, TaskTokenRequest, TaskTokenService};
use zt_core::user::{USER_CONTEXT_HEADER, UserContextValidator};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{DevUserIssuer, FakeCa, FakeCaSource};
use zt_server::{AuthorizeLayer, JwtAuthLayer, ZtServer};
use zt_tests::audit_capture::{AuditCapture, Fields};
mod common;
use common::field;

const BOT: &str = "spiffe://example.org/bot";
const INTRUDER: &str = "spiffe://example.org/intruder";
const REPORTS: &str = "spiffe://example.org/reports";
const ISS: &str = "https://tasks.example.org";
const TTL: Duration = Duration::from_secs(300);

const POLICY: &str = r#"
version = "reports-1"

[[rule]]
id = "bot-reads-reports"
effect = "allow"
callers = ["spiffe://example.org/bot", "spiffe://example.org/intruder"]
http = [{ method = "GET", path = "/reports/{id}" }]
scopes = ["reports:read"]

[[rule]]
id = "bot-writes-reports"
effect = "allow"
callers = ["spiffe://example.org/bot"]
http = [{ method = "POST", path = "/reports/{id}" }]
scopes = ["reports:write"]
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

struct Setup {
    ca: FakeCa,
    tasks: Arc<dyn TaskTokenService>,
    revocations: Revocations,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn setup() -> Setup {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    // The list the issuer records revocations in is the one the server
    // checks.
    let revocations = Revocations::new();
    let issuer = DevUserIssuer::new(ISS, "unused")
        .unwrap()
        .with_revocations(revocations.clone());
    let validator = UserContextValidator::new(ISS, REPORTS, &issuer.jwks()).unwrap();
    let source = FakeCaSource::new(ca.clone(), id(REPORTS), TTL).unwrap();
    let app = Router::new()
        .route(
            "/reports/{id}",
            get(|| async { "report" }).post(|| async { "saved" }),
        )
        .route_layer(AuthorizeLayer::new(
            Authorizer::builder(Policy::from_toml_str(POLICY, "reports.toml").unwrap())
                .target("reports")
                .build(),
        ))
        .layer(
            JwtAuthLayer::builder(source.clone(), REPORTS)
                .require_jwt_svid(false)
                .revocations(revocations.clone())
                .user_context(validator)
                .require_user_context(true)
                .target("reports")
                .build(),
        );
    let (addr, stop) = common::serve(ZtServer::builder(source).build().unwrap(), app)
        .await
        .into_parts();
    Setup {
        ca,
        tasks: Arc::new(issuer),
        revocations,
        addr,
        _stop: stop,
    }
}

fn client(setup: &Setup, me: &str) -> reqwest::Client {
    let source = FakeCaSource::new(setup.ca.clone(), id(me), TTL).unwrap();
    ZtClient::builder(source)
        .pin_server(REPORTS.parse().unwrap())
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap()
}

async fn call(http: &reqwest::Client, setup: &Setup, method: &str, token: &str) -> u16 {
    let url = format!("https://{}/reports/7", setup.addr);
    let request = match method {
        "GET" => http.get(url),
        _ => http.post(url),
    };
    request
        .header(USER_CONTEXT_HEADER, token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn read_task(task: &str) -> TaskTokenRequest {
    TaskTokenRequest::new(
        task,
        BOT,
        id(BOT),
        SystemTime::now() + Duration::from_secs(120),
    )
    .audience(REPORTS)
    .scope("reports:read")
}

fn decisions(audit: &AuditCapture) -> Vec<Fields> {
    audit
        .take()
        .into_iter()
        .filter(|e| e.get("target_service").map(String::as_str) == Some("reports"))
        .collect()
}

#[tokio::test]
async fn a_completed_task_loses_access_at_its_next_request_and_the_trail_names_the_task() {
    let (audit, _guard) = AuditCapture::install();
    let setup = setup().await;
    let http = client(&setup, BOT);
    let credential = TaskCredential::obtain(
        setup.tasks.clone(),
        &read_task("nightly-7"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    let token = credential.token().to_owned();
    let token_id = credential.token_id().to_owned();

    assert_eq!(call(&http, &setup, "GET", &token).await, 200);
    // The task asked for reading only: writing is refused by policy.
    assert_eq!(call(&http, &setup, "POST", &token).await, 403);
    let events = decisions(&audit);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(field(&events[0], "decision"), "allow");
    assert_eq!(field(&events[0], "rule"), "bot-reads-reports");
    assert_eq!(field(&events[0], "task"), "nightly-7");
    assert_eq!(field(&events[0], "user"), BOT);
    assert_eq!(field(&events[1], "decision"), "deny");
    assert_eq!(field(&events[1], "task"), "nightly-7");

    let version = setup.revocations.version();
    credential.complete().unwrap();
    assert_eq!(setup.revocations.version(), version + 1);
    // Same client, same keep-alive connection: refused at the next request.
    assert_eq!(call(&http, &setup, "GET", &token).await, 401);
    let events = decisions(&audit);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "decision"), "deny");
    assert_eq!(field(&events[0], "reason"), "user-context:revoked");
    assert_eq!(field(&events[0], "task"), "nightly-7");

    let lifecycle: Vec<Fields> = audit
        .connection_events()
        .into_iter()
        .filter(|e| {
            e.get("event")
                .is_some_and(|v| v.starts_with("task-credential"))
        })
        .collect();
    assert_eq!(lifecycle.len(), 2, "{lifecycle:?}");
    assert_eq!(field(&lifecycle[0], "event"), "task-credential-issued");
    assert_eq!(field(&lifecycle[0], "task"), "nightly-7");
    assert_eq!(field(&lifecycle[0], "token_id"), token_id);
    assert_eq!(field(&lifecycle[0], "audiences"), REPORTS);
    assert_eq!(field(&lifecycle[0], "scopes"), "reports:read");
    assert_eq!(field(&lifecycle[1], "event"), "task-credential-revoked");
    assert_eq!(field(&lifecycle[1], "task"), "nightly-7");
    assert_eq!(field(&lifecycle[1], "ended"), "complete");
    for event in audit.events().iter().chain(&lifecycle) {
        assert!(event.values().all(|v| !v.contains(&token)), "{event:?}");
    }
}

#[tokio::test]
async fn dropping_the_guard_revokes_only_that_task() {
    let (audit, _guard) = AuditCapture::install();
    let setup = setup().await;
    let http = client(&setup, BOT);
    let now = SystemTime::now();
    let first = TaskCredential::obtain(setup.tasks.clone(), &read_task("one"), now)
        .await
        .unwrap();
    let second = TaskCredential::obtain(setup.tasks.clone(), &read_task("two"), now)
        .await
        .unwrap();
    let first_token = first.token().to_owned();
    assert_eq!(call(&http, &setup, "GET", &first_token).await, 200);
    drop(first);
    assert_eq!(call(&http, &setup, "GET", &first_token).await, 401);
    assert_eq!(call(&http, &setup, "GET", second.token()).await, 200);
    let revoked: Vec<Fields> = audit
        .connection_events()
        .into_iter()
        .filter(|e| e.get("event").map(String::as_str) == Some("task-credential-revoked"))
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(field(&revoked[0], "task"), "one");
    assert_eq!(field(&revoked[0], "ended"), "dropped");
}

#[tokio::test]
async fn another_workload_holding_the_task_token_is_refused() {
    let (audit, _guard) = AuditCapture::install();
    let setup = setup().await;
    let credential =
        TaskCredential::obtain(setup.tasks.clone(), &read_task("stolen"), SystemTime::now())
            .await
            .unwrap();
    let intruder = client(&setup, INTRUDER);
    assert_eq!(
        call(&intruder, &setup, "GET", credential.token()).await,
        401
    );
    let events = decisions(&audit);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "reason"), "user-context:actor-mismatch");
    assert_eq!(field(&events[0], "caller"), INTRUDER);
}

#[tokio::test]
async fn a_token_for_another_service_is_refused() {
    let (audit, _guard) = AuditCapture::install();
    let setup = setup().await;
    let http = client(&setup, BOT);
    let request = TaskTokenRequest::new(
        "elsewhere",
        BOT,
        id(BOT),
        SystemTime::now() + Duration::from_secs(60),
    )
    .audience("spiffe://example.org/payroll")
    .scope("reports:read");
    let credential = TaskCredential::obtain(setup.tasks.clone(), &request, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(call(&http, &setup, "GET", credential.token()).await, 401);
    let events = decisions(&audit);
    assert_eq!(field(&events[0], "reason"), "user-context:wrong-aud");
}
