//! Soak: many concurrent mutual-TLS clients call an axum server behind
//! `ZtServer` and `AuthorizeLayer` on 127.0.0.1 while every SVID rotates
//! each second, the policy is replaced, callers are revoked and
//! reinstated, and the CA rotates its root (prepared, activated, the old
//! root dropped from the bundle). Some clients hold long-lived gRPC
//! server streams. Bounded in time and in request count.
//!
//! The server ends each connection shortly before its peer's certificate
//! expires; raw clients then open a new one (and send a request that met
//! the close once more), as a pool does.
//!
//! Asserts: no legitimate request fails, no request the policy or the
//! revocation list denies is allowed, every allowed response names the
//! caller that made it, a steady caller's stream is never refused, no
//! stream message is sent to a caller later than [`STREAM_END_BOUND`] after
//! its revocation took effect, the server's trust monitor holds no
//! connection once all are closed, and resident memory stays within a
//! fixed margin of its level after warm-up.
//!
//! Streams end when their connection's trust ends: at the peer's expiry
//! (the connection lives at most half of a 2 s SVID here) with
//! `UNAUTHENTICATED`, or as the client's own connection to the server
//! ends, and on revocation with `PERMISSION_DENIED`; a streaming client
//! then opens a new one, as an application following a feed does.
//!
//! ```sh
//! cargo test --test soak                                              # 15 s (CI)
//! ZT_SOAK_SECS=600 cargo test --release --test soak -- --nocapture    # long form, prints figures
//! ```
//!
//! Environment: `ZT_SOAK_SECS` (default 15), `ZT_SOAK_CLIENTS` (default 32),
//! `ZT_SOAK_MAX_REQUESTS` (default 20,000 per second of run time).
//!
//! "After a change" is defined by a sequence counter: the controller makes it
//! odd, applies the change (an atomic swap in `PolicyStore` or
//! `Revocations`), records what each caller may now do, and makes it even.
//! A request is judged against that record only if the counter read before
//! it was sent is even and equal to the one read after its response
//! arrived: then no change happened while it was in flight, and the server
//! decided it after the last change was applied. Requests that overlap a
//! change are counted as "in transition" and not judged, except those of
//! callers no change affects, which must always succeed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use zt_authz::Authorizer;
use zt_authz::policy::{Policy, PolicyStore};
use zt_client::{EndReason, ZtClient};
use zt_core::live::EndSignal;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource as _;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_examples::billing::invoice_feed_client::InvoiceFeedClient;
use zt_examples::billing::invoice_feed_server::{InvoiceFeed, InvoiceFeedServer};
use zt_examples::billing::{Invoice, InvoiceRequest};
use zt_server::{AuthorizeLayer, PeerExt as _, VerifiedPeer, ZtServer};

/// SVID lifetime; sources re-issue at half of it, so every second.
const SVID_TTL: Duration = Duration::from_secs(2);
/// How often the controller changes the policy or the revocation list
/// (alternately).
const CHANGE_EVERY: Duration = Duration::from_millis(400);
/// Requests a raw-connection client sends on one connection before it
/// opens a new one (a new handshake, with whatever SVIDs are current).
const REQUESTS_PER_RAW_CONNECTION: u32 = 20;
/// No single request may take longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time before the first memory reading: runtime threads, connection
/// pools, allocator arenas and caches reach their working size.
const WARM_UP_MAX: Duration = Duration::from_secs(5);
/// How often the CA rotates its root: prepared and pushed to every
/// workload, activated [`CHANGE_EVERY`] later, and the old root dropped
/// from the bundle once every SVID it issued has expired.
const CA_ROTATE_EVERY: Duration = Duration::from_secs(4);
/// After activation, when the old root leaves the bundle: longer than an
/// SVID lives, so no live SVID depends on it.
const CA_OVERLAP: Duration = Duration::from_millis(2800);
/// The most a revoked caller's open stream may still be fed after the
/// revocation took effect. The trust monitor reacts to the revocation
/// list's watch channel and ends the stream within milliseconds; the bound
/// absorbs scheduling delays on a loaded 2-core machine, and is shorter
/// than the time a victim stays revoked (two controller steps).
const STREAM_END_BOUND: Duration = Duration::from_millis(500);
/// Allowed growth of resident memory from the end of warm-up to the end of
/// the run. Measured: +0.1 MiB over a 15 s run, +1.1 MiB over a 600 s run
/// whose samples were level from the first minute on (figures in README.md,
/// "Reliability"). 32 MiB leaves room for allocator noise and still catches
/// a leak of about 8 bytes per request over that 600 s run (4.5 million
/// requests), or 0.5 KiB per request over the 15 s CI run (65,000).
const RSS_MARGIN_KIB: u64 = 32 * 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// Resident set size of this process, from `/proc/self/statm` (pages of
/// 4 KiB on the x86_64 and aarch64 Linux this runs on).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("statm has a resident field")
        .parse()
        .unwrap();
    pages * 4
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

/// What a caller is, and so what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Allowed by every policy version, never revoked.
    Steady,
    /// Allowed by odd policy versions, denied by a deny rule in even ones.
    Flip,
    /// Allowed by policy; revoked and reinstated by ID in turn.
    Victim,
}

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// reqwest's pooled keep-alive connection, reopened only on failure.
    Pooled,
    /// A raw tokio-rustls connection with HTTP/1.1, replaced every
    /// [`REQUESTS_PER_RAW_CONNECTION`] requests or on failure.
    Raw,
    /// A gRPC server stream (`InvoiceFeed/Follow`), read until it ends, then
    /// opened again.
    Stream,
}

fn policy(version: u64, flip_allowed: bool) -> Policy {
    let mut text = format!(
        r#"
version = "soak-{version}"

[[rule]]
id = "workloads-read-items"
effect = "allow"
callers = ["spiffe://example.org/steady/**", "spiffe://example.org/flip/**", "spiffe://example.org/victim/**"]
http = [{{ method = "GET", path = "/items/{{n}}" }}]

[[rule]]
id = "workloads-follow-the-feed"
effect = "allow"
callers = ["spiffe://example.org/steady/**", "spiffe://example.org/victim/**"]
grpc = ["/billing.InvoiceFeed/Follow"]
"#
    );
    if !flip_allowed {
        text.push_str(
            r#"
[[rule]]
id = "flip-denied"
effect = "deny"
callers = ["spiffe://example.org/flip/**"]
http = [{ method = "*", path = "/items/{n}" }]
"#,
        );
    }
    Policy::from_toml_str(&text, "soak.toml").unwrap()
}

/// Where the CA's root rotation stands.
#[derive(Debug, Clone, Copy)]
enum CaPhase {
    /// One root; the next rotation is prepared at `next`.
    Idle { next: Instant },
    /// A new root is in every bundle, not yet issuing.
    Prepared,
    /// The new root issues; the old one is still trusted.
    Active { since: Instant },
}

/// What each caller may do now, guarded by a sequence counter (see the
/// module documentation).
struct Plan {
    sequence: AtomicU64,
    flip_allowed: AtomicBool,
    revoked: Vec<AtomicBool>,
    /// When each revoked worker's revocation took effect.
    revoked_at: Vec<Mutex<Option<Instant>>>,
}

impl Plan {
    fn allowed(&self, worker: usize, role: Role) -> bool {
        match role {
            Role::Steady => true,
            Role::Flip => self.flip_allowed.load(SeqCst),
            Role::Victim => !self.revoked[worker].load(SeqCst),
        }
    }

    /// Whether `worker` has been revoked for longer than
    /// [`STREAM_END_BOUND`].
    fn revoked_beyond_bound(&self, worker: usize) -> bool {
        self.revoked_at[worker]
            .lock()
            .unwrap()
            .is_some_and(|at| at.elapsed() > STREAM_END_BOUND)
    }

    fn change(&self, apply: impl FnOnce()) {
        let odd = self.sequence.fetch_add(1, SeqCst) + 1;
        assert_eq!(odd % 2, 1, "one controller at a time");
        apply();
        self.sequence.fetch_add(1, SeqCst);
    }
}

#[derive(Default)]
struct Tally {
    issued: AtomicU64,
    allowed: AtomicU64,
    refused_as_expected: AtomicU64,
    failed_legitimate: AtomicU64,
    wrongly_allowed: AtomicU64,
    in_transition: AtomicU64,
    wrong_identity: AtomicU64,
    handshakes: AtomicU64,
    streams_opened: AtomicU64,
    stream_messages: AtomicU64,
    streams_ended_expired: AtomicU64,
    streams_ended_revoked: AtomicU64,
    fed_after_revocation: AtomicU64,
    ca_rotations: AtomicU64,
    examples: Mutex<Vec<String>>,
}

impl Tally {
    fn example(&self, text: String) {
        let mut examples = self.examples.lock().unwrap();
        if examples.len() < 10 {
            examples.push(text);
        }
    }
}

/// The outcome of one request, as the client saw it.
enum Outcome {
    /// An HTTP response with this status and body.
    Status(u16, String),
    /// No response: the handshake was refused, the connection failed, or
    /// the request timed out.
    Transport(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(status, body) => write!(f, "HTTP {status} {body:?}"),
            Outcome::Transport(reason) => write!(f, "no response: {reason}"),
        }
    }
}

struct Worker {
    index: usize,
    role: Role,
    transport: Transport,
    id: SpiffeId,
    client: ZtClient,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// A raw connection and the sequence value read before it was opened.
struct RawConnection {
    sender: Sender,
    /// Fires when the client's trust monitor ends the connection (the
    /// server's certificate expired, or it is no longer trusted).
    signal: EndSignal,
    opened_at_sequence: u64,
    used: u32,
}

async fn open_raw(client: &ZtClient, addr: SocketAddr) -> Result<(Sender, EndSignal), String> {
    let tls = client.connect(addr).await.map_err(|e| e.to_string())?;
    let signal = tls.signal();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok((sender, signal))
}

async fn raw_request(sender: &mut Sender, path: &str) -> Outcome {
    let result = async {
        sender.ready().await?;
        let response = sender
            .send_request(
                http::Request::get(path)
                    .header("host", "billing")
                    .body(Empty::new())
                    .unwrap(),
            )
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, result).await {
        Ok(Ok((status, body))) => Outcome::Status(status, body),
        Ok(Err(e)) => Outcome::Transport(e.to_string()),
        Err(_) => Outcome::Transport("timed out".into()),
    }
}

async fn pooled_request(http: &reqwest::Client, url: &str) -> Outcome {
    let result = async {
        let response = http.get(url).send().await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, result).await {
        Ok(Ok((status, body))) => Outcome::Status(status, body),
        Ok(Err(e)) => Outcome::Transport(zt_tests::error_chain(&e)),
        Err(_) => Outcome::Transport("timed out".into()),
    }
}

async fn run_worker(
    worker: Worker,
    addr: SocketAddr,
    plan: Arc<Plan>,
    tally: Arc<Tally>,
    deadline: Instant,
    max_requests: u64,
) {
    let pooled = worker.client.reqwest_client().unwrap();
    let mut raw: Option<RawConnection> = None;
    let mut n: u64 = 0;
    while Instant::now() < deadline && tally.issued.fetch_add(1, SeqCst) < max_requests {
        n += 1;
        let path = format!("/items/{n}");

        // A connection opened for this request counts from before it was
        // opened: its handshake is part of the request.
        let mut window_start = plan.sequence.load(SeqCst);
        let mut connect_error: Option<String> = None;
        let expected = plan.allowed(worker.index, worker.role);
        let outcome = match worker.transport {
            Transport::Pooled => pooled_request(&pooled, &format!("https://{addr}{path}")).await,
            // Stream workers run `run_stream_worker` instead.
            Transport::Raw | Transport::Stream => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    if raw.as_ref().is_none_or(|c| {
                        c.used >= REQUESTS_PER_RAW_CONNECTION || c.sender.is_closed()
                    }) {
                        tally.handshakes.fetch_add(1, SeqCst);
                        raw = match open_raw(&worker.client, addr).await {
                            Ok((sender, signal)) => Some(RawConnection {
                                sender,
                                signal,
                                opened_at_sequence: window_start,
                                used: 0,
                            }),
                            Err(e) => {
                                connect_error = Some(e);
                                None
                            }
                        };
                    }
                    match raw.as_mut() {
                        None => {
                            break Outcome::Transport(connect_error.take().unwrap_or_default());
                        }
                        Some(conn) => {
                            conn.used += 1;
                            let reused = conn.used > 1;
                            let outcome = raw_request(&mut conn.sender, &path).await;
                            // The client ends a connection when the
                            // server's certificate expires, as it must; a
                            // request in flight then fails like one on any
                            // connection that closes.
                            let server_expired = conn
                                .signal
                                .reason()
                                .is_some_and(|ended| ended.reason() == EndReason::Expired);
                            if let Outcome::Transport(error) = &outcome {
                                // In TLS 1.3 the server refuses a client
                                // certificate after the client has finished
                                // its side of the handshake, so a refusal
                                // shows on the connection's first request:
                                // the window starts when the connection was
                                // opened.
                                window_start = conn.opened_at_sequence;
                                raw = None;
                                // The server ends a connection shortly before
                                // its peer's certificate expires, and the
                                // client when the server's expires; a request
                                // that met the close is sent once more on a
                                // new connection, as an HTTP client's pool
                                // does.
                                if attempt == 1
                                    && (server_expired || (reused && error.contains("closed")))
                                {
                                    continue;
                                }
                            }
                            break outcome;
                        }
                    }
                }
            }
        };
        let window_end = plan.sequence.load(SeqCst);
        let stable = window_start.is_multiple_of(2) && window_start == window_end;
        let was_allowed = matches!(outcome, Outcome::Status(200, _));

        if let Outcome::Status(200, body) = &outcome
            && body != &format!("{} {n}", worker.id)
        {
            tally.wrong_identity.fetch_add(1, SeqCst);
            tally.example(format!("{}: body {body:?} for item {n}", worker.id));
        }
        if was_allowed {
            tally.allowed.fetch_add(1, SeqCst);
        }
        if worker.role == Role::Steady || stable {
            let must_allow = worker.role == Role::Steady || expected;
            match (must_allow, was_allowed) {
                (true, false) => {
                    tally.failed_legitimate.fetch_add(1, SeqCst);
                    tally.example(format!(
                        "{} ({:?}, {:?}) was refused: {outcome}",
                        worker.id, worker.role, worker.transport
                    ));
                }
                (false, true) => {
                    tally.wrongly_allowed.fetch_add(1, SeqCst);
                    tally.example(format!(
                        "{} ({:?}, {:?}) was allowed although denied",
                        worker.id, worker.role, worker.transport
                    ));
                }
                (false, false) => {
                    tally.refused_as_expected.fetch_add(1, SeqCst);
                }
                (true, true) => {}
            }
        } else {
            tally.in_transition.fetch_add(1, SeqCst);
        }
    }
}

/// The worker index at the end of a caller's SPIFFE ID path.
fn worker_index(id: &SpiffeId) -> Option<usize> {
    id.path().rsplit('/').next()?.parse().ok()
}

/// Follows the invoice feed, reopening the stream each time it ends, until
/// the deadline.
async fn run_stream_worker(
    worker: Worker,
    addr: SocketAddr,
    plan: Arc<Plan>,
    tally: Arc<Tally>,
    deadline: Instant,
) {
    let uri = format!("http://{addr}");
    while Instant::now() < deadline {
        let window_start = plan.sequence.load(SeqCst);
        let expected = plan.allowed(worker.index, worker.role);
        tally.streams_opened.fetch_add(1, SeqCst);
        tally.handshakes.fetch_add(1, SeqCst);
        let open = async {
            let channel = worker
                .client
                .grpc_channel(&uri)
                .await
                .map_err(|e| zt_tests::error_chain(&e))?;
            InvoiceFeedClient::new(channel)
                .follow(InvoiceRequest {
                    order_id: worker.index.to_string(),
                })
                .await
                .map(Response::into_inner)
                .map_err(|status| format!("{status:?}"))
        };
        let opened = tokio::time::timeout(REQUEST_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        let window_end = plan.sequence.load(SeqCst);
        let stable = window_start.is_multiple_of(2) && window_start == window_end;
        let mut stream = match opened {
            Ok(stream) => {
                if stable && !expected && worker.role != Role::Steady {
                    tally.wrongly_allowed.fetch_add(1, SeqCst);
                    tally.example(format!("{} opened a stream while revoked", worker.id));
                }
                stream
            }
            Err(error) => {
                if worker.role == Role::Steady || (stable && expected) {
                    tally.failed_legitimate.fetch_add(1, SeqCst);
                    tally.example(format!(
                        "{} ({:?}, Stream) could not open its stream: {error}",
                        worker.id, worker.role
                    ));
                } else if stable {
                    tally.refused_as_expected.fetch_add(1, SeqCst);
                } else {
                    tally.in_transition.fetch_add(1, SeqCst);
                }
                continue;
            }
        };
        loop {
            match tokio::time::timeout(REQUEST_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(invoice))) => {
                    tally.stream_messages.fetch_add(1, SeqCst);
                    if invoice.caller != worker.id.to_string() {
                        tally.wrong_identity.fetch_add(1, SeqCst);
                        tally.example(format!("{}: feed for {:?}", worker.id, invoice.caller));
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                // Ended by the server without a status: not expected.
                Ok(Ok(None)) => {
                    tally.failed_legitimate.fetch_add(1, SeqCst);
                    tally.example(format!("{}: stream ended without a status", worker.id));
                    break;
                }
                Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => {
                    if worker.role == Role::Steady {
                        tally.failed_legitimate.fetch_add(1, SeqCst);
                        tally.example(format!("{}: stream denied: {status:?}", worker.id));
                    } else {
                        tally.streams_ended_revoked.fetch_add(1, SeqCst);
                    }
                    break;
                }
                // The connection's trust ended at a peer's expiry:
                // `UNAUTHENTICATED` from the server, or the client's own
                // connection to the server ended.
                Ok(Err(_)) => {
                    tally.streams_ended_expired.fetch_add(1, SeqCst);
                    break;
                }
                Err(_) => {
                    tally.failed_legitimate.fetch_add(1, SeqCst);
                    tally.example(format!("{}: stream stalled", worker.id));
                    break;
                }
            }
        }
    }
}

/// Records, as examples, why the server refused a steady caller (which
/// must never happen): the client sees only the status.
struct SteadyDenials(Arc<Tally>);

impl zt_authz::audit::AuditSink for SteadyDenials {
    fn record(&self, event: &zt_authz::audit::AuditEvent<'_>) {
        if event.decision == zt_authz::audit::Verdict::Deny
            && event
                .caller
                .is_some_and(|c| c.path().starts_with("/steady/"))
        {
            self.0.example(format!(
                "server refused {}: reason {}, rule {:?}, caller not after {:?}, at {:?}",
                event.caller.map(ToString::to_string).unwrap_or_default(),
                event.reason,
                event.rule,
                event.caller_not_after,
                event.time,
            ));
        }
    }
}

/// Feeds each caller an invoice every 20 ms, naming the caller the TLS
/// layer verified, and counts what it sends to a caller revoked for longer
/// than [`STREAM_END_BOUND`].
#[derive(Clone)]
struct Feed {
    plan: Arc<Plan>,
    tally: Arc<Tally>,
}

#[tonic::async_trait]
impl InvoiceFeed for Feed {
    type FollowStream = ReceiverStream<Result<Invoice, Status>>;

    async fn follow(
        &self,
        request: Request<InvoiceRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let peer = request
            .verified_peer()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no verified peer"))?;
        let index = worker_index(peer.id());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (plan, tally) = (self.plan.clone(), self.tally.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0u64.. {
                tick.tick().await;
                let permit = match tx.reserve().await {
                    Ok(permit) => permit,
                    Err(_) => break,
                };
                if let Some(index) = index
                    && plan.revoked_beyond_bound(index)
                {
                    tally.fed_after_revocation.fetch_add(1, SeqCst);
                    tally.example(format!("{} fed after its revocation", peer.id()));
                }
                permit.send(Ok(Invoice {
                    order_id: n.to_string(),
                    amount_cents: n,
                    caller: peer.id().to_string(),
                }));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn item(peer: VerifiedPeer, Path(n): Path<u64>) -> String {
    format!("{} {n}", peer.id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_under_rotation_reloads_and_revocations_fails_nothing_allows_nothing_denied_and_holds_memory()
 {
    let secs = env_u64("ZT_SOAK_SECS", 15).max(3);
    let clients = usize::try_from(env_u64("ZT_SOAK_CLIENTS", 32))
        .unwrap()
        .max(4);
    let max_requests = env_u64("ZT_SOAK_MAX_REQUESTS", secs * 20_000);
    let run = Duration::from_secs(secs);
    let warm_up = WARM_UP_MAX.min(run / 3);

    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let server_source =
        FakeCaSource::new(ca.clone(), id("spiffe://example.org/items"), SVID_TTL).unwrap();
    server_source.start_rotation();

    let store = PolicyStore::new(policy(1, true));
    let mut versions = store.subscribe();
    let revocations = Revocations::new();
    let plan = Arc::new(Plan {
        sequence: AtomicU64::new(0),
        flip_allowed: AtomicBool::new(true),
        revoked: (0..clients).map(|_| AtomicBool::new(false)).collect(),
        revoked_at: (0..clients).map(|_| Mutex::new(None)).collect(),
    });
    let tally = Arc::new(Tally::default());
    let authorizer = Authorizer::builder(store.clone())
        .target("items")
        .revocations(revocations.clone())
        .audit_sink(Arc::new(SteadyDenials(tally.clone())))
        .build();
    let feed = InvoiceFeedServer::new(Feed {
        plan: plan.clone(),
        tally: tally.clone(),
    });
    let app = Router::new()
        .route("/items/{n}", get(item))
        .route_service("/billing.InvoiceFeed/Follow", feed)
        .route_layer(AuthorizeLayer::new(authorizer));
    let server = ZtServer::builder(server_source.clone())
        .revocations(revocations.clone())
        .build()
        .unwrap();
    let monitor = server.trust_monitor().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });

    let mut sources = vec![server_source.clone()];
    let mut victims = Vec::new();
    let mut workers = Vec::new();
    for index in 0..clients {
        let role = match index % 4 {
            0 | 1 => Role::Steady,
            2 => Role::Flip,
            _ => Role::Victim,
        };
        let transport = if index.is_multiple_of(2) {
            Transport::Pooled
        } else if index % 8 < 4 {
            Transport::Stream
        } else {
            Transport::Raw
        };
        let name = match role {
            Role::Steady => "steady",
            Role::Flip => "flip",
            Role::Victim => "victim",
        };
        let id = id(&format!("spiffe://example.org/{name}/{index}"));
        let source = FakeCaSource::new(ca.clone(), id.clone(), SVID_TTL).unwrap();
        source.start_rotation();
        sources.push(source.clone());
        if role == Role::Victim {
            victims.push((index, id.clone()));
        }
        let client = ZtClient::builder(source)
            .pin_server("spiffe://example.org/items".parse().unwrap())
            .build()
            .unwrap();
        workers.push(Worker {
            index,
            role,
            transport,
            id,
            client,
        });
    }
    let revisions_at_start: Vec<u64> = sources
        .iter()
        .map(|s| s.current().unwrap().revision())
        .collect();

    let started = Instant::now();
    let deadline = started + run;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| match worker.transport {
            Transport::Stream => tokio::spawn(run_stream_worker(
                worker,
                addr,
                plan.clone(),
                tally.clone(),
                deadline,
            )),
            _ => tokio::spawn(run_worker(
                worker,
                addr,
                plan.clone(),
                tally.clone(),
                deadline,
                max_requests,
            )),
        })
        .collect();

    // The controller: alternately a new policy version and a revocation
    // step, until the deadline; memory is read after warm-up and sampled.
    let mut reloads = 0u64;
    let mut revocation_changes = 0u64;
    let mut version = 1u64;
    let mut revoked_now: Option<usize> = None;
    let mut next_victim = 0usize;
    let mut rss_start: Option<u64> = None;
    let mut rss_samples = Vec::new();
    let mut next_sample = started + warm_up;
    let mut ticker = tokio::time::interval(CHANGE_EVERY);
    ticker.tick().await;
    let mut step = 0u64;
    let mut ca_phase = CaPhase::Idle {
        next: started + CA_ROTATE_EVERY / 2,
    };
    while Instant::now() < deadline && tally.issued.load(SeqCst) < max_requests {
        ticker.tick().await;
        step += 1;
        if step % 2 == 1 {
            version += 1;
            let flip_allowed = version % 2 == 1;
            plan.change(|| {
                store.replace(policy(version, flip_allowed));
                plan.flip_allowed.store(flip_allowed, SeqCst);
            });
            // The store announces the version it now holds.
            assert_eq!(&**versions.borrow_and_update(), format!("soak-{version}"));
            reloads += 1;
        } else {
            // Reinstate the victim revoked last time (if any) and revoke the
            // next one.
            let (victim, victim_id) = victims[next_victim % victims.len()].clone();
            next_victim += 1;
            plan.change(|| {
                if let Some(previous) = revoked_now.take() {
                    let previous_id = &victims.iter().find(|(i, _)| *i == previous).unwrap().1;
                    *plan.revoked_at[previous].lock().unwrap() = None;
                    revocations.reinstate_id(previous_id);
                    plan.revoked[previous].store(false, SeqCst);
                }
                revocations.revoke_id(victim_id.clone());
                *plan.revoked_at[victim].lock().unwrap() = Some(Instant::now());
                plan.revoked[victim].store(true, SeqCst);
                revoked_now = Some(victim);
            });
            revocation_changes += 1;
        }
        // The CA's root rotation runs beside the policy and revocation
        // steps: prepare (every workload, the server first, gets the new
        // root), activate a step later, drop the old root after the overlap.
        ca_phase = match ca_phase {
            CaPhase::Idle { next } if Instant::now() >= next => {
                ca.prepare_rotation().unwrap();
                for source in &sources {
                    source.refresh_bundles().unwrap();
                }
                CaPhase::Prepared
            }
            CaPhase::Prepared => {
                assert!(ca.activate_prepared());
                CaPhase::Active {
                    since: Instant::now(),
                }
            }
            CaPhase::Active { since } if since.elapsed() >= CA_OVERLAP => {
                ca.end_rotation_overlap();
                for source in &sources {
                    source.refresh_bundles().unwrap();
                }
                tally.ca_rotations.fetch_add(1, SeqCst);
                CaPhase::Idle {
                    next: Instant::now() + CA_ROTATE_EVERY - CA_OVERLAP,
                }
            }
            phase => phase,
        };
        if Instant::now() >= next_sample {
            let rss = rss_kib();
            rss_start.get_or_insert(rss);
            rss_samples.push((started.elapsed().as_secs(), rss));
            next_sample += Duration::from_secs(if secs > 60 { 30 } else { 5 });
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib();
    let rss_start = rss_start.expect("memory was read after warm-up");

    let rotations: u64 = sources
        .iter()
        .zip(&revisions_at_start)
        .map(|(s, start)| s.current().unwrap().revision() - start)
        .sum();
    for source in &sources {
        source.stop_rotation();
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), serving)
        .await
        .expect("server stopped")
        .unwrap()
        .unwrap();

    let still_open = monitor.open_connections();

    let requests = tally.issued.load(SeqCst).min(max_requests);
    let failed = tally.failed_legitimate.load(SeqCst);
    let wrongly_allowed = tally.wrongly_allowed.load(SeqCst);
    let refused = tally.refused_as_expected.load(SeqCst);
    let wrong_identity = tally.wrong_identity.load(SeqCst);
    println!(
        "soak: {secs} s requested, {:.1} s run, {clients} clients on {addr}",
        elapsed.as_secs_f64()
    );
    println!(
        "soak: requests {requests} ({:.0} rps), allowed {}, refused as expected {refused}, in transition {}",
        requests as f64 / elapsed.as_secs_f64(),
        tally.allowed.load(SeqCst),
        tally.in_transition.load(SeqCst),
    );
    println!(
        "soak: failed legitimate {failed}, wrongly allowed {wrongly_allowed}, wrong identity {wrong_identity}"
    );
    println!(
        "soak: SVID rotations {rotations}, raw-connection handshakes {}, policy reloads {reloads}, revocation changes {revocation_changes}",
        tally.handshakes.load(SeqCst)
    );
    println!(
        "soak: RSS after {} s warm-up {} KiB, at end {rss_end} KiB ({:+} KiB; margin {RSS_MARGIN_KIB} KiB); samples (s, KiB) {rss_samples:?}",
        warm_up.as_secs(),
        rss_start,
        rss_end as i64 - rss_start as i64,
    );
    println!(
        "soak: streams opened {}, messages {}, ended at expiry {}, ended by revocation {}, fed after revocation {}; CA root rotations {}; connections left in the trust monitor {still_open}",
        tally.streams_opened.load(SeqCst),
        tally.stream_messages.load(SeqCst),
        tally.streams_ended_expired.load(SeqCst),
        tally.streams_ended_revoked.load(SeqCst),
        tally.fed_after_revocation.load(SeqCst),
        tally.ca_rotations.load(SeqCst),
    );
    let examples = tally.examples.lock().unwrap().clone();
    for example in &examples {
        println!("soak: example: {example}");
    }

    assert_eq!(failed, 0, "legitimate requests failed: {examples:#?}");
    assert_eq!(
        wrongly_allowed, 0,
        "denied requests were allowed: {examples:#?}"
    );
    assert_eq!(
        wrong_identity, 0,
        "responses for another caller: {examples:#?}"
    );
    assert_eq!(
        tally.fed_after_revocation.load(SeqCst),
        0,
        "streams fed after their caller's revocation: {examples:#?}"
    );
    assert_eq!(still_open, 0, "the trust monitor kept closed connections");
    // The run exercised what it claims to.
    assert!(tally.stream_messages.load(SeqCst) > 0, "no stream message");
    assert!(
        tally.streams_ended_revoked.load(SeqCst) > 0,
        "no stream was ended by a revocation"
    );
    assert!(tally.ca_rotations.load(SeqCst) >= 1, "the CA never rotated");
    assert!(refused > 0, "no request was refused after a change");
    assert!(reloads >= 2 && revocation_changes >= 2, "too few changes");
    let seconds_run = elapsed.as_secs().max(1);
    // Every source re-issues each second; allow for timer delays under load.
    assert!(
        rotations >= sources.len() as u64 * seconds_run / 2,
        "{rotations} rotations in {seconds_run} s for {} sources",
        sources.len()
    );
    assert!(
        rss_end <= rss_start + RSS_MARGIN_KIB,
        "resident memory grew from {rss_start} KiB to {rss_end} KiB"
    );
}
