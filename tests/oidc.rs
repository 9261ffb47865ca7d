//! OIDC workload tokens as callers, end to end on 127.0.0.1: zt's
//! development issuers serve discovery and JWKS over HTTPS, a zt server
//! accepts token callers (no client certificate) and mTLS callers side by
//! side, the token's identity is the caller `AuthorizeLayer` decides on, and
//! its claims are the context that rules' `when` conditions read from a
//! policy file. Refusals are `401` with no detail, the reason in the audit
//! record.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::{get, post};
use serde_json::json;
use zt_authz::Authorizer;
use zt_authz::policy::PolicyStore;
use zt_client::ZtClient;
use zt_core::revocation::Revocations;
use zt_core::source::StaticSource;
use zt_core::time::system_clock;
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{DevOidcIssuer, FakeCa, FakeCaSource, github_actions_claims};
use zt_oidc::{FetchOptions, IdentityTemplate, IssuerConfig, OidcValidator};
use zt_server::{AuthorizeLayer, OidcAuthLayer, VerifiedOidcToken, ZtServer};
use zt_tests::audit_capture::AuditCapture;

mod common;
use common::{Running, field, serve, single};

const TTL: Duration = Duration::from_secs(300);
const AUD: &str = "https://deploy-gate.example";
const GATE: &str = "spiffe://example.org/deploy-gate";
const GITHUB: &str = "spiffe://github.example/repo/{repository:path}/env/{environment}";
const K8S: &str =
    "spiffe://k8s.example/ns/{kubernetes.io.namespace}/sa/{kubernetes.io.serviceaccount.name}";

const POLICY: &str = r#"
version = "deploy-gate-1"

[[rule]]
id = "deploy-prod"
effect = "allow"
callers = ["spiffe://github.example/repo/org/app/env/prod"]
http = [{ method = "POST", path = "/deploy" }]
when = { repository = "org/app", ref = "refs/heads/main", environment = "prod", runner_environment = "github-hosted" }

[[rule]]
id = "k8s-status"
effect = "allow"
callers = ["spiffe://k8s.example/ns/prod/sa/deployer"]
http = [{ method = "GET", path = "/status" }]

[[rule]]
id = "ops-status"
effect = "allow"
callers = ["spiffe://example.org/ops"]
http = [{ method = "GET", path = "/status" }]
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Gate {
    ca: FakeCa,
    github: DevOidcIssuer,
    k8s: DevOidcIssuer,
    revocations: Revocations,
    running: Running,
    _policy_dir: tempfile::TempDir,
}

impl Gate {
    /// A deploy gate trusting two development issuers (GitHub- and
    /// Kubernetes-shaped), its policy read from a file.
    async fn start() -> Self {
        let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
        let github = DevOidcIssuer::start().await.unwrap();
        let k8s = DevOidcIssuer::start().await.unwrap();
        let validator = OidcValidator::new(
            vec![
                IssuerConfig::new(github.issuer(), AUD, IdentityTemplate::new(GITHUB).unwrap())
                    .unwrap(),
                IssuerConfig::new(k8s.issuer(), AUD, IdentityTemplate::new(K8S).unwrap()).unwrap(),
            ],
            FetchOptions {
                roots: vec![github.root_der(), k8s.root_der()],
                timeout: Duration::from_secs(5),
                ..FetchOptions::default()
            },
        )
        .unwrap();
        let revocations = Revocations::new();
        let tokens = OidcAuthLayer::builder(validator)
            .revocations(revocations.clone())
            .target("deploy-gate")
            .build();

        let policy_dir = tempfile::tempdir().unwrap();
        let path = policy_dir.path().join("policy.toml");
        std::fs::write(&path, POLICY).unwrap();
        let authorizer = Authorizer::builder(PolicyStore::from_file(&path).unwrap())
            .target("deploy-gate")
            .revocations(revocations.clone())
            .build();
        let app = Router::new()
            .route(
                "/deploy",
                post(|token: axum::Extension<VerifiedOidcToken>| async move {
                    format!("deploying for {}", token.identity())
                }),
            )
            .route("/status", get(|| async { "ok" }))
            .route_layer(AuthorizeLayer::new(authorizer));
        let source = FakeCaSource::new(ca.clone(), id(GATE), TTL).unwrap();
        let server = ZtServer::builder(source)
            .token_callers(tokens)
            .build()
            .unwrap();
        let running = serve(server, app).await;
        Self {
            ca,
            github,
            k8s,
            revocations,
            running,
            _policy_dir: policy_dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// A client holding no SVID: it verifies the gate's SVID against the
    /// trust bundle and presents no certificate.
    fn token_caller(&self) -> reqwest::Client {
        let mut config = zt_tls::token_caller_client_config(
            BundleSet::new().with(self.ca.bundle()),
            GATE.parse().unwrap(),
            Arc::new(zt_tls::default_provider()),
            system_clock(),
        )
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .no_proxy()
            .build()
            .unwrap()
    }

    /// A client with an X.509-SVID for `name`.
    fn mtls_caller(&self, name: &str) -> reqwest::Client {
        let source = FakeCaSource::new(
            self.ca.clone(),
            id(&format!("spiffe://example.org/{name}")),
            TTL,
        )
        .unwrap();
        ZtClient::builder(source)
            .pin_server(GATE.parse().unwrap())
            .build()
            .unwrap()
            .reqwest_client()
            .unwrap()
    }
}

async fn deploy(client: &reqwest::Client, addr: SocketAddr, token: Option<&str>) -> (u16, String) {
    let mut request = client.post(format!("https://{addr}/deploy"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

const UNAUTHENTICATED: &str = r#"{"error":"unauthenticated"}"#;

#[tokio::test]
async fn a_github_actions_job_deploys_from_main_and_not_from_a_feature_branch() {
    let (audit, _guard) = AuditCapture::install();
    let gate = Gate::start().await;
    let ci = gate.token_caller();

    // org/app, refs/heads/main, environment prod, GitHub-hosted runner.
    let token = gate.github.mint_github(AUD, "org/app", "prod").unwrap();
    assert_eq!(
        deploy(&ci, gate.addr(), Some(&token)).await,
        (
            200,
            "deploying for spiffe://github.example/repo/org/app/env/prod".into()
        )
    );
    let event = single(&audit);
    assert_eq!(field(&event, "decision"), "allow");
    assert_eq!(field(&event, "rule"), "deploy-prod");
    assert_eq!(
        field(&event, "caller"),
        "spiffe://github.example/repo/org/app/env/prod"
    );

    // The same job from a feature branch: the caller matches, the `ref`
    // condition does not; the caller learns nothing more than 403.
    let mut claims = github_actions_claims("org/app", "prod");
    claims.insert("ref".into(), json!("refs/heads/feature"));
    let feature = gate.github.mint(AUD, claims).unwrap();
    assert_eq!(
        deploy(&ci, gate.addr(), Some(&feature)).await,
        (403, r#"{"error":"permission_denied"}"#.into())
    );
    let event = single(&audit);
    assert_eq!(field(&event, "decision"), "deny");
    assert_eq!(field(&event, "reason"), "condition-not-met");
    assert_eq!(field(&event, "rule"), "deploy-prod");
    assert_eq!(
        field(&event, "condition"),
        r#"ref = "refs/heads/main" (differs)"#
    );

    // A self-hosted runner.
    let mut claims = github_actions_claims("org/app", "prod");
    claims.insert("runner_environment".into(), json!("self-hosted"));
    let self_hosted = gate.github.mint(AUD, claims).unwrap();
    assert_eq!(deploy(&ci, gate.addr(), Some(&self_hosted)).await.0, 403);
    assert_eq!(
        field(&single(&audit), "condition"),
        r#"runner_environment = "github-hosted" (differs)"#
    );

    // Another repository is another caller: no rule names it.
    let other = gate.github.mint_github(AUD, "org/other", "prod").unwrap();
    assert_eq!(deploy(&ci, gate.addr(), Some(&other)).await.0, 403);
    let event = single(&audit);
    assert_eq!(field(&event, "reason"), "no-matching-rule");
    assert_eq!(
        field(&event, "caller"),
        "spiffe://github.example/repo/org/other/env/prod"
    );
}

#[tokio::test]
async fn token_callers_without_a_valid_token_get_401_and_the_reason_is_audited() {
    let (audit, _guard) = AuditCapture::install();
    let gate = Gate::start().await;
    let ci = gate.token_caller();
    let refused = |reason: &str| {
        let event = single(&audit);
        assert_eq!(field(&event, "decision"), "deny");
        assert_eq!(field(&event, "reason"), reason, "{event:?}");
        assert_eq!(field(&event, "path"), "/deploy");
        assert_eq!(field(&event, "caller"), "-");
    };

    // No token.
    assert_eq!(
        deploy(&ci, gate.addr(), None).await,
        (401, UNAUTHENTICATED.into())
    );
    refused("oidc:missing");

    // Not a bearer token.
    let response = ci
        .post(format!("https://{}/deploy", gate.addr()))
        .header("authorization", "Basic b3JnOmFwcA==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    refused("oidc:malformed-header");

    // Expired ten minutes ago (beyond the 30 s leeway).
    let mut claims = github_actions_claims("org/app", "prod");
    let t = now();
    claims.insert("iat".into(), json!(t - 900));
    claims.insert("nbf".into(), json!(t - 900));
    claims.insert("exp".into(), json!(t - 600));
    let expired = gate.github.mint(AUD, claims).unwrap();
    let (status, body) = deploy(&ci, gate.addr(), Some(&expired)).await;
    assert_eq!((status, body.as_str()), (401, UNAUTHENTICATED));
    refused("oidc:expired");

    // A well-formed token from an issuer that is not on the allow-list.
    let rogue = DevOidcIssuer::start().await.unwrap();
    let foreign = rogue.mint_github(AUD, "org/app", "prod").unwrap();
    assert_eq!(
        deploy(&ci, gate.addr(), Some(&foreign)).await,
        (401, UNAUTHENTICATED.into())
    );
    refused("oidc:untrusted-issuer");
    assert_eq!(
        rogue.jwks_fetches(),
        0,
        "an untrusted issuer is never asked"
    );

    // Signed by the trusted issuer for another audience.
    let elsewhere = gate
        .github
        .mint_github("https://other.example", "org/app", "prod")
        .unwrap();
    assert_eq!(deploy(&ci, gate.addr(), Some(&elsewhere)).await.0, 401);
    refused("oidc:wrong-aud");

    // A valid token whose `jti` is revoked.
    let token = gate.github.mint_github(AUD, "org/app", "prod").unwrap();
    assert_eq!(deploy(&ci, gate.addr(), Some(&token)).await.0, 200);
    assert_eq!(field(&single(&audit), "decision"), "allow");
    let jti = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    gate.revocations
        .revoke_token_id(&jti, SystemTime::now() + Duration::from_secs(600));
    assert_eq!(deploy(&ci, gate.addr(), Some(&token)).await.0, 401);
    refused("oidc:token-revoked");

    // A gRPC call without a token: UNAUTHENTICATED in the trailers-only
    // response.
    let response = ci
        .post(format!("https://{}/deploy", gate.addr()))
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "16");
    refused("oidc:missing");
}

#[tokio::test]
async fn a_kubernetes_service_account_is_named_by_an_ordinary_caller_rule() {
    let (audit, _guard) = AuditCapture::install();
    let gate = Gate::start().await;
    let pod = gate.token_caller();
    let status = |token: String| {
        let pod = pod.clone();
        let addr = gate.addr();
        async move {
            pod.get(format!("https://{addr}/status"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    let deployer = gate.k8s.mint_kubernetes(AUD, "prod", "deployer").unwrap();
    assert_eq!(status(deployer).await, 200);
    let event = single(&audit);
    assert_eq!(field(&event, "rule"), "k8s-status");
    assert_eq!(
        field(&event, "caller"),
        "spiffe://k8s.example/ns/prod/sa/deployer"
    );

    let dev = gate.k8s.mint_kubernetes(AUD, "dev", "deployer").unwrap();
    assert_eq!(status(dev).await, 403);
    let event = single(&audit);
    assert_eq!(field(&event, "reason"), "no-matching-rule");
    assert_eq!(
        field(&event, "caller"),
        "spiffe://k8s.example/ns/dev/sa/deployer"
    );

    // The identity itself revoked: refused before policy.
    gate.revocations
        .revoke_id(id("spiffe://k8s.example/ns/prod/sa/deployer"));
    let deployer = gate.k8s.mint_kubernetes(AUD, "prod", "deployer").unwrap();
    assert_eq!(status(deployer).await, 401);
    assert_eq!(field(&single(&audit), "reason"), "oidc:identity-revoked");
}

#[tokio::test]
async fn mtls_callers_are_served_as_before_next_to_token_callers() {
    let (audit, _guard) = AuditCapture::install();
    let gate = Gate::start().await;

    // An SVID caller named by a rule: no token needed, the peer is the
    // caller.
    let ops = gate.mtls_caller("ops");
    let response = ops
        .get(format!("https://{}/status", gate.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let event = single(&audit);
    assert_eq!(field(&event, "rule"), "ops-status");
    assert_eq!(field(&event, "caller"), "spiffe://example.org/ops");

    // An SVID caller no rule names.
    let billing = gate.mtls_caller("billing");
    let response = billing
        .get(format!("https://{}/status", gate.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(field(&single(&audit), "reason"), "no-matching-rule");

    // A client certificate that does not verify is still refused at the
    // handshake, even though a client without one may connect.
    // The client trusts the gate's bundle, so it is the gate that refuses.
    let other_ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let forged = Arc::new(StaticSource::new(
        other_ca
            .issue_x509_svid(&id("spiffe://example.org/ops"), TTL)
            .unwrap(),
        BundleSet::new().with(gate.ca.bundle()),
    ));
    let forged = ZtClient::builder(forged)
        .pin_server(GATE.parse().unwrap())
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap();
    assert!(
        forged
            .get(format!("https://{}/status", gate.addr()))
            .send()
            .await
            .is_err(),
        "a forged client certificate must not be served"
    );
    assert!(audit.take().is_empty());
}

#[tokio::test]
async fn on_an_mtls_route_a_token_names_the_caller_and_the_peer_is_still_checked() {
    let (audit, _guard) = AuditCapture::install();
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let github = DevOidcIssuer::start().await.unwrap();
    let validator = OidcValidator::new(
        vec![
            IssuerConfig::new(github.issuer(), AUD, IdentityTemplate::new(GITHUB).unwrap())
                .unwrap(),
        ],
        FetchOptions {
            roots: vec![github.root_der()],
            ..FetchOptions::default()
        },
    )
    .unwrap();
    let revocations = Revocations::new();
    let authorizer = Authorizer::builder(
        zt_authz::policy::Policy::from_toml_str(POLICY, "policy.toml").unwrap(),
    )
    .target("deploy-gate")
    .revocations(revocations.clone())
    .build();
    // An ordinary mTLS server (no token callers); the OIDC layer on the
    // routes, tokens optional for mTLS callers.
    let app = Router::new()
        .route("/deploy", post(|| async { "deploying" }))
        .route("/status", get(|| async { "ok" }))
        .route_layer(AuthorizeLayer::new(authorizer))
        .route_layer(
            OidcAuthLayer::builder(validator)
                .require_token(false)
                .revocations(revocations.clone())
                .target("deploy-gate")
                .build(),
        );
    let source = FakeCaSource::new(ca.clone(), id(GATE), TTL).unwrap();
    let running = serve(ZtServer::builder(source).build().unwrap(), app).await;
    let client = |name: &str| {
        let source =
            FakeCaSource::new(ca.clone(), id(&format!("spiffe://example.org/{name}")), TTL)
                .unwrap();
        ZtClient::builder(source)
            .pin_server(GATE.parse().unwrap())
            .build()
            .unwrap()
            .reqwest_client()
            .unwrap()
    };

    // A runner with an SVID and the job's token: the token's identity is
    // the caller, its claims the context.
    let runner = client("ci/runner");
    let token = github.mint_github(AUD, "org/app", "prod").unwrap();
    assert_eq!(deploy(&runner, running.addr, Some(&token)).await.0, 200);
    let event = single(&audit);
    assert_eq!(field(&event, "rule"), "deploy-prod");
    assert_eq!(
        field(&event, "caller"),
        "spiffe://github.example/repo/org/app/env/prod"
    );

    // Without a token the runner is itself: no rule lets it deploy.
    assert_eq!(deploy(&runner, running.addr, None).await.0, 403);
    let event = single(&audit);
    assert_eq!(field(&event, "caller"), "spiffe://example.org/ci/runner");
    assert_eq!(field(&event, "reason"), "no-matching-rule");

    // A token that is present must be valid, even where tokens are
    // optional.
    let mut claims = github_actions_claims("org/app", "prod");
    claims.insert("exp".into(), json!(now() - 600));
    claims.insert("iat".into(), json!(now() - 900));
    claims.insert("nbf".into(), json!(now() - 900));
    let expired = github.mint(AUD, claims).unwrap();
    assert_eq!(deploy(&runner, running.addr, Some(&expired)).await.0, 401);
    let event = single(&audit);
    assert_eq!(field(&event, "reason"), "oidc:expired");
    assert_eq!(field(&event, "caller"), "spiffe://example.org/ci/runner");

    // A revoked peer gets nothing through with a valid token.
    revocations.revoke_id(id("spiffe://example.org/ci/runner"));
    assert_eq!(deploy(&runner, running.addr, Some(&token)).await.0, 401);
    assert_eq!(field(&single(&audit), "reason"), "peer:revoked");
}

#[tokio::test]
async fn a_token_caller_refuses_a_server_outside_its_pin_or_bundle() {
    let gate = Gate::start().await;
    let token = gate.github.mint_github(AUD, "org/app", "prod").unwrap();
    let client = |bundles: BundleSet, pin: &str| {
        let mut config = zt_tls::token_caller_client_config(
            bundles,
            pin.parse().unwrap(),
            Arc::new(zt_tls::default_provider()),
            system_clock(),
        )
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .no_proxy()
            .build()
            .unwrap()
    };
    let refusal = |client: reqwest::Client| {
        let token = token.clone();
        let addr = gate.addr();
        async move {
            let err = client
                .post(format!("https://{addr}/deploy"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap_err();
            zt_tls::PeerRejected::find(&err)
                .unwrap_or_else(|| panic!("not a PeerRejected: {err:?}"))
                .error()
                .to_string()
        }
    };

    let wrong_pin = client(
        BundleSet::new().with(gate.ca.bundle()),
        "spiffe://example.org/other",
    );
    let reason = refusal(wrong_pin).await;
    assert!(
        reason.contains(GATE) && reason.contains("spiffe://example.org/other"),
        "{reason}"
    );

    let other_ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let wrong_bundle = client(BundleSet::new().with(other_ca.bundle()), GATE);
    let reason = refusal(wrong_bundle).await;
    assert!(reason.contains("X.509-SVID was rejected"), "{reason}");

    // The right pin and bundle: served.
    let right = client(BundleSet::new().with(gate.ca.bundle()), GATE);
    assert_eq!(deploy(&right, gate.addr(), Some(&token)).await.0, 200);
}
