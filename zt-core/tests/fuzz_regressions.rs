//! Inputs the fuzz targets in `fuzz/` found, kept so the fixes stay fixed.
//! Each test names its target and says what went wrong (see
//! `fuzz/README.md`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use zt_core::bundle::BundleError;
use zt_core::{TrustBundle, TrustDomain};

fn trust_domain() -> TrustDomain {
    TrustDomain::new("inter.example").expect("a valid literal trust domain")
}

/// A root certificate whose SubjectPublicKeyInfo algorithm identifier was
/// broken by the fuzzer (the ecPublicKey OID's length byte `07` became `03`
/// and the OID bytes changed). webpki takes the key as opaque bytes and
/// accepted it as a trust anchor; x509-parser rejects it.
const BROKEN_SPKI_ROOT_BASE64: &str = concat!(
    "MIIB6jCCAZCgAwIBAgIQH8d50W1pQ7maOJr3Lk72uDAKBggqhkjOPQQDAjAyMRMwEQYDVQQKDAp6",
    "dCBmYWtlIENBMRswGQYDVQQDDBJpbnRlci5leGFtcGxlIHJvb3QwHhcNMjcwMTE1MDgwMDAwWhcN",
    "MzcwMTEyMDgwMDAwWjAyMRMwEQYDVQQKDAp6dCBmYWtlIENBMRswGQYDVQQDDBJpbnRlci5leGFt",
    "cGxlIHJvb3QwWTATBgPkqOchjQIBBggqhkjOPQMBBwNCAAQuOE9CYKQwWNW8CSaq7ooivAFIwZeU",
    "RRUvk7rD3WDIKhk1dNcERx/WYTl7ljdkKVpSeQ3kURX0k1zxJdKx/zHVo4GHMIGEMB8GA1UdIwQY",
    "MBaAFEUeEfocthtNSadafiJ/mlqPFK94MCEGA1UdEQQaMBiGFnNwaWZmZTovL2ludGVyLmV4YW1w",
    "bGUwDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQWBBRFHhH6HLYbTUmnWn4if5pajxSveDAPBgNVHRMB",
    "Af8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIEEQ42l3jEWra/E9EwCMWOYIEkj0RXdh5SyFGbge",
    "zM9wAiEApGYYyz1FQyHW9OgP8r+HAw/NEFUJCOut5rMRrrnVbq8=",
);

/// Target `bundle`: the SPIFFE JSON and PEM loaders accepted this root
/// (they only asked webpki), but the bundle's own DER encoding then failed
/// to load ("Parsing requires 1 bytes/chars"), so a bundle read from a file
/// could not be served over the Workload API and read back.
#[test]
fn bundle_rejects_a_root_whose_key_algorithm_does_not_parse_in_every_format() {
    let json = format!(
        r#"{{"keys": [{{"kty": "EC", "use": "x509-svid", "x5c": ["{BROKEN_SPKI_ROOT_BASE64}"]}}]}}"#
    );
    let err = TrustBundle::from_spiffe_json(trust_domain(), json.as_bytes())
        .expect_err("the JSON loader rejects the root");
    assert!(
        matches!(err, BundleError::BadKey { index: 0, .. }),
        "{err:?}"
    );

    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{BROKEN_SPKI_ROOT_BASE64}\n-----END CERTIFICATE-----\n"
    );
    let err = TrustBundle::from_pem(trust_domain(), pem.as_bytes())
        .expect_err("the PEM loader rejects the root");
    assert!(
        matches!(err, BundleError::BadCertificate { index: 0, .. }),
        "{err:?}"
    );
}
