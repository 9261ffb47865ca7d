//! SVIDs a workload holds: its X.509-SVID (certificate chain and private key)
//! and JWT-SVID tokens.

use std::fmt;
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::SpiffeId;
use crate::x509::{self, LeafInfo, SvidError};

mod key_match;

/// An X.509-SVID: a certificate chain (leaf first) and the leaf's private key.
///
/// Construction parses the leaf and checks that it carries exactly one
/// canonical SPIFFE ID; chain trust is checked by
/// [`verify_x509_svid`](crate::x509::verify_x509_svid) on the peer's side.
pub struct X509Svid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    serial: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
    hint: Option<String>,
}

impl X509Svid {
    /// Builds an SVID from a DER chain (leaf first) and private key.
    ///
    /// # Errors
    ///
    /// [`SvidError::EmptyChain`], or the [`SvidError`] for the first SPIFFE
    /// ID rule the leaf breaks.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        let leaf = chain.first().ok_or(SvidError::EmptyChain)?;
        let info = x509::inspect_leaf(leaf)?;
        let LeafInfo {
            id,
            serial,
            not_before,
            not_after,
            ..
        } = info;
        Ok(Self {
            id,
            chain,
            key,
            serial,
            not_before,
            not_after,
            hint: None,
        })
    }

    /// Builds an SVID from a PEM chain and a PEM private key (PKCS#8,
    /// SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    ///
    /// # Errors
    ///
    /// [`SvidError::Pem`] for unreadable PEM, [`SvidError::NoPrivateKey`] if
    /// the key text holds no key, then as [`X509Svid::from_der`].
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, SvidError> {
        let chain = parse_pem_certificates(chain_pem)?;
        let key = parse_pem_private_key(key_pem)?;
        Self::from_der(chain, key)
    }

    /// Checks that the private key is the leaf's: its public key is the one
    /// the leaf certifies. Sources that read certificate and key from
    /// separate places (files written one after the other) call it before
    /// publishing.
    ///
    /// # Errors
    ///
    /// [`SvidError::KeyMismatch`] if the keys differ,
    /// [`SvidError::UnreadableKey`] if the key cannot be read (an algorithm
    /// other than ECDSA P-256/P-384, RSA or Ed25519, or malformed DER).
    pub fn check_key_matches_leaf(&self) -> Result<(), SvidError> {
        key_match::check(self.leaf(), &self.key)
    }

    /// Sets the Workload API hint carried with this SVID.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The SPIFFE ID in the leaf's URI SAN.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // Invariant: `from_der` rejects an empty chain.
        &self.chain[0]
    }

    /// The leaf's private key.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The leaf's serial number (big-endian bytes).
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

    /// The Workload API hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Whether the leaf has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        now > self.not_after
    }

    /// The chain as PEM text.
    pub fn chain_pem(&self) -> String {
        crate::bundle::certs_to_pem(&self.chain)
    }

    /// The private key as PEM text.
    pub fn key_pem(&self) -> String {
        let tag = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        crate::bundle::pem_block(tag, self.key.secret_der())
    }

    /// The chain as concatenated DER (the Workload API encoding).
    pub fn chain_der_concat(&self) -> Vec<u8> {
        self.chain.iter().flat_map(|c| c.iter().copied()).collect()
    }
}

impl Clone for X509Svid {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            serial: self.serial.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            hint: self.hint.clone(),
        }
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("id", &self.id.to_string())
            .field("serial", &self.serial_hex())
            .field("not_after", &crate::time::Timestamp(self.not_after))
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Parses every `CERTIFICATE` block of a PEM text.
///
/// # Errors
///
/// [`SvidError::Pem`] if the text is not PEM, [`SvidError::EmptyChain`] if it
/// holds no certificate.
pub fn parse_pem_certificates(pem_text: &[u8]) -> Result<Vec<CertificateDer<'static>>, SvidError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| SvidError::Pem {
        reason: e.to_string(),
    })?;
    let certs: Vec<_> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(SvidError::EmptyChain);
    }
    Ok(certs)
}

/// Parses the first private key block of a PEM text.
///
/// # Errors
///
/// [`SvidError::Pem`] if the text is not PEM, [`SvidError::NoPrivateKey`] if
/// it holds no private key block.
pub fn parse_pem_private_key(pem_text: &[u8]) -> Result<PrivateKeyDer<'static>, SvidError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| SvidError::Pem {
        reason: e.to_string(),
    })?;
    for block in blocks {
        let key = match block.tag() {
            "PRIVATE KEY" => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.into_contents())),
            "EC PRIVATE KEY" => PrivateKeyDer::Sec1(block.into_contents().into()),
            "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(block.into_contents().into()),
            _ => continue,
        };
        return Ok(key);
    }
    Err(SvidError::NoPrivateKey)
}
