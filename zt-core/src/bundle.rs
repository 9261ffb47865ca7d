//! Trust bundles: the X.509 and JWT authorities of each trust domain.
//!
//! A [`TrustBundle`] holds one trust domain's authorities; a [`BundleSet`]
//! holds several (the local trust domain plus federated ones). Verification
//! always picks the bundle of the peer's *own* trust domain from the set and
//! never tries roots of other trust domains.
//!
//! Bundles load from PEM (X.509 authorities only), from the concatenated DER
//! the Workload API carries, and from the SPIFFE bundle format (a JWKS JSON
//! document whose keys have `use` set to `x509-svid` or `jwt-svid`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde_json::{Map, Value, json};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::TrustDomain;
use crate::id::parse_canonical;
use crate::jose::{self, JoseError};

/// Why bundle material was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The PEM text could not be decoded.
    #[error("bundle PEM is malformed: {reason}")]
    Pem {
        /// What the decoder reported.
        reason: String,
    },
    /// The input held no certificate.
    #[error("bundle for `{trust_domain}` contains no CA certificate")]
    NoAuthorities {
        /// The trust domain the bundle was for.
        trust_domain: String,
    },
    /// A certificate in the bundle could not be parsed.
    #[error("authority #{index} in the bundle is not a valid X.509 certificate: {reason}")]
    BadCertificate {
        /// Position of the certificate in the input, from 0.
        index: usize,
        /// What the parser reported.
        reason: String,
    },
    /// The SPIFFE bundle document is not valid JSON of the expected shape.
    #[error("SPIFFE bundle document is malformed: {reason}")]
    Json {
        /// What was wrong.
        reason: String,
    },
    /// A key in the SPIFFE bundle document breaks the bundle format rules.
    #[error("key #{index} in the SPIFFE bundle document is invalid: {reason}")]
    BadKey {
        /// Position of the key in `keys`, from 0.
        index: usize,
        /// What was wrong.
        reason: String,
    },
    /// A JWT authority has no key ID.
    #[error("JWT authority has no `kid`; every jwt-svid key needs a key ID")]
    MissingKeyId,
    /// A JWT authority could not be turned into a verification key.
    #[error("JWT authority `{key_id}` is not a usable public key: {reason}")]
    BadJwtAuthority {
        /// The key ID.
        key_id: String,
        /// What was wrong.
        reason: String,
    },
    /// A CA certificate names another trust domain (or a malformed SPIFFE
    /// ID) in a SPIFFE URI SAN, so it cannot be an authority of this one.
    #[error(
        "authority #{index} names `{named}` in its URI SAN, so it cannot be an authority of \
         `{trust_domain}`; a CA of another trust domain belongs in that trust domain's bundle \
         (configure federation with it)"
    )]
    ForeignAuthority {
        /// Position of the certificate, from 0.
        index: usize,
        /// The trust domain whose bundle it was offered to.
        trust_domain: String,
        /// The SPIFFE URI the certificate names.
        named: String,
    },
    /// A certificate's public key type cannot be written as a JWK.
    #[error("authority #{index} has a public key type that cannot be expressed as a JWK")]
    UnsupportedKeyType {
        /// Position of the certificate, from 0.
        index: usize,
    },
}

/// One JWT signing authority: a public key and its key ID.
#[derive(Clone)]
pub struct JwtAuthority {
    key_id: String,
    jwk: Map<String, Value>,
    key: jose::PublicKey,
}

impl JwtAuthority {
    /// Builds an authority from a JWK (JSON object).
    ///
    /// The `kid` member is required. `use`, if present, must be `jwt-svid`.
    ///
    /// # Errors
    ///
    /// [`BundleError::MissingKeyId`], or [`BundleError::BadJwtAuthority`] if
    /// the JWK is not a public key zt verifies with (see [`crate::jose`]).
    pub fn from_jwk_json(jwk: &[u8]) -> Result<Self, BundleError> {
        let value: Value = serde_json::from_slice(jwk).map_err(|e| BundleError::Json {
            reason: e.to_string(),
        })?;
        match value {
            Value::Object(map) => Self::from_jwk_map(map),
            _ => Err(BundleError::Json {
                reason: "a JWK must be a JSON object".into(),
            }),
        }
    }

    fn from_jwk_map(mut map: Map<String, Value>) -> Result<Self, BundleError> {
        let key_id = match map.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
            _ => return Err(BundleError::MissingKeyId),
        };
        let bad = |reason: String| BundleError::BadJwtAuthority {
            key_id: key_id.clone(),
            reason,
        };
        // Private members never travel in a bundle; from_jwk refuses them.
        let key = jose::PublicKey::from_jwk(&map).map_err(|e| match e {
            JoseError::UnusableKey { reason } => bad(reason),
            other => bad(other.to_string()),
        })?;
        map.entry("use").or_insert_with(|| json!("jwt-svid"));
        Ok(Self {
            key_id,
            jwk: map,
            key,
        })
    }

    /// The key ID (`kid`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The JWK as a JSON object.
    pub fn jwk(&self) -> &Map<String, Value> {
        &self.jwk
    }

    /// The key type (`kty`), e.g. `EC` or `RSA`.
    pub fn key_type(&self) -> &str {
        self.jwk.get("kty").and_then(Value::as_str).unwrap_or("")
    }

    /// The public key that checks signatures of tokens naming this
    /// authority's `kid`.
    pub fn public_key(&self) -> &jose::PublicKey {
        &self.key
    }
}

impl fmt::Debug for JwtAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthority")
            .field("key_id", &self.key_id)
            .field("kty", &self.key_type())
            .finish()
    }
}

/// The authorities of one trust domain.
#[derive(Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    x509: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    jwt: BTreeMap<String, JwtAuthority>,
    sequence: Option<u64>,
    refresh_hint: Option<u64>,
}

impl TrustBundle {
    /// An empty bundle for `trust_domain`.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            x509: Vec::new(),
            anchors: Vec::new(),
            jwt: BTreeMap::new(),
            sequence: None,
            refresh_hint: None,
        }
    }

    /// Loads X.509 authorities from PEM text (`CERTIFICATE` blocks; other
    /// blocks are ignored).
    ///
    /// # Errors
    ///
    /// [`BundleError::Pem`] for undecodable PEM, [`BundleError::NoAuthorities`]
    /// if no certificate is present, [`BundleError::BadCertificate`] for a
    /// certificate that does not parse.
    pub fn from_pem(trust_domain: TrustDomain, pem_text: &[u8]) -> Result<Self, BundleError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| BundleError::Pem {
            reason: e.to_string(),
        })?;
        let mut bundle = Self::new(trust_domain);
        for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
            bundle.add_x509_authority(CertificateDer::from(block.contents().to_vec()))?;
        }
        bundle.require_x509()?;
        Ok(bundle)
    }

    /// Loads X.509 authorities from concatenated DER certificates, the
    /// encoding the Workload API uses for bundles.
    ///
    /// # Errors
    ///
    /// As [`TrustBundle::from_pem`].
    pub fn from_der_concat(trust_domain: TrustDomain, der: &[u8]) -> Result<Self, BundleError> {
        let mut bundle = Self::new(trust_domain);
        for (index, cert) in split_der_certificates(der)?.into_iter().enumerate() {
            bundle
                .add_x509_authority(cert)
                .map_err(|e| reindex(e, index))?;
        }
        bundle.require_x509()?;
        Ok(bundle)
    }

    /// Loads a bundle in the SPIFFE bundle format (JWKS JSON).
    ///
    /// Keys with `use: x509-svid` must carry exactly one certificate in
    /// `x5c`; keys with `use: jwt-svid` must carry a `kid`. Keys with another
    /// `use` are ignored, as the format requires.
    ///
    /// # Errors
    ///
    /// [`BundleError::Json`] for a document that is not a JWKS,
    /// [`BundleError::BadKey`] for a key that breaks the format's rules.
    pub fn from_spiffe_json(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| BundleError::Json {
            reason: e.to_string(),
        })?;
        let Value::Object(doc) = doc else {
            return Err(BundleError::Json {
                reason: "the document must be a JSON object with a `keys` array".into(),
            });
        };
        let Some(Value::Array(keys)) = doc.get("keys") else {
            return Err(BundleError::Json {
                reason: "missing `keys` array".into(),
            });
        };
        let mut bundle = Self::new(trust_domain);
        bundle.sequence = optional_u64(&doc, "spiffe_sequence")?;
        bundle.refresh_hint = optional_u64(&doc, "spiffe_refresh_hint")?;
        for (index, key) in keys.iter().enumerate() {
            let bad = |reason: &str| BundleError::BadKey {
                index,
                reason: reason.to_owned(),
            };
            let Value::Object(key) = key else {
                return Err(bad("each key must be a JSON object"));
            };
            if !key.contains_key("kty") {
                return Err(bad("missing `kty`"));
            }
            match key.get("use").and_then(Value::as_str) {
                Some("x509-svid") => {
                    let Some(Value::Array(x5c)) = key.get("x5c") else {
                        return Err(bad("x509-svid key has no `x5c`"));
                    };
                    let [Value::String(cert)] = x5c.as_slice() else {
                        return Err(bad("x509-svid key must have exactly one `x5c` certificate"));
                    };
                    let der = STANDARD
                        .decode(cert)
                        .map_err(|_| bad("`x5c` is not standard base64"))?;
                    bundle
                        .add_x509_authority(CertificateDer::from(der))
                        .map_err(|e| match e {
                            // Another trust domain's CA: the document is
                            // that trust domain's bundle, not a bad key.
                            BundleError::ForeignAuthority {
                                trust_domain,
                                named,
                                ..
                            } => BundleError::ForeignAuthority {
                                index,
                                trust_domain,
                                named,
                            },
                            e => BundleError::BadKey {
                                index,
                                reason: e.to_string(),
                            },
                        })?;
                }
                Some("jwt-svid") => {
                    let authority = JwtAuthority::from_jwk_map(key.clone()).map_err(|e| {
                        BundleError::BadKey {
                            index,
                            reason: e.to_string(),
                        }
                    })?;
                    bundle.add_jwt_authority(authority);
                }
                _ => {}
            }
        }
        Ok(bundle)
    }

    /// Loads a bundle from bytes, detecting the format: SPIFFE bundle JSON if
    /// the first non-blank byte is `{`, PEM if it contains `-----BEGIN`,
    /// concatenated DER otherwise.
    ///
    /// # Errors
    ///
    /// The error of the detected format's loader.
    pub fn from_bytes(trust_domain: TrustDomain, bytes: &[u8]) -> Result<Self, BundleError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            Self::from_spiffe_json(trust_domain, bytes)
        } else if bytes.windows(10).any(|w| w == b"-----BEGIN") {
            Self::from_pem(trust_domain, bytes)
        } else {
            Self::from_der_concat(trust_domain, bytes)
        }
    }

    fn require_x509(&self) -> Result<(), BundleError> {
        if self.x509.is_empty() {
            return Err(BundleError::NoAuthorities {
                trust_domain: self.trust_domain.to_string(),
            });
        }
        Ok(())
    }

    /// Adds an X.509 authority (a CA certificate in DER).
    ///
    /// A certificate that names another trust domain in a SPIFFE URI SAN
    /// (as SPIRE's CAs name theirs) is refused: it could otherwise mint
    /// SVIDs with this trust domain's IDs. See [`authority_trust_domain`].
    ///
    /// # Errors
    ///
    /// [`BundleError::BadCertificate`] if the certificate does not parse,
    /// [`BundleError::ForeignAuthority`] if it names another trust domain.
    pub fn add_x509_authority(&mut self, cert: CertificateDer<'static>) -> Result<(), BundleError> {
        if self.x509.iter().any(|c| c == &cert) {
            return Ok(());
        }
        let index = self.x509.len();
        // webpki reads only the subject and key of an anchor; parse the whole
        // certificate too, so every format accepts the same certificates and
        // a bundle loaded from one can be written in and read from another.
        match X509Certificate::from_der(&cert) {
            Ok(([], parsed)) => {
                check_named_trust_domain(&self.trust_domain, &parsed, index)?;
            }
            Ok(_) => {
                return Err(BundleError::BadCertificate {
                    index,
                    reason: "trailing data after the certificate".into(),
                });
            }
            Err(e) => {
                return Err(BundleError::BadCertificate {
                    index,
                    reason: e.to_string(),
                });
            }
        }
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| BundleError::BadCertificate {
                index,
                reason: format!("{e:?}"),
            })?
            .to_owned();
        self.x509.push(cert);
        self.anchors.push(anchor);
        Ok(())
    }

    /// Removes an X.509 authority; returns whether it was present.
    pub fn remove_x509_authority(&mut self, cert: &CertificateDer<'_>) -> bool {
        match self.x509.iter().position(|c| c == cert) {
            Some(i) => {
                self.x509.remove(i);
                self.anchors.remove(i);
                true
            }
            None => false,
        }
    }

    /// Adds (or replaces) a JWT authority.
    pub fn add_jwt_authority(&mut self, authority: JwtAuthority) {
        self.jwt.insert(authority.key_id.clone(), authority);
    }

    /// Removes the JWT authority with `key_id`; returns whether it was present.
    pub fn remove_jwt_authority(&mut self, key_id: &str) -> bool {
        self.jwt.remove(key_id).is_some()
    }

    /// The trust domain this bundle is for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The X.509 authorities, in DER.
    pub fn x509_authorities(&self) -> &[CertificateDer<'static>] {
        &self.x509
    }

    /// The X.509 authorities as webpki trust anchors.
    pub fn trust_anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The JWT authority with `key_id`.
    pub fn jwt_authority(&self, key_id: &str) -> Option<&JwtAuthority> {
        self.jwt.get(key_id)
    }

    /// All JWT authorities, ordered by key ID.
    pub fn jwt_authorities(&self) -> impl Iterator<Item = &JwtAuthority> {
        self.jwt.values()
    }

    /// The bundle's sequence number, if it came from a SPIFFE bundle document.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// Sets the sequence number written by [`TrustBundle::to_spiffe_json`].
    pub fn set_sequence(&mut self, sequence: Option<u64>) {
        self.sequence = sequence;
    }

    /// The refresh hint in seconds, if any.
    pub fn refresh_hint(&self) -> Option<u64> {
        self.refresh_hint
    }

    /// Sets the refresh hint (seconds) written by
    /// [`TrustBundle::to_spiffe_json`] as `spiffe_refresh_hint`.
    pub fn set_refresh_hint(&mut self, hint: Option<u64>) {
        self.refresh_hint = hint;
    }

    /// Whether `other` holds exactly the same X.509 and JWT authorities
    /// (sequence number and refresh hint are not compared).
    pub fn same_authorities(&self, other: &TrustBundle) -> bool {
        self.trust_domain == other.trust_domain
            && self.x509 == other.x509
            && self.jwt.len() == other.jwt.len()
            && self
                .jwt
                .iter()
                .zip(other.jwt.iter())
                .all(|((ka, a), (kb, b))| ka == kb && a.jwk == b.jwk)
    }

    /// The latest `notAfter` among the X.509 authorities: once it has
    /// passed, no X.509-SVID can chain to this bundle. `None` when the bundle
    /// has no X.509 authority.
    pub fn x509_authorities_expire_at(&self) -> Option<SystemTime> {
        self.x509
            .iter()
            .filter_map(|cert| {
                let (_, parsed) = X509Certificate::from_der(cert).ok()?;
                let secs = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            })
            .max()
    }

    /// Checks that no X.509 authority names another trust domain.
    ///
    /// SPIFFE signing certificates may carry their trust domain's SPIFFE ID
    /// (`spiffe://<trust domain>`) as a URI SAN, and SPIRE's do; an
    /// authority whose SPIFFE URI SAN names another trust domain means the
    /// whole document is that trust domain's bundle. Authorities without a
    /// SPIFFE URI SAN (e.g. an upstream root) pass.
    ///
    /// # Errors
    ///
    /// [`BundleError::ForeignAuthority`] for the first authority of another
    /// trust domain.
    pub fn check_authorities_trust_domain(&self) -> Result<(), BundleError> {
        for (index, cert) in self.x509.iter().enumerate() {
            let Ok((_, parsed)) = X509Certificate::from_der(cert) else {
                continue;
            };
            check_named_trust_domain(&self.trust_domain, &parsed, index)?;
        }
        Ok(())
    }

    /// The X.509 authorities as PEM text.
    pub fn to_pem(&self) -> String {
        certs_to_pem(&self.x509)
    }

    /// The X.509 authorities as concatenated DER (the Workload API encoding).
    pub fn to_der_concat(&self) -> Vec<u8> {
        self.x509.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// The bundle in the SPIFFE bundle format (JWKS JSON).
    ///
    /// # Errors
    ///
    /// [`BundleError::UnsupportedKeyType`] if an X.509 authority's key cannot
    /// be written as a JWK (only EC P-256/P-384 and RSA keys can).
    pub fn to_spiffe_json(&self) -> Result<String, BundleError> {
        let mut keys = Vec::with_capacity(self.x509.len() + self.jwt.len());
        for (index, cert) in self.x509.iter().enumerate() {
            let mut jwk = public_jwk_of_cert(cert, index)?;
            jwk.insert("use".into(), json!("x509-svid"));
            jwk.insert("x5c".into(), json!([STANDARD.encode(cert)]));
            keys.push(Value::Object(jwk));
        }
        for authority in self.jwt.values() {
            let mut jwk = authority.jwk.clone();
            jwk.insert("use".into(), json!("jwt-svid"));
            keys.push(Value::Object(jwk));
        }
        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        if let Some(seq) = self.sequence {
            doc.insert("spiffe_sequence".into(), json!(seq));
        }
        if let Some(hint) = self.refresh_hint {
            doc.insert("spiffe_refresh_hint".into(), json!(hint));
        }
        serde_json::to_string_pretty(&Value::Object(doc)).map_err(|e| BundleError::Json {
            reason: e.to_string(),
        })
    }

    /// The JWT authorities alone as a JWKS JSON document (the encoding of
    /// the Workload API's JWT bundles).
    pub fn jwt_jwks_json(&self) -> String {
        let keys: Vec<Value> = self
            .jwt
            .values()
            .map(|a| {
                let mut jwk = a.jwk.clone();
                jwk.insert("use".into(), json!("jwt-svid"));
                Value::Object(jwk)
            })
            .collect();
        json!({ "keys": keys }).to_string()
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("trust_domain", &self.trust_domain.to_string())
            .field("x509_authorities", &self.x509.len())
            .field("jwt_authorities", &self.jwt.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Bundles for several trust domains, keyed by trust domain.
#[derive(Clone, Default)]
pub struct BundleSet {
    /// Looked up on every handshake and every JWT-SVID, so hashed with
    /// foldhash (seeded at random for each set), which costs less per
    /// lookup than the standard SipHash. The keys are the trust domains of
    /// configured bundles, not a caller's input.
    bundles: HashMap<TrustDomain, Arc<TrustBundle>, foldhash::fast::RandomState>,
}

impl BundleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a bundle, replacing any bundle for the same trust domain.
    pub fn insert(&mut self, bundle: TrustBundle) {
        self.bundles
            .insert(bundle.trust_domain.clone(), Arc::new(bundle));
    }

    /// Builder-style [`BundleSet::insert`].
    #[must_use]
    pub fn with(mut self, bundle: TrustBundle) -> Self {
        self.insert(bundle);
        self
    }

    /// Removes the bundle for `trust_domain`.
    pub fn remove(&mut self, trust_domain: &TrustDomain) -> Option<Arc<TrustBundle>> {
        self.bundles.remove(trust_domain)
    }

    /// The bundle for `trust_domain`.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&Arc<TrustBundle>> {
        self.bundles.get(trust_domain)
    }

    /// All bundles, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<TrustBundle>> {
        self.bundles.values()
    }

    /// The trust domains in the set, sorted.
    pub fn trust_domains(&self) -> Vec<&TrustDomain> {
        let mut tds: Vec<_> = self.bundles.keys().collect();
        tds.sort();
        tds
    }

    /// Number of trust domains.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

impl fmt::Debug for BundleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.trust_domains()).finish()
    }
}

impl FromIterator<TrustBundle> for BundleSet {
    fn from_iter<I: IntoIterator<Item = TrustBundle>>(iter: I) -> Self {
        let mut set = Self::new();
        for b in iter {
            set.insert(b);
        }
        set
    }
}

/// Reads an optional non-negative integer member of a bundle document.
fn optional_u64(doc: &Map<String, Value>, name: &str) -> Result<Option<u64>, BundleError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| BundleError::Json {
            reason: format!("`{name}` must be a non-negative integer, found {value}"),
        }),
    }
}

/// The trust domain a CA certificate names in its SPIFFE URI SANs, or
/// `None` if it has none (most CAs outside SPIRE carry no URI SAN).
///
/// # Errors
///
/// [`BundleError::BadCertificate`] if the certificate does not parse;
/// [`BundleError::ForeignAuthority`] (with `trust_domain` empty) if it names
/// a malformed SPIFFE ID or two different trust domains.
pub fn authority_trust_domain(
    cert: &CertificateDer<'_>,
) -> Result<Option<TrustDomain>, BundleError> {
    let parsed = X509Certificate::from_der(cert)
        .map_err(|e| BundleError::BadCertificate {
            index: 0,
            reason: e.to_string(),
        })?
        .1;
    named_trust_domain(&parsed, 0)
}

/// Checks that `cert` may be an X.509 authority of `trust_domain`: it names
/// no trust domain, or names `trust_domain`. Every loader of
/// [`TrustBundle`] applies it; sources that assemble bundles by other means
/// call it too.
///
/// # Errors
///
/// [`BundleError::ForeignAuthority`] naming what the certificate names;
/// [`BundleError::BadCertificate`] if it does not parse.
pub fn check_authority_trust_domain(
    trust_domain: &TrustDomain,
    cert: &CertificateDer<'_>,
) -> Result<(), BundleError> {
    let parsed = X509Certificate::from_der(cert)
        .map_err(|e| BundleError::BadCertificate {
            index: 0,
            reason: e.to_string(),
        })?
        .1;
    check_named_trust_domain(trust_domain, &parsed, 0)
}

fn check_named_trust_domain(
    trust_domain: &TrustDomain,
    cert: &X509Certificate<'_>,
    index: usize,
) -> Result<(), BundleError> {
    match named_trust_domain(cert, index) {
        Ok(None) => Ok(()),
        Ok(Some(named)) if named == *trust_domain => Ok(()),
        Ok(Some(named)) => Err(BundleError::ForeignAuthority {
            index,
            trust_domain: trust_domain.to_string(),
            named: format!("spiffe://{named}"),
        }),
        Err(BundleError::ForeignAuthority { named, .. }) => Err(BundleError::ForeignAuthority {
            index,
            trust_domain: trust_domain.to_string(),
            named,
        }),
        Err(e) => Err(e),
    }
}

fn named_trust_domain(
    cert: &X509Certificate<'_>,
    index: usize,
) -> Result<Option<TrustDomain>, BundleError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| BundleError::BadCertificate {
            index,
            reason: format!("bad subject alternative name: {e}"),
        })?;
    let Some(san) = san else {
        return Ok(None);
    };
    let mut found: Option<TrustDomain> = None;
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let is_spiffe = uri
            .get(..9)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("spiffe://"));
        if !is_spiffe {
            continue;
        }
        let foreign = |named: &str| BundleError::ForeignAuthority {
            index,
            trust_domain: String::new(),
            named: named.to_owned(),
        };
        let td = parse_canonical(uri)
            .map_err(|_| foreign(uri))?
            .trust_domain()
            .clone();
        match &found {
            Some(first) if *first != td => return Err(foreign(uri)),
            _ => found = Some(td),
        }
    }
    Ok(found)
}

/// Splits concatenated DER certificates.
pub(crate) fn split_der_certificates(
    mut der: &[u8],
) -> Result<Vec<CertificateDer<'static>>, BundleError> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let index = out.len();
        let (rest, _) =
            X509Certificate::from_der(der).map_err(|e| BundleError::BadCertificate {
                index,
                reason: e.to_string(),
            })?;
        let len = der.len() - rest.len();
        out.push(CertificateDer::from(der[..len].to_vec()));
        der = rest;
    }
    Ok(out)
}

fn reindex(e: BundleError, index: usize) -> BundleError {
    match e {
        BundleError::BadCertificate { reason, .. } => BundleError::BadCertificate { index, reason },
        BundleError::ForeignAuthority {
            trust_domain,
            named,
            ..
        } => BundleError::ForeignAuthority {
            index,
            trust_domain,
            named,
        },
        other => other,
    }
}

/// Encodes certificates as PEM.
pub fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    let blocks: Vec<pem::Pem> = certs
        .iter()
        .map(|c| pem::Pem::new("CERTIFICATE", c.to_vec()))
        .collect();
    pem::encode_many_config(&blocks, pem_config())
}

/// PEM with Unix line endings.
pub(crate) fn pem_config() -> pem::EncodeConfig {
    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF)
}

/// Encodes one PEM block (`-----BEGIN {tag}-----`) with Unix line endings.
pub fn pem_block(tag: &str, der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new(tag, der.to_vec()), pem_config())
}

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

fn public_jwk_of_cert(
    cert: &CertificateDer<'_>,
    index: usize,
) -> Result<Map<String, Value>, BundleError> {
    let (_, parsed) = X509Certificate::from_der(cert).map_err(|e| BundleError::BadCertificate {
        index,
        reason: e.to_string(),
    })?;
    let spki = parsed.public_key();
    let unsupported = || BundleError::UnsupportedKeyType { index };
    let mut jwk = Map::new();
    match spki.parsed().map_err(|_| unsupported())? {
        PublicKey::EC(point) => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .ok_or_else(unsupported)?;
            let (crv, len) = match curve_oid.as_str() {
                OID_P256 => ("P-256", 32),
                OID_P384 => ("P-384", 48),
                _ => return Err(unsupported()),
            };
            let data = point.data();
            if data.len() != 1 + 2 * len || data[0] != 0x04 {
                return Err(unsupported());
            }
            jwk.insert("kty".into(), json!("EC"));
            jwk.insert("crv".into(), json!(crv));
            jwk.insert("x".into(), json!(URL_SAFE_NO_PAD.encode(&data[1..=len])));
            jwk.insert("y".into(), json!(URL_SAFE_NO_PAD.encode(&data[1 + len..])));
        }
        PublicKey::RSA(rsa) => {
            jwk.insert("kty".into(), json!("RSA"));
            jwk.insert(
                "n".into(),
                json!(URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.modulus))),
            );
            jwk.insert(
                "e".into(),
                json!(URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.exponent))),
            );
        }
        _ => return Err(unsupported()),
    }
    Ok(jwk)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}
