//! Live connections, re-judged whenever trust changes.
//!
//! A TLS peer is verified once, at the handshake; the connection can then
//! live for hours. A [`TrustMonitor`] keeps every open connection's verified
//! chain, indexed by the peer's SPIFFE ID, leaf serial and trust domain, and
//! ends a connection when what it was opened on no longer holds:
//!
//! | event | connections re-judged | [`EndReason`] |
//! |---|---|---|
//! | the peer's chain reaches its `notAfter` | that connection (its own timer) | [`Expired`](EndReason::Expired) |
//! | an ID or serial is revoked ([`Revocations`]) | those with that ID or serial | [`Revoked`](EndReason::Revoked) |
//! | a trust domain's X.509 authorities change, or it is no longer trusted | those of that trust domain | [`Bundle`](EndReason::Bundle) |
//! | the pin is replaced ([`PeerVerifier::replace_pin`]) | all | [`Pin`](EndReason::Pin) |
//!
//! Re-judging runs the same [`PeerVerifier`] as the handshake, against the
//! current snapshot, revocation list and pin, so a connection stays open
//! exactly as long as a new handshake with the same chain would succeed.
//! The monitor reacts to the `watch` channels of the source, the
//! revocation list and the pin; nothing runs per request and no connection
//! is polled.
//!
//! Ending a connection cancels its [`EndSignal`]; the server or client
//! holding the connection then closes it (`zt-server` sends HTTP/2 GOAWAY,
//! ends in-flight streaming responses and closes after a bounded grace
//! period). Each end is recorded under the `zt::audit` tracing target with
//! `event = "connection-ended"`, the side, the peer's ID, serial and trust
//! domain, the reason and how long the connection lived.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use zt_core::live::{EndReason, TrustMonitor};
//! use zt_core::peer::PeerVerifier;
//! use zt_core::revocation::Revocations;
//! use zt_core::source::SvidSource as _;
//! use zt_core::x509::Usage;
//! use zt_dev::{FakeCa, FakeCaSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = FakeCa::new("example.org".parse()?)?;
//! let server = FakeCaSource::new(ca.clone(), "spiffe://example.org/billing".parse()?, Duration::from_secs(300))?;
//! let caller = FakeCaSource::new(ca, "spiffe://example.org/orders".parse()?, Duration::from_secs(300))?;
//!
//! let revocations = Revocations::new();
//! let verifier = PeerVerifier::new(server, zt_core::time::system_clock(), Usage::ClientAuth, None)
//!     .with_revocations(revocations.clone());
//! let monitor = TrustMonitor::new(Arc::new(verifier));
//!
//! // After the handshake: the chain the caller presented.
//! let chain = caller.current()?.svid().chain().to_vec();
//! let connection = monitor.admit(chain)?;
//! assert!(!connection.signal().is_ended());
//!
//! revocations.revoke_id("spiffe://example.org/orders".parse()?);
//! let ended = connection.ended().await;
//! assert_eq!(ended.reason(), EndReason::Revoked);
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::bundle::BundleSet;
use crate::crl::CrlSet;
use crate::peer::{PeerError, PeerVerifier};
use crate::revocation::{RevocationSet, Revocations};
use crate::source::Snapshot;
use crate::x509::{SvidError, Usage, VerifiedSvid};
use crate::{SpiffeId, TrustDomain};

/// How long before its peer's chain expires a connection is ended, so a
/// request sent on it is still judged valid and the peer reconnects with
/// its current SVID.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// The most a connection stays open when its peer's chain expires in
/// `remaining`: [`EXPIRY_MARGIN`] less, or half of `remaining` when that is
/// shorter than twice the margin.
pub fn connection_lifetime(remaining: Duration) -> Duration {
    remaining.saturating_sub(EXPIRY_MARGIN.min(remaining / 2))
}

/// Why a live connection was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The peer's certificate chain reached the end of its validity.
    Expired,
    /// The peer's SPIFFE ID or leaf serial was revoked.
    Revoked,
    /// The peer's chain no longer verifies against the trust bundle of its
    /// trust domain (its authority was removed, or the trust domain is no
    /// longer trusted).
    Bundle,
    /// The pin was replaced and no longer accepts the peer.
    Pin,
    /// This side has no usable identity material any more, so it cannot
    /// vouch for the peer (fail closed).
    LocalIdentity,
}

impl EndReason {
    /// A short, stable name for logs, audit records and metric labels:
    /// `expired`, `revoked`, `bundle`, `pin`, `local-identity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Bundle => "bundle",
            Self::Pin => "pin",
            Self::LocalIdentity => "local-identity",
        }
    }

    /// Whether the peer is refused for who it is ([`Revoked`](Self::Revoked),
    /// [`Pin`](Self::Pin)) rather than for credentials that no longer
    /// verify. gRPC maps the first to `PERMISSION_DENIED` and the second to
    /// `UNAUTHENTICATED`.
    pub fn is_permission(self) -> bool {
        matches!(self, Self::Revoked | Self::Pin)
    }

    /// The metric label of this reason (none for
    /// [`LocalIdentity`](Self::LocalIdentity), which is this side's state,
    /// not the peer's).
    fn trust_change(self) -> Option<crate::metrics::TrustChange> {
        use crate::metrics::TrustChange;
        match self {
            Self::Expired => Some(TrustChange::Expired),
            Self::Revoked => Some(TrustChange::Revoked),
            Self::Bundle => Some(TrustChange::Bundle),
            Self::Pin => Some(TrustChange::Pin),
            Self::LocalIdentity => None,
        }
    }

    fn of(error: &PeerError) -> Self {
        match error {
            PeerError::Revoked { .. } => Self::Revoked,
            PeerError::NotAccepted { .. } => Self::Pin,
            PeerError::LocalSource(_) => Self::LocalIdentity,
            PeerError::Svid(SvidError::Expired { .. }) => Self::Expired,
            _ => Self::Bundle,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection ended because its peer is no longer trusted.
///
/// Its `Display` is one sentence naming the peer and the reason; the
/// verifier's detailed refusal, if any, is [`detail`](Self::detail).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the connection's peer `{peer}` (serial {serial}) is no longer trusted: {reason}")]
pub struct TrustEnded {
    reason: EndReason,
    peer: SpiffeId,
    serial: String,
    detail: Option<PeerError>,
}

impl TrustEnded {
    /// Why the connection was ended.
    pub fn reason(&self) -> EndReason {
        self.reason
    }

    /// The peer's SPIFFE ID.
    pub fn peer(&self) -> &SpiffeId {
        &self.peer
    }

    /// The peer's leaf serial, lowercase hex.
    pub fn serial_hex(&self) -> &str {
        &self.serial
    }

    /// The verifier's refusal when the connection was re-judged (none for
    /// an expiry reached by the connection's own timer).
    pub fn detail(&self) -> Option<&PeerError> {
        self.detail.as_ref()
    }

    /// Finds a `TrustEnded` in an error's source chain, looking inside
    /// `io::Error`s too (whose `source` skips the error they wrap).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a TrustEnded> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(ended) = e.downcast_ref::<TrustEnded>() {
                return Some(ended);
            }
            if let Some(inner) = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| Self::find(inner))
            {
                return Some(inner);
            }
            current = e.source();
        }
        None
    }
}

struct EndState {
    token: CancellationToken,
    ended: OnceLock<TrustEnded>,
    // Set once the end is in the audit log.
    recorded: AtomicBool,
}

/// The end of one connection's trust, shared by everything serving on it.
///
/// Cheap to clone. Checking [`is_ended`](Self::is_ended) is one atomic
/// load.
#[derive(Clone)]
pub struct EndSignal {
    state: Arc<EndState>,
}

impl fmt::Debug for EndSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndSignal")
            .field("ended", &self.state.ended.get())
            .finish()
    }
}

impl EndSignal {
    fn new() -> Self {
        Self {
            state: Arc::new(EndState {
                token: CancellationToken::new(),
                ended: OnceLock::new(),
                recorded: AtomicBool::new(false),
            }),
        }
    }

    /// A signal no [`TrustMonitor`] watches, which never ends: for a
    /// connection without a verified peer whose trust could end (a
    /// server's token-only callers, authenticated per request).
    pub fn unmonitored() -> Self {
        Self::new()
    }

    /// Whether the connection's trust has ended.
    pub fn is_ended(&self) -> bool {
        self.state.token.is_cancelled()
    }

    /// Why the connection's trust ended, once it has.
    pub fn reason(&self) -> Option<&TrustEnded> {
        self.state.ended.get()
    }

    /// Completes when the connection's trust ends.
    pub fn cancelled(&self) -> WaitForCancellationFutureOwned {
        self.state.token.clone().cancelled_owned()
    }

    /// Records `ended` and wakes every waiter; `false` if the connection
    /// had already ended.
    fn end(&self, ended: TrustEnded) -> bool {
        if self.state.ended.set(ended).is_err() {
            return false;
        }
        self.state.token.cancel();
        true
    }
}

/// One open connection, registered with a [`TrustMonitor`]. Dropping it
/// removes the connection from the monitor.
pub struct ConnectionGuard {
    inner: Arc<Inner>,
    key: u64,
    peer: VerifiedSvid,
    signal: EndSignal,
    opened: Instant,
}

impl fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("peer", self.peer.id())
            .field("serial", &self.peer.serial_hex())
            .field("ended", &self.signal.reason())
            .finish_non_exhaustive()
    }
}

impl ConnectionGuard {
    /// The peer, as verified when the connection was admitted.
    pub fn peer(&self) -> &VerifiedSvid {
        &self.peer
    }

    /// The connection's end signal, for everything serving on it.
    pub fn signal(&self) -> EndSignal {
        self.signal.clone()
    }

    /// How long until the peer's chain expires (its earliest `notAfter`),
    /// on the verifier's clock.
    pub fn until_expired(&self) -> Duration {
        self.peer
            .chain_validity()
            .1
            .duration_since(self.inner.verifier.clock().now())
            .unwrap_or(Duration::ZERO)
    }

    /// How long until the connection should start closing gracefully:
    /// [`EXPIRY_MARGIN`] before the peer's chain expires (see
    /// [`connection_lifetime`]), so requests in flight finish while the
    /// peer is still valid and the peer reconnects with its current SVID.
    pub fn until_expiring(&self) -> Duration {
        connection_lifetime(self.until_expired())
    }

    /// Completes [`until_expiring`](Self::until_expiring) from now: time to
    /// close the connection gracefully (HTTP/2 GOAWAY), letting requests in
    /// flight finish. Records the end in the audit log (once per
    /// connection). The connection's trust itself ends at
    /// [`ended`](Self::ended).
    pub async fn expiring(&self) {
        tokio::time::sleep(self.until_expiring()).await;
        self.inner.record(
            &self.peer,
            self.opened,
            &self.signal,
            EndReason::Expired,
            None,
        );
    }

    /// Completes when the connection's trust ends: the monitor re-judged it
    /// and refused the peer, or the peer's chain expired. Everything still
    /// served on the connection must stop. The end is recorded in the
    /// audit log (once per connection).
    pub async fn ended(&self) -> TrustEnded {
        let expiry = tokio::time::sleep(self.until_expired());
        tokio::select! {
            () = self.signal.cancelled() => {}
            () = expiry => {
                if self.signal.end(self.expired()) {
                    self.inner.record(&self.peer, self.opened, &self.signal, EndReason::Expired, None);
                }
            }
        }
        match self.signal.reason() {
            Some(ended) => ended.clone(),
            // The token is cancelled only after the reason is set.
            None => self.expired(),
        }
    }

    fn expired(&self) -> TrustEnded {
        TrustEnded {
            reason: EndReason::Expired,
            peer: self.peer.id().clone(),
            serial: self.peer.serial_hex(),
            detail: None,
        }
    }

    /// How long the connection has been open.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.inner.remove(self.key, &self.peer);
    }
}

/// Keeps every open connection of one server or client and ends those
/// whose peer is no longer trusted. Cheap to clone.
///
/// See the [module documentation](self).
#[derive(Clone)]
pub struct TrustMonitor {
    inner: Arc<Inner>,
}

impl fmt::Debug for TrustMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustMonitor")
            .field("side", &self.inner.side())
            .field("open", &self.open_connections())
            .finish_non_exhaustive()
    }
}

struct Inner {
    verifier: Arc<PeerVerifier>,
    registry: Mutex<Registry>,
    watching: OnceLock<()>,
    // Cancelled when the last handle is dropped: stops the watch task.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Default)]
struct Registry {
    next_key: u64,
    entries: HashMap<u64, Entry>,
    by_id: HashMap<SpiffeId, HashSet<u64>>,
    by_serial: HashMap<Box<[u8]>, HashSet<u64>>,
    by_trust_domain: HashMap<TrustDomain, HashSet<u64>>,
}

struct Entry {
    chain: Arc<[CertificateDer<'static>]>,
    peer: VerifiedSvid,
    signal: EndSignal,
    opened: Instant,
}

fn unindex<K: std::hash::Hash + Eq>(index: &mut HashMap<K, HashSet<u64>>, k: &K, key: u64) {
    if let Some(set) = index.get_mut(k) {
        set.remove(&key);
        if set.is_empty() {
            index.remove(k);
        }
    }
}

impl Registry {
    fn insert(&mut self, entry: Entry) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.by_id
            .entry(entry.peer.id().clone())
            .or_default()
            .insert(key);
        self.by_serial
            .entry(entry.peer.serial().into())
            .or_default()
            .insert(key);
        self.by_trust_domain
            .entry(entry.peer.trust_domain().clone())
            .or_default()
            .insert(key);
        self.entries.insert(key, entry);
        key
    }

    fn remove(&mut self, key: u64, peer: &VerifiedSvid) {
        if self.entries.remove(&key).is_some() {
            unindex(&mut self.by_id, peer.id(), key);
            unindex(&mut self.by_serial, &Box::<[u8]>::from(peer.serial()), key);
            unindex(&mut self.by_trust_domain, peer.trust_domain(), key);
        }
    }

    /// The chains and signals of `keys`, to re-judge outside the lock.
    fn candidates(&self, keys: impl IntoIterator<Item = u64>) -> Vec<Candidate> {
        keys.into_iter()
            .filter_map(|key| self.entries.get(&key))
            .filter(|entry| !entry.signal.is_ended())
            .map(|entry| Candidate {
                chain: entry.chain.clone(),
                peer: entry.peer.clone(),
                signal: entry.signal.clone(),
                opened: entry.opened,
            })
            .collect()
    }
}

struct Candidate {
    chain: Arc<[CertificateDer<'static>]>,
    peer: VerifiedSvid,
    signal: EndSignal,
    opened: Instant,
}

impl Inner {
    fn side(&self) -> &'static str {
        match self.verifier.usage() {
            Usage::ClientAuth => "server",
            _ => "client",
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove(&self, key: u64, peer: &VerifiedSvid) {
        self.lock().remove(key, peer);
    }

    /// Records the end of a connection in the audit log, once per
    /// connection.
    fn record(
        &self,
        peer: &VerifiedSvid,
        opened: Instant,
        signal: &EndSignal,
        reason: EndReason,
        detail: Option<&PeerError>,
    ) {
        if signal.state.recorded.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(change) = reason.trust_change() {
            crate::metrics::connection_closed(change);
        }
        let lived_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        let detail = detail.map_or_else(|| "-".to_owned(), ToString::to_string);
        tracing::warn!(
            target: "zt::audit",
            event = "connection-ended",
            side = self.side(),
            peer = %peer.id(),
            serial = %peer.serial_hex(),
            trust_domain = %peer.trust_domain(),
            reason = reason.as_str(),
            detail = %detail,
            lived_ms,
            "connection ended: its peer is no longer trusted"
        );
    }

    /// Re-judges `candidates` with the verifier and ends those it refuses.
    fn rejudge(&self, candidates: Vec<Candidate>) -> usize {
        let mut ended = 0;
        for candidate in candidates {
            let (end_entity, intermediates) = match candidate.chain.split_first() {
                Some(split) => split,
                // Admitted chains are never empty: `admit` verified them.
                None => continue,
            };
            let Err(error) = self.verifier.verify(end_entity, intermediates) else {
                continue;
            };
            let trust_ended = TrustEnded {
                reason: EndReason::of(&error),
                peer: candidate.peer.id().clone(),
                serial: candidate.peer.serial_hex(),
                detail: Some(error),
            };
            let reason = trust_ended.reason;
            if candidate.signal.end(trust_ended) {
                let detail = candidate.signal.reason().and_then(TrustEnded::detail);
                self.record(
                    &candidate.peer,
                    candidate.opened,
                    &candidate.signal,
                    reason,
                    detail,
                );
                ended += 1;
            }
        }
        ended
    }

    /// Connections whose trust domain's X.509 authorities differ between
    /// `old` and `new`.
    fn bundle_changed(&self, old: &BundleSet, new: &BundleSet) -> Vec<Candidate> {
        let registry = self.lock();
        let changed = registry
            .by_trust_domain
            .iter()
            .filter(|(td, _)| match (old.get(td), new.get(td)) {
                (Some(before), Some(after)) => !before.same_authorities(after),
                _ => true,
            })
            .flat_map(|(_, keys)| keys.iter().copied())
            .collect::<Vec<_>>();
        registry.candidates(changed)
    }

    /// Connections whose ID or serial is on `new` and was not on `old`.
    fn newly_revoked(&self, old: &RevocationSet, new: &RevocationSet) -> Vec<Candidate> {
        let registry = self.lock();
        let mut keys = Vec::new();
        for id in new.ids().filter(|id| !old.is_id_revoked(id)) {
            if let Some(set) = registry.by_id.get(id) {
                keys.extend(set.iter().copied());
            }
        }
        let before: HashSet<&[u8]> = old.serials().collect();
        for serial in new.serials().filter(|s| !before.contains(s)) {
            if let Some(set) = registry.by_serial.get(serial) {
                keys.extend(set.iter().copied());
            }
        }
        registry.candidates(keys)
    }

    fn in_trust_domains(&self, trust_domains: &[TrustDomain]) -> Vec<Candidate> {
        let registry = self.lock();
        let keys = trust_domains
            .iter()
            .filter_map(|td| registry.by_trust_domain.get(td))
            .flat_map(|keys| keys.iter().copied())
            .collect::<Vec<_>>();
        registry.candidates(keys)
    }

    fn all(&self) -> Vec<Candidate> {
        let registry = self.lock();
        registry.candidates(registry.entries.keys().copied().collect::<Vec<_>>())
    }
}

impl TrustMonitor {
    /// A monitor re-judging connections with `verifier`: the one the TLS
    /// layer verifies handshakes with, so both judge alike.
    pub fn new(verifier: Arc<PeerVerifier>) -> Self {
        Self {
            inner: Arc::new(Inner {
                verifier,
                registry: Mutex::new(Registry::default()),
                watching: OnceLock::new(),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The verifier connections are judged with.
    pub fn verifier(&self) -> &Arc<PeerVerifier> {
        &self.inner.verifier
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Registers a connection whose handshake presented `chain` (leaf
    /// first). The chain is judged again, under the monitor's lock, so a
    /// change of trust between the handshake and this call is not missed.
    ///
    /// Starts the monitor's watch task on first use, so this must be called
    /// within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The verifier's refusal if the peer is no longer trusted.
    pub fn admit(
        &self,
        chain: impl Into<Arc<[CertificateDer<'static>]>>,
    ) -> Result<ConnectionGuard, PeerError> {
        self.start_watching();
        let chain = chain.into();
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or(PeerError::Svid(SvidError::EmptyChain))?;
        let mut registry = self.inner.lock();
        let peer = self.inner.verifier.verify(end_entity, intermediates)?;
        let signal = EndSignal::new();
        let opened = Instant::now();
        let key = registry.insert(Entry {
            chain: chain.clone(),
            peer: peer.clone(),
            signal: signal.clone(),
            opened,
        });
        drop(registry);
        Ok(ConnectionGuard {
            inner: self.inner.clone(),
            key,
            peer,
            signal,
            opened,
        })
    }

    /// Re-judges every open connection now and returns how many were
    /// ended. The monitor does this by itself on every change it watches;
    /// call it after changing trust through a path it cannot see.
    pub fn rejudge_all(&self) -> usize {
        let candidates = self.inner.all();
        self.inner.rejudge(candidates)
    }

    fn start_watching(&self) {
        let mut started = false;
        self.inner.watching.get_or_init(|| started = true);
        if !started {
            return;
        }
        // The receivers and the state they start from are taken now, not
        // when the task first runs, so a change made before then is seen.
        let verifier = &self.inner.verifier;
        let mut snapshots = verifier.source().updates();
        let bundles = snapshots
            .borrow_and_update()
            .as_ref()
            .map(|s| s.bundles().clone());
        let revocations = verifier.revocations().cloned().map(|list| {
            let changes = list.changes();
            let current = list.current();
            let crls = list.crls();
            (list, changes, current, crls)
        });
        let watched = Watched {
            snapshots: Some(snapshots),
            bundles,
            revocations,
            pins: Some(verifier.pin_changes()),
        };
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        tokio::spawn(watch_trust(weak, stop, watched));
    }
}

/// What the watch task follows, and the state last seen of each.
struct Watched {
    snapshots: Option<watch::Receiver<Option<Arc<Snapshot>>>>,
    bundles: Option<Arc<BundleSet>>,
    revocations: Option<(
        Revocations,
        watch::Receiver<u64>,
        Arc<RevocationSet>,
        CrlSet,
    )>,
    pins: Option<watch::Receiver<u64>>,
}

/// The trust domains of the CRLs in `new` that were not in `old`.
fn changed_crl_trust_domains(old: Option<&CrlSet>, new: &CrlSet) -> Vec<TrustDomain> {
    let mut trust_domains = Vec::new();
    for crl in new.iter() {
        let known = old.is_some_and(|old| old.iter().any(|o| Arc::ptr_eq(o, crl) || **o == **crl));
        if !known {
            for td in crl.trust_domains() {
                if !trust_domains.contains(td) {
                    trust_domains.push(td.clone());
                }
            }
        }
    }
    trust_domains
}

/// The first `nextUpdate` after `after` among `crls`, and the trust
/// domains of the CRL it belongs to.
fn next_staleness(crls: &CrlSet, after: SystemTime) -> Option<(SystemTime, Vec<TrustDomain>)> {
    let (at, crl) = crls
        .iter()
        .filter_map(|crl| crl.next_update().map(|at| (at, crl)))
        .filter(|(at, _)| *at > after)
        .min_by_key(|(at, _)| *at)?;
    Some((at, crl.trust_domains().cloned().collect()))
}

async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) {
    match rx {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                // The sender is gone: nothing more will change here.
                *rx = None;
            }
        }
        None => std::future::pending().await,
    }
}

async fn watch_trust(monitor: Weak<Inner>, stop: CancellationToken, watched: Watched) {
    let Watched {
        mut snapshots,
        bundles: mut last_bundles,
        revocations,
        mut pins,
    } = watched;
    let (revocations, mut revocation_changes, mut last_revoked, mut last_crls) = match revocations {
        Some((list, changes, current, crls)) => {
            (Some(list), Some(changes), Some(current), Some(crls))
        }
        None => (None, None, None, None),
    };
    let clock = match monitor.upgrade() {
        Some(inner) => inner.verifier.clock().clone(),
        None => return,
    };
    // CRLs whose `nextUpdate` is at or before this have been handled.
    let mut stale_judged = clock.now();
    loop {
        // A CRL past its `nextUpdate` may refuse its issuer's peers (a
        // fail-closed trust domain): re-judge them when that happens.
        let now = clock.now();
        let next_stale = last_crls
            .as_ref()
            .and_then(|crls| next_staleness(crls, stale_judged.max(now)));
        let stale_in = next_stale.as_ref().map_or(Duration::MAX, |(at, _)| {
            at.duration_since(now).unwrap_or(Duration::ZERO)
        });
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(stale_in), if next_stale.is_some() => {
                let Some(inner) = monitor.upgrade() else { return };
                if let Some((at, trust_domains)) = next_stale {
                    // Judged once: the next deadline is a later CRL's.
                    stale_judged = at;
                    let candidates = inner.in_trust_domains(&trust_domains);
                    inner.rejudge(candidates);
                }
            }
            () = changed(&mut snapshots) => {
                let Some(inner) = monitor.upgrade() else { return };
                let bundles = snapshots
                    .as_mut()
                    .and_then(|rx| rx.borrow_and_update().as_ref().map(|s| s.bundles().clone()));
                let (Some(old), Some(new)) = (&last_bundles, &bundles) else {
                    last_bundles = bundles;
                    continue;
                };
                if !Arc::ptr_eq(old, new) {
                    let candidates = inner.bundle_changed(old, new);
                    inner.rejudge(candidates);
                }
                last_bundles = bundles;
            }
            () = changed(&mut revocation_changes) => {
                let Some(inner) = monitor.upgrade() else { return };
                if let Some(rx) = revocation_changes.as_mut() {
                    rx.borrow_and_update();
                }
                let (Some(list), Some(old)) = (&revocations, &last_revoked) else { continue };
                let new = list.current();
                let candidates = inner.newly_revoked(old, &new);
                inner.rejudge(candidates);
                last_revoked = Some(new);
                let crls = list.crls();
                let changed = changed_crl_trust_domains(last_crls.as_ref(), &crls);
                if !changed.is_empty() {
                    let candidates = inner.in_trust_domains(&changed);
                    inner.rejudge(candidates);
                }
                last_crls = Some(crls);
            }
            () = changed(&mut pins) => {
                let Some(inner) = monitor.upgrade() else { return };
                if let Some(rx) = pins.as_mut() {
                    rx.borrow_and_update();
                }
                let candidates = inner.all();
                inner.rejudge(candidates);
            }
        }
    }
}
