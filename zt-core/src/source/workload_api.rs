//! A source backed by a SPIFFE Workload API (SPIRE agent, `zt agent`),
//! built on the `spiffe` crate's `X509Source` and `WorkloadApiClient`.
//!
//! Two streams are followed side by side: X.509-SVIDs with their bundles
//! (`FetchX509SVID`) and JWT bundles (`FetchJWTBundles`). Each keeps its
//! last good material, reports its own failures and reconnects by itself;
//! a snapshot is published whenever either changes.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::{
    JwtBundleSet, SpiffeId, TrustDomain, WorkloadApiClient, WorkloadApiError, X509Source,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::picker::SvidPicker;
use super::{BoxFuture, Plane, SourceError, SourceState, SvidSource};
use crate::bundle::{BundleSet, JwtAuthority, TrustBundle};
use crate::jwt::JwtSvid;
use crate::svid::X509Svid;
use crate::time::{SharedClock, system_clock};
use crate::x509::{SvidError, Usage, verify_x509_svid};

/// Default bound on a single Workload API call such as `FetchJWTSVID`.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The state of one stream of a [`WorkloadApiSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlaneHealth {
    /// The stream is not followed (JWT bundles turned off).
    Off,
    /// The last update applied and the stream is up.
    Healthy,
    /// The last update failed or the stream is down; the last good material
    /// of this stream stays in force.
    Degraded {
        /// Why.
        reason: String,
    },
}

/// The state of each stream of a [`WorkloadApiSource`]; see
/// [`WorkloadApiSource::planes_health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanesHealth {
    /// X.509-SVIDs and X.509 bundles.
    pub x509: PlaneHealth,
    /// JWT bundles.
    pub jwt_bundles: PlaneHealth,
}

/// Configures a [`WorkloadApiSource`].
#[derive(Debug, Clone)]
pub struct WorkloadApiSourceBuilder {
    endpoint: Option<String>,
    clock: SharedClock,
    initial_sync_timeout: Option<Duration>,
    backoff: (Duration, Duration),
    jwt_bundles: bool,
    picker: SvidPicker,
    call_timeout: Duration,
}

impl Default for WorkloadApiSourceBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            clock: system_clock(),
            initial_sync_timeout: None,
            backoff: (Duration::from_millis(100), Duration::from_secs(10)),
            jwt_bundles: true,
            picker: SvidPicker::Default,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

impl WorkloadApiSourceBuilder {
    /// The Workload API endpoint, e.g. `unix:///run/spire/agent.sock`.
    /// Without one, `SPIFFE_ENDPOINT_SOCKET` is read.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The clock used to decide when the served SVID has expired.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Bounds how long [`WorkloadApiSourceBuilder::build`] waits for the
    /// first X.509-SVID and the first JWT bundles. Without it, `build`
    /// retries until the API answers both.
    #[must_use]
    pub fn initial_sync_timeout(mut self, timeout: Duration) -> Self {
        self.initial_sync_timeout = Some(timeout);
        self
    }

    /// The reconnect backoff range after the API goes away.
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// Whether to follow the JWT bundle stream (default: on).
    ///
    /// On, the JWT authorities of every trust domain are in each snapshot
    /// from [`build`](Self::build) on, and key changes (a new signing key,
    /// `spire-server localauthority jwt revoke`) are published as soon as
    /// the agent pushes them, so a service validates JWT-SVIDs on its first
    /// request. It costs one more open stream to the agent. Turn it off for
    /// a workload that never validates JWT-SVIDs: its snapshots then carry
    /// no JWT authorities, and any JWT-SVID it is shown is refused with
    /// [`JwtError::NoJwtBundle`](crate::jwt::JwtError::NoJwtBundle). It can
    /// still fetch JWT-SVIDs of its own.
    #[must_use]
    pub fn jwt_bundles(mut self, follow: bool) -> Self {
        self.jwt_bundles = follow;
        self
    }

    /// Which X.509-SVID to serve when the agent offers several (default
    /// [`SvidPicker::Default`]: the smallest SPIFFE ID, then hint).
    ///
    /// If no SVID matches, [`build`](Self::build) fails with
    /// [`SourceError::NoMatchingSvid`]; after start, an update without a
    /// match is refused and the last good SVID keeps serving.
    #[must_use]
    pub fn picker(mut self, picker: SvidPicker) -> Self {
        self.picker = picker;
        self
    }

    /// Bounds each Workload API call the source makes on request
    /// (`FetchJWTSVID`) and the opening of the JWT bundle stream; default
    /// 10 s. A SPIRE agent whose server is down can take far longer to
    /// answer.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    fn endpoint_name(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| "from SPIFFE_ENDPOINT_SOCKET".into())
    }

    /// Connects and waits for the first X.509-SVID and, unless turned off,
    /// the first JWT bundles.
    ///
    /// # Errors
    ///
    /// [`SourceError::InitialSync`] naming the stream that did not deliver
    /// within the initial sync timeout (or the X.509 stream, with the
    /// reason, if the endpoint is invalid), [`SourceError::NoMatchingSvid`]
    /// if the picker
    /// selects none of the SVIDs offered, or the error of an unusable first
    /// SVID.
    pub async fn build(self) -> Result<Arc<WorkloadApiSource>, SourceError> {
        let (jwt_synced, mut jwt_synced_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: SourceState::new(self.clock.clone()).with_metrics_name("workload_api"),
            planes: Mutex::new(Planes::default()),
            picker: self.picker.clone(),
            jwt_synced,
        });
        let endpoint = self.endpoint_name();
        let jwt_task = self.jwt_bundles.then(|| {
            tokio::spawn(follow_jwt_bundles(
                Arc::clone(&shared),
                self.endpoint.clone(),
                self.backoff,
                self.call_timeout,
            ))
        });
        let x509 = async {
            let mut x509 = X509Source::builder()
                .reconnect_backoff(self.backoff.0, self.backoff.1)
                .metrics(Arc::new(Reporter::new(&shared, Plane::X509Svid)));
            if let Some(endpoint) = &self.endpoint {
                x509 = x509.endpoint(endpoint);
            }
            if let Some(timeout) = self.initial_sync_timeout {
                x509 = x509.initial_sync_timeout(timeout);
            }
            x509.build().await.map_err(|e| e.to_string())
        };
        let jwt = async {
            if jwt_task.is_none() {
                return Ok(());
            }
            let synced = jwt_synced_rx.wait_for(|synced| *synced);
            let timed_out = match self.initial_sync_timeout {
                Some(timeout) => tokio::time::timeout(timeout, synced).await.is_err(),
                None => synced.await.is_err(),
            };
            if timed_out {
                let last = shared.lock().jwt_failure.clone();
                return Err(match last {
                    Some(reason) => {
                        format!("initial synchronization timed out; last error: {reason}")
                    }
                    None => "initial synchronization timed out".to_owned(),
                });
            }
            Ok(())
        };
        let (x509, jwt) = tokio::join!(x509, jwt);
        let failed = match (x509, jwt) {
            (Ok(x509), Ok(())) => Ok(x509),
            (Err(mut reason), jwt) => {
                if let Err(e) = jwt {
                    reason.push_str(&format!("; no JWT bundles arrived either: {e}"));
                }
                Err((Plane::X509Svid, reason))
            }
            (Ok(x509), Err(reason)) => {
                x509.shutdown().await;
                Err((Plane::JwtBundles, reason))
            }
        };
        let x509 = match failed {
            Ok(x509) => x509,
            Err((plane, reason)) => {
                if let Some(task) = jwt_task {
                    task.abort();
                }
                return Err(SourceError::InitialSync {
                    plane,
                    endpoint,
                    reason,
                });
            }
        };
        let source = Arc::new(WorkloadApiSource {
            shared,
            x509,
            jwt_task,
            client: Mutex::new(None),
            endpoint: self.endpoint,
            call_timeout: self.call_timeout,
        });
        if let Err(e) = source.shared.on_x509_update(&source.x509) {
            source.shutdown().await;
            return Err(e);
        }
        spawn_x509_follower(&source);
        Ok(source)
    }
}

fn spawn_x509_follower(source: &Arc<WorkloadApiSource>) {
    let weak = Arc::downgrade(source);
    let mut updates = source.x509.updated();
    tokio::spawn(async move {
        loop {
            let changed = updates.changed().await;
            let Some(source) = weak.upgrade() else { break };
            match changed {
                // Failures are recorded in the plane's health.
                Ok(_) => {
                    let _ = source.shared.on_x509_update(&source.x509);
                }
                Err(e) => {
                    source.shared.plane_failed(Plane::X509Svid, e.to_string());
                    break;
                }
            }
        }
    });
}

/// Follows `FetchJWTBundles` until aborted (opening it bounded by
/// `open_timeout`): applies every update, reports
/// each failure in the JWT plane's health, and reconnects with backoff. The
/// first update of each stream clears the plane's failure even when the
/// bundles are unchanged, so health recovers with the stream.
async fn follow_jwt_bundles(
    shared: Arc<Shared>,
    endpoint: Option<String>,
    (min, max): (Duration, Duration),
    open_timeout: Duration,
) {
    let mut delay = min;
    loop {
        let ended = async {
            // An agent that accepts the connection but never answers must
            // not hold the stream up for good.
            let opened = tokio::time::timeout(open_timeout, async {
                let client = connect(endpoint.as_deref()).await?;
                client.stream_jwt_bundles().await
            })
            .await;
            let mut stream = match opened {
                Ok(stream) => stream?,
                Err(_) => return Err(WorkloadApiError::EmptyResponse),
            };
            while let Some(update) = stream.next().await {
                shared.on_jwt_update(&update?);
                delay = min;
            }
            Err(WorkloadApiError::EmptyResponse)
        }
        .await;
        let reason = match ended {
            Err(WorkloadApiError::EmptyResponse) => {
                "the agent ended the stream or did not answer; reconnecting".to_owned()
            }
            Err(
                e @ (WorkloadApiError::NoIdentityIssued | WorkloadApiError::PermissionDenied(_)),
            ) => {
                format!("the agent withdrew the JWT bundles ({e}); keeping the last ones received")
            }
            Err(e) => format!("the stream failed ({e}); reconnecting"),
            Ok(()) => "the stream ended; reconnecting".to_owned(),
        };
        shared.plane_failed(Plane::JwtBundles, format!("Workload API: {reason}"));
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max);
        crate::metrics::workload_api_reconnect(Plane::JwtBundles);
    }
}

async fn connect(endpoint: Option<&str>) -> Result<WorkloadApiClient, WorkloadApiError> {
    match endpoint {
        Some(endpoint) => WorkloadApiClient::connect_to(endpoint).await,
        None => WorkloadApiClient::connect_env().await,
    }
}

/// Identity from a SPIFFE Workload API.
///
/// X.509 material streams in through the `spiffe` crate's `X509Source`, JWT
/// bundles through a `FetchJWTBundles` stream of zt's own; both reconnect
/// with backoff when the API goes away. The two streams are independent: a failure on one (the agent
/// withdrawing the JWT stream while it resyncs, a JWT key zt cannot load)
/// never holds back an update of the other, each keeps its last good
/// material, and [`WorkloadApiSource::planes_health`] reports each on its
/// own ([`SvidSource::health`] names both). The last good SVID keeps
/// serving until it expires. An SVID that does not chain to its own trust
/// domain's bundle, or has already expired, is refused: the last good one
/// keeps serving and health reports why.
///
/// Which SVID is served when several entries match the workload is set by
/// [`SvidPicker`]; by default the one with the smallest SPIFFE ID. JWT-SVIDs
/// are fetched for the same SPIFFE ID, each call bounded by
/// [`WorkloadApiSourceBuilder::call_timeout`].
///
/// ```no_run
/// # async fn run() -> Result<(), zt_core::source::SourceError> {
/// use std::time::Duration;
/// use zt_core::source::{SvidPicker, SvidSource, WorkloadApiSource};
///
/// // Reads SPIFFE_ENDPOINT_SOCKET, e.g. unix:///run/spire/agent.sock
/// let source = WorkloadApiSource::builder()
///     .initial_sync_timeout(Duration::from_secs(10))
///     .picker(SvidPicker::Hint("internal".into()))
///     .build()
///     .await?;
/// println!("I am {}", source.current()?.svid().id());
/// # Ok(()) }
/// ```
pub struct WorkloadApiSource {
    shared: Arc<Shared>,
    x509: X509Source,
    /// The task following JWT bundles, if they are followed.
    jwt_task: Option<JoinHandle<()>>,
    /// The client `FetchJWTSVID` goes through; dropped after a failed call
    /// so the next one reconnects.
    client: Mutex<Option<WorkloadApiClient>>,
    endpoint: Option<String>,
    call_timeout: Duration,
}

impl Drop for WorkloadApiSource {
    fn drop(&mut self) {
        if let Some(task) = &self.jwt_task {
            task.abort();
        }
    }
}

impl fmt::Debug for WorkloadApiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiSource")
            .field("endpoint", &self.endpoint)
            .field("picker", &self.shared.picker)
            .field("jwt_bundles", &self.jwt_task.is_some())
            .field("call_timeout", &self.call_timeout)
            .field("state", &self.shared.state)
            .finish_non_exhaustive()
    }
}

impl WorkloadApiSource {
    /// A builder with defaults: endpoint from `SPIFFE_ENDPOINT_SOCKET`,
    /// system clock, no initial sync timeout, JWT bundles followed, the
    /// default SVID choice, 10 s per call.
    pub fn builder() -> WorkloadApiSourceBuilder {
        WorkloadApiSourceBuilder::default()
    }

    /// The state of each stream the source follows.
    pub fn planes_health(&self) -> PlanesHealth {
        let planes = self.shared.lock();
        let plane = |failure: &Option<String>| match failure {
            Some(reason) => PlaneHealth::Degraded {
                reason: reason.clone(),
            },
            None => PlaneHealth::Healthy,
        };
        PlanesHealth {
            x509: plane(&planes.x509_failure),
            jwt_bundles: if self.jwt_task.is_some() {
                plane(&planes.jwt_failure)
            } else {
                PlaneHealth::Off
            },
        }
    }

    /// Stops the background streams.
    pub async fn shutdown(&self) {
        self.x509.shutdown().await;
        if let Some(task) = &self.jwt_task {
            task.abort();
        }
    }

    async fn fetch_jwt(&self, audience: &[String], id: &SpiffeId) -> Result<String, SourceError> {
        let cached = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let client = match cached {
            Some(client) => client,
            None => {
                let client = connect(self.endpoint.as_deref()).await.map_err(api_error)?;
                *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
                client
            }
        };
        match client.fetch_jwt_svid(audience, Some(id)).await {
            Ok(svid) => Ok(svid.token().to_owned()),
            Err(e) => {
                *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
                Err(api_error(e))
            }
        }
    }
}

fn api_error(e: WorkloadApiError) -> SourceError {
    SourceError::WorkloadApi {
        reason: e.to_string(),
    }
}

/// The last good material and the failure of each stream.
#[derive(Default)]
struct Planes {
    /// The picked SVID and the X.509 bundles.
    x509: Option<(X509Svid, BundleSet)>,
    /// JWT authorities by trust domain.
    jwt: Option<Vec<(TrustDomain, Vec<JwtAuthority>)>>,
    /// The JWT bundles as last received, to skip unchanged updates.
    jwt_received: Option<JwtBundleSet>,
    x509_failure: Option<String>,
    jwt_failure: Option<String>,
}

impl Planes {
    fn failure_mut(&mut self, plane: Plane) -> &mut Option<String> {
        match plane {
            Plane::JwtBundles => &mut self.jwt_failure,
            _ => &mut self.x509_failure,
        }
    }

    /// One reason naming each failing stream, for [`SvidSource::health`]:
    /// the X.509 stream's reason as is, the JWT stream's prefixed.
    fn combined_failure(&self) -> Option<String> {
        let parts: Vec<String> = [
            self.x509_failure.clone(),
            self.jwt_failure
                .as_ref()
                .map(|r| format!("JWT bundle stream: {r}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// What the source and its stream reporters share.
struct Shared {
    state: SourceState,
    planes: Mutex<Planes>,
    picker: SvidPicker,
    /// Becomes `true` with the first JWT bundles received.
    jwt_synced: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Planes> {
        self.planes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failure of `plane`; the last good material stays.
    fn plane_failed(&self, plane: Plane, reason: String) {
        let mut planes = self.lock();
        let slot = planes.failure_mut(plane);
        if slot.as_deref() != Some(reason.as_str()) {
            tracing::warn!(target: "zt::source", %plane, %reason, "Workload API stream failed; keeping its last good material");
        }
        *slot = Some(reason);
        self.state.set_failure(planes.combined_failure());
    }

    /// Publishes the merged material of both planes and sets health.
    fn publish(&self, planes: &Planes) {
        if let Some((svid, x509_bundles)) = &planes.x509 {
            let mut bundles = x509_bundles.clone();
            for (td, authorities) in planes.jwt.iter().flatten() {
                let mut bundle = bundles
                    .get(td)
                    .map(|b| (**b).clone())
                    .unwrap_or_else(|| TrustBundle::new(td.clone()));
                for authority in authorities {
                    bundle.add_jwt_authority(authority.clone());
                }
                bundles.insert(bundle);
            }
            self.state.publish(svid.clone(), bundles);
        }
        self.state.set_failure(planes.combined_failure());
    }

    /// Takes the `X509Source`'s current context: picks the SVID, checks
    /// it, and publishes it with the current JWT authorities.
    fn on_x509_update(&self, x509: &X509Source) -> Result<(), SourceError> {
        match self.convert_x509(x509) {
            Ok(material) => {
                let mut planes = self.lock();
                planes.x509 = Some(material);
                planes.x509_failure = None;
                self.publish(&planes);
                Ok(())
            }
            Err(e) => {
                self.plane_failed(Plane::X509Svid, e.to_string());
                Err(e)
            }
        }
    }

    fn convert_x509(&self, x509: &X509Source) -> Result<(X509Svid, BundleSet), SourceError> {
        let context = x509.x509_context().map_err(|e| SourceError::WorkloadApi {
            reason: e.to_string(),
        })?;
        let svids = context.svids();
        let svid = self
            .picker
            .pick(
                svids
                    .iter()
                    .map(|s| (s.spiffe_id(), s.hint().unwrap_or_default())),
            )
            .and_then(|i| svids.get(i))
            .ok_or_else(|| SourceError::NoMatchingSvid {
                wanted: self.picker.to_string(),
                offered: describe_offer(svids.iter().map(|s| (s.spiffe_id(), s.hint()))),
            })?;
        let chain: Vec<CertificateDer<'static>> = svid
            .cert_chain()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            svid.private_key().as_bytes().to_vec(),
        ));
        let mut ours = X509Svid::from_der(chain, key)?;
        if let Some(hint) = svid.hint() {
            ours = ours.with_hint(hint);
        }
        let mut bundles = BundleSet::new();
        for (td, bundle) in context.bundle_set().iter() {
            let mut tb = TrustBundle::new(td.clone());
            for authority in bundle.authorities() {
                tb.add_x509_authority(CertificateDer::from(authority.as_bytes().to_vec()))?;
            }
            bundles.insert(tb);
        }
        verify_own_svid(&ours, &bundles, self.state.clock().now())?;
        Ok((ours, bundles))
    }

    /// Takes a JWT bundle update and publishes it with the current X.509
    /// material. A key that cannot be loaded is left out (so tokens it signs
    /// are refused) and reported; the rest apply.
    fn on_jwt_update(&self, set: &JwtBundleSet) {
        {
            // A reconnected stream first re-sends what it sent before.
            let mut planes = self.lock();
            if planes.jwt_received.as_ref() == Some(set) {
                let skipped_keys = planes
                    .jwt_failure
                    .as_ref()
                    .is_some_and(|r| r.contains(SKIPPED_KEY));
                if !skipped_keys {
                    planes.jwt_failure = None;
                }
                self.state.set_failure(planes.combined_failure());
                self.jwt_synced.send_replace(true);
                return;
            }
        }
        let mut skipped = Vec::new();
        let mut converted = Vec::new();
        for (td, bundle) in set.iter() {
            let mut authorities = Vec::new();
            for authority in bundle.jwt_authorities() {
                match JwtAuthority::from_jwk_json(authority.jwk_json()) {
                    Ok(a) => authorities.push(a),
                    Err(e) => skipped.push(format!(
                        "key `{}` of `{td}` {SKIPPED_KEY} ({e}); tokens it signs are refused",
                        authority.key_id()
                    )),
                }
            }
            converted.push((td.clone(), authorities));
        }
        let mut planes = self.lock();
        planes.jwt = Some(converted);
        planes.jwt_received = Some(set.clone());
        planes.jwt_failure = if skipped.is_empty() {
            None
        } else {
            let reason = skipped.join("; ");
            tracing::warn!(target: "zt::source", %reason, "JWT bundle update applied without some keys");
            Some(reason)
        };
        self.publish(&planes);
        self.jwt_synced.send_replace(true);
    }
}

/// Marks a JWT plane failure that an unchanged update does not clear.
const SKIPPED_KEY: &str = "cannot be loaded";

fn describe_offer<'a>(svids: impl Iterator<Item = (&'a SpiffeId, Option<&'a str>)>) -> String {
    let items: Vec<String> = svids
        .map(|(id, hint)| match hint {
            Some(h) if !h.is_empty() => format!("`{id}` (hint `{h}`)"),
            _ => format!("`{id}`"),
        })
        .collect();
    if items.is_empty() {
        "no SVID".into()
    } else {
        items.join(", ")
    }
}

/// Reports the X.509 stream's failures (agent gone, stream ended, update
/// rejected) in its plane's health. The `spiffe` crate reconnects and keeps the last
/// good material without notifying subscribers of these, so without this a
/// dead agent would leave the source `Healthy`.
///
/// The failure clears with the plane's next applied update. An agent that
/// comes back with exactly the material it had before sends no update, so
/// the plane stays `Degraded` (still serving) until its next change.
struct Reporter {
    shared: Arc<Shared>,
    plane: Plane,
}

impl Reporter {
    fn new(shared: &Arc<Shared>, plane: Plane) -> Self {
        Self {
            shared: Arc::clone(shared),
            plane,
        }
    }

    fn report(&self, reason: &str, kind: &str) {
        // Before the first SVID, `build` is still waiting and reports its own error.
        if self.shared.state.latest().is_none() {
            return;
        }
        self.shared
            .plane_failed(self.plane, format!("Workload API: {reason} ({kind})"));
    }
}

impl spiffe::x509_source::MetricsRecorder for Reporter {
    fn record_update(&self) {}

    fn record_reconnect(&self) {
        crate::metrics::workload_api_reconnect(self.plane);
    }

    fn record_error(&self, kind: spiffe::x509_source::MetricsErrorKind) {
        use spiffe::x509_source::MetricsErrorKind as K;
        let reason = match kind {
            K::ClientCreation | K::StreamConnect => "cannot reach the agent; retrying with backoff",
            K::StreamError => "the stream failed; reconnecting",
            K::StreamEnded => "the agent ended the stream; reconnecting",
            K::UpdateRejected
            | K::LimitMaxSvids
            | K::LimitMaxBundles
            | K::LimitMaxBundleDerBytes => "the agent sent an update that was rejected",
            // Initial sync failures surface as `build`'s error; the rest are
            // not about the upstream.
            _ => return,
        };
        self.report(reason, kind.as_str());
    }
}

/// Refuses an SVID that peers would refuse: one that does not chain to an
/// authority of its own trust domain in `bundles` (an agent pushing an SVID
/// for another trust domain, or one signed outside the bundle), or that has
/// already expired. The caller keeps the last good snapshot instead.
///
/// An SVID not yet valid by our clock is checked as of its start, so a
/// workload clock running behind the agent's does not refuse fresh SVIDs.
fn verify_own_svid(svid: &X509Svid, bundles: &BundleSet, now: SystemTime) -> Result<(), SvidError> {
    let at = now.max(svid.not_before());
    // SPIRE SVIDs carry both TLS usages; accept one that carries either.
    match verify_x509_svid(svid.chain(), bundles, at, Usage::ClientAuth) {
        Err(SvidError::WrongExtendedKeyUsage { .. }) => {
            verify_x509_svid(svid.chain(), bundles, at, Usage::ServerAuth).map(drop)
        }
        other => other.map(drop),
    }
}

impl SvidSource for WorkloadApiSource {
    fn state(&self) -> &SourceState {
        &self.shared.state
    }

    /// Fetches a JWT-SVID for the SPIFFE ID of the served X.509-SVID,
    /// bounded by the call timeout.
    fn fetch_jwt_svid<'a>(
        &'a self,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvid, SourceError>> {
        Box::pin(async move {
            let snapshot = self
                .shared
                .state
                .latest()
                .ok_or(SourceError::NotReady { reason: None })?;
            let id = snapshot.svid().id();
            let token = tokio::time::timeout(self.call_timeout, self.fetch_jwt(audience, id))
                .await
                .map_err(|_| SourceError::Timeout {
                    call: "FetchJWTSVID",
                    after: self.call_timeout,
                })??;
            let svid = JwtSvid::from_trusted_token(token)?;
            if svid.subject() != id {
                return Err(SourceError::WorkloadApi {
                    reason: format!(
                        "asked for a JWT-SVID for `{id}`, the agent returned one for `{}`",
                        svid.subject()
                    ),
                });
            }
            Ok(svid)
        })
    }
}
