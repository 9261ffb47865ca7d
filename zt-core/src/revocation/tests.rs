use std::time::Duration;

use super::*;

fn id(text: &str) -> SpiffeId {
    SpiffeId::new(text).expect("test ID is valid")
}

#[test]
fn changes_bumps_on_every_effective_api_change_and_only_then() {
    let revocations = Revocations::new();
    let rx = revocations.changes();
    assert_eq!(*rx.borrow(), 0);

    let billing = id("spiffe://example.org/billing");
    revocations.revoke_id(billing.clone());
    assert_eq!(*rx.borrow(), 1);
    revocations.revoke_id(billing.clone());
    assert_eq!(*rx.borrow(), 1, "revoking a revoked ID changes nothing");

    revocations.revoke_serial(&[0x00, 0x8f]);
    assert_eq!(*rx.borrow(), 2);
    revocations.revoke_serial(&[0x8f]);
    assert_eq!(*rx.borrow(), 2, "the same serial without its zero pad");

    revocations.reinstate_serial(&[0x8f]);
    assert_eq!(*rx.borrow(), 3);
    revocations.reinstate_serial(&[0x8f]);
    assert_eq!(*rx.borrow(), 3);

    revocations.replace(RevocationSet::new().with_id(billing.clone()));
    assert_eq!(*rx.borrow(), 3, "replacing with the same entries");
    revocations.replace(RevocationSet::new());
    assert_eq!(*rx.borrow(), 4);
    assert_eq!(revocations.check(&billing, &[1]), None);

    revocations.reinstate_id(&billing);
    assert_eq!(*rx.borrow(), 4, "reinstating what is not revoked");
}

#[test]
fn changes_bumps_on_a_file_reload_that_changes_the_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("revoked.toml");
    std::fs::write(&path, "ids = []\n").expect("write");
    let revocations = Revocations::from_file(&path).expect("valid file");
    let rx = revocations.changes();
    let start = *rx.borrow();

    std::fs::write(&path, "serials = [\"0x8f\"]\n").expect("write");
    assert_eq!(revocations.reload(), Ok(ReloadOutcome::Applied));
    assert_eq!(*rx.borrow(), start + 1);

    // Other text, same entries: applied, but `check` answers as before.
    std::fs::write(&path, "# edited\nserials = [\"8f\"]\n").expect("write");
    assert!(
        revocations.reload().is_err(),
        "bare hex with letters is refused"
    );
    std::fs::write(&path, "# edited\nserials = [\"00:8f\"]\n").expect("write");
    assert_eq!(revocations.reload(), Ok(ReloadOutcome::Applied));
    assert_eq!(*rx.borrow(), start + 1);

    std::fs::write(&path, "serials = []\n").expect("write");
    assert_eq!(revocations.reload(), Ok(ReloadOutcome::Applied));
    assert_eq!(*rx.borrow(), start + 2);
}

#[tokio::test]
async fn changes_wakes_a_waiting_task_from_another_clone() {
    let revocations = Revocations::new();
    let mut rx = revocations.changes();
    let writer = revocations.clone();
    let waiter = tokio::spawn(async move {
        rx.changed().await.expect("sender alive");
        *rx.borrow_and_update()
    });
    writer.revoke_serial(&[0x01]);
    let version = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken within the deadline")
        .expect("task ran");
    assert_eq!(version, 1);
}

#[test]
fn a_revoked_token_id_is_refused_bumps_the_version_once_and_survives_a_replace() {
    let revocations = Revocations::new();
    let start = revocations.version();
    let exp = SystemTime::now() + Duration::from_secs(600);
    assert!(!revocations.is_token_revoked("t-1"));
    revocations.revoke_token_id("t-1", exp);
    assert!(revocations.is_token_revoked("t-1"));
    assert!(!revocations.is_token_revoked("t-2"));
    assert_eq!(revocations.version(), start + 1);
    revocations.revoke_token_id("t-1", exp);
    assert_eq!(revocations.version(), start + 1, "already revoked");
    revocations.replace(RevocationSet::new().with_serial(&[7]));
    assert!(revocations.is_token_revoked("t-1"), "a replace keeps it");
}

#[test]
fn expired_token_ids_are_dropped_at_the_next_revocation() {
    let revocations = Revocations::new();
    let now = SystemTime::now();
    revocations.revoke_token_id("old", now - crate::jwt::MAX_LEEWAY - Duration::from_secs(1));
    revocations.revoke_token_id("fresh", now + Duration::from_secs(60));
    assert!(!revocations.is_token_revoked("old"));
    assert!(revocations.is_token_revoked("fresh"));
    assert_eq!(revocations.revoked_token_ids(), 1);
}
