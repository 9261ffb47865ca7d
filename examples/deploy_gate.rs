//! A deployment gate for CI jobs that hold no SVID: each job proves itself
//! with its platform's OIDC token, and policy decides on the job's identity
//! and its context (repository, branch, environment, runner).
//!
//! Run it with:
//!
//! ```text
//! cargo run --example deploy_gate
//! ```
//!
//! A development OIDC issuer (`zt_dev::DevOidcIssuer`) plays GitHub Actions:
//! it serves discovery and JWKS over HTTPS on 127.0.0.1 and mints tokens
//! shaped like a GitHub Actions job's. The gate is a zt server that
//! presents its SVID and accepts token callers
//! (`ServerBuilder::token_callers`): a client without a certificate may
//! connect, and each of its requests must carry a valid token. The token's
//! identity (`spiffe://github.example/repo/org/app/env/prod`, made by the
//! issuer's identity template) is the caller, and its claims are the
//! context of the rule's `when` conditions. A job from `refs/heads/main` is
//! allowed to deploy; the same job from a feature branch is refused, and
//! the audit line names the condition that failed; a job without a token
//! never reaches the policy.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::json;
use zt_authz::Authorizer;
use zt_authz::audit::{AuditEvent, AuditSink};
use zt_authz::policy::Policy;
use zt_core::time::system_clock;
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{DevOidcIssuer, FakeCa, FakeCaSource, github_actions_claims};
use zt_oidc::{FetchOptions, IdentityTemplate, IssuerConfig, OidcValidator};
use zt_server::{AuthorizeLayer, OidcAuthLayer, ZtServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const GATE: &str = "spiffe://example.org/deploy-gate";
/// The audience CI jobs request their tokens for.
const AUDIENCE: &str = "https://deploy-gate.example.org";

/// Deploy to prod only from repository `org/app`, ref `refs/heads/main`,
/// environment `prod`, on a GitHub-hosted runner.
const POLICY: &str = r#"
version = "deploy-gate-1"

[[rule]]
id = "deploy-prod"
effect = "allow"
callers = ["spiffe://github.example/repo/org/app/env/prod"]
http = [{ method = "POST", path = "/deploy" }]
when = { repository = "org/app", ref = "refs/heads/main", environment = "prod", runner_environment = "github-hosted" }
"#;

/// Prints the gate's audit decisions, one compact line each.
struct PrintAudit;

impl AuditSink for PrintAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        println!(
            "      audit: caller={} {} {} -> {} ({}{})",
            event
                .caller
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            event.method,
            event.path,
            event.decision,
            event.rule.unwrap_or(event.reason),
            event
                .condition
                .map_or_else(String::new, |c| format!("; failed: {c}")),
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    zt_examples::init_tracing();

    // The OIDC provider of the CI platform.
    let github = DevOidcIssuer::start().await?;
    let validator = OidcValidator::new(
        vec![IssuerConfig::new(
            github.issuer(),
            AUDIENCE,
            IdentityTemplate::new(
                "spiffe://github.example/repo/{repository:path}/env/{environment}",
            )?,
        )?],
        FetchOptions {
            roots: vec![github.root_der()],
            ..FetchOptions::default()
        },
    )?;
    validator.spawn_refresh();

    // The gate: its own SVID, token callers admitted through the OIDC
    // layer, every request decided by the policy.
    let ca = FakeCa::new(TrustDomain::new("example.org")?)?;
    let source = FakeCaSource::new(ca.clone(), SpiffeId::new(GATE)?, Duration::from_secs(600))?;
    let app = Router::new()
        .route("/deploy", post(|| async { "deployment started" }))
        .route_layer(AuthorizeLayer::new(
            Authorizer::builder(Policy::from_toml_str(POLICY, "deploy-gate.toml")?)
                .target("deploy-gate")
                .audit_sink(Arc::new(PrintAudit))
                .build(),
        ));
    let server = ZtServer::builder(source)
        .token_callers(
            OidcAuthLayer::builder(validator)
                .target("deploy-gate")
                .build(),
        )
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });

    // A CI job's HTTP client: no SVID; it verifies the gate's SVID against
    // the trust bundle and the gate's SPIFFE ID.
    let mut tls = zt_tls::token_caller_client_config(
        BundleSet::new().with(ca.bundle()),
        GATE.parse()?,
        Arc::new(zt_tls::default_provider()),
        system_clock(),
    )?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()?;

    let main = github.mint_github(AUDIENCE, "org/app", "prod")?;
    let mut claims = github_actions_claims("org/app", "prod");
    claims.insert("ref".into(), json!("refs/heads/feature"));
    let feature = github.mint(AUDIENCE, claims)?;
    let jobs = [
        ("deploy job on refs/heads/main", Some(main), 200),
        ("deploy job on refs/heads/feature", Some(feature), 403),
        ("job without a token", None, 401),
    ];
    let mut unexpected = Vec::new();
    for (n, (job, token, expected)) in jobs.into_iter().enumerate() {
        println!("\n[{}] {job}", n + 1);
        let mut request = http.post(format!("https://{addr}/deploy"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        println!("    POST /deploy -> {status} {body}");
        if status.as_u16() == 401 {
            println!(
                "      refused before policy; the reason is in the `zt::audit` log (RUST_LOG=zt::audit=warn)"
            );
        }
        if status.as_u16() != expected {
            unexpected.push(format!("{job}: {status}, expected {expected}"));
        }
    }

    let _ = stop.send(());
    serving.await??;
    if !unexpected.is_empty() {
        return Err(unexpected.join("; ").into());
    }
    println!("\nallowed from main, refused from a feature branch, refused without a token");
    Ok(())
}
