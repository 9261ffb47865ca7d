//! The floor: one ECDSA P-256 signature, one P-256 verification and one
//! X25519 key share generated and agreed, with the crypto provider zt uses.
//!
//! ```text
//! cargo bench --bench floor
//! ```
//!
//! These are the public-key operations that a mutual-TLS handshake and a
//! JWT-SVID check cannot avoid. The `handshake` and `jwt` benches measure
//! them again in their own runs and print their ratios to them
//! (`handshake zt/floor`, `jwt zt/verify-floor`); this bench prints the
//! figures alone and the floor of one handshake.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;
use zt_core::source::SvidSource as _;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};

fn main() {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let source = FakeCaSource::new(
        ca,
        SpiffeId::new("spiffe://example.org/orders").unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let key = source.current().unwrap().svid().private_key().clone_key();
    let provider = zt_tls::TlsOptions::new(source).provider();

    let criterion_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .configure_from_args();
    let floor = zt_benches::floor::measure(&mut criterion, &criterion_dir, &provider, &key);
    criterion.final_summary();
    floor.print();
    println!(
        "floor of one mutual handshake: {:.1} µs with 4 verifications, {:.1} µs with 2 (chains cached)",
        floor.handshake_ns(4) / 1e3,
        floor.handshake_ns(2) / 1e3
    );
}
