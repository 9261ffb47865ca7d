//! A `ledger` service whose endpoints declare their callers in code.
//!
//! Handlers carry `#[callers(...)]`; an admin API is declared in one place
//! with `#[derive(Declared)]`. The running policy is the combination of
//! those declarations and the operator's policy file: both must allow, and
//! a denial in either wins. Every route must be declared
//! (`require_declared`), so a handler added without callers is refused.
//!
//! ```text
//! cargo run --example declared                  # serve, call as four workloads, print each decision
//! cargo run --example declared -- --print-policy   # print the effective policy and exit
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use zt_authz::Authorizer;
use zt_authz::audit::{AuditEvent, AuditSink};
use zt_authz::policy::Policy;
use zt_client::ZtClient;
use zt_core::matcher::IdMatcher;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::macros::{Combined, Declarations};
use zt_server::{AuthorizeLayer, Declared, ZtServer, callers};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Billing and orders read entries.
#[callers(
    "spiffe://example.org/billing",
    "spiffe://example.org/orders",
    http = "GET /entries/{id}"
)]
async fn get_entry(Path(id): Path<u64>) -> String {
    format!("entry {id}")
}

/// Only billing writes entries.
#[callers("spiffe://example.org/billing", http = "POST /entries")]
async fn post_entry() -> &'static str {
    "entry posted"
}

/// Any workload of the trust domain may probe health.
#[callers(trust_domain = "example.org", http = "GET /health")]
async fn health() -> &'static str {
    "ok"
}

/// The admin API, declared in one place.
#[derive(Declared)]
enum AdminApi {
    #[endpoint(http = "POST /admin/reset", "spiffe://example.org/ns/ops/*")]
    Reset,
}

/// The operator's file: the mesh may call ledger, the old batch job may not.
const POLICY: &str = r#"
version = "ledger-ops-3"

[[rule]]
id = "mesh"
effect = "allow"
callers = ["spiffe://example.org/**"]

[[rule]]
id = "batch-retired"
effect = "deny"
callers = ["spiffe://example.org/batch"]
"#;

/// The engine ledger runs with: its declarations and the policy file.
fn engine() -> Result<Combined, BoxError> {
    let declarations = Declarations::builder()
        .add::<get_entry>()
        .add::<post_entry>()
        .add::<health>()
        .add::<AdminApi>()
        .require_declared(true)
        .build()?;
    Ok(declarations.with_policy(Policy::from_toml_str(POLICY, "ledger-policy.toml")?))
}

/// Prints each decision on one line.
struct PrintDecisions;

impl AuditSink for PrintDecisions {
    fn record(&self, event: &AuditEvent<'_>) {
        println!(
            "    {} {} {} -> {} ({}, rule {})",
            event.caller.map_or("-".into(), |c| c.to_string()),
            event.method,
            event.path,
            event.decision.as_str(),
            event.reason,
            event.rule.unwrap_or("-"),
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    zt_examples::init_tracing();
    let engine = engine()?;
    if std::env::args().any(|a| a == "--print-policy") {
        print!("{}", engine.export());
        return Ok(());
    }
    println!(
        "ledger runs with policy version {}",
        zt_authz::policy::PolicyEngine::version(&engine)
    );
    println!("reset is rule {}", AdminApi::Reset.rule_id());

    let ca = FakeCa::new(TrustDomain::new("example.org")?)?;
    let ttl = Duration::from_secs(300);
    let ledger_id = SpiffeId::new("spiffe://example.org/ledger")?;
    let authorizer = Authorizer::builder(engine)
        .target("ledger")
        .audit_sink(Arc::new(PrintDecisions))
        .build();
    let app = Router::new()
        .route("/entries/{id}", get(get_entry))
        .route("/entries", post(post_entry))
        .route("/health", get(health))
        .route("/admin/reset", post(|| async { "reset" }))
        .route("/debug", get(|| async { "a route nobody declared" }))
        .route_layer(AuthorizeLayer::new(authorizer));
    let server = ZtServer::builder(FakeCaSource::new(ca.clone(), ledger_id.clone(), ttl)?)
        .accept_callers(IdMatcher::in_trust_domain(TrustDomain::new("example.org")?))
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });

    let mut unexpected = Vec::new();
    for (caller, method, path, expected) in [
        ("billing", "POST", "/entries", 200),
        ("orders", "GET", "/entries/7", 200),
        ("orders", "POST", "/entries", 403),
        ("orders", "GET", "/health", 200),
        ("ns/ops/alice", "POST", "/admin/reset", 200),
        ("orders", "POST", "/admin/reset", 403),
        ("batch", "GET", "/health", 403),
        ("billing", "GET", "/debug", 403),
    ] {
        let source = FakeCaSource::new(
            ca.clone(),
            SpiffeId::new(format!("spiffe://example.org/{caller}"))?,
            ttl,
        )?;
        let client = ZtClient::builder(source)
            .pin_server(IdMatcher::exact(ledger_id.clone()))
            .build()?
            .reqwest_client()?;
        let url = format!("https://{addr}{path}");
        let request = match method {
            "POST" => client.post(url),
            _ => client.get(url),
        };
        let status = request.send().await?.status().as_u16();
        if status != expected {
            unexpected.push(format!(
                "{caller} {method} {path}: {status}, expected {expected}"
            ));
        }
    }
    let _ = stop.send(());
    serving.await??;
    if !unexpected.is_empty() {
        return Err(unexpected.join("; ").into());
    }
    println!("every answer was the declared one");
    Ok(())
}
