//! `zt-peer`: a zt server or client in a process of its own, with its
//! identity from a SPIFFE Workload API (`SPIFFE_ENDPOINT_SOCKET`), for tests
//! in which SPIRE's `unix` attestor must tell the caller and the callee apart.
//!
//! ```text
//! zt-peer server [--accept PATTERN] [--policy FILE] [--jwt-audience AUD] [--start-timeout SECS]
//! zt-peer client --url URL --pin PATTERN [--n N] [--interval-ms MS] [--duration-secs S]
//!                [--jwt-audience AUD] [--start-timeout SECS]
//! ```
//!
//! Like the Go peers it prints one JSON object per line on stdout, each with
//! an `"event"`:
//!
//! - server: `listening` (`addr`, `spiffe_id`, `serial_hex`,
//!   `jwt_authorities`: how many JWT keys its bundles hold), `request`
//!   (`peer_id`, `peer_serial_hex`, `path`, `jwt_subject`), `svid_update`
//!   (`serial_hex`, `not_after_unix`, `jwt_authorities`), `health` (`state`, `detail`) on each
//!   change, `audit` (every authorization decision, as zt's audit record);
//! - client: `ready` (`spiffe_id`), `response` (`status`, `body`),
//!   `request_error` (`error`, `peer_rejected`: zt's refusal of the server,
//!   if that is why), `summary` (`ok`, `failed`, `statuses`);
//! - either: `error` (`error`) and exit status 1 when setup fails.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zt_authz::Authorizer;
use zt_authz::audit::{AuditEvent, AuditSink};
use zt_authz::policy::Policy;
use zt_client::{PeerRejected, ZtClient};
use zt_core::matcher::IdMatcher;
use zt_core::source::{Health, Snapshot, SvidSource, WorkloadApiSource};
use zt_server::{AuthorizeLayer, JwtAuthLayer, VerifiedJwtSvid, VerifiedPeer, ZtServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: zt-peer server [--accept PATTERN] [--policy FILE] [--jwt-audience AUD] [--start-timeout SECS]\n       \
                     zt-peer client --url URL --pin PATTERN [--n N] [--interval-ms MS] [--duration-secs S] [--jwt-audience AUD] [--start-timeout SECS]";

/// Prints one event line; `fields` must be a JSON object.
fn emit(event: &str, mut fields: Value) {
    if let Some(map) = fields.as_object_mut() {
        map.insert("event".into(), Value::from(event));
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        map.insert("ts".into(), Value::from(ts));
    }
    println!("{fields}");
}

/// Command-line options: flags with one value each, `--accept` repeatable.
#[derive(Debug, Default)]
struct Options {
    mode: String,
    accept: Vec<String>,
    policy: Option<String>,
    jwt_audience: Option<String>,
    url: Option<String>,
    pin: Option<String>,
    n: u64,
    interval: Duration,
    duration: Option<Duration>,
    start_timeout: Duration,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut it = args.iter();
    let mode = it.next().ok_or_else(|| USAGE.to_string())?;
    if mode != "server" && mode != "client" {
        return Err(format!("unknown mode `{mode}`\n{USAGE}"));
    }
    let mut o = Options {
        mode: mode.clone(),
        n: 1,
        start_timeout: Duration::from_secs(30),
        ..Options::default()
    };
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("`{flag}` needs a value\n{USAGE}"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("`{flag} {v}`: not a whole number ({e})"))
        };
        match flag.as_str() {
            "--accept" => o.accept.push(value.clone()),
            "--policy" => o.policy = Some(value.clone()),
            "--jwt-audience" => o.jwt_audience = Some(value.clone()),
            "--url" => o.url = Some(value.clone()),
            "--pin" => o.pin = Some(value.clone()),
            "--n" => o.n = number(value)?,
            "--interval-ms" => o.interval = Duration::from_millis(number(value)?),
            "--duration-secs" => o.duration = Some(Duration::from_secs(number(value)?)),
            "--start-timeout" => o.start_timeout = Duration::from_secs(number(value)?),
            other => return Err(format!("unknown flag `{other}`\n{USAGE}")),
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Ok(o) if o.mode == "server" => server(o).await,
        Ok(o) => client(o).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        emit("error", json!({ "error": e.to_string() }));
        std::process::exit(1);
    }
}

async fn source(o: &Options) -> Result<Arc<WorkloadApiSource>, BoxError> {
    Ok(WorkloadApiSource::builder()
        .initial_sync_timeout(o.start_timeout)
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .build()
        .await?)
}

fn health_fields(h: &Health) -> Value {
    match h {
        Health::Starting => json!({ "state": "starting" }),
        Health::Failing { reason } => json!({ "state": "failing", "detail": reason }),
        Health::Healthy => json!({ "state": "healthy" }),
        Health::Degraded { reason, .. } => json!({ "state": "degraded", "detail": reason }),
        Health::Expired { reason, .. } => json!({ "state": "expired", "detail": reason }),
        other => json!({ "state": "other", "detail": format!("{other:?}") }),
    }
}

/// How many JWT authorities the snapshot's bundles hold, over every trust
/// domain.
fn jwt_authorities(snapshot: &Snapshot) -> usize {
    snapshot
        .bundles()
        .iter()
        .map(|b| b.jwt_authorities().count())
        .sum()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Prints each new SVID, and each change of health (checked every 50 ms).
fn watch_source(source: Arc<WorkloadApiSource>) {
    let mut updates = source.updates();
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let snapshot = updates.borrow_and_update().clone();
            if let Some(s) = snapshot {
                emit(
                    "svid_update",
                    json!({
                        "serial_hex": s.svid().serial_hex(),
                        "spiffe_id": s.svid().id().to_string(),
                        "not_after_unix": unix_secs(s.svid().not_after()),
                        "jwt_authorities": jwt_authorities(&s),
                    }),
                );
            }
        }
    });
    tokio::spawn(async move {
        let mut last: Option<Value> = None;
        loop {
            let now = health_fields(&source.health());
            if last.as_ref().map(|l| &l["state"]) != Some(&now["state"]) {
                emit("health", now.clone());
                last = Some(now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Prints every authorization decision as an `audit` event.
struct StdoutAudit;

impl AuditSink for StdoutAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        let record: Value = serde_json::from_slice(&event.to_json_line())
            .unwrap_or_else(|e| json!({ "unparsable": e.to_string() }));
        emit("audit", json!({ "record": record }));
    }
}

async fn whoami(peer: VerifiedPeer, request: Request) -> String {
    let jwt_subject = request
        .extensions()
        .get::<VerifiedJwtSvid>()
        .map(|j| j.subject().to_string());
    emit(
        "request",
        json!({
            "peer_id": peer.id().to_string(),
            "peer_serial_hex": peer.serial_hex(),
            "path": request.uri().path(),
            "jwt_subject": jwt_subject,
        }),
    );
    format!("hello {}", peer.id())
}

async fn server(o: Options) -> Result<(), BoxError> {
    let source = source(&o).await?;
    let snapshot = source.current()?;
    let mut builder = ZtServer::builder(source.clone());
    if !o.accept.is_empty() {
        let matchers = o
            .accept
            .iter()
            .map(|p| p.parse::<IdMatcher>())
            .collect::<Result<Vec<_>, _>>()?;
        builder = builder.accept_callers(IdMatcher::any_of(matchers));
    }
    let server = builder.build()?;
    let mut app = Router::new()
        .route("/whoami", get(whoami))
        .route("/admin", get(whoami));
    if let Some(path) = &o.policy {
        let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
        let policy = Policy::from_toml_str(&text, path)?;
        let authz = Authorizer::builder(policy)
            .target("zt-peer")
            .audit_sink(Arc::new(StdoutAudit))
            .build();
        app = app.route_layer(AuthorizeLayer::new(authz));
    }
    if let Some(audience) = &o.jwt_audience {
        app = app.layer(JwtAuthLayer::builder(source.clone(), audience.clone()).build());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    emit(
        "listening",
        json!({
            "addr": listener.local_addr()?.to_string(),
            "spiffe_id": snapshot.svid().id().to_string(),
            "serial_hex": snapshot.svid().serial_hex(),
            "jwt_authorities": jwt_authorities(&snapshot),
        }),
    );
    watch_source(source);
    server.serve(listener, app, std::future::pending()).await?;
    Ok(())
}

async fn client(o: Options) -> Result<(), BoxError> {
    let url = o.url.clone().ok_or("client: --url is required")?;
    let pin: IdMatcher = o
        .pin
        .as_deref()
        .ok_or("client: --pin is required")?
        .parse()?;
    let source = source(&o).await?;
    emit(
        "ready",
        json!({ "spiffe_id": source.current()?.svid().id().to_string() }),
    );
    let client = ZtClient::builder(source).pin_server(pin).build()?;
    let http = client.reqwest_client()?;
    let tokens = client.jwt_svids();
    let mut statuses = BTreeMap::<String, u64>::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    let start = Instant::now();
    let mut sent = 0u64;
    while match o.duration {
        Some(d) => start.elapsed() < d,
        None => sent < o.n,
    } {
        sent += 1;
        let mut request = http.get(&url);
        if let Some(aud) = &o.jwt_audience {
            request = request.header(AUTHORIZATION, tokens.header_value(aud).await?);
        }
        match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                *statuses.entry(status.to_string()).or_default() += 1;
                let body = resp.text().await.unwrap_or_default();
                ok += 1;
                emit("response", json!({ "status": status, "body": body }));
            }
            Err(e) => {
                failed += 1;
                let rejected = PeerRejected::find(&e).map(ToString::to_string);
                emit(
                    "request_error",
                    json!({ "error": error_chain(&e), "peer_rejected": rejected }),
                );
            }
        }
        if !o.interval.is_zero() {
            tokio::time::sleep(o.interval).await;
        }
    }
    emit(
        "summary",
        json!({ "ok": ok, "failed": failed, "statuses": statuses }),
    );
    Ok(())
}

/// `error: its source: ...`, the whole chain on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        next = inner.source();
    }
    out
}
