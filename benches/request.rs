//! One request over an established mutual-TLS HTTP/2 connection on
//! loopback, through the full zt server stack against the same axum router
//! behind plain tokio-rustls (see `stack.rs` for both).
//!
//! ```text
//! cargo bench --bench request
//! ```
//!
//! zt's stack adds, per request: the `VerifiedPeer` extension, the policy
//! decision of `AuthorizeLayer`, and an audit record serialised on the
//! request path and written by the JSON-lines writer's thread (to
//! `io::sink()`); `zt+jwt` adds `JwtAuthLayer` with a reused JWT-SVID
//! (answered from its verified-token cache after the first request). It
//! prints `request zt/plain = R` (zt's time over plain's; 1.0 means zt adds
//! nothing) and the added time per request in nanoseconds, for both.

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
    // sink against one whose record is serialised and queued for the
    // JSON-lines writer (the writer thread drains it in batches).
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
    group.bench_function("decision+jsonl", |b| {
        b.iter(|| audited.authorize(std::hint::black_box(&request), None))
    });
    group.finish();
    writer.flush();
    println!(
        "audit writer: {} lines written, {} dropped",
        writer.written(),
        writer.dropped()
    );

    let mut group = criterion.benchmark_group("request");
    for (name, stack) in [
        ("zt", Stack::Zt),
        ("zt+jwt", Stack::ZtJwt),
        ("zt-no-audit", Stack::ZtNoAudit),
        ("zt-bare", Stack::ZtBare),
        ("plain", Stack::Plain),
    ] {
        let mut conn = runtime.block_on(async {
            let addr = env.serve(stack).await;
            let mut conn = env.connect(stack, addr).await;
            // Warm: the first request pays for the JWT-SVID's validation.
            conn.request().await;
            conn
        });
        group.bench_function(name, |b| b.iter(|| runtime.block_on(conn.request())));
    }
    group.finish();
    criterion.final_summary();

    let zt = median_ns(&criterion_dir, "request", "zt");
    let jwt = median_ns(&criterion_dir, "request", "zt+jwt");
    let plain = median_ns(&criterion_dir, "request", "plain");
    let no_audit = median_ns(&criterion_dir, "request", "zt-no-audit");
    let decision = median_ns(&criterion_dir, "audit", "decision");
    let audited = median_ns(&criterion_dir, "audit", "decision+jsonl");
    let bare = median_ns(&criterion_dir, "request", "zt-bare");
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
        "audit on the request path: {:.0} ns (decision {decision:.0} ns, with the JSON-lines record {audited:.0} ns)",
        audited - decision
    );
    println!(
        "request breakdown: ZtServer alone {:+.0} ns, + AuthorizeLayer without audit sink {:+.0} ns, + JSON-lines audit {:+.0} ns",
        bare - plain,
        no_audit - bare,
        zt - no_audit
    );
}
