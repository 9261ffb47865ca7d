//! A source backed by a SPIFFE Workload API (SPIRE agent, `zt agent`),
//! built on the `spiffe` crate's `X509Source` and `JwtSource`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::x509_source::{MetricsErrorKind, MetricsRecorder};
use spiffe::{JwtSource, X509Source};
use tokio::sync::OnceCell;

use super::{BoxFuture, SourceError, SourceState, SvidSource};
use crate::bundle::{BundleSet, JwtAuthority, TrustBundle};
use crate::jwt::JwtSvid;
use crate::svid::X509Svid;
use crate::time::{SharedClock, system_clock};
use crate::x509::{SvidError, Usage, verify_x509_svid};

/// Configures a [`WorkloadApiSource`].
#[derive(Debug, Clone)]
pub struct WorkloadApiSourceBuilder {
    endpoint: Option<String>,
    clock: SharedClock,
    initial_sync_timeout: Option<Duration>,
    backoff: (Duration, Duration),
}

impl Default for WorkloadApiSourceBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            clock: system_clock(),
            initial_sync_timeout: None,
            backoff: (Duration::from_millis(100), Duration::from_secs(10)),
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
    /// first SVID. Without it, `build` retries until the API answers.
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

    /// Connects and waits for the first X.509-SVID.
    ///
    /// # Errors
    ///
    /// [`SourceError::WorkloadApi`] if the endpoint is invalid, the initial
    /// sync times out, or the first SVID received is unusable.
    pub async fn build(self) -> Result<Arc<WorkloadApiSource>, SourceError> {
        let state = Arc::new(SourceState::new(self.clock));
        let mut x509 = X509Source::builder()
            .reconnect_backoff(self.backoff.0, self.backoff.1)
            .metrics(Arc::new(FailureReporter {
                state: state.clone(),
                last: Mutex::new(None),
            }));
        if let Some(endpoint) = &self.endpoint {
            x509 = x509.endpoint(endpoint);
        }
        if let Some(timeout) = self.initial_sync_timeout {
            x509 = x509.initial_sync_timeout(timeout);
        }
        // Name the endpoint: "initial synchronization timed out" alone does
        // not say which agent was not answering.
        let x509 = x509.build().await.map_err(|e| SourceError::WorkloadApi {
            reason: format!(
                "{e} (endpoint `{}`; is the agent running and the socket reachable?)",
                self.endpoint
                    .as_deref()
                    .unwrap_or("from SPIFFE_ENDPOINT_SOCKET")
            ),
        })?;
        let source = Arc::new(WorkloadApiSource {
            state,
            x509,
            jwt: OnceCell::new(),
            endpoint: self.endpoint,
            backoff: self.backoff,
        });
        source.refresh().await?;
        let weak = Arc::downgrade(&source);
        let mut updates = source.x509.updated();
        tokio::spawn(async move {
            loop {
                let changed = updates.changed().await;
                let Some(source) = weak.upgrade() else { break };
                match changed {
                    Ok(_) => {
                        if let Err(e) = source.refresh().await {
                            source.state.report_failure(e.to_string());
                        }
                    }
                    Err(e) => {
                        source.state.report_failure(e.to_string());
                        break;
                    }
                }
            }
        });
        Ok(source)
    }
}

/// Identity from a SPIFFE Workload API.
///
/// X.509 material streams in through the `spiffe` crate's `X509Source`, which
/// reconnects with backoff when the API goes away; the last good SVID keeps
/// serving until it expires. An SVID that does not chain to its own trust
/// domain's bundle, or has already expired, is refused: the last good one
/// keeps serving and [`SvidSource::health`] reports why. JWT-SVIDs and JWT bundles come from a
/// `JwtSource` opened on first use; JWT authorities are merged into the
/// snapshot's bundle set.
///
/// ```no_run
/// # async fn run() -> Result<(), zt_core::source::SourceError> {
/// use zt_core::source::{SvidSource, WorkloadApiSource};
///
/// // Reads SPIFFE_ENDPOINT_SOCKET, e.g. unix:///run/spire/agent.sock
/// let source = WorkloadApiSource::builder().build().await?;
/// println!("I am {}", source.current()?.svid().id());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WorkloadApiSource {
    state: Arc<SourceState>,
    x509: X509Source,
    jwt: OnceCell<JwtSource>,
    endpoint: Option<String>,
    backoff: (Duration, Duration),
}

impl WorkloadApiSource {
    /// A builder with defaults: endpoint from `SPIFFE_ENDPOINT_SOCKET`,
    /// system clock, no initial sync timeout.
    pub fn builder() -> WorkloadApiSourceBuilder {
        WorkloadApiSourceBuilder::default()
    }

    /// Stops the background streams.
    pub async fn shutdown(&self) {
        self.x509.shutdown().await;
        if let Some(jwt) = self.jwt.get() {
            jwt.shutdown().await;
        }
    }

    async fn jwt_source(&self) -> Result<&JwtSource, SourceError> {
        self.jwt
            .get_or_try_init(|| async {
                let mut builder =
                    JwtSource::builder().reconnect_backoff(self.backoff.0, self.backoff.1);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.endpoint(endpoint);
                }
                builder.build().await.map_err(|e| SourceError::WorkloadApi {
                    reason: e.to_string(),
                })
            })
            .await
    }

    /// Converts the X509Source's current context into a snapshot.
    async fn refresh(&self) -> Result<(), SourceError> {
        let context = self
            .x509
            .x509_context()
            .map_err(|e| SourceError::WorkloadApi {
                reason: e.to_string(),
            })?;
        let svid = context
            .default_svid()
            .ok_or_else(|| SourceError::WorkloadApi {
                reason: "the Workload API returned no X.509-SVID".into(),
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
        if let Some(jwt) = self.jwt.get() {
            merge_jwt_bundles(jwt, &mut bundles)?;
        }
        verify_own_svid(&ours, &bundles, self.state.clock().now())?;
        self.state.publish(ours, bundles);
        Ok(())
    }
}

/// Reports the `X509Source`'s stream failures (agent gone, stream ended,
/// response rejected) in the source's health. The crate reconnects and keeps
/// the last good context without notifying its subscribers of these, so
/// without this a dead agent would leave the source `Healthy`.
///
/// The failure clears with the next snapshot published. An agent that comes
/// back with exactly the material it had before sends no update, so health
/// stays `Degraded` (still serving) until its next rotation.
struct FailureReporter {
    state: Arc<SourceState>,
    /// The last kind reported, so a dead agent logs once, not per retry.
    last: Mutex<Option<MetricsErrorKind>>,
}

impl MetricsRecorder for FailureReporter {
    fn record_update(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn record_reconnect(&self) {}

    fn record_error(&self, kind: MetricsErrorKind) {
        let reason = match kind {
            MetricsErrorKind::ClientCreation | MetricsErrorKind::StreamConnect => {
                "cannot reach the agent; retrying with backoff"
            }
            MetricsErrorKind::StreamError => "the stream failed; reconnecting",
            MetricsErrorKind::StreamEnded => "the agent ended the stream; reconnecting",
            MetricsErrorKind::UpdateRejected
            | MetricsErrorKind::LimitMaxSvids
            | MetricsErrorKind::LimitMaxBundles
            | MetricsErrorKind::LimitMaxBundleDerBytes => {
                "the agent sent an update that was rejected"
            }
            // Initial sync failures surface as `build`'s error; the rest are
            // reported through `refresh` or are not about the upstream.
            _ => return,
        };
        // Before the first SVID, `build` is still waiting and reports its own error.
        if self.state.latest().is_none() {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if *last == Some(kind) {
            return;
        }
        *last = Some(kind);
        self.state
            .report_failure(format!("Workload API: {reason} ({})", kind.as_str()));
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

fn merge_jwt_bundles(jwt: &JwtSource, bundles: &mut BundleSet) -> Result<(), SourceError> {
    let set = jwt.bundle_set().map_err(|e| SourceError::WorkloadApi {
        reason: e.to_string(),
    })?;
    for (td, bundle) in set.iter() {
        let mut tb = bundles
            .get(td)
            .map(|b| (**b).clone())
            .unwrap_or_else(|| TrustBundle::new(td.clone()));
        for authority in bundle.jwt_authorities() {
            tb.add_jwt_authority(JwtAuthority::from_jwk_json(authority.jwk_json())?);
        }
        bundles.insert(tb);
    }
    Ok(())
}

impl SvidSource for WorkloadApiSource {
    fn state(&self) -> &SourceState {
        &self.state
    }

    fn fetch_jwt_svid<'a>(
        &'a self,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvid, SourceError>> {
        Box::pin(async move {
            let first_use = self.jwt.get().is_none();
            let jwt = self.jwt_source().await?;
            if first_use {
                // JWT authorities become part of every later snapshot.
                if let Err(e) = self.refresh().await {
                    self.state.report_failure(e.to_string());
                }
            }
            let svid =
                jwt.fetch_jwt_svid(audience)
                    .await
                    .map_err(|e| SourceError::WorkloadApi {
                        reason: e.to_string(),
                    })?;
            Ok(JwtSvid::from_trusted_token(svid.token())?)
        })
    }
}
