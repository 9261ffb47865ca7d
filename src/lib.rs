//! Helpers shared by zt's runnable examples, integration tests and
//! benchmarks. Not a public API: the crates users depend on are `zt-core`,
//! `zt-client` and `zt-server`.
#![forbid(unsafe_code)]

/// Installs a compact `tracing` subscriber for examples, honouring
/// `RUST_LOG` (default: warnings only, so the examples' own output stays
/// readable).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .compact()
        .try_init();
}

/// The example `billing` gRPC service (client and server stubs), generated
/// from `examples/proto/billing.proto` by `tools/gen-proto`.
#[path = "../examples/pb/billing.rs"]
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms,
    reason = "generated code"
)]
pub mod billing;

/// Renders an error and all its sources on one line, `a / b / c`, so the
/// refusal reason nested inside a TLS or HTTP error is visible.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(" / ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
