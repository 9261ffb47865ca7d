//! Credentials that end with the task: a bot does three tasks against a
//! `reports` service, each with its own short-lived token narrowed to what
//! the task needs, and loses each token's access the moment the task
//! completes.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example task_bot
//! ```
//!
//! The development issuer in `zt-dev` plays the token service (RFC 8693
//! token exchange shaped): for each task it issues a token whose `exp` is
//! the task's deadline, whose `aud` and `scope` name only the service and
//! operation of the task, carrying the task ID and a token ID (`jti`).
//! Completing the task revokes the token ID in the revocation list the
//! service checks, so a request made with it afterwards is refused (`401`)
//! even though the token has not expired. The audit lines printed for the
//! service carry the task ID (`task`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::{delete, get, post};
use zt_authz::Authorizer;
use zt_authz::audit::{AuditEvent, AuditSink};
use zt_authz::policy::Policy;
use zt_client::ZtClient;
use zt_core::revocation::Revocations;
use zt_core::task::{TaskCredential, TaskTokenRequest, TaskTokenService};
use zt_core::user::{USER_CONTEXT_HEADER, UserContextValidator};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{DevUserIssuer, FakeCa, FakeCaSource};
use zt_server::{AuthorizeLayer, JwtAuthLayer, ZtServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const BOT: &str = "spiffe://example.org/ci/report-bot";
const REPORTS: &str = "spiffe://example.org/reports";
const ISSUER: &str = "https://tasks.example.org";

/// The reports service's policy: each operation needs its own scope, so a
/// task token grants exactly the operation its task asked for.
const POLICY: &str = r#"
version = "reports-1"

[[rule]]
id = "bot-reads-reports"
effect = "allow"
callers = ["spiffe://example.org/ci/report-bot"]
http = [{ method = "GET", path = "/reports/{id}" }]
scopes = ["reports:read"]

[[rule]]
id = "bot-archives-reports"
effect = "allow"
callers = ["spiffe://example.org/ci/report-bot"]
http = [{ method = "POST", path = "/archive/{id}" }]
scopes = ["reports:archive"]

[[rule]]
id = "bot-prunes-drafts"
effect = "allow"
callers = ["spiffe://example.org/ci/report-bot"]
http = [{ method = "DELETE", path = "/drafts/{id}" }]
scopes = ["drafts:delete"]
"#;

/// Prints the service's audit decisions, one compact line each.
struct PrintAudit;

impl AuditSink for PrintAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        println!(
            "      audit: task={} {} {} -> {} ({})",
            event.task.unwrap_or("-"),
            event.method,
            event.path,
            event.decision,
            event.rule.unwrap_or(event.reason)
        );
    }
}

/// One task: its ID, the request it makes, and the scope it needs.
struct Task {
    id: &'static str,
    method: &'static str,
    path: &'static str,
    scope: &'static str,
}

const TASKS: [Task; 3] = [
    Task {
        id: "export-weekly-report",
        method: "GET",
        path: "/reports/2026-w49",
        scope: "reports:read",
    },
    Task {
        id: "archive-last-month",
        method: "POST",
        path: "/archive/2026-11",
        scope: "reports:archive",
    },
    Task {
        id: "prune-stale-drafts",
        method: "DELETE",
        path: "/drafts/17",
        scope: "drafts:delete",
    },
];

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    zt_examples::init_tracing();
    let ca = FakeCa::new(TrustDomain::new("example.org")?)?;
    let revocations = Revocations::new();
    let issuer = DevUserIssuer::new(ISSUER, "unused")?.with_revocations(revocations.clone());
    let tasks: Arc<dyn TaskTokenService> = Arc::new(issuer.clone());

    // The reports service: mTLS, task tokens validated (audience = its own
    // SPIFFE ID, bound to the calling workload, revoked token IDs refused),
    // then per-request policy.
    let reports_id = SpiffeId::new(REPORTS)?;
    let source = FakeCaSource::new(ca.clone(), reports_id, Duration::from_secs(600))?;
    let app = Router::new()
        .route("/reports/{id}", get(|| async { "report rows" }))
        .route("/archive/{id}", post(|| async { "archived" }))
        .route("/drafts/{id}", delete(|| async { "deleted" }))
        .route_layer(AuthorizeLayer::new(
            Authorizer::builder(Policy::from_toml_str(POLICY, "reports.toml")?)
                .target("reports")
                .audit_sink(Arc::new(PrintAudit))
                .build(),
        ))
        .layer(
            JwtAuthLayer::builder(source.clone(), REPORTS)
                .require_jwt_svid(false)
                .revocations(revocations.clone())
                .user_context(UserContextValidator::new(ISSUER, REPORTS, &issuer.jwks())?)
                .require_user_context(true)
                .target("reports")
                .build(),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = ZtServer::builder(source).build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });

    // The bot: its own SVID, one HTTP client (one keep-alive connection).
    let bot = SpiffeId::new(BOT)?;
    let bot_source = FakeCaSource::new(ca, bot.clone(), Duration::from_secs(600))?;
    let http = ZtClient::builder(bot_source)
        .pin_server(REPORTS.parse()?)
        .build()?
        .reqwest_client()?;
    let send = |method: &str, path: &str, token: &str| {
        let url = format!("https://{addr}{path}");
        let request = match method {
            "GET" => http.get(url),
            "POST" => http.post(url),
            _ => http.delete(url),
        };
        request.header(USER_CONTEXT_HEADER, token.to_owned()).send()
    };

    let mut refused_after_completion = 0;
    for (n, task) in TASKS.iter().enumerate() {
        let deadline = SystemTime::now() + Duration::from_secs(120);
        let request = TaskTokenRequest::new(task.id, BOT, bot.clone(), deadline)
            .audience(REPORTS)
            .scope(task.scope);
        let credential = TaskCredential::obtain(tasks.clone(), &request, SystemTime::now()).await?;
        println!(
            "\n[{}] task {}: token {} for {} with scope `{}`, valid 120 s",
            n + 1,
            task.id,
            &credential.token_id()[..8],
            REPORTS,
            task.scope
        );
        let token = credential.token().to_owned();
        let status = send(task.method, task.path, &token).await?.status();
        println!("    {} {} -> {status}", task.method, task.path);
        if !status.is_success() {
            return Err(format!("task {} was refused: {status}", task.id).into());
        }
        // Another task's operation with this token: outside its scope.
        let other = &TASKS[(n + 1) % TASKS.len()];
        let status = send(other.method, other.path, &token).await?.status();
        println!(
            "    {} {} (not this task's) -> {status}",
            other.method, other.path
        );
        credential.complete()?;
        println!("    task complete: token revoked");
        let status = send(task.method, task.path, &token).await?.status();
        println!(
            "    {} {} after completion -> {status}",
            task.method, task.path
        );
        if status == reqwest::StatusCode::UNAUTHORIZED {
            refused_after_completion += 1;
        }
    }
    println!(
        "\n{refused_after_completion} of {} completed tasks' tokens refused afterwards; \
         {} token IDs on the revocation list",
        TASKS.len(),
        revocations.revoked_token_ids()
    );
    let _ = stop.send(());
    serving.await??;
    if refused_after_completion != TASKS.len() {
        return Err("a completed task's token was still accepted".into());
    }
    Ok(())
}
