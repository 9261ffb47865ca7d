//! One authorization rule: who (callers) may or may not do what (actions).

use std::fmt;
use std::sync::Arc;

use super::Request;
use super::action::{Action, GrpcPattern, MethodMatch, PathPattern};
use super::condition::{Captures, Condition, Subject, split_captures};
use super::error::{Origin, PolicyError};
use zt_core::matcher::IdMatcher;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Effect {
    /// Allow the request, unless a deny rule also matches.
    Allow,
    /// Deny the request; deny rules are checked before allow rules.
    Deny,
    /// Report the match in [`Decision::audit_only_matches`](super::Decision)
    /// and never decide: a dry run of a rule before it is enforced.
    AuditOnly,
}

impl Effect {
    /// The file syntax: `allow`, `deny` or `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::AuditOnly => "audit",
        }
    }

    pub(crate) fn parse(effect: &str) -> Option<Self> {
        match effect {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            "audit" => Some(Self::AuditOnly),
            _ => None,
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authorization rule: an id, an [`Effect`], the callers it applies to
/// and the actions it covers.
///
/// - No callers: the rule applies to **every authenticated caller**.
///   Requests without a verified identity are denied before any rule is
///   read.
/// - No actions: the rule covers **every action** (as an Istio rule without
///   `to`).
/// - Scopes: the rule matches only requests whose verified user context
///   carries every one of them; none: no condition on the user.
/// - Conditions ([`Rule::when`]): the rule matches only requests whose
///   [`Context`](super::Context) and caller captures satisfy every one of
///   them; none: no condition.
///
/// # Examples
///
/// ```
/// use zt_authz::policy::Rule;
///
/// let rule = Rule::allow("billing-reads-invoices")
///     .caller("spiffe://example.org/ns/prod/sa/billing")?
///     .http("GET", "/invoices/{id}")?
///     .grpc("/billing.Billing/GetInvoice")?;
/// assert_eq!(rule.id(), "billing-reads-invoices");
/// # Ok::<(), zt_authz::policy::PolicyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    id: Arc<str>,
    effect: Effect,
    callers: Vec<IdMatcher>,
    actions: Vec<Action>,
    /// Sorted, without duplicates.
    scopes: Vec<Arc<str>>,
    /// The `{name}` captures of caller patterns that have them.
    captures: Vec<Captures>,
    /// In the order given; the first that fails is the one reported.
    conditions: Vec<Condition>,
    origin: Origin,
}

impl Rule {
    /// A rule with no callers and no actions yet (so, as it stands, one
    /// that covers every authenticated caller and every action).
    pub fn new(id: impl AsRef<str>, effect: Effect) -> Self {
        Self {
            id: Arc::from(id.as_ref()),
            effect,
            callers: Vec::new(),
            actions: Vec::new(),
            scopes: Vec::new(),
            captures: Vec::new(),
            conditions: Vec::new(),
            origin: Origin::code(),
        }
    }

    /// An [`Effect::Allow`] rule.
    pub fn allow(id: impl AsRef<str>) -> Self {
        Self::new(id, Effect::Allow)
    }

    /// An [`Effect::Deny`] rule.
    pub fn deny(id: impl AsRef<str>) -> Self {
        Self::new(id, Effect::Deny)
    }

    /// An [`Effect::AuditOnly`] rule.
    pub fn audit(id: impl AsRef<str>) -> Self {
        Self::new(id, Effect::AuditOnly)
    }

    /// Adds a caller: a SPIFFE ID or an ID pattern (syntax on
    /// [`IdMatcher`]). A path segment written `{name}` matches one whole
    /// segment, as `*` does, and captures it under `name` for the rule's
    /// conditions: `spiffe://example.org/ns/{ns}/sa/{sa}`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::BadCaller`] if `pattern` does not parse, and
    /// [`PolicyError::BadCapture`] for a malformed capture.
    pub fn caller(mut self, pattern: &str) -> Result<Self, PolicyError> {
        let captures = split_captures(pattern).map_err(|reason| PolicyError::BadCapture {
            origin: self.origin.clone(),
            rule_id: self.id.to_string(),
            pattern: pattern.to_owned(),
            reason,
        })?;
        let plain = captures
            .as_ref()
            .map_or(pattern, |(plain, _)| plain.as_str());
        let matcher = IdMatcher::parse(plain).map_err(|source| PolicyError::BadCaller {
            origin: self.origin.clone(),
            rule_id: self.id.to_string(),
            pattern: pattern.to_owned(),
            source: Box::new(source),
        })?;
        if let Some((_, names)) = captures {
            self.captures.push(Captures {
                caller: self.callers.len(),
                pattern: Arc::from(pattern),
                names,
            });
        }
        self.callers.push(matcher);
        Ok(self)
    }

    /// Adds a condition: the rule matches only requests that satisfy it
    /// (and every other condition of the rule). See [`Condition`] for what
    /// its key names.
    ///
    /// # Examples
    ///
    /// ```
    /// use zt_authz::policy::{Condition, Rule, Test, ValueGlob};
    ///
    /// let rule = Rule::allow("deploy-prod")
    ///     .caller("spiffe://github.example/repo/org/app/**")?
    ///     .http("POST", "/deploy/prod")?
    ///     .when(Condition::new("environment", Test::Equals("prod".into())))
    ///     .when(Condition::new("ref", Test::Glob(ValueGlob::parse("refs/tags/v*")?)));
    /// assert_eq!(rule.conditions().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn when(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    /// The conditions, in the order given; empty means none.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The capture names declared by the caller patterns.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.captures
            .iter()
            .flat_map(|c| c.names.iter().map(|(n, _)| &**n))
    }

    /// The captures of the caller patterns that declare some, in caller
    /// order.
    #[cfg(feature = "cedar")]
    pub(crate) fn captures(&self) -> &[Captures] {
        &self.captures
    }

    /// The capture names of caller pattern `index`.
    pub(crate) fn caller_captures(&self, index: usize) -> impl Iterator<Item = &str> + '_ {
        self.captures
            .iter()
            .filter(move |c| c.caller == index)
            .flat_map(|c| c.names.iter().map(|(n, _)| &**n))
    }

    /// The caller pattern `index` as written (with its `{name}`
    /// captures), when it has captures.
    pub(crate) fn caller_text(&self, index: usize) -> Option<&str> {
        self.captures
            .iter()
            .find(|c| c.caller == index)
            .map(|c| &*c.pattern)
    }

    /// Adds a caller matcher built in code (a closure, a set of IDs…).
    pub fn caller_matcher(mut self, matcher: IdMatcher) -> Self {
        self.callers.push(matcher);
        self
    }

    /// Adds an HTTP action: a method (`GET`, or `*` for any) and a path
    /// pattern (syntax on [`PathPattern`]).
    ///
    /// # Errors
    ///
    /// [`PolicyError::BadMethod`] or [`PolicyError::BadPath`].
    pub fn http(mut self, method: &str, path: &str) -> Result<Self, PolicyError> {
        let method_match = MethodMatch::parse(method).map_err(|reason| PolicyError::BadMethod {
            origin: self.origin.clone(),
            rule_id: self.id.to_string(),
            method: method.to_owned(),
            reason,
        })?;
        let path_pattern = PathPattern::parse(path).map_err(|reason| PolicyError::BadPath {
            origin: self.origin.clone(),
            rule_id: self.id.to_string(),
            path: path.to_owned(),
            reason,
        })?;
        self.actions.push(Action::Http {
            method: method_match,
            path: path_pattern,
        });
        Ok(self)
    }

    /// Adds a gRPC action: `/package.Service/Method` or
    /// `/package.Service/*`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::BadGrpcMethod`].
    pub fn grpc(mut self, pattern: &str) -> Result<Self, PolicyError> {
        let grpc = GrpcPattern::parse(pattern).map_err(|reason| PolicyError::BadGrpcMethod {
            origin: self.origin.clone(),
            rule_id: self.id.to_string(),
            pattern: pattern.to_owned(),
            reason,
        })?;
        self.actions.push(Action::Grpc(grpc));
        Ok(self)
    }

    /// Requires a scope: the rule matches only requests whose verified
    /// [`UserContext`](zt_core::user::UserContext) carries it (and every other
    /// scope the rule requires).
    ///
    /// # Errors
    ///
    /// [`PolicyError::BadScope`] if `scope` is not an RFC 6749 scope token
    /// (printable ASCII without space, `"` or `\\`).
    pub fn scope(mut self, scope: &str) -> Result<Self, PolicyError> {
        if !zt_core::user::is_scope_token(scope) {
            return Err(PolicyError::BadScope {
                origin: self.origin.clone(),
                rule_id: self.id.to_string(),
                scope: scope.to_owned(),
            });
        }
        if let Err(at) = self.scopes.binary_search_by(|s| (**s).cmp(scope)) {
            self.scopes.insert(at, Arc::from(scope));
        }
        Ok(self)
    }

    /// The scopes the user context must carry, sorted; empty means no
    /// condition on the user.
    pub fn scopes(&self) -> &[Arc<str>] {
        &self.scopes
    }

    /// The rule id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The rule id, shared (decisions hand out clones of it).
    pub fn id_arc(&self) -> &Arc<str> {
        &self.id
    }

    /// The effect.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The callers; empty means every authenticated caller.
    pub fn callers(&self) -> &[IdMatcher] {
        &self.callers
    }

    /// The actions; empty means every action.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Where the rule was defined: a file position, or `<code>`.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub(crate) fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    /// `true` if the rule covers the request's action and its user context
    /// carries the rule's scopes (callers are checked by the index).
    pub(crate) fn covers(&self, request: &Request<'_>) -> bool {
        self.covers_unconditioned(request)
            && (self.conditions.is_empty() || self.failed_condition(request).is_none())
    }

    /// [`covers`](Self::covers) without the conditions.
    pub(crate) fn covers_unconditioned(&self, request: &Request<'_>) -> bool {
        (self.actions.is_empty() || self.actions.iter().any(|a| a.matches(request)))
            && self.scopes_held(request)
    }

    /// The first condition the request fails, described for the audit
    /// record (the condition, and whether the value was absent or
    /// different).
    pub(crate) fn failed_condition(&self, request: &Request<'_>) -> Option<String> {
        let lookup = |key: &str| self.lookup(request, key);
        self.conditions
            .iter()
            .find(|c| !c.holds(&lookup))
            .map(|c| c.failure(&lookup))
    }

    /// The value a condition key names for this request: a capture of the
    /// first caller pattern that declares it and matches the caller, or
    /// else (when no pattern declares it) the context entry.
    fn lookup<'a>(&self, request: &Request<'a>, key: &str) -> Option<Subject<'a>> {
        let mut declared = false;
        for captures in &self.captures {
            if !captures.names.iter().any(|(n, _)| &**n == key) {
                continue;
            }
            declared = true;
            let Some(caller) = request.caller else {
                continue;
            };
            if self
                .callers
                .get(captures.caller)
                .is_some_and(|m| m.matches(caller))
                && let Some(value) = captures.get(caller, key)
            {
                return Some(Subject::Str(value));
            }
        }
        if declared {
            return None;
        }
        request.context?.get(key).map(Subject::Value)
    }

    fn scopes_held(&self, request: &Request<'_>) -> bool {
        self.scopes.is_empty()
            || request
                .user
                .is_some_and(|user| self.scopes.iter().all(|s| user.has_scope(s)))
    }

    /// The canonical rendering the content hash is computed over.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = writeln!(out, "rule {:?} {}", &*self.id, self.effect);
        for (i, caller) in self.callers.iter().enumerate() {
            match self.caller_text(i) {
                Some(text) => {
                    let _ = writeln!(out, "  caller {text}");
                }
                None => {
                    let _ = writeln!(out, "  caller {caller:#}");
                }
            }
        }
        for action in &self.actions {
            let _ = writeln!(out, "  {action}");
        }
        for scope in &self.scopes {
            let _ = writeln!(out, "  scope {:?}", &**scope);
        }
        for condition in &self.conditions {
            let _ = writeln!(out, "  when {condition}");
        }
    }
}
