//! Rotating SVID sources.
//!
//! An [`SvidSource`] holds a workload's current identity as an immutable
//! [`Snapshot`] (X.509-SVID, bundle set with X.509 and JWT authorities, and a
//! revision number) and publishes each new snapshot on a `watch` channel.
//! TLS resolvers and verifiers read the current snapshot at every handshake,
//! so a rotation needs no rebuild of any config.
//!
//! Every source behaves the same way under failure:
//! - before the first SVID arrives, [`SvidSource::current`] fails closed with
//!   [`SourceError::NotReady`];
//! - when the upstream fails, the last good snapshot keeps serving and
//!   [`SvidSource::health`] reports [`Health::Degraded`];
//! - once the last good SVID has expired, [`SvidSource::current`] fails with
//!   [`SourceError::Expired`], and recovers as soon as a fresh SVID arrives.
//!
//! Backends: [`StaticSource`] (fixed material), [`FileSource`] (PEM files on
//! disk, reloaded on change), [`WorkloadApiSource`] (a SPIFFE Workload API
//! such as a SPIRE agent, feature `workload-api`) and
//! `zt_dev::FakeCaSource` (the development CA, crate `zt-dev`).

mod cache;
mod file;
#[cfg(feature = "workload-api")]
mod picker;
mod state;
mod static_source;
#[cfg(feature = "workload-api")]
mod workload_api;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::bundle::{BundleError, BundleSet};
use crate::jwt::{JwtError, JwtSvid};
use crate::svid::X509Svid;
use crate::time::Timestamp;
use crate::x509::SvidError;

pub use cache::DerivedCache;
pub use file::{FILE_RETRY_INTERVAL, FileLayout, FileSource, WatchHandle};
#[cfg(feature = "workload-api")]
pub use picker::SvidPicker;
pub use state::SourceState;
pub use static_source::StaticSource;
#[cfg(feature = "workload-api")]
pub use workload_api::{PlaneHealth, PlanesHealth, WorkloadApiSource, WorkloadApiSourceBuilder};

/// A boxed future returned by [`SvidSource`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One immutable view of a workload's identity material.
#[derive(Clone)]
pub struct Snapshot {
    svid: Arc<X509Svid>,
    bundles: Arc<BundleSet>,
    revision: u64,
    published_at: SystemTime,
}

impl Snapshot {
    /// The workload's X.509-SVID.
    pub fn svid(&self) -> &Arc<X509Svid> {
        &self.svid
    }

    /// The bundles (X.509 and JWT authorities) of every trusted trust domain.
    pub fn bundles(&self) -> &Arc<BundleSet> {
        &self.bundles
    }

    /// Increases by one with every snapshot a source publishes.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// When the source published this snapshot.
    pub fn published_at(&self) -> SystemTime {
        self.published_at
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision)
            .field("svid", &self.svid)
            .field("bundles", &self.bundles)
            .finish()
    }
}

/// The state of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// No SVID has arrived yet.
    Starting,
    /// No SVID has arrived and the last attempt failed.
    Failing {
        /// Why the last attempt failed.
        reason: String,
    },
    /// A valid SVID is being served and the upstream is fine.
    Healthy,
    /// A valid SVID is being served, but the last update from the upstream
    /// failed; the SVID serves until it expires.
    Degraded {
        /// Why the last update failed.
        reason: String,
        /// When the served SVID expires.
        serving_until: Timestamp,
    },
    /// The last good SVID has expired; calls fail closed until a fresh one
    /// arrives.
    Expired {
        /// When the SVID expired.
        expired_at: Timestamp,
        /// Why no fresh SVID arrived, if known.
        reason: Option<String>,
    },
}

impl Health {
    /// Whether [`SvidSource::current`] would return a snapshot.
    pub fn is_serving(&self) -> bool {
        matches!(self, Self::Healthy | Self::Degraded { .. })
    }
}

/// Why a source could not provide identity material.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// No SVID has been received yet.
    #[error("no SVID yet{}", match .reason { Some(r) => format!(": {r}"), None => String::new() })]
    NotReady {
        /// Why the last attempt failed, if one did.
        reason: Option<String>,
    },
    /// The last good SVID has expired and no fresh one has arrived.
    #[error(
        "the SVID for `{id}` expired at {expired_at} and no fresh one has arrived{}; calls fail closed until the source recovers",
        match .reason { Some(r) => format!(" ({r})"), None => String::new() }
    )]
    Expired {
        /// The SVID's SPIFFE ID.
        id: String,
        /// When it expired.
        expired_at: Timestamp,
        /// Why no fresh SVID arrived, if known.
        reason: Option<String>,
    },
    /// The source does not provide this kind of material.
    #[error("this source does not provide {what}")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
    /// A file could not be read.
    #[error("cannot read `{path}`: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The Workload API failed.
    #[error("Workload API: {reason}")]
    WorkloadApi {
        /// What failed.
        reason: String,
    },
    /// The issuing CA refused to issue (fake CA sources).
    #[error("the CA refused to issue: {reason}")]
    Issuer {
        /// What the CA reported.
        reason: String,
    },
    /// The upstream sent an SVID that breaks a SPIFFE rule.
    #[error("received an invalid X.509-SVID: {0}")]
    Svid(#[from] SvidError),
    /// The upstream sent an invalid bundle.
    #[error("received an invalid bundle: {0}")]
    Bundle(#[from] BundleError),
    /// The upstream sent an invalid JWT-SVID.
    #[error("received an invalid JWT-SVID: {0}")]
    Jwt(#[from] JwtError),
    /// The source was shut down.
    #[error("the source has been shut down")]
    Closed,
    /// A Workload API stream did not deliver its first update within the
    /// initial sync timeout.
    #[error(
        "Workload API at `{endpoint}`: no {plane} arrived ({reason}); is the agent running, the socket reachable, and an entry registered for this workload?"
    )]
    InitialSync {
        /// The stream that did not deliver.
        plane: Plane,
        /// The endpoint asked.
        endpoint: String,
        /// What the stream reported.
        reason: String,
    },
    /// A Workload API call did not answer in time.
    #[error("Workload API: {call} did not answer within {after:?}")]
    Timeout {
        /// The call, e.g. `FetchJWTSVID`.
        call: &'static str,
        /// The timeout that elapsed.
        after: std::time::Duration,
    },
    /// The upstream offers SVIDs, but none that the configured picker
    /// selects.
    #[error("no X.509-SVID matches {wanted}; the Workload API offered {offered}")]
    NoMatchingSvid {
        /// What the picker asked for.
        wanted: String,
        /// The SVIDs on offer (ID and hint of each).
        offered: String,
    },
}

/// One of the independent streams a Workload API source follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Plane {
    /// X.509-SVIDs and X.509 bundles (`FetchX509SVID`).
    X509Svid,
    /// JWT bundles (`FetchJWTBundles`).
    JwtBundles,
}

impl fmt::Display for Plane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::X509Svid => "X.509-SVID",
            Self::JwtBundles => "JWT bundle",
        })
    }
}

/// A provider of a workload's rotating identity.
///
/// Implementations keep a [`SourceState`], publish through it, and return
/// it from [`SvidSource::state`]; the provided methods then give every
/// source the behaviour described in the module documentation.
pub trait SvidSource: Send + Sync + fmt::Debug + 'static {
    /// The state this source publishes its snapshots through.
    fn state(&self) -> &SourceState;

    /// The current snapshot.
    ///
    /// # Errors
    ///
    /// [`SourceError::NotReady`] before the first SVID,
    /// [`SourceError::Expired`] once the last SVID has expired.
    fn current(&self) -> Result<Arc<Snapshot>, SourceError> {
        self.state().current()
    }

    /// A receiver that sees every snapshot the source publishes.
    fn updates(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.state().subscribe()
    }

    /// The source's state.
    fn health(&self) -> Health {
        self.state().health()
    }

    /// Fetches a JWT-SVID for `audience` (the first entry is the primary
    /// audience).
    ///
    /// The default implementation reports [`SourceError::Unsupported`].
    fn fetch_jwt_svid<'a>(
        &'a self,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvid, SourceError>> {
        let _ = audience;
        Box::pin(async { Err(SourceError::Unsupported { what: "JWT-SVIDs" }) })
    }
}

impl<S: SvidSource + ?Sized> SvidSource for Arc<S> {
    fn state(&self) -> &SourceState {
        (**self).state()
    }

    fn current(&self) -> Result<Arc<Snapshot>, SourceError> {
        (**self).current()
    }

    fn updates(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        (**self).updates()
    }

    fn health(&self) -> Health {
        (**self).health()
    }

    fn fetch_jwt_svid<'a>(
        &'a self,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvid, SourceError>> {
        (**self).fetch_jwt_svid(audience)
    }
}
