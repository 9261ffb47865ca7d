//! Peer verification for TLS layers: SVID rules plus the caller's pin.
//!
//! `zt-client` and `zt-server` call [`verify_peer`] from their rustls
//! verifiers. It runs [`verify_x509_svid`] against the bundles of the local
//! source's current snapshot and then checks the peer's ID against the
//! configured [`IdMatcher`]. Errors say which ID was presented and what was
//! expected, so a refused handshake explains itself.

use std::time::SystemTime;

use rustls_pki_types::CertificateDer;

use crate::SpiffeId;
use crate::matcher::IdMatcher;
use crate::source::Snapshot;
use crate::source::{SourceError, SvidSource};
use crate::time::Clock;
use crate::x509::{SvidError, Usage, VerifiedSvid, verify_x509_svid};

/// Why a TLS peer was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer's certificate chain is not a valid X.509-SVID.
    #[error("the peer's X.509-SVID was rejected: {0}")]
    Svid(#[from] SvidError),
    /// The peer has a valid SVID, but its ID is not one this side accepts.
    #[error("the peer presented `{presented}`, but only {expected} is accepted")]
    NotAccepted {
        /// The peer's SPIFFE ID.
        presented: SpiffeId,
        /// The accepted IDs, as the matcher describes them.
        expected: String,
    },
    /// The peer's SVID has been revoked.
    #[error("the peer `{presented}` (serial {serial}) has been revoked")]
    Revoked {
        /// The peer's SPIFFE ID.
        presented: SpiffeId,
        /// The leaf serial, lowercase hex.
        serial: String,
    },
    /// This side has no usable identity material, so it cannot verify
    /// anyone (fail closed).
    #[error("no local trust bundle to verify the peer with: {0}")]
    LocalSource(#[from] SourceError),
}

/// Verifies a peer's chain against a snapshot's bundles and a pin.
///
/// `pin` of `None` accepts any peer with a valid SVID from a trusted trust
/// domain; the TLS crates only allow that through their `danger` APIs.
///
/// # Errors
///
/// [`PeerError::Svid`] for a chain that breaks an SVID rule,
/// [`PeerError::NotAccepted`] for a valid SVID that the pin refuses.
pub fn verify_peer(
    chain: &[CertificateDer<'_>],
    snapshot: &Snapshot,
    now: SystemTime,
    usage: Usage,
    pin: Option<&IdMatcher>,
) -> Result<VerifiedSvid, PeerError> {
    let verified = verify_x509_svid(chain, snapshot.bundles(), now, usage)?;
    if let Some(pin) = pin
        && !pin.matches(verified.id())
    {
        return Err(PeerError::NotAccepted {
            presented: verified.id().clone(),
            expected: pin.to_string(),
        });
    }
    Ok(verified)
}

/// Verifies a peer as a TLS verifier sees it — the end-entity certificate
/// and the intermediates, separately — against the *current* snapshot of
/// `source`, at the time `clock` gives.
///
/// Fails closed with [`PeerError::LocalSource`] when the local source has no
/// usable snapshot (none yet, or expired): without our own bundle we cannot
/// tell who the peer is.
///
/// # Errors
///
/// As [`verify_peer`], plus [`PeerError::LocalSource`].
pub fn verify_peer_with_source(
    source: &dyn SvidSource,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    clock: &dyn Clock,
    usage: Usage,
    pin: Option<&IdMatcher>,
) -> Result<VerifiedSvid, PeerError> {
    let snapshot = source.current()?;
    let mut chain = Vec::with_capacity(1 + intermediates.len());
    chain.push(end_entity.clone());
    chain.extend(intermediates.iter().cloned());
    verify_peer(&chain, &snapshot, clock.now(), usage, pin)
}
