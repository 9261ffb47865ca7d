//! A rotating source backed by a [`FakeCa`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{FakeCa, FakeCaError};
use zt_core::SpiffeId;
use zt_core::bundle::{BundleSet, TrustBundle};
use zt_core::jwt::JwtSvid;
use zt_core::source::{BoxFuture, Snapshot, SourceError, SourceState, SvidSource};

/// A source that issues its SVIDs from a [`FakeCa`] and re-issues them at a
/// fraction of their TTL (half, as SPIRE does, unless configured).
///
/// Rotation is driven either by [`FakeCaSource::rotate_now`] (deterministic
/// tests) or by the task [`FakeCaSource::start_rotation`] spawns.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use zt_dev::{FakeCa, FakeCaSource};
/// use zt_core::source::SvidSource;
///
/// let ca = FakeCa::new("example.org".parse()?)?;
/// let source = FakeCaSource::new(ca, "spiffe://example.org/orders".parse()?, Duration::from_secs(60))?;
/// let first = source.current()?;
/// source.rotate_now()?;
/// assert_eq!(source.current()?.revision(), first.revision() + 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FakeCaSource {
    ca: FakeCa,
    id: SpiffeId,
    ttl: Duration,
    dns_names: Vec<String>,
    rotate_fraction: Mutex<f64>,
    federated: Mutex<BundleSet>,
    state: SourceState,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FakeCaSource {
    /// Issues the first SVID for `id` with `ttl` and serves it.
    ///
    /// # Errors
    ///
    /// The [`FakeCaError`] of the first issuance.
    pub fn new(ca: FakeCa, id: SpiffeId, ttl: Duration) -> Result<Arc<Self>, FakeCaError> {
        Self::with_dns_names(ca, id, ttl, Vec::new())
    }

    /// As [`FakeCaSource::new`], with DNS SANs in every SVID (see
    /// [`FakeCa::issue_x509_svid_with_dns`]).
    ///
    /// # Errors
    ///
    /// The [`FakeCaError`] of the first issuance.
    pub fn with_dns_names(
        ca: FakeCa,
        id: SpiffeId,
        ttl: Duration,
        dns_names: Vec<String>,
    ) -> Result<Arc<Self>, FakeCaError> {
        let state = SourceState::new(ca.clock().clone()).with_metrics_name("fake_ca");
        let source = Arc::new(Self {
            ca,
            id,
            ttl,
            dns_names,
            rotate_fraction: Mutex::new(0.5),
            federated: Mutex::new(BundleSet::new()),
            state,
            task: Mutex::new(None),
        });
        source.rotate_now()?;
        Ok(source)
    }

    /// The CA this source issues from.
    pub fn ca(&self) -> &FakeCa {
        &self.ca
    }

    /// The SPIFFE ID this source issues for.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The TTL of each SVID.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Trusts another trust domain's bundle from the next snapshot on
    /// (published at once).
    ///
    /// # Errors
    ///
    /// As [`FakeCaSource::refresh_bundles`].
    pub fn add_federated_bundle(&self, bundle: TrustBundle) -> Result<(), FakeCaError> {
        self.federated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bundle);
        self.refresh_bundles()
    }

    fn bundles(&self) -> BundleSet {
        let mut set = self
            .federated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        set.insert(self.ca.bundle());
        set
    }

    /// Issues a fresh SVID and publishes it.
    ///
    /// # Errors
    ///
    /// The [`FakeCaError`] of the issuance; the previous snapshot keeps
    /// serving.
    pub fn rotate_now(&self) -> Result<Arc<Snapshot>, FakeCaError> {
        match self
            .ca
            .issue_x509_svid_with_dns(&self.id, self.ttl, &self.dns_names)
        {
            Ok(svid) => Ok(self.state.publish(svid, self.bundles())),
            Err(e) => {
                self.state.report_failure(e.to_string());
                Err(e)
            }
        }
    }

    /// Republishes the current SVID with the CA's current bundle (after
    /// [`FakeCa::rotate`] or a federation change).
    ///
    /// # Errors
    ///
    /// Never fails today; reserved for bundle validation.
    pub fn refresh_bundles(&self) -> Result<(), FakeCaError> {
        if let Some(current) = self.state.latest() {
            self.state
                .publish((**current.svid()).clone(), self.bundles());
        }
        Ok(())
    }

    /// Sets when SVIDs are re-issued, as a fraction of their TTL (0.1 to
    /// 0.9, default 0.5). Call before [`FakeCaSource::start_rotation`].
    pub fn set_rotate_fraction(&self, fraction: f64) {
        *self
            .rotate_fraction
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fraction.clamp(0.1, 0.9);
    }

    /// Starts a task that re-issues the SVID when `fraction` of the current
    /// one's lifetime has passed, measured on the certificate's own
    /// `notBefore`/`notAfter` (which X.509 keeps to whole seconds, so a
    /// nominal 2 s SVID issued at 0.9 s is valid from 0 s to 2 s, and is
    /// replaced at 1 s, not at 1.9 s). Stops when
    /// [`FakeCaSource::stop_rotation`] is called or the source is dropped.
    /// Must be called within a Tokio runtime.
    pub fn start_rotation(self: &Arc<Self>) {
        let fraction = *self
            .rotate_fraction
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let period = self.ttl.mul_f64(fraction);
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                let wait = match weak.upgrade() {
                    Some(source) => source.until_rotation(fraction).unwrap_or(period),
                    None => break,
                };
                tokio::time::sleep(wait).await;
                let Some(source) = weak.upgrade() else { break };
                // A failure is recorded in the source's health; the next
                // attempt comes a period later.
                if source.rotate_now().is_err() {
                    tokio::time::sleep(period).await;
                }
            }
        });
        if let Some(old) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
    }

    /// How long until `fraction` of the current SVID's validity has passed,
    /// on the CA's clock; `None` without a current SVID.
    fn until_rotation(&self, fraction: f64) -> Option<Duration> {
        let snapshot = self.state.latest()?;
        let leaf = zt_core::x509::inspect_leaf(snapshot.svid().leaf()).ok()?;
        let lifetime = leaf
            .not_after()
            .duration_since(leaf.not_before())
            .unwrap_or_default();
        let due = leaf.not_before() + lifetime.mul_f64(fraction);
        Some(
            due.duration_since(self.ca.clock().now())
                .unwrap_or_default(),
        )
    }

    /// Stops the rotation task, if running.
    pub fn stop_rotation(&self) {
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Drop for FakeCaSource {
    fn drop(&mut self) {
        self.stop_rotation();
    }
}

impl SvidSource for FakeCaSource {
    fn state(&self) -> &SourceState {
        &self.state
    }

    fn fetch_jwt_svid<'a>(
        &'a self,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvid, SourceError>> {
        Box::pin(async move {
            let ttl = self
                .ttl
                .min(Duration::from_secs(300))
                .max(Duration::from_secs(1));
            self.ca
                .issue_jwt_svid(&self.id, audience, ttl)
                .map_err(|e| SourceError::Issuer {
                    reason: e.to_string(),
                })
        })
    }
}
