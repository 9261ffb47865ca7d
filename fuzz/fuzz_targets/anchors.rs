//! Anchors by trust domain: a CA certificate that names another trust
//! domain in a SPIFFE URI SAN is never an authority of ours.
//!
//! Input: byte 0 picks the trust domain the certificate is offered to
//! (even: `example.org`, odd: `inter.example`); the rest is one DER
//! certificate, also tried as PEM text holding any number of them.
//!
//! Properties checked, besides "no panic": `add_x509_authority` accepts a
//! certificate only if `check_authority_trust_domain` does, and then the
//! trust domain `authority_trust_domain` reads from it is none or the one
//! offered to; every authority of a bundle loaded from PEM passes the check
//! for that bundle's trust domain.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;
use zt_core::bundle::{authority_trust_domain, check_authority_trust_domain};
use zt_core::{TrustBundle, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, cert)) = data.split_first() else {
        return;
    };
    let name = if selector % 2 == 0 {
        "example.org"
    } else {
        "inter.example"
    };
    let td = TrustDomain::new(name).expect("a valid literal trust domain");
    let der = CertificateDer::from(cert.to_vec());
    let named = authority_trust_domain(&der);
    let checked = check_authority_trust_domain(&td, &der);
    let mut bundle = TrustBundle::new(td.clone());
    if bundle.add_x509_authority(der.clone()).is_ok() {
        assert!(checked.is_ok(), "{checked:?}");
        match named {
            Ok(None) => {}
            Ok(Some(other)) => assert_eq!(other, td),
            Err(e) => panic!("an accepted authority's trust domain reads: {e:?}"),
        }
    }
    if let Ok(loaded) = TrustBundle::from_pem(td.clone(), cert) {
        for authority in loaded.x509_authorities() {
            check_authority_trust_domain(&td, authority)
                .expect("a loaded authority belongs to its bundle's trust domain");
        }
    }
});
