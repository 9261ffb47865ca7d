//! JWT-SVID validation of arbitrary token strings.
//!
//! Input: UTF-8 text, the compact token. It is validated against the fixed
//! bundles in `fixtures/` for the seeds' audience, at a time inside the
//! seeds' validity and at times before and long after it.
//!
//! Properties checked, besides "no panic": a token that validates names a
//! subject in a fixture trust domain and carries the audience asked for.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use zt_core::BundleSet;
use zt_core::jwt::{JwtSvid, validate_jwt_svid};

mod common;

fn bundles() -> &'static BundleSet {
    static BUNDLES: OnceLock<BundleSet> = OnceLock::new();
    BUNDLES.get_or_init(common::bundles)
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let times = [
        common::now(),
        common::now() + Duration::from_secs(86_400 * 365 * 100),
        UNIX_EPOCH,
    ];
    for now in times {
        for leeway in [Duration::ZERO, Duration::from_secs(30), Duration::MAX] {
            if let Ok(claims) = validate_jwt_svid(token, bundles(), common::AUDIENCE, now, leeway) {
                assert!(bundles().get(claims.subject().trust_domain()).is_some());
                assert!(claims.audience().iter().any(|a| a == common::AUDIENCE));
                let _ = claims.expiry();
                let _ = claims.key_id();
            }
        }
    }
    if let Ok(svid) = JwtSvid::from_trusted_token(token) {
        let _ = (svid.subject(), svid.audience(), svid.expiry());
    }
});
