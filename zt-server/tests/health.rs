//! HealthCheck as a readiness probe, driven by an injected clock: not
//! ready before the first SVID, ready while one is served, not ready once
//! it expired; and the axum handler's status and JSON body.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use tower::ServiceExt as _;
use zt_authz::Authorizer;
use zt_authz::policy::Policy;
use zt_core::revocation::Revocations;
use zt_core::source::{SourceState, SvidSource};
use zt_core::time::ManualClock;
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::FakeCa;
use zt_server::health::{HealthCheck, HealthReport, Upstream, ready};

const TTL: Duration = Duration::from_secs(600);

/// A source whose SVIDs the test publishes by hand.
#[derive(Debug)]
struct Manual {
    state: SourceState,
}

impl SvidSource for Manual {
    fn state(&self) -> &SourceState {
        &self.state
    }
}

struct Setup {
    clock: ManualClock,
    ca: FakeCa,
    source: Arc<Manual>,
    check: HealthCheck,
    revocations: Revocations,
}

fn setup() -> Setup {
    // Certificates carry whole seconds: start on one, so the figures are
    // exact.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let clock = ManualClock::new(std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs()));
    let ca = FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let source = Arc::new(Manual {
        state: SourceState::new(Arc::new(clock.clone())).with_metrics_name("manual"),
    });
    let policy = Policy::from_toml_str(r#"version = "health-7""#, "policy.toml").unwrap();
    let authz = Authorizer::builder(policy).target("billing").build();
    let revocations = Revocations::new();
    let check = HealthCheck::new(source.clone())
        .authorizer(&authz)
        .revocations(&revocations);
    Setup {
        clock,
        ca,
        source,
        check,
        revocations,
    }
}

fn publish(s: &Setup) {
    let id = SpiffeId::new("spiffe://example.org/billing").unwrap();
    let svid = s.ca.issue_x509_svid(&id, TTL).unwrap();
    s.source
        .state
        .publish(svid, BundleSet::new().with(s.ca.bundle()));
}

async fn probe(check: &HealthCheck) -> (StatusCode, serde_json::Value) {
    let app = axum::Router::new()
        .route("/ready", axum::routing::get(ready))
        .with_state(check.clone());
    let response = app
        .oneshot(
            Request::get("/ready")
                .body(Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[test]
fn not_ready_before_the_first_svid_and_failing_when_the_upstream_fails() {
    let s = setup();
    let report = s.check.health();
    assert!(!report.ready);
    assert_eq!(report.source.state, "starting");
    assert_eq!(report.source.upstream, Upstream::Unknown);
    assert_eq!(report.source.svid, None);
    assert_eq!(report.policy_version.as_deref(), Some("health-7"));
    assert_eq!(report.revocation_version, Some(0));

    s.source
        .state
        .report_failure("Workload API: cannot reach the agent");
    let report = s.check.health();
    assert!(!report.ready);
    assert_eq!(report.source.state, "failing");
    assert_eq!(report.source.upstream, Upstream::Failing);
    assert_eq!(
        report.source.reason.as_deref(),
        Some("Workload API: cannot reach the agent")
    );
}

#[test]
fn ready_while_an_svid_is_served_and_not_ready_once_it_expired() {
    let s = setup();
    publish(&s);
    s.clock.advance(Duration::from_secs(100));
    let report: HealthReport = s.check.health();
    assert!(report.ready, "{report:?}");
    assert_eq!(report.source.state, "healthy");
    assert_eq!(report.source.name, "manual");
    assert_eq!(report.source.upstream, Upstream::Ok);
    let svid = report.source.svid.clone().unwrap();
    assert_eq!(svid.spiffe_id, "spiffe://example.org/billing");
    assert_eq!(svid.seconds_to_expiry, 500);
    assert_eq!(svid.seconds_since_rotation, 100);
    assert_eq!(svid.revision, 1);

    s.revocations
        .revoke_id(SpiffeId::new("spiffe://example.org/old").unwrap());
    assert_eq!(s.check.health().revocation_version, Some(1));

    // One second past the SVID's expiry.
    s.clock.advance(Duration::from_secs(501));
    let report = s.check.health();
    assert!(!report.ready, "{report:?}");
    assert_eq!(report.source.state, "expired");
    assert_eq!(report.source.svid.unwrap().seconds_to_expiry, -1);
    assert!(s.source.current().is_err());

    // A fresh SVID makes it ready again, with no restart.
    publish(&s);
    let report = s.check.health();
    assert!(report.ready);
    assert_eq!(report.source.svid.unwrap().revision, 2);
}

#[tokio::test]
async fn the_readiness_handler_answers_503_then_200_then_503() {
    let s = setup();
    let (status, body) = probe(&s.check).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    assert_eq!(body["source"]["state"], "starting");

    publish(&s);
    let (status, body) = probe(&s.check).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ready"], true);
    assert_eq!(body["source"]["upstream"], "ok");
    assert_eq!(body["source"]["svid"]["seconds_to_expiry"], 600);
    assert_eq!(body["policy_version"], "health-7");

    s.clock.advance(TTL + Duration::from_secs(1));
    let (status, body) = probe(&s.check).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["source"]["state"], "expired");
}
