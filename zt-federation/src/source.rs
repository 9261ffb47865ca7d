//! [`FederatedSource`]: an SVID source whose bundle set also holds the
//! bundles a [`Federation`] fetched.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use zt_core::BundleSet;
use zt_core::jwt::JwtSvid;
use zt_core::source::{BoxFuture, Health, Snapshot, SourceError, SourceState, SvidSource};

use crate::error::FederationError;
use crate::federation::Federation;

/// Wraps an SVID source and adds the bundles of a [`Federation`] to each
/// of its snapshots, so TLS configs built on it (`zt_tls::TlsOptions`,
/// `zt-client`, `zt-server`) accept peers of the federated trust domains,
/// and JWT validation finds their JWT authorities.
///
/// The wrapped source's SVID and its own trust domain's bundle are kept
/// as they are; for every other trust domain, a bundle in force in the
/// federation replaces the one the wrapped source carries. A new snapshot
/// is published whenever either side changes. Health is the wrapped
/// source's.
pub struct FederatedSource {
    inner: Arc<dyn SvidSource>,
    federation: Federation,
    state: SourceState,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for FederatedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederatedSource")
            .field("inner", &self.inner)
            .field("federation", &self.federation)
            .finish_non_exhaustive()
    }
}

impl Drop for FederatedSource {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl FederatedSource {
    /// Wraps `inner` with `federation`'s bundles and starts following both.
    ///
    /// # Errors
    ///
    /// [`FederationError::NoRuntime`] outside a Tokio runtime.
    pub fn new(
        inner: Arc<dyn SvidSource>,
        federation: Federation,
    ) -> Result<Arc<Self>, FederationError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| FederationError::NoRuntime {
                what: "FederatedSource::new",
            })?;
        let source = Arc::new(Self {
            state: SourceState::new(inner.state().clock().clone()).with_metrics_name("federated"),
            inner,
            federation,
            task: Mutex::new(None),
        });
        // Subscribe before the first merge, so no change falls in between.
        let own = source.inner.updates();
        let federated = source.federation.updates();
        source.merge();
        let task = runtime.spawn(follow(Arc::downgrade(&source), own, federated));
        *source.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(source)
    }

    /// The federation whose bundles are added.
    pub fn federation(&self) -> &Federation {
        &self.federation
    }

    /// Publishes the wrapped source's latest snapshot with the federated
    /// bundles added.
    fn merge(&self) {
        let Some(snapshot) = self.inner.state().latest() else {
            return;
        };
        let local = snapshot.svid().id().trust_domain().clone();
        let mut bundles = BundleSet::clone(snapshot.bundles());
        for bundle in self.federation.bundles().iter() {
            if bundle.trust_domain() != &local {
                bundles.insert(zt_core::TrustBundle::clone(bundle));
            }
        }
        self.state.publish_shared(snapshot.svid().clone(), bundles);
    }
}

async fn follow(
    source: Weak<FederatedSource>,
    mut own: watch::Receiver<Option<Arc<Snapshot>>>,
    mut federated: watch::Receiver<Arc<BundleSet>>,
) {
    loop {
        let changed = tokio::select! {
            r = own.changed() => r.is_ok(),
            r = federated.changed() => r.is_ok(),
        };
        let Some(source) = source.upgrade() else {
            return;
        };
        if !changed {
            return;
        }
        source.merge();
    }
}

impl SvidSource for FederatedSource {
    fn state(&self) -> &SourceState {
        &self.state
    }

    fn health(&self) -> Health {
        self.inner.health()
    }

    fn current(&self) -> Result<Arc<Snapshot>, SourceError> {
        // Fail as the wrapped source fails (not ready, expired).
        self.inner.current()?;
        self.state.current()
    }

    fn fetch_jwt_svid<'a>(
        &'a self,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvid, SourceError>> {
        self.inner.fetch_jwt_svid(audience)
    }
}
