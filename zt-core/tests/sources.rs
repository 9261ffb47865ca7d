//! Source behaviour shared by every backend: fail closed before the first
//! SVID, last good snapshot on upstream failure, clear expiry, recovery.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use zt_core::source::{FileLayout, FileSource, Health, SourceError, StaticSource, SvidSource};
use zt_core::time::ManualClock;
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn id(path: &str) -> SpiffeId {
    SpiffeId::new(format!("spiffe://example.org{path}")).unwrap()
}

fn ca(clock: &ManualClock) -> FakeCa {
    FakeCa::builder(td())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

#[test]
fn static_source_fails_closed_once_its_svid_expires() {
    let clock = ManualClock::starting_now();
    let ca = ca(&clock);
    let svid = ca
        .issue_x509_svid(&id("/a"), Duration::from_secs(10))
        .unwrap();
    let source = StaticSource::with_clock(
        svid,
        BundleSet::new().with(ca.bundle()),
        Arc::new(clock.clone()),
    );
    assert_eq!(source.health(), Health::Healthy);
    assert_eq!(source.current().unwrap().svid().id(), &id("/a"));
    clock.advance(Duration::from_secs(11));
    let err = source.current().unwrap_err();
    assert!(matches!(err, SourceError::Expired { .. }), "{err:?}");
    assert!(err.to_string().contains("spiffe://example.org/a"), "{err}");
    assert!(matches!(source.health(), Health::Expired { .. }));
}

#[test]
fn fake_ca_source_publishes_each_rotation_to_subscribers() {
    let clock = ManualClock::starting_now();
    let source = FakeCaSource::new(ca(&clock), id("/orders"), Duration::from_secs(60)).unwrap();
    let mut updates = source.updates();
    let first = source.current().unwrap();
    source.rotate_now().unwrap();
    assert!(updates.has_changed().unwrap());
    let seen = updates.borrow_and_update().clone().unwrap();
    assert_eq!(seen.revision(), first.revision() + 1);
    assert_ne!(seen.svid().serial(), first.svid().serial());
    assert_eq!(seen.svid().id(), &id("/orders"));
}

#[test]
fn fake_ca_source_carries_the_ca_bundle_through_ca_rotation() {
    let clock = ManualClock::starting_now();
    let ca = ca(&clock);
    let source = FakeCaSource::new(ca.clone(), id("/orders"), Duration::from_secs(60)).unwrap();
    ca.rotate().unwrap();
    source.refresh_bundles().unwrap();
    let snap = source.current().unwrap();
    assert_eq!(
        snap.bundles().get(&td()).unwrap().x509_authorities().len(),
        2
    );
}

#[test]
fn fake_ca_source_includes_federated_bundles() {
    let clock = ManualClock::starting_now();
    let source = FakeCaSource::new(ca(&clock), id("/orders"), Duration::from_secs(60)).unwrap();
    let partner = FakeCa::new(TrustDomain::new("partner.example").unwrap()).unwrap();
    source.add_federated_bundle(partner.bundle()).unwrap();
    let snap = source.current().unwrap();
    assert_eq!(snap.bundles().len(), 2);
    assert!(snap.bundles().get(partner.trust_domain()).is_some());
}

#[tokio::test]
async fn fake_ca_source_issues_jwt_svids_for_its_id() {
    let clock = ManualClock::starting_now();
    let source = FakeCaSource::new(ca(&clock), id("/orders"), Duration::from_secs(60)).unwrap();
    let token = source
        .fetch_jwt_svid(&["billing".to_owned()])
        .await
        .unwrap();
    assert_eq!(token.subject(), &id("/orders"));
    assert_eq!(token.audience(), ["billing"]);
}

fn write_layout(dir: &std::path::Path, ca: &FakeCa, path: &str, ttl: Duration) -> FileLayout {
    let svid = ca.issue_x509_svid(&id(path), ttl).unwrap();
    let layout = FileLayout::spiffe_helper(dir);
    std::fs::write(&layout.cert, svid.chain_pem()).unwrap();
    std::fs::write(&layout.key, svid.key_pem()).unwrap();
    std::fs::write(&layout.bundle, ca.bundle().to_pem()).unwrap();
    layout
}

#[test]
fn file_source_reloads_changed_files_and_ignores_unchanged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let ca = ca(&clock);
    let layout = write_layout(dir.path(), &ca, "/one", Duration::from_secs(60));
    let source = FileSource::open_with_clock(layout.clone(), Arc::new(clock.clone())).unwrap();
    assert_eq!(source.current().unwrap().svid().id(), &id("/one"));
    assert!(!source.reload().unwrap(), "unchanged files publish nothing");
    write_layout(dir.path(), &ca, "/two", Duration::from_secs(60));
    assert!(source.reload().unwrap());
    assert_eq!(source.current().unwrap().svid().id(), &id("/two"));
    assert_eq!(source.current().unwrap().revision(), 2);
}

#[test]
fn file_source_keeps_last_good_svid_when_files_break_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let ca = ca(&clock);
    let layout = write_layout(dir.path(), &ca, "/one", Duration::from_secs(60));
    let source = FileSource::open_with_clock(layout.clone(), Arc::new(clock.clone())).unwrap();

    std::fs::write(&layout.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    assert!(source.reload().is_err());
    assert_eq!(source.current().unwrap().svid().id(), &id("/one"));
    assert!(matches!(source.health(), Health::Degraded { .. }));

    std::fs::remove_file(&layout.key).unwrap();
    let err = source.reload().unwrap_err();
    assert!(matches!(err, SourceError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("svid_key.pem"), "{err}");

    // Past expiry, the stale SVID is no longer served.
    clock.advance(Duration::from_secs(61));
    assert!(matches!(source.current(), Err(SourceError::Expired { .. })));

    // Fresh files: recovery without a restart.
    write_layout(dir.path(), &ca, "/one", Duration::from_secs(60));
    assert!(source.reload().unwrap());
    assert_eq!(source.health(), Health::Healthy);
    assert!(source.current().is_ok());
}

#[test]
fn file_source_rejects_a_bundle_that_is_not_pem() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let ca = ca(&clock);
    let layout = write_layout(dir.path(), &ca, "/one", Duration::from_secs(60));
    std::fs::write(&layout.bundle, "{\"keys\": 5}").unwrap();
    let err = FileSource::open(layout).unwrap_err();
    assert!(matches!(err, SourceError::Bundle(_)), "{err:?}");
}

#[test]
fn file_source_reads_the_csi_driver_layout_with_federated_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let ca = FakeCa::new(td()).unwrap();
    let partner = FakeCa::new(TrustDomain::new("partner.example").unwrap()).unwrap();
    let svid = ca
        .issue_x509_svid(&id("/x"), Duration::from_secs(60))
        .unwrap();
    let layout = FileLayout::csi_driver_spiffe(dir.path()).with_federated(
        partner.trust_domain().clone(),
        dir.path().join("partner.json"),
    );
    std::fs::write(&layout.cert, svid.chain_pem()).unwrap();
    std::fs::write(&layout.key, svid.key_pem()).unwrap();
    std::fs::write(&layout.bundle, ca.bundle().to_pem()).unwrap();
    std::fs::write(
        dir.path().join("partner.json"),
        partner.bundle().to_spiffe_json().unwrap(),
    )
    .unwrap();
    let source = FileSource::open(layout).unwrap();
    let snap = source.current().unwrap();
    assert_eq!(snap.bundles().len(), 2);
    assert_eq!(
        snap.bundles()
            .get(partner.trust_domain())
            .unwrap()
            .jwt_authorities()
            .count(),
        1
    );
}

/// Writes the files the way spiffe-helper rotates them: the certificate
/// chain first, then, in a separate write, the key.
fn write_cert_only(layout: &FileLayout, svid: &zt_core::svid::X509Svid) {
    std::fs::write(&layout.cert, svid.chain_pem()).unwrap();
}

#[test]
fn file_source_never_publishes_a_new_certificate_with_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let ca = ca(&clock);
    let layout = write_layout(dir.path(), &ca, "/one", Duration::from_secs(600));
    let source = FileSource::open_with_clock(layout.clone(), Arc::new(clock.clone())).unwrap();
    let first = source.current().unwrap().svid().serial().to_vec();

    let next = ca
        .issue_x509_svid(&id("/one"), Duration::from_secs(600))
        .unwrap();
    write_cert_only(&layout, &next);
    // A poll between the two writes.
    let err = source.reload().unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Svid(zt_core::x509::SvidError::KeyMismatch)
        ),
        "{err:?}"
    );
    assert_eq!(source.current().unwrap().svid().serial(), first.as_slice());
    match source.health() {
        Health::Degraded { reason, .. } => {
            assert!(reason.contains("private key does not belong"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    std::fs::write(&layout.key, next.key_pem()).unwrap();
    assert!(source.reload().unwrap());
    assert_eq!(source.current().unwrap().svid().serial(), next.serial());
    assert_eq!(source.health(), Health::Healthy);
}

#[test]
fn file_source_keeps_the_last_good_svid_while_its_chain_does_not_verify_against_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let ca = ca(&clock);
    let layout = write_layout(dir.path(), &ca, "/one", Duration::from_secs(600));
    let source = FileSource::open_with_clock(layout.clone(), Arc::new(clock.clone())).unwrap();
    let first = source.current().unwrap().svid().serial().to_vec();

    // A new CA of the same trust domain: certificate and key written, the
    // bundle not yet.
    let new_ca = FakeCa::builder(td())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let next = new_ca
        .issue_x509_svid(&id("/one"), Duration::from_secs(600))
        .unwrap();
    std::fs::write(&layout.cert, next.chain_pem()).unwrap();
    std::fs::write(&layout.key, next.key_pem()).unwrap();
    let err = source.reload().unwrap_err();
    assert!(matches!(err, SourceError::Svid(_)), "{err:?}");
    assert_eq!(source.current().unwrap().svid().serial(), first.as_slice());
    assert!(matches!(source.health(), Health::Degraded { .. }));

    std::fs::write(&layout.bundle, new_ca.bundle().to_pem()).unwrap();
    assert!(source.reload().unwrap());
    assert_eq!(source.current().unwrap().svid().serial(), next.serial());
}

#[tokio::test]
async fn file_source_watch_retries_soon_after_a_half_written_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let ca = FakeCa::new(td()).unwrap();
    let layout = write_layout(dir.path(), &ca, "/one", Duration::from_secs(600));
    let source = FileSource::open(layout.clone()).unwrap();
    // A full interval far longer than the test may take.
    let _watch = source.watch_with_retry(Duration::from_secs(3600), Duration::from_millis(20));
    // The watcher's first read happens at once: wait until it has
    // published a complete rotation, so the next full read is an hour away.
    let first = ca
        .issue_x509_svid(&id("/one"), Duration::from_secs(600))
        .unwrap();
    std::fs::write(&layout.cert, first.chain_pem()).unwrap();
    std::fs::write(&layout.key, first.key_pem()).unwrap();
    wait_for_serial(&source, first.serial()).await;

    let next = ca
        .issue_x509_svid(&id("/one"), Duration::from_secs(600))
        .unwrap();
    write_cert_only(&layout, &next);
    assert!(source.reload().is_err(), "a poll between the two writes");
    std::fs::write(&layout.key, next.key_pem()).unwrap();

    wait_for_serial(&source, next.serial()).await;
    assert_eq!(source.health(), Health::Healthy);
}

async fn wait_for_serial(source: &FileSource, serial: &[u8]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while source.current().unwrap().svid().serial() != serial {
        assert!(std::time::Instant::now() < deadline, "no read within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn file_source_refuses_a_partner_ca_appended_to_our_bundle_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = FakeCa::new(td()).unwrap();
    let partner = FakeCa::new(TrustDomain::new("partner.example").unwrap()).unwrap();
    let layout = write_layout(dir.path(), &ca, "/one", Duration::from_secs(600));
    // spiffe-helper with include_federated_domains = true appends the
    // federated CAs to svid_bundle.pem.
    let mixed = format!("{}{}", ca.bundle().to_pem(), partner.bundle().to_pem());
    std::fs::write(&layout.bundle, &mixed).unwrap();

    let err = FileSource::open(layout.clone()).unwrap_err();
    assert!(
        matches!(&err, SourceError::Bundle(zt_core::bundle::BundleError::ForeignAuthority { named, .. })
            if named == "spiffe://partner.example"),
        "{err:?}"
    );

    // With federation configured, the partner's CA is an anchor of its own
    // trust domain only: it cannot mint our IDs.
    let partner_file = dir.path().join("partner.pem");
    std::fs::write(&partner_file, partner.bundle().to_pem()).unwrap();
    let layout = layout.with_federated(partner.trust_domain().clone(), &partner_file);
    let source = FileSource::open(layout).unwrap();
    let snapshot = source.current().unwrap();
    let bundles = snapshot.bundles();
    assert_eq!(
        bundles.get(&td()).unwrap().x509_authorities(),
        ca.bundle().x509_authorities()
    );
    // Chains are checked against the bundle of the leaf's own trust
    // domain, so the partner's CA verifies only partner.example IDs.
    assert_eq!(
        bundles
            .get(partner.trust_domain())
            .unwrap()
            .x509_authorities(),
        partner.bundle().x509_authorities()
    );
}
