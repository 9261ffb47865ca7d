//! JwtAuthLayer: each broken JWT-SVID, binding to the mTLS peer,
//! revocation of JWT subjects and user-context binding fail with their own
//! typed error; refused requests get a bare 401.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::{BodyExt as _, Empty, Full};
use tower::{Layer as _, ServiceExt as _};
use zt_core::jwt::JwtError;
use zt_core::revocation::Revocations;
use zt_core::time::{Clock as _, ManualClock};
use zt_core::user::{ActorExchange as _, UserContext, UserContextError};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{BadJwt, DevUserIssuer, FakeCa, FakeCaSource};
use zt_server::{JwtAuthError, JwtAuthLayer, VerifiedJwtSvid};

const LEDGER: &str = "spiffe://example.org/ledger";

struct Setup {
    ca: FakeCa,
    clock: ManualClock,
    ledger: Arc<FakeCaSource>,
    billing: SpiffeId,
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn setup() -> Setup {
    let clock = ManualClock::starting_now();
    let ca = FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let ledger = FakeCaSource::new(ca.clone(), id(LEDGER), Duration::from_secs(600)).unwrap();
    Setup {
        ca,
        clock,
        ledger,
        billing: id("spiffe://example.org/billing"),
    }
}

impl Setup {
    fn layer(&self) -> zt_server::JwtAuthBuilder {
        JwtAuthLayer::builder(self.ledger.clone(), LEDGER)
            .clock(Arc::new(self.clock.clone()))
            .leeway(Duration::ZERO)
    }

    fn good_token(&self) -> String {
        self.ca
            .issue_jwt_svid(&self.billing, &[LEDGER], Duration::from_secs(120))
            .unwrap()
            .token()
            .to_owned()
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn rejected(kind: BadJwt) -> JwtError {
    let s = setup();
    let token = s.ca.issue_bad_jwt_svid(kind, &s.billing, LEDGER).unwrap();
    match s.layer().build().authenticate(&bearer(&token), None) {
        Err(JwtAuthError::JwtSvid(e)) => e,
        other => panic!("{kind:?}: {other:?}"),
    }
}

#[test]
fn a_valid_jwt_svid_is_accepted_and_names_its_subject() {
    let s = setup();
    let found = s
        .layer()
        .build()
        .authenticate(&bearer(&s.good_token()), Some(&s.billing))
        .unwrap();
    assert_eq!(found.jwt_svid.unwrap().subject(), &s.billing);
    assert!(found.user.is_none());
}

#[test]
fn alg_none_is_refused() {
    assert_eq!(
        rejected(BadJwt::AlgNone),
        JwtError::UnsupportedAlgorithm { alg: "none".into() }
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    assert_eq!(
        rejected(BadJwt::HmacWithPublicKey),
        JwtError::UnsupportedAlgorithm {
            alg: "HS256".into()
        }
    );
}

#[test]
fn an_expired_jwt_svid_is_refused() {
    assert!(matches!(
        rejected(BadJwt::Expired),
        JwtError::Expired { .. }
    ));
}

#[test]
fn a_jwt_svid_before_its_nbf_is_refused() {
    assert!(matches!(
        rejected(BadJwt::NotYetValid),
        JwtError::NotYetValid { .. }
    ));
}

#[test]
fn a_jwt_svid_for_another_audience_is_refused() {
    assert_eq!(
        rejected(BadJwt::WrongAudience),
        JwtError::WrongAudience {
            expected: LEDGER.into(),
            found: vec!["wrong-audience".into()]
        }
    );
}

#[test]
fn a_jwt_svid_without_aud_is_refused() {
    assert_eq!(rejected(BadJwt::MissingAudience), JwtError::MissingAudience);
}

#[test]
fn a_jwt_svid_without_exp_is_refused() {
    assert_eq!(rejected(BadJwt::MissingExpiry), JwtError::MissingExpiry);
}

#[test]
fn a_jwt_svid_with_an_unknown_kid_is_refused() {
    assert!(matches!(
        rejected(BadJwt::UnknownKeyId),
        JwtError::UnknownKeyId { key_id, trust_domain } if key_id == "no-such-key" && trust_domain == "example.org"
    ));
}

#[test]
fn a_jwt_svid_whose_sub_is_not_a_spiffe_id_is_refused() {
    assert!(matches!(
        rejected(BadJwt::SubjectNotSpiffeId),
        JwtError::SubjectNotSpiffeId(_)
    ));
}

#[test]
fn a_tampered_jwt_svid_is_refused() {
    assert!(matches!(
        rejected(BadJwt::TamperedPayload),
        JwtError::BadSignature { .. }
    ));
}

#[test]
fn a_jwt_svid_from_a_trust_domain_without_bundle_is_refused() {
    let s = setup();
    let other = FakeCa::new(TrustDomain::new("partner.example").unwrap()).unwrap();
    let token = other
        .issue_jwt_svid(
            &id("spiffe://partner.example/billing"),
            &[LEDGER],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(
        s.layer()
            .build()
            .authenticate(&bearer(token.token()), None)
            .unwrap_err(),
        JwtAuthError::JwtSvid(JwtError::UnknownTrustDomain {
            trust_domain: "partner.example".into()
        })
    );
}

#[test]
fn a_jwt_svid_whose_trust_domain_has_no_jwt_bundle_yet_is_refused_as_missing_bundle() {
    let s = setup();
    // The service's source holds example.org's X.509 authorities but has
    // received no JWT authority for it.
    let mut x509_only = zt_core::TrustBundle::new(s.ca.trust_domain().clone());
    x509_only
        .add_x509_authority(s.ca.root_certificate())
        .unwrap();
    let svid = zt_core::source::SvidSource::current(&s.ledger)
        .unwrap()
        .svid()
        .as_ref()
        .clone();
    let source = Arc::new(zt_core::source::StaticSource::new(
        svid,
        zt_core::BundleSet::new().with(x509_only),
    ));
    let layer = JwtAuthLayer::builder(source, LEDGER)
        .clock(Arc::new(s.clock.clone()))
        .leeway(Duration::ZERO)
        .build();
    let err = layer
        .authenticate(&bearer(&s.good_token()), None)
        .unwrap_err();
    assert!(
        matches!(&err, JwtAuthError::JwtSvid(JwtError::NoJwtBundle { trust_domain, .. }) if trust_domain == "example.org"),
        "{err:?}"
    );
    assert_eq!(err.kind(), "jwt-svid:no-jwt-bundle");
    // With the bundle present, an unknown key has a reason of its own.
    assert_eq!(
        JwtAuthError::JwtSvid(rejected(BadJwt::UnknownKeyId)).kind(),
        "jwt-svid:unknown-kid"
    );
}

#[test]
fn binding_refuses_a_jwt_subject_that_is_not_the_mtls_peer() {
    let s = setup();
    let layer = s.layer().bind_to_peer(true).build();
    let orders = id("spiffe://example.org/orders");
    let err = layer
        .authenticate(&bearer(&s.good_token()), Some(&orders))
        .unwrap_err();
    assert_eq!(
        err,
        JwtAuthError::NotBoundToPeer {
            subject: s.billing.clone(),
            peer: Some(orders.clone()),
        }
    );
    assert_eq!(err.kind(), "jwt-svid:not-bound-to-peer");
    // …and accepts it when the peer is the subject.
    layer
        .authenticate(&bearer(&s.good_token()), Some(&s.billing))
        .unwrap();
    // Binding is the default.
    assert!(matches!(
        s.layer()
            .build()
            .authenticate(&bearer(&s.good_token()), Some(&orders)),
        Err(JwtAuthError::NotBoundToPeer { .. })
    ));
    // Without binding, any peer may carry it.
    s.layer()
        .bind_to_peer(false)
        .build()
        .authenticate(
            &bearer(&s.good_token()),
            Some(&id("spiffe://example.org/orders")),
        )
        .unwrap();
}

#[test]
fn a_revoked_jwt_subject_is_refused() {
    let s = setup();
    let revocations = Revocations::new();
    let layer = s
        .layer()
        .bind_to_peer(false)
        .revocations(revocations.clone())
        .build();
    layer.authenticate(&bearer(&s.good_token()), None).unwrap();
    revocations.revoke_id(s.billing.clone());
    assert_eq!(
        layer
            .authenticate(&bearer(&s.good_token()), None)
            .unwrap_err(),
        JwtAuthError::Revoked {
            subject: s.billing.clone()
        }
    );
}

#[test]
fn a_revoked_peer_is_refused_whatever_jwt_svid_it_carries() {
    let s = setup();
    let revocations = Revocations::new();
    // Unbound, so that a peer may carry another workload's token.
    let layer = s
        .layer()
        .bind_to_peer(false)
        .revocations(revocations.clone())
        .build();
    let orders = id("spiffe://example.org/orders");
    layer
        .authenticate(&bearer(&s.good_token()), Some(&orders))
        .unwrap();
    revocations.revoke_id(orders.clone());
    let err = layer
        .authenticate(&bearer(&s.good_token()), Some(&orders))
        .unwrap_err();
    assert_eq!(err, JwtAuthError::PeerRevoked { peer: orders });
    assert_eq!(err.kind(), "peer:revoked");
}

#[test]
fn a_missing_or_malformed_header_is_refused_unless_optional() {
    let s = setup();
    let layer = s.layer().build();
    assert_eq!(
        layer.authenticate(&HeaderMap::new(), None).unwrap_err(),
        JwtAuthError::MissingJwtSvid {
            header: "authorization".into()
        }
    );
    let mut basic = HeaderMap::new();
    basic.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic YTpi"),
    );
    assert_eq!(
        layer.authenticate(&basic, None).unwrap_err(),
        JwtAuthError::MalformedHeader {
            header: "authorization".into()
        }
    );
    let optional = s.layer().require_jwt_svid(false).build();
    let found = optional.authenticate(&HeaderMap::new(), None).unwrap();
    assert!(found.jwt_svid.is_none());
    // Optional does not mean unchecked.
    assert!(matches!(
        optional.authenticate(&bearer("a.b.c"), None),
        Err(JwtAuthError::JwtSvid(JwtError::Malformed { .. }))
    ));
}

#[test]
fn the_bearer_scheme_is_read_in_any_case_and_other_bytes_are_malformed_cached_or_not() {
    let s = setup();
    let token = s.good_token();
    let malformed = JwtAuthError::MalformedHeader {
        header: "authorization".into(),
    };
    let with = |value: &[u8]| {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(value).unwrap(),
        );
        headers
    };
    for layer in [s.layer().build(), s.layer().token_cache(None).build()] {
        // Twice each: the second time a caching layer answers from its
        // cache.
        for _ in 0..2 {
            for value in [
                format!("Bearer {token}"),
                format!("bearer {token}"),
                format!(" BEARER   {token} \t"),
            ] {
                let found = layer.authenticate(&with(value.as_bytes()), Some(&s.billing));
                assert_eq!(found.unwrap().jwt_svid.unwrap().subject(), &s.billing);
            }
            for value in [
                format!("Bearer\t{token}").into_bytes(),
                format!("Bearer{token}").into_bytes(),
                b"Bearer ".to_vec(),
                // A byte a header may carry but text may not, after a
                // token the cache holds.
                [format!("Bearer {token}").as_bytes(), b"\x80"].concat(),
                [b"Bearer \xff", token.as_bytes()].concat(),
            ] {
                assert_eq!(
                    layer
                        .authenticate(&with(&value), Some(&s.billing))
                        .unwrap_err(),
                    malformed,
                    "{}",
                    String::from_utf8_lossy(&value)
                );
            }
        }
    }
}

#[test]
fn a_custom_header_carries_the_bare_token() {
    let s = setup();
    let layer = s
        .layer()
        .header(http::HeaderName::from_static("x-jwt-svid"))
        .build();
    let mut headers = HeaderMap::new();
    headers.insert("x-jwt-svid", HeaderValue::try_from(s.good_token()).unwrap());
    assert_eq!(
        layer
            .authenticate(&headers, Some(&s.billing))
            .unwrap()
            .jwt_svid
            .unwrap()
            .subject(),
        &s.billing
    );
}

fn with_user(mut headers: HeaderMap, token: &str) -> HeaderMap {
    headers.insert("zt-user-context", HeaderValue::try_from(token).unwrap());
    headers
}

#[tokio::test]
async fn the_user_context_must_name_the_caller_as_its_current_actor() {
    let s = setup();
    let issuer = DevUserIssuer::new("https://idp.example.org", "example.org")
        .unwrap()
        .with_clock(Arc::new(s.clock.clone()));
    let layer = s.layer().user_context(issuer.validator().unwrap()).build();
    let orders = id("spiffe://example.org/orders");
    let minted = issuer
        .mint_for("alice", &["invoices:read"], std::slice::from_ref(&orders))
        .unwrap();

    // Forwarded unchanged by billing: the current actor is orders.
    let err = layer
        .authenticate(
            &with_user(bearer(&s.good_token()), &minted),
            Some(&s.billing),
        )
        .unwrap_err();
    assert_eq!(
        err,
        JwtAuthError::UserContext(UserContextError::ActorMismatch {
            caller: s.billing.clone(),
            actor: Some(orders.clone()),
        })
    );

    // Exchanged by billing: accepted, chain orders → billing.
    let context: UserContext = issuer
        .validator()
        .unwrap()
        .validate(&minted, s.clock.now())
        .unwrap();
    let exchanged = issuer.exchange(&context, &s.billing, None).await.unwrap();
    let found = layer
        .authenticate(
            &with_user(bearer(&s.good_token()), &exchanged),
            Some(&s.billing),
        )
        .unwrap();
    let user = found.user.unwrap();
    assert_eq!(user.subject(), "alice");
    assert_eq!(user.actors(), [orders, s.billing.clone()]);
    assert!(user.has_scope("invoices:read"));

    // Without any authenticated caller there is nothing to bind to.
    assert_eq!(
        s.layer()
            .require_jwt_svid(false)
            .user_context(issuer.validator().unwrap())
            .build()
            .authenticate(&with_user(HeaderMap::new(), &exchanged), None)
            .unwrap_err(),
        JwtAuthError::NoCallerForUserContext
    );
}

#[tokio::test]
async fn the_layer_answers_401_without_detail_and_passes_verified_requests_on() {
    let s = setup();
    // No mTLS peer in this test's requests: unbound.
    let layer = s.layer().bind_to_peer(false).build();
    let service = layer.layer(tower::service_fn(|req: Request<Empty<Bytes>>| async move {
        let subject = VerifiedJwtSvid::from_extensions(req.extensions())
            .map(|j| j.subject().to_string())
            .unwrap_or_default();
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(subject))))
    }));

    let mut request = Request::new(Empty::<Bytes>::new());
    *request.headers_mut() = bearer(&s.good_token());
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "spiffe://example.org/billing");

    let token =
        s.ca.issue_bad_jwt_svid(BadJwt::Expired, &s.billing, LEDGER)
            .unwrap();
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.headers_mut() = bearer(&token);
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"{"error":"unauthenticated"}"#);
}

#[tokio::test]
async fn a_grpc_call_without_a_jwt_svid_gets_unauthenticated() {
    let s = setup();
    let service =
        s.layer()
            .build()
            .layer(tower::service_fn(|_: Request<Empty<Bytes>>| async move {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
            }));
    let mut request = Request::new(Empty::<Bytes>::new());
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

#[test]
fn a_reused_token_is_checked_again_on_every_request_though_its_signature_is_cached() {
    let s = setup();
    let revocations = Revocations::new();
    // Unbound, so the subject's own revocation is what refuses it.
    let layer = s
        .layer()
        .bind_to_peer(false)
        .revocations(revocations.clone())
        .build();
    let token = s.good_token();
    for _ in 0..3 {
        layer.authenticate(&bearer(&token), None).unwrap();
    }

    // The key that signed it leaves the service's bundle.
    s.ca.rotate().unwrap();
    s.ca.end_rotation_overlap();
    s.ledger.refresh_bundles().unwrap();
    assert!(matches!(
        layer.authenticate(&bearer(&token), None).unwrap_err(),
        JwtAuthError::JwtSvid(JwtError::UnknownKeyId { .. })
    ));

    // A cached token of a subject revoked since is refused.
    let token = s.good_token();
    layer.authenticate(&bearer(&token), None).unwrap();
    revocations.revoke_id(s.billing.clone());
    assert_eq!(
        layer.authenticate(&bearer(&token), None).unwrap_err(),
        JwtAuthError::Revoked {
            subject: s.billing.clone()
        }
    );
}

#[test]
fn a_reused_token_past_its_expiry_is_refused_with_or_without_the_cache() {
    let s = setup();
    let token = s.good_token();
    for layer in [
        s.layer().bind_to_peer(false).build(),
        s.layer().bind_to_peer(false).token_cache(None).build(),
        s.layer()
            .bind_to_peer(false)
            .token_cache(Some(Arc::new(zt_core::jwt::JwtSvidCache::new(1))))
            .build(),
    ] {
        let clock = s.clock.clone();
        let start = clock.now();
        layer.authenticate(&bearer(&token), None).unwrap();
        layer.authenticate(&bearer(&token), None).unwrap();
        clock.advance(Duration::from_secs(121));
        assert!(matches!(
            layer.authenticate(&bearer(&token), None).unwrap_err(),
            JwtAuthError::JwtSvid(JwtError::Expired { .. })
        ));
        clock.set(start);
    }
}
