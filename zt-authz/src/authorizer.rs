//! The authorization decision point: revocation, policy, dry-run and audit
//! in one call.
//!
//! An [`Authorizer`] is what a server layer (zt-server's `AuthorizeLayer`)
//! calls once per request. In order:
//!
//! 1. A request without a verified caller is denied
//!    ([`DecisionReason::Unauthenticated`]).
//! 2. A caller whose SPIFFE ID or leaf serial is on the
//!    [`Revocations`] list is denied ([`DecisionReason::Revoked`]).
//! 3. The [`PolicyEngine`] decides.
//! 4. In dry-run mode, a policy denial (step 3) becomes
//!    [`Verdict::WouldDeny`] and the request proceeds. Steps 1 and 2 are
//!    enforced in every mode: dry-run relaxes rules, never identity.
//! 5. The decision is audited: one [`AuditEvent`] through `tracing` (target
//!    `zt::audit`) and to the [`AuditSink`], if any.
//!
//! # Examples
//!
//! ```
//! use zt_core::SpiffeId;
//! use zt_authz::audit::Verdict;
//! use zt_authz::Authorizer;
//! use zt_authz::policy::{Policy, Request, Rule};
//! use zt_core::revocation::Revocations;
//!
//! let policy = Policy::builder()
//!     .rule(Rule::allow("billing").caller("spiffe://example.org/billing")?)
//!     .build()?;
//! let revocations = Revocations::new();
//! let authz = Authorizer::builder(policy)
//!     .target("ledger")
//!     .revocations(revocations.clone())
//!     .build();
//!
//! let billing = SpiffeId::new("spiffe://example.org/billing")?;
//! let request = Request::new(Some(&billing), "GET", "/entries");
//! assert_eq!(authz.authorize(&request, Some(&[0x2a])).verdict, Verdict::Allow);
//!
//! revocations.revoke_id(billing.clone());
//! assert_eq!(authz.authorize(&request, Some(&[0x2a])).verdict, Verdict::Deny);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::audit::{AuditEvent, AuditSink, Verdict};
use crate::policy::{Decision, DecisionReason, PolicyEngine, Request};
use zt_core::revocation::{Revocations, Revoked};
use zt_core::time::{SharedClock, system_clock};
use zt_core::user::UserContext;

/// The result of [`Authorizer::authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authorization {
    /// What happens to the request.
    pub verdict: Verdict,
    /// The decision behind it (for a dry-run `WouldDeny`, the denial).
    pub decision: Decision,
    /// Set when the caller was refused as revoked.
    pub revoked: Option<Revoked>,
}

impl Authorization {
    /// `true` if the request proceeds.
    pub fn proceeds(&self) -> bool {
        self.verdict.proceeds()
    }

    /// `true` if the request is refused for lack of a verified identity
    /// (HTTP 401, gRPC `UNAUTHENTICATED`), rather than by policy or
    /// revocation (HTTP 403, gRPC `PERMISSION_DENIED`).
    pub fn is_unauthenticated(&self) -> bool {
        self.verdict == Verdict::Deny && self.decision.reason == DecisionReason::Unauthenticated
    }
}

/// Decides and audits requests; see the [module docs](self). Cheap to
/// clone.
#[derive(Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<dyn PolicyEngine>,
    revocations: Option<Revocations>,
    target: Arc<str>,
    dry_run: bool,
    sink: Option<Arc<dyn AuditSink>>,
    clock: SharedClock,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("target", &self.inner.target)
            .field("policy_version", &self.inner.engine.version())
            .field("dry_run", &self.inner.dry_run)
            .field("revocations", &self.inner.revocations)
            .field("audit_sink", &self.inner.sink.is_some())
            .finish()
    }
}

impl Authorizer {
    /// A builder deciding with `engine`: a [`Policy`](crate::policy::Policy),
    /// a [`PolicyStore`](crate::policy::PolicyStore) for hot reload, or any
    /// other [`PolicyEngine`].
    pub fn builder(engine: impl PolicyEngine + 'static) -> AuthorizerBuilder {
        AuthorizerBuilder::new(Arc::new(engine))
    }

    /// The service name audit events carry as `target`.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// `true` in dry-run mode.
    pub fn is_dry_run(&self) -> bool {
        self.inner.dry_run
    }

    /// The engine's current policy version.
    pub fn policy_version(&self) -> Arc<str> {
        self.inner.engine.version()
    }

    /// Decides `request`, whose caller presented a leaf certificate with
    /// `caller_serial` (if known), and audits the decision.
    pub fn authorize(&self, request: &Request<'_>, caller_serial: Option<&[u8]>) -> Authorization {
        let inner = &*self.inner;
        let started = Instant::now();
        let revoked = match (&inner.revocations, request.caller) {
            (Some(list), Some(caller)) => list.check(caller, caller_serial.unwrap_or_default()),
            _ => None,
        };
        let decision = match revoked {
            Some(_) => Decision {
                allowed: false,
                reason: DecisionReason::Revoked,
                rule_id: None,
                audit_only_matches: Vec::new(),
                policy_version: inner.engine.version(),
            },
            None => inner.engine.evaluate(request),
        };
        let verdict = if decision.allowed {
            Verdict::Allow
        } else if inner.dry_run
            && matches!(
                decision.reason,
                DecisionReason::MatchedDeny | DecisionReason::NoMatchingRule
            )
        {
            Verdict::WouldDeny
        } else {
            Verdict::Deny
        };
        let eval_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let event = AuditEvent {
            format: crate::audit::AUDIT_FORMAT,
            time: inner.clock.now(),
            caller: request.caller,
            caller_serial,
            target: &inner.target,
            method: request.method,
            path: request.path,
            route: request.route,
            grpc_method: request.grpc_method,
            user: request.user.map(UserContext::subject),
            act_chain: request.user.map(UserContext::actors).unwrap_or_default(),
            decision: verdict,
            reason: decision.reason.as_str(),
            rule: decision.rule_id.as_deref(),
            policy_version: &decision.policy_version,
            audit_rules: &decision.audit_only_matches,
            eval_ns,
        };
        event.emit();
        if let Some(sink) = &inner.sink {
            sink.record(&event);
        }
        Authorization {
            verdict,
            decision,
            revoked,
        }
    }
}

/// Configures an [`Authorizer`]; from [`Authorizer::builder`].
pub struct AuthorizerBuilder {
    inner: Inner,
}

impl fmt::Debug for AuthorizerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizerBuilder")
            .field("target", &self.inner.target)
            .field("dry_run", &self.inner.dry_run)
            .finish_non_exhaustive()
    }
}

impl AuthorizerBuilder {
    /// A builder deciding with a shared engine.
    pub fn new(engine: Arc<dyn PolicyEngine>) -> Self {
        Self {
            inner: Inner {
                engine,
                revocations: None,
                target: Arc::from("-"),
                dry_run: false,
                sink: None,
                clock: system_clock(),
            },
        }
    }

    /// Names the service in audit events (`target`). Default: `-`.
    #[must_use]
    pub fn target(mut self, name: impl AsRef<str>) -> Self {
        self.inner.target = Arc::from(name.as_ref());
        self
    }

    /// Refuses revoked callers on every request.
    #[must_use]
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.inner.revocations = Some(revocations);
        self
    }

    /// Dry-run mode: policy denials are audited as `would-deny` and the
    /// request proceeds. Unauthenticated and revoked callers are still
    /// refused.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.inner.dry_run = dry_run;
        self
    }

    /// Also sends every audit event to `sink`.
    #[must_use]
    pub fn audit_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.inner.sink = Some(sink);
        self
    }

    /// The clock audit timestamps are read from. Default: system.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.inner.clock = clock;
        self
    }

    /// Builds the authorizer.
    pub fn build(self) -> Authorizer {
        Authorizer {
            inner: Arc::new(self.inner),
        }
    }
}
