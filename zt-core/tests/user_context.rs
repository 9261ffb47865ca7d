//! User-context tokens: a good one validates with its scopes and actor
//! chain; each broken kind fails with its own error; exchanges append the
//! actor and never widen scopes; the token is never printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use zt_core::SpiffeId;
use zt_core::time::{Clock as _, ManualClock};
use zt_core::user::{
    ActorExchange as _, ExchangeError, JwkSet, MAX_ACT_DEPTH, UserContextError,
    UserContextValidator,
};
use zt_dev::DevUserIssuer;

const ISS: &str = "https://idp.example.org";
const AUD: &str = "example.org";

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn setup() -> (DevUserIssuer, UserContextValidator, ManualClock) {
    let clock = ManualClock::starting_now();
    let issuer = DevUserIssuer::new(ISS, AUD)
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let validator = issuer.validator().unwrap().with_leeway(Duration::ZERO);
    (issuer, validator, clock)
}

fn now_secs(clock: &ManualClock) -> u64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a good token, to break one at a time.
fn claims(clock: &ManualClock) -> serde_json::Value {
    let now = now_secs(clock);
    json!({"iss": ISS, "sub": "alice", "aud": AUD, "iat": now, "exp": now + 60, "scope": "invoices:read"})
}

fn reject_claims(
    change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> UserContextError {
    let (issuer, validator, clock) = setup();
    let mut c = claims(&clock);
    change(c.as_object_mut().unwrap());
    let token = issuer.sign(&c).unwrap();
    validator.validate(&token, clock.now()).unwrap_err()
}

#[test]
fn a_minted_token_validates_with_its_subject_scopes_and_chain() {
    let (issuer, validator, clock) = setup();
    let orders = id("spiffe://example.org/orders");
    let token = issuer
        .mint_for(
            "alice",
            &["invoices:read", "orders:write", "invoices:read"],
            std::slice::from_ref(&orders),
        )
        .unwrap();
    let user = validator.validate(&token, clock.now()).unwrap();
    assert_eq!(user.subject(), "alice");
    assert_eq!(user.issuer(), ISS);
    assert_eq!(
        user.scopes().iter().map(|s| &**s).collect::<Vec<_>>(),
        ["invoices:read", "orders:write"]
    );
    assert!(user.has_scope("orders:write"));
    assert!(!user.has_scope("orders:read"));
    assert_eq!(user.actors(), std::slice::from_ref(&orders));
    assert_eq!(user.current_actor(), Some(&orders));
    validator
        .validate_for_caller(&token, clock.now(), &orders)
        .unwrap();
}

#[test]
fn debug_never_prints_the_token() {
    let (issuer, validator, clock) = setup();
    let token = issuer.mint("alice", &["invoices:read"]).unwrap();
    let user = validator.validate(&token, clock.now()).unwrap();
    let printed = format!("{user:?}");
    assert!(printed.contains("alice"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
    for part in token.split('.') {
        assert!(!printed.contains(part), "{printed}");
    }
    assert!(!format!("{validator:?}").contains(&token));
}

#[test]
fn a_token_typed_for_another_purpose_is_rejected() {
    let (issuer, validator, clock) = setup();
    for typ in ["txntoken+jwt", "dpop+jwt", "jwt"] {
        let token = issuer.sign_typed(&claims(&clock), Some(typ)).unwrap();
        assert_eq!(
            validator.validate(&token, clock.now()).unwrap_err(),
            UserContextError::BadType {
                typ: format!("\"{typ}\"")
            },
            "{typ}"
        );
    }
}

#[test]
fn untyped_and_access_token_typed_contexts_validate() {
    let (issuer, validator, clock) = setup();
    for typ in [
        None,
        Some("JWT"),
        Some("at+jwt"),
        Some("application/at+jwt"),
    ] {
        let token = issuer.sign_typed(&claims(&clock), typ).unwrap();
        let context = validator.validate(&token, clock.now()).unwrap();
        assert_eq!(context.subject(), "alice", "{typ:?}");
    }
}

#[test]
fn alg_none_is_rejected() {
    let (issuer, validator, clock) = setup();
    let header = json!({"alg": "none", "kid": issuer.key_id()});
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(&clock).to_string())
    );
    assert_eq!(
        validator.validate(&token, clock.now()).unwrap_err(),
        UserContextError::UnsupportedAlgorithm { alg: "none".into() }
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected() {
    let (issuer, validator, clock) = setup();
    let public = serde_json::to_string(&issuer.jwks().keys[0]).unwrap();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": issuer.key_id()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(&clock).to_string())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public.as_bytes());
    let signature = ring::hmac::sign(&key, input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    assert_eq!(
        validator.validate(&token, clock.now()).unwrap_err(),
        UserContextError::UnsupportedAlgorithm {
            alg: "HS256".into()
        }
    );
}

#[test]
fn an_expired_token_is_rejected() {
    let (issuer, validator, clock) = setup();
    let token = issuer.mint("alice", &[]).unwrap();
    clock.advance(Duration::from_secs(301));
    assert!(matches!(
        validator.validate(&token, clock.now()),
        Err(UserContextError::Expired { .. })
    ));
}

#[test]
fn a_token_before_its_nbf_is_rejected() {
    let clock = ManualClock::starting_now();
    let nbf = now_secs(&clock) + 600;
    assert!(matches!(
        reject_claims(|c| {
            c.insert("nbf".into(), json!(nbf));
        }),
        UserContextError::NotYetValid { .. }
    ));
}

#[test]
fn a_token_for_another_audience_is_rejected() {
    assert_eq!(
        reject_claims(|c| {
            c.insert("aud".into(), json!(["other.org"]));
        }),
        UserContextError::WrongAudience {
            expected: AUD.into(),
            found: vec!["other.org".into()]
        }
    );
}

#[test]
fn a_token_without_aud_is_rejected() {
    assert_eq!(
        reject_claims(|c| {
            c.remove("aud");
        }),
        UserContextError::MissingAudience
    );
}

#[test]
fn a_token_without_exp_is_rejected() {
    assert_eq!(
        reject_claims(|c| {
            c.remove("exp");
        }),
        UserContextError::MissingExpiry
    );
}

#[test]
fn a_token_from_another_issuer_is_rejected() {
    assert_eq!(
        reject_claims(|c| {
            c.insert("iss".into(), json!("https://evil.example"));
        }),
        UserContextError::WrongIssuer {
            expected: ISS.into(),
            found: Some("https://evil.example".into())
        }
    );
}

#[test]
fn a_token_without_sub_is_rejected() {
    assert_eq!(
        reject_claims(|c| {
            c.remove("sub");
        }),
        UserContextError::MissingSubject
    );
}

#[test]
fn an_invalid_scope_is_rejected() {
    assert!(matches!(
        reject_claims(|c| {
            c.insert("scope".into(), json!(["invoices:read"]));
        }),
        UserContextError::BadScope { .. }
    ));
    assert!(matches!(
        reject_claims(|c| {
            c.insert("scope".into(), json!("invoices:read \"quoted\""));
        }),
        UserContextError::BadScope { .. }
    ));
}

#[test]
fn an_actor_that_is_not_a_spiffe_id_is_rejected() {
    assert!(matches!(
        reject_claims(|c| {
            c.insert("act".into(), json!({"sub": "billing"}));
        }),
        UserContextError::BadActor { .. }
    ));
    assert!(matches!(
        reject_claims(|c| {
            c.insert("act".into(), json!("spiffe://example.org/billing"));
        }),
        UserContextError::BadActor { .. }
    ));
}

#[test]
fn an_act_chain_deeper_than_the_limit_is_rejected() {
    let mut act = json!({"sub": "spiffe://example.org/s0"});
    for i in 1..=MAX_ACT_DEPTH {
        act = json!({"sub": format!("spiffe://example.org/s{i}"), "act": act});
    }
    assert_eq!(
        reject_claims(|c| {
            c.insert("act".into(), act);
        }),
        UserContextError::ActChainTooLong
    );
}

#[test]
fn an_unknown_kid_is_rejected() {
    let (_, validator, clock) = setup();
    let other = DevUserIssuer::new(ISS, AUD).unwrap();
    let token = other.mint("alice", &[]).unwrap();
    assert_eq!(
        validator.validate(&token, clock.now()).unwrap_err(),
        UserContextError::UnknownKeyId {
            key_id: other.key_id().to_owned()
        }
    );
}

#[test]
fn a_tampered_payload_fails_the_signature_check() {
    let (issuer, validator, clock) = setup();
    let token = issuer.mint("alice", &["invoices:read"]).unwrap();
    let mut c = claims(&clock);
    c["scope"] = json!("invoices:read invoices:write");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert!(matches!(
        validator.validate(&forged, clock.now()),
        Err(UserContextError::BadSignature { .. })
    ));
}

#[test]
fn the_current_actor_must_be_the_caller() {
    let (issuer, validator, clock) = setup();
    let orders = id("spiffe://example.org/orders");
    let billing = id("spiffe://example.org/billing");
    let token = issuer
        .mint_for("alice", &[], std::slice::from_ref(&orders))
        .unwrap();
    assert_eq!(
        validator
            .validate_for_caller(&token, clock.now(), &billing)
            .unwrap_err(),
        UserContextError::ActorMismatch {
            caller: billing.clone(),
            actor: Some(orders),
        }
    );
    let no_actor = issuer.mint("alice", &[]).unwrap();
    assert_eq!(
        validator
            .validate_for_caller(&no_actor, clock.now(), &billing)
            .unwrap_err(),
        UserContextError::ActorMismatch {
            caller: billing,
            actor: None,
        }
    );
}

#[tokio::test]
async fn an_exchange_appends_the_actor_and_only_narrows_scopes() {
    let (issuer, validator, clock) = setup();
    let orders = id("spiffe://example.org/orders");
    let billing = id("spiffe://example.org/billing");
    let first = issuer
        .mint_for(
            "alice",
            &["invoices:read", "orders:write"],
            std::slice::from_ref(&orders),
        )
        .unwrap();
    let user = validator.validate(&first, clock.now()).unwrap();

    let narrowed = issuer
        .exchange(&user, &billing, Some(&["invoices:read"]))
        .await
        .unwrap();
    let next = validator
        .validate_for_caller(&narrowed, clock.now(), &billing)
        .unwrap();
    assert_eq!(next.subject(), "alice");
    assert_eq!(next.actors(), [orders, billing.clone()]);
    assert_eq!(next.scopes().len(), 1);
    assert!(next.has_scope("invoices:read"));
    assert!(next.expiry() <= user.expiry());

    assert_eq!(
        issuer
            .exchange(&next, &billing, Some(&["orders:write"]))
            .await
            .unwrap_err(),
        ExchangeError::WidenedScope {
            scope: "orders:write".into()
        }
    );
    clock.advance(Duration::from_secs(3600));
    assert!(matches!(
        issuer.exchange(&next, &billing, None).await,
        Err(ExchangeError::Expired { .. })
    ));
}

#[test]
fn symmetric_and_kid_less_keys_are_refused_in_the_jwks() {
    let hmac: JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"}
    ]}))
    .unwrap();
    assert!(matches!(
        UserContextValidator::new(ISS, AUD, &hmac),
        Err(UserContextError::UnusableKey { .. })
    ));
    let (issuer, _, _) = setup();
    let mut jwks = issuer.jwks();
    jwks.keys[0].common.key_id = None;
    assert!(matches!(
        UserContextValidator::new(ISS, AUD, &jwks),
        Err(UserContextError::UnusableKey { key_id: None, .. })
    ));
}

#[test]
fn token_and_task_ids_are_read_and_each_bad_one_has_its_own_error() {
    let (issuer, validator, clock) = setup();
    let mut c = claims(&clock);
    c["jti"] = json!("tok-1");
    c["task_id"] = json!("nightly-42");
    let user = validator
        .validate(&issuer.sign(&c).unwrap(), clock.now())
        .unwrap();
    assert_eq!(user.token_id(), Some("tok-1"));
    assert_eq!(user.task_id(), Some("nightly-42"));

    for bad in [json!(""), json!(7), json!("x".repeat(257)), json!("a\nb")] {
        let err = reject_claims(|c| {
            c.insert("jti".into(), bad.clone());
        });
        assert!(
            matches!(err, UserContextError::BadTokenId { .. }),
            "{bad}: {err:?}"
        );
        assert_eq!(err.kind(), "user-context:bad-jti");
        let err = reject_claims(|c| {
            c.insert("jti".into(), json!("t"));
            c.insert("task_id".into(), bad.clone());
        });
        assert!(
            matches!(err, UserContextError::BadTaskId { .. }),
            "{bad}: {err:?}"
        );
        assert_eq!(err.kind(), "user-context:bad-task-id");
    }
    let err = reject_claims(|c| {
        c.insert("task_id".into(), json!("nightly-42"));
    });
    assert!(
        matches!(&err, UserContextError::BadTokenId { reason } if reason.contains("must carry a `jti`")),
        "{err:?}"
    );
}

#[test]
fn a_validator_with_revocations_refuses_a_revoked_token_id_at_once() {
    let (issuer, validator, clock) = setup();
    let revocations = zt_core::revocation::Revocations::new();
    let validator = validator.with_revocations(revocations.clone());
    let mut c = claims(&clock);
    c["jti"] = json!("tok-9");
    c["task_id"] = json!("t-9");
    let token = issuer.sign(&c).unwrap();
    validator.validate(&token, clock.now()).unwrap();
    revocations.revoke_token_id("tok-9", clock.now() + Duration::from_secs(60));
    let err = validator.validate(&token, clock.now()).unwrap_err();
    assert_eq!(
        err,
        UserContextError::Revoked {
            token_id: "tok-9".into(),
            task_id: Some("t-9".into())
        }
    );
    assert_eq!(err.kind(), "user-context:revoked");
}
