//! Credentials that end with the task.
//!
//! A job runner (a CI step, a batch job, an automation bot) does its work
//! as a series of tasks. For each one it asks a [`TaskTokenService`] for a
//! token scoped to that task alone, in the shape of an RFC 8693 token
//! exchange: the runner presents what it is (its SPIFFE ID, which becomes
//! the token's current actor) and asks for a token
//!
//! - whose lifetime is the task's deadline (`exp`),
//! - whose audiences (`aud`) and scopes (`scope`) are narrowed to what the
//!   task needs,
//! - which carries the task ID (`task_id`) and a token ID (`jti`).
//!
//! The token is a user-context token ([`crate::user`]): services accept it
//! with a [`UserContextValidator`](crate::user::UserContextValidator) and
//! bind it to the runner by actor binding, policy rules see its scopes,
//! and audit records carry its task ID.
//!
//! The token comes wrapped in a [`TaskCredential`] guard. Calling
//! [`complete`](TaskCredential::complete), or dropping the guard, revokes
//! the token at once: the service records the `jti` in the
//! [`Revocations`](crate::revocation::Revocations) every validator checks
//! (see [`Revocations::revoke_token_id`](crate::revocation::Revocations::revoke_token_id)),
//! so the next request made with it is refused, even before its deadline.
//!
//! Issuance and revocation are audited as `tracing` events with target
//! `zt::audit` carrying the task ID, the token ID, the subject, the
//! audiences and scopes (never the token), so the trail answers "what did
//! task X touch" together with the authorization records of the requests
//! made with it (their `task` field).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::SpiffeId;
use crate::source::BoxFuture;
use crate::time::Timestamp;
use crate::user::{MAX_ID_LEN, MAX_SCOPES, is_scope_token};

/// What a task needs: the request a [`TaskTokenService`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskTokenRequest {
    /// The task's ID (the `task_id` claim).
    pub task_id: String,
    /// The principal the task acts for (the `sub` claim): the runner's own
    /// identity, or the user who asked for the task.
    pub subject: String,
    /// The workload that runs the task and presents the token (the current
    /// actor, `act.sub`); services bind the token to it.
    pub actor: SpiffeId,
    /// The services the task calls (the `aud` claim), at least one.
    pub audiences: Vec<String>,
    /// The scopes the task needs (the `scope` claim).
    pub scopes: Vec<String>,
    /// When the task must be done: the token's `exp`.
    pub deadline: SystemTime,
}

impl TaskTokenRequest {
    /// A request for task `task_id`, acting for `subject`, run by `actor`,
    /// until `deadline`, with no audiences or scopes yet.
    pub fn new(
        task_id: impl Into<String>,
        subject: impl Into<String>,
        actor: SpiffeId,
        deadline: SystemTime,
    ) -> Self {
        Self {
            task_id: task_id.into(),
            subject: subject.into(),
            actor,
            audiences: Vec::new(),
            scopes: Vec::new(),
            deadline,
        }
    }

    /// Adds an audience: a service the task calls.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Adds a scope the task needs.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Checks the request's shape at time `now`: a task ID and subject
    /// that are non-empty and at most [`MAX_ID_LEN`] bytes, at least one
    /// audience, valid scope tokens (at most [`MAX_SCOPES`]), a deadline in
    /// the future.
    ///
    /// # Errors
    ///
    /// [`TaskTokenError::BadRequest`] naming the first problem.
    pub fn check(&self, now: SystemTime) -> Result<(), TaskTokenError> {
        let bad = |reason: String| Err(TaskTokenError::BadRequest { reason });
        if self.task_id.is_empty() || self.task_id.len() > MAX_ID_LEN {
            return bad(format!("the task ID must be 1 to {MAX_ID_LEN} bytes long"));
        }
        if self.task_id.chars().any(char::is_control) {
            return bad("the task ID holds a control character".to_owned());
        }
        if self.subject.is_empty() {
            return bad("the subject is empty".to_owned());
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return bad("a task token needs at least one non-empty audience".to_owned());
        }
        if self.scopes.len() > MAX_SCOPES {
            return bad(format!("more than {MAX_SCOPES} scopes"));
        }
        if let Some(scope) = self.scopes.iter().find(|s| !is_scope_token(s)) {
            return bad(format!("`{scope}` is not an RFC 6749 scope token"));
        }
        if self.deadline <= now {
            return bad(format!(
                "the deadline {} has passed (now {})",
                Timestamp(self.deadline),
                Timestamp(now)
            ));
        }
        Ok(())
    }
}

/// A token a [`TaskTokenService`] issued.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedTaskToken {
    /// The token (a bearer credential: never log it).
    pub token: String,
    /// Its ID (`jti`), by which it is revoked.
    pub token_id: String,
    /// Its expiry (`exp`): the task's deadline or earlier.
    pub expires: SystemTime,
}

impl IssuedTaskToken {
    /// A token `token` with ID `token_id` expiring at `expires`.
    pub fn new(token: String, token_id: String, expires: SystemTime) -> Self {
        Self {
            token,
            token_id,
            expires,
        }
    }
}

impl fmt::Debug for IssuedTaskToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTaskToken")
            .field("token", &"<redacted>")
            .field("token_id", &self.token_id)
            .field("expires", &Timestamp(self.expires))
            .finish()
    }
}

/// Why a task token could not be issued or revoked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskTokenError {
    /// The request is malformed (see [`TaskTokenRequest::check`]).
    #[error("the task token request is invalid: {reason}")]
    BadRequest {
        /// What was wrong.
        reason: String,
    },
    /// The token service refused or failed.
    #[error("the task token service failed: {reason}")]
    Service {
        /// What the service reported.
        reason: String,
    },
}

/// Issues and revokes task-scoped tokens (RFC 8693 token exchange shaped).
///
/// An implementation that calls a remote token-exchange endpoint must
/// authenticate the runner (its mTLS identity) and refuse audiences and
/// scopes the runner may not ask for; the development issuer
/// (`zt_dev::DevUserIssuer`) signs locally and refuses nothing but
/// malformed requests.
pub trait TaskTokenService: Send + Sync + fmt::Debug {
    /// Issues a token for `request` (already [checked](TaskTokenRequest::check)
    /// by [`TaskCredential::obtain`]).
    ///
    /// # Errors
    ///
    /// Why the token was not issued.
    fn issue<'a>(
        &'a self,
        request: &'a TaskTokenRequest,
    ) -> BoxFuture<'a, Result<IssuedTaskToken, TaskTokenError>>;

    /// Revokes the token with ID `token_id`, which expires at `expires`,
    /// everywhere it is checked. Called from a destructor: it must not
    /// block, and it must take effect locally before it returns (a remote
    /// service records the revocation in the local
    /// [`Revocations`](crate::revocation::Revocations) and notifies the
    /// remote one in the background).
    ///
    /// # Errors
    ///
    /// Why the revocation could not be recorded.
    fn revoke(&self, token_id: &str, expires: SystemTime) -> Result<(), TaskTokenError>;
}

/// A task-scoped token, revoked when the task ends: by
/// [`complete`](Self::complete) or when the guard is dropped (a task that
/// fails or panics loses its access too).
///
/// `Debug` shows the task and token IDs, never the token.
pub struct TaskCredential {
    service: Arc<dyn TaskTokenService>,
    task_id: String,
    issued: IssuedTaskToken,
    revoked: bool,
}

impl fmt::Debug for TaskCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCredential")
            .field("task_id", &self.task_id)
            .field("token_id", &self.issued.token_id)
            .field("expires", &Timestamp(self.issued.expires))
            .finish_non_exhaustive()
    }
}

impl TaskCredential {
    /// Checks `request` at time `now` and obtains its token from `service`.
    /// The issuance is audited (target `zt::audit`, `event =
    /// "task-credential-issued"`).
    ///
    /// # Errors
    ///
    /// [`TaskTokenError::BadRequest`] for a malformed request, else what
    /// the service reported; a token that expires after the deadline is
    /// refused ([`TaskTokenError::Service`]) and revoked.
    pub async fn obtain(
        service: Arc<dyn TaskTokenService>,
        request: &TaskTokenRequest,
        now: SystemTime,
    ) -> Result<Self, TaskTokenError> {
        request.check(now)?;
        let issued = service.issue(request).await?;
        let credential = Self {
            service,
            task_id: request.task_id.clone(),
            issued,
            revoked: false,
        };
        if credential.issued.expires > request.deadline {
            // Dropping the credential revokes the token.
            return Err(TaskTokenError::Service {
                reason: format!(
                    "the token expires at {}, after the task's deadline {}",
                    Timestamp(credential.issued.expires),
                    Timestamp(request.deadline)
                ),
            });
        }
        tracing::info!(
            target: "zt::audit",
            event = "task-credential-issued",
            task = %request.task_id,
            token_id = %credential.issued.token_id,
            subject = %request.subject,
            actor = %request.actor,
            audiences = %request.audiences.join(","),
            scopes = %request.scopes.join(" "),
            expires = %Timestamp(credential.issued.expires),
            "task credential issued"
        );
        Ok(credential)
    }

    /// The token, for the task's requests (a bearer credential: never log
    /// it).
    pub fn token(&self) -> &str {
        &self.issued.token
    }

    /// The token's ID (`jti`).
    pub fn token_id(&self) -> &str {
        &self.issued.token_id
    }

    /// The task's ID.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// When the token expires.
    pub fn expires(&self) -> SystemTime {
        self.issued.expires
    }

    /// Ends the task: revokes the token now. The revocation is audited
    /// (`event = "task-credential-revoked"`, `ended = "complete"`).
    ///
    /// # Errors
    ///
    /// What the service reported if the revocation could not be recorded.
    pub fn complete(mut self) -> Result<(), TaskTokenError> {
        self.revoke("complete")
    }

    fn revoke(&mut self, ended: &'static str) -> Result<(), TaskTokenError> {
        if self.revoked {
            return Ok(());
        }
        self.revoked = true;
        let result = self
            .service
            .revoke(&self.issued.token_id, self.issued.expires);
        match &result {
            Ok(()) => tracing::info!(
                target: "zt::audit",
                event = "task-credential-revoked",
                task = %self.task_id,
                token_id = %self.issued.token_id,
                ended,
                "task credential revoked"
            ),
            Err(error) => tracing::error!(
                target: "zt::audit",
                event = "task-credential-revocation-failed",
                task = %self.task_id,
                token_id = %self.issued.token_id,
                ended,
                %error,
                "task credential could not be revoked; it stays valid until it expires"
            ),
        }
        result
    }
}

impl Drop for TaskCredential {
    fn drop(&mut self) {
        // A failure is logged by `revoke`; a destructor cannot report it.
        let _ = self.revoke("dropped");
    }
}
