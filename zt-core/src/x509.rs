//! X.509-SVID verification by the SPIFFE rules.
//!
//! [`verify_x509_svid`] is the one function the TLS layers call. It checks,
//! in order, and reports the first rule broken with its own
//! [`SvidError`] variant:
//!
//! 1. the chain is not empty, holds at most [`MAX_CHAIN_LEN`] certificates,
//!    and every certificate parses;
//! 2. the leaf has exactly one URI SAN, it is a SPIFFE ID in canonical form
//!    (see [`crate::id::parse_canonical`]), and its path is
//!    not the root;
//! 3. the leaf is not a CA, its key usage includes `digitalSignature` and
//!    excludes `keyCertSign` and `cRLSign`;
//! 4. every other certificate in the chain is a CA allowed to sign
//!    certificates;
//! 5. the leaf is valid at the injected time;
//! 6. the bundle set holds a bundle for **the leaf's own trust domain**;
//! 7. rustls-webpki builds a path from the leaf to one of that bundle's
//!    authorities (signatures, validity of every certificate, path length,
//!    extended key usage if present).
//!
//! Rules 3 and 4 are checked here rather than left to webpki: released
//! webpki versions accept a leaf carrying `keyCertSign`, which the SPIFFE
//! X.509-SVID specification forbids.
//!
//! Name constraints: rustls-webpki rejects a CA whose name constraints
//! contain a URI name form (`UnsupportedNameType`). SPIFFE CAs may constrain
//! URI SANs to their trust domain; such chains fail verification here with
//! [`SvidError::ChainRejected`]. The trust-domain check of rule 6 gives the
//! protection those constraints are meant to give.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::bundle::BundleSet;
use crate::crl::CertRef;
use crate::id::{IdError, parse_canonical};
use crate::time::Timestamp;
use crate::{SpiffeId, TrustDomain};

/// Which side of a TLS connection the SVID is presented by; selects the
/// extended key usage that must be present if the leaf has the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Usage {
    /// A client certificate (`id-kp-clientAuth`).
    ClientAuth,
    /// A server certificate (`id-kp-serverAuth`).
    ServerAuth,
}

/// Why an X.509-SVID was rejected. One variant per SPIFFE rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// No certificate was presented.
    #[error("no certificate was presented; an X.509-SVID chain starts with the leaf")]
    EmptyChain,
    /// The chain holds more certificates than any valid SVID chain can.
    #[error(
        "the chain has {len} certificates, more than the {max} a verifiable X.509-SVID chain can have (leaf, at most 6 intermediate CAs, and the root); the peer must send only its leaf and intermediates"
    )]
    ChainTooLong {
        /// How many certificates were presented.
        len: usize,
        /// The limit, [`MAX_CHAIN_LEN`].
        max: usize,
    },
    /// PEM text could not be decoded.
    #[error("PEM is malformed: {reason}")]
    Pem {
        /// What the decoder reported.
        reason: String,
    },
    /// No private key was found.
    #[error(
        "no private key found; expected a PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block"
    )]
    NoPrivateKey,
    /// The private key is not the key of the leaf certificate (for example
    /// a certificate and key read between two writes of a rotation).
    #[error("the private key does not belong to the leaf certificate (its public key differs)")]
    KeyMismatch,
    /// The private key could not be read to check it against the leaf.
    #[error("the private key cannot be checked against the leaf: {reason}")]
    UnreadableKey {
        /// What was wrong.
        reason: String,
    },
    /// A certificate in the chain is not valid DER X.509.
    #[error("certificate #{index} in the chain is not a valid X.509 certificate: {reason}")]
    Malformed {
        /// Position in the chain, leaf = 0.
        index: usize,
        /// What the parser reported.
        reason: String,
    },
    /// The leaf has no URI SAN.
    #[error("the leaf certificate has no URI SAN; an X.509-SVID carries its SPIFFE ID there")]
    NoUriSan,
    /// The leaf has more than one URI SAN.
    #[error("the leaf certificate has {count} URI SANs; an X.509-SVID must have exactly one")]
    MultipleUriSans {
        /// How many URI SANs the leaf has.
        count: usize,
    },
    /// The URI SAN is not a `spiffe://` URI.
    #[error("the leaf's URI SAN `{uri}` is not a SPIFFE ID")]
    NotSpiffeUri {
        /// The URI found.
        uri: String,
    },
    /// The URI SAN is a SPIFFE ID that is not in canonical form.
    #[error("the leaf's SPIFFE ID is not canonical: {0}")]
    NonCanonicalId(#[source] IdError),
    /// The SPIFFE ID has no path (it names a trust domain, not a workload).
    #[error("the leaf's SPIFFE ID `{id}` has no path; a workload ID must have one")]
    RootId {
        /// The ID found.
        id: String,
    },
    /// The leaf is a CA certificate.
    #[error(
        "the leaf certificate is a CA (basicConstraints cA=true); an X.509-SVID leaf must not be"
    )]
    LeafIsCa,
    /// The leaf has no key usage extension.
    #[error("the leaf certificate has no keyUsage extension; it must assert digitalSignature")]
    MissingKeyUsage,
    /// The leaf's key usage lacks `digitalSignature`.
    #[error("the leaf's keyUsage lacks digitalSignature")]
    MissingDigitalSignature,
    /// The leaf's key usage has `keyCertSign`.
    #[error("the leaf's keyUsage has keyCertSign; only CA certificates may sign certificates")]
    LeafCanSignCertificates,
    /// The leaf's key usage has `cRLSign`.
    #[error("the leaf's keyUsage has cRLSign; only CA certificates may sign CRLs")]
    LeafCanSignCrls,
    /// A certificate above the leaf is not a CA.
    #[error("certificate #{index} in the chain signs another certificate but is not a CA")]
    SigningCertNotCa {
        /// Position in the chain, leaf = 0.
        index: usize,
    },
    /// A certificate above the leaf is a CA whose key usage lacks `keyCertSign`.
    #[error("certificate #{index} in the chain is a CA whose keyUsage lacks keyCertSign")]
    SigningCertCannotSign {
        /// Position in the chain, leaf = 0.
        index: usize,
    },
    /// The leaf is not valid yet.
    #[error("the SVID is not valid until {not_before} (now {now}); check the clocks of both hosts")]
    NotYetValid {
        /// Start of validity.
        not_before: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// The leaf has expired.
    #[error("the SVID expired at {not_after} (now {now}); the workload must fetch a fresh one")]
    Expired {
        /// End of validity.
        not_after: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// No bundle is held for the leaf's trust domain.
    #[error(
        "no trust bundle for trust domain `{trust_domain}`; add it to the bundle set (federation) to accept its workloads"
    )]
    UnknownTrustDomain {
        /// The leaf's trust domain.
        trust_domain: String,
    },
    /// The bundle of the leaf's trust domain has no X.509 authorities.
    #[error("the bundle for trust domain `{trust_domain}` has no X.509 authorities")]
    EmptyBundle {
        /// The leaf's trust domain.
        trust_domain: String,
    },
    /// The chain does not lead to an authority of the leaf's trust domain.
    #[error("the chain is not signed by an authority of trust domain `{trust_domain}` ({reason})")]
    UntrustedChain {
        /// The leaf's trust domain.
        trust_domain: String,
        /// What webpki reported.
        reason: String,
    },
    /// A certificate of the chain is outside its validity period.
    #[error("a certificate in the chain is outside its validity period ({reason})")]
    ChainNotValidNow {
        /// What webpki reported.
        reason: String,
    },
    /// The leaf's extended key usage does not allow this use.
    #[error("the leaf's extendedKeyUsage does not allow use as a {usage} certificate")]
    WrongExtendedKeyUsage {
        /// `client` or `server`.
        usage: &'static str,
    },
    /// webpki rejected the chain for another reason.
    #[error("the certificate chain was rejected: {reason}")]
    ChainRejected {
        /// What webpki reported.
        reason: String,
    },
}

/// The most certificates [`verify_x509_svid`] accepts in a presented chain,
/// leaf included.
///
/// rustls-webpki never builds a path through more than 6 intermediate CAs,
/// so no longer chain can verify: leaf, 6 intermediates, and the root that
/// some peers send as well make 8. A longer chain is refused with
/// [`SvidError::ChainTooLong`] before any certificate in it is parsed, so a
/// peer cannot make a handshake parse and check dozens of certificates. The
/// total size of a chain is bounded by TLS itself: rustls refuses handshake
/// messages over 64 KiB.
pub const MAX_CHAIN_LEN: usize = 8;

/// The outcome of a successful verification.
///
/// Only [`verify_x509_svid`] constructs it.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedSvid {
    id: SpiffeId,
    serial: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
    /// When every certificate of the presented chain is valid.
    chain_valid: (SystemTime, SystemTime),
    /// The verified path, leaf first, as CRLs see it.
    path: Arc<[CertRef]>,
}

impl VerifiedSvid {
    /// The SPIFFE ID of the leaf.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The trust domain of the leaf.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.id.trust_domain()
    }

    /// The leaf's serial number (big-endian, no leading zero bytes).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The leaf's serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }

    /// Start of the leaf's validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the leaf's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The period in which every certificate of the presented chain is
    /// valid: the intersection of their validity periods.
    pub fn chain_validity(&self) -> (SystemTime, SystemTime) {
        self.chain_valid
    }

    /// The certificates of the verified path below the trust anchor, leaf
    /// first, each as its issuer's name and its serial: what a
    /// [CRL](crate::crl) can revoke. Intermediates the peer sent but the
    /// path does not use are not included.
    pub fn path(&self) -> &[CertRef] {
        &self.path
    }
}

impl fmt::Debug for VerifiedSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedSvid")
            .field("id", &self.id.to_string())
            .field("serial", &self.serial_hex())
            .field("not_after", &Timestamp(self.not_after))
            .finish()
    }
}

/// What an SVID leaf says about itself, read without any trust decision.
///
/// For a certificate that has already been verified (for example by a TLS
/// handshake whose verifier called [`verify_x509_svid`]), this recovers the
/// identity fields without repeating the signature checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    pub(crate) id: SpiffeId,
    pub(crate) serial: Vec<u8>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    pub(crate) issuer: Vec<u8>,
}

impl LeafInfo {
    /// The leaf's issuer name and serial, as [CRLs](crate::crl) see it.
    pub fn cert_ref(&self) -> CertRef {
        CertRef::new(&self.issuer, &self.serial)
    }

    /// The leaf's issuer name: DER contents of the `Name`, without its
    /// outer `SEQUENCE` header.
    pub fn issuer(&self) -> &[u8] {
        &self.issuer
    }

    /// The SPIFFE ID in the URI SAN.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The serial number (big-endian, no leading zero bytes).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

fn parse(index: usize, der: &[u8]) -> Result<X509Certificate<'_>, SvidError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SvidError::Malformed {
            index,
            reason: "trailing data after the certificate".into(),
        }),
        Err(e) => Err(SvidError::Malformed {
            index,
            reason: e.to_string(),
        }),
    }
}

fn asn1_to_system_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

fn malformed_ext(index: usize, e: impl fmt::Display) -> SvidError {
    SvidError::Malformed {
        index,
        reason: format!("bad extension: {e}"),
    }
}

/// Extracts the SPIFFE ID of a leaf, enforcing the ID rules (exactly one
/// canonical SPIFFE URI SAN with a non-root path).
fn leaf_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| malformed_ext(0, e))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let uri = match uris.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [one] => *one,
        more => return Err(SvidError::MultipleUriSans { count: more.len() }),
    };
    if !uri.to_ascii_lowercase().starts_with("spiffe://") {
        return Err(SvidError::NotSpiffeUri {
            uri: uri.to_owned(),
        });
    }
    let id = parse_canonical(uri).map_err(SvidError::NonCanonicalId)?;
    if id.path().is_empty() {
        return Err(SvidError::RootId { id: id.to_string() });
    }
    Ok(id)
}

fn canonical_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].to_vec()
}

/// The end of a certificate's validity period.
///
/// # Errors
///
/// [`SvidError::Malformed`] if the certificate does not parse.
pub fn certificate_not_after(cert: &CertificateDer<'_>) -> Result<SystemTime, SvidError> {
    Ok(asn1_to_system_time(parse(0, cert)?.validity().not_after))
}

/// Reads the identity fields of a leaf certificate **without verifying
/// it**: only the SPIFFE ID rules (one canonical SPIFFE URI SAN with a path)
/// are checked.
///
/// # Errors
///
/// [`SvidError::Malformed`] or the ID rule the leaf breaks.
pub fn inspect_leaf(leaf: &CertificateDer<'_>) -> Result<LeafInfo, SvidError> {
    let cert = parse(0, leaf)?;
    let issuer = crate::crl::name_contents(cert.issuer().as_raw())
        .ok_or_else(|| SvidError::Malformed {
            index: 0,
            reason: "the issuer name is not DER".into(),
        })?
        .to_vec();
    Ok(LeafInfo {
        id: leaf_id(&cert)?,
        serial: canonical_serial(cert.raw_serial()),
        not_before: asn1_to_system_time(cert.validity().not_before),
        not_after: asn1_to_system_time(cert.validity().not_after),
        issuer,
    })
}

fn check_leaf_usage(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    let bc = cert.basic_constraints().map_err(|e| malformed_ext(0, e))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(SvidError::LeafIsCa);
    }
    let ku = cert
        .key_usage()
        .map_err(|e| malformed_ext(0, e))?
        .ok_or(SvidError::MissingKeyUsage)?;
    if !ku.value.digital_signature() {
        return Err(SvidError::MissingDigitalSignature);
    }
    if ku.value.key_cert_sign() {
        return Err(SvidError::LeafCanSignCertificates);
    }
    if ku.value.crl_sign() {
        return Err(SvidError::LeafCanSignCrls);
    }
    Ok(())
}

fn check_signing_cert(index: usize, cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| malformed_ext(index, e))?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err(SvidError::SigningCertNotCa { index });
    }
    let ku = cert.key_usage().map_err(|e| malformed_ext(index, e))?;
    if ku.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err(SvidError::SigningCertCannotSign { index });
    }
    Ok(())
}

/// Verifies an X.509-SVID chain presented by a peer.
///
/// `chain` is leaf first, as received in the TLS handshake. `now` comes from
/// the caller's [`Clock`](crate::time::Clock), so tests can pin it.
///
/// # Errors
///
/// The [`SvidError`] for the first rule the chain breaks (see the module
/// documentation for the order).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use zt_dev::FakeCa;
/// use zt_core::x509::{verify_x509_svid, Usage};
/// use zt_core::{BundleSet, SpiffeId};
///
/// let ca = FakeCa::new("example.org".parse()?)?;
/// let id: SpiffeId = "spiffe://example.org/billing".parse()?;
/// let svid = ca.issue_x509_svid(&id, Duration::from_secs(300))?;
/// let bundles = BundleSet::new().with(ca.bundle());
/// let verified = verify_x509_svid(svid.chain(), &bundles, SystemTime::now(), Usage::ClientAuth)?;
/// assert_eq!(verified.id(), &id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify_x509_svid(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
    now: SystemTime,
    usage: Usage,
) -> Result<VerifiedSvid, SvidError> {
    let (leaf_der, intermediates) = chain.split_first().ok_or(SvidError::EmptyChain)?;
    if chain.len() > MAX_CHAIN_LEN {
        return Err(SvidError::ChainTooLong {
            len: chain.len(),
            max: MAX_CHAIN_LEN,
        });
    }
    let leaf = parse(0, leaf_der)?;
    let id = leaf_id(&leaf)?;
    check_leaf_usage(&leaf)?;
    let not_before = asn1_to_system_time(leaf.validity().not_before);
    let not_after = asn1_to_system_time(leaf.validity().not_after);
    let mut chain_valid = (not_before, not_after);
    for (i, der) in intermediates.iter().enumerate() {
        let index = i + 1;
        let cert = parse(index, der)?;
        check_signing_cert(index, &cert)?;
        chain_valid.0 = chain_valid
            .0
            .max(asn1_to_system_time(cert.validity().not_before));
        chain_valid.1 = chain_valid
            .1
            .min(asn1_to_system_time(cert.validity().not_after));
    }

    if now < not_before {
        return Err(SvidError::NotYetValid {
            not_before: Timestamp(not_before),
            now: Timestamp(now),
        });
    }
    if now > not_after {
        return Err(SvidError::Expired {
            not_after: Timestamp(not_after),
            now: Timestamp(now),
        });
    }

    let td = id.trust_domain();
    let bundle = bundles
        .get(td)
        .ok_or_else(|| SvidError::UnknownTrustDomain {
            trust_domain: td.to_string(),
        })?;
    if bundle.trust_anchors().is_empty() {
        return Err(SvidError::EmptyBundle {
            trust_domain: td.to_string(),
        });
    }

    let end_entity =
        webpki::EndEntityCert::try_from(leaf_der).map_err(|e| SvidError::Malformed {
            index: 0,
            reason: format!("{e:?}"),
        })?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (eku, usage_name) = match usage {
        Usage::ClientAuth => (webpki::KeyUsage::client_auth(), "client"),
        Usage::ServerAuth => (webpki::KeyUsage::server_auth(), "server"),
    };
    let path = end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            bundle.trust_anchors(),
            intermediates,
            UnixTime::since_unix_epoch(since_epoch),
            eku,
            None,
            None,
        )
        .map_err(|e| map_webpki_error(e, td, usage_name))?;
    let path: Arc<[CertRef]> = std::iter::once(&**path.end_entity())
        .chain(path.intermediate_certificates())
        .map(|cert| CertRef::new(cert.issuer(), cert.serial()))
        .collect();

    Ok(VerifiedSvid {
        id,
        serial: canonical_serial(leaf.raw_serial()),
        not_before,
        not_after,
        chain_valid,
        path,
    })
}

fn map_webpki_error(e: webpki::Error, td: &TrustDomain, usage: &'static str) -> SvidError {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer | W::InvalidSignatureForPublicKey | W::CertDistrusted => {
            SvidError::UntrustedChain {
                trust_domain: td.to_string(),
                reason: format!("{e:?}"),
            }
        }
        W::CertExpired { .. } | W::CertNotValidYet { .. } | W::InvalidCertValidity => {
            SvidError::ChainNotValidNow {
                reason: format!("{e:?}"),
            }
        }
        W::RequiredEkuNotFoundContext(_) => SvidError::WrongExtendedKeyUsage { usage },
        W::CaUsedAsEndEntity => SvidError::LeafIsCa,
        other => SvidError::ChainRejected {
            reason: format!("{other:?}"),
        },
    }
}
