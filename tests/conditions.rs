//! Context conditions end to end over mutual TLS on 127.0.0.1: a layer in
//! front of AuthorizeLayer puts the verified claims of a request in its
//! extensions (as a token validator does), rules with `when` conditions
//! and caller captures decide on them, and the audit record (tracing and
//! JSON lines) names the condition that failed.

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
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use zt_authz::Authorizer;
use zt_authz::audit::JsonLinesAuditWriter;
use zt_authz::evidence::AuditReader;
use zt_authz::policy::{Context, Policy};
use zt_client::ZtClient;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::{AuthorizeLayer, ZtServer};
use zt_tests::audit_capture::AuditCapture;

mod common;
use common::{Running, field, serve, single};

const TTL: Duration = Duration::from_secs(300);

const POLICY: &str = r#"
version = "conditions-1"

[[rule]]
id = "deploy-prod"
effect = "allow"
callers = ["spiffe://example.org/ci/{repo}"]
http = [{ method = "POST", path = "/deploy/prod" }]
when = { repo = "app", repository = "org/app", ref = { one_of = ["refs/heads/main", "refs/tags/v1"] }, environment = "prod", runner_environment = "github-hosted" }

[[rule]]
id = "same-namespace"
effect = "allow"
callers = ["spiffe://example.org/ns/{ns}/sa/{sa}"]
http = [{ method = "GET", path = "/status" }]
when = { ns = { same_as = "kubernetes.io.namespace" } }
"#;

/// The header the test's stand-in for a token validator reads claims
/// from: `key=value` pairs separated by `;`.
const CLAIMS: &str = "x-test-claims";

/// Puts the claims of the test header in the request extensions, as a
/// token-validating layer puts those of the token it verified.
async fn claims_layer(mut req: Request, next: Next) -> Response {
    if let Some(header) = req.headers().get(CLAIMS).and_then(|v| v.to_str().ok()) {
        let mut context = Context::new();
        for pair in header.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap();
            context.insert(key, value);
        }
        req.extensions_mut().insert(context);
    }
    next.run(req).await
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn client(ca: &FakeCa, name: &str) -> reqwest::Client {
    let source =
        FakeCaSource::new(ca.clone(), id(&format!("spiffe://example.org/{name}")), TTL).unwrap();
    ZtClient::builder(source)
        .pin_server("spiffe://example.org/deployer".parse().unwrap())
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap()
}

async fn server(ca: &FakeCa, authorizer: Authorizer) -> Running {
    let app = Router::new()
        .route("/deploy/prod", post(|| async { "deployed" }))
        .route("/status", get(|| async { "ok" }))
        .route_layer(AuthorizeLayer::new(authorizer))
        .route_layer(middleware::from_fn(claims_layer));
    let source = FakeCaSource::new(ca.clone(), id("spiffe://example.org/deployer"), TTL).unwrap();
    serve(ZtServer::builder(source).build().unwrap(), app).await
}

async fn deploy(client: &reqwest::Client, addr: SocketAddr, claims: &str) -> (u16, String) {
    let response = client
        .post(format!("https://{addr}/deploy/prod"))
        .header(CLAIMS, claims)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

const GOOD: &str =
    "repository=org/app;ref=refs/heads/main;environment=prod;runner_environment=github-hosted";

#[tokio::test]
async fn a_deployment_whose_claims_fail_a_condition_is_refused_and_audited() {
    let (audit, _guard) = AuditCapture::install();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let writer = Arc::new(JsonLinesAuditWriter::append_to_file(&log).unwrap());
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let authorizer = Authorizer::builder(Policy::from_toml_str(POLICY, "policy.toml").unwrap())
        .target("deployer")
        .audit_sink(writer.clone())
        .build();
    let running = server(&ca, authorizer).await;
    let app = client(&ca, "ci/app");

    // Every condition holds.
    assert_eq!(
        deploy(&app, running.addr, GOOD).await,
        (200, "deployed".into())
    );
    let event = single(&audit);
    assert_eq!(field(&event, "reason"), "matched-allow");
    assert_eq!(field(&event, "rule"), "deploy-prod");
    assert_eq!(field(&event, "condition"), "-");

    // A feature branch: refused, the caller learns nothing, the audit
    // record names the condition.
    let branch = GOOD.replace("refs/heads/main", "refs/heads/feature");
    assert_eq!(
        deploy(&app, running.addr, &branch).await,
        (403, r#"{"error":"permission_denied"}"#.into())
    );
    let event = single(&audit);
    assert_eq!(field(&event, "decision"), "deny");
    assert_eq!(field(&event, "reason"), "condition-not-met");
    assert_eq!(field(&event, "rule"), "deploy-prod");
    assert_eq!(
        field(&event, "condition"),
        r#"ref = { one_of = ["refs/heads/main", "refs/tags/v1"] } (differs)"#
    );

    // A self-hosted runner.
    let self_hosted = GOOD.replace("github-hosted", "self-hosted");
    assert_eq!(deploy(&app, running.addr, &self_hosted).await.0, 403);
    assert_eq!(
        field(&single(&audit), "condition"),
        r#"runner_environment = "github-hosted" (differs)"#
    );

    // No claims at all: the first condition on the context is absent.
    let response = app
        .post(format!("https://{}/deploy/prod", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        field(&single(&audit), "condition"),
        r#"repository = "org/app" (absent)"#
    );

    // Another repository's workload with the right claims: its ID's
    // captured segment fails.
    let other = client(&ca, "ci/other");
    assert_eq!(deploy(&other, running.addr, GOOD).await.0, 403);
    assert_eq!(
        field(&single(&audit), "condition"),
        r#"repo = "app" (differs)"#
    );

    writer.flush();
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5, "{text}");
    assert_eq!(records[0]["condition"], serde_json::Value::Null);
    assert_eq!(records[1]["reason"], "condition-not-met");
    assert_eq!(
        records[1]["condition"],
        r#"ref = { one_of = ["refs/heads/main", "refs/tags/v1"] } (differs)"#
    );
    // The record carries the condition, never the claim's value.
    assert!(!text.contains("refs/heads/feature"), "{text}");
    assert!(!text.contains("self-hosted"), "{text}");

    // The evidence reader reads these records without issue, and counts a
    // refused condition as a decision of the policy.
    let mut reader = AuditReader::new();
    let mut policy_decisions = 0;
    reader
        .read("audit.jsonl", text.as_bytes(), |r| {
            policy_decisions += usize::from(r.is_policy_decision());
        })
        .unwrap();
    assert_eq!(reader.report().issue_count, 0, "{:?}", reader.report());
    assert_eq!(policy_decisions, 5);
}

#[tokio::test]
async fn a_capture_is_compared_with_a_claim() {
    let (audit, _guard) = AuditCapture::install();
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let authorizer = Authorizer::builder(Policy::from_toml_str(POLICY, "policy.toml").unwrap())
        .target("deployer")
        .build();
    let running = server(&ca, authorizer).await;
    let billing = client(&ca, "ns/prod/sa/billing");
    let status = |claims: &'static str| {
        let billing = billing.clone();
        async move {
            billing
                .get(format!("https://{}/status", running.addr))
                .header(CLAIMS, claims)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("kubernetes.io.namespace=prod").await, 200);
    assert_eq!(field(&single(&audit), "rule"), "same-namespace");
    assert_eq!(status("kubernetes.io.namespace=dev").await, 403);
    let event = single(&audit);
    assert_eq!(field(&event, "reason"), "condition-not-met");
    assert_eq!(
        field(&event, "condition"),
        r#"ns = { same_as = "kubernetes.io.namespace" } (differs)"#
    );
}
