//! The two zt workloads of the lifecycle test, run as copies of the test
//! binary with [`ROLE_ENV`] set. Each takes its identity from the SPIRE
//! agent at `SPIFFE_ENDPOINT_SOCKET` and prints one JSON object per line.
//!
//! - `server`: mutual TLS on 127.0.0.1, the caller pinned to
//!   [`PEER_ID_ENV`], `JwtAuthLayer` bound to the peer. Events: `listening`
//!   (`addr`), `snapshot` (on every snapshot: `serial`, `jwt_kids`,
//!   `x509_authorities` and `svid_authority` as SHA-256 fingerprints),
//!   `health` (on change), `deny` (each audit record of a refusal: `reason`,
//!   `detail`).
//! - `client`: a request every 50 ms to [`ADDR_ENV`], the server pinned to
//!   [`PEER_ID_ENV`], a new handshake each time, a JWT-SVID from `JwtSvids`.
//!   Stdin commands: `mint NAME` (fetch a token signed by the current key
//!   and send it on a request of its own every 100 ms), `keep-svid` (keep
//!   the current X.509-SVID), `probe-svid` (one handshake presenting the
//!   kept SVID), `stop`. Events: `progress` (every 2 s: counts and the
//!   slowest request's `max_ms`), `request_failed`,
//!   `snapshot`, `traffic_token` (the `kid` of the traffic's token, on
//!   change), `minted` (`name`, `kid`), `probe` (on each change of a
//!   kept token's result: `name`, `ok`, `status`), `kept_svid`,
//!   `svid_probe` (`ok`, `error`), `summary` (`ok`, `failed`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zt_client::{ClientBuilder, JwtSvids};
use zt_core::matcher::IdMatcher;
use zt_core::source::{Snapshot, StaticSource, SvidSource, WorkloadApiSource};
use zt_core::svid::X509Svid;
use zt_core::x509::{Usage, verify_x509_svid};
use zt_core::{BundleSet, SpiffeId, TrustBundle};
use zt_server::{JwtAuthLayer, ZtServer};

/// Which role a copy of the test binary plays.
pub(crate) const ROLE_ENV: &str = "ZT_LIFECYCLE_ROLE";
/// The SPIFFE ID of the other workload.
pub(crate) const PEER_ID_ENV: &str = "ZT_LIFECYCLE_PEER_ID";
/// The server's address, for the client.
pub(crate) const ADDR_ENV: &str = "ZT_LIFECYCLE_ADDR";
/// The audience of every JWT-SVID.
const AUDIENCE: &str = "spiffe://example.org/lifecycle/server";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn emit(event: &str, mut fields: Value) {
    let ts_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    if let Some(map) = fields.as_object_mut() {
        map.insert("event".into(), json!(event));
        map.insert("ts_ms".into(), json!(ts_ms));
    }
    println!("{fields}");
}

/// Runs `role`; the process's exit code.
pub(crate) fn run(role: &str) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            emit("error", json!({ "error": e.to_string() }));
            return 1;
        }
    };
    let result = runtime.block_on(async {
        match role {
            "server" => server().await,
            "client" => client().await,
            other => Err(format!("unknown role {other}").into()),
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            emit("error", json!({ "error": e.to_string() }));
            1
        }
    }
}

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

async fn source() -> Result<Arc<WorkloadApiSource>, BoxError> {
    Ok(WorkloadApiSource::builder()
        .initial_sync_timeout(Duration::from_secs(30))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .call_timeout(Duration::from_secs(5))
        .build()
        .await?)
}

fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The fingerprint of the authority in `bundle` that `svid` chains to.
fn authority_of(svid: &X509Svid, bundle: &TrustBundle) -> Option<String> {
    bundle.x509_authorities().iter().find_map(|authority| {
        let mut only = TrustBundle::new(bundle.trust_domain().clone());
        only.add_x509_authority(authority.clone()).ok()?;
        let set = BundleSet::new().with(only);
        verify_x509_svid(svid.chain(), &set, SystemTime::now(), Usage::ClientAuth)
            .ok()
            .map(|_| fingerprint(authority))
    })
}

fn describe(snapshot: &Snapshot) -> Value {
    let svid = snapshot.svid();
    let own = snapshot.bundles().get(svid.id().trust_domain());
    let mut kids: Vec<String> = own
        .map(|b| b.jwt_authorities().map(|a| a.key_id().to_owned()).collect())
        .unwrap_or_default();
    kids.sort();
    let mut authorities: Vec<String> = own
        .map(|b| {
            b.x509_authorities()
                .iter()
                .map(|a| fingerprint(a))
                .collect()
        })
        .unwrap_or_default();
    authorities.sort();
    json!({
        "revision": snapshot.revision(),
        "spiffe_id": svid.id().to_string(),
        "serial": svid.serial_hex(),
        "jwt_kids": kids,
        "x509_authorities": authorities,
        "svid_authority": own.and_then(|b| authority_of(svid, b)),
    })
}

/// Prints a `snapshot` event for every snapshot and a `health` event on
/// every change of health.
fn watch(source: &Arc<WorkloadApiSource>) {
    let mut updates = source.updates();
    tokio::spawn(async move {
        loop {
            let snapshot = updates.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                emit("snapshot", describe(&snapshot));
            }
            if updates.changed().await.is_err() {
                break;
            }
        }
    });
    let source = Arc::clone(source);
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            let health = format!("{:?}", source.health());
            if health != last {
                let planes = source.planes_health();
                emit(
                    "health",
                    json!({
                        "health": health,
                        "x509": format!("{:?}", planes.x509),
                        "jwt_bundles": format!("{:?}", planes.jwt_bundles),
                    }),
                );
                last = health;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Prints the audit records of refusals (`target: zt::audit`, `decision =
/// "deny"`) as `deny` events.
struct AuditTap;

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.0.insert(field.name().to_owned(), text);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AuditTap {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "zt::audit" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.0.get("decision").map(String::as_str) == Some("deny") {
            emit(
                "deny",
                json!({
                    "reason": fields.0.get("reason"),
                    "detail": fields.0.get("detail"),
                    "caller": fields.0.get("caller"),
                }),
            );
        }
    }
}

async fn server() -> Result<(), BoxError> {
    use tracing_subscriber::layer::SubscriberExt as _;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(AuditTap))?;
    let caller = SpiffeId::new(env(PEER_ID_ENV)?)?;
    let source = source().await?;
    watch(&source);
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(
            JwtAuthLayer::builder(source.clone(), AUDIENCE)
                .bind_to_peer(true)
                .build(),
        );
    let server = ZtServer::builder(source)
        .accept_callers(IdMatcher::exact(caller))
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    emit(
        "listening",
        json!({ "addr": listener.local_addr()?.to_string() }),
    );
    server.serve(listener, app, std::future::pending()).await?;
    Ok(())
}

/// One request to `url` over a fresh connection with `token` (or one from
/// `tokens`); the HTTP status, or why none came.
async fn call(
    client: &zt_client::ZtClient,
    url: &str,
    auth: Result<String, String>,
) -> Result<u16, String> {
    let http = client.reqwest_client().map_err(|e| e.to_string())?;
    let token = auth?;
    let response = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status().as_u16())
}

async fn client() -> Result<(), BoxError> {
    let server_id = SpiffeId::new(env(PEER_ID_ENV)?)?;
    let url = format!("https://{}/", env(ADDR_ENV)?);
    let source = source().await?;
    watch(&source);
    let client = Arc::new(
        ClientBuilder::new(source.clone())
            .pin_server(IdMatcher::exact(server_id.clone()))
            .build()?,
    );
    let tokens = JwtSvids::new(source.clone());
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));

    // Traffic: a new handshake and a JWT-SVID on every request.
    {
        let (client, url, ok, failed) = (client.clone(), url.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let mut last_progress = std::time::Instant::now();
            let mut last_kid = None;
            // The slowest request (token, handshake and answer) since the
            // last progress event.
            let mut max_ms: u128 = 0;
            loop {
                let started = std::time::Instant::now();
                let auth = tokens
                    .token(AUDIENCE)
                    .await
                    .map(|t| t.token().to_owned())
                    .map_err(|e| e.to_string());
                if let Ok(token) = &auth {
                    let kid = key_id(token);
                    if kid != last_kid {
                        emit("traffic_token", json!({ "kid": kid }));
                        last_kid = kid;
                    }
                }
                let result = call(&client, &url, auth).await;
                max_ms = max_ms.max(started.elapsed().as_millis());
                match result {
                    Ok(200) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        emit("request_failed", json!({ "result": format!("{other:?}") }));
                    }
                }
                if last_progress.elapsed() >= Duration::from_secs(2) {
                    emit(
                        "progress",
                        json!({
                            "ok": ok.load(Ordering::SeqCst),
                            "failed": failed.load(Ordering::SeqCst),
                            "max_ms": max_ms,
                        }),
                    );
                    last_progress = std::time::Instant::now();
                    max_ms = 0;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    let kept_svid: Arc<Mutex<Option<X509Svid>>> = Arc::default();
    // Stdin on a thread of its own: the runtime has no blocking stdin.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("mint"), Some(name)) => {
                // A second audience makes the agent mint a fresh token with
                // its current key instead of answering from its cache.
                let audience = [AUDIENCE.to_owned(), format!("lifecycle-probe-{name}")];
                let token = source.fetch_jwt_svid(&audience).await?;
                let kid = key_id(token.token()).unwrap_or_default();
                emit("minted", json!({ "name": name, "kid": kid }));
                probe_token(
                    client.clone(),
                    url.clone(),
                    name.to_owned(),
                    token.token().to_owned(),
                );
            }
            (Some("keep-svid"), _) => {
                let snapshot = source.current()?;
                let own = snapshot.bundles().get(snapshot.svid().id().trust_domain());
                let authority = own.and_then(|b| authority_of(snapshot.svid(), b));
                emit(
                    "kept_svid",
                    json!({ "serial": snapshot.svid().serial_hex(), "authority": authority }),
                );
                *kept_svid
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((**snapshot.svid()).clone());
            }
            (Some("probe-svid"), _) => {
                let kept = kept_svid
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
                    .ok_or("keep-svid first")?;
                // The kept SVID with today's bundles: only the presented
                // certificate differs from the live client.
                let bundles = (**source.current()?.bundles()).clone();
                let old = Arc::new(StaticSource::new(kept, bundles));
                let probe = ClientBuilder::new(old)
                    .pin_server(IdMatcher::exact(server_id.clone()))
                    .build()?;
                let audience = [AUDIENCE.to_owned(), "lifecycle-svid-probe".to_owned()];
                let token = source.fetch_jwt_svid(&audience).await?.token().to_owned();
                let result = call(&probe, &url, Ok(token)).await;
                emit(
                    "svid_probe",
                    json!({ "ok": result == Ok(200), "result": format!("{result:?}") }),
                );
            }
            (Some("stop"), _) => break,
            _ => emit(
                "error",
                json!({ "error": format!("unknown command {line}") }),
            ),
        }
    }
    emit(
        "summary",
        json!({ "ok": ok.load(Ordering::SeqCst), "failed": failed.load(Ordering::SeqCst) }),
    );
    Ok(())
}

/// The `kid` header of a compact JWS.
fn key_id(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    header.get("kid")?.as_str().map(str::to_owned)
}

/// Sends `token` every 100 ms and reports each change of the result.
fn probe_token(client: Arc<zt_client::ZtClient>, url: String, name: String, token: String) {
    tokio::spawn(async move {
        let mut last: Option<Result<u16, String>> = None;
        loop {
            let result = call(&client, &url, Ok(token.clone())).await;
            if last.as_ref() != Some(&result) {
                emit(
                    "probe",
                    json!({
                        "name": name,
                        "ok": result == Ok(200),
                        "result": format!("{result:?}"),
                    }),
                );
                last = Some(result);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
