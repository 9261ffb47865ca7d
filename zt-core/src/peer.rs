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
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::revocation::Revocations;
use crate::source::Snapshot;
use crate::source::{SourceError, SvidSource};
use crate::time::SharedClock;
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

/// How many verified chains a [`PeerVerifier`] remembers by default.
pub const DEFAULT_CHAIN_CACHE_CAPACITY: usize = 4096;

/// Verifies TLS peers against a source's current snapshot, remembering
/// chains it has already verified.
///
/// This is what `zt-client` and `zt-server` run inside their rustls
/// verifiers. A peer that reconnects presents the same chain until its SVID
/// rotates; re-verifying its signatures each time would repeat identical
/// work. A cached result is reused only for the **identical chain bytes**,
/// under the **same snapshot revision** (any bundle change empties the
/// cache), and only while the injected clock is inside the validity period
/// of every certificate in the chain. The pin and the revocation list are
/// checked on every call. Failures are never cached.
///
/// The TLS handshake's own signature (CertificateVerify), which proves the
/// peer holds the key, is checked by rustls on every handshake regardless.
pub struct PeerVerifier {
    source: Arc<dyn SvidSource>,
    clock: SharedClock,
    usage: Usage,
    pin: ArcSwapOption<IdMatcher>,
    // Bumped by every `replace_pin`, so live connections are re-judged.
    pin_version: watch::Sender<u64>,
    revocations: Option<Revocations>,
    capacity: usize,
    cache: Mutex<ChainCache>,
}

#[derive(Default)]
struct ChainCache {
    revision: u64,
    entries: HashMap<[u8; 32], VerifiedSvid>,
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("usage", &self.usage)
            .field("pin", &self.pin.load().as_ref().map(ToString::to_string))
            .finish_non_exhaustive()
    }
}

fn chain_digest(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for cert in std::iter::once(end_entity).chain(intermediates) {
        hasher.update((cert.len() as u64).to_be_bytes());
        hasher.update(cert.as_ref());
    }
    hasher.finalize().into()
}

impl PeerVerifier {
    /// A verifier for peers presenting certificates for `usage`, checked
    /// against `source`'s bundles at `clock`'s time and, if given, `pin`.
    pub fn new(
        source: Arc<dyn SvidSource>,
        clock: SharedClock,
        usage: Usage,
        pin: Option<IdMatcher>,
    ) -> Self {
        Self {
            source,
            clock,
            usage,
            pin: ArcSwapOption::new(pin.map(Arc::new)),
            pin_version: watch::Sender::new(0),
            revocations: None,
            capacity: DEFAULT_CHAIN_CACHE_CAPACITY,
            cache: Mutex::new(ChainCache::default()),
        }
    }

    /// Sets how many verified chains are remembered; 0 verifies every
    /// chain in full every time.
    #[must_use]
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Refuses peers whose ID or leaf serial is on `revocations`, or whose
    /// leaf or intermediate a CRL in `revocations` lists
    /// ([`Revocations::check_svid`]), checked at every verification, cached
    /// chains included.
    #[must_use]
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The pin in force, if any.
    pub fn pin(&self) -> Option<Arc<IdMatcher>> {
        self.pin.load_full()
    }

    /// Replaces the pin. Handshakes from now on are judged by `pin`, and a
    /// [`TrustMonitor`](crate::live::TrustMonitor) over this verifier ends
    /// the open connections whose peer it no longer accepts.
    pub fn replace_pin(&self, pin: Option<IdMatcher>) {
        self.pin.store(pin.map(Arc::new));
        self.pin_version.send_modify(|v| *v += 1);
    }

    /// Changes with every [`replace_pin`](Self::replace_pin).
    pub fn pin_changes(&self) -> watch::Receiver<u64> {
        self.pin_version.subscribe()
    }

    /// The source whose bundles verify peers.
    pub fn source(&self) -> &Arc<dyn SvidSource> {
        &self.source
    }

    /// The clock validity is checked with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The revocation list checked at every verification, if any.
    pub fn revocations(&self) -> Option<&Revocations> {
        self.revocations.as_ref()
    }

    /// Which certificates the verified peers must present: a server's
    /// verifier checks [`Usage::ClientAuth`], a client's
    /// [`Usage::ServerAuth`].
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Verifies a peer as a TLS verifier sees it: the end-entity
    /// certificate and the intermediates, separately.
    ///
    /// Fails closed with [`PeerError::LocalSource`] when the local source
    /// has no usable snapshot (none yet, or expired): without our own bundle
    /// we cannot tell who the peer is.
    ///
    /// # Errors
    ///
    /// As [`verify_peer`], plus [`PeerError::LocalSource`].
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<VerifiedSvid, PeerError> {
        let snapshot = self.source.current()?;
        let now = self.clock.now();
        let digest = chain_digest(end_entity, intermediates);
        let cached = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.revision != snapshot.revision() {
                cache.entries.clear();
                cache.revision = snapshot.revision();
            }
            cache.entries.get(&digest).cloned()
        };
        let verified = match cached {
            Some(v) if v.chain_validity().0 <= now && now <= v.chain_validity().1 => v,
            _ => {
                let mut chain = Vec::with_capacity(1 + intermediates.len());
                chain.push(end_entity.clone());
                chain.extend(intermediates.iter().cloned());
                let verified = verify_x509_svid(&chain, snapshot.bundles(), now, self.usage)?;
                let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
                if self.capacity > 0 && cache.revision == snapshot.revision() {
                    if cache.entries.len() >= self.capacity {
                        cache.entries.clear();
                    }
                    cache.entries.insert(digest, verified.clone());
                }
                verified
            }
        };
        if let Some(pin) = self.pin.load().as_deref()
            && !pin.matches(verified.id())
        {
            return Err(PeerError::NotAccepted {
                presented: verified.id().clone(),
                expected: pin.to_string(),
            });
        }
        if let Some(revocations) = &self.revocations
            && revocations.check_svid(&verified).is_some()
        {
            return Err(PeerError::Revoked {
                presented: verified.id().clone(),
                serial: verified.serial_hex(),
            });
        }
        Ok(verified)
    }
}
