//! The OIDC validator against zt's development issuer over HTTPS on
//! loopback: GitHub Actions and Kubernetes shaped tokens, each token rule's
//! own refusal, key rotation, the refetch rate limit, outages up to
//! `max_stale`, and slow, huge, malformed and symmetric JWKS endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use zt_core::time::ManualClock;
use zt_dev::{DevOidcIssuer, JwksFault, github_actions_claims};
use zt_oidc::{FetchOptions, IdentityTemplate, IssuerConfig, OidcError, OidcValidator};

const AUD: &str = "https://deploy.example";
const GITHUB: &str = "spiffe://github.example/repo/{repository:path}/env/{environment}";
const K8S: &str =
    "spiffe://k8s.example/ns/{kubernetes.io.namespace}/sa/{kubernetes.io.serviceaccount.name}";

fn options(issuer: &DevOidcIssuer) -> FetchOptions {
    FetchOptions {
        roots: vec![issuer.root_der()],
        timeout: Duration::from_secs(5),
        refetch_interval: Duration::from_secs(30),
        max_stale: Duration::from_secs(3600),
        ..FetchOptions::default()
    }
}

fn config(issuer: &DevOidcIssuer, template: &str) -> IssuerConfig {
    IssuerConfig::new(
        issuer.issuer(),
        AUD,
        IdentityTemplate::new(template).unwrap(),
    )
    .unwrap()
}

async fn setup(template: &str) -> (DevOidcIssuer, OidcValidator, ManualClock) {
    setup_with(template, |o| o).await
}

async fn setup_with(
    template: &str,
    tweak: impl FnOnce(FetchOptions) -> FetchOptions,
) -> (DevOidcIssuer, OidcValidator, ManualClock) {
    let clock = ManualClock::starting_now();
    let issuer = DevOidcIssuer::start_with_clock(std::sync::Arc::new(clock.clone()))
        .await
        .unwrap();
    let validator = OidcValidator::with_clock(
        vec![config(&issuer, template)],
        tweak(options(&issuer)),
        std::sync::Arc::new(clock.clone()),
    )
    .unwrap();
    (issuer, validator, clock)
}

fn now_secs(clock: &ManualClock) -> u64 {
    use zt_core::time::Clock as _;
    clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn with(mut claims: Map<String, Value>, extra: Value) -> Map<String, Value> {
    claims.extend(extra.as_object().unwrap().clone());
    claims
}

/// The same token with one header field set to `value`.
fn with_header(token: &str, name: &str, value: &str) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    let mut header: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header.insert(name.into(), json!(value));
    let rest: Vec<&str> = parts.collect();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        rest.join(".")
    )
}

/// The same token with its header's `kid` replaced.
fn with_kid(token: &str, kid: &str) -> String {
    with_header(token, "kid", kid)
}

/// The same token with its header's `alg` replaced.
fn with_alg(token: &str, alg: &str) -> String {
    with_header(token, "alg", alg)
}

#[tokio::test]
async fn github_actions_token_becomes_a_spiffe_identity_with_its_claims() {
    let (issuer, validator, _) = setup(GITHUB).await;
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    let verified = validator.validate(&token).await.unwrap();
    assert_eq!(
        verified.identity().to_string(),
        "spiffe://github.example/repo/org/app/env/prod"
    );
    assert_eq!(verified.issuer(), issuer.issuer());
    assert_eq!(verified.subject(), "repo:org/app:environment:prod");
    assert_eq!(verified.claims()["ref"], "refs/heads/main");
    assert_eq!(verified.claims()["runner_environment"], "github-hosted");
    assert_eq!(
        verified.claims()["job_workflow_ref"],
        "org/app/.github/workflows/deploy.yml@refs/heads/main"
    );
    assert!(verified.expiry() > SystemTime::now());
    // Matchers written for SVID callers name it.
    let matcher =
        zt_core::matcher::IdMatcher::parse("spiffe://github.example/repo/org/app/env/*").unwrap();
    assert!(matcher.matches(verified.identity()));
    assert_eq!(issuer.discovery_fetches(), 1);
    assert_eq!(issuer.jwks_fetches(), 1);
    // Cached: a second token costs no fetch.
    let again = issuer.mint_github(AUD, "org/app", "staging").unwrap();
    validator.validate(&again).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn kubernetes_token_identity_from_nested_claims() {
    let (issuer, validator, _) = setup(K8S).await;
    let token = issuer.mint_kubernetes(AUD, "prod", "deployer").unwrap();
    let verified = validator.validate(&token).await.unwrap();
    assert_eq!(
        verified.identity().to_string(),
        "spiffe://k8s.example/ns/prod/sa/deployer"
    );
    assert_eq!(verified.subject(), "system:serviceaccount:prod:deployer");
}

#[tokio::test]
async fn claim_that_cannot_be_a_segment_is_refused_not_rewritten() {
    let (issuer, validator, _) = setup(GITHUB).await;
    for env in ["pr od", "..", "prod/../admin", ""] {
        let token = issuer.mint_github(AUD, "org/app", env).unwrap();
        let err = validator.validate(&token).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::IdentityClaim { claim, .. } if claim == "environment"),
            "{env:?}: {err}"
        );
    }
    let token = issuer
        .mint(
            AUD,
            with(
                github_actions_claims("org/app", "prod"),
                json!({"environment": null}),
            ),
        )
        .unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(OidcError::IdentityClaim { .. })
    ));
}

#[tokio::test]
async fn each_time_rule_has_its_own_refusal_with_bounded_leeway() {
    let (issuer, validator, clock) = setup(GITHUB).await;
    let now = now_secs(&clock);
    let gh = || github_actions_claims("org/app", "prod");

    // Within the 30 s leeway.
    let token = issuer
        .mint(AUD, with(gh(), json!({"exp": now - 10})))
        .unwrap();
    validator.validate(&token).await.unwrap();

    let token = issuer
        .mint(AUD, with(gh(), json!({"exp": now - 40})))
        .unwrap();
    assert_eq!(
        validator.validate(&token).await.unwrap_err(),
        OidcError::Expired { exp: now - 40 }
    );
    let token = issuer
        .mint(AUD, with(gh(), json!({"nbf": now + 120})))
        .unwrap();
    assert_eq!(
        validator.validate(&token).await.unwrap_err(),
        OidcError::NotYetValid { nbf: now + 120 }
    );
    let token = issuer
        .mint(AUD, with(gh(), json!({"iat": now + 120})))
        .unwrap();
    assert_eq!(
        validator.validate(&token).await.unwrap_err(),
        OidcError::IssuedInFuture { iat: now + 120 }
    );
    let mut no_exp = gh();
    no_exp.insert("exp".into(), Value::Null);
    let token = issuer.mint(AUD, no_exp).unwrap();
    // `null` is not a number.
    assert!(matches!(
        validator.validate(&token).await,
        Err(OidcError::InvalidClaim { claim: "exp", .. })
    ));
    let claims =
        json!({"iss": issuer.issuer(), "aud": AUD, "repository": "org/app", "environment": "prod"});
    let token = issuer.sign(&claims).unwrap();
    assert_eq!(
        validator.validate(&token).await.unwrap_err(),
        OidcError::InvalidClaim {
            claim: "exp",
            reason: "missing"
        }
    );
    // The clock moves: a valid token expires.
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&token).await.unwrap();
    clock.advance(Duration::from_secs(300 + 30));
    assert!(matches!(
        validator.validate(&token).await,
        Err(OidcError::Expired { .. })
    ));
}

#[tokio::test]
async fn audience_issuer_algorithm_and_signature_rules() {
    let (issuer, validator, _) = setup(GITHUB).await;
    let gh = || github_actions_claims("org/app", "prod");

    let token = issuer.mint("https://other.example", gh()).unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(OidcError::WrongAudience { .. })
    ));
    // An audience array holding the expected one is accepted.
    let token = issuer
        .mint(AUD, with(gh(), json!({"aud": ["x", AUD]})))
        .unwrap();
    validator.validate(&token).await.unwrap();

    let token = issuer
        .mint(AUD, with(gh(), json!({"iss": "https://evil.example"})))
        .unwrap();
    assert_eq!(
        validator.validate(&token).await.unwrap_err(),
        OidcError::UntrustedIssuer {
            issuer: "https://evil.example".into()
        }
    );

    // Tampered claims: the signature no longer verifies.
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = with(
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap(),
        json!({"environment": "admin"}),
    );
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap()),
        parts[2]
    );
    assert!(matches!(
        validator.validate(&forged).await,
        Err(OidcError::Signature(_))
    ));
    let err = validator.validate(&forged).await.unwrap_err();
    assert!(
        !err.to_string().contains(parts[2]),
        "errors never quote the token"
    );

    assert!(matches!(
        validator.validate("not.a-token").await,
        Err(OidcError::Malformed { .. })
    ));

    // An issuer allowing only RS256 refuses ES256 tokens.
    let only_rsa = OidcValidator::new(
        vec![config(&issuer, GITHUB).algorithms(&["RS256"]).unwrap()],
        options(&issuer),
    )
    .unwrap();
    assert!(matches!(
        only_rsa.validate(&token).await,
        Err(OidcError::AlgorithmNotAllowed { .. })
    ));
}

#[tokio::test]
async fn a_token_whose_alg_does_not_fit_its_key_is_refused_as_a_mismatch() {
    // The issuer's key is P-256 (ES256). A token naming that key with an
    // algorithm the issuer allows but the key is not for is refused for the
    // mismatch: the key is never used with an algorithm of another family.
    let (issuer, validator, _) = setup(GITHUB).await;
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&token).await.unwrap();
    for alg in ["RS256", "PS256", "ES384", "EdDSA"] {
        let err = validator
            .validate(&with_alg(&token, alg))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                OidcError::Signature(zt_core::jose::JoseError::AlgorithmMismatch { .. })
            ),
            "{alg}: {err:?}"
        );
    }
}

#[tokio::test]
async fn rotation_at_the_issuer_is_picked_up_without_restart() {
    let (issuer, validator, clock) = setup(GITHUB).await;
    let old = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&old).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);

    // Rotation keeping the old key: both verify after one refetch.
    clock.advance(Duration::from_secs(31));
    issuer.rotate(true).unwrap();
    let kept = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&kept).await.unwrap();
    validator.validate(&old).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 2);

    // Rotation dropping the old keys.
    clock.advance(Duration::from_secs(31));
    let new_kid = issuer.rotate(false).unwrap();
    let new = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    let verified = validator.validate(&new).await.unwrap();
    assert_eq!(verified.subject(), "repo:org/app:environment:prod");
    assert_eq!(
        issuer.jwks_fetches(),
        3,
        "the unknown kid {new_kid} caused one refetch"
    );
    // The old keys were dropped at the issuer, so their tokens no longer verify.
    for token in [&old, &kept] {
        assert!(matches!(
            validator.validate(token).await,
            Err(OidcError::UnknownKey { .. })
        ));
    }
}

#[tokio::test]
async fn flood_of_unknown_kids_is_bounded_fetches() {
    let (issuer, validator, clock) = setup(GITHUB).await;
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&token).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);

    for i in 0..200 {
        let err = validator
            .validate(&with_kid(&token, &format!("bogus-{i}")))
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::UnknownKey { .. }), "{err}");
    }
    // Within the refetch interval: no fetch at all.
    assert_eq!(issuer.jwks_fetches(), 1);

    clock.advance(Duration::from_secs(30));
    for i in 0..200 {
        let _ = validator
            .validate(&with_kid(&token, &format!("again-{i}")))
            .await;
    }
    assert_eq!(issuer.jwks_fetches(), 2, "one fetch per refetch interval");
    // The real kid still verifies throughout.
    validator.validate(&token).await.unwrap();
}

#[tokio::test]
async fn outage_keeps_last_good_keys_until_max_stale_then_fails_closed() {
    let (issuer, validator, clock) = setup(GITHUB).await;
    let token = || issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&token()).await.unwrap();

    issuer.set_fault(JwksFault::Unavailable);
    clock.advance(Duration::from_secs(3000));
    validator.validate(&token()).await.unwrap();

    clock.advance(Duration::from_secs(601));
    let fetches = issuer.jwks_fetches();
    let err = validator.validate(&token()).await.unwrap_err();
    assert!(matches!(err, OidcError::KeysStale { .. }), "{err}");
    assert_eq!(issuer.jwks_fetches(), fetches + 1, "one refresh was tried");
    // Still closed while refetches are rate-limited.
    assert!(matches!(
        validator.validate(&token()).await,
        Err(OidcError::KeysStale { .. })
    ));

    // The issuer recovers: after the refetch interval keys are fresh again.
    issuer.set_fault(JwksFault::None);
    clock.advance(Duration::from_secs(30));
    validator.validate(&token()).await.unwrap();
}

#[tokio::test]
async fn slow_jwks_does_not_stall_validation_beyond_the_timeout() {
    let (issuer, validator, clock) = setup_with(GITHUB, |o| FetchOptions {
        timeout: Duration::from_millis(500),
        ..o
    })
    .await;
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&token).await.unwrap();

    issuer.set_fault(JwksFault::Slow(Duration::from_secs(30)));
    clock.advance(Duration::from_secs(30));
    let started = Instant::now();
    let err = validator
        .validate(&with_kid(&token, "unknown"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, OidcError::UnknownKey { .. }), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Known keys keep working while the endpoint is slow.
    let started = Instant::now();
    validator.validate(&token).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));

    // With nothing cached, the fetch's own error comes back in time.
    let (issuer, validator, _) = setup_with(GITHUB, |o| FetchOptions {
        timeout: Duration::from_millis(500),
        ..o
    })
    .await;
    issuer.set_fault(JwksFault::Slow(Duration::from_secs(30)));
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    let started = Instant::now();
    let err = validator.validate(&token).await.unwrap_err();
    assert!(matches!(err, OidcError::Fetch { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

async fn first_fetch_error(fault: JwksFault) -> OidcError {
    let (issuer, validator, _) = setup_with(GITHUB, |o| FetchOptions {
        max_body: 64 * 1024,
        ..o
    })
    .await;
    issuer.set_fault(fault);
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&token).await.unwrap_err()
}

#[tokio::test]
async fn huge_jwks_refused() {
    let err = first_fetch_error(JwksFault::Huge(1024 * 1024)).await;
    assert!(
        matches!(err, OidcError::ResponseTooLarge { limit: 65536, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_jwks_refused() {
    let err = first_fetch_error(JwksFault::Malformed).await;
    assert!(matches!(err, OidcError::MalformedDocument { .. }), "{err}");
}

#[tokio::test]
async fn symmetric_jwks_refused() {
    let err = first_fetch_error(JwksFault::Symmetric).await;
    assert!(matches!(err, OidcError::SymmetricKey { .. }), "{err}");
}

#[tokio::test]
async fn unavailable_issuer_without_cached_keys_fails_closed() {
    let (issuer, validator, clock) = setup(GITHUB).await;
    issuer.set_fault(JwksFault::Unavailable);
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    let err = validator.validate(&token).await.unwrap_err();
    assert!(
        matches!(&err, OidcError::Fetch { reason, .. } if reason.contains("503")),
        "{err}"
    );
    // Rate-limited: no second fetch, still closed.
    let err = validator.validate(&token).await.unwrap_err();
    assert!(matches!(err, OidcError::Fetch { .. }), "{err}");
    assert_eq!(issuer.jwks_fetches(), 1);
    // Back up: served after the refetch interval.
    issuer.set_fault(JwksFault::None);
    clock.advance(Duration::from_secs(30));
    validator.validate(&token).await.unwrap();
}

#[tokio::test]
async fn discovery_naming_another_issuer_refused() {
    let (issuer, validator, _) = setup(GITHUB).await;
    issuer.set_discovery_issuer(Some(format!("{}/", issuer.issuer())));
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(OidcError::IssuerMismatch { .. })
    ));
}

#[tokio::test]
async fn issuer_certificate_from_an_untrusted_root_refused() {
    let issuer = DevOidcIssuer::start().await.unwrap();
    let other = DevOidcIssuer::start().await.unwrap();
    let validator = OidcValidator::new(
        vec![config(&issuer, GITHUB)],
        FetchOptions {
            roots: vec![other.root_der()],
            ..FetchOptions::default()
        },
    )
    .unwrap();
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(OidcError::Fetch { .. })
    ));
    assert_eq!(issuer.jwks_fetches(), 0);
}

#[tokio::test]
async fn background_refresh_honours_max_age_bounds() {
    let (issuer, validator, _) = setup_with(GITHUB, |o| FetchOptions {
        min_refresh: Duration::from_millis(50),
        max_refresh: Duration::from_millis(100),
        ..o
    })
    .await;
    // The issuer asks for an hour; the upper bound caps it at 100 ms.
    issuer.set_max_age(Some(3600));
    validator.spawn_refresh();
    let deadline = Instant::now() + Duration::from_secs(10);
    while issuer.jwks_fetches() < 3 {
        assert!(Instant::now() < deadline, "background refresh did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(validator);
}

#[tokio::test]
async fn a_token_arriving_during_the_first_background_fetch_waits_for_it() {
    let (issuer, validator, _) = setup(GITHUB).await;
    // The JWKS answers after 300 ms: long enough to be asked mid-fetch.
    issuer.set_fault(JwksFault::Slow(Duration::from_millis(300)));
    validator.spawn_refresh();
    let deadline = Instant::now() + Duration::from_secs(10);
    while issuer.jwks_fetches() == 0 {
        assert!(Instant::now() < deadline, "background refresh did not run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The background fetch is under way and the refetch rate limit forbids
    // a second one: the token waits for the keys instead of being refused.
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    let verified = validator.validate(&token).await.unwrap();
    assert_eq!(
        verified.identity().to_string(),
        "spiffe://github.example/repo/org/app/env/prod"
    );
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flood_of_unknown_kids_is_one_fetch() {
    let (issuer, validator, clock) = setup(GITHUB).await;
    let token = issuer.mint_github(AUD, "org/app", "prod").unwrap();
    validator.validate(&token).await.unwrap();
    clock.advance(Duration::from_secs(30));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let validator = validator.clone();
        let forged = with_kid(&token, &format!("bogus-{i}"));
        tasks.push(tokio::spawn(
            async move { validator.validate(&forged).await },
        ));
    }
    for task in tasks {
        assert!(matches!(
            task.await.unwrap(),
            Err(OidcError::UnknownKey { .. })
        ));
    }
    assert_eq!(
        issuer.jwks_fetches(),
        2,
        "100 concurrent unknown kids, one refetch"
    );
}

#[tokio::test]
async fn policy_names_oidc_callers_with_svid_matchers() {
    use zt_authz::policy::{Policy, Request};
    const POLICY: &str = r#"
version = "v1"

[[rule]]
id = "app-deploys-to-prod"
effect = "allow"
callers = ["spiffe://github.example/repo/org/app/env/prod"]
http = [{ method = "POST", path = "/deploy" }]
"#;
    let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
    let (issuer, validator, _) = setup(GITHUB).await;

    let prod = validator
        .validate(&issuer.mint_github(AUD, "org/app", "prod").unwrap())
        .await
        .unwrap();
    let (allowed, rule) = policy.decide(&Request::new(Some(prod.identity()), "POST", "/deploy"));
    assert!(allowed);
    assert_eq!(rule.map(|r| r.id()), Some("app-deploys-to-prod"));

    for (repo, env) in [("org/app", "staging"), ("org/other", "prod")] {
        let other = validator
            .validate(&issuer.mint_github(AUD, repo, env).unwrap())
            .await
            .unwrap();
        let (allowed, _) = policy.decide(&Request::new(Some(other.identity()), "POST", "/deploy"));
        assert!(!allowed, "{}", other.identity());
    }
}
