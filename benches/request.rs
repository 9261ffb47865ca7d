//! One request over an established mutual-TLS HTTP/2 connection on
//! loopback, through the full zt server stack against the same axum router
//! behind plain tokio-rustls (see `stack.rs` for both).
//!
//! ```text
//! cargo bench --bench request
//! ```
//!
//! zt's stack adds, per request: the `VerifiedPeer` extension, the policy
//! decision of `AuthorizeLayer` (around the router), and an audit record
//! packed (copied) on the request path, then formatted and written by the
//! JSON-lines writer's thread (to `io::sink()`); `zt+jwt` adds `JwtAuthLayer`
//! with a reused JWT-SVID (answered from its verified-token cache after the
//! first request), and `zt-route-layer` places `AuthorizeLayer` as axum's
//! route layer instead. It prints `request zt/plain = R` (zt's time over
//! plain's; 1.0 means zt adds nothing) and the added time per request in
//! nanoseconds, for each: from criterion's medians, and from paired rounds
//! (`request zt/plain (paired) = R`), where the stacks take turns in a
//! shuffled order and the ratio is taken within each round, so the
//! machine's drift between one stack's measurement and the next cancels;
//! the paired requests go over several connections per stack, and once
//! more over one. It also times the same request
//! path in process, where the nanoseconds can be seen.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code"
)]

use std::path::PathBuf;

use criterion::Criterion;
use zt_benches::criterion_median_ns as median_ns;

#[path = "stack.rs"]
mod stack;

use stack::{Env, Stack};

/// An audit sink that makes each record's JSON line on the request thread,
/// into one reused buffer, with zt's line writer or with serde_json.
struct LineSink {
    serde: bool,
    line: std::sync::Mutex<Vec<u8>>,
}

impl zt_authz::audit::AuditSink for LineSink {
    fn record(&self, event: &zt_authz::audit::AuditEvent<'_>) {
        let mut line = self.line.lock().unwrap();
        line.clear();
        if self.serde {
            serde_json::to_writer(&mut *line, event).unwrap();
            line.push(b'\n');
        } else {
            event.write_json_line(&mut line);
        }
        std::hint::black_box(&*line);
    }
}

/// Rounds and units per round of the in-process request path.
const ROUNDS: usize = 101;
const PER_ROUND: u32 = 51;
/// Requests per unit.
const BATCH: u32 = 200;
/// Rounds and requests per stack per round of the paired network rounds.
const NETWORK_ROUNDS: usize = 301;
const NETWORK_PER_ROUND: u32 = 21;
/// Established connections per stack in the paired network rounds; each
/// request takes the next. One connection's buffers and state sit
/// wherever its allocations fell, which can favour or handicap one stack
/// for a whole run; over several connections that averages out.
const CONNECTIONS: usize = 8;
/// Audit records timed between two drains of the writer's queue (half
/// its capacity, where the writer is woken early).
const AUDIT_RUN: u64 = 1 << 15;

/// Polls a future that must complete at once (the router's handler does
/// not wait on anything).
fn now<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the router's future waited"),
    }
}

/// Reads a body to its end; the number of data bytes.
fn drain<B: http_body::Body + Unpin>(mut body: B) -> usize {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut bytes = 0;
    while let std::task::Poll::Ready(Some(frame)) =
        std::pin::Pin::new(&mut body).poll_frame(&mut cx)
    {
        bytes += frame
            .ok()
            .and_then(|f| f.into_data().ok())
            .map_or(0, |d| bytes::Buf::remaining(&d));
    }
    bytes
}

/// A service the in-process request path drives: a router, or a router
/// wrapped in zt's layers.
trait App<B>:
    tower::Service<
        http::Request<axum::body::Body>,
        Response = http::Response<B>,
        Error = std::convert::Infallible,
    > + Clone
{
}

impl<S, B> App<B> for S where
    S: tower::Service<
            http::Request<axum::body::Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
{
}

/// The response body of an [`App`].
trait Served:
    http_body::Body<Data = bytes::Bytes, Error: std::error::Error + Send + Sync + 'static> + Unpin
{
}

impl<B> Served for B where
    B: http_body::Body<Data = bytes::Bytes, Error: std::error::Error + Send + Sync + 'static>
        + Unpin
{
}

/// One request through a service in process, as the servers run it:
/// `GET /invoices/7`, with the connection's extensions (its `VerifiedPeer`)
/// and the response body bound to the connection's trust when `zt` is
/// given (what `ZtServer` does per request), or as plain hyper hands it to
/// axum.
fn in_process<S: App<B>, B: Served>(
    app: &S,
    zt: Option<(&http::Extensions, &zt_core::live::EndSignal)>,
    bearer: Option<&http::HeaderValue>,
) -> usize {
    use tower::ServiceExt as _;
    let mut req = http::Request::get("/invoices/7")
        .body(axum::body::Body::empty())
        .unwrap();
    if let Some(bearer) = bearer {
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, bearer.clone());
    }
    match zt {
        Some((extensions, signal)) => {
            req.extensions_mut().extend(extensions.clone());
            let response = now(app.clone().oneshot(req)).unwrap();
            assert_eq!(response.status(), 200);
            drain(zt_server::TrustBoundBody::new(
                response.into_body(),
                signal.clone(),
                false,
            ))
        }
        None => {
            let response = now(app.clone().oneshot(req)).unwrap();
            assert_eq!(response.status(), 200);
            drain(response.into_body())
        }
    }
}

/// One unit of the paired rounds: [`BATCH`] requests through `app`.
fn job<S: App<B>, B: Served>(
    app: &S,
    zt: Option<(&http::Extensions, &zt_core::live::EndSignal)>,
    bearer: Option<&http::HeaderValue>,
) -> std::time::Duration {
    zt_benches::paired::timed(&mut || {
        for _ in 0..BATCH {
            std::hint::black_box(in_process(app, zt, bearer));
        }
    })
}

/// The request path without the network: the same router with and without
/// zt's per-request work, in paired rounds. Returns the rounds.
fn request_path_in_process(
    env: &Env,
    runtime: &tokio::runtime::Runtime,
) -> zt_benches::paired::Rounds {
    use tower::Layer as _;
    use zt_benches::paired;
    use zt_server::AuthorizeLayer;
    let extensions = runtime.block_on(env.orders_extensions());
    // The trust binding of a real connection's guard, as `ZtServer` holds
    // it.
    let (_monitor, guard) = env.orders_guard(runtime);
    let signal = guard.signal();
    let plain = stack::router();
    // AuthorizeLayer around the router.
    let no_audit = AuthorizeLayer::new(Env::authorizer(false)).layer(stack::router());
    let audited = AuthorizeLayer::new(Env::authorizer(true)).layer(stack::router());
    // AuthorizeLayer as axum's route layer, and axum's own cost of a route
    // layer, with one that does nothing.
    let noop = stack::router().route_layer(tower::layer::util::Identity::new());
    let route_no_audit = stack::router().route_layer(AuthorizeLayer::new(Env::authorizer(false)));
    let route_audited = stack::router().route_layer(AuthorizeLayer::new(Env::authorizer(true)));
    // JwtAuthLayer in front of AuthorizeLayer, both around the router, with
    // a reused JWT-SVID; against the plain router given the same header.
    let jwt = env
        .jwt_layer()
        .layer(AuthorizeLayer::new(Env::authorizer(true)).layer(stack::router()));
    let bearer = http::HeaderValue::try_from(format!("Bearer {}", env.token)).unwrap();
    let bearer = Some(&bearer);
    let zt = Some((&extensions, &signal));
    assert_eq!(in_process(&plain, None, None), b"invoice 7".len());
    assert_eq!(in_process(&plain, zt, None), b"invoice 7".len());
    assert_eq!(in_process(&no_audit, zt, None), b"invoice 7".len());
    assert_eq!(in_process(&audited, zt, None), b"invoice 7".len());
    for app in [&noop, &route_no_audit, &route_audited] {
        assert_eq!(in_process(app, zt, None), b"invoice 7".len());
    }
    assert_eq!(in_process(&plain, None, bearer), b"invoice 7".len());
    // The first request validates the token; the timed ones are answered
    // from the cache.
    assert_eq!(in_process(&jwt, zt, bearer), b"invoice 7".len());
    paired::run(
        ROUNDS,
        PER_ROUND,
        &mut [
            ("plain", &mut || job(&plain, None, None)),
            ("zt-bare", &mut || job(&plain, zt, None)),
            ("zt-no-audit", &mut || job(&no_audit, zt, None)),
            ("zt", &mut || job(&audited, zt, None)),
            ("zt-noop-route-layer", &mut || job(&noop, zt, None)),
            ("zt-route-layer-no-audit", &mut || {
                job(&route_no_audit, zt, None)
            }),
            ("zt-route-layer", &mut || job(&route_audited, zt, None)),
            ("plain+bearer", &mut || job(&plain, None, bearer)),
            ("zt+jwt", &mut || job(&jwt, zt, bearer)),
        ],
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = Env::new();
    let criterion_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .configure_from_args();
    // The audit record on the request path, alone: one decision with no
    // sink against one whose record is packed into the JSON-lines writer's
    // queue (the writer thread formats and writes it in batches).
    let mut group = criterion.benchmark_group("audit");
    let caller = zt_core::SpiffeId::new("spiffe://example.org/orders").unwrap();
    let request = zt_authz::policy::Request::new(Some(&caller), "GET", "/invoices/7")
        .with_route("/invoices/{id}");
    let policy = || zt_authz::policy::Policy::from_toml_str(stack::POLICY, "policy.toml").unwrap();
    let bare = zt_authz::Authorizer::builder(policy())
        .target("billing")
        .build();
    let writer = std::sync::Arc::new(
        zt_authz::audit::JsonLinesAuditWriter::new(std::io::sink(), 1 << 16).unwrap(),
    );
    let audited = zt_authz::Authorizer::builder(policy())
        .target("billing")
        .audit_sink(writer.clone())
        .build();
    group.bench_function("decision", |b| {
        b.iter(|| bare.authorize(std::hint::black_box(&request), None))
    });
    // The record's whole JSON line made on the request thread, into a
    // reused buffer of the sink: zt's line writer (packing and formatting)
    // and serde_json's serializer on the same event.
    for (name, serde) in [("decision+line", false), ("decision+serde_json", true)] {
        let sink = std::sync::Arc::new(LineSink {
            serde,
            line: std::sync::Mutex::new(Vec::with_capacity(1024)),
        });
        let authz = zt_authz::Authorizer::builder(policy())
            .target("billing")
            .audit_sink(sink)
            .build();
        group.bench_function(name, |b| {
            b.iter(|| authz.authorize(std::hint::black_box(&request), None))
        });
    }
    // Records are timed in runs the queue holds, and the writer drained
    // between runs (untimed), so every timed record is queued, none
    // dropped: a loop far faster than a server's request rate would
    // otherwise outrun the writer thread and time the drop path.
    group.bench_function("decision+jsonl", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let run = left.min(AUDIT_RUN);
                let started = std::time::Instant::now();
                for _ in 0..run {
                    std::hint::black_box(audited.authorize(std::hint::black_box(&request), None));
                }
                total += started.elapsed();
                writer.flush();
                left -= run;
            }
            total
        })
    });
    group.finish();
    writer.flush();
    assert_eq!(writer.dropped(), 0, "the bench timed dropped records");
    println!(
        "audit writer: {} lines written, {} dropped",
        writer.written(),
        writer.dropped()
    );
    let decision = median_ns(&criterion_dir, "audit", "decision");
    let audited = median_ns(&criterion_dir, "audit", "decision+jsonl");
    let line = median_ns(&criterion_dir, "audit", "decision+line");
    let serde = median_ns(&criterion_dir, "audit", "decision+serde_json");
    println!(
        "audit record as a JSON line: {:.0} ns (serde_json: {:.0} ns), made on the JSON-lines writer's thread",
        line - decision,
        serde - decision
    );
    println!(
        "audit on the request path: {:.0} ns, the record packed into the writer's queue (decision {decision:.0} ns, with the record {audited:.0} ns)",
        audited - decision
    );

    let path = request_path_in_process(&env, &runtime);
    let per = |ns: f64| ns / f64::from(BATCH);
    let added = |name: &str| per(path.median(|ns| ns(name) - ns("plain")));
    let step = |from: &str, to: &str| per(path.median(|ns| ns(to) - ns(from)));
    println!(
        "request path in process: plain axum {:.0} ns, zt {:.0} ns, zt with a route layer {:.0} ns per request",
        per(path.median_ns("plain")),
        per(path.median_ns("zt")),
        per(path.median_ns("zt-route-layer")),
    );
    println!(
        "request path zt/plain (in process) = {:.3} (AuthorizeLayer around the router: zt adds {:.0} ns per request, audit included: ZtServer's per-request work {:+.0} ns, AuthorizeLayer {:+.0} ns, JSON-lines audit {:+.0} ns)",
        path.median(|ns| ns("zt") / ns("plain")),
        added("zt"),
        step("plain", "zt-bare"),
        step("zt-bare", "zt-no-audit"),
        step("zt-no-audit", "zt"),
    );
    println!(
        "request path zt-route-layer/plain (in process) = {:.3} (AuthorizeLayer as axum's route layer, route templates in rules and audit: zt adds {:.0} ns per request: ZtServer {:+.0} ns, axum's route layer {:+.0} ns, AuthorizeLayer {:+.0} ns, JSON-lines audit {:+.0} ns)",
        path.median(|ns| ns("zt-route-layer") / ns("plain")),
        added("zt-route-layer"),
        step("plain", "zt-bare"),
        step("zt-bare", "zt-noop-route-layer"),
        step("zt-noop-route-layer", "zt-route-layer-no-audit"),
        step("zt-route-layer-no-audit", "zt-route-layer"),
    );
    println!(
        "request path zt+jwt/plain+bearer (in process) = {:.3} (JwtAuthLayer with a reused JWT-SVID, then AuthorizeLayer, around the router: zt adds {:.0} ns per request to the plain router given the same header; of which the JWT-SVID's part, JwtAuthLayer and the token's identity in AuthorizeLayer's decision and record, {:+.0} ns)",
        path.median(|ns| ns("zt+jwt") / ns("plain+bearer")),
        per(path.median(|ns| ns("zt+jwt") - ns("plain+bearer"))),
        per(path.median(|ns| (ns("zt+jwt") - ns("plain+bearer")) - (ns("zt") - ns("plain")))),
    );

    let stacks = [
        ("zt", Stack::Zt),
        ("zt+jwt", Stack::ZtJwt),
        ("zt-no-audit", Stack::ZtNoAudit),
        ("zt-bare", Stack::ZtBare),
        ("zt-route-layer", Stack::ZtRouteLayer),
        ("plain", Stack::Plain),
        // Plain, with the JWT-SVID in every request as zt+jwt sends it:
        // what carrying the token costs, apart from checking it.
        ("plain+bearer", Stack::Plain),
    ];
    let mut pools: Vec<(&str, Vec<stack::Conn>)> = stacks
        .into_iter()
        .map(|(name, stack)| {
            let pool = runtime.block_on(async {
                let addr = env.serve(stack).await;
                let mut pool = Vec::with_capacity(CONNECTIONS);
                for _ in 0..CONNECTIONS {
                    let mut conn = env.connect(stack, addr).await;
                    if name == "plain+bearer" {
                        conn = conn.carrying(&env.token);
                    }
                    // Warm: the first request pays for the JWT-SVID's
                    // validation.
                    conn.request().await;
                    pool.push(conn);
                }
                pool
            });
            (name, pool)
        })
        .collect();
    let mut group = criterion.benchmark_group("request");
    for (name, pool) in &mut pools {
        let conn = &mut pool[0];
        group.bench_function(*name, |b| b.iter(|| runtime.block_on(conn.request())));
    }
    group.finish();
    criterion.final_summary();
    // The same requests in paired rounds: each stack's median request in a
    // round, the stacks in a shuffled order, the ratio taken within the
    // round. First over each stack's pool of connections, then over one
    // connection per stack.
    let runtime = &runtime;
    let paired_rounds = |pools: &mut [(&str, Vec<stack::Conn>)], connections: usize| {
        let mut units: Vec<_> = pools
            .iter_mut()
            .map(|(name, pool)| {
                let pool = &mut pool[..connections];
                let mut next = 0;
                let unit = move || {
                    next = (next + 1) % pool.len();
                    let conn = &mut pool[next];
                    zt_benches::paired::timed(&mut || runtime.block_on(conn.request()))
                };
                (*name, unit)
            })
            .collect();
        let mut jobs: Vec<zt_benches::paired::Job<'_>> = units
            .iter_mut()
            .map(|(name, unit)| (*name, unit as &mut dyn FnMut() -> std::time::Duration))
            .collect();
        zt_benches::paired::run(NETWORK_ROUNDS, NETWORK_PER_ROUND, &mut jobs)
    };
    let network = paired_rounds(&mut pools, CONNECTIONS);
    for name in ["zt", "zt+jwt", "zt-route-layer", "zt-no-audit", "zt-bare"] {
        println!(
            "request {name}/plain (paired) = {:.3} ({name} adds {:.0} ns per request; plain {:.1} µs; {CONNECTIONS} connections per stack)",
            network.median(|ns| ns(name) / ns("plain")),
            network.median(|ns| ns(name) - ns("plain")),
            network.median_ns("plain") / 1e3,
        );
    }
    println!(
        "request zt+jwt/plain+bearer (paired) = {:.3} (the token's check adds {:.0} ns per request; carrying it adds {:.0} ns to plain)",
        network.median(|ns| ns("zt+jwt") / ns("plain+bearer")),
        network.median(|ns| ns("zt+jwt") - ns("plain+bearer")),
        network.median(|ns| ns("plain+bearer") - ns("plain")),
    );
    let one = paired_rounds(&mut pools, 1);
    for name in ["zt", "zt-bare"] {
        println!(
            "request {name}/plain (paired, one connection) = {:.3} ({name} adds {:.0} ns per request; plain {:.1} µs)",
            one.median(|ns| ns(name) / ns("plain")),
            one.median(|ns| ns(name) - ns("plain")),
            one.median_ns("plain") / 1e3,
        );
    }

    let zt = median_ns(&criterion_dir, "request", "zt");
    let jwt = median_ns(&criterion_dir, "request", "zt+jwt");
    let plain = median_ns(&criterion_dir, "request", "plain");
    let no_audit = median_ns(&criterion_dir, "request", "zt-no-audit");
    let bare = median_ns(&criterion_dir, "request", "zt-bare");
    let route_layer = median_ns(&criterion_dir, "request", "zt-route-layer");
    println!(
        "median request: zt {:.1} µs, zt+jwt {:.1} µs, plain tokio-rustls + axum {:.1} µs",
        zt / 1e3,
        jwt / 1e3,
        plain / 1e3
    );
    println!(
        "request zt/plain = {:.3} (zt adds {:.0} ns per request)",
        zt / plain,
        zt - plain
    );
    println!(
        "request zt+jwt/plain = {:.3} (zt with JwtAuthLayer adds {:.0} ns per request)",
        jwt / plain,
        jwt - plain
    );
    println!(
        "request zt-route-layer/plain = {:.3} (AuthorizeLayer as axum's route layer adds {:.0} ns per request)",
        route_layer / plain,
        route_layer - plain
    );
    println!(
        "request breakdown: ZtServer alone {:+.0} ns, + AuthorizeLayer without audit sink {:+.0} ns, + JSON-lines audit {:+.0} ns",
        bare - plain,
        no_audit - bare,
        zt - no_audit
    );
}
