//! JWT-SVID validation cost: zt's `validate_jwt_svid` (every SPIFFE
//! JWT-SVID rule) against a plain `jsonwebtoken::decode` of the same token
//! with the same key (signature, `exp` and `aud` only).
//!
//! ```text
//! cargo bench --bench jwt
//! ```
//!
//! The token is an ES256 JWT-SVID from the fake CA. zt looks the key up by
//! `kid` in the bundle of the subject's trust domain and checks the
//! algorithm allow-list, `sub`, `exp`, `nbf` and `aud` itself; the plain
//! decode is handed the key directly. The user-context validator is timed
//! as well, for reference.
//!
//! A reused token is also timed through zt's verified-token cache
//! (`JwtSvidCache`, as `JwtAuthLayer` uses it by default):
//! `jwt cached/uncached = R`.
//!
//! It prints `jwt zt/jsonwebtoken = R` (plain time over zt time, so 1.0
//! means zt's checks cost nothing beyond jsonwebtoken's), then the floor
//! and `jwt zt/verify-floor = R`: zt's validation over one P-256
//! verification with the provider zt's TLS uses, measured in the same run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use zt_benches::criterion_median_ns as median_ns;
use zt_core::jwt::validate_jwt_svid;
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{DevUserIssuer, FakeCa};

const AUD: &str = "spiffe://example.org/ledger";

fn main() {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let billing = SpiffeId::new("spiffe://example.org/billing").unwrap();
    let svid = ca
        .issue_jwt_svid(&billing, &[AUD], Duration::from_secs(3600))
        .unwrap();
    let token = svid.token().to_owned();
    let bundles = BundleSet::new().with(ca.bundle());
    let bundle = ca.bundle();
    let authority = bundle.jwt_authorities().next().unwrap();
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(Value::Object(authority.jwk().clone())).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut plain = Validation::new(Algorithm::ES256);
    plain.set_audience(&[AUD]);

    let issuer = DevUserIssuer::new("https://idp.example.org", "example.org").unwrap();
    let users = issuer.validator().unwrap();
    let user_token = issuer
        .mint_for(
            "alice",
            &["invoices:read", "ledger:read"],
            std::slice::from_ref(&billing),
        )
        .unwrap();

    // Sanity: both accept the token before being timed.
    validate_jwt_svid(&token, &bundles, AUD, SystemTime::now(), Duration::ZERO).unwrap();
    jsonwebtoken::decode::<Map<String, Value>>(&token, &key, &plain).unwrap();
    users.validate(&user_token, SystemTime::now()).unwrap();

    let criterion_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .configure_from_args();
    let mut group = criterion.benchmark_group("jwt");
    group.bench_function("zt", |b| {
        b.iter(|| {
            validate_jwt_svid(
                black_box(&token),
                &bundles,
                AUD,
                SystemTime::now(),
                Duration::from_secs(30),
            )
            .unwrap()
        })
    });
    let cache = zt_core::jwt::JwtSvidCache::default();
    cache
        .validate(&token, &bundles, AUD, SystemTime::now(), Duration::ZERO)
        .unwrap();
    group.bench_function("zt-cached", |b| {
        b.iter(|| {
            cache
                .validate(
                    black_box(&token),
                    &bundles,
                    AUD,
                    SystemTime::now(),
                    Duration::from_secs(30),
                )
                .unwrap()
        })
    });
    group.bench_function("jsonwebtoken", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Map<String, Value>>(black_box(&token), &key, &plain).unwrap()
        })
    });
    group.bench_function("user-context", |b| {
        b.iter(|| {
            users
                .validate(black_box(&user_token), SystemTime::now())
                .unwrap()
        })
    });
    group.finish();
    // The floor: one P-256 verification with the provider zt's TLS uses.
    let x509 = ca
        .issue_x509_svid(&billing, Duration::from_secs(3600))
        .unwrap();
    let provider = zt_tls::TlsOptions::new(std::sync::Arc::new(
        zt_core::source::StaticSource::new(x509.clone(), BundleSet::new().with(ca.bundle())),
    ))
    .provider();
    let floor = zt_benches::floor::measure(
        &mut criterion,
        &criterion_dir,
        &provider,
        &x509.private_key().clone_key(),
    );
    criterion.final_summary();

    let zt = median_ns(&criterion_dir, "jwt", "zt");
    let cached = median_ns(&criterion_dir, "jwt", "zt-cached");
    let plain = median_ns(&criterion_dir, "jwt", "jsonwebtoken");
    let user = median_ns(&criterion_dir, "jwt", "user-context");
    println!(
        "median validation: zt {:.1} µs ({:.0}/s), jsonwebtoken {:.1} µs ({:.0}/s), user context {:.1} µs ({:.0}/s)",
        zt / 1e3,
        1e9 / zt,
        plain / 1e3,
        1e9 / plain,
        user / 1e3,
        1e9 / user
    );
    println!("jwt zt/jsonwebtoken = {:.3}", plain / zt);
    println!(
        "jwt cached/uncached = {:.4} (a reused token: {:.0} ns from the cache, {:.1} µs in full)",
        cached / zt,
        cached,
        zt / 1e3
    );
    floor.print();
    println!(
        "jwt zt/verify-floor = {:.3} (zt's validation over one P-256 verification, {:.1} µs)",
        zt / floor.p256_verify_ns,
        floor.p256_verify_ns / 1e3
    );
}
