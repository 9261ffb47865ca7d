//! Deliberately broken material for negative tests.

use std::fmt;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use super::{FakeCa, FakeCaError, cert_err, leaf_params, unix_secs, uri_san};
use zt_core::SpiffeId;
use zt_core::bundle::certs_to_pem;

/// Kinds of broken X.509-SVIDs [`FakeCa::issue_bad_x509_svid`] produces.
/// Each breaks exactly one SPIFFE rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BadSvid {
    /// Expired an hour ago.
    Expired,
    /// Valid only from an hour from now.
    NotYetValid,
    /// Carries an ID in another trust domain (`wrong.example`), signed by
    /// this CA.
    WrongTrustDomain,
    /// The leaf is a CA certificate.
    CaAsLeaf,
    /// The leaf has no URI SAN (a DNS SAN instead).
    NoUriSan,
    /// The leaf has two SPIFFE URI SANs.
    TwoUriSans,
    /// The leaf's URI SAN is `https://…`, not `spiffe://…`.
    NonSpiffeUri,
    /// The leaf's key usage includes keyCertSign.
    KeyCertSignOnLeaf,
    /// The leaf's key usage includes cRLSign.
    CrlSignOnLeaf,
    /// The leaf's key usage lacks digitalSignature.
    NoDigitalSignature,
    /// The leaf has no key usage extension.
    NoKeyUsage,
    /// Signed by a different CA with the same subject name as this CA's.
    UntrustedSameSubject,
    /// The URI SAN is the trust domain itself (root path).
    RootId,
    /// The URI SAN is percent-encoded (`%61` for `a`).
    PercentEncodedId,
    /// The URI SAN has an uppercase trust domain.
    UppercaseTrustDomain,
    /// The intermediate signing the leaf is not a CA.
    SignedByNonCa,
}

impl BadSvid {
    /// Every kind.
    pub const ALL: [BadSvid; 16] = [
        Self::Expired,
        Self::NotYetValid,
        Self::WrongTrustDomain,
        Self::CaAsLeaf,
        Self::NoUriSan,
        Self::TwoUriSans,
        Self::NonSpiffeUri,
        Self::KeyCertSignOnLeaf,
        Self::CrlSignOnLeaf,
        Self::NoDigitalSignature,
        Self::NoKeyUsage,
        Self::UntrustedSameSubject,
        Self::RootId,
        Self::PercentEncodedId,
        Self::UppercaseTrustDomain,
        Self::SignedByNonCa,
    ];
}

/// Kinds of broken JWT-SVIDs [`FakeCa::issue_bad_jwt_svid`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BadJwt {
    /// `alg: none` with an empty signature.
    AlgNone,
    /// HS256 with the CA's public key bytes as the HMAC secret.
    HmacWithPublicKey,
    /// Expired an hour ago.
    Expired,
    /// `nbf` an hour in the future.
    NotYetValid,
    /// Audience `wrong-audience` instead of the requested one.
    WrongAudience,
    /// No `aud` claim.
    MissingAudience,
    /// No `exp` claim.
    MissingExpiry,
    /// A `kid` no bundle has.
    UnknownKeyId,
    /// `sub` is not a SPIFFE ID.
    SubjectNotSpiffeId,
    /// Valid token whose payload was changed after signing.
    TamperedPayload,
    /// Signed by a key outside the bundle, under the CA's own `kid`.
    ForeignKey,
    /// Correctly signed, but typed `secevent+jwt` (a Security Event
    /// Token): the JWT-SVID specification allows only `JWT` or `JOSE`.
    WrongType,
    /// Correctly signed, typed `jwt`: the allowed values are compared
    /// exactly, as go-spiffe does.
    LowercaseType,
}

/// A broken X.509-SVID: the chain and key as issued, without any of the
/// checks [`X509Svid`](zt_core::svid::X509Svid) construction does.
pub struct BadMaterial {
    /// The kind of breakage.
    pub kind: BadSvid,
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl BadMaterial {
    /// The chain as PEM.
    pub fn chain_pem(&self) -> String {
        certs_to_pem(&self.chain)
    }

    /// The key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        zt_core::bundle::pem_block("PRIVATE KEY", self.key.secret_der())
    }
}

impl Clone for BadMaterial {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for BadMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BadMaterial")
            .field("kind", &self.kind)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

const HOUR: Duration = Duration::from_secs(3600);

impl FakeCa {
    /// Issues an X.509-SVID for `id` broken in the way `kind` names.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Certificate`] if generation fails.
    pub fn issue_bad_x509_svid(
        &self,
        kind: BadSvid,
        id: &SpiffeId,
    ) -> Result<BadMaterial, FakeCaError> {
        let now = self.inner.clock.now();
        let uri = id.to_string();
        let mut params = leaf_params(&uri, now, now + HOUR)?;
        let mut issuer_override: Option<Issuer<'static, KeyPair>> = None;
        let mut extra_chain: Option<CertificateDer<'static>> = None;
        match kind {
            BadSvid::Expired => {
                params.not_before = (now - 2 * HOUR).into();
                params.not_after = (now - HOUR).into();
            }
            BadSvid::NotYetValid => {
                params.not_before = (now + HOUR).into();
                params.not_after = (now + 2 * HOUR).into();
            }
            BadSvid::WrongTrustDomain => {
                params.subject_alt_names =
                    vec![uri_san(&format!("spiffe://wrong.example{}", id.path()))?];
            }
            BadSvid::CaAsLeaf => {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ];
            }
            BadSvid::NoUriSan => {
                params.subject_alt_names = vec![rcgen::SanType::DnsName(
                    "workload.example".try_into().map_err(cert_err)?,
                )];
            }
            BadSvid::TwoUriSans => {
                params.subject_alt_names.push(uri_san(&format!(
                    "spiffe://{}/second",
                    self.trust_domain()
                ))?);
            }
            BadSvid::NonSpiffeUri => {
                params.subject_alt_names = vec![uri_san(&format!(
                    "https://{}{}",
                    self.trust_domain(),
                    id.path()
                ))?];
            }
            BadSvid::KeyCertSignOnLeaf => {
                params.key_usages.push(KeyUsagePurpose::KeyCertSign);
            }
            BadSvid::CrlSignOnLeaf => {
                params.key_usages.push(KeyUsagePurpose::CrlSign);
            }
            BadSvid::NoDigitalSignature => {
                params.key_usages = vec![KeyUsagePurpose::KeyAgreement];
            }
            BadSvid::NoKeyUsage => {
                params.key_usages = Vec::new();
            }
            BadSvid::UntrustedSameSubject => {
                let impostor = FakeCa::builder(self.trust_domain().clone())
                    .clock(self.inner.clock.clone())
                    .build()?;
                let state = impostor.read();
                let (chain, key) = self.sign_leaf_raw(&params, Some(&state.root.issuer))?;
                return Ok(BadMaterial {
                    kind,
                    chain: chain.into_iter().take(1).collect(),
                    key,
                });
            }
            BadSvid::RootId => {
                params.subject_alt_names =
                    vec![uri_san(&format!("spiffe://{}", self.trust_domain()))?];
            }
            BadSvid::PercentEncodedId => {
                let encoded: String = id
                    .path()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_lowercase() {
                            format!("%{:02X}", c as u32)
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                params.subject_alt_names = vec![uri_san(&format!(
                    "spiffe://{}{encoded}",
                    self.trust_domain()
                ))?];
            }
            BadSvid::UppercaseTrustDomain => {
                params.subject_alt_names = vec![uri_san(&format!(
                    "spiffe://{}{}",
                    self.trust_domain().as_str().to_ascii_uppercase(),
                    id.path()
                ))?];
            }
            BadSvid::SignedByNonCa => {
                // A leaf-shaped certificate from this CA signs the leaf.
                let mut signer = leaf_params(
                    &format!("spiffe://{}/signer", self.trust_domain()),
                    now,
                    now + HOUR,
                )?;
                signer.is_ca = IsCa::ExplicitNoCa;
                signer.key_usages.push(KeyUsagePurpose::KeyCertSign);
                let signer_key =
                    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
                let signer_chain = self.sign_leaf_raw_with_key(&signer, &signer_key)?;
                let signer_cert =
                    signer_chain
                        .first()
                        .cloned()
                        .ok_or_else(|| FakeCaError::Certificate {
                            reason: "empty chain".into(),
                        })?;
                extra_chain = Some(signer_cert);
                issuer_override = Some(Issuer::new(signer, signer_key));
            }
        }
        let (mut chain, key) = self.sign_leaf_raw(&params, issuer_override.as_ref())?;
        if let Some(signer) = extra_chain {
            chain.truncate(1);
            chain.push(signer);
        }
        Ok(BadMaterial { kind, chain, key })
    }

    /// Signs `params` for a given key with this CA's issuing authority.
    fn sign_leaf_raw_with_key(
        &self,
        params: &CertificateParams,
        key: &KeyPair,
    ) -> Result<Vec<CertificateDer<'static>>, FakeCaError> {
        let state = self.read();
        let issuer = match &state.intermediate {
            Some(int) => &int.issuer,
            None => &state.root.issuer,
        };
        let cert = params.signed_by(key, issuer).map_err(cert_err)?;
        Ok(vec![cert.der().clone()])
    }

    /// Issues a JWT-SVID for `id` and `audience` broken in the way `kind`
    /// names.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] if signing fails.
    pub fn issue_bad_jwt_svid(
        &self,
        kind: BadJwt,
        id: &SpiffeId,
        audience: &str,
    ) -> Result<String, FakeCaError> {
        let now = unix_secs(self.inner.clock.now());
        let hour = HOUR.as_secs();
        let mut claims = json!({
            "sub": id.to_string(),
            "aud": [audience],
            "iat": now,
            "exp": now + 300,
        });
        let set = |claims: &mut serde_json::Value, k: &str, v: serde_json::Value| {
            if let Some(map) = claims.as_object_mut() {
                map.insert(k.to_owned(), v);
            }
        };
        let remove = |claims: &mut serde_json::Value, k: &str| {
            if let Some(map) = claims.as_object_mut() {
                map.remove(k);
            }
        };
        match kind {
            BadJwt::AlgNone => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let kid = self.current_jwt_kid();
                let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
                return Ok(format!(
                    "{}.{}.",
                    b64.encode(header.to_string()),
                    b64.encode(claims.to_string())
                ));
            }
            BadJwt::HmacWithPublicKey => {
                let kid = self.current_jwt_kid();
                let public = self
                    .bundle()
                    .jwt_authority(&kid)
                    .map(|a| serde_json::Value::Object(a.jwk().clone()).to_string())
                    .unwrap_or_default();
                return crate::jws::hs256(&kid, public.as_bytes(), &claims);
            }
            BadJwt::Expired => {
                set(&mut claims, "iat", json!(now - 2 * hour));
                set(&mut claims, "exp", json!(now - hour));
            }
            BadJwt::NotYetValid => {
                set(&mut claims, "nbf", json!(now + hour));
                set(&mut claims, "exp", json!(now + 2 * hour));
            }
            BadJwt::WrongAudience => set(&mut claims, "aud", json!(["wrong-audience"])),
            BadJwt::MissingAudience => remove(&mut claims, "aud"),
            BadJwt::MissingExpiry => remove(&mut claims, "exp"),
            BadJwt::UnknownKeyId => {
                return self.sign_jwt(Some("no-such-key"), &claims);
            }
            BadJwt::SubjectNotSpiffeId => set(&mut claims, "sub", json!("billing@example.org")),
            BadJwt::TamperedPayload => {
                let token = self.sign_jwt(None, &claims)?;
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                set(
                    &mut claims,
                    "sub",
                    json!(format!("spiffe://{}/admin", self.trust_domain())),
                );
                let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
                if parts.len() == 3 {
                    parts[1] = b64.encode(claims.to_string());
                }
                return Ok(parts.join("."));
            }
            BadJwt::ForeignKey => {
                let other = FakeCa::builder(self.trust_domain().clone())
                    .clock(self.inner.clock.clone())
                    .build()?;
                return other.sign_jwt(Some(&self.current_jwt_kid()), &claims);
            }
            BadJwt::WrongType => {
                return self.sign_jwt_typed(None, Some("secevent+jwt"), &claims);
            }
            BadJwt::LowercaseType => {
                return self.sign_jwt_typed(None, Some("jwt"), &claims);
            }
        }
        self.sign_jwt(None, &claims)
    }

    fn current_jwt_kid(&self) -> String {
        self.read()
            .jwt_keys
            .last()
            .map(|k| k.authority.key_id().to_owned())
            .unwrap_or_default()
    }
}
