//! The Workload API service in process: the security header is required,
//! and JWT validation errors are reported as `InvalidArgument`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::time::Duration;

use tonic::{Code, Request};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::workload_api::pb;
use zt_dev::workload_api::pb::spiffe_workload_api_server::SpiffeWorkloadApi;
use zt_dev::{BadJwt, FakeCa, FakeCaSource, SECURITY_HEADER, WorkloadApiServer};

fn server() -> (WorkloadApiServer, FakeCa) {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let source = FakeCaSource::new(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/orders").unwrap(),
        Duration::from_secs(60),
    )
    .unwrap();
    (WorkloadApiServer::new(source), ca)
}

fn with_header<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert(SECURITY_HEADER, "true".parse().unwrap());
    req
}

#[tokio::test]
async fn calls_without_the_security_header_are_rejected() {
    let (server, _) = server();
    let err = server
        .fetch_jwtsvid(Request::new(pb::JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("security header"));
    let err = server
        .fetch_x509svid(Request::new(pb::X509svidRequest {}))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn jwt_svid_requires_an_audience_and_the_callers_own_id() {
    let (server, _) = server();
    let err = server
        .fetch_jwtsvid(with_header(pb::JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = server
        .fetch_jwtsvid(with_header(pb::JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: "spiffe://example.org/someone-else".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn validate_jwt_svid_returns_subject_and_claims_or_the_reason() {
    let (server, ca) = server();
    let id = SpiffeId::new("spiffe://example.org/billing").unwrap();
    let token = ca
        .issue_jwt_svid(&id, &["orders"], Duration::from_secs(60))
        .unwrap();
    let ok = server
        .validate_jwtsvid(with_header(pb::ValidateJwtsvidRequest {
            audience: "orders".into(),
            svid: token.token().into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.spiffe_id, "spiffe://example.org/billing");
    assert!(ok.claims.unwrap().fields.contains_key("exp"));

    let bad = ca
        .issue_bad_jwt_svid(BadJwt::AlgNone, &id, "orders")
        .unwrap();
    let err = server
        .validate_jwtsvid(with_header(pb::ValidateJwtsvidRequest {
            audience: "orders".into(),
            svid: bad,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("none"), "{}", err.message());
}
