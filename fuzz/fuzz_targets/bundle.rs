//! Trust bundle parsing: SPIFFE bundle JSON (JWKS), PEM, concatenated DER,
//! and a single JWT authority as a JWK.
//!
//! Input: raw bytes, given to `TrustBundle::from_bytes` (which detects the
//! format) and to each format's loader directly.
//!
//! Properties checked, besides "no panic": a bundle that loads and can be
//! written again loads again from what it wrote, with the same authorities.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_core::TrustBundle;
use zt_core::bundle::JwtAuthority;

mod common;

fn check_round_trip(bundle: &TrustBundle) {
    let td = bundle.trust_domain().clone();
    if !bundle.x509_authorities().is_empty() {
        let pem = TrustBundle::from_pem(td.clone(), bundle.to_pem().as_bytes())
            .expect("a bundle's PEM loads again");
        assert_eq!(pem.x509_authorities(), bundle.x509_authorities());
        let der = TrustBundle::from_der_concat(td.clone(), &bundle.to_der_concat())
            .expect("a bundle's DER loads again");
        assert_eq!(der.x509_authorities(), bundle.x509_authorities());
    }
    if let Ok(json) = bundle.to_spiffe_json() {
        let again = TrustBundle::from_spiffe_json(td.clone(), json.as_bytes())
            .expect("a bundle's SPIFFE JSON loads again");
        assert_eq!(again.x509_authorities(), bundle.x509_authorities());
        let mut ids: Vec<_> = bundle.jwt_authorities().map(|a| a.key_id()).collect();
        let mut again_ids: Vec<_> = again.jwt_authorities().map(|a| a.key_id()).collect();
        ids.sort_unstable();
        again_ids.sort_unstable();
        assert_eq!(ids, again_ids);
        assert_eq!(again.sequence(), bundle.sequence());
        assert_eq!(again.refresh_hint(), bundle.refresh_hint());
    }
    let jwks = bundle.jwt_jwks_json();
    let jwt_only =
        TrustBundle::from_spiffe_json(td, jwks.as_bytes()).expect("a bundle's JWKS loads again");
    assert_eq!(
        jwt_only.jwt_authorities().count(),
        bundle.jwt_authorities().count()
    );
}

fuzz_target!(|data: &[u8]| {
    let td = common::trust_domain();
    if let Ok(bundle) = TrustBundle::from_bytes(td.clone(), data) {
        check_round_trip(&bundle);
    }
    if let Ok(bundle) = TrustBundle::from_spiffe_json(td.clone(), data) {
        check_round_trip(&bundle);
    }
    if let Ok(bundle) = TrustBundle::from_pem(td.clone(), data) {
        check_round_trip(&bundle);
    }
    if let Ok(bundle) = TrustBundle::from_der_concat(td, data) {
        check_round_trip(&bundle);
    }
    if let Ok(authority) = JwtAuthority::from_jwk_json(data) {
        let _ = authority.key_type();
        let _ = authority.jwk();
    }
});
