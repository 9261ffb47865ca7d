//! The metrics zt records, through the [`metrics`] facade.
//!
//! zt records and never exports: the application installs the recorder it
//! wants (`metrics-exporter-prometheus`, an OpenTelemetry bridge such as
//! `metrics-exporter-opentelemetry`, statsd, …) and every zt crate reports
//! to it. With no recorder installed, a count on the request path
//! (decisions, JWT-SVID validations, whose keys are built once) costs a
//! check of an atomic and nothing else; the others, once per connection,
//! handshake or reload, build their key (one small allocation) first.
//!
//! Every metric name is a constant of this module and every label value
//! comes from a fixed set (an enum's `as_str`), except `target`, which is
//! the name a service gives its own `Authorizer`, and `version`, which
//! takes one value per policy or revocation list in force. No label ever
//! holds a caller's SPIFFE ID, a request path or an error message, so the
//! number of series stays bounded whatever the traffic.
//!
//! # Labels
//!
//! | label | values | on |
//! |---|---|---|
//! | [`label::DECISION`] | `allow`, `deny`, `would-deny` (dry run) | [`AUTHZ_DECISIONS_TOTAL`] |
//! | [`label::REASON`] | the decision reason (`matched-allow`, `matched-deny`, `no-matching-rule`, `unauthenticated`, `revoked`, `expired`, `caller-not-declared`, `undeclared-endpoint`); for handshakes and verifications a [`PeerRefusal`] or a [`HandshakeResult`]-specific value; for closed connections a [`TrustChange`] | decisions, handshakes, verifications, closed connections |
//! | [`label::TARGET`] | the `Authorizer`'s target name (the service), never a path | [`AUTHZ_DECISIONS_TOTAL`] |
//! | [`label::SIDE`] | [`Side`]: `client` or `server`, the side that verified | handshakes, verifications |
//! | [`label::RESULT`] | [`HandshakeResult`], [`ReloadResult`] or [`JwtResult`] | handshakes, verifications, reloads, JWT-SVID validations |
//! | [`label::SOURCE`] | the kind of SVID source (`workload_api`, `file`, `static`, `fake_ca`, `federated`, `custom`), or the fixed name given with `SourceState::set_metrics_name` | SVID and source metrics |
//! | [`label::STATE`] | [`SourceHealthState`] | [`SOURCE_STATE`] |
//! | [`label::PLANE`] | `x509_svid`, `jwt_bundles` | [`WORKLOAD_API_RECONNECTS_TOTAL`] |
//! | [`label::VERSION`] | the policy version or revocation list version in force | [`POLICY_INFO`], [`REVOCATION_INFO`] |
//! | [`label::SINK`] | `json_lines` | [`AUDIT_EVENTS_DROPPED_TOTAL`] |
//!
//! # Time gauges
//!
//! SVID expiry, issue and rotation are recorded as Unix timestamps
//! (`*_timestamp_seconds`), set when a snapshot is published: no timer runs
//! per source, and an alert computes the remaining time as
//! `zt_svid_expiry_timestamp_seconds - time()`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::SharedString;

use crate::jwt::JwtError;
use crate::peer::PeerError;
use crate::source::{Health, Plane};
use crate::svid::X509Svid;
use crate::x509::SvidError;

/// Counter: authorization decisions. Labels `decision`, `reason`, `target`.
pub const AUTHZ_DECISIONS_TOTAL: &str = "zt_authz_decisions_total";
/// Counter: mTLS handshakes, recorded where one is awaited: `zt-server`'s
/// accept loop, `zt-client`'s tokio-rustls and tonic connectors (reqwest
/// runs its handshakes inside hyper; they show in
/// [`PEER_VERIFICATIONS_TOTAL`]). Labels `side`, `result`, `reason`.
pub const HANDSHAKES_TOTAL: &str = "zt_handshakes_total";
/// Histogram (seconds): duration of mTLS handshakes, from the first byte
/// read to the verified peer, successful or not. Label `side`, `result`.
pub const HANDSHAKE_DURATION_SECONDS: &str = "zt_handshake_duration_seconds";
/// Counter: peer certificate chains verified inside handshakes (both sides,
/// every client: reqwest, tonic, tokio-rustls). Labels `side`, `result`
/// (`accepted` or `refused`), `reason`.
pub const PEER_VERIFICATIONS_TOTAL: &str = "zt_peer_verifications_total";
/// Gauge (Unix seconds): when the SVID a source serves expires. Label
/// `source`.
pub const SVID_EXPIRY_TIMESTAMP_SECONDS: &str = "zt_svid_expiry_timestamp_seconds";
/// Gauge (Unix seconds): when the SVID a source serves became valid (its
/// `notBefore`), so that the TTL is `expiry - issued`. Label `source`.
pub const SVID_ISSUED_TIMESTAMP_SECONDS: &str = "zt_svid_issued_timestamp_seconds";
/// Gauge (Unix seconds): when a source last published a new SVID. Label
/// `source`.
pub const SVID_ROTATION_TIMESTAMP_SECONDS: &str = "zt_svid_rotation_timestamp_seconds";
/// Counter: SVID rotations (a published SVID with a serial different from
/// the one it replaced; the first SVID is not a rotation). Label `source`.
pub const SVID_ROTATIONS_TOTAL: &str = "zt_svid_rotations_total";
/// Gauge: 1 for the state a source is in, 0 for the others. Labels
/// `source`, `state`.
pub const SOURCE_STATE: &str = "zt_source_state";
/// Counter: Workload API streams opened again after they failed or ended.
/// Label `plane`.
pub const WORKLOAD_API_RECONNECTS_TOTAL: &str = "zt_workload_api_reconnects_total";
/// Counter: policy file reloads that changed something. Label `result`
/// (`applied` or `rejected`).
pub const POLICY_RELOADS_TOTAL: &str = "zt_policy_reloads_total";
/// Gauge: 1 for the policy version in force, 0 for versions replaced.
/// Label `version`.
pub const POLICY_INFO: &str = "zt_policy_info";
/// Counter: revocation list reloads that changed something. Label `result`
/// (`applied` or `rejected`).
pub const REVOCATION_RELOADS_TOTAL: &str = "zt_revocation_reloads_total";
/// Gauge: 1 for the revocation list version in force, 0 for versions
/// replaced. Label `version`.
pub const REVOCATION_INFO: &str = "zt_revocation_info";
/// Counter: audit records dropped because the writer's queue was full.
/// Label `sink`.
pub const AUDIT_EVENTS_DROPPED_TOTAL: &str = "zt_audit_events_dropped_total";
/// Counter: JWT-SVIDs validated on requests. Label `result`.
pub const JWT_SVID_VALIDATIONS_TOTAL: &str = "zt_jwt_svid_validations_total";
/// Counter: connections ended because the trust they were opened under
/// changed. Label `reason` ([`TrustChange`]).
pub const CONNECTIONS_CLOSED_TOTAL: &str = "zt_connections_closed_total";

/// Label keys.
pub mod label {
    /// The verdict of an authorization decision.
    pub const DECISION: &str = "decision";
    /// Why: a decision reason, a refusal reason, a trust change.
    pub const REASON: &str = "reason";
    /// The service an `Authorizer` decides for.
    pub const TARGET: &str = "target";
    /// The side of the connection that recorded the metric.
    pub const SIDE: &str = "side";
    /// The outcome of a handshake, verification, reload or validation.
    pub const RESULT: &str = "result";
    /// The SVID source.
    pub const SOURCE: &str = "source";
    /// A source's state.
    pub const STATE: &str = "state";
    /// A Workload API stream.
    pub const PLANE: &str = "plane";
    /// A policy or revocation list version.
    pub const VERSION: &str = "version";
    /// An audit sink.
    pub const SINK: &str = "sink";
}

/// The side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that connected.
    Client,
    /// The side that accepted.
    Server,
}

impl Side {
    /// `client` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// The outcome of a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeResult {
    /// The handshake completed with a verified peer.
    Ok,
    /// zt refused the peer's identity (reason: a [`PeerRefusal`]).
    Refused,
    /// The handshake failed for another reason (protocol, transport; reason
    /// `tls` or `io`).
    Failed,
    /// The handshake did not complete within the handshake timeout (reason
    /// `timeout`).
    Timeout,
}

impl HandshakeResult {
    /// `ok`, `refused`, `failed` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
        }
    }
}

/// Why a peer's identity was refused in a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRefusal {
    /// The chain is not a valid X.509-SVID (structure, key usage, URI SAN).
    InvalidSvid,
    /// The certificate is expired or not yet valid.
    Expired,
    /// No bundle of the peer's trust domain.
    UnknownTrustDomain,
    /// The chain does not lead to an authority of the bundle.
    UntrustedChain,
    /// A valid SVID whose ID the pin does not accept.
    NotAccepted,
    /// The peer's ID or serial is revoked.
    Revoked,
    /// This side has no identity material to verify with.
    NoLocalIdentity,
}

impl PeerRefusal {
    /// The refusal of `error`.
    pub fn of(error: &PeerError) -> Self {
        match error {
            PeerError::Svid(svid) => match svid {
                SvidError::Expired { .. }
                | SvidError::NotYetValid { .. }
                | SvidError::ChainNotValidNow { .. } => Self::Expired,
                SvidError::UnknownTrustDomain { .. } | SvidError::EmptyBundle { .. } => {
                    Self::UnknownTrustDomain
                }
                SvidError::UntrustedChain { .. } | SvidError::ChainRejected { .. } => {
                    Self::UntrustedChain
                }
                _ => Self::InvalidSvid,
            },
            PeerError::NotAccepted { .. } => Self::NotAccepted,
            PeerError::Revoked { .. } => Self::Revoked,
            PeerError::LocalSource(_) => Self::NoLocalIdentity,
        }
    }

    /// `invalid-svid`, `expired`, `unknown-trust-domain`,
    /// `untrusted-chain`, `not-accepted`, `revoked` or
    /// `no-local-identity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSvid => "invalid-svid",
            Self::Expired => "expired",
            Self::UnknownTrustDomain => "unknown-trust-domain",
            Self::UntrustedChain => "untrusted-chain",
            Self::NotAccepted => "not-accepted",
            Self::Revoked => "revoked",
            Self::NoLocalIdentity => "no-local-identity",
        }
    }
}

/// The outcome of a policy or revocation list reload that changed
/// something (an unchanged file is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The new content is in force.
    Applied,
    /// The new content was invalid or unreadable; the old one stays.
    Rejected,
}

impl ReloadResult {
    /// `applied` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
        }
    }
}

/// The outcome of a JWT-SVID validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtResult {
    /// The token is valid.
    Ok,
    /// Expired or not yet valid.
    Expired,
    /// The audience does not name this service.
    WrongAudience,
    /// The signature does not verify, or no key of the bundle signed it.
    BadSignature,
    /// No bundle of the subject's trust domain.
    UnknownTrustDomain,
    /// The token is malformed or breaks a JWT-SVID rule.
    Invalid,
}

impl JwtResult {
    /// The result of a validation.
    pub fn of<T>(result: &Result<T, JwtError>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(JwtError::Expired { .. } | JwtError::NotYetValid { .. }) => Self::Expired,
            Err(JwtError::WrongAudience { .. } | JwtError::MissingAudience) => Self::WrongAudience,
            Err(JwtError::BadSignature { .. } | JwtError::UnknownKeyId { .. }) => {
                Self::BadSignature
            }
            Err(JwtError::UnknownTrustDomain { .. } | JwtError::NoJwtBundle { .. }) => {
                Self::UnknownTrustDomain
            }
            Err(_) => Self::Invalid,
        }
    }

    /// `ok`, `expired`, `wrong-audience`, `bad-signature`,
    /// `unknown-trust-domain` or `invalid`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Expired => "expired",
            Self::WrongAudience => "wrong-audience",
            Self::BadSignature => "bad-signature",
            Self::UnknownTrustDomain => "unknown-trust-domain",
            Self::Invalid => "invalid",
        }
    }
}

/// A source's state, as the [`SOURCE_STATE`] gauge labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceHealthState {
    /// No SVID yet.
    Starting,
    /// No SVID yet, and the last attempt failed.
    Failing,
    /// Serving, upstream fine.
    Healthy,
    /// Serving the last good SVID; the upstream fails.
    Degraded,
    /// The last SVID expired.
    Expired,
}

impl SourceHealthState {
    /// Every state, in gauge order.
    pub const ALL: [Self; 5] = [
        Self::Starting,
        Self::Failing,
        Self::Healthy,
        Self::Degraded,
        Self::Expired,
    ];

    /// The state of `health`.
    pub fn of(health: &Health) -> Self {
        match health {
            Health::Starting => Self::Starting,
            Health::Failing { .. } => Self::Failing,
            Health::Healthy => Self::Healthy,
            Health::Degraded { .. } => Self::Degraded,
            Health::Expired { .. } => Self::Expired,
        }
    }

    /// `starting`, `failing`, `healthy`, `degraded` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Failing => "failing",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Expired => "expired",
        }
    }
}

/// Why a connection was ended because trust changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrustChange {
    /// The peer's certificate expired.
    Expired,
    /// The peer's ID or certificate was revoked (deny-list or CRL).
    Revoked,
    /// The authority that issued the peer's certificate left the bundle.
    Bundle,
    /// The pin no longer accepts the peer's ID.
    Pin,
}

impl TrustChange {
    /// `expired`, `revoked`, `bundle` or `pin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Bundle => "bundle",
            Self::Pin => "pin",
        }
    }
}

/// Counts a connection ended because `reason`: call it once per
/// connection, where the connection is closed.
pub fn connection_closed(reason: TrustChange) {
    metrics::counter!(CONNECTIONS_CLOSED_TOTAL, label::REASON => reason.as_str()).increment(1);
}

/// Records a handshake that `side` ran for `duration`. `reason` is the
/// [`PeerRefusal`] of a refused handshake, `tls`, `io` or `timeout` for the
/// others, and `none` for a successful one.
pub fn handshake(side: Side, result: HandshakeResult, reason: &'static str, duration: Duration) {
    metrics::counter!(
        HANDSHAKES_TOTAL,
        label::SIDE => side.as_str(),
        label::RESULT => result.as_str(),
        label::REASON => reason,
    )
    .increment(1);
    metrics::histogram!(
        HANDSHAKE_DURATION_SECONDS,
        label::SIDE => side.as_str(),
        label::RESULT => result.as_str(),
    )
    .record(duration.as_secs_f64());
}

/// Records the verification of a peer's chain by `side`.
pub fn peer_verification(side: Side, outcome: Result<(), &PeerError>) {
    let (result, reason) = match outcome {
        Ok(()) => ("accepted", "none"),
        Err(e) => ("refused", PeerRefusal::of(e).as_str()),
    };
    metrics::counter!(
        PEER_VERIFICATIONS_TOTAL,
        label::SIDE => side.as_str(),
        label::RESULT => result,
        label::REASON => reason,
    )
    .increment(1);
}

fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// Records that `source` published `svid` at `published_at`; `rotated`
/// is `true` when it replaced an SVID with another serial.
pub fn svid_published(source: &Arc<str>, svid: &X509Svid, published_at: SystemTime, rotated: bool) {
    metrics::gauge!(SVID_EXPIRY_TIMESTAMP_SECONDS, label::SOURCE => SharedString::from(Arc::clone(source)))
        .set(unix_seconds(svid.not_after()));
    metrics::gauge!(SVID_ISSUED_TIMESTAMP_SECONDS, label::SOURCE => SharedString::from(Arc::clone(source)))
        .set(unix_seconds(svid.not_before()));
    if rotated {
        metrics::gauge!(SVID_ROTATION_TIMESTAMP_SECONDS, label::SOURCE => SharedString::from(Arc::clone(source)))
            .set(unix_seconds(published_at));
        metrics::counter!(SVID_ROTATIONS_TOTAL, label::SOURCE => SharedString::from(Arc::clone(source))).increment(1);
    }
}

/// Sets the [`SOURCE_STATE`] gauges of `source`: 1 for `state`, 0 for the
/// others.
pub fn source_state(source: &Arc<str>, state: SourceHealthState) {
    for each in SourceHealthState::ALL {
        metrics::gauge!(SOURCE_STATE, label::SOURCE => SharedString::from(Arc::clone(source)), label::STATE => each.as_str())
            .set(if each == state { 1.0 } else { 0.0 });
    }
}

/// Counts a Workload API stream opened again.
pub fn workload_api_reconnect(plane: Plane) {
    let plane = match plane {
        Plane::X509Svid => "x509_svid",
        Plane::JwtBundles => "jwt_bundles",
    };
    metrics::counter!(WORKLOAD_API_RECONNECTS_TOTAL, label::PLANE => plane).increment(1);
}

/// Counts a policy reload that changed something.
pub fn policy_reload(result: ReloadResult) {
    metrics::counter!(POLICY_RELOADS_TOTAL, label::RESULT => result.as_str()).increment(1);
}

/// Counts a revocation list reload that changed something.
pub fn revocation_reload(result: ReloadResult) {
    metrics::counter!(REVOCATION_RELOADS_TOTAL, label::RESULT => result.as_str()).increment(1);
}

/// Sets [`POLICY_INFO`]: `version` to 1, and `replaced` (the version it
/// replaced, if any and different) to 0.
pub fn policy_version(replaced: Option<&str>, version: &str) {
    info(POLICY_INFO, replaced, version);
}

/// Sets [`REVOCATION_INFO`] as [`policy_version`] sets [`POLICY_INFO`].
pub fn revocation_version(replaced: Option<&str>, version: &str) {
    info(REVOCATION_INFO, replaced, version);
}

fn info(name: &'static str, replaced: Option<&str>, version: &str) {
    if let Some(old) = replaced.filter(|old| *old != version) {
        metrics::gauge!(name, label::VERSION => old.to_owned()).set(0.0);
    }
    metrics::gauge!(name, label::VERSION => version.to_owned()).set(1.0);
}

/// Counts an audit record dropped by `sink`.
pub fn audit_dropped(sink: &'static str) {
    metrics::counter!(AUDIT_EVENTS_DROPPED_TOTAL, label::SINK => sink).increment(1);
}

/// The key of [`JWT_SVID_VALIDATIONS_TOTAL`] with the `result` label of
/// one [`JwtResult`], built at compile time.
macro_rules! jwt_validation_key {
    ($result:ident) => {{
        static LABELS: [metrics::Label; 1] = [metrics::Label::from_static_parts(
            label::RESULT,
            JwtResult::$result.as_str(),
        )];
        metrics::Key::from_static_parts(JWT_SVID_VALIDATIONS_TOTAL, &LABELS)
    }};
}

/// The key of [`JWT_SVID_VALIDATIONS_TOTAL`] for each [`JwtResult`], in
/// declaration order (indexed by `JwtResult as usize`).
static JWT_VALIDATION_KEYS: [metrics::Key; 6] = [
    jwt_validation_key!(Ok),
    jwt_validation_key!(Expired),
    jwt_validation_key!(WrongAudience),
    jwt_validation_key!(BadSignature),
    jwt_validation_key!(UnknownTrustDomain),
    jwt_validation_key!(Invalid),
];

/// Counts a JWT-SVID validation and returns the result unchanged.
///
/// Called on every JWT-authenticated request: the key is static, so
/// counting builds nothing.
pub fn jwt_validation<T>(result: Result<T, JwtError>) -> Result<T, JwtError> {
    static METADATA: metrics::Metadata<'static> =
        metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
    let key = &JWT_VALIDATION_KEYS[JwtResult::of(&result) as usize];
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_jwt_result_counts_under_its_own_static_key() {
        let results = [
            JwtResult::Ok,
            JwtResult::Expired,
            JwtResult::WrongAudience,
            JwtResult::BadSignature,
            JwtResult::UnknownTrustDomain,
            JwtResult::Invalid,
        ];
        assert_eq!(results.len(), JWT_VALIDATION_KEYS.len());
        for result in results {
            let key = &JWT_VALIDATION_KEYS[result as usize];
            assert_eq!(key.name(), JWT_SVID_VALIDATIONS_TOTAL);
            let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
            assert_eq!(labels, [(label::RESULT, result.as_str())], "{result:?}");
        }
    }
}
