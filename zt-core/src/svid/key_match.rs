//! Does a private key belong to a certificate? The public key derived from
//! the private key (by ring, which checks the pair's consistency) is
//! compared with the certificate's SubjectPublicKeyInfo.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::x509::SvidError;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

fn unreadable(reason: impl Into<String>) -> SvidError {
    SvidError::UnreadableKey {
        reason: reason.into(),
    }
}

pub(super) fn check(leaf: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<(), SvidError> {
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| SvidError::Malformed {
        index: 0,
        reason: e.to_string(),
    })?;
    let spki = cert.public_key();
    let certified: &[u8] = &spki.subject_public_key.data;
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let derived = match key {
        PrivateKeyDer::Pkcs8(pkcs8) => public_of_pkcs8(pkcs8.secret_pkcs8_der(), curve.as_deref())?,
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map_err(|e| unreadable(format!("RSA key: {e}")))?
            .public_key()
            .as_ref()
            .to_vec(),
        PrivateKeyDer::Sec1(der) => {
            if algorithm != OID_EC_PUBLIC_KEY {
                return Err(SvidError::KeyMismatch);
            }
            // ring reads EC keys as PKCS#8: wrap the SEC1 key with the
            // leaf's own algorithm identifier (a key for another curve then
            // fails to parse or derives another public key).
            let algorithm_id = first_inner_tlv(spki.raw)
                .ok_or_else(|| unreadable("the leaf's public key info does not parse"))?;
            let pkcs8 = sec1_to_pkcs8(algorithm_id, der.secret_sec1_der());
            public_of_pkcs8(&pkcs8, curve.as_deref())?
        }
        _ => return Err(unreadable("unsupported private key encoding")),
    };
    if derived == certified {
        Ok(())
    } else {
        Err(SvidError::KeyMismatch)
    }
}

fn public_of_pkcs8(der: &[u8], curve: Option<&str>) -> Result<Vec<u8>, SvidError> {
    let rng = SystemRandom::new();
    let ec = match curve {
        Some(OID_P256) => Some(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        Some(OID_P384) => Some(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        _ => None,
    };
    if let Some(alg) = ec {
        return EcdsaKeyPair::from_pkcs8(alg, der, &rng)
            // A key of another curve or type does not parse as this one:
            // it is not the leaf's key.
            .map(|pair| pair.public_key().as_ref().to_vec())
            .map_err(|_| SvidError::KeyMismatch);
    }
    if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
        return Ok(pair.public_key().as_ref().to_vec());
    }
    if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        return Ok(pair.public_key().as_ref().to_vec());
    }
    Err(unreadable(
        "not an ECDSA P-256/P-384, RSA or Ed25519 key of the leaf's type",
    ))
}

/// The first element inside a DER SEQUENCE (for a SubjectPublicKeyInfo:
/// its AlgorithmIdentifier, tag and length included).
fn first_inner_tlv(sequence: &[u8]) -> Option<&[u8]> {
    let (_, body) = split_header(sequence)?;
    let (header_len, content) = split_header(body)?;
    body.get(..header_len + content.len())
}

/// The header length and contents of the DER element at the start of
/// `der`.
fn split_header(der: &[u8]) -> Option<(usize, &[u8])> {
    let first = *der.get(1)?;
    let (header_len, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let len = der
            .get(2..2 + count)?
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (2 + count, len)
    };
    let content = der.get(header_len..header_len.checked_add(len)?)?;
    Some((header_len, content))
}

/// `PrivateKeyInfo { version 0, algorithm, OCTET STRING sec1 }`.
fn sec1_to_pkcs8(algorithm: &[u8], sec1: &[u8]) -> Vec<u8> {
    let mut octets = vec![0x04];
    push_len(&mut octets, sec1.len());
    octets.extend_from_slice(sec1);
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(algorithm);
    body.extend_from_slice(&octets);
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    let bytes = len.to_be_bytes();
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = &bytes[start..];
    match significant {
        [] => out.push(0),
        [b] if *b < 0x80 => out.push(*b),
        _ => {
            // At most size_of::<usize>() bytes, which fits the 7-bit count.
            out.push(0x80 | u8::try_from(significant.len()).unwrap_or(0x7f));
            out.extend_from_slice(significant);
        }
    }
}
