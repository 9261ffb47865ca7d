//! What the targets share: fixed trust bundles and a fixed time.
//!
//! `fixtures/*.json` are SPIFFE bundles of two development CAs (`example.org`
//! with a root only, `inter.example` with a root and an intermediate), made
//! with `zt_dev::FakeCa` on a clock pinned at [`ISSUED_AT`]. The
//! X.509 and JWT seeds in `corpus/` were issued by them for one hour from
//! then, so at [`now`] they verify and the fuzzer starts from valid input.

#![allow(dead_code, reason = "each target uses part of this module")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zt_core::{BundleSet, TrustBundle, TrustDomain};

/// Unix time the fixture CAs and seeds were issued at.
pub const ISSUED_AT: u64 = 1_800_000_000;

/// The audience JWT seeds carry.
pub const AUDIENCE: &str = "fuzz-audience";

const BUNDLES: &[(&str, &[u8])] = &[
    (
        "example.org",
        include_bytes!("../../fixtures/example.org.json"),
    ),
    (
        "inter.example",
        include_bytes!("../../fixtures/inter.example.json"),
    ),
];

/// A minute after the seeds were issued: inside their validity.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ISSUED_AT + 60)
}

/// A trust domain for parsers that need one.
pub fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").expect("a valid literal trust domain")
}

/// The fixture bundles. Panics if a fixture does not load: the target
/// would test nothing.
pub fn bundles() -> BundleSet {
    BUNDLES
        .iter()
        .map(|(td, json)| {
            let td = TrustDomain::new(td).expect("a valid literal trust domain");
            TrustBundle::from_spiffe_json(td, json).expect("fixture bundle loads")
        })
        .collect()
}
