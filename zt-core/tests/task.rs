//! Task credentials from the development issuer: the token carries the
//! task's deadline, audiences, scopes, task ID and a token ID; completing
//! or dropping the guard revokes it at once; malformed requests are
//! refused before the service is asked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zt_core::SpiffeId;
use zt_core::revocation::Revocations;
use zt_core::task::{TaskCredential, TaskTokenError, TaskTokenRequest, TaskTokenService};
use zt_core::user::{UserContextError, UserContextValidator};
use zt_dev::DevUserIssuer;

const ISS: &str = "https://tasks.example.org";
const REPORTS: &str = "spiffe://example.org/reports";

fn bot() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/bot").unwrap()
}

fn deadline() -> SystemTime {
    // Whole seconds, as `exp` carries them.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs + 120)
}

fn setup() -> (Arc<dyn TaskTokenService>, UserContextValidator, Revocations) {
    let revocations = Revocations::new();
    let issuer = DevUserIssuer::new(ISS, "unused")
        .unwrap()
        .with_revocations(revocations.clone());
    let validator = UserContextValidator::new(ISS, REPORTS, &issuer.jwks())
        .unwrap()
        .with_revocations(revocations.clone());
    (Arc::new(issuer), validator, revocations)
}

fn request(task: &str) -> TaskTokenRequest {
    TaskTokenRequest::new(task, "bot", bot(), deadline())
        .audience(REPORTS)
        .scope("reports:read")
}

#[tokio::test]
async fn the_token_carries_the_task_and_completing_it_revokes_it() {
    let (service, validator, revocations) = setup();
    let request = request("task-1");
    let credential = TaskCredential::obtain(service, &request, SystemTime::now())
        .await
        .unwrap();
    let user = validator
        .validate_for_caller(credential.token(), SystemTime::now(), &bot())
        .unwrap();
    assert_eq!(user.task_id(), Some("task-1"));
    assert_eq!(user.token_id(), Some(credential.token_id()));
    assert_eq!(user.expiry(), request.deadline);
    assert_eq!(credential.expires(), request.deadline);
    assert_eq!(
        user.scopes().iter().map(|s| &**s).collect::<Vec<_>>(),
        ["reports:read"]
    );
    assert!(!format!("{credential:?}").contains(credential.token()));

    let token = credential.token().to_owned();
    let version = revocations.version();
    credential.complete().unwrap();
    assert_eq!(revocations.version(), version + 1);
    let err = validator.validate(&token, SystemTime::now()).unwrap_err();
    assert!(
        matches!(&err, UserContextError::Revoked { task_id: Some(t), .. } if t == "task-1"),
        "{err:?}"
    );
}

#[tokio::test]
async fn dropping_the_guard_revokes_and_other_tasks_stay_valid() {
    let (service, validator, _revocations) = setup();
    let now = SystemTime::now();
    let first = TaskCredential::obtain(service.clone(), &request("a"), now)
        .await
        .unwrap();
    let second = TaskCredential::obtain(service, &request("b"), now)
        .await
        .unwrap();
    assert_ne!(first.token_id(), second.token_id());
    let token = first.token().to_owned();
    drop(first);
    assert!(matches!(
        validator.validate(&token, SystemTime::now()),
        Err(UserContextError::Revoked { .. })
    ));
    validator
        .validate(second.token(), SystemTime::now())
        .unwrap();
}

#[tokio::test]
async fn the_audience_is_narrowed_to_what_the_task_names() {
    let revocations = Revocations::new();
    let issuer = DevUserIssuer::new(ISS, "unused")
        .unwrap()
        .with_revocations(revocations);
    let payroll =
        UserContextValidator::new(ISS, "spiffe://example.org/payroll", &issuer.jwks()).unwrap();
    let credential = TaskCredential::obtain(Arc::new(issuer), &request("aud"), SystemTime::now())
        .await
        .unwrap();
    let err = payroll
        .validate(credential.token(), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(&err, UserContextError::WrongAudience { found, .. } if found == &[REPORTS.to_owned()]),
        "{err:?}"
    );
}

#[tokio::test]
async fn malformed_requests_are_refused_before_the_service() {
    let (service, _, _) = setup();
    let now = SystemTime::now();
    let cases = [
        TaskTokenRequest::new("", "bot", bot(), deadline()).audience(REPORTS),
        TaskTokenRequest::new("t", "bot", bot(), deadline()),
        TaskTokenRequest::new("t", "bot", bot(), deadline())
            .audience(REPORTS)
            .scope("bad scope\"x"),
        TaskTokenRequest::new("t", "bot", bot(), now - Duration::from_secs(1)).audience(REPORTS),
        TaskTokenRequest::new("t", "", bot(), deadline()).audience(REPORTS),
    ];
    for case in cases {
        let err = TaskCredential::obtain(service.clone(), &case, now)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TaskTokenError::BadRequest { .. }),
            "{case:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn without_a_revocation_list_the_development_issuer_reports_the_failure() {
    let issuer: Arc<dyn TaskTokenService> = Arc::new(DevUserIssuer::new(ISS, "unused").unwrap());
    let credential = TaskCredential::obtain(issuer, &request("t"), SystemTime::now())
        .await
        .unwrap();
    assert!(matches!(
        credential.complete(),
        Err(TaskTokenError::Service { .. })
    ));
}
