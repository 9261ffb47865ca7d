//! [`Federation`]: the bundles of foreign trust domains, each fetched from
//! its bundle endpoint and refreshed in the background.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zt_core::source::SvidSource;
use zt_core::time::{SharedClock, Timestamp, system_clock};
use zt_core::{BundleSet, TrustBundle, TrustDomain};

use crate::endpoint::{Endpoint, EndpointProfile};
use crate::error::FederationError;
use crate::fetch::{self, FetchLimits};

/// The refresh interval used when a bundle carries no
/// `spiffe_refresh_hint`: five minutes, as SPIRE publishes by default.
pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);

/// How one relationship stands.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RelationshipStatus {
    /// The foreign trust domain.
    pub trust_domain: TrustDomain,
    /// The endpoint URL.
    pub url: String,
    /// The sequence number of the bundle in force, if it had one.
    pub sequence: Option<u64>,
    /// When the bundle in force was last fetched (not set for an initial
    /// bundle that was never refreshed).
    pub last_success: Option<Timestamp>,
    /// The error of the last fetch, if it failed; the bundle in force is
    /// still the last good one.
    pub last_error: Option<FederationError>,
    /// When the bundle in force stops being usable: the latest `notAfter`
    /// of its X.509 authorities. After that it leaves the bundle set.
    pub expires_at: Option<Timestamp>,
    /// Whether a bundle is in force (fetched or initial, and not expired).
    pub in_force: bool,
}

struct Relationship {
    endpoint: Endpoint,
    /// The last good bundle (fetched, or the initial one).
    bundle: Option<Arc<TrustBundle>>,
    last_sequence: Option<u64>,
    last_success: Option<SystemTime>,
    last_error: Option<FederationError>,
    /// Serializes fetches of this relationship.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

struct Inner {
    relationships: Mutex<BTreeMap<TrustDomain, Relationship>>,
    tx: watch::Sender<Arc<BundleSet>>,
    local: Option<Arc<dyn SvidSource>>,
    clock: SharedClock,
    provider: Arc<CryptoProvider>,
    limits: FetchLimits,
    min_refresh: Duration,
    max_refresh: Duration,
    retry: Duration,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The bundles of foreign trust domains, fetched from their bundle
/// endpoints (SPIFFE Federation).
///
/// Each relationship ([`Endpoint`]) is fetched at [`Federation::start`]
/// and then again after the bundle's `spiffe_refresh_hint` (clamped to the
/// configured bounds; [`DEFAULT_REFRESH_HINT`] when absent). A failed
/// fetch is retried sooner. Whatever fails (the endpoint is down, answers
/// garbage, another trust domain's bundle, an older `spiffe_sequence`, or
/// presents the wrong SPIFFE ID), the last good bundle stays in force
/// until its X.509 authorities have all expired; then it leaves the set,
/// so peers of that trust domain are refused (fail closed).
///
/// [`Federation::bundles`] and [`Federation::updates`] give the current
/// [`BundleSet`]; wrap an SVID source in a
/// [`FederatedSource`](crate::FederatedSource) to hand it to the TLS layer.
///
/// Cheap to clone; the background tasks stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
}

impl fmt::Debug for Federation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tds: Vec<String> = self.lock().keys().map(ToString::to_string).collect();
        f.debug_struct("Federation")
            .field("trust_domains", &tds)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Federation`].
#[derive(Debug)]
pub struct FederationBuilder {
    endpoints: Vec<Endpoint>,
    local: Option<Arc<dyn SvidSource>>,
    clock: SharedClock,
    provider: Option<Arc<CryptoProvider>>,
    limits: FetchLimits,
    min_refresh: Duration,
    max_refresh: Duration,
    retry: Duration,
}

impl Default for FederationBuilder {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            local: None,
            clock: system_clock(),
            provider: None,
            limits: FetchLimits {
                timeout: Duration::from_secs(10),
                max_body: 1 << 20,
            },
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(3600),
            retry: Duration::from_secs(5),
        }
    }
}

impl FederationBuilder {
    /// Adds a relationship. A second endpoint for the same trust domain
    /// replaces the first.
    #[must_use]
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// A source whose bundles authenticate `https_spiffe` endpoints of
    /// trust domains that no relationship fetches (e.g. an endpoint that
    /// presents an SVID of the local trust domain).
    #[must_use]
    pub fn local_source(mut self, source: Arc<dyn SvidSource>) -> Self {
        self.local = Some(source);
        self
    }

    /// The clock that decides expiry and checks endpoint SVIDs.
    /// Default: system.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The rustls crypto provider for endpoint connections. Default:
    /// [`zt_tls::default_provider`].
    #[must_use]
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// How long one fetch may take, connection included. Default: 10 s.
    #[must_use]
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The largest answer accepted, in bytes. Default: 1 MiB.
    #[must_use]
    pub fn max_bundle_size(mut self, bytes: usize) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// Bounds on the refresh interval whatever the hint says. Default:
    /// 1 s to 1 h.
    #[must_use]
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max.max(min);
        self
    }

    /// How soon a failed fetch is retried (never later than the refresh
    /// interval). Default: 5 s.
    #[must_use]
    pub fn retry_interval(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// Builds the federation. Nothing is fetched until
    /// [`Federation::start`] or [`Federation::refresh`].
    ///
    /// # Errors
    ///
    /// [`FederationError::InvalidUrl`] for an endpoint URL that is not
    /// `https://`.
    pub fn build(self) -> Result<Federation, FederationError> {
        let mut relationships = BTreeMap::new();
        for endpoint in self.endpoints {
            fetch::check_url(&endpoint.url)?;
            let bundle = endpoint.initial_bundle.clone().map(Arc::new);
            let last_sequence = bundle.as_ref().and_then(|b| b.sequence());
            relationships.insert(
                endpoint.trust_domain.clone(),
                Relationship {
                    endpoint,
                    bundle,
                    last_sequence,
                    last_success: None,
                    last_error: None,
                    fetching: Arc::new(tokio::sync::Mutex::new(())),
                },
            );
        }
        let (tx, _) = watch::channel(Arc::new(BundleSet::new()));
        let inner = Arc::new(Inner {
            relationships: Mutex::new(relationships),
            tx,
            local: self.local,
            clock: self.clock,
            provider: self
                .provider
                .unwrap_or_else(|| Arc::new(zt_tls::default_provider())),
            limits: self.limits,
            min_refresh: self.min_refresh,
            max_refresh: self.max_refresh,
            retry: self.retry,
            tasks: Mutex::new(Vec::new()),
        });
        let federation = Federation { inner };
        federation.publish();
        Ok(federation)
    }
}

impl Federation {
    /// A builder with no relationship and the defaults.
    pub fn builder() -> FederationBuilder {
        FederationBuilder::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TrustDomain, Relationship>> {
        self.inner
            .relationships
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts one background task per relationship: fetch now, then again
    /// at each refresh. Calling it again does nothing.
    ///
    /// # Errors
    ///
    /// [`FederationError::NoRuntime`] outside a Tokio runtime.
    pub fn start(&self) -> Result<(), FederationError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| FederationError::NoRuntime {
                what: "Federation::start",
            })?;
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !tasks.is_empty() {
            return Ok(());
        }
        let tds: Vec<TrustDomain> = self.lock().keys().cloned().collect();
        for td in tds {
            let weak = Arc::downgrade(&self.inner);
            tasks.push(runtime.spawn(refresh_loop(weak, td)));
        }
        Ok(())
    }

    /// Fetches `trust_domain`'s bundle now and, if it passes every check,
    /// puts it in force.
    ///
    /// # Errors
    ///
    /// [`FederationError::UnknownTrustDomain`] without a relationship for
    /// it, otherwise why the fetch or the bundle was refused (the last good
    /// bundle stays in force).
    pub async fn refresh(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<Arc<TrustBundle>, FederationError> {
        refresh_once(&self.inner, trust_domain).await
    }

    /// The bundles in force now: one per relationship that has a last good
    /// bundle whose X.509 authorities have not all expired.
    pub fn bundles(&self) -> Arc<BundleSet> {
        Arc::new(self.in_force())
    }

    fn in_force(&self) -> BundleSet {
        let now = self.inner.clock.now();
        self.lock()
            .values()
            .filter_map(|r| r.bundle.as_ref())
            .filter(|b| !expired(b, now))
            .map(|b| TrustBundle::clone(b))
            .collect()
    }

    /// A receiver that sees the bundle set each time it changes (a bundle
    /// fetched with other authorities, or one expiring).
    pub fn updates(&self) -> watch::Receiver<Arc<BundleSet>> {
        self.inner.tx.subscribe()
    }

    /// How each relationship stands, ordered by trust domain.
    pub fn status(&self) -> Vec<RelationshipStatus> {
        let now = self.inner.clock.now();
        self.lock()
            .values()
            .map(|r| RelationshipStatus {
                trust_domain: r.endpoint.trust_domain.clone(),
                url: r.endpoint.url.clone(),
                sequence: r.bundle.as_ref().and_then(|b| b.sequence()),
                last_success: r.last_success.map(Timestamp),
                last_error: r.last_error.clone(),
                expires_at: r
                    .bundle
                    .as_ref()
                    .and_then(|b| b.x509_authorities_expire_at())
                    .map(Timestamp),
                in_force: r.bundle.as_ref().is_some_and(|b| !expired(b, now)),
            })
            .collect()
    }

    /// Publishes the bundle set if it differs from the last one published.
    fn publish(&self) {
        publish(&self.inner);
    }
}

fn expired(bundle: &TrustBundle, now: SystemTime) -> bool {
    bundle
        .x509_authorities_expire_at()
        .is_some_and(|expiry| now > expiry)
}

fn publish(inner: &Arc<Inner>) {
    let federation = Federation {
        inner: inner.clone(),
    };
    let set = federation.in_force();
    inner.tx.send_if_modified(|current| {
        let same = current.len() == set.len()
            && set.iter().all(|b| {
                current
                    .get(b.trust_domain())
                    .is_some_and(|c| c.same_authorities(b))
            });
        if same {
            false
        } else {
            *current = Arc::new(set);
            true
        }
    });
}

/// The bundles that can authenticate `endpoint`: for `https_spiffe`, the
/// last good bundle of the endpoint ID's trust domain if a relationship
/// fetches it, else the local source's bundle of that trust domain.
fn auth_bundles(inner: &Inner, endpoint: &Endpoint) -> BundleSet {
    let EndpointProfile::HttpsSpiffe { endpoint_id } = &endpoint.profile else {
        return BundleSet::new();
    };
    let td = endpoint_id.trust_domain();
    let federated = inner
        .relationships
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(td)
        .and_then(|r| r.bundle.clone());
    if let Some(bundle) = federated {
        return BundleSet::new().with(TrustBundle::clone(&bundle));
    }
    inner
        .local
        .as_ref()
        .and_then(|source| source.current().ok())
        .and_then(|snapshot| snapshot.bundles().get(td).cloned())
        .map(|bundle| BundleSet::new().with(TrustBundle::clone(&bundle)))
        .unwrap_or_default()
}

async fn refresh_once(
    inner: &Arc<Inner>,
    trust_domain: &TrustDomain,
) -> Result<Arc<TrustBundle>, FederationError> {
    let fetching = {
        let relationships = inner
            .relationships
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(rel) = relationships.get(trust_domain) else {
            return Err(FederationError::UnknownTrustDomain {
                trust_domain: trust_domain.clone(),
            });
        };
        rel.fetching.clone()
    };
    let _serial = fetching.lock().await;
    let (endpoint, last_sequence) = {
        let relationships = inner
            .relationships
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(rel) = relationships.get(trust_domain) else {
            return Err(FederationError::UnknownTrustDomain {
                trust_domain: trust_domain.clone(),
            });
        };
        (rel.endpoint.clone(), rel.last_sequence)
    };
    let auth = auth_bundles(inner, &endpoint);
    let result = fetch::fetch(
        &endpoint,
        &auth,
        last_sequence,
        &inner.clock,
        &inner.provider,
        &inner.limits,
    )
    .await;
    let outcome = {
        let mut relationships = inner
            .relationships
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(rel) = relationships.get_mut(trust_domain) else {
            return Err(FederationError::UnknownTrustDomain {
                trust_domain: trust_domain.clone(),
            });
        };
        match result {
            Ok(bundle) => {
                let bundle = Arc::new(bundle);
                if let Some(seq) = bundle.sequence() {
                    rel.last_sequence = Some(rel.last_sequence.map_or(seq, |last| last.max(seq)));
                }
                rel.bundle = Some(bundle.clone());
                rel.last_success = Some(inner.clock.now());
                rel.last_error = None;
                tracing::debug!(
                    target: "zt::federation",
                    trust_domain = %trust_domain,
                    url = %endpoint.url,
                    sequence = ?bundle.sequence(),
                    x509_authorities = bundle.x509_authorities().len(),
                    "bundle fetched"
                );
                Ok(bundle)
            }
            Err(error) => {
                tracing::warn!(
                    target: "zt::federation",
                    trust_domain = %trust_domain,
                    url = %endpoint.url,
                    %error,
                    "bundle refused; the last good bundle stays in force"
                );
                rel.last_error = Some(error.clone());
                Err(error)
            }
        }
    };
    publish(inner);
    outcome
}

/// How long to wait before the next fetch: the refresh hint, sooner after
/// a failure, and no later than the expiry of the bundle in force (so it
/// leaves the set on time).
fn next_wait(inner: &Inner, trust_domain: &TrustDomain, failed: bool) -> Duration {
    let relationships = inner
        .relationships
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let Some(rel) = relationships.get(trust_domain) else {
        return inner.max_refresh;
    };
    let hint = rel
        .bundle
        .as_ref()
        .and_then(|b| b.refresh_hint())
        .map_or(DEFAULT_REFRESH_HINT, Duration::from_secs)
        .clamp(inner.min_refresh, inner.max_refresh);
    let mut wait = if failed { hint.min(inner.retry) } else { hint };
    if let Some(expiry) = rel
        .bundle
        .as_ref()
        .and_then(|b| b.x509_authorities_expire_at())
        && let Ok(until) = expiry.duration_since(inner.clock.now())
    {
        wait = wait.min(until + Duration::from_millis(10));
    }
    wait
}

async fn refresh_loop(inner: Weak<Inner>, trust_domain: TrustDomain) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let failed = refresh_once(&strong, &trust_domain).await.is_err();
        let wait = next_wait(&strong, &trust_domain, failed);
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}
