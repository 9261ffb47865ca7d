//! The TLS plane of zt: the rustls glue that both sides of a mutual-TLS
//! call share.
//!
//! [`TlsOptions`] turns any [`SvidSource`](zt_core::source::SvidSource)
//! into a `rustls::ClientConfig` or `rustls::ServerConfig` that
//!
//! - presents the source's **current** X.509-SVID at every handshake, so
//!   rotation needs no rebuild ([`SvidResolver`]);
//! - verifies the peer's chain by the SPIFFE rules against the bundle of the
//!   peer's own trust domain, taken from the source's current snapshot, then
//!   checks the pin and the revocation list
//!   ([`PeerVerifier`](zt_core::peer::PeerVerifier));
//! - disables session resumption, tickets and early data: a resumed session
//!   would skip the certificate checks, and with them any change of pin,
//!   bundle or revocation since the first handshake;
//! - uses one crypto provider, chosen explicitly: [`default_provider`]
//!   (aws-lc-rs, offering hybrid post-quantum key exchange X25519MLKEM768
//!   first) unless another is given; the process-wide default provider is
//!   never consulted. [`TlsOptions::require_post_quantum`] refuses peers
//!   that cannot do post-quantum key exchange, and [`Posture`] reads what a
//!   finished handshake negotiated.
//!
//! `zt-client` and `zt-server` build on it; use it directly to put zt's
//! verification under another TLS stack built on rustls.
//!
//! A caller that holds no SVID (a CI job authenticating with an OIDC token
//! to a server with token callers) verifies the server the same way, from
//! a fixed trust bundle and the server's SPIFFE ID, with
//! [`token_caller_client_config`].
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use zt_core::matcher::IdMatcher;
//! use zt_dev::{FakeCa, FakeCaSource};
//! use zt_tls::TlsOptions;
//!
//! let ca = FakeCa::new("example.org".parse()?)?;
//! let billing = FakeCaSource::new(ca.clone(), "spiffe://example.org/billing".parse()?, Duration::from_secs(300))?;
//! let orders = FakeCaSource::new(ca, "spiffe://example.org/orders".parse()?, Duration::from_secs(300))?;
//!
//! // billing accepts callers of its trust domain; orders only talks to billing.
//! let server = TlsOptions::new(billing)
//!     .pin("spiffe://example.org/*".parse::<IdMatcher>()?)
//!     .server_config()?;
//! let client = TlsOptions::new(orders)
//!     .pin("spiffe://example.org/billing".parse::<IdMatcher>()?)
//!     .client_config()?;
//! # let _ = (server, client);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Refusals
//!
//! A peer that zt refuses fails the handshake with a rustls
//! `InvalidCertificate` error that carries a [`PeerRejected`]: the side
//! that refused, the ID presented and what was expected. rustls renders
//! that inner error through its `Debug`, so its own message reads
//! `invalid peer certificate: Other(...)`; [`PeerRejected::find`] walks any
//! error's source chain (`io::Error`, `rustls::Error`, `reqwest::Error`,
//! `tonic::Status`, ...) and returns the typed refusal, whose `Display` is
//! one sentence.
//!
//! rustls 0.23's verifier traits are renamed in 0.24; their impls are all
//! in one module of this crate so the move stays local.
#![forbid(unsafe_code)]

mod error;
mod metrics;
mod options;
mod provider;
mod resolve;
mod token_caller;
mod verify;

pub use error::{PeerRejected, Side};
pub use metrics::{record_handshake, record_handshake_timeout};
pub use options::{DEFAULT_CHAIN_CACHE_CAPACITY, TlsOptions};
pub use provider::{
    ConfigError, Posture, default_provider, group_name, is_post_quantum, post_quantum_only,
};
pub use resolve::SvidResolver;
pub use token_caller::token_caller_client_config;
