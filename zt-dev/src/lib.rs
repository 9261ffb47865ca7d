//! The development plane of zt: a certificate authority that issues real
//! SVIDs, and a SPIFFE Workload API server in front of it.
//!
//! [`FakeCa`] is a SPIFFE trust domain in a box: a root (and optional
//! intermediate) that issues X.509-SVIDs (ECDSA P-256) and JWT-SVIDs (ES256)
//! for any SPIFFE ID in its trust domain, with any TTL. It rotates its own
//! authorities with an overlap, federates with other `FakeCa`s by exchanging
//! bundles, produces deliberately broken material for negative tests
//! ([`BadSvid`], [`BadJwt`]), and serves the SPIFFE Workload API on a Unix
//! socket ([`WorkloadApiServer`]) so that unmodified Workload API clients,
//! the `spiffe` crate's among them, can fetch from it. [`DevUserIssuer`]
//! mints and exchanges user-context tokens ([`zt_core::user`]).
//!
//! It is for development and tests. Its keys live in memory or in a
//! directory written by [`FakeCa::save`]; nothing protects them the way a
//! production CA (SPIRE) protects its keys.
//!
//! ```
//! use std::time::Duration;
//! use zt_dev::FakeCa;
//!
//! let ca = FakeCa::new("example.org".parse()?)?;
//! let svid = ca.issue_x509_svid(&"spiffe://example.org/billing".parse()?, Duration::from_secs(60))?;
//! assert_eq!(svid.id().path(), "/billing");
//! let token = ca.issue_jwt_svid(&"spiffe://example.org/billing".parse()?, &["orders"], Duration::from_secs(60))?;
//! assert_eq!(token.audience(), ["orders"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! | item | does |
//! |---|---|
//! | [`FakeCa`] | a trust domain in a box: root (and optional intermediate), X.509-SVIDs, JWT-SVIDs, authority rotation, federation, save/load |
//! | [`FakeCaSource`] | an [`SvidSource`](zt_core::source::SvidSource) that re-issues from a `FakeCa` before expiry |
//! | [`WorkloadApiServer`] | the SPIFFE Workload API on a Unix socket, served from any source (what `zt agent` runs) |
//! | [`DevUserIssuer`] | mints and exchanges delegated user-context tokens |
//! | [`DevOidcIssuer`] | an OIDC provider on loopback HTTPS: discovery, JWKS, GitHub Actions and Kubernetes shaped tokens, key rotation, JWKS faults |
//! | [`BadSvid`], [`BadJwt`] | deliberately broken material for negative tests |
//! | [`workload_api::pb`] | the Workload API's wire types and gRPC stubs |
//!
//! Production services do not depend on this crate: they take their
//! identity from SPIRE through `zt_core::source::WorkloadApiSource`
//! (zt-core's `workload-api` feature).
#![forbid(unsafe_code)]

mod authority;
mod bad;
mod jws;
mod oidc_issuer;
mod server;
mod source;
mod store;
mod user_issuer;
pub mod workload_api;

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

use zt_core::bundle::{JwtAuthority, TrustBundle};
use zt_core::jwt::JwtSvid;
use zt_core::svid::X509Svid;
use zt_core::time::{SharedClock, system_clock};
use zt_core::{SpiffeId, TrustDomain};

pub use bad::{BadJwt, BadMaterial, BadSvid};
pub use oidc_issuer::{
    DEFAULT_OIDC_TOKEN_TTL, DevOidcIssuer, JwksFault, github_actions_claims, kubernetes_claims,
};
pub use server::{AgentFaults, SECURITY_HEADER, WorkloadApiServer, WorkloadApiServerHandle};
pub use source::FakeCaSource;
pub use user_issuer::{DEFAULT_USER_CONTEXT_TTL, DevUserIssuer};

/// How long a fake CA's authorities are valid.
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why the fake CA could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FakeCaError {
    /// The ID is not in this CA's trust domain.
    #[error("`{id}` is not in trust domain `{trust_domain}`; this CA only issues for its own")]
    WrongTrustDomain {
        /// The requested ID.
        id: String,
        /// The CA's trust domain.
        trust_domain: String,
    },
    /// The requested TTL is zero or too large.
    #[error("TTL {ttl:?} is not usable; give a TTL between 1 second and the CA's own lifetime")]
    InvalidTtl {
        /// The requested TTL.
        ttl: Duration,
    },
    /// At least one audience is required for a JWT-SVID.
    #[error("a JWT-SVID needs at least one audience")]
    NoAudience,
    /// Certificate generation failed.
    #[error("certificate generation failed: {reason}")]
    Certificate {
        /// What rcgen reported.
        reason: String,
    },
    /// Token signing failed.
    #[error("JWT signing failed: {reason}")]
    Jwt {
        /// What went wrong.
        reason: String,
    },
    /// The CA directory could not be read or written.
    #[error("CA directory `{path}`: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The CA directory holds something unexpected.
    #[error("CA directory `{path}` is not a zt CA: {reason}")]
    Store {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

fn cert_err(e: rcgen::Error) -> FakeCaError {
    FakeCaError::Certificate {
        reason: e.to_string(),
    }
}

/// One signing authority: its certificate and the issuer made from its key.
struct Authority {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

/// One JWT signing key.
struct JwtKey {
    authority: JwtAuthority,
    signing: jws::Es256Key,
    key_pem: String,
}

struct CaState {
    root: Authority,
    intermediate: Option<Authority>,
    /// Roots replaced by [`FakeCa::rotate`], still trusted until
    /// [`FakeCa::end_rotation_overlap`].
    retired_roots: Vec<CertificateDer<'static>>,
    /// A root (and intermediate) made by [`FakeCa::prepare_rotation`]: in
    /// the bundle, not yet issuing.
    prepared: Option<(Authority, Option<Authority>)>,
    /// JWT keys; the last one signs, all are in the bundle.
    jwt_keys: Vec<JwtKey>,
    /// Serials revoked with [`FakeCa::revoke_serial`], canonical, in order.
    revoked: Vec<Vec<u8>>,
}

struct Inner {
    trust_domain: TrustDomain,
    clock: SharedClock,
    ca_ttl: Duration,
    with_intermediate: bool,
    state: RwLock<CaState>,
}

/// A development CA for one trust domain. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeCa {
    inner: Arc<Inner>,
}

/// Configures a [`FakeCa`].
#[derive(Debug, Clone)]
pub struct FakeCaBuilder {
    trust_domain: TrustDomain,
    clock: SharedClock,
    ca_ttl: Duration,
    intermediate: bool,
}

impl FakeCaBuilder {
    /// Issue leaves from an intermediate CA signed by the root, as SPIRE
    /// deployments with an upstream authority do.
    #[must_use]
    pub fn intermediate(mut self, yes: bool) -> Self {
        self.intermediate = yes;
        self
    }

    /// The clock that sets validity periods.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Lifetime of the CA's own certificates.
    #[must_use]
    pub fn ca_ttl(mut self, ttl: Duration) -> Self {
        self.ca_ttl = ttl;
        self
    }

    /// Generates the CA.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Certificate`] if key or certificate generation fails.
    pub fn build(self) -> Result<FakeCa, FakeCaError> {
        let now = self.clock.now();
        let root = new_root(&self.trust_domain, now, self.ca_ttl)?;
        let intermediate = if self.intermediate {
            Some(new_intermediate(
                &self.trust_domain,
                &root,
                now,
                self.ca_ttl,
            )?)
        } else {
            None
        };
        let jwt = new_jwt_key()?;
        Ok(FakeCa {
            inner: Arc::new(Inner {
                trust_domain: self.trust_domain,
                clock: self.clock,
                ca_ttl: self.ca_ttl,
                with_intermediate: self.intermediate,
                state: RwLock::new(CaState {
                    root,
                    intermediate,
                    retired_roots: Vec::new(),
                    prepared: None,
                    jwt_keys: vec![jwt],
                    revoked: Vec::new(),
                }),
            }),
        })
    }
}

impl FakeCa {
    /// A CA for `trust_domain` with a root only, on the system clock.
    ///
    /// # Errors
    ///
    /// As [`FakeCaBuilder::build`].
    pub fn new(trust_domain: TrustDomain) -> Result<Self, FakeCaError> {
        Self::builder(trust_domain).build()
    }

    /// A builder for a CA in `trust_domain`.
    pub fn builder(trust_domain: TrustDomain) -> FakeCaBuilder {
        FakeCaBuilder {
            trust_domain,
            clock: system_clock(),
            ca_ttl: DEFAULT_CA_TTL,
            intermediate: false,
        }
    }

    /// The CA's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.inner.trust_domain
    }

    /// The clock the CA issues with.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CaState> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current root certificate.
    pub fn root_certificate(&self) -> CertificateDer<'static> {
        self.read().root.cert.clone()
    }

    /// The current intermediate certificate, if the CA has one.
    pub fn intermediate_certificate(&self) -> Option<CertificateDer<'static>> {
        self.read().intermediate.as_ref().map(|a| a.cert.clone())
    }

    /// The trust bundle: current, retired and prepared roots, and every
    /// JWT key.
    pub fn bundle(&self) -> TrustBundle {
        let state = self.read();
        let mut bundle = TrustBundle::new(self.inner.trust_domain.clone());
        for cert in state
            .retired_roots
            .iter()
            .chain(std::iter::once(&state.root.cert))
            .chain(state.prepared.as_ref().map(|(root, _)| &root.cert))
        {
            // Invariant: these certificates were generated by this CA and
            // parse; a failure would only drop an authority.
            let _ = bundle.add_x509_authority(cert.clone());
        }
        for key in &state.jwt_keys {
            bundle.add_jwt_authority(key.authority.clone());
        }
        bundle
    }

    fn check_member(&self, id: &SpiffeId) -> Result<(), FakeCaError> {
        if id.trust_domain() != &self.inner.trust_domain {
            return Err(FakeCaError::WrongTrustDomain {
                id: id.to_string(),
                trust_domain: self.inner.trust_domain.to_string(),
            });
        }
        Ok(())
    }

    fn check_ttl(&self, ttl: Duration) -> Result<(), FakeCaError> {
        if ttl < Duration::from_secs(1) || ttl > self.inner.ca_ttl {
            return Err(FakeCaError::InvalidTtl { ttl });
        }
        Ok(())
    }

    /// Issues an X.509-SVID for `id`, valid from now for `ttl`.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::WrongTrustDomain`], [`FakeCaError::InvalidTtl`], or
    /// [`FakeCaError::Certificate`].
    pub fn issue_x509_svid(&self, id: &SpiffeId, ttl: Duration) -> Result<X509Svid, FakeCaError> {
        self.issue_x509_svid_with_dns::<&str>(id, ttl, &[])
    }

    /// As [`FakeCa::issue_x509_svid`], adding DNS SANs after the SPIFFE ID,
    /// as SPIRE does for entries with DNS names. They let TLS clients that
    /// check host names (curl, browsers) talk to a zt server; SPIFFE
    /// verification ignores them.
    ///
    /// # Errors
    ///
    /// As [`FakeCa::issue_x509_svid`], and [`FakeCaError::Certificate`] for
    /// a name that is not a valid DNS name.
    pub fn issue_x509_svid_with_dns<N: AsRef<str>>(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        dns_names: &[N],
    ) -> Result<X509Svid, FakeCaError> {
        self.check_member(id)?;
        self.check_ttl(ttl)?;
        let now = self.inner.clock.now();
        let mut params = leaf_params(&id.to_string(), now, now + ttl)?;
        for name in dns_names {
            params.subject_alt_names.push(SanType::DnsName(
                name.as_ref().try_into().map_err(cert_err)?,
            ));
        }
        self.sign_leaf(params)
    }

    /// Signs leaf parameters with the issuing authority and builds the SVID.
    fn sign_leaf(&self, params: CertificateParams) -> Result<X509Svid, FakeCaError> {
        let (chain, key) = self.sign_leaf_raw(&params, None)?;
        X509Svid::from_der(chain, key).map_err(|e| FakeCaError::Certificate {
            reason: e.to_string(),
        })
    }

    /// Signs leaf parameters; returns the chain (leaf first) and key.
    fn sign_leaf_raw(
        &self,
        params: &CertificateParams,
        issuer: Option<&Issuer<'_, KeyPair>>,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FakeCaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let state = self.read();
        let (chain_rest, own_issuer) = match &state.intermediate {
            Some(int) => (vec![int.cert.clone()], &int.issuer),
            None => (Vec::new(), &state.root.issuer),
        };
        let issuer = issuer.unwrap_or(own_issuer);
        let leaf = params.signed_by(&key, issuer).map_err(cert_err)?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(chain_rest);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, key))
    }

    /// Issues a JWT-SVID for `id` and `audience`, valid from now for `ttl`.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::WrongTrustDomain`], [`FakeCaError::InvalidTtl`],
    /// [`FakeCaError::NoAudience`], or [`FakeCaError::Jwt`].
    pub fn issue_jwt_svid<A: AsRef<str>>(
        &self,
        id: &SpiffeId,
        audience: &[A],
        ttl: Duration,
    ) -> Result<JwtSvid, FakeCaError> {
        self.check_member(id)?;
        self.check_ttl(ttl)?;
        if audience.is_empty() {
            return Err(FakeCaError::NoAudience);
        }
        let now = unix_secs(self.inner.clock.now());
        let aud: Vec<&str> = audience.iter().map(AsRef::as_ref).collect();
        let claims = json!({
            "sub": id.to_string(),
            "aud": aud,
            "iat": now,
            "exp": now + ttl.as_secs(),
        });
        let token = self.sign_jwt(None, &claims)?;
        JwtSvid::from_trusted_token(token).map_err(|e| FakeCaError::Jwt {
            reason: e.to_string(),
        })
    }

    /// Signs claims with the current JWT key (`kid` from that key unless
    /// `kid` overrides it).
    fn sign_jwt(
        &self,
        kid: Option<&str>,
        claims: &serde_json::Value,
    ) -> Result<String, FakeCaError> {
        self.sign_jwt_typed(kid, Some("JWT"), claims)
    }

    /// Signs `claims` with the current JWT key (ES256), under `kid` if
    /// given (else the key's own), typed `typ`.
    fn sign_jwt_typed(
        &self,
        kid: Option<&str>,
        typ: Option<&str>,
        claims: &serde_json::Value,
    ) -> Result<String, FakeCaError> {
        let state = self.read();
        let key = state.jwt_keys.last().ok_or_else(|| FakeCaError::Jwt {
            reason: "the CA has no JWT key".into(),
        })?;
        key.signing
            .sign(kid.unwrap_or(key.authority.key_id()), typ, claims)
    }

    /// Rotates the CA: a new root (and intermediate, if the CA has one) and
    /// a new JWT key take over issuing. The old root and JWT key stay in
    /// [`FakeCa::bundle`] so SVIDs they issued keep verifying, until
    /// [`FakeCa::end_rotation_overlap`].
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Certificate`] if generation fails; the CA is unchanged.
    pub fn rotate(&self) -> Result<(), FakeCaError> {
        let now = self.inner.clock.now();
        let td = &self.inner.trust_domain;
        let root = new_root(td, now, self.inner.ca_ttl)?;
        let intermediate = if self.inner.with_intermediate {
            Some(new_intermediate(td, &root, now, self.inner.ca_ttl)?)
        } else {
            None
        };
        let jwt = new_jwt_key()?;
        let mut state = self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut state.root, root);
        state.retired_roots.push(old.cert);
        state.intermediate = intermediate;
        state.jwt_keys.push(jwt);
        Ok(())
    }

    /// Makes the next root (and intermediate, if the CA has one) and adds
    /// it to [`FakeCa::bundle`] without issuing from it yet, as
    /// `spire-server localauthority x509 prepare` does: once every workload
    /// trusts it, [`FakeCa::activate_prepared`] switches issuing over with
    /// no moment where a new SVID meets a bundle that does not know its
    /// root. Replaces an earlier prepared root.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Certificate`] if generation fails; the CA is unchanged.
    pub fn prepare_rotation(&self) -> Result<(), FakeCaError> {
        let now = self.inner.clock.now();
        let td = &self.inner.trust_domain;
        let root = new_root(td, now, self.inner.ca_ttl)?;
        let intermediate = if self.inner.with_intermediate {
            Some(new_intermediate(td, &root, now, self.inner.ca_ttl)?)
        } else {
            None
        };
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .prepared = Some((root, intermediate));
        Ok(())
    }

    /// Issues from the root made by [`FakeCa::prepare_rotation`] from now
    /// on; the previous root stays in the bundle until
    /// [`FakeCa::end_rotation_overlap`]. Returns `false` (and changes
    /// nothing) if no root was prepared.
    pub fn activate_prepared(&self) -> bool {
        let mut state = self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((root, intermediate)) = state.prepared.take() else {
            return false;
        };
        let old = std::mem::replace(&mut state.root, root);
        state.retired_roots.push(old.cert);
        state.intermediate = intermediate;
        true
    }

    /// A new JWT signing key takes over, the X.509 authorities untouched,
    /// as `spire-server localauthority jwt prepare` then `activate` do.
    /// Earlier keys stay in [`FakeCa::bundle`] until
    /// [`FakeCa::revoke_jwt_key`]. Returns the new key ID.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Certificate`] if key generation fails; the CA is
    /// unchanged.
    pub fn rotate_jwt_key(&self) -> Result<String, FakeCaError> {
        let key = new_jwt_key()?;
        let key_id = key.authority.key_id().to_owned();
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .jwt_keys
            .push(key);
        Ok(key_id)
    }

    /// The IDs of the JWT keys in the bundle, oldest first; the last signs.
    pub fn jwt_key_ids(&self) -> Vec<String> {
        self.read()
            .jwt_keys
            .iter()
            .map(|k| k.authority.key_id().to_owned())
            .collect()
    }

    /// Removes the JWT key `key_id` from the bundle, as `spire-server
    /// localauthority jwt revoke` does: tokens it signed stop verifying.
    /// Returns whether the key was there.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] for the key that signs now; rotate first.
    pub fn revoke_jwt_key(&self, key_id: &str) -> Result<bool, FakeCaError> {
        let mut state = self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if state
            .jwt_keys
            .last()
            .is_some_and(|k| k.authority.key_id() == key_id)
        {
            return Err(FakeCaError::Jwt {
                reason: format!("`{key_id}` is the signing key; rotate before revoking it"),
            });
        }
        let before = state.jwt_keys.len();
        state.jwt_keys.retain(|k| k.authority.key_id() != key_id);
        Ok(state.jwt_keys.len() < before)
    }

    /// Revokes the certificate with `serial` (big-endian; leading zero
    /// bytes are ignored): it is listed by every [`FakeCa::crl`] from now
    /// on. Returns `false` if it was already revoked.
    pub fn revoke_serial(&self, serial: &[u8]) -> bool {
        let start = serial
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(serial.len().saturating_sub(1));
        let serial = serial[start..].to_vec();
        let mut state = self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if state.revoked.contains(&serial) {
            return false;
        }
        state.revoked.push(serial);
        true
    }

    /// The serials revoked so far, canonical, in the order revoked.
    pub fn revoked_serials(&self) -> Vec<Vec<u8>> {
        self.read().revoked.clone()
    }

    /// A DER CRL listing every revoked serial, signed by the issuing
    /// authority (the intermediate if the CA has one, else the root), valid
    /// from now for `validity` (its `nextUpdate`), numbered by how many
    /// serials it lists.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Certificate`] if signing fails.
    pub fn crl(&self, validity: Duration) -> Result<Vec<u8>, FakeCaError> {
        let now = self.inner.clock.now();
        let state = self.read();
        let revoked_certs = state
            .revoked
            .iter()
            .map(|serial| rcgen::RevokedCertParams {
                serial_number: SerialNumber::from(serial.clone()),
                revocation_time: now.into(),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now.into(),
            next_update: (now + validity).into(),
            crl_number: SerialNumber::from(state.revoked.len() as u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = match &state.intermediate {
            Some(int) => &int.issuer,
            None => &state.root.issuer,
        };
        let crl = params.signed_by(issuer).map_err(cert_err)?;
        Ok(crl.der().to_vec())
    }

    /// [`FakeCa::crl`] as PEM, followed by the intermediate certificate
    /// that signed it if the CA has one (so a reader can verify it against
    /// the root bundle).
    ///
    /// # Errors
    ///
    /// As [`FakeCa::crl`].
    pub fn crl_pem(&self, validity: Duration) -> Result<String, FakeCaError> {
        let mut pem = zt_core::bundle::pem_block("X509 CRL", &self.crl(validity)?);
        if let Some(int) = self.intermediate_certificate() {
            pem.push_str(&zt_core::bundle::certs_to_pem(&[int]));
        }
        Ok(pem)
    }

    /// Drops the authorities retired by [`FakeCa::rotate`] from the bundle;
    /// SVIDs they issued stop verifying.
    pub fn end_rotation_overlap(&self) {
        let mut state = self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        state.retired_roots.clear();
        let keep = state.jwt_keys.len().saturating_sub(1);
        state.jwt_keys.drain(..keep);
    }
}

impl fmt::Debug for FakeCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("FakeCa")
            .field("trust_domain", &self.inner.trust_domain.to_string())
            .field("intermediate", &state.intermediate.is_some())
            .field("retired_roots", &state.retired_roots.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

pub(crate) fn random_serial() -> Result<SerialNumber, FakeCaError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| FakeCaError::Certificate {
            reason: "the system random number generator failed".into(),
        })?;
    // A positive INTEGER with no leading zero octet.
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    Ok(SerialNumber::from(bytes.to_vec()))
}

fn uri_san(uri: &str) -> Result<SanType, FakeCaError> {
    Ok(SanType::URI(uri.try_into().map_err(cert_err)?))
}

fn ca_params(
    td: &TrustDomain,
    common_name: &str,
    now: SystemTime,
    ttl: Duration,
    constraint: BasicConstraints,
) -> Result<CertificateParams, FakeCaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "zt fake CA");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraint);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![uri_san(&format!("spiffe://{td}"))?];
    params.not_before = now.into();
    params.not_after = (now + ttl).into();
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn new_root(td: &TrustDomain, now: SystemTime, ttl: Duration) -> Result<Authority, FakeCaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
    let params = ca_params(
        td,
        &format!("{td} root"),
        now,
        ttl,
        BasicConstraints::Unconstrained,
    )?;
    let cert = params.self_signed(&key).map_err(cert_err)?;
    let key_pem = key.serialize_pem();
    Ok(Authority {
        cert: cert.der().clone(),
        issuer: Issuer::new(params, key),
        key_pem,
    })
}

fn new_intermediate(
    td: &TrustDomain,
    root: &Authority,
    now: SystemTime,
    ttl: Duration,
) -> Result<Authority, FakeCaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
    let params = ca_params(
        td,
        &format!("{td} intermediate"),
        now,
        ttl,
        BasicConstraints::Constrained(0),
    )?;
    let cert = params.signed_by(&key, &root.issuer).map_err(cert_err)?;
    let key_pem = key.serialize_pem();
    Ok(Authority {
        cert: cert.der().clone(),
        issuer: Issuer::new(params, key),
        key_pem,
    })
}

/// Parameters of a well-formed X.509-SVID leaf for `uri`.
fn leaf_params(
    uri: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, FakeCaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "zt workload");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.subject_alt_names = vec![uri_san(uri)?];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn new_jwt_key() -> Result<JwtKey, FakeCaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
    jwt_key_from_pem(&key.serialize_pem(), None)
}

/// Builds a JWT key from a PKCS#8 PEM; the key ID defaults to a digest of
/// the public key.
fn jwt_key_from_pem(key_pem: &str, kid: Option<&str>) -> Result<JwtKey, FakeCaError> {
    let jwt_err = |reason: String| FakeCaError::Jwt { reason };
    let key = KeyPair::from_pem(key_pem).map_err(cert_err)?;
    let point = key.public_key_raw();
    if point.len() != 65 || point[0] != 0x04 {
        return Err(jwt_err("JWT keys must be uncompressed P-256 points".into()));
    }
    let kid = match kid {
        Some(k) => k.to_owned(),
        None => {
            use sha2::Digest as _;
            URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(point)[..16])
        }
    };
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        "kid": kid,
    });
    let authority = JwtAuthority::from_jwk_json(jwk.to_string().as_bytes())
        .map_err(|e| jwt_err(e.to_string()))?;
    let signing = jws::Es256Key::from_pkcs8(&key.serialize_der())?;
    Ok(JwtKey {
        authority,
        signing,
        key_pem: key_pem.to_owned(),
    })
}
