//! The crypto provider zt's TLS uses, post-quantum key exchange, and the
//! posture of a finished handshake.

use std::fmt;

use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{CommonState, NamedGroup, ProtocolVersion};

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "zt-tls needs a crypto provider: enable its `aws-lc-rs` (default) or `ring` feature"
);

/// The provider [`TlsOptions`](crate::TlsOptions) uses unless given another.
///
/// With the `aws-lc-rs` feature (the default): rustls's aws-lc-rs provider
/// with key exchange groups in this order: X25519MLKEM768 (hybrid
/// post-quantum, as Go 1.24+, Chrome, Firefox and Linkerd offer first),
/// X25519, P-256, P-384. A peer without ML-KEM negotiates X25519 or P-256
/// with no extra round trip, because a client sends both the hybrid and
/// the X25519 key share.
///
/// With only the `ring` feature: rustls's ring provider, whose groups are
/// classical (X25519, P-256, P-384). ring is smaller to build and has no C
/// toolchain requirement beyond its own assembly, but a recorded session can
/// be decrypted later by whoever gets a large quantum computer.
///
/// The provider is passed to every config zt builds; rustls's process-wide
/// default is never installed or read.
pub fn default_provider() -> CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    {
        use rustls::crypto::aws_lc_rs::{self, kx_group};
        CryptoProvider {
            kx_groups: vec![
                kx_group::X25519MLKEM768,
                kx_group::X25519,
                kx_group::SECP256R1,
                kx_group::SECP384R1,
            ],
            ..aws_lc_rs::default_provider()
        }
    }
    #[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
    {
        rustls::crypto::ring::default_provider()
    }
}

/// Whether `group` is a post-quantum key exchange (ML-KEM alone or in a
/// hybrid with a classical curve).
pub fn is_post_quantum(group: NamedGroup) -> bool {
    matches!(
        group,
        NamedGroup::X25519MLKEM768
            | NamedGroup::secp256r1MLKEM768
            | NamedGroup::MLKEM768
            | NamedGroup::MLKEM1024
    )
}

/// `provider` keeping only its post-quantum key exchange groups, in their
/// order, so a handshake with a peer that has none of them fails.
///
/// # Errors
///
/// [`ConfigError::NoPostQuantumKeyExchange`] if the provider has none (the
/// `ring` provider, or a provider configured without them).
pub fn post_quantum_only(mut provider: CryptoProvider) -> Result<CryptoProvider, ConfigError> {
    let offered: Vec<&'static dyn SupportedKxGroup> = provider.kx_groups.clone();
    provider.kx_groups.retain(|g| is_post_quantum(g.name()));
    if provider.kx_groups.is_empty() {
        return Err(ConfigError::NoPostQuantumKeyExchange {
            groups: offered.iter().map(|g| group_name(g.name())).collect(),
        });
    }
    Ok(provider)
}

/// Why a TLS config could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// rustls refused the configuration (for example, a provider with no
    /// TLS version or cipher suite zt allows).
    #[error("rustls refused the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Post-quantum key exchange is required but the crypto provider has
    /// no post-quantum group.
    #[error(
        "post-quantum key exchange is required, but the crypto provider offers only {}; build with zt-tls's `aws-lc-rs` feature (the default) or give a provider with X25519MLKEM768",
        groups.join(", ")
    )]
    NoPostQuantumKeyExchange {
        /// The groups the provider has.
        groups: Vec<String>,
    },
}

/// The IANA name of a key exchange group (`X25519MLKEM768`, `x25519`,
/// `secp256r1`, ...).
pub fn group_name(group: NamedGroup) -> String {
    match group {
        NamedGroup::X25519 => "x25519".to_owned(),
        NamedGroup::secp256r1 => "secp256r1".to_owned(),
        NamedGroup::secp384r1 => "secp384r1".to_owned(),
        NamedGroup::secp521r1 => "secp521r1".to_owned(),
        NamedGroup::X25519MLKEM768 => "X25519MLKEM768".to_owned(),
        NamedGroup::secp256r1MLKEM768 => "SecP256r1MLKEM768".to_owned(),
        NamedGroup::MLKEM768 => "MLKEM768".to_owned(),
        NamedGroup::MLKEM1024 => "MLKEM1024".to_owned(),
        other => format!("{other:?}"),
    }
}

/// How a finished handshake protects the connection: the protocol
/// version, cipher suite and key exchange group negotiated.
#[derive(Clone, PartialEq, Eq)]
pub struct Posture {
    version: String,
    cipher_suite: String,
    kx_group: Option<NamedGroup>,
    kx_name: Option<String>,
}

impl Posture {
    /// The posture of a connection whose handshake has completed; `None`
    /// while it is still in progress.
    pub fn of(conn: &CommonState) -> Option<Self> {
        let version = match conn.protocol_version()? {
            ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
            ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
            other => format!("{other:?}"),
        };
        let suite = conn.negotiated_cipher_suite()?.suite();
        let kx_group = conn.negotiated_key_exchange_group().map(|g| g.name());
        Some(Self {
            version,
            cipher_suite: suite
                .as_str()
                .map_or_else(|| format!("{suite:?}"), str::to_owned),
            kx_group,
            kx_name: kx_group.map(group_name),
        })
    }

    /// `TLSv1.3` or `TLSv1.2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The IANA name of the cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub fn cipher_suite(&self) -> &str {
        &self.cipher_suite
    }

    /// The key exchange group, when one was negotiated.
    pub fn kx_group(&self) -> Option<NamedGroup> {
        self.kx_group
    }

    /// The key exchange group's name, e.g. `X25519MLKEM768` or `x25519`.
    pub fn kx_group_name(&self) -> Option<&str> {
        self.kx_name.as_deref()
    }

    /// Whether the key exchange was post-quantum.
    pub fn is_post_quantum(&self) -> bool {
        self.kx_group.is_some_and(is_post_quantum)
    }
}

impl fmt::Debug for Posture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Posture")
            .field("version", &self.version)
            .field("cipher_suite", &self.cipher_suite)
            .field("kx_group", &self.kx_group_name())
            .finish()
    }
}

impl fmt::Display for Posture {
    /// `TLSv1.3 TLS13_AES_256_GCM_SHA384 X25519MLKEM768`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.version,
            self.cipher_suite,
            self.kx_group_name().unwrap_or("-")
        )
    }
}
