//! The publish / fail / expire logic every source shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::watch;

use super::{Health, Snapshot, SourceError};
use crate::bundle::BundleSet;
use crate::metrics::{self, SourceHealthState};
use crate::svid::X509Svid;
use crate::time::{SharedClock, Timestamp, system_clock};

/// Holds a source's snapshots and failure state.
///
/// Building block for [`SvidSource`](super::SvidSource) implementations:
/// call [`SourceState::publish`] with each new SVID and
/// [`SourceState::report_failure`] when the upstream fails; answer
/// `current`, `updates` and `health` from it.
#[derive(Debug)]
pub struct SourceState {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    last_failure: Mutex<Option<String>>,
    revision: AtomicU64,
    clock: SharedClock,
    name: RwLock<Arc<str>>,
}

impl Default for SourceState {
    fn default() -> Self {
        Self::new(system_clock())
    }
}

impl SourceState {
    /// An empty state reading time from `clock`.
    pub fn new(clock: SharedClock) -> Self {
        let (tx, _) = watch::channel(None);
        Self {
            tx,
            last_failure: Mutex::new(None),
            revision: AtomicU64::new(0),
            clock,
            name: RwLock::new(Arc::from("custom")),
        }
    }

    /// Names the source in its metrics (label `source`, see
    /// [`crate::metrics`]); the backends of this crate use their kind
    /// (`workload_api`, `file`, `static`), `zt-dev`'s uses `fake_ca`, and
    /// other sources are `custom` unless named.
    #[must_use]
    pub fn with_metrics_name(self, name: &'static str) -> Self {
        self.set_metrics_name(name);
        self
    }

    /// Renames the source in its metrics, from its next update on; for a
    /// process holding several sources of one kind (give each a fixed
    /// name, e.g. the service it serves: never a caller's ID). The metrics
    /// of the SVID in force are recorded again under the new name.
    pub fn set_metrics_name(&self, name: impl Into<Arc<str>>) {
        *self.name.write().unwrap_or_else(PoisonError::into_inner) = name.into();
        if let Some(snapshot) = self.latest() {
            metrics::svid_published(
                &self.metrics_name(),
                &snapshot.svid,
                snapshot.published_at,
                false,
            );
            self.record_state();
        }
    }

    /// The name of the source in its metrics.
    pub fn metrics_name(&self) -> Arc<str> {
        Arc::clone(&self.name.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Sets the source-state gauges from the state now.
    fn record_state(&self) {
        metrics::source_state(
            &self.metrics_name(),
            SourceHealthState::of(&self.compute_health()),
        );
    }

    /// The clock the state checks expiry with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Publishes a new snapshot and clears any failure.
    pub fn publish(&self, svid: X509Svid, bundles: BundleSet) -> Arc<Snapshot> {
        self.publish_shared(Arc::new(svid), bundles)
    }

    /// Publishes a new snapshot holding an SVID that is already shared
    /// (e.g. another source's, with other bundles), and clears any failure.
    pub fn publish_shared(&self, svid: Arc<X509Svid>, bundles: BundleSet) -> Arc<Snapshot> {
        let revision = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
        let rotated = self
            .latest()
            .is_some_and(|old| old.svid().serial() != svid.serial());
        let snapshot = Arc::new(Snapshot {
            svid,
            bundles: Arc::new(bundles),
            revision,
            published_at: self.clock.now(),
        });
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        tracing::debug!(
            target: "zt::source",
            id = %snapshot.svid.id(),
            serial = %snapshot.svid.serial_hex(),
            revision,
            "published SVID"
        );
        self.tx.send_replace(Some(snapshot.clone()));
        metrics::svid_published(
            &self.metrics_name(),
            &snapshot.svid,
            snapshot.published_at,
            rotated,
        );
        self.record_state();
        snapshot
    }

    /// Records an upstream failure; the last good snapshot keeps serving.
    pub fn report_failure(&self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(target: "zt::source", %reason, "SVID source update failed; keeping last good SVID");
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.record_state();
    }

    /// Sets (or with `None` clears) the failure [`SourceState::health`]
    /// reports, without publishing and without logging. For sources that
    /// follow several upstream streams and compose one reason from them;
    /// they log each stream's change themselves.
    pub fn set_failure(&self, reason: Option<String>) {
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason;
        self.record_state();
    }

    /// Clears a recorded failure without publishing: the upstream is back
    /// to the material of the snapshot in force.
    pub fn clear_failure(&self) {
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.record_state();
    }

    fn failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The latest snapshot, even if expired.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.tx.borrow().clone()
    }

    /// The current snapshot, failing closed before the first SVID and after
    /// the last one expired.
    ///
    /// # Errors
    ///
    /// [`SourceError::NotReady`] or [`SourceError::Expired`].
    pub fn current(&self) -> Result<Arc<Snapshot>, SourceError> {
        let Some(snapshot) = self.latest() else {
            return Err(SourceError::NotReady {
                reason: self.failure(),
            });
        };
        let not_after = snapshot.svid().not_after();
        if self.clock.now() > not_after {
            return Err(SourceError::Expired {
                id: snapshot.svid().id().to_string(),
                expired_at: Timestamp(not_after),
                reason: self.failure(),
            });
        }
        Ok(snapshot)
    }

    /// A receiver of every published snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.tx.subscribe()
    }

    /// The state as a [`Health`]; also sets the source-state gauges
    /// ([`metrics::SOURCE_STATE`]), so that an expiry, which no event
    /// announces, shows there once anything (a readiness probe) reads the
    /// health.
    pub fn health(&self) -> Health {
        let health = self.compute_health();
        metrics::source_state(&self.metrics_name(), SourceHealthState::of(&health));
        health
    }

    fn compute_health(&self) -> Health {
        let failure = self.failure();
        match self.latest() {
            None => match failure {
                None => Health::Starting,
                Some(reason) => Health::Failing { reason },
            },
            Some(s) if self.clock.now() > s.svid().not_after() => Health::Expired {
                expired_at: Timestamp(s.svid().not_after()),
                reason: failure,
            },
            Some(s) => match failure {
                None => Health::Healthy,
                Some(reason) => Health::Degraded {
                    reason,
                    serving_until: Timestamp(s.svid().not_after()),
                },
            },
        }
    }
}
