//! Per-request authorization policy: rules, their TOML file format, and the
//! compiled engine that decides.
//!
//! The semantics follow Istio's `AuthorizationPolicy` and gRPC's
//! authorization policy (gRFC A43):
//!
//! 1. A request without a verified caller is denied
//!    ([`DecisionReason::Unauthenticated`]): the engine fails closed.
//! 2. If any [`Effect::Deny`] rule matches, the request is denied.
//! 3. Otherwise, if any [`Effect::Allow`] rule matches, it is allowed.
//! 4. Otherwise it is denied ([`DecisionReason::NoMatchingRule`]).
//!
//! [`Effect::AuditOnly`] rules never decide; every one that matches is
//! listed in [`Decision::audit_only_matches`], so a rule can be dry-run
//! before it is enforced. When several rules of the deciding effect match,
//! the decision names the first one in policy order.
//!
//! A rule matches when one of its callers matches the caller's SPIFFE ID
//! (no callers: any authenticated caller), one of its actions matches
//! the request (no actions: any action), and the request's verified
//! [`UserContext`] carries every scope the rule requires (no scopes: no
//! condition; a rule with scopes never matches a request without a user
//! context). Methods and paths are plain
//! strings; `zt-authz` knows nothing of HTTP types.
//!
//! Every [`Decision`] carries the policy version: the `version` given in the
//! file or builder, or else the first 12 hex digits of the SHA-256 of a
//! canonical rendering of the rules, so equal policies have equal versions.
//!
//! # Speed
//!
//! [`Policy`] compiles its rules into an index: rules naming exact caller
//! IDs are found with one hash lookup, rules confined to a trust domain with
//! another, and only rules that may match any caller (no callers, closures)
//! are tried for every request. Scopes are checked on the candidate rules
//! only, after the caller and action. The cost of a decision depends on the rules
//! that could apply to the caller, not on how many rules the policy has.
//!
//! # File format
//!
//! ```toml
//! version = "2026-11-23.1"   # optional; default: a content hash
//!
//! [[rule]]
//! id = "billing-reads-invoices"           # unique, non-empty
//! effect = "allow"                        # allow | deny | audit
//! callers = [                             # optional; omitted or empty: any authenticated caller
//!   "spiffe://example.org/ns/prod/sa/billing",
//!   "spiffe://partner.example/**",
//! ]
//! http = [                                # optional; method optional ("*": any)
//!   { method = "GET", path = "/invoices/{id}" },
//!   { method = "*", path = "/health" },
//! ]
//! grpc = ["/billing.Billing/GetInvoice", "/billing.Billing/*"]   # optional
//! scopes = ["invoices:read"]              # optional; the user context must carry all
//! ```
//!
//! Unknown fields are errors. Without `http` and `grpc` a rule covers every
//! action. Caller patterns are those of [`IdMatcher`](zt_core::matcher::IdMatcher),
//! path patterns those of [`PathPattern`], gRPC patterns those of
//! [`GrpcPattern`].
//!
//! # Examples
//!
//! ```
//! use zt_core::SpiffeId;
//! use zt_authz::policy::{DecisionReason, Policy, PolicyEngine, Request, Rule};
//!
//! let policy = Policy::builder()
//!     .rule(
//!         Rule::allow("billing-reads-invoices")
//!             .caller("spiffe://example.org/ns/prod/sa/billing")?
//!             .http("GET", "/invoices/{id}")?,
//!     )
//!     .rule(Rule::deny("no-admin").http("*", "/admin/**")?)
//!     .build()?;
//!
//! let billing = SpiffeId::new("spiffe://example.org/ns/prod/sa/billing")?;
//! let decision = policy.evaluate(&Request::new(Some(&billing), "GET", "/invoices/42"));
//! assert!(decision.allowed);
//! assert_eq!(decision.rule_id.as_deref(), Some("billing-reads-invoices"));
//!
//! let decision = policy.evaluate(&Request::new(Some(&billing), "GET", "/admin/users"));
//! assert_eq!(decision.reason, DecisionReason::MatchedDeny);
//!
//! // The same policy from a file.
//! let from_file = Policy::from_toml_str(
//!     r#"
//!     [[rule]]
//!     id = "billing-reads-invoices"
//!     effect = "allow"
//!     callers = ["spiffe://example.org/ns/prod/sa/billing"]
//!     http = [{ method = "GET", path = "/invoices/{id}" }]
//!
//!     [[rule]]
//!     id = "no-admin"
//!     effect = "deny"
//!     http = [{ method = "*", path = "/admin/**" }]
//!     "#,
//!     "policy.toml",
//! )?;
//! assert_eq!(from_file.version(), policy.version());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use zt_core::SpiffeId;
use zt_core::user::UserContext;

mod action;
#[cfg(feature = "cedar")]
pub mod cedar;
mod condition;
pub mod declare;
mod engine;
mod error;
mod file;
mod lint;
mod rule;
mod store;
#[cfg(test)]
mod tests;

pub use action::{Action, GrpcPattern, MethodMatch, PathPattern};
pub use condition::{Condition, Context, ContextValue, Test, ValueGlob};
pub use error::{Origin, PolicyError};
pub use lint::{DeclaredFinding, DeclaredKind, LintKind, LintWarning};
pub use rule::{Effect, Rule};
pub use store::PolicyStore;
pub use zt_core::reload::ReloadOutcome;

/// Something that decides requests: the compiled [`Policy`], or a wrapper
/// around one (a hot-reloading holder, a test double).
pub trait PolicyEngine: Send + Sync {
    /// Decides one request. Never fails: anything the engine cannot allow
    /// is denied.
    fn evaluate(&self, request: &Request<'_>) -> Decision;

    /// The version of the policy in force now. A holder that swaps
    /// policies may answer differently from one call to the next; the
    /// version that decided a request is the one in its [`Decision`].
    fn version(&self) -> Arc<str>;

    /// Decides one request, as [`evaluate`](Self::evaluate) does, and
    /// hands the decision to `with` borrowed from the engine, so that a
    /// caller that only reads it (an [`Authorizer`](crate::Authorizer)
    /// deciding and auditing) copies nothing out of the policy. `with` is
    /// called exactly once. The default calls `evaluate`; engines that
    /// hold their rule ids and version override it.
    fn evaluate_with(&self, request: &Request<'_>, with: &mut dyn FnMut(DecisionRef<'_>)) {
        with(self.evaluate(request).borrowed());
    }

    /// The rules in force now, for engines that hold a [`Policy`]; `None`
    /// (the default) for engines that cannot list theirs. Used to export
    /// the effective policy for review.
    fn rules_snapshot(&self) -> Option<Policy> {
        None
    }
}

/// What the engine sees of a request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The verified caller; `None` when the peer has no verified SPIFFE ID.
    pub caller: Option<&'a SpiffeId>,
    /// The HTTP method, as sent (`GET`); gRPC calls are `POST`.
    pub method: &'a str,
    /// The request path, without query.
    pub path: &'a str,
    /// The route template the router matched (axum's `MatchedPath`, such as
    /// `/invoices/{id}`), if any; path patterns match it as well as `path`.
    pub route: Option<&'a str>,
    /// The gRPC method, `/package.Service/Method`, for gRPC calls.
    pub grpc_method: Option<&'a str>,
    /// The verified user context the request carries, if any; rules that
    /// require scopes match only when it holds all of them.
    pub user: Option<&'a UserContext>,
    /// How the connection that carried the request is protected; recorded
    /// in the audit event, not used by rules.
    pub transport: Option<Transport<'a>>,
    /// The transaction ID (`txn`) of the verified Transaction Token the
    /// request carries, if any; recorded in the audit event, not used by
    /// rules.
    pub txn: Option<&'a str>,
    /// The verified context of the request (the claims of a verified
    /// token), which rule conditions read; `None`: every context key is
    /// absent.
    pub context: Option<&'a Context>,
}

/// The protection of the connection a request came on, as the TLS layer
/// negotiated it. Names are the IANA ones (`TLSv1.3`,
/// `TLS13_AES_256_GCM_SHA384`, `X25519MLKEM768`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct Transport<'a> {
    /// The TLS protocol version.
    pub version: &'a str,
    /// The cipher suite.
    pub cipher_suite: &'a str,
    /// The key exchange group; `None` if none was negotiated.
    pub kx_group: Option<&'a str>,
    /// Whether the key exchange was post-quantum.
    pub post_quantum: bool,
    /// When the peer's leaf certificate expires.
    #[serde(skip)]
    pub peer_not_after: Option<std::time::SystemTime>,
}

impl<'a> Transport<'a> {
    /// A transport with these TLS parameters.
    pub fn new(
        version: &'a str,
        cipher_suite: &'a str,
        kx_group: Option<&'a str>,
        post_quantum: bool,
    ) -> Self {
        Self {
            version,
            cipher_suite,
            kx_group,
            post_quantum,
            peer_not_after: None,
        }
    }

    /// Sets when the peer's leaf certificate expires.
    pub fn with_peer_not_after(mut self, not_after: std::time::SystemTime) -> Self {
        self.peer_not_after = Some(not_after);
        self
    }
}

impl<'a> Request<'a> {
    /// A request with a caller, method and path, and no route or gRPC method.
    pub fn new(caller: Option<&'a SpiffeId>, method: &'a str, path: &'a str) -> Self {
        Self {
            caller,
            method,
            path,
            route: None,
            grpc_method: None,
            user: None,
            transport: None,
            txn: None,
            context: None,
        }
    }

    /// Sets the verified context that rule conditions read.
    pub fn with_context(mut self, context: &'a Context) -> Self {
        self.context = Some(context);
        self
    }

    /// Sets the route template the router matched.
    pub fn with_route(mut self, route: &'a str) -> Self {
        self.route = Some(route);
        self
    }

    /// Sets the gRPC method (`/package.Service/Method`).
    pub fn with_grpc_method(mut self, grpc_method: &'a str) -> Self {
        self.grpc_method = Some(grpc_method);
        self
    }

    /// Sets the verified user context.
    pub fn with_user(mut self, user: &'a UserContext) -> Self {
        self.user = Some(user);
        self
    }

    /// Sets the transaction ID of the request's verified Transaction Token,
    /// for the audit record.
    pub fn with_txn(mut self, txn: &'a str) -> Self {
        self.txn = Some(txn);
        self
    }

    /// Sets how the request's connection is protected, for the audit record.
    pub fn with_transport(mut self, transport: Transport<'a>) -> Self {
        self.transport = Some(transport);
        self
    }
}

/// Why a request was allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecisionReason {
    /// An allow rule matched and no deny rule did.
    MatchedAllow,
    /// A deny rule matched.
    MatchedDeny,
    /// No allow or deny rule matched: denied by default.
    NoMatchingRule,
    /// The request had no verified caller: denied before any rule was read.
    Unauthenticated,
    /// The caller's ID or certificate is revoked: denied before any rule
    /// was read (by an [`Authorizer`](crate::Authorizer)).
    Revoked,
    /// An identity on the request (the mTLS peer's certificate, the
    /// JWT-SVID, or the user context) has expired: denied before any rule
    /// was read (by an [`Authorizer`](crate::Authorizer)).
    Expired,
    /// The endpoint declares its callers in code and the caller is not one
    /// of them ([`declare`]); the rule id names the declaration.
    CallerNotDeclared,
    /// No declaration in code covers the request, and declarations are
    /// required ([`declare::DeclarationsBuilder::require_declared`]).
    Undeclared,
    /// No rule matched, and an allow rule would have but for one of its
    /// conditions; the rule id names that rule and
    /// [`Decision::condition`] the condition that failed.
    ConditionNotMet,
}

impl DecisionReason {
    /// A short, stable name for logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MatchedAllow => "matched-allow",
            Self::MatchedDeny => "matched-deny",
            Self::NoMatchingRule => "no-matching-rule",
            Self::Unauthenticated => "unauthenticated",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::CallerNotDeclared => "caller-not-declared",
            Self::Undeclared => "undeclared-endpoint",
            Self::ConditionNotMet => "condition-not-met",
        }
    }
}

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of [`PolicyEngine::evaluate`]. Cheap to build: ids and the
/// version are shared (`Arc<str>`), and the audit list allocates only when
/// an audit-only rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// `true` if the request may proceed.
    pub allowed: bool,
    /// Why.
    pub reason: DecisionReason,
    /// The deciding rule, for [`DecisionReason::MatchedAllow`] and
    /// [`DecisionReason::MatchedDeny`]; for
    /// [`DecisionReason::ConditionNotMet`], the rule whose condition failed.
    pub rule_id: Option<Arc<str>>,
    /// For [`DecisionReason::ConditionNotMet`], the condition that failed,
    /// in the file syntax, and whether the value was absent or different
    /// (`environment = "prod" (differs)`); never the value itself.
    pub condition: Option<Arc<str>>,
    /// Every audit-only rule that matched, in policy order.
    pub audit_only_matches: Vec<Arc<str>>,
    /// The version of the policy that decided.
    pub policy_version: Arc<str>,
}

impl Decision {
    /// The decision, borrowed.
    pub fn borrowed(&self) -> DecisionRef<'_> {
        DecisionRef {
            allowed: self.allowed,
            reason: self.reason,
            rule_id: self.rule_id.as_ref(),
            condition: self.condition.as_deref(),
            audit_only_matches: &self.audit_only_matches,
            policy_version: &self.policy_version,
        }
    }
}

/// A [`Decision`] borrowed from the engine that made it, as
/// [`PolicyEngine::evaluate_with`] hands it over: the same fields, no
/// reference counts taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecisionRef<'a> {
    /// `true` if the request may proceed.
    pub allowed: bool,
    /// Why.
    pub reason: DecisionReason,
    /// The deciding rule (see [`Decision::rule_id`]).
    pub rule_id: Option<&'a Arc<str>>,
    /// The condition that failed (see [`Decision::condition`]).
    pub condition: Option<&'a str>,
    /// Every audit-only rule that matched, in policy order.
    pub audit_only_matches: &'a [Arc<str>],
    /// The version of the policy that decided.
    pub policy_version: &'a Arc<str>,
}

impl<'a> DecisionRef<'a> {
    /// A denial for `reason` that no rule made (no caller, a revoked or
    /// expired identity), by the policy of `version`.
    pub(crate) fn denied(reason: DecisionReason, version: &'a Arc<str>) -> Self {
        Self {
            allowed: false,
            reason,
            rule_id: None,
            condition: None,
            audit_only_matches: &[],
            policy_version: version,
        }
    }

    /// The decision, owned: shares the rule id and version.
    pub fn to_decision(&self) -> Decision {
        Decision {
            allowed: self.allowed,
            reason: self.reason,
            rule_id: self.rule_id.cloned(),
            condition: self.condition.map(Arc::from),
            audit_only_matches: self.audit_only_matches.to_vec(),
            policy_version: Arc::clone(self.policy_version),
        }
    }
}

/// A validated, compiled set of rules. Cheap to clone (shared), immutable:
/// to change policy, build a new one and swap it in.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

struct Inner {
    version: Arc<str>,
    explicit_version: bool,
    rules: Vec<Rule>,
    index: engine::Index,
}

impl Policy {
    /// A builder for a policy in code.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Reads a policy from TOML text (format in the [module docs](self)).
    /// `source_name` (usually the file name) is used in error messages.
    ///
    /// # Errors
    ///
    /// The first [`PolicyError`] found, with its line and column; the text
    /// is validated completely before a policy is returned.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, PolicyError> {
        file::parse(text, source_name)
    }

    /// The version: explicit, or a 12-hex-digit content hash.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// `true` if the version was given, not computed.
    pub fn has_explicit_version(&self) -> bool {
        self.inner.explicit_version
    }

    /// The rules, in policy order.
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// Decides `request` as [`PolicyEngine::evaluate`] does, but returns
    /// only whether it is allowed and the deciding rule, without listing
    /// audit-only matches or building a [`Decision`]: the replay of many
    /// logged requests.
    pub fn decide(&self, request: &Request<'_>) -> (bool, Option<&Rule>) {
        let inner = &*self.inner;
        let (allowed, rule) = inner.index.decide(&inner.rules, request);
        (allowed, rule.and_then(|i| inner.rules.get(i)))
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.inner.rules.iter().find(|r| r.id() == id)
    }
}

impl PolicyEngine for Policy {
    fn evaluate(&self, request: &Request<'_>) -> Decision {
        let inner = &*self.inner;
        inner
            .index
            .decide_into(&inner.rules, &inner.version, request, |d| d.to_decision())
    }

    fn evaluate_with(&self, request: &Request<'_>, with: &mut dyn FnMut(DecisionRef<'_>)) {
        let inner = &*self.inner;
        inner
            .index
            .decide_into(&inner.rules, &inner.version, request, with);
    }

    fn version(&self) -> Arc<str> {
        Arc::clone(&self.inner.version)
    }

    fn rules_snapshot(&self) -> Option<Policy> {
        Some(self.clone())
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("version", &self.inner.version)
            .field("rules", &self.inner.rules.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Policy`] in code; from [`Policy::builder`].
#[derive(Debug, Default)]
pub struct PolicyBuilder {
    version: Option<(String, Origin)>,
    rules: Vec<Rule>,
}

impl PolicyBuilder {
    /// Sets an explicit version, reported in every decision instead of the
    /// content hash.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some((version.into(), Origin::code()));
        self
    }

    pub(crate) fn version_at(mut self, version: String, origin: Origin) -> Self {
        self.version = Some((version, origin));
        self
    }

    /// Adds a rule, after those already added.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds rules, in order.
    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// Validates the rules and compiles the policy.
    ///
    /// # Errors
    ///
    /// [`PolicyError::EmptyRuleId`], [`PolicyError::DuplicateRuleId`] or
    /// [`PolicyError::EmptyVersion`].
    pub fn build(self) -> Result<Policy, PolicyError> {
        let mut seen: std::collections::HashMap<&str, &Origin> =
            std::collections::HashMap::with_capacity(self.rules.len());
        for rule in &self.rules {
            if rule.id().is_empty() {
                return Err(PolicyError::EmptyRuleId {
                    origin: rule.origin().clone(),
                });
            }
            if let Some(first) = seen.insert(rule.id(), rule.origin()) {
                return Err(PolicyError::DuplicateRuleId {
                    origin: rule.origin().clone(),
                    rule_id: rule.id().to_owned(),
                    first: first.clone(),
                });
            }
        }
        let (version, explicit_version) = match self.version {
            Some((v, origin)) if v.trim().is_empty() => {
                return Err(PolicyError::EmptyVersion { origin });
            }
            Some((v, _)) => (Arc::from(v), true),
            None => (Arc::from(content_hash(&self.rules)), false),
        };
        let index = engine::Index::build(&self.rules);
        Ok(Policy {
            inner: Arc::new(Inner {
                version,
                explicit_version,
                rules: self.rules,
                index,
            }),
        })
    }
}

/// First 12 hex digits of the SHA-256 of the canonical rendering.
fn content_hash(rules: &[Rule]) -> String {
    let mut text = String::from("zt-policy/1\n");
    for rule in rules {
        rule.render(&mut text);
    }
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(12);
    hex
}
