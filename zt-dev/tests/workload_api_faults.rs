#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]
//! Workload API faults, against the fake CA's real server on a Unix socket
//! and zt's `WorkloadApiSource`: an agent that is not up at start, dies
//! mid-run, comes back, pushes material that must be refused, rotates its
//! CA; and clocks skewed within and beyond the leeway zt allows.
//!
//! Expiry is driven by `ManualClock`s, never by waiting for real time.
//! Waits for pushed updates are bounded by `DEADLINE`: a failure, not a hang.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::UnixListener;
use zt_core::jwt::{JwtError, MAX_LEEWAY, validate_jwt_svid};
use zt_core::source::{
    Health, Plane, PlaneHealth, Snapshot, SourceError, SourceState, SvidSource, WorkloadApiSource,
};
use zt_core::svid::X509Svid;
use zt_core::time::{Clock as _, ManualClock};
use zt_core::x509::{SvidError, Usage, verify_x509_svid};
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{BadJwt, BadSvid, FakeCa, FakeCaSource, WorkloadApiServer, WorkloadApiServerHandle};

/// Upper bound on any wait for something pushed over the socket.
const DEADLINE: Duration = Duration::from_secs(10);
/// TTL of the SVIDs the agents issue.
const TTL: Duration = Duration::from_secs(300);
const SECOND: Duration = Duration::from_secs(1);

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn orders() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/orders").unwrap()
}

fn ca_on(clock: &ManualClock) -> FakeCa {
    FakeCa::builder(td())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("agent.sock")
}

fn endpoint(path: &Path) -> String {
    format!("unix://{}", path.display())
}

async fn serve<S: SvidSource>(path: &Path, source: &Arc<S>) -> WorkloadApiServerHandle {
    WorkloadApiServer::new(source.clone())
        .serve_unix(path)
        .await
        .unwrap()
}

/// A `WorkloadApiSource` on `path` that judges expiry by `clock`, with a
/// short reconnect backoff so recoveries are quick.
async fn connect(path: &Path, clock: &ManualClock) -> Arc<WorkloadApiSource> {
    WorkloadApiSource::builder()
        .endpoint(endpoint(path))
        .clock(Arc::new(clock.clone()))
        .initial_sync_timeout(DEADLINE)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .await
        .unwrap()
}

/// Waits until the source publishes a snapshot that satisfies `pred`.
async fn wait_for_snapshot(
    source: &WorkloadApiSource,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let mut updates = source.updates();
    let seen = tokio::time::timeout(
        DEADLINE,
        updates.wait_for(|s| s.as_ref().is_some_and(|s| pred(s))),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    .expect("the source stopped publishing");
    seen.clone().unwrap()
}

/// Waits until the source's health satisfies `pred`. Health has no change
/// notification, so this re-reads it every few milliseconds; the outcome
/// does not depend on timing, only how soon it is seen.
async fn wait_for_health(source: &WorkloadApiSource, what: &str, pred: impl Fn(&Health) -> bool) {
    tokio::time::timeout(DEADLINE, async {
        while !pred(&source.health()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {what}; health: {:?}",
            source.health()
        )
    });
}

/// A source the test drives by hand, to make the agent serve any material.
/// The agent serves only what this source's clock says has not expired.
#[derive(Debug)]
struct Puppet {
    state: SourceState,
}

impl Puppet {
    fn new(clock: &ManualClock) -> Self {
        Self {
            state: SourceState::new(Arc::new(clock.clone())),
        }
    }
}

impl SvidSource for Puppet {
    fn state(&self) -> &SourceState {
        &self.state
    }
}

// 1. Not up at start.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_fails_with_a_clear_error_when_no_agent_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let err = WorkloadApiSource::builder()
        .endpoint(endpoint(&path))
        .initial_sync_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .await
        .unwrap_err();
    let SourceError::InitialSync {
        plane: Plane::X509Svid,
        reason,
        ..
    } = &err
    else {
        panic!("expected the X.509 stream's initial sync error, got {err:?}");
    };
    assert!(reason.contains("timed out"), "{reason}");
    assert!(reason.contains("no JWT bundles arrived either"), "{reason}");
    let message = err.to_string();
    assert!(message.starts_with("Workload API"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_retries_with_backoff_and_serves_once_the_agent_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    // Something holds the path but hangs up on every connection, the way a
    // starting agent refuses calls: the source must keep trying.
    let refusing = UnixListener::bind(&path).unwrap();
    let clock = ManualClock::starting_now();
    let building = tokio::spawn({
        let path = path.clone();
        let clock = clock.clone();
        async move { connect(&path, &clock).await }
    });
    tokio::time::timeout(DEADLINE, async {
        for _ in 0..3 {
            let (conn, _) = refusing.accept().await.unwrap();
            drop(conn);
        }
    })
    .await
    .expect("the source did not retry");
    assert!(!building.is_finished(), "build returned before any SVID");
    drop(refusing);

    // The agent appears on the same path; the pending build completes.
    let agent = FakeCaSource::new(ca_on(&clock), orders(), TTL).unwrap();
    let server = serve(&path, &agent).await;
    let source = tokio::time::timeout(DEADLINE, building)
        .await
        .expect("the source did not pick up the agent")
        .unwrap();
    let snapshot = source.current().unwrap();
    assert_eq!(snapshot.svid().id(), &orders());
    assert_eq!(
        snapshot.svid().serial(),
        agent.current().unwrap().svid().serial()
    );
    assert_eq!(source.health(), Health::Healthy);
    source.shutdown().await;
    server.shutdown().await;
}

// 2. Dies mid-run.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_good_svid_serves_after_the_agent_dies_until_it_expires_then_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let ca_clock = ManualClock::starting_now();
    let agent = FakeCaSource::new(ca_on(&ca_clock), orders(), TTL).unwrap();
    let server = serve(&path, &agent).await;
    let clock = ManualClock::new(ca_clock.now());
    let source = connect(&path, &clock).await;
    let good = source.current().unwrap();

    server.shutdown().await;
    assert!(!path.exists(), "the agent's socket is gone");

    // The loss is reported (by each stream; the X.509 one's reason comes
    // first); until expiry the last good SVID keeps serving.
    wait_for_health(
        &source,
        "the agent's loss to be reported",
        |h| matches!(h, Health::Degraded { reason, .. } if reason.starts_with("Workload API: ")),
    )
    .await;
    let Health::Degraded {
        reason,
        serving_until,
    } = source.health()
    else {
        unreachable!()
    };
    assert!(reason.starts_with("Workload API: "), "{reason}");
    assert!(
        reason.contains("agent") || reason.contains("stream"),
        "{reason}"
    );
    let not_after = good.svid().not_after();
    assert_eq!(serving_until.0, not_after);
    clock.set(not_after);
    let still = source.current().unwrap();
    assert_eq!(still.svid().serial(), good.svid().serial());

    // One second past expiry: fail closed, saying which SVID and why.
    clock.set(not_after + SECOND);
    let err = source.current().unwrap_err();
    let SourceError::Expired {
        id,
        expired_at,
        reason,
    } = &err
    else {
        panic!("expected Expired, got {err:?}");
    };
    assert_eq!(id, "spiffe://example.org/orders");
    assert_eq!(expired_at.0, not_after);
    assert!(
        reason
            .as_ref()
            .is_some_and(|r| r.starts_with("Workload API: "))
    );
    let message = err.to_string();
    assert!(message.contains("expired at"), "{message}");
    assert!(message.contains("Workload API: "), "{message}");
    assert!(message.contains("fail closed"), "{message}");
    assert!(
        matches!(source.health(), Health::Expired { expired_at, .. } if expired_at.0 == not_after),
        "{:?}",
        source.health()
    );
    source.shutdown().await;
}

// 3. Comes back.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_recovers_without_restart_when_the_agent_comes_back_on_the_same_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let ca_clock = ManualClock::starting_now();
    let ca = ca_on(&ca_clock);
    let agent = FakeCaSource::new(ca.clone(), orders(), TTL).unwrap();
    let server = serve(&path, &agent).await;
    let clock = ManualClock::new(ca_clock.now());
    let source = connect(&path, &clock).await;
    let first = source.current().unwrap();

    server.shutdown().await;
    clock.set(first.svid().not_after() + SECOND);
    assert!(matches!(source.current(), Err(SourceError::Expired { .. })));

    // A restarted agent (same CA, fresh SVID) on the same path.
    ca_clock.advance(Duration::from_secs(10));
    let restarted = FakeCaSource::new(ca, orders(), TTL).unwrap();
    let fresh_serial = restarted.current().unwrap().svid().serial().to_vec();
    let server = serve(&path, &restarted).await;

    let seen = wait_for_snapshot(&source, "the restarted agent's SVID", |s| {
        s.svid().serial() == fresh_serial.as_slice()
    })
    .await;
    assert!(seen.revision() > first.revision());
    let current = source.current().unwrap();
    assert_eq!(current.svid().serial(), fresh_serial.as_slice());
    // Each stream clears its failure as it reconnects.
    wait_for_health(&source, "both streams back", |h| *h == Health::Healthy).await;
    source.shutdown().await;
    server.shutdown().await;
}

// 4. Malformed or wrong-trust-domain material.

/// An agent serving a hand-driven source, and a client already holding its
/// first (good) SVID.
struct PuppetAgent {
    _dir: tempfile::TempDir,
    server: WorkloadApiServerHandle,
    puppet: Arc<Puppet>,
    /// The agent's clock, apart from the workload's.
    agent_clock: ManualClock,
    ca: FakeCa,
    source: Arc<WorkloadApiSource>,
    good: Arc<Snapshot>,
}

async fn puppet_agent() -> PuppetAgent {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let ca = FakeCa::new(td()).unwrap();
    let agent_clock = ManualClock::starting_now();
    let puppet = Arc::new(Puppet::new(&agent_clock));
    puppet.state.publish(
        ca.issue_x509_svid(&orders(), TTL).unwrap(),
        BundleSet::new().with(ca.bundle()),
    );
    let server = serve(&path, &puppet).await;
    let clock = ManualClock::starting_now();
    let source = connect(&path, &clock).await;
    let good = source.current().unwrap();
    assert_eq!(good.revision(), 1);
    PuppetAgent {
        _dir: dir,
        server,
        puppet,
        agent_clock,
        ca,
        source,
        good,
    }
}

impl PuppetAgent {
    /// Pushes a fresh good SVID and waits for the client to publish it:
    /// any snapshot published in between would show in the revision.
    async fn push_good_and_wait(&self) -> Arc<Snapshot> {
        let svid = self.ca.issue_x509_svid(&orders(), TTL).unwrap();
        let serial = svid.serial().to_vec();
        self.puppet
            .state
            .publish(svid, BundleSet::new().with(self.ca.bundle()));
        wait_for_snapshot(&self.source, "the next good SVID", |s| {
            s.svid().serial() == serial.as_slice()
        })
        .await
    }

    async fn shutdown(self) {
        self.source.shutdown().await;
        self.server.shutdown().await;
    }
}

fn bad_svid(ca: &FakeCa, kind: BadSvid) -> X509Svid {
    let bad = ca.issue_bad_x509_svid(kind, &orders()).unwrap();
    X509Svid::from_der(bad.chain, bad.key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svid_for_another_trust_domain_is_rejected_last_good_kept_and_reported() {
    let agent = puppet_agent().await;
    // example.org's CA signs an SVID for spiffe://wrong.example/…, and the
    // agent sends it with wrong.example's real bundle: it chains to no
    // authority of its own trust domain.
    let wrong = bad_svid(&agent.ca, BadSvid::WrongTrustDomain);
    let wrong_td = wrong.id().trust_domain().clone();
    assert_eq!(wrong_td.to_string(), "wrong.example");
    let wrong_ca = FakeCa::new(wrong_td).unwrap();
    agent.puppet.state.publish(
        wrong,
        BundleSet::new()
            .with(agent.ca.bundle())
            .with(wrong_ca.bundle()),
    );

    wait_for_health(&agent.source, "the rejection to be reported", |h| {
        matches!(h, Health::Degraded { .. })
    })
    .await;
    let Health::Degraded {
        reason,
        serving_until,
    } = agent.source.health()
    else {
        unreachable!()
    };
    assert!(reason.contains("invalid X.509-SVID"), "{reason}");
    assert!(reason.contains("wrong.example"), "{reason}");
    assert_eq!(serving_until.0, agent.good.svid().not_after());
    // The X.509 update is refused; the JWT bundles that came with it (now
    // with wrong.example's keys) are a separate stream and do apply.
    let current = agent.source.current().unwrap();
    assert_eq!(current.svid().serial(), agent.good.svid().serial());
    assert_eq!(current.svid().id(), &orders());

    // The next good SVID is taken, and health clears.
    let next = agent.push_good_and_wait().await;
    assert!(next.revision() > current.revision());
    assert_eq!(agent.source.health(), Health::Healthy);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svid_signed_outside_the_bundle_is_rejected_and_last_good_kept() {
    let agent = puppet_agent().await;
    let untrusted = bad_svid(&agent.ca, BadSvid::UntrustedSameSubject);
    assert_eq!(untrusted.id(), &orders());
    agent
        .puppet
        .state
        .publish(untrusted, BundleSet::new().with(agent.ca.bundle()));

    wait_for_health(&agent.source, "the rejection to be reported", |h| {
        matches!(h, Health::Degraded { .. })
    })
    .await;
    let Health::Degraded { reason, .. } = agent.source.health() else {
        unreachable!()
    };
    assert!(reason.contains("invalid X.509-SVID"), "{reason}");
    assert!(reason.contains("example.org"), "{reason}");
    assert_eq!(
        agent.source.current().unwrap().svid().serial(),
        agent.good.svid().serial()
    );
    let next = agent.push_good_and_wait().await;
    assert_eq!(next.revision(), agent.good.revision() + 1);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_expired_svid_pushed_by_the_agent_is_rejected_and_last_good_kept() {
    let agent = puppet_agent().await;
    // An agent whose clock runs 90 minutes behind pushes an SVID that
    // expired an hour ago.
    agent.agent_clock.rewind(Duration::from_secs(90 * 60));
    let expired = bad_svid(&agent.ca, BadSvid::Expired);
    agent
        .puppet
        .state
        .publish(expired, BundleSet::new().with(agent.ca.bundle()));

    wait_for_health(&agent.source, "the rejection to be reported", |h| {
        matches!(h, Health::Degraded { .. })
    })
    .await;
    let Health::Degraded { reason, .. } = agent.source.health() else {
        unreachable!()
    };
    assert!(reason.contains("invalid X.509-SVID"), "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    let current = agent.source.current().unwrap();
    assert_eq!(current.svid().serial(), agent.good.svid().serial());
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_withdrawing_the_identity_is_reported_in_health() {
    let agent = puppet_agent().await;
    // The agent's own SVID expires by its clock: it answers PERMISSION_DENIED
    // ("no identity issued"), and the spiffe crate withdraws the material.
    let expired = bad_svid(&agent.ca, BadSvid::Expired);
    agent
        .puppet
        .state
        .publish(expired, BundleSet::new().with(agent.ca.bundle()));

    // Both streams report it, each in its own plane.
    wait_for_health(&agent.source, "the withdrawal to be reported", |_| {
        let planes = agent.source.planes_health();
        matches!(planes.x509, PlaneHealth::Degraded { .. })
            && matches!(planes.jwt_bundles, PlaneHealth::Degraded { .. })
    })
    .await;
    let planes = agent.source.planes_health();
    let PlaneHealth::Degraded { reason } = &planes.x509 else {
        unreachable!()
    };
    assert!(reason.contains("withdrawn"), "{reason}");
    assert!(reason.contains("no identity issued"), "{reason}");
    let PlaneHealth::Degraded { reason } = &planes.jwt_bundles else {
        unreachable!()
    };
    assert!(reason.contains("withdrew the JWT bundles"), "{reason}");
    let Health::Degraded { reason, .. } = agent.source.health() else {
        panic!("{:?}", agent.source.health())
    };
    assert!(reason.contains("withdrawn"), "{reason}");
    assert!(reason.contains("JWT bundle stream"), "{reason}");
    // As documented for every source, the last good SVID keeps serving until
    // it expires; unlike the spiffe crate's X509Source, which stops serving
    // withdrawn material at once.
    let current = agent.source.current().unwrap();
    assert_eq!(current.svid().serial(), agent.good.svid().serial());
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_response_is_rejected_and_last_good_kept() {
    let agent = puppet_agent().await;
    // An SVID whose trust domain has no bundle in the set: the agent sends
    // an X509SVID with an empty `bundle`, a required field.
    let orphan = bad_svid(&agent.ca, BadSvid::WrongTrustDomain);
    agent
        .puppet
        .state
        .publish(orphan, BundleSet::new().with(agent.ca.bundle()));
    // The client drops the response, reports it, and reconnects; the
    // agent's next good SVID arrives as the very next snapshot: the
    // malformed one never was.
    wait_for_health(&agent.source, "the rejection to be reported", |h| {
        matches!(h, Health::Degraded { .. })
    })
    .await;
    let Health::Degraded { reason, .. } = agent.source.health() else {
        unreachable!()
    };
    assert!(reason.contains("stream failed"), "{reason}");
    assert_eq!(
        agent.source.current().unwrap().svid().serial(),
        agent.good.svid().serial()
    );
    let next = agent.push_good_and_wait().await;
    assert_eq!(next.revision(), agent.good.revision() + 1);
    assert_eq!(next.svid().id(), &orders());
    assert_eq!(agent.source.health(), Health::Healthy);
    agent.shutdown().await;
}

// 5. CA rotation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_brings_the_new_bundle_and_svid_and_new_peers_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let ca_clock = ManualClock::starting_now();
    let ca = ca_on(&ca_clock);
    let agent = FakeCaSource::new(ca.clone(), orders(), TTL).unwrap();
    let server = serve(&path, &agent).await;
    let clock = ManualClock::new(ca_clock.now());
    let source = connect(&path, &clock).await;
    let old_root = ca.root_certificate();
    let billing = SpiffeId::new("spiffe://example.org/billing").unwrap();
    let old_peer = ca.issue_x509_svid(&billing, TTL).unwrap();

    ca.rotate().unwrap();
    let new_root = ca.root_certificate();
    assert_ne!(new_root, old_root);
    let new_serial = agent.rotate_now().unwrap().svid().serial().to_vec();
    let snap = wait_for_snapshot(&source, "the SVID from the new CA", |s| {
        s.svid().serial() == new_serial.as_slice()
    })
    .await;
    let authorities = snap
        .bundles()
        .get(&td())
        .unwrap()
        .x509_authorities()
        .to_vec();
    assert_eq!(authorities.len(), 2, "old and new roots overlap");
    assert!(authorities.contains(&old_root) && authorities.contains(&new_root));
    // Our new SVID and a peer issued by the new CA verify; so does a peer
    // from the old CA, during the overlap.
    let now = clock.now();
    verify_x509_svid(snap.svid().chain(), snap.bundles(), now, Usage::ServerAuth).unwrap();
    let new_peer = ca.issue_x509_svid(&billing, TTL).unwrap();
    let verified =
        verify_x509_svid(new_peer.chain(), snap.bundles(), now, Usage::ClientAuth).unwrap();
    assert_eq!(verified.id(), &billing);
    verify_x509_svid(old_peer.chain(), snap.bundles(), now, Usage::ClientAuth).unwrap();

    // The overlap ends: the old root leaves the workload's bundle, and
    // peers it issued stop verifying.
    ca.end_rotation_overlap();
    agent.refresh_bundles().unwrap();
    let snap = wait_for_snapshot(&source, "the bundle without the old root", |s| {
        s.bundles().get(&td()).unwrap().x509_authorities().len() == 1
    })
    .await;
    assert_eq!(
        snap.bundles().get(&td()).unwrap().x509_authorities(),
        [new_root]
    );
    verify_x509_svid(new_peer.chain(), snap.bundles(), now, Usage::ClientAuth).unwrap();
    let err =
        verify_x509_svid(old_peer.chain(), snap.bundles(), now, Usage::ClientAuth).unwrap_err();
    assert!(matches!(err, SvidError::UntrustedChain { .. }), "{err:?}");
    source.shutdown().await;
    server.shutdown().await;
}

// 6. Clock skew.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_svid_from_the_agent_tolerates_skew_within_the_leeway_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let ca = FakeCa::new(td()).unwrap();
    let agent = FakeCaSource::new(ca.clone(), orders(), TTL).unwrap();
    let server = serve(&path, &agent).await;
    let clock = ManualClock::starting_now();
    let source = connect(&path, &clock).await;
    let token = source.fetch_jwt_svid(&["ledger".to_owned()]).await.unwrap();
    // The JWT authorities came over the Workload API too.
    let bundles = source.current().unwrap().bundles().clone();
    let validate = |now: SystemTime, leeway: Duration| {
        validate_jwt_svid(token.token(), &bundles, "ledger", now, leeway)
    };
    let exp = token.expiry();

    // A validator whose clock runs ahead.
    assert!(validate(exp, Duration::ZERO).is_ok());
    assert!(matches!(
        validate(exp + SECOND, Duration::ZERO),
        Err(JwtError::Expired { expired_at, .. }) if expired_at.0 == exp
    ));
    let claims = validate(exp + MAX_LEEWAY, MAX_LEEWAY).unwrap();
    assert_eq!(claims.subject(), &orders());
    assert!(matches!(
        validate(exp + MAX_LEEWAY + SECOND, MAX_LEEWAY),
        Err(JwtError::Expired { .. })
    ));
    // A larger leeway is capped at MAX_LEEWAY.
    assert!(matches!(
        validate(exp + MAX_LEEWAY + SECOND, Duration::from_secs(3600)),
        Err(JwtError::Expired { .. })
    ));

    // A validator whose clock runs behind: a token valid from `nbf`.
    let early = ca
        .issue_bad_jwt_svid(BadJwt::NotYetValid, &orders(), "ledger")
        .unwrap();
    let validate_early = |now: SystemTime, leeway: Duration| {
        validate_jwt_svid(&early, &bundles, "ledger", now, leeway)
    };
    let nbf = nbf_of(&early);
    assert!(validate_early(nbf, Duration::ZERO).is_ok());
    assert!(matches!(
        validate_early(nbf - SECOND, Duration::ZERO),
        Err(JwtError::NotYetValid { not_before, .. }) if not_before.0 == nbf
    ));
    assert!(validate_early(nbf - MAX_LEEWAY, MAX_LEEWAY).is_ok());
    assert!(matches!(
        validate_early(nbf - MAX_LEEWAY - SECOND, Duration::from_secs(3600)),
        Err(JwtError::NotYetValid { .. })
    ));
    source.shutdown().await;
    server.shutdown().await;
}

/// The `nbf` claim of a token, read without validating it.
fn nbf_of(token: &str) -> SystemTime {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(claims["nbf"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_svid_from_the_agent_allows_no_skew_at_either_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let ca_clock = ManualClock::starting_now();
    let agent = FakeCaSource::new(ca_on(&ca_clock), orders(), TTL).unwrap();
    let server = serve(&path, &agent).await;
    let clock = ManualClock::new(ca_clock.now());
    let source = connect(&path, &clock).await;
    let snap = source.current().unwrap();
    let (chain, bundles) = (snap.svid().chain(), snap.bundles());
    let (not_before, not_after) = (snap.svid().not_before(), snap.svid().not_after());

    // A peer whose clock runs behind or ahead by one second too many.
    assert!(matches!(
        verify_x509_svid(chain, bundles, not_before - SECOND, Usage::ServerAuth),
        Err(SvidError::NotYetValid { .. })
    ));
    verify_x509_svid(chain, bundles, not_before, Usage::ServerAuth).unwrap();
    verify_x509_svid(chain, bundles, not_after, Usage::ServerAuth).unwrap();
    assert!(matches!(
        verify_x509_svid(chain, bundles, not_after + SECOND, Usage::ServerAuth),
        Err(SvidError::Expired { .. })
    ));
    // The workload's own clock running ahead: the source stops serving the
    // moment the SVID is past its end, even with the agent still up.
    clock.set(not_after);
    assert!(source.current().is_ok());
    clock.set(not_after + SECOND);
    assert!(matches!(source.current(), Err(SourceError::Expired { .. })));
    source.shutdown().await;
    server.shutdown().await;
}
