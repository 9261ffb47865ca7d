//! One view of a service's zero-trust health, for readiness probes and
//! dashboards: the SVID source's state, time to expiry and last rotation,
//! the policy and revocation list versions in force, and whether the
//! upstream (the Workload API, the files, the CA) answers.
//!
//! ```no_run
//! # async fn run(source: std::sync::Arc<zt_dev::FakeCaSource>, authz: zt_authz::Authorizer) {
//! use zt_server::health::HealthCheck;
//!
//! let check = HealthCheck::new(source).authorizer(&authz);
//! let report = check.health();
//! println!("ready: {}, state: {}", report.ready, report.source.state);
//! // With the `axum` feature: `GET /ready` answers 200 when ready, 503 when not.
//! let admin: axum::Router = axum::Router::new()
//!     .route("/ready", axum::routing::get(zt_server::health::ready))
//!     .with_state(check);
//! # let _ = admin;
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use zt_authz::Authorizer;
use zt_core::metrics::SourceHealthState;
use zt_core::revocation::Revocations;
use zt_core::source::{Health, SvidSource};
use zt_core::time::Timestamp;

/// Reads the health of one service's identity, policy and revocation
/// list. Cheap to clone; every [`health`](Self::health) call reads the
/// current state (no cached answer).
#[derive(Clone)]
pub struct HealthCheck {
    source: Arc<dyn SvidSource>,
    authorizer: Option<Authorizer>,
    revocations: Option<Revocations>,
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("source", &self.source)
            .field("authorizer", &self.authorizer.is_some())
            .field("revocations", &self.revocations.is_some())
            .finish()
    }
}

impl HealthCheck {
    /// A check of `source`, the service's own SVID source. Time is read
    /// from the source's clock, so an injected clock drives readiness too.
    pub fn new(source: impl SvidSource) -> Self {
        Self {
            source: Arc::new(source),
            authorizer: None,
            revocations: None,
        }
    }

    /// Reports the policy version of `authorizer`.
    #[must_use]
    pub fn authorizer(mut self, authorizer: &Authorizer) -> Self {
        self.authorizer = Some(authorizer.clone());
        self
    }

    /// Reports the version of `revocations`.
    #[must_use]
    pub fn revocations(mut self, revocations: &Revocations) -> Self {
        self.revocations = Some(revocations.clone());
        self
    }

    /// The health now.
    pub fn health(&self) -> HealthReport {
        let state = self.source.state();
        let now = state.clock().now();
        let health = self.source.health();
        let latest = state.latest();
        let (reason, upstream) = match &health {
            Health::Starting => (None, Upstream::Unknown),
            Health::Healthy => (None, Upstream::Ok),
            Health::Failing { reason } | Health::Degraded { reason, .. } => {
                (Some(reason.clone()), Upstream::Failing)
            }
            Health::Expired { reason, .. } => (
                reason.clone(),
                if reason.is_some() {
                    Upstream::Failing
                } else {
                    Upstream::Unknown
                },
            ),
            _ => (None, Upstream::Unknown),
        };
        let svid = latest.as_ref().map(|snapshot| {
            let svid = snapshot.svid();
            SvidReport {
                spiffe_id: svid.id().to_string(),
                serial: svid.serial_hex(),
                expires_at: Timestamp(svid.not_after()).to_string(),
                seconds_to_expiry: signed_seconds(svid.not_after(), now),
                last_rotation: Timestamp(snapshot.published_at()).to_string(),
                seconds_since_rotation: signed_seconds(now, snapshot.published_at()),
                revision: snapshot.revision(),
            }
        });
        HealthReport {
            ready: health.is_serving(),
            source: SourceReport {
                name: state.metrics_name().to_string(),
                state: SourceHealthState::of(&health).as_str(),
                reason,
                upstream,
                svid,
            },
            policy_version: self
                .authorizer
                .as_ref()
                .map(|a| a.policy_version().to_string()),
            revocation_version: self.revocations.as_ref().map(Revocations::version),
        }
    }
}

/// `to - from` in seconds, negative when `to` is earlier.
fn signed_seconds(to: SystemTime, from: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// A service's health at one instant; serializes to JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// `true` when the service can make and accept calls: its source
    /// serves an SVID that has not expired. `false` before the first SVID
    /// and after the last one expired.
    pub ready: bool,
    /// The SVID source.
    pub source: SourceReport,
    /// The policy version in force, when an authorizer was given.
    pub policy_version: Option<String>,
    /// The revocation list version in force, when a list was given.
    pub revocation_version: Option<u64>,
}

/// The state of the SVID source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SourceReport {
    /// The source's name in metrics (`workload_api`, `file`, `fake_ca`, …).
    pub name: String,
    /// `starting`, `failing`, `healthy`, `degraded` or `expired`.
    pub state: &'static str,
    /// Why the upstream last failed, if it did.
    pub reason: Option<String>,
    /// Whether the upstream (Workload API, files, CA) answers.
    pub upstream: Upstream,
    /// The SVID last received, if any (also when expired).
    pub svid: Option<SvidReport>,
}

/// Whether a source's upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Upstream {
    /// The last update succeeded.
    Ok,
    /// The last update failed (see the source's `reason`).
    Failing,
    /// Nothing is known yet.
    Unknown,
}

/// The SVID a source serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SvidReport {
    /// Its SPIFFE ID (the service's own).
    pub spiffe_id: String,
    /// Its serial, lowercase hex.
    pub serial: String,
    /// When it expires, RFC 3339.
    pub expires_at: String,
    /// Seconds until it expires; negative once expired.
    pub seconds_to_expiry: i64,
    /// When the source published it, RFC 3339.
    pub last_rotation: String,
    /// Seconds since the source published it.
    pub seconds_since_rotation: i64,
    /// The source's snapshot revision.
    pub revision: u64,
}

/// An axum handler answering the [`HealthReport`] as JSON, with status 200
/// when ready and 503 when not: a readiness probe.
#[cfg(feature = "axum")]
pub async fn ready(
    axum::extract::State(check): axum::extract::State<HealthCheck>,
) -> (http::StatusCode, axum::Json<HealthReport>) {
    let report = check.health();
    let status = if report.ready {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report))
}
