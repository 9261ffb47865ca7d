//! Helpers shared by zt's runnable examples (and the integration tests
//! that reuse the example gRPC service). Not a public API: the crates users
//! depend on are `zt-core`, `zt-client`, `zt-server` and `zt-authz`.
#![forbid(unsafe_code)]

/// Installs a compact `tracing` subscriber for examples, honouring
/// `RUST_LOG` (default: warnings only, and no `zt::audit` events, which the
/// examples print as JSON lines themselves, so their own output stays
/// readable).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,zt::audit=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .compact()
        .try_init();
}

/// The example `billing` gRPC service (client and server stubs), generated
/// from `examples/proto/billing.proto` by `tools/gen-proto`.
#[path = "pb/billing.rs"]
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms,
    reason = "generated code"
)]
pub mod billing;
