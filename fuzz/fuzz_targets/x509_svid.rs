//! X.509-SVID verification on arbitrary DER chains.
//!
//! Input: the first byte's value modulo 3, plus one, is the number of
//! certificates; each certificate but the last is preceded by its length as a
//! big-endian u16, and the last takes the rest. The chain is verified for
//! client and server use against the fixed bundles in `fixtures/` at a fixed
//! time inside the seeds' validity, and its leaf is inspected.
//!
//! Properties checked, besides "no panic": a chain that verifies has a leaf
//! that `inspect_leaf` accepts with the same ID and serial.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;
use zt_core::BundleSet;
use zt_core::x509::{Usage, inspect_leaf, verify_x509_svid};

mod common;

fn bundles() -> &'static BundleSet {
    static BUNDLES: OnceLock<BundleSet> = OnceLock::new();
    BUNDLES.get_or_init(common::bundles)
}

fn split_chain(data: &[u8]) -> Vec<&[u8]> {
    let Some((&count, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let count = usize::from(count % 3) + 1;
    let mut chain = Vec::with_capacity(count);
    for _ in 1..count {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (cert, tail) = tail.split_at(len);
        chain.push(cert);
        rest = tail;
    }
    chain.push(rest);
    chain
}

fuzz_target!(|data: &[u8]| {
    let chain: Vec<_> = split_chain(data)
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let leaf = chain.first().map(inspect_leaf);
    // Inside the seeds' validity, after it, and before it.
    let times = [
        common::now(),
        common::now() + Duration::from_secs(86_400 * 365),
        UNIX_EPOCH,
    ];
    for now in times {
        for usage in [Usage::ClientAuth, Usage::ServerAuth] {
            if let Ok(verified) = verify_x509_svid(&chain, bundles(), now, usage) {
                let Some(Ok(info)) = &leaf else {
                    panic!("a verified chain's leaf must inspect");
                };
                assert_eq!(verified.id(), info.id());
                assert_eq!(verified.serial(), info.serial());
                let _ = verified.serial_hex();
                let _ = verified.chain_validity();
                let _: SystemTime = verified.not_after();
            }
        }
    }
});
