//! The SPIFFE Workload API, served on a Unix socket from any [`SvidSource`].
//!
//! The server speaks the real protocol (gRPC service `SpiffeWorkloadAPI`),
//! so unmodified Workload API clients — the `spiffe` crate's `X509Source`
//! and `JwtSource`, go-spiffe, py-spiffe — can fetch identities from it. It
//! serves the source's identity, and any more added with
//! [`WorkloadApiServer::with_identity`] (as SPIRE does when several entries
//! match a workload); unlike a SPIRE agent it does not attest callers, so
//! anyone who can open the socket gets these identities. Restrict the
//! socket's directory accordingly.
//!
//! Like a SPIRE agent, it sends a stream update only when what that stream
//! carries changed: a JWT key rotation reaches `FetchJWTBundles` alone. For
//! tests, [`AgentFaults`] makes it behave as a SPIRE agent in trouble does:
//! withdraw the JWT bundle stream, answer slowly.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::net::UnixListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use super::FakeCaError;
use crate::workload_api::pb;
use crate::workload_api::pb::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use zt_core::bundle::BundleSet;
use zt_core::jwt::validate_jwt_svid;
use zt_core::source::{Snapshot, SourceError, SvidSource};
use zt_core::time::{SharedClock, system_clock};

/// The metadata key every Workload API call must carry with value `true`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// Serves the SPIFFE Workload API from an [`SvidSource`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use zt_dev::{FakeCa, FakeCaSource, WorkloadApiServer};
///
/// let ca = FakeCa::new("example.org".parse()?)?;
/// let source = FakeCaSource::new(ca, "spiffe://example.org/orders".parse()?, Duration::from_secs(60))?;
/// source.start_rotation();
/// let server = WorkloadApiServer::new(source).serve_unix("/tmp/zt-agent.sock").await?;
/// println!("SPIFFE_ENDPOINT_SOCKET={}", server.endpoint());
/// # server.shutdown().await; Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkloadApiServer {
    source: Arc<dyn SvidSource>,
    /// Every identity served, the source's first, with its hint.
    identities: Vec<(Arc<dyn SvidSource>, String)>,
    clock: SharedClock,
    faults: AgentFaults,
    /// The DER CRLs every X.509 response carries.
    crls: watch::Sender<Crls>,
}

/// The DER CRLs served.
type Crls = Arc<Vec<Vec<u8>>>;

impl fmt::Debug for WorkloadApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiServer")
            .field("source", &self.source)
            .field("identities", &self.identities.len())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

/// Switches that make a [`WorkloadApiServer`] misbehave as a SPIRE agent in
/// trouble does, for tests. Cheap to clone; clones control the same server.
#[derive(Clone)]
pub struct AgentFaults {
    jwt_withdrawn: watch::Sender<bool>,
    delay: Arc<Mutex<Duration>>,
}

impl fmt::Debug for AgentFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentFaults")
            .field("jwt_withdrawn", &*self.jwt_withdrawn.borrow())
            .field("delay", &self.delay())
            .finish()
    }
}

impl Default for AgentFaults {
    fn default() -> Self {
        Self {
            jwt_withdrawn: watch::Sender::new(false),
            delay: Arc::default(),
        }
    }
}

impl AgentFaults {
    /// With `true`, open `FetchJWTBundles` streams end with
    /// `PERMISSION_DENIED` and new ones are refused, as a SPIRE agent does
    /// while it resyncs after a restart or when an entry is deleted; the
    /// X.509 streams are untouched. `false` serves JWT bundles again.
    pub fn withdraw_jwt_bundles(&self, withdrawn: bool) {
        self.jwt_withdrawn.send_replace(withdrawn);
    }

    /// Delays every answer to `FetchJWTSVID` and `ValidateJWTSVID` by
    /// `delay`, as a SPIRE agent does when it must ask a server that is down
    /// to sign; streams keep serving what the agent holds.
    /// `Duration::ZERO` (the default) answers at once.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner) = delay;
    }

    fn delay(&self) -> Duration {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn wait(&self) {
        let delay = self.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn jwt_withdrawn(&self) -> bool {
        *self.jwt_withdrawn.borrow()
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl WorkloadApiServer {
    /// A server handing out `source`'s identity.
    pub fn new<S: SvidSource>(source: Arc<S>) -> Self {
        let source: Arc<dyn SvidSource> = source;
        Self {
            identities: vec![(Arc::clone(&source), String::new())],
            source,
            clock: system_clock(),
            faults: AgentFaults::default(),
            crls: watch::Sender::new(Arc::default()),
        }
    }

    /// Serves `crls` (DER X.509 CRLs, such as [`FakeCa::crl`]) in the `crl`
    /// field of every `FetchX509SVID` and `FetchX509Bundles` response from
    /// now on, pushing an update to open streams. Clones of this server, and
    /// the handle [`serve_unix`](Self::serve_unix) returns, publish to the
    /// same streams. An empty list serves none.
    ///
    /// [`FakeCa::crl`]: crate::FakeCa::crl
    pub fn publish_crls(&self, crls: Vec<Vec<u8>>) {
        self.crls.send_replace(Arc::new(crls));
    }

    /// Sets the hint of the first identity (the one from [`new`](Self::new)).
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        if let Some(first) = self.identities.first_mut() {
            first.1 = hint.into();
        }
        self
    }

    /// Serves one more identity, from `source`, with `hint`, after those
    /// already added: `FetchX509SVID` lists every identity in that order and
    /// `FetchJWTSVID` mints for the one whose SPIFFE ID is asked for (for
    /// all when none is). Bundles come from the first identity's source.
    #[must_use]
    pub fn with_identity<S: SvidSource>(mut self, source: Arc<S>, hint: impl Into<String>) -> Self {
        self.identities.push((source, hint.into()));
        self
    }

    /// The switches that make this server misbehave; see [`AgentFaults`].
    /// Take them before [`serve_unix`](Self::serve_unix).
    pub fn faults(&self) -> AgentFaults {
        self.faults.clone()
    }

    /// The clock `ValidateJWTSVID` checks expiry with.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The gRPC service, for serving on a transport of your own. It rejects
    /// calls without the `workload.spiffe.io: true` metadata.
    pub fn into_service(self) -> SpiffeWorkloadApiServer<Self> {
        SpiffeWorkloadApiServer::new(self)
    }

    /// Binds a Unix socket at `path` and serves on it in a background task.
    ///
    /// A relative `path` is resolved against the current directory. A stale
    /// socket file at `path` is replaced; any other file there is an error.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Io`] if the socket cannot be bound.
    pub async fn serve_unix(
        self,
        path: impl AsRef<Path>,
    ) -> Result<WorkloadApiServerHandle, FakeCaError> {
        let path = std::path::absolute(path.as_ref()).map_err(|e| FakeCaError::Io {
            path: path.as_ref().display().to_string(),
            reason: e.to_string(),
        })?;
        let io_err = |e: std::io::Error| FakeCaError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt as _;
            if meta.file_type().is_socket() {
                std::fs::remove_file(&path).map_err(io_err)?;
            } else {
                return Err(FakeCaError::Io {
                    path: path.display().to_string(),
                    reason: "a file that is not a socket is in the way".into(),
                });
            }
        }
        let listener = UnixListener::bind(&path).map_err(io_err)?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let relays = Arc::new(Mutex::new(JoinSet::new()));
        let crls = self.crls.clone();
        let service = self.into_service();
        let relays_in = relays.clone();
        let task = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(relayed_connections(listener, relays_in), async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(target: "zt::agent", error = %e, "Workload API server failed");
            }
        });
        tracing::info!(target: "zt::agent", socket = %path.display(), "serving the SPIFFE Workload API");
        Ok(WorkloadApiServerHandle {
            crls,
            path,
            stop: Some(stop_tx),
            task: Some(task),
            relays,
        })
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>, Status> {
        self.source.current().map_err(no_identity)
    }

    /// The current snapshot of every identity, the first one's first.
    fn views(&self) -> Result<Vec<View>, Status> {
        self.identities
            .iter()
            .map(|(source, hint)| {
                Ok(View {
                    snapshot: source.current().map_err(no_identity)?,
                    hint: hint.clone(),
                })
            })
            .collect()
    }
}

/// One identity as served: its snapshot and hint.
struct View {
    snapshot: Arc<Snapshot>,
    hint: String,
}

/// Accepted Unix connections, each handed to the server through an
/// in-memory pipe behind the `:authority` relay (see `super::authority`).
/// The relays run in `relays`, so that shutting the server down can close
/// every client connection.
fn relayed_connections(
    listener: UnixListener,
    relays: Arc<Mutex<JoinSet<()>>>,
) -> impl Stream<Item = std::io::Result<tokio::io::DuplexStream>> {
    futures::stream::unfold(listener, move |listener| {
        let relays = relays.clone();
        async move {
            let item = listener.accept().await.map(|(unix, _)| {
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                let mut relays = relays.lock().unwrap_or_else(PoisonError::into_inner);
                // Reap finished relays so the set does not grow.
                while relays.try_join_next().is_some() {}
                relays.spawn(relay(unix, ours));
                theirs
            });
            Some((item, listener))
        }
    })
}

async fn relay(unix: tokio::net::UnixStream, server: tokio::io::DuplexStream) {
    use tokio::io::AsyncWriteExt as _;
    let (client_read, mut client_write) = unix.into_split();
    let (mut server_read, server_write) = tokio::io::split(server);
    let up = super::authority::relay_client_frames(client_read, server_write);
    let down = async {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let (up, down) = tokio::join!(up, down);
    if let Err(e) = up.and(down) {
        tracing::debug!(target: "zt::agent", error = %e, "Workload API connection ended with an error");
    }
}

/// Maps a source failure to the status SPIRE uses when it has no identity
/// for the caller; clients retry on it.
fn no_identity(e: SourceError) -> Status {
    Status::permission_denied(format!("no identity issued: {e}"))
}

fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get(SECURITY_HEADER) {
        Some(v) if v.to_str().is_ok_and(|v| v == "true") => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

fn td_key(td: &zt_core::TrustDomain) -> String {
    format!("spiffe://{td}")
}

fn x509_response(views: &[View], crls: &[Vec<u8>]) -> pb::X509svidResponse {
    let Some(first) = views.first() else {
        return pb::X509svidResponse::default();
    };
    let own = first.snapshot.svid().id().trust_domain();
    let bundles: &BundleSet = first.snapshot.bundles();
    let bundle_of = |td: &zt_core::TrustDomain| {
        bundles
            .get(td)
            .map(|b| b.to_der_concat())
            .unwrap_or_default()
    };
    let federated_bundles = bundles
        .iter()
        .filter(|b| b.trust_domain() != own)
        .map(|b| (td_key(b.trust_domain()), b.to_der_concat()))
        .collect();
    pb::X509svidResponse {
        svids: views
            .iter()
            .map(|view| {
                let svid = view.snapshot.svid();
                let hint = if view.hint.is_empty() {
                    svid.hint().unwrap_or_default().to_owned()
                } else {
                    view.hint.clone()
                };
                pb::X509svid {
                    spiffe_id: svid.id().to_string(),
                    x509_svid: svid.chain_der_concat(),
                    x509_svid_key: svid.private_key().secret_der().to_vec(),
                    bundle: bundle_of(svid.id().trust_domain()),
                    hint,
                }
            })
            .collect(),
        crl: crls.to_vec(),
        federated_bundles,
    }
}

fn x509_bundles(views: &[View], crls: &[Vec<u8>]) -> pb::X509BundlesResponse {
    pb::X509BundlesResponse {
        crl: crls.to_vec(),
        bundles: views
            .first()
            .map(|v| {
                v.snapshot
                    .bundles()
                    .iter()
                    .map(|b| (td_key(b.trust_domain()), b.to_der_concat()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn jwt_bundles(views: &[View], _crls: &[Vec<u8>]) -> pb::JwtBundlesResponse {
    pb::JwtBundlesResponse {
        bundles: views
            .first()
            .map(|v| {
                v.snapshot
                    .bundles()
                    .iter()
                    .map(|b| (td_key(b.trust_domain()), b.jwt_jwks_json().into_bytes()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// What a response stream follows.
struct Follow<T> {
    server: WorkloadApiServer,
    changes: futures::stream::SelectAll<futures::stream::BoxStream<'static, ()>>,
    build: fn(&[View], &[Vec<u8>]) -> T,
    /// Ends the stream with `PERMISSION_DENIED` when it turns `true`.
    withdraw: Option<watch::Receiver<bool>>,
    last: Option<T>,
    done: bool,
}

/// A stream of `build(views)` for the current identities and every later
/// change; an update identical to the last one sent is not sent again. Ends
/// with an error if an identity is lost or, for `withdrawable` streams, when
/// [`AgentFaults::withdraw_jwt_bundles`] is switched on.
fn snapshot_stream<T: Clone + PartialEq + Send + 'static>(
    server: &WorkloadApiServer,
    build: fn(&[View], &[Vec<u8>]) -> T,
    withdrawable: bool,
) -> ResponseStream<T> {
    let changes = futures::stream::select_all(
        server
            .identities
            .iter()
            .map(|(source, _)| WatchStream::new(source.updates()).map(|_| ()).boxed())
            .chain(std::iter::once(
                WatchStream::from_changes(server.crls.subscribe())
                    .map(|_| ())
                    .boxed(),
            )),
    );
    let follow = Follow {
        server: server.clone(),
        changes,
        build,
        withdraw: withdrawable.then(|| server.faults.jwt_withdrawn.subscribe()),
        last: None,
        done: false,
    };
    Box::pin(futures::stream::unfold(follow, |mut follow| async move {
        loop {
            if follow.done {
                return None;
            }
            // `None`: withdrawn; `Some(false)`: every source has gone.
            let changed = match &mut follow.withdraw {
                Some(withdraw) => tokio::select! {
                    changed = follow.changes.next() => Some(changed.is_some()),
                    _ = withdraw.wait_for(|withdrawn| *withdrawn) => None,
                },
                None => Some(follow.changes.next().await.is_some()),
            };
            match changed {
                None => {
                    follow.done = true;
                    return Some((Err(jwt_withdrawn()), follow));
                }
                Some(false) => return None,
                Some(true) => {}
            }
            // Serve only what the sources themselves would serve now.
            match follow.server.views() {
                Ok(views) => {
                    let crls = Arc::clone(&follow.server.crls.borrow());
                    let item = (follow.build)(&views, &crls);
                    if follow.last.as_ref() == Some(&item) {
                        continue;
                    }
                    follow.last = Some(item.clone());
                    return Some((Ok(item), follow));
                }
                Err(status) => {
                    follow.done = true;
                    return Some((Err(status), follow));
                }
            }
        }
    }))
}

fn jwt_withdrawn() -> Status {
    Status::permission_denied("no identity issued: JWT bundles withdrawn")
}

fn json_to_prost(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_prost).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(json_object_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn json_object_to_struct(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_prost(v)))
            .collect::<std::collections::BTreeMap<_, _>>(),
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApiServer {
    type FetchX509SVIDStream = ResponseStream<pb::X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<pb::X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<pb::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<pb::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        check_header(&request)?;
        self.views()?;
        Ok(Response::new(snapshot_stream(self, x509_response, false)))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<pb::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        check_header(&request)?;
        self.views()?;
        Ok(Response::new(snapshot_stream(self, x509_bundles, false)))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<pb::JwtsvidRequest>,
    ) -> Result<Response<pb::JwtsvidResponse>, Status> {
        check_header(&request)?;
        self.faults.wait().await;
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let views = self.views()?;
        let chosen: Vec<usize> = (0..views.len())
            .filter(|&i| {
                request.spiffe_id.is_empty()
                    || views[i].snapshot.svid().id().to_string() == request.spiffe_id
            })
            .collect();
        if chosen.is_empty() {
            return Err(Status::permission_denied(format!(
                "no identity issued for `{}`",
                request.spiffe_id
            )));
        }
        let mut svids = Vec::with_capacity(chosen.len());
        for i in chosen {
            let (source, _) = &self.identities[i];
            let token = source
                .fetch_jwt_svid(&request.audience)
                .await
                .map_err(no_identity)?;
            svids.push(pb::Jwtsvid {
                spiffe_id: views[i].snapshot.svid().id().to_string(),
                svid: token.token().to_owned(),
                hint: views[i].hint.clone(),
            });
        }
        Ok(Response::new(pb::JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<pb::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        check_header(&request)?;
        if self.faults.jwt_withdrawn() {
            return Err(jwt_withdrawn());
        }
        self.views()?;
        Ok(Response::new(snapshot_stream(self, jwt_bundles, true)))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<pb::ValidateJwtsvidRequest>,
    ) -> Result<Response<pb::ValidateJwtsvidResponse>, Status> {
        check_header(&request)?;
        self.faults.wait().await;
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if request.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let snapshot = self.snapshot()?;
        let claims = validate_jwt_svid(
            &request.svid,
            snapshot.bundles(),
            &request.audience,
            self.clock.now(),
            Duration::ZERO,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::ValidateJwtsvidResponse {
            spiffe_id: claims.subject().to_string(),
            claims: Some(json_object_to_struct(claims.claims().clone())),
        }))
    }
}

/// How long [`WorkloadApiServerHandle::shutdown`] waits for open calls to
/// end before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// A running Workload API server. Dropping it stops the server.
#[derive(Debug)]
pub struct WorkloadApiServerHandle {
    crls: watch::Sender<Crls>,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    relays: Arc<Mutex<JoinSet<()>>>,
}

impl WorkloadApiServerHandle {
    /// As [`WorkloadApiServer::publish_crls`]: serves `crls` from now on.
    pub fn publish_crls(&self, crls: Vec<Vec<u8>>) {
        self.crls.send_replace(Arc::new(crls));
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The endpoint for `SPIFFE_ENDPOINT_SOCKET`, `unix:///abs/path`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Stops accepting calls, ends open streams, and removes the socket.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(mut task) = self.task.take() {
            // Graceful shutdown waits for open connections to finish, and a
            // client's FetchX509SVID stream never does while it listens: after
            // a grace period, abort the server, which closes them.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Close every client connection, as a dying agent does: an open
        // FetchX509SVID stream would otherwise outlive the server, and its
        // client would never reconnect to the next one.
        self.relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .abort_all();
    }
}

impl Drop for WorkloadApiServerHandle {
    fn drop(&mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
