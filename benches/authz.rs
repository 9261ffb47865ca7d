//! Authorization cost: the built-in policy engine against Cedar on the same
//! policy, and `AuthorizeLayer` in front of an axum router over one
//! keep-alive mutual-TLS connection.
//!
//! ```text
//! cargo bench --bench authz
//! ```
//!
//! **Decision latency.** Policies of 10, 1,000 and 100,000 rules, built by
//! [`policy_of`]: a mix of exact-caller allow rules with path templates,
//! trust-domain allow rules, and deny rules on admin prefixes. The same
//! [`Policy`] is decided by zt's engine and by its Cedar translation
//! (`zt_authz::policy::cedar::CedarPolicy`), which decides identically (a
//! property test checks that). Each iteration decides one allowed request
//! of a caller in the middle of the policy.
//!
//! **Declarations in code.** At 1,000 rules the same request is also decided
//! by `zt_authz::policy::declare::Combined`: 100 endpoint declarations (what `#[callers]` generates)
//! and the policy, both of which must allow. The line
//! `declared+policy / policy = R` gives its cost relative to the policy
//! alone.
//!
//! **Layer overhead.** Servers on 127.0.0.1 serve the same axum router: one
//! without a layer, one with `AuthorizeLayer` added by `Router::layer`, one
//! with it added by `Router::route_layer`, and one with a no-op route layer
//! (axum's own cost of a route layer). The layer holds the 1,000-rule
//! policy, and audits through `tracing` with no subscriber installed. Each
//! iteration sends one GET over a single HTTP/1.1 keep-alive mutual-TLS
//! connection through zt-client and reads the response. Client and servers
//! share one current-thread runtime, so a request costs its CPU work and
//! syscalls, without cross-thread wake-ups whose jitter is larger than the
//! layer. Criterion times each server on its own; the
//! overhead figure comes from a paired run afterwards ([`paired_overhead`]):
//! batches of requests to the two servers back to back, the median of
//! their time ratios.
//!
//! The last lines print `authz builtin/cedar speedup = R` (at 1,000 rules;
//! higher is better for zt) and `authz layer overhead = P%`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use criterion::{BenchmarkId, Criterion};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use zt_authz::Authorizer;
use zt_authz::policy::cedar::CedarPolicy;
use zt_authz::policy::declare::{Declarations, EndpointSpec};
use zt_authz::policy::{Policy, PolicyEngine, Request, Rule};
use zt_benches::criterion_median_ns as median_ns;
use zt_client::ZtClient;
use zt_core::revocation::Revocations;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::{AuthorizeLayer, ZtServer};

const SIZES: [usize; 3] = [10, 1_000, 100_000];

fn caller(i: usize) -> String {
    format!("spiffe://example.org/ns/prod/sa/svc-{i}")
}

/// `n` rules: three of every four let one service read its own items
/// (exact caller, path template); every fourth lets a partner trust domain
/// read a prefix; and every tenth is a deny on an admin prefix.
fn policy_of(n: usize) -> Policy {
    let mut builder = Policy::builder().version(format!("bench-{n}"));
    for i in 0..n {
        let rule = if i % 10 == 9 {
            Rule::deny(format!("deny-{i}"))
                .caller(&caller(i))
                .unwrap()
                .http("*", &format!("/admin/svc-{i}/**"))
                .unwrap()
        } else if i % 4 == 3 {
            Rule::allow(format!("partner-{i}"))
                .caller(&format!("spiffe://partner-{i}.example/**"))
                .unwrap()
                .http("GET", &format!("/api/v1/partner-{i}/**"))
                .unwrap()
        } else {
            Rule::allow(format!("svc-{i}"))
                .caller(&caller(i))
                .unwrap()
                .http("GET", &format!("/api/v1/svc-{i}/items/{{id}}"))
                .unwrap()
        };
        builder = builder.rule(rule);
    }
    builder.build().unwrap()
}

/// The index of a caller with an allow rule near the middle of the policy.
fn middle(n: usize) -> usize {
    let mut i = n / 2;
    while i % 10 == 9 || i % 4 == 3 {
        i += 1;
    }
    i.min(n - 1)
}

/// 100 endpoint declarations, one per service around `i`, each admitting
/// its own service; the one for `i` covers the benchmarked request.
fn declared(i: usize) -> Declarations {
    let specs: Vec<EndpointSpec> = (i.saturating_sub(50)..i.saturating_sub(50) + 100)
        .map(|k| {
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            let callers: &'static [&'static str] = Box::leak(Box::new([leak(caller(k))]));
            EndpointSpec::http(
                leak(format!("svc_{k}_items")),
                "GET",
                leak(format!("/api/v1/svc-{k}/items/{{id}}")),
                callers,
                &[],
                file!(),
                line!(),
            )
        })
        .collect();
    Declarations::builder().specs(&specs).build().unwrap()
}

fn decision_benches(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("authz-decision");
    for n in SIZES {
        let policy = policy_of(n);
        let cedar = CedarPolicy::from_policy(&policy).unwrap();
        let i = middle(n);
        let id = SpiffeId::new(caller(i)).unwrap();
        let path = format!("/api/v1/svc-{i}/items/42");
        let request = Request::new(Some(&id), "GET", &path);
        // Both engines allow it, by the same rule.
        let builtin_decision = policy.evaluate(&request);
        assert!(builtin_decision.allowed, "{builtin_decision:?}");
        assert_eq!(cedar.evaluate(&request), builtin_decision);

        if n >= 100_000 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(20));
        }
        group.bench_with_input(BenchmarkId::new("builtin", n), &request, |b, r| {
            b.iter(|| policy.evaluate(r))
        });
        group.bench_with_input(BenchmarkId::new("cedar", n), &request, |b, r| {
            b.iter(|| cedar.evaluate(r))
        });
        if n == 1_000 {
            let combined = declared(i).with_policy(policy.clone());
            let combined_decision = combined.evaluate(&request);
            assert!(combined_decision.allowed, "{combined_decision:?}");
            group.bench_with_input(BenchmarkId::new("declared+policy", n), &request, |b, r| {
                b.iter(|| combined.evaluate(r))
            });
            // What AuthorizeLayer runs per request: revocation check,
            // decision, audit event.
            let authorizer = Authorizer::builder(policy.clone())
                .revocations(Revocations::new())
                .build();
            group.bench_with_input(BenchmarkId::new("authorizer", n), &request, |b, r| {
                b.iter(|| authorizer.authorize(r, Some(&[0x2a])))
            });
        }
    }
    group.finish();
}

async fn serve(app: Router, billing: std::sync::Arc<FakeCaSource>) -> SocketAddr {
    let server = ZtServer::builder(billing).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        server
            .serve(listener, app, std::future::pending())
            .await
            .unwrap()
    });
    addr
}

async fn connect(client: &ZtClient, addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let tls = client.connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get_once(sender: &mut SendRequest<Empty<Bytes>>, path: &str) {
    sender.ready().await.unwrap();
    let response = sender
        .send_request(
            http::Request::get(path)
                .header("host", "billing")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

/// Rounds and requests per round of the paired layer measurement.
const ROUNDS: usize = 61;
const PER_ROUND: usize = 300;

/// The overhead of the layer as the median, over [`ROUNDS`] rounds, of the
/// ratio between the time of [`PER_ROUND`] requests with the layer and the
/// time of as many without it, measured back to back (the order alternating
/// between rounds). Pairing cancels the drift that two separate criterion
/// runs minutes apart pick up on a shared machine.
fn paired_overhead(
    runtime: &tokio::runtime::Runtime,
    plain: &mut SendRequest<Empty<Bytes>>,
    authorized: &mut SendRequest<Empty<Bytes>>,
    path: &str,
) -> f64 {
    let mut ratios = Vec::with_capacity(ROUNDS);
    let time = |sender: &mut SendRequest<Empty<Bytes>>| {
        runtime.block_on(async {
            let start = std::time::Instant::now();
            for _ in 0..PER_ROUND {
                get_once(sender, path).await;
            }
            start.elapsed().as_secs_f64()
        })
    };
    for round in 0..ROUNDS {
        let (with, without) = if round % 2 == 0 {
            let without = time(plain);
            (time(authorized), without)
        } else {
            let with = time(authorized);
            (with, time(plain))
        };
        ratios.push(with / without);
    }
    ratios.sort_by(f64::total_cmp);
    (ratios[ROUNDS / 2] - 1.0) * 100.0
}

fn layer_benches(criterion: &mut Criterion, runtime: &tokio::runtime::Runtime) -> LayerOverhead {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let ttl = Duration::from_secs(3600);
    let billing = FakeCaSource::new(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/billing").unwrap(),
        ttl,
    )
    .unwrap();
    let n = 1_000;
    let i = middle(n);
    let orders = FakeCaSource::new(ca.clone(), SpiffeId::new(caller(i)).unwrap(), ttl).unwrap();
    let client = ZtClient::builder(orders)
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .build()
        .unwrap();
    let route = format!("/api/v1/svc-{i}/items/{{id}}");
    let path = format!("/api/v1/svc-{i}/items/42");
    let router = || Router::new().route(&route, get(|| async { "item" }));

    let policy = policy_of(n);
    let noop = || tower::util::MapRequestLayer::new(|r: http::Request<axum::body::Body>| r);
    let [mut plain, mut outer, mut routed, mut noop_routed] = runtime.block_on(async {
        let apps = [
            router(),
            router().layer(AuthorizeLayer::from_policy(policy.clone())),
            router().route_layer(AuthorizeLayer::from_policy(policy.clone())),
            router().route_layer(noop()),
        ];
        let mut senders = Vec::new();
        for app in apps {
            let addr = serve(app, billing.clone()).await;
            senders.push(connect(&client, addr).await);
        }
        <[_; 4]>::try_from(senders).unwrap_or_else(|_| unreachable!())
    });

    let mut group = criterion.benchmark_group("authz-layer");
    group.bench_function("without-layer", |b| {
        b.iter(|| runtime.block_on(get_once(&mut plain, &path)))
    });
    group.bench_function("with-layer", |b| {
        b.iter(|| runtime.block_on(get_once(&mut outer, &path)))
    });
    group.bench_function("with-route-layer", |b| {
        b.iter(|| runtime.block_on(get_once(&mut routed, &path)))
    });
    group.finish();
    LayerOverhead {
        layer: paired_overhead(runtime, &mut plain, &mut outer, &path),
        route_layer: paired_overhead(runtime, &mut plain, &mut routed, &path),
        route_layer_vs_noop: paired_overhead(runtime, &mut noop_routed, &mut routed, &path),
        noop_route_layer: paired_overhead(runtime, &mut plain, &mut noop_routed, &path),
    }
}

/// Paired overheads, in percent of a request without any layer.
struct LayerOverhead {
    /// `Router::layer(AuthorizeLayer)` against no layer.
    layer: f64,
    /// `Router::route_layer(AuthorizeLayer)` against no layer.
    route_layer: f64,
    /// `route_layer(AuthorizeLayer)` against `route_layer(no-op layer)`:
    /// the layer's own cost in that position.
    route_layer_vs_noop: f64,
    /// `route_layer(no-op layer)` against no layer: axum's own cost of a
    /// route layer.
    noop_route_layer: f64,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let criterion_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .configure_from_args();
    decision_benches(&mut criterion);
    let overhead = layer_benches(&mut criterion, &runtime);
    criterion.final_summary();

    for n in SIZES {
        let builtin = median_ns(&criterion_dir, "authz-decision", &format!("builtin/{n}"));
        let cedar = median_ns(&criterion_dir, "authz-decision", &format!("cedar/{n}"));
        println!(
            "{n:>7} rules: builtin {builtin:>10.1} ns, cedar {cedar:>14.1} ns, speedup {:>9.1}x",
            cedar / builtin
        );
    }
    let without = median_ns(&criterion_dir, "authz-layer", "without-layer");
    let with = median_ns(&criterion_dir, "authz-layer", "with-layer");
    println!(
        "request over keep-alive mTLS (criterion medians): without layer {:.1} µs, with layer {:.1} µs ({:+.1}%)",
        without / 1e3,
        with / 1e3,
        (with - without) / without * 100.0
    );
    let builtin = median_ns(&criterion_dir, "authz-decision", "builtin/1000");
    let cedar = median_ns(&criterion_dir, "authz-decision", "cedar/1000");
    let declared = median_ns(&criterion_dir, "authz-decision", "declared+policy/1000");
    println!(
        "declared+policy / policy = {:.2} ({declared:.1} ns against {builtin:.1} ns)",
        declared / builtin
    );
    println!("authz builtin/cedar speedup = {:.1}", cedar / builtin);
    println!(
        "paired overheads: route_layer(no-op) {:+.1}%, route_layer(AuthorizeLayer) {:+.1}% ({:+.1}% over the no-op route layer), layer(AuthorizeLayer) {:+.1}%",
        overhead.noop_route_layer,
        overhead.route_layer,
        overhead.route_layer_vs_noop,
        overhead.layer
    );
    println!("authz layer overhead = {:.1}%", overhead.layer);
}
