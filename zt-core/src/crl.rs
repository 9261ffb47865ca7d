//! X.509 certificate revocation lists (CRLs), verified against the trust
//! bundle before anything they list is believed.
//!
//! A CRL names revoked certificates by serial number, and a serial is
//! unique only per issuer. [`Crl::verify`] reads one CRL (DER; [`read_crls`]
//! splits PEM text or DER) and accepts it only if its signature verifies
//! with the key of a CA the bundle vouches for:
//!
//! - an X.509 authority of a trust bundle whose subject is the CRL's issuer
//!   (the usual case: the trust domain's root signs the CRL), or
//! - an intermediate CA **delivered with the CRL** (a `CERTIFICATE` block
//!   in the same PEM file, or passed alongside), whose subject is the CRL's
//!   issuer, which is a CA allowed to sign certificates, is valid at the
//!   given time, and whose own signature verifies with an authority of a
//!   trust bundle (one level: intermediates of intermediates are not
//!   followed).
//!
//! A signer whose key usage extension lacks `cRLSign` is refused. A CRL
//! signed by anyone else is refused with [`CrlError::UntrustedSigner`]; it
//! changes nothing. Signatures are checked with rustls-webpki's
//! algorithms ([`webpki::ALL_VERIFICATION_ALGS`]); the CRL structure is read
//! with x509-parser, which accepts version 1 and version 2 CRLs.
//!
//! # Scope
//!
//! A verified CRL applies to certificates **issued by its issuer in the
//! trust domain whose bundle vouched for it**: a certificate is revoked by
//! it when the certificate's issuer name equals the CRL's issuer and its
//! serial is listed. [`CertRef`] is that pair for one certificate of a
//! verified chain; [`VerifiedSvid::path`](crate::x509::VerifiedSvid::path)
//! gives the leaf's and every intermediate's, so a CRL that lists an
//! intermediate refuses every leaf chained through it. Serials are compared
//! in canonical form (leading zero bytes stripped), so a CRL entry
//! `00:8f:…` matches a certificate whose DER serial carries the same pad.
//!
//! # Staleness
//!
//! A CRL whose `nextUpdate` has passed is *stale*. What a stale CRL does is
//! chosen per trust domain with [`StaleCrlPolicy`]:
//! [`KeepEnforcing`](StaleCrlPolicy::KeepEnforcing) (the default, fail
//! open) keeps refusing what it lists and accepts the rest, and reports it;
//! [`RefuseIssued`](StaleCrlPolicy::RefuseIssued) (fail closed) refuses
//! every certificate of its issuer until a fresh CRL arrives. Either way a
//! stale CRL is never dropped: a late update cannot un-revoke anything.
//!
//! [`Revocations`](crate::revocation::Revocations) holds the CRLs in force
//! next to the deny-list; see
//! [`Revocations::set_crls`](crate::revocation::Revocations::set_crls),
//! [`Revocations::add_crl_file`](crate::revocation::Revocations::add_crl_file)
//! and, for the CRLs a SPIFFE Workload API delivers (feature
//! `workload-api`), `WorkloadApiCrls`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::TrustDomain;
use crate::bundle::BundleSet;
use crate::time::Timestamp;

/// Why a CRL was refused. Nothing of a refused CRL takes effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// The file could not be read.
    #[error("cannot read CRL {source_name}: {reason}")]
    Io {
        /// The file.
        source_name: String,
        /// The I/O error.
        reason: String,
    },
    /// PEM text could not be decoded, or holds no `X509 CRL` block.
    #[error("CRL {source_name}: {reason}")]
    Pem {
        /// Where the CRL came from.
        source_name: String,
        /// What was wrong.
        reason: String,
    },
    /// The bytes are not an X.509 CRL.
    #[error("CRL {source_name} (#{index}) is malformed: {reason}")]
    Malformed {
        /// Where the CRL came from.
        source_name: String,
        /// Position of the CRL in its file or response, from 0.
        index: usize,
        /// What the parser reported.
        reason: String,
    },
    /// No CA the trust bundles vouch for signed the CRL: no authority (or
    /// delivered intermediate chained to one) has its issuer name, or none
    /// of their keys verifies its signature.
    #[error(
        "CRL {source_name} (#{index}) from `{issuer}` is not signed by a CA of any trust bundle ({reason}); it was ignored"
    )]
    UntrustedSigner {
        /// Where the CRL came from.
        source_name: String,
        /// Position of the CRL in its file or response, from 0.
        index: usize,
        /// The CRL's issuer name.
        issuer: String,
        /// What was tried.
        reason: String,
    },
    /// The CRL's `thisUpdate` is further in the future than clock skew
    /// explains ([`MAX_CLOCK_SKEW`]).
    #[error(
        "CRL {source_name} (#{index}) from `{issuer}` is not valid until {this_update} (now {now}); check the clocks of the CA and this host"
    )]
    NotYetValid {
        /// Where the CRL came from.
        source_name: String,
        /// Position of the CRL in its file or response, from 0.
        index: usize,
        /// The CRL's issuer name.
        issuer: String,
        /// Its `thisUpdate`.
        this_update: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// The CRL is older (`thisUpdate`) than the one in force from the same
    /// source and issuer: a replayed CRL could lift revocations.
    #[error(
        "CRL {source_name} from `{issuer}` was issued at {this_update}, before the one in force ({in_force}); it was ignored"
    )]
    Older {
        /// Where the CRL came from.
        source_name: String,
        /// The CRL's issuer name.
        issuer: String,
        /// Its `thisUpdate`.
        this_update: Timestamp,
        /// The `thisUpdate` of the CRL in force.
        in_force: Timestamp,
    },
    /// The Workload API delivering CRLs could not be reached or sent
    /// something that is not a response of the protocol.
    #[error("Workload API {endpoint}: {reason}")]
    WorkloadApi {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The CRL in force has passed its `nextUpdate` (reported, not a
    /// refusal: what it does is its trust domain's [`StaleCrlPolicy`]).
    #[error(
        "CRL {source_name} from `{issuer}` is stale: its nextUpdate was {next_update}; the issuer must publish a fresh one"
    )]
    Stale {
        /// Where the CRL came from.
        source_name: String,
        /// The CRL's issuer name.
        issuer: String,
        /// When it should have been replaced.
        next_update: Timestamp,
    },
}

/// How far in the future a CRL's `thisUpdate` may be (clocks of the CA and
/// this host differ) before the CRL is refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// What a trust domain does with a CRL past its `nextUpdate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StaleCrlPolicy {
    /// Fail open (the default): the stale CRL's entries stay revoked, every
    /// other certificate of its issuer is accepted, and the staleness is
    /// reported (log target `zt::revocation`,
    /// [`Revocations::last_error`](crate::revocation::Revocations::last_error),
    /// [`Revocations::stale_crls`](crate::revocation::Revocations::stale_crls)).
    /// An outage of the CRL publisher does not take the trust domain down.
    #[default]
    KeepEnforcing,
    /// Fail closed: every certificate issued by the stale CRL's issuer is
    /// refused until a fresh CRL arrives.
    RefuseIssued,
}

/// One certificate of a verified chain as CRLs see it: its issuer's name
/// and its serial.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CertRef {
    issuer: Box<[u8]>,
    serial: Box<[u8]>,
}

impl CertRef {
    /// A certificate issued by the CA named `issuer` (the DER contents of
    /// the `Name`, without its outer `SEQUENCE` header, as rustls-webpki
    /// gives it) with serial `serial` (big-endian; leading zero bytes are
    /// ignored).
    pub fn new(issuer: &[u8], serial: &[u8]) -> Self {
        Self {
            issuer: issuer.into(),
            serial: canonical(serial).into(),
        }
    }

    /// The issuer's name, DER contents of the `Name`.
    pub fn issuer(&self) -> &[u8] {
        &self.issuer
    }

    /// The serial, canonical (no leading zero bytes).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }
}

impl fmt::Debug for CertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertRef")
            .field("issuer", &hex::encode(&self.issuer))
            .field("serial", &hex::encode(&self.serial))
            .finish()
    }
}

/// A serial in canonical form: no leading zero bytes, but at least one
/// byte (serial 0 is `[0]`), as [`VerifiedSvid::serial`] gives it.
///
/// [`VerifiedSvid::serial`]: crate::x509::VerifiedSvid::serial
pub(crate) fn canonical(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    &raw[start..]
}

/// A CRL whose signature verified with a CA the trust bundles vouch for.
#[derive(Clone, PartialEq, Eq)]
pub struct Crl {
    source: Arc<str>,
    trust_domains: BTreeSet<TrustDomain>,
    issuer: Box<[u8]>,
    issuer_name: String,
    serials: HashSet<Box<[u8]>>,
    this_update: SystemTime,
    next_update: Option<SystemTime>,
    number: Option<String>,
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("source", &self.source)
            .field("issuer", &self.issuer_name)
            .field("trust_domains", &self.trust_domains)
            .field("revoked", &self.serials.len())
            .field("next_update", &self.next_update.map(Timestamp))
            .finish_non_exhaustive()
    }
}

/// The parts of PEM text or DER bytes: the CRLs and the certificates
/// delivered with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlMaterial {
    /// DER CRLs, in order.
    pub crls: Vec<Vec<u8>>,
    /// DER certificates (intermediate CAs that signed some of the CRLs).
    pub certificates: Vec<CertificateDer<'static>>,
}

/// Splits `bytes` into CRLs and certificates: PEM text (`X509 CRL` and
/// `CERTIFICATE` blocks; other blocks are ignored) or one DER CRL.
/// `source_name` names it in errors.
///
/// # Errors
///
/// [`CrlError::Pem`] for undecodable PEM or PEM without a CRL.
pub fn read_crls(bytes: &[u8], source_name: &str) -> Result<CrlMaterial, CrlError> {
    let text_start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let is_pem = text_start.is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN"));
    if !is_pem {
        return Ok(CrlMaterial {
            crls: vec![bytes.to_vec()],
            certificates: Vec::new(),
        });
    }
    let blocks = pem::parse_many(bytes).map_err(|e| CrlError::Pem {
        source_name: source_name.to_owned(),
        reason: e.to_string(),
    })?;
    let mut material = CrlMaterial::default();
    for block in blocks {
        match block.tag() {
            "X509 CRL" => material.crls.push(block.into_contents()),
            "CERTIFICATE" => material
                .certificates
                .push(CertificateDer::from(block.into_contents())),
            _ => {}
        }
    }
    if material.crls.is_empty() {
        return Err(CrlError::Pem {
            source_name: source_name.to_owned(),
            reason: "no `X509 CRL` block".into(),
        });
    }
    Ok(material)
}

impl Crl {
    /// Parses the DER CRL `der` and verifies its signature against the CAs
    /// of `bundles`, or an intermediate of `delivered` that one of them
    /// signed and that is valid at `now` (rules in the
    /// [module docs](self)). `source_name` and `index` name it in errors
    /// and in [`source`](Self::source).
    ///
    /// # Errors
    ///
    /// [`CrlError::Malformed`] for bytes that are not a CRL,
    /// [`CrlError::UntrustedSigner`] when no CA the bundles vouch for signed
    /// it.
    pub fn verify(
        der: &[u8],
        delivered: &[CertificateDer<'_>],
        bundles: &BundleSet,
        now: SystemTime,
        source_name: &str,
        index: usize,
    ) -> Result<Self, CrlError> {
        let malformed = |reason: String| CrlError::Malformed {
            source_name: source_name.to_owned(),
            index,
            reason,
        };
        let crl = match CertificateRevocationList::from_der(der) {
            Ok(([], crl)) => crl,
            Ok(_) => return Err(malformed("trailing data after the CRL".into())),
            Err(e) => return Err(malformed(e.to_string())),
        };
        let issuer = content(crl.issuer().as_raw())
            .ok_or_else(|| malformed("the issuer name is not DER".into()))?;
        let issuer_name = crl.issuer().to_string();
        let untrusted = |reason: String| CrlError::UntrustedSigner {
            source_name: source_name.to_owned(),
            index,
            issuer: issuer_name.clone(),
            reason,
        };

        let mut trust_domains = BTreeSet::new();
        let mut tried = Vec::new();
        for bundle in bundles.iter() {
            for authority in bundle.x509_authorities() {
                let Some(ca) = CaCert::parse(authority) else {
                    continue;
                };
                if ca.subject != issuer {
                    continue;
                }
                match ca.signs_crl(der) {
                    Ok(()) => {
                        trust_domains.insert(bundle.trust_domain().clone());
                    }
                    Err(why) => {
                        tried.push(format!("authority of `{}`: {why}", bundle.trust_domain()))
                    }
                }
            }
        }
        for (n, cert) in delivered.iter().enumerate() {
            let Some(ca) = CaCert::parse(cert) else {
                tried.push(format!("delivered certificate #{n} does not parse"));
                continue;
            };
            if ca.subject != issuer {
                continue;
            }
            if let Err(why) = ca.signs_crl(der) {
                tried.push(format!("delivered intermediate #{n}: {why}"));
                continue;
            }
            if let Err(why) = ca.usable_intermediate(now) {
                tried.push(format!("delivered intermediate #{n}: {why}"));
                continue;
            }
            let before = trust_domains.len();
            for bundle in bundles.iter() {
                for authority in bundle.x509_authorities() {
                    if let Some(root) = CaCert::parse(authority)
                        && root.subject == ca.issuer
                        && root.signs(cert.as_ref()).is_ok()
                    {
                        trust_domains.insert(bundle.trust_domain().clone());
                    }
                }
            }
            if trust_domains.len() == before {
                tried.push(format!(
                    "delivered intermediate #{n} is not signed by an authority of any bundle"
                ));
            }
        }
        if trust_domains.is_empty() {
            if tried.is_empty() {
                tried.push("no CA has its name".into());
            }
            return Err(untrusted(tried.join("; ")));
        }

        let this_update = asn1_time(crl.last_update());
        if this_update > now + MAX_CLOCK_SKEW {
            return Err(CrlError::NotYetValid {
                source_name: source_name.to_owned(),
                index,
                issuer: issuer_name,
                this_update: Timestamp(this_update),
                now: Timestamp(now),
            });
        }
        let serials = crl
            .iter_revoked_certificates()
            .map(|entry| canonical(entry.raw_serial()).into())
            .collect();
        Ok(Self {
            source: Arc::from(source_name),
            trust_domains,
            issuer: issuer.into(),
            issuer_name,
            serials,
            this_update,
            next_update: crl.next_update().map(asn1_time),
            number: crl.crl_number().map(|n| n.to_str_radix(16)),
        })
    }

    /// Reads and verifies every CRL of `bytes` (PEM or DER, as
    /// [`read_crls`]); all or nothing.
    ///
    /// # Errors
    ///
    /// As [`read_crls`] and [`Crl::verify`]: the first CRL that fails.
    pub fn verify_all(
        bytes: &[u8],
        bundles: &BundleSet,
        now: SystemTime,
        source_name: &str,
    ) -> Result<Vec<Self>, CrlError> {
        let material = read_crls(bytes, source_name)?;
        material
            .crls
            .iter()
            .enumerate()
            .map(|(i, der)| Self::verify(der, &material.certificates, bundles, now, source_name, i))
            .collect()
    }

    /// Where the CRL came from (a file path, a Workload API address).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The trust domains whose bundles vouched for its signer.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.trust_domains.iter()
    }

    /// The issuer's name, DER contents of the `Name`.
    pub fn issuer(&self) -> &[u8] {
        &self.issuer
    }

    /// The issuer's name, readable (`CN=…, O=…`).
    pub fn issuer_name(&self) -> &str {
        &self.issuer_name
    }

    /// `true` if `serial` (leading zero bytes ignored) is listed.
    pub fn lists(&self, serial: &[u8]) -> bool {
        self.serials.contains(canonical(serial))
    }

    /// The listed serials, canonical.
    pub fn serials(&self) -> impl Iterator<Item = &[u8]> {
        self.serials.iter().map(|s| &**s)
    }

    /// `thisUpdate`.
    pub fn this_update(&self) -> SystemTime {
        self.this_update
    }

    /// `nextUpdate`, if the CRL has one.
    pub fn next_update(&self) -> Option<SystemTime> {
        self.next_update
    }

    /// The CRL number extension, lowercase hex, if present.
    pub fn number(&self) -> Option<&str> {
        self.number.as_deref()
    }

    /// `true` if its `nextUpdate` is before `now`.
    pub fn is_stale(&self, now: SystemTime) -> bool {
        self.next_update.is_some_and(|next| next < now)
    }

    /// The [`CrlError::Stale`] report for this CRL.
    pub fn stale_error(&self) -> CrlError {
        CrlError::Stale {
            source_name: self.source.to_string(),
            issuer: self.issuer_name.clone(),
            next_update: Timestamp(self.next_update.unwrap_or(UNIX_EPOCH)),
        }
    }

    /// `true` if `other` covers the same certificates: same issuer, a trust
    /// domain in common.
    pub(crate) fn same_scope(&self, other: &Crl) -> bool {
        self.issuer == other.issuer
            && self
                .trust_domains
                .iter()
                .any(|td| other.trust_domains.contains(td))
    }

    fn applies_to(&self, trust_domain: &TrustDomain, issuer: Option<&[u8]>) -> bool {
        self.trust_domains.contains(trust_domain) && issuer.is_none_or(|i| *self.issuer == *i)
    }
}

/// An immutable index of verified CRLs, looked up by trust domain and
/// serial.
#[derive(Debug, Clone, Default)]
pub struct CrlSet {
    crls: Vec<Arc<Crl>>,
    by_serial: HashMap<TrustDomain, HashMap<Box<[u8]>, Vec<usize>>>,
}

impl CrlSet {
    /// An index of `crls`.
    pub fn new(crls: Vec<Arc<Crl>>) -> Self {
        let mut by_serial: HashMap<TrustDomain, HashMap<Box<[u8]>, Vec<usize>>> = HashMap::new();
        for (i, crl) in crls.iter().enumerate() {
            for td in &crl.trust_domains {
                let serials = by_serial.entry(td.clone()).or_default();
                for serial in &crl.serials {
                    serials.entry(serial.clone()).or_default().push(i);
                }
            }
        }
        Self { crls, by_serial }
    }

    /// `true` if it holds no CRL.
    pub fn is_empty(&self) -> bool {
        self.crls.is_empty()
    }

    /// The CRLs.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Crl>> {
        self.crls.iter()
    }

    /// The first CRL of `trust_domain` listing `serial`, issued by `issuer`
    /// if given (any issuer of the trust domain if not).
    pub fn find(
        &self,
        trust_domain: &TrustDomain,
        serial: &[u8],
        issuer: Option<&[u8]>,
    ) -> Option<&Arc<Crl>> {
        self.by_serial
            .get(trust_domain)?
            .get(canonical(serial))?
            .iter()
            .map(|&i| &self.crls[i])
            .find(|crl| crl.applies_to(trust_domain, issuer))
    }

    /// A CRL of `trust_domain` (from `issuer` if given) that is stale at
    /// `now`.
    pub fn stale(
        &self,
        trust_domain: &TrustDomain,
        issuer: Option<&[u8]>,
        now: SystemTime,
    ) -> Option<&Arc<Crl>> {
        self.crls
            .iter()
            .find(|crl| crl.applies_to(trust_domain, issuer) && crl.is_stale(now))
    }
}

/// A CA certificate as a CRL or certificate signer.
struct CaCert<'a> {
    cert: X509Certificate<'a>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    spki: Vec<u8>,
}

impl<'a> CaCert<'a> {
    fn parse(der: &'a CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        Some(Self {
            subject: content(cert.subject().as_raw())?.to_vec(),
            issuer: content(cert.issuer().as_raw())?.to_vec(),
            spki: content(cert.tbs_certificate.subject_pki.raw)?.to_vec(),
            cert,
        })
    }

    /// Checks the signature of `signed` (a DER CRL or certificate) with
    /// this CA's key.
    fn signs(&self, signed: &[u8]) -> Result<(), String> {
        verify_signed(signed, &self.spki)
    }

    fn signs_crl(&self, crl: &[u8]) -> Result<(), String> {
        if let Ok(Some(ku)) = self.cert.key_usage()
            && !ku.value.crl_sign()
        {
            return Err("its keyUsage lacks cRLSign".into());
        }
        self.signs(crl)
    }

    fn usable_intermediate(&self, now: SystemTime) -> Result<(), String> {
        let is_ca = matches!(self.cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            return Err("not a CA".into());
        }
        let validity = self.cert.validity();
        if now < asn1_time(validity.not_before) || now > asn1_time(validity.not_after) {
            return Err(format!("not valid at {}", Timestamp(now)));
        }
        Ok(())
    }
}

/// One DER element: tag, contents, and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The contents of a DER `Name` (a `SEQUENCE`), without its header: the
/// form rustls-webpki gives issuer and subject names in.
pub(crate) fn name_contents(der: &[u8]) -> Option<&[u8]> {
    content(der)
}

/// The contents of a DER `SEQUENCE`, without its header.
fn content(der: &[u8]) -> Option<&[u8]> {
    match tlv(der)? {
        (0x30, contents, []) => Some(contents),
        _ => None,
    }
}

/// Verifies the signature of a DER `SEQUENCE { tbs, algorithm, BIT STRING
/// signature }` (a CRL or a certificate) with the key of `spki` (contents
/// of a `SubjectPublicKeyInfo`).
fn verify_signed(signed: &[u8], spki: &[u8]) -> Result<(), String> {
    let bad = || "not a signed DER structure".to_owned();
    let outer = content(signed).ok_or_else(bad)?;
    let (_, _, after_tbs) = tlv(outer).ok_or_else(bad)?;
    let tbs = &outer[..outer.len() - after_tbs.len()];
    let (alg_tag, algorithm, after_alg) = tlv(after_tbs).ok_or_else(bad)?;
    let (sig_tag, bits, _) = tlv(after_alg).ok_or_else(bad)?;
    let signature = match (alg_tag, sig_tag, bits.split_first()) {
        (0x30, 0x03, Some((0, signature))) => signature,
        _ => return Err(bad()),
    };
    let bad_key = || "the CA's public key is not DER".to_owned();
    let (key_tag, key_algorithm, after_key_alg) = tlv(spki).ok_or_else(bad_key)?;
    let (bits_tag, key_bits, _) = tlv(after_key_alg).ok_or_else(bad_key)?;
    let key = match (key_tag, bits_tag, key_bits.split_first()) {
        (0x30, 0x03, Some((0, key))) => key,
        _ => return Err(bad_key()),
    };
    let alg = webpki::ALL_VERIFICATION_ALGS
        .iter()
        .find(|alg| {
            alg.signature_alg_id().as_ref() == algorithm
                && alg.public_key_alg_id().as_ref() == key_algorithm
        })
        .ok_or_else(|| "its signature algorithm does not fit the CA's key".to_owned())?;
    alg.verify_signature(key, tbs, signature)
        .map_err(|_| "the signature does not verify with the CA's key".to_owned())
}

fn asn1_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH
    }
}

#[cfg(test)]
mod tests;
#[cfg(feature = "workload-api")]
mod workload_api;
#[cfg(feature = "workload-api")]
pub use workload_api::WorkloadApiCrls;
