#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]
//! `WorkloadApiSource` follows X.509-SVIDs and JWT bundles as independent
//! streams, against `zt agent` (the fake CA's Workload API server) on a real
//! Unix socket, with the agent doing what a SPIRE agent does: several SVIDs
//! per caller with hints, a JWT key rotated and revoked on its own, the JWT
//! stream withdrawn, slow answers.
//!
//! The caller and the service each hold their own source on their own
//! agent socket. Waits for pushed updates poll with a deadline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zt_core::jwt::{JwtError, validate_jwt_svid};
use zt_core::source::{
    Plane, PlaneHealth, Snapshot, SourceError, SvidPicker, SvidSource, WorkloadApiSource,
    WorkloadApiSourceBuilder,
};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{AgentFaults, FakeCa, FakeCaSource, WorkloadApiServer, WorkloadApiServerHandle};

/// Upper bound on any wait for something pushed over the socket.
const DEADLINE: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(300);
const AUDIENCE: &str = "spiffe://example.org/orders";

fn id(path: &str) -> SpiffeId {
    SpiffeId::new(format!("spiffe://example.org/{path}")).unwrap()
}

/// One `zt agent` on its own socket, serving `identities` (path, hint) in
/// that order, all issued by `ca`.
struct Agent {
    _dir: tempfile::TempDir,
    server: WorkloadApiServerHandle,
    faults: AgentFaults,
    sources: Vec<Arc<FakeCaSource>>,
}

impl Agent {
    async fn start(ca: &FakeCa, identities: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sources: Vec<Arc<FakeCaSource>> = identities
            .iter()
            .map(|(path, _)| FakeCaSource::new(ca.clone(), id(path), TTL).unwrap())
            .collect();
        let mut server = WorkloadApiServer::new(sources[0].clone()).with_hint(identities[0].1);
        for (source, (_, hint)) in sources.iter().zip(identities).skip(1) {
            server = server.with_identity(source.clone(), *hint);
        }
        let faults = server.faults();
        let server = server.serve_unix(socket(&dir)).await.unwrap();
        Self {
            _dir: dir,
            server,
            faults,
            sources,
        }
    }

    fn builder(&self) -> WorkloadApiSourceBuilder {
        WorkloadApiSource::builder()
            .endpoint(self.server.endpoint())
            .initial_sync_timeout(DEADLINE)
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
    }

    async fn source(&self) -> Arc<WorkloadApiSource> {
        self.builder().build().await.unwrap()
    }
}

fn socket(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("agent.sock")
}

fn ca() -> FakeCa {
    FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap()
}

/// Polls until `pred` holds for the source's current snapshot.
async fn wait_for_snapshot(
    source: &WorkloadApiSource,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(snapshot) = source.current()
            && pred(&snapshot)
        {
            return snapshot;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; health: {:?}",
            source.health()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls until `pred` holds for the source's per-stream health.
async fn wait_for_planes(
    source: &WorkloadApiSource,
    what: &str,
    pred: impl Fn(&PlaneHealth, &PlaneHealth) -> bool,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let planes = source.planes_health();
        if pred(&planes.x509, &planes.jwt_bundles) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; planes: {planes:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn has_key(snapshot: &Snapshot, key_id: &str) -> bool {
    snapshot
        .bundles()
        .get(&TrustDomain::new("example.org").unwrap())
        .is_some_and(|b| b.jwt_authority(key_id).is_some())
}

fn validate(snapshot: &Snapshot, token: &str) -> Result<(), JwtError> {
    validate_jwt_svid(
        token,
        snapshot.bundles(),
        AUDIENCE,
        SystemTime::now(),
        Duration::ZERO,
    )
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_fetched_a_jwt_validates_a_callers_token_on_its_first_request() {
    let ca = ca();
    let service_agent = Agent::start(&ca, &[("orders", "")]).await;
    let caller_agent = Agent::start(&ca, &[("billing", "")]).await;
    let service = service_agent.source().await;
    let caller = caller_agent.source().await;

    let token = caller.fetch_jwt_svid(&[AUDIENCE.to_owned()]).await.unwrap();
    assert_eq!(token.subject(), &id("billing"));
    // The service has fetched nothing; its first snapshot already carries
    // the JWT authorities.
    validate(&service.current().unwrap(), token.token()).unwrap();
    assert_eq!(service.planes_health().jwt_bundles, PlaneHealth::Healthy);
    service.shutdown().await;
    caller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_key_rotated_and_revoked_on_its_own_reaches_the_snapshot_without_an_x509_update() {
    let ca = ca();
    let agent = Agent::start(&ca, &[("orders", "")]).await;
    let service = agent.source().await;
    let first = service.current().unwrap();
    let old_key = ca.jwt_key_ids()[0].clone();
    let old_token = ca
        .issue_jwt_svid(&id("billing"), &[AUDIENCE], Duration::from_secs(120))
        .unwrap();

    // prepare + activate: a new signing key, the X.509 CA untouched.
    let new_key = ca.rotate_jwt_key().unwrap();
    agent.sources[0].refresh_bundles().unwrap();
    let rotated = wait_for_snapshot(&service, "the new JWT key", |s| has_key(s, &new_key)).await;
    // No X.509 update carried it: the same SVID is served.
    assert_eq!(rotated.svid().serial(), first.svid().serial());
    let new_token = ca
        .issue_jwt_svid(&id("billing"), &[AUDIENCE], Duration::from_secs(120))
        .unwrap();
    assert_eq!(ca.jwt_key_ids().last(), Some(&new_key), "the new key signs");
    validate(&rotated, new_token.token()).unwrap();
    validate(&rotated, old_token.token()).unwrap();

    // revoke: tokens signed by the old key are refused, naming the key.
    assert!(ca.revoke_jwt_key(&old_key).unwrap());
    agent.sources[0].refresh_bundles().unwrap();
    let revoked =
        wait_for_snapshot(&service, "the old JWT key gone", |s| !has_key(s, &old_key)).await;
    assert_eq!(revoked.svid().serial(), first.svid().serial());
    match validate(&revoked, old_token.token()) {
        Err(JwtError::UnknownKeyId { key_id, .. }) => assert_eq!(key_id, old_key),
        other => panic!("expected UnknownKeyId, got {other:?}"),
    }
    validate(&revoked, new_token.token()).unwrap();
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_jwt_stream_never_holds_back_an_x509_rotation_and_recovers_by_itself() {
    let ca = ca();
    let agent = Agent::start(&ca, &[("orders", "")]).await;
    let service = agent.source().await;
    let key = ca.jwt_key_ids()[0].clone();

    agent.faults.withdraw_jwt_bundles(true);
    wait_for_planes(&service, "the JWT stream's withdrawal", |x509, jwt| {
        *x509 == PlaneHealth::Healthy && matches!(jwt, PlaneHealth::Degraded { .. })
    })
    .await;
    let PlaneHealth::Degraded { reason } = service.planes_health().jwt_bundles else {
        unreachable!()
    };
    assert!(reason.contains("withdrew the JWT bundles"), "{reason}");

    // An X.509 rotation while the JWT stream is down is taken at once, with
    // the last JWT bundles received.
    let rotated = agent.sources[0].rotate_now().unwrap();
    let seen = wait_for_snapshot(&service, "the X.509 rotation", |s| {
        s.svid().serial() == rotated.svid().serial()
    })
    .await;
    assert!(has_key(&seen, &key));
    assert_eq!(service.planes_health().x509, PlaneHealth::Healthy);
    let health = format!("{:?}", service.health());
    assert!(health.contains("JWT bundle stream"), "{health}");

    // The agent serves JWT bundles again: the stream reconnects by itself
    // and health clears, though the bundles did not change.
    agent.faults.withdraw_jwt_bundles(false);
    wait_for_planes(&service, "the JWT stream's recovery", |x509, jwt| {
        *x509 == PlaneHealth::Healthy && *jwt == PlaneHealth::Healthy
    })
    .await;
    assert!(service.health().is_serving());
    assert_eq!(format!("{:?}", service.health()), "Healthy");
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_names_the_jwt_bundles_when_only_they_did_not_arrive() {
    let ca = ca();
    let agent = Agent::start(&ca, &[("orders", "")]).await;
    agent.faults.withdraw_jwt_bundles(true);
    let err = agent
        .builder()
        .initial_sync_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap_err();
    let SourceError::InitialSync { plane, reason, .. } = &err else {
        panic!("expected InitialSync, got {err:?}");
    };
    assert_eq!(*plane, Plane::JwtBundles);
    assert!(reason.contains("withdrew the JWT bundles"), "{reason}");
    assert!(err.to_string().contains("no JWT bundle arrived"), "{err}");

    // Turned off, the JWT stream is not waited for; a token is then refused
    // with a reason that says the bundle is missing, not the key.
    let service = agent.builder().jwt_bundles(false).build().await.unwrap();
    assert_eq!(service.planes_health().jwt_bundles, PlaneHealth::Off);
    let token = ca
        .issue_jwt_svid(&id("billing"), &[AUDIENCE], Duration::from_secs(120))
        .unwrap();
    match validate(&service.current().unwrap(), token.token()) {
        Err(JwtError::NoJwtBundle {
            key_id,
            trust_domain,
        }) => {
            assert_eq!(Some(&key_id), ca.jwt_key_ids().last());
            assert_eq!(trust_domain, "example.org");
        }
        other => panic!("expected NoJwtBundle, got {other:?}"),
    }
    // It still fetches JWT-SVIDs of its own.
    let own = service
        .fetch_jwt_svid(&["spiffe://example.org/ledger".to_owned()])
        .await
        .unwrap();
    assert_eq!(own.subject(), &id("orders"));
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_svid_does_not_depend_on_the_agents_order_and_the_picker_chooses() {
    let ca = ca();
    let one = Agent::start(&ca, &[("orders", "internal"), ("billing", "external")]).await;
    let other = Agent::start(&ca, &[("billing", "external"), ("orders", "internal")]).await;
    for agent in [&one, &other] {
        let source = agent.source().await;
        let snapshot = source.current().unwrap();
        assert_eq!(snapshot.svid().id(), &id("billing"), "smallest ID first");
        assert_eq!(snapshot.svid().hint(), Some("external"));
        source.shutdown().await;

        let internal = agent
            .builder()
            .picker(SvidPicker::Hint("internal".into()))
            .build()
            .await
            .unwrap();
        assert_eq!(internal.current().unwrap().svid().id(), &id("orders"));
        // JWT-SVIDs are for the identity the X.509 side picked.
        let token = internal
            .fetch_jwt_svid(&[AUDIENCE.to_owned()])
            .await
            .unwrap();
        assert_eq!(token.subject(), &id("orders"));
        internal.shutdown().await;

        let by_id = agent
            .builder()
            .picker(SvidPicker::Id(id("billing")))
            .build()
            .await
            .unwrap();
        assert_eq!(by_id.current().unwrap().svid().id(), &id("billing"));
        let token = by_id.fetch_jwt_svid(&[AUDIENCE.to_owned()]).await.unwrap();
        assert_eq!(token.subject(), &id("billing"));
        by_id.shutdown().await;
    }

    let err = one
        .builder()
        .picker(SvidPicker::Hint("nope".into()))
        .build()
        .await
        .unwrap_err();
    let SourceError::NoMatchingSvid { wanted, offered } = &err else {
        panic!("expected NoMatchingSvid, got {err:?}");
    };
    assert_eq!(wanted, "hint `nope`");
    assert!(offered.contains("(hint `internal`)"), "{offered}");
    assert!(
        offered.contains("spiffe://example.org/billing"),
        "{offered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agent_times_out_jwt_fetches_and_x509_keeps_rotating() {
    let ca = ca();
    let agent = Agent::start(&ca, &[("orders", "")]).await;
    let source = agent
        .builder()
        .call_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    agent.faults.set_delay(Duration::from_secs(3600));
    let started = tokio::time::Instant::now();
    let err = source
        .fetch_jwt_svid(&[AUDIENCE.to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Timeout { call: "FetchJWTSVID", after } if after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // The X.509 stream is not held up by the hanging call: a rotation
    // still arrives.
    let rotated = agent.sources[0].rotate_now().unwrap();
    wait_for_snapshot(&source, "the rotation", |s| {
        s.svid().serial() == rotated.svid().serial()
    })
    .await;

    agent.faults.set_delay(Duration::ZERO);
    let token = source.fetch_jwt_svid(&[AUDIENCE.to_owned()]).await.unwrap();
    assert_eq!(token.subject(), &id("orders"));
    source.shutdown().await;
}
