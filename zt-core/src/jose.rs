//! JOSE signatures: public keys read from JWKs, and compact-JWS signature
//! checks done with the crypto library under zt's TLS provider.
//!
//! JWT-SVIDs and user-context tokens are checked here, so a token costs
//! one public-key verification with the same assembly-backed code that
//! verifies TLS handshakes, and no second crypto stack (no pure-Rust P-256,
//! no `rsa` crate) is linked.
//!
//! | `alg` | key | check |
//! |---|---|---|
//! | `ES256` | EC `P-256` | ECDSA, SHA-256, fixed-length `r‖s` signature |
//! | `ES384` | EC `P-384` | ECDSA, SHA-384, fixed-length `r‖s` signature |
//! | `RS256`, `RS384`, `RS512` | RSA, 2048 to 8192 bits | PKCS #1 v1.5 |
//! | `PS256`, `PS384`, `PS512` | RSA, 2048 to 8192 bits | PSS |
//! | `EdDSA` | OKP `Ed25519` | Ed25519 |
//!
//! Symmetric keys (`kty` `oct`) and JWKs carrying private members are
//! refused when the key is read; a key is only ever used with an algorithm
//! of its own type and curve.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// A JWS signature algorithm zt verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// ECDSA with P-384 and SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// Ed25519.
    EdDsa,
}

impl JwsAlgorithm {
    /// The algorithm an `alg` header names, if zt verifies it. `none` and
    /// the HMAC algorithms are never accepted.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a key could not be read or a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// The JWK is not a public key zt can verify with.
    #[error("unusable JWK: {reason}")]
    UnusableKey {
        /// What was wrong.
        reason: String,
    },
    /// The token's algorithm does not fit the key (another key type or
    /// curve).
    #[error("algorithm {alg} cannot be used with a {key} key")]
    AlgorithmMismatch {
        /// The algorithm asked for.
        alg: JwsAlgorithm,
        /// The key's type and curve, such as `EC P-256`.
        key: &'static str,
    },
    /// The token is not a compact JWS.
    #[error("malformed JWS: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The signature does not verify with the key.
    #[error("the signature does not verify")]
    BadSignature,
}

#[derive(Clone, PartialEq, Eq)]
enum Key {
    /// Uncompressed point `04‖x‖y`.
    P256(Box<[u8]>),
    /// Uncompressed point `04‖x‖y`.
    P384(Box<[u8]>),
    /// Big-endian modulus and exponent without leading zero bytes.
    Rsa {
        n: Box<[u8]>,
        e: Box<[u8]>,
    },
    Ed25519(Box<[u8]>),
}

/// A public key read from a JWK, ready to verify signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: Key,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("type", &self.description())
            .finish()
    }
}

fn unusable(reason: impl Into<String>) -> JoseError {
    JoseError::UnusableKey {
        reason: reason.into(),
    }
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, JoseError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| unusable(format!("the JWK has no string member `{name}`")))
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(member(jwk, name)?)
        .map_err(|_| unusable(format!("the JWK member `{name}` is not base64url")))
}

fn coordinate(jwk: &Map<String, Value>, name: &str, len: usize) -> Result<Vec<u8>, JoseError> {
    let bytes = b64_member(jwk, name)?;
    if bytes.len() != len {
        return Err(unusable(format!(
            "the JWK member `{name}` is {} bytes; this curve needs {len}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn point(jwk: &Map<String, Value>, len: usize) -> Result<Box<[u8]>, JoseError> {
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend(coordinate(jwk, "x", len)?);
    point.extend(coordinate(jwk, "y", len)?);
    Ok(point.into_boxed_slice())
}

fn unsigned(mut bytes: Vec<u8>, name: &str) -> Result<Box<[u8]>, JoseError> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    if bytes.is_empty() {
        return Err(unusable(format!("the JWK member `{name}` is zero")));
    }
    Ok(bytes.into_boxed_slice())
}

/// The members that make a JWK a private or symmetric key.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

impl PublicKey {
    /// Reads the public key of a JWK (RFC 7517): `kty` `EC` with `crv`
    /// `P-256` or `P-384`, `RSA`, or `OKP` with `crv` `Ed25519`.
    ///
    /// # Errors
    ///
    /// [`JoseError::UnusableKey`] for a symmetric key, a JWK with private
    /// members, an unsupported type or curve, or members of the wrong
    /// encoding or size.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, JoseError> {
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(unusable(format!(
                "the JWK carries private member `{private}`; only public keys are accepted"
            )));
        }
        let key = match member(jwk, "kty")? {
            "EC" => match member(jwk, "crv")? {
                "P-256" => Key::P256(point(jwk, 32)?),
                "P-384" => Key::P384(point(jwk, 48)?),
                other => return Err(unusable(format!("unsupported elliptic curve `{other}`"))),
            },
            "RSA" => Key::Rsa {
                n: unsigned(b64_member(jwk, "n")?, "n")?,
                e: unsigned(b64_member(jwk, "e")?, "e")?,
            },
            "OKP" => match member(jwk, "crv")? {
                "Ed25519" => Key::Ed25519(coordinate(jwk, "x", 32)?.into_boxed_slice()),
                other => return Err(unusable(format!("unsupported OKP curve `{other}`"))),
            },
            "oct" => return Err(unusable("symmetric (HMAC) keys are not accepted")),
            other => return Err(unusable(format!("unsupported key type `{other}`"))),
        };
        Ok(Self { key })
    }

    /// The key's type and curve, such as `EC P-256`.
    pub fn description(&self) -> &'static str {
        match self.key {
            Key::P256(_) => "EC P-256",
            Key::P384(_) => "EC P-384",
            Key::Rsa { .. } => "RSA",
            Key::Ed25519(_) => "OKP Ed25519",
        }
    }

    /// The algorithm this key implies when its JWK names none: `ES256`,
    /// `ES384` or `EdDSA`; `None` for RSA, whose padding the key alone does
    /// not fix.
    pub fn implied_algorithm(&self) -> Option<JwsAlgorithm> {
        match self.key {
            Key::P256(_) => Some(JwsAlgorithm::Es256),
            Key::P384(_) => Some(JwsAlgorithm::Es384),
            Key::Ed25519(_) => Some(JwsAlgorithm::EdDsa),
            Key::Rsa { .. } => None,
        }
    }

    /// Whether this key can verify `alg` signatures.
    pub fn fits(&self, alg: JwsAlgorithm) -> bool {
        use JwsAlgorithm::*;
        matches!(
            (&self.key, alg),
            (Key::P256(_), Es256)
                | (Key::P384(_), Es384)
                | (
                    Key::Rsa { .. },
                    Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512
                )
                | (Key::Ed25519(_), EdDsa)
        )
    }

    /// Checks `signature` over `message` with `alg`.
    ///
    /// # Errors
    ///
    /// [`JoseError::AlgorithmMismatch`] if the key cannot be used with
    /// `alg`, [`JoseError::BadSignature`] if the signature does not verify.
    pub fn verify(
        &self,
        alg: JwsAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), JoseError> {
        use JwsAlgorithm::*;
        let mismatch = || JoseError::AlgorithmMismatch {
            alg,
            key: self.description(),
        };
        let verified = match (&self.key, alg) {
            (Key::P256(point), Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
            }
            (Key::P384(point), Es384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
            }
            (Key::Ed25519(x), EdDsa) => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(message, signature)
            }
            (Key::Rsa { n, e }, rsa) => {
                let params: &signature::RsaParameters = match rsa {
                    Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(mismatch()),
                };
                RsaPublicKeyComponents { n, e }.verify(params, message, signature)
            }
            _ => return Err(mismatch()),
        };
        verified.map_err(|_| JoseError::BadSignature)
    }
}

/// A compact JWS split into its parts. Nothing is verified yet.
#[derive(Debug, Clone, Copy)]
pub struct CompactJws<'a> {
    signing_input: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> CompactJws<'a> {
    /// Splits `token` into header, payload and signature (three
    /// base64url segments joined by dots).
    ///
    /// # Errors
    ///
    /// [`JoseError::Malformed`] if the token does not have exactly three
    /// parts.
    pub fn split(token: &'a str) -> Result<Self, JoseError> {
        let malformed = || JoseError::Malformed {
            reason: "a compact JWS has three dot-separated parts".to_owned(),
        };
        let (signing_input, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or_else(malformed)?;
        if payload.contains('.') {
            return Err(malformed());
        }
        Ok(Self {
            signing_input,
            header,
            payload,
            signature,
        })
    }

    /// The base64url header segment.
    pub fn header(&self) -> &'a str {
        self.header
    }

    /// The base64url payload segment.
    pub fn payload(&self) -> &'a str {
        self.payload
    }

    /// Checks the signature over `header.payload` with `key` and `alg`.
    ///
    /// # Errors
    ///
    /// [`JoseError::Malformed`] if the signature is not base64url, and the
    /// errors of [`PublicKey::verify`].
    pub fn verify(&self, key: &PublicKey, alg: JwsAlgorithm) -> Result<(), JoseError> {
        let signature =
            URL_SAFE_NO_PAD
                .decode(self.signature)
                .map_err(|_| JoseError::Malformed {
                    reason: "the signature is not base64url".to_owned(),
                })?;
        key.verify(alg, self.signing_input.as_bytes(), &signature)
    }
}

#[cfg(test)]
mod tests;
