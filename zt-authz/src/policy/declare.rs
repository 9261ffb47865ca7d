//! Endpoint declarations in code: which callers each endpoint accepts, and
//! how they combine with a policy file.
//!
//! A service declares, next to each endpoint, the callers it accepts. The
//! `zt-macros` attributes (re-exported by `zt-server` behind its `macros`
//! feature) generate these declarations as constant [`EndpointSpec`]s,
//! checked at compile time; [`Declarations::builder`] collects them from
//! every type that implements [`Declared`].
//!
//! # How declarations decide
//!
//! For a request, the declarations *covering* it are those whose action
//! (HTTP method and path, or gRPC method) matches it, with the same matching
//! as policy rules (so an axum route template `/invoices/{id}` matches the
//! declaration `GET /invoices/{id}`).
//!
//! - Covered, and the caller is accepted by **every** covering declaration
//!   (one of its callers matches and its `when` conditions, if any, hold):
//!   the declarations allow.
//! - Covered, and some covering declaration does not accept the caller:
//!   denied, [`DecisionReason::CallerNotDeclared`], with the rule id
//!   `code:<endpoint>` of that declaration.
//! - Not covered: the declarations have no say. With
//!   [`DeclarationsBuilder::require_declared`] such a request is denied
//!   ([`DecisionReason::Undeclared`]) instead.
//!
//! # Combined with a policy file
//!
//! [`Declarations::with_policy`] gives a [`Combined`] engine. **Both must
//! allow, and a denial anywhere wins**:
//!
//! 1. If the declarations deny, the request is denied and the decision names
//!    the declaration (`code:<endpoint>`); the policy is not consulted.
//! 2. Otherwise the policy decides, exactly as it would alone (its deny
//!    rules, its default deny); a denial names the policy rule.
//! 3. The request is allowed only when the policy allows and the
//!    declarations allow or have no say (unless `require_declared`).
//!
//! So code narrows what the policy file grants and can never widen it: an
//! operator's deny rule always wins, and a caller the code does not declare
//! is refused whatever the file says. The version in every decision is
//! `<policy version>+code-<hash>`, so an audit record tells which code and
//! which file decided.
//!
//! [`Combined::export`] renders the effective policy (declarations and
//! rules) as TOML for review.
//!
//! # Examples
//!
//! ```
//! use zt_core::SpiffeId;
//! use zt_authz::policy::declare::{Declarations, Declared, EndpointSpec};
//! use zt_authz::policy::{DecisionReason, Policy, PolicyEngine, Request, Rule};
//!
//! // What `#[zt_server::callers(...)]` generates for a handler.
//! struct GetInvoice;
//! impl Declared for GetInvoice {
//!     const ENDPOINTS: &'static [EndpointSpec] = &[EndpointSpec::http(
//!         "get_invoice",
//!         "GET",
//!         "/invoices/{id}",
//!         &["spiffe://example.org/billing"],
//!         &[],
//!         file!(),
//!         line!(),
//!     )];
//! }
//!
//! let declarations = Declarations::builder().add::<GetInvoice>().build()?;
//! // The operator's file lets every workload of example.org in.
//! let file = Policy::builder()
//!     .rule(Rule::allow("mesh").caller("spiffe://example.org/**")?)
//!     .build()?;
//! let engine = declarations.with_policy(file);
//!
//! let billing = SpiffeId::new("spiffe://example.org/billing")?;
//! let orders = SpiffeId::new("spiffe://example.org/orders")?;
//! let request = |id| Request::new(Some(id), "GET", "/invoices/7").with_route("/invoices/{id}");
//!
//! assert!(engine.evaluate(&request(&billing)).allowed);
//! let denied = engine.evaluate(&request(&orders));
//! assert_eq!(denied.reason, DecisionReason::CallerNotDeclared);
//! assert_eq!(denied.rule_id.as_deref(), Some("code:get_invoice"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::action::Segment;
use super::error::{Origin, PolicyError};
use super::rule::Rule;
use super::{Action, Decision, DecisionReason, Policy, PolicyEngine, Request};
use zt_core::matcher::IdMatcher;

/// The prefix of the rule id of every declaration: `code:<endpoint>`.
pub const RULE_ID_PREFIX: &str = "code:";

/// What a declared endpoint is: an HTTP route or a gRPC method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointTarget {
    /// An HTTP method (`GET`, or `*`) and a path pattern.
    Http {
        /// The method.
        method: &'static str,
        /// The path pattern (syntax of [`PathPattern`](super::PathPattern)).
        path: &'static str,
    },
    /// A gRPC method: `/service/method`.
    Grpc {
        /// The fully qualified service, `package.Service`.
        service: &'static str,
        /// The method name as in the `.proto` file (`GetInvoice`), or `*`.
        method: &'static str,
    },
}

/// One endpoint declaration, as constant data: what the `zt-macros`
/// attributes generate. Validated again when
/// [`DeclarationsBuilder::build`] compiles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointSpec {
    name: &'static str,
    target: EndpointTarget,
    callers: &'static [&'static str],
    trust_domains: &'static [&'static str],
    when: &'static str,
    declared: bool,
    file: &'static str,
    line: u32,
}

impl EndpointSpec {
    /// An HTTP endpoint accepting `callers` (SPIFFE IDs or ID patterns) and
    /// every workload of `trust_domains`. `file` and `line` say where it is
    /// declared (`file!()`, `line!()`).
    #[allow(clippy::too_many_arguments)]
    pub const fn http(
        name: &'static str,
        method: &'static str,
        path: &'static str,
        callers: &'static [&'static str],
        trust_domains: &'static [&'static str],
        file: &'static str,
        line: u32,
    ) -> Self {
        Self {
            name,
            target: EndpointTarget::Http { method, path },
            callers,
            trust_domains,
            when: "",
            declared: true,
            file,
            line,
        }
    }

    /// A gRPC method accepting `callers` and every workload of
    /// `trust_domains`.
    #[allow(clippy::too_many_arguments)]
    pub const fn grpc(
        name: &'static str,
        service: &'static str,
        method: &'static str,
        callers: &'static [&'static str],
        trust_domains: &'static [&'static str],
        file: &'static str,
        line: u32,
    ) -> Self {
        Self {
            name,
            target: EndpointTarget::Grpc { service, method },
            callers,
            trust_domains,
            when: "",
            declared: true,
            file,
            line,
        }
    }

    /// A gRPC method the service implements without declaring its callers.
    /// It decides nothing; [`DeclarationsBuilder::require_declared`] refuses
    /// to build while one is present.
    pub const fn undeclared_grpc(
        name: &'static str,
        service: &'static str,
        method: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        Self {
            name,
            target: EndpointTarget::Grpc { service, method },
            callers: &[],
            trust_domains: &[],
            when: "",
            declared: false,
            file,
            line,
        }
    }

    /// The declaration with conditions: a `when` table in the policy file
    /// syntax (`{ ns = "prod" }`, on the `{ns}` capture of a caller
    /// pattern or a context key); a caller is accepted only when they all
    /// hold. Checked at compile time by the macros and again by
    /// [`DeclarationsBuilder::build`].
    pub const fn with_when(mut self, when: &'static str) -> Self {
        self.when = when;
        self
    }

    /// The conditions as written; empty for none.
    pub const fn when(&self) -> &'static str {
        self.when
    }

    /// The endpoint name (a handler, `Service::method`, `Enum::Variant`).
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The HTTP route or gRPC method.
    pub const fn target(&self) -> EndpointTarget {
        self.target
    }

    /// The accepted callers, as written.
    pub const fn callers(&self) -> &'static [&'static str] {
        self.callers
    }

    /// The trust domains whose every workload is accepted.
    pub const fn trust_domains(&self) -> &'static [&'static str] {
        self.trust_domains
    }

    /// `false` for [`EndpointSpec::undeclared_grpc`].
    pub const fn is_declared(&self) -> bool {
        self.declared
    }

    /// The source file and line of the declaration.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// A type whose endpoints are declared in code: a handler marked with
/// `#[callers(...)]`, a tonic service implementation, or an enum deriving
/// `Endpoints`.
pub trait Declared {
    /// The declarations.
    const ENDPOINTS: &'static [EndpointSpec];
}

/// A compiled declaration.
#[derive(Debug, Clone)]
struct Endpoint {
    rule: Rule,
}

/// A compiled set of endpoint declarations; a [`PolicyEngine`] on its own
/// (undeclared requests denied) and the code half of [`Combined`]. Cheap to
/// clone.
#[derive(Clone)]
pub struct Declarations {
    inner: Arc<Inner>,
}

struct Inner {
    /// In declaration order.
    endpoints: Vec<Endpoint>,
    /// Finds the declarations that may cover a request.
    index: CoverageIndex,
    undeclared: Vec<EndpointSpec>,
    require_declared: bool,
    version: Arc<str>,
}

/// What the declarations say about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CodeVerdict {
    /// Every covering declaration accepts the caller; the first one's id.
    Allow(Arc<str>),
    /// This covering declaration does not accept the caller.
    Deny(Arc<str>),
    /// No declaration covers the request.
    NotCovered,
}

impl Declarations {
    /// A builder.
    pub fn builder() -> DeclarationsBuilder {
        DeclarationsBuilder::default()
    }

    /// The declarations combined with a policy: both must allow (see the
    /// [module docs](self)).
    pub fn with_policy(self, policy: impl PolicyEngine + 'static) -> Combined {
        Combined::new(self, Arc::new(policy))
    }

    /// The declarations' version: `code-` and 12 hex digits of a hash of
    /// what they declare.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The compiled declarations as rules (`allow`, id `code:<endpoint>`),
    /// in declaration order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> + '_ {
        self.inner.endpoints.iter().map(|e| &e.rule)
    }

    /// Endpoints implemented without declared callers (gRPC methods of a
    /// service whose implementation declares only some of them).
    pub fn undeclared(&self) -> &[EndpointSpec] {
        &self.inner.undeclared
    }

    /// `true` if some HTTP declaration, for any method, covers the route
    /// template `route` (such as axum's `/invoices/{id}`).
    pub fn covers_route(&self, route: &str) -> bool {
        let mut found = Vec::new();
        self.inner.index.paths.walk(route, true, &mut found);
        !found.is_empty()
    }

    /// The startup check for a router: every route template in `routes`
    /// must be covered by a declaration ([`covers_route`](Self::covers_route)).
    ///
    /// # Errors
    ///
    /// [`PolicyError::UndeclaredEndpoints`] listing the routes no
    /// declaration covers.
    pub fn check_routes<'r>(
        &self,
        routes: impl IntoIterator<Item = &'r str>,
    ) -> Result<(), PolicyError> {
        let undeclared: Vec<String> = routes
            .into_iter()
            .filter(|route| !self.covers_route(route))
            .map(|route| format!("route {route}"))
            .collect();
        if undeclared.is_empty() {
            return Ok(());
        }
        Err(PolicyError::UndeclaredEndpoints {
            origin: Origin::router(),
            endpoints: undeclared,
        })
    }

    /// `true` if requests no declaration covers are denied.
    pub fn requires_declared(&self) -> bool {
        self.inner.require_declared
    }

    fn check(&self, request: &Request<'_>) -> CodeVerdict {
        let inner = &*self.inner;
        let mut covering = inner
            .index
            .candidates(request)
            .into_iter()
            .filter_map(|i| inner.endpoints.get(i))
            .filter(|e| e.rule.covers_unconditioned(request))
            .peekable();
        let Some(first) = covering.peek().map(|e| e.rule.id_arc()) else {
            return CodeVerdict::NotCovered;
        };
        let first = Arc::clone(first);
        let Some(caller) = request.caller else {
            return CodeVerdict::Deny(first);
        };
        for endpoint in covering {
            if !endpoint.rule.callers().iter().any(|m| m.matches(caller))
                || (!endpoint.rule.conditions().is_empty()
                    && endpoint.rule.failed_condition(request).is_some())
            {
                return CodeVerdict::Deny(Arc::clone(endpoint.rule.id_arc()));
            }
        }
        CodeVerdict::Allow(first)
    }

    fn decision(&self, verdict: CodeVerdict, version: &Arc<str>) -> Option<Decision> {
        let (allowed, reason, rule_id) = match verdict {
            CodeVerdict::Allow(id) => (true, DecisionReason::MatchedAllow, Some(id)),
            CodeVerdict::Deny(id) => (false, DecisionReason::CallerNotDeclared, Some(id)),
            CodeVerdict::NotCovered if self.inner.require_declared => {
                (false, DecisionReason::Undeclared, None)
            }
            CodeVerdict::NotCovered => return None,
        };
        Some(Decision {
            allowed,
            reason,
            rule_id,
            audit_only_matches: Vec::new(),
            policy_version: Arc::clone(version),
            condition: None,
        })
    }

    /// The declarations as TOML `[[declared]]` tables.
    fn render(&self, out: &mut String) {
        for endpoint in &self.inner.endpoints {
            let rule = &endpoint.rule;
            out.push_str("\n[[declared]]\n");
            let _ = writeln!(out, "id = {}", toml_string(rule.id()));
            let _ = writeln!(out, "source = {}", toml_string(&rule.origin().to_string()));
            render_callers_and_actions(rule, out);
        }
        for spec in &self.inner.undeclared {
            out.push_str("\n# implemented without declared callers: ");
            let _ = writeln!(out, "{} at {}", spec.name, spec.location());
        }
    }
}

impl PolicyEngine for Declarations {
    /// Decides by the declarations alone: a request no declaration covers
    /// is denied ([`DecisionReason::NoMatchingRule`], or
    /// [`DecisionReason::Undeclared`] with `require_declared`).
    fn evaluate(&self, request: &Request<'_>) -> Decision {
        let version = &self.inner.version;
        if request.caller.is_none() {
            return denial(DecisionReason::Unauthenticated, None, version);
        }
        self.decision(self.check(request), version)
            .unwrap_or_else(|| denial(DecisionReason::NoMatchingRule, None, version))
    }

    fn version(&self) -> Arc<str> {
        Arc::clone(&self.inner.version)
    }
}

impl fmt::Debug for Declarations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Declarations")
            .field("version", &self.inner.version)
            .field("endpoints", &self.rules().map(Rule::id).collect::<Vec<_>>())
            .field("undeclared", &self.inner.undeclared.len())
            .field("require_declared", &self.inner.require_declared)
            .finish()
    }
}

/// Builds [`Declarations`]; from [`Declarations::builder`].
#[derive(Debug, Default)]
pub struct DeclarationsBuilder {
    specs: Vec<EndpointSpec>,
    require_declared: bool,
}

impl DeclarationsBuilder {
    /// Adds the declarations of `T`.
    pub fn add<T: Declared + ?Sized>(self) -> Self {
        self.specs(T::ENDPOINTS)
    }

    /// Adds declarations.
    pub fn specs(mut self, specs: &[EndpointSpec]) -> Self {
        self.specs.extend_from_slice(specs);
        self
    }

    /// Refuses to serve what is not declared: [`build`](Self::build) fails
    /// while an implemented endpoint has no declared callers, and a request
    /// that no declaration covers is denied ([`DecisionReason::Undeclared`]).
    /// Off by default.
    pub fn require_declared(mut self, require: bool) -> Self {
        self.require_declared = require;
        self
    }

    /// Validates and compiles the declarations.
    ///
    /// # Errors
    ///
    /// - [`PolicyError::BadCaller`], [`PolicyError::BadMethod`],
    ///   [`PolicyError::BadPath`], [`PolicyError::BadGrpcMethod`] for a
    ///   malformed declaration (the macros reject these at compile time);
    /// - [`PolicyError::NoCallers`] for a declaration accepting nobody;
    /// - [`PolicyError::DuplicateRuleId`] when two endpoints share a name;
    /// - [`PolicyError::DuplicateEndpoint`] when two declarations have the
    ///   same method and path, or the same gRPC method;
    /// - [`PolicyError::UndeclaredEndpoints`] with `require_declared`, while
    ///   an endpoint has no declared callers.
    pub fn build(self) -> Result<Declarations, PolicyError> {
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let mut undeclared = Vec::new();
        let mut targets: HashMap<String, Origin> = HashMap::new();
        let mut names: HashMap<Arc<str>, Origin> = HashMap::new();
        let mut canonical = String::from("zt-declarations/1\n");
        for spec in &self.specs {
            if !spec.declared {
                undeclared.push(*spec);
                continue;
            }
            let rule = compile(spec)?;
            let key = target_key(spec.target);
            if let Some(first) = targets.insert(key.clone(), rule.origin().clone()) {
                return Err(PolicyError::DuplicateEndpoint {
                    origin: rule.origin().clone(),
                    endpoint: key,
                    first,
                });
            }
            if let Some(first) = names.insert(Arc::clone(rule.id_arc()), rule.origin().clone()) {
                return Err(PolicyError::DuplicateRuleId {
                    origin: rule.origin().clone(),
                    rule_id: rule.id().to_owned(),
                    first,
                });
            }
            rule.render(&mut canonical);
            endpoints.push(Endpoint { rule });
        }
        if self.require_declared && !undeclared.is_empty() {
            return Err(PolicyError::UndeclaredEndpoints {
                origin: Origin::in_code(undeclared[0].file, undeclared[0].line),
                endpoints: undeclared
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.location()))
                    .collect(),
            });
        }
        let digest = Sha256::digest(canonical.as_bytes());
        let mut hash = hex::encode(digest);
        hash.truncate(12);
        Ok(Declarations {
            inner: Arc::new(Inner {
                index: CoverageIndex::build(&endpoints),
                endpoints,
                undeclared,
                require_declared: self.require_declared,
                version: Arc::from(format!("code-{hash}")),
            }),
        })
    }
}

/// The rule of one declaration: allow, id `code:<name>`, its callers and
/// its action.
fn compile(spec: &EndpointSpec) -> Result<Rule, PolicyError> {
    let origin = Origin::in_code(spec.file, spec.line);
    let mut rule = Rule::allow(format!("{RULE_ID_PREFIX}{}", spec.name));
    rule.set_origin(origin.clone());
    if spec.callers.is_empty() && spec.trust_domains.is_empty() {
        return Err(PolicyError::NoCallers {
            origin,
            rule_id: rule.id().to_owned(),
        });
    }
    for caller in spec.callers {
        rule = rule.caller(caller)?;
    }
    for trust_domain in spec.trust_domains {
        let td = zt_core::id::parse_trust_domain(trust_domain).map_err(|e| {
            PolicyError::BadTrustDomain {
                origin: origin.clone(),
                rule_id: rule.id().to_owned(),
                trust_domain: (*trust_domain).to_owned(),
                reason: e.to_string(),
            }
        })?;
        rule = rule.caller_matcher(IdMatcher::in_trust_domain(td));
    }
    if !spec.when.is_empty() {
        let conditions = super::Condition::parse_table(spec.when).map_err(|(key, reason)| {
            PolicyError::BadCondition {
                origin: origin.clone(),
                rule_id: rule.id().to_owned(),
                key,
                reason,
            }
        })?;
        for condition in conditions {
            rule = rule.when(condition);
        }
    }
    match spec.target {
        EndpointTarget::Http { method, path } => rule.http(method, path),
        EndpointTarget::Grpc { service, method } => rule.grpc(&format!("/{service}/{method}")),
    }
}

/// Which declarations may cover a request: a segment trie of the HTTP path
/// patterns, walked with the request path and with the route template, and
/// maps of gRPC methods and services. It returns a superset; each candidate
/// is confirmed with the rule's own matching.
#[derive(Default)]
struct CoverageIndex {
    paths: PathNode,
    grpc_methods: HashMap<Box<str>, Vec<usize>, foldhash::fast::RandomState>,
    /// `/package.Service/*` declarations, keyed by `package.Service`.
    grpc_services: HashMap<Box<str>, Vec<usize>, foldhash::fast::RandomState>,
}

#[derive(Default)]
struct PathNode {
    literals: HashMap<Box<str>, PathNode, foldhash::fast::RandomState>,
    param: Option<Box<PathNode>>,
    /// Patterns that end at this node.
    ends: Vec<usize>,
    /// Patterns that end at this node with `/**`: this path and below.
    below: Vec<usize>,
}

impl CoverageIndex {
    fn build(endpoints: &[Endpoint]) -> Self {
        let mut index = Self::default();
        for (i, endpoint) in endpoints.iter().enumerate() {
            for action in endpoint.rule.actions() {
                match action {
                    Action::Http { path, .. } => {
                        let (segments, tail) = path.segments();
                        let mut node = &mut index.paths;
                        for segment in segments.iter() {
                            node = match segment {
                                Segment::Literal(text) => {
                                    node.literals.entry(text.clone()).or_default()
                                }
                                Segment::Param => node.param.get_or_insert_with(Box::default),
                            };
                        }
                        if tail {
                            node.below.push(i);
                        } else {
                            node.ends.push(i);
                        }
                    }
                    Action::Grpc(pattern) => {
                        let text = pattern.as_str();
                        let service = text
                            .strip_prefix('/')
                            .and_then(|t| t.split_once('/'))
                            .map_or(text, |(service, _)| service);
                        if pattern.is_service_wide() {
                            index
                                .grpc_services
                                .entry(service.into())
                                .or_default()
                                .push(i);
                        } else {
                            index.grpc_methods.entry(text.into()).or_default().push(i);
                        }
                    }
                }
            }
        }
        index
    }

    /// Candidate declarations, in declaration order, without repeats.
    fn candidates(&self, request: &Request<'_>) -> Vec<usize> {
        let mut out = Vec::new();
        self.paths.walk(request.path, false, &mut out);
        if let Some(route) = request.route {
            self.paths.walk(route, true, &mut out);
        }
        if let Some(method) = request.grpc_method {
            if let Some(found) = self.grpc_methods.get(method) {
                out.extend_from_slice(found);
            }
            let service = method
                .strip_prefix('/')
                .and_then(|m| m.split_once('/'))
                .map(|(service, _)| service);
            if let Some(found) = service.and_then(|s| self.grpc_services.get(s)) {
                out.extend_from_slice(found);
            }
        }
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out
    }
}

impl PathNode {
    fn walk(&self, path: &str, route: bool, out: &mut Vec<usize>) {
        if let Some(rest) = path.strip_prefix('/') {
            self.walk_parts(rest.split('/'), route, out);
        }
    }

    fn walk_parts<'p>(
        &self,
        mut parts: impl Iterator<Item = &'p str> + Clone,
        route: bool,
        out: &mut Vec<usize>,
    ) {
        out.extend_from_slice(&self.below);
        let Some(part) = parts.next() else {
            out.extend_from_slice(&self.ends);
            return;
        };
        if let Some(next) = self.literals.get(part) {
            next.walk_parts(parts.clone(), route, out);
        }
        // A parameter matches one non-empty segment, and in a route template
        // not a catch-all.
        if let Some(next) = &self.param
            && !part.is_empty()
            && !(route && part.starts_with("{*"))
        {
            next.walk_parts(parts, route, out);
        }
    }
}

fn target_key(target: EndpointTarget) -> String {
    match target {
        EndpointTarget::Http { method, path } => format!("{method} {path}"),
        EndpointTarget::Grpc { service, method } => format!("/{service}/{method}"),
    }
}

fn denial(reason: DecisionReason, rule_id: Option<Arc<str>>, version: &Arc<str>) -> Decision {
    Decision {
        allowed: false,
        reason,
        rule_id,
        audit_only_matches: Vec::new(),
        policy_version: Arc::clone(version),
        condition: None,
    }
}

/// Declarations and a policy, both of which must allow: the engine a
/// service runs with when it declares callers in code and also reads a
/// policy file. From [`Declarations::with_policy`]; semantics in the
/// [module docs](self).
pub struct Combined {
    code: Declarations,
    policy: Arc<dyn PolicyEngine>,
    /// The last policy version seen and the combined version made from it.
    versions: ArcSwap<(Arc<str>, Arc<str>)>,
}

impl Combined {
    fn new(code: Declarations, policy: Arc<dyn PolicyEngine>) -> Self {
        let policy_version = policy.version();
        let combined = join_versions(&policy_version, code.version());
        Self {
            code,
            policy,
            versions: ArcSwap::from_pointee((policy_version, combined)),
        }
    }

    /// The declarations.
    pub fn declarations(&self) -> &Declarations {
        &self.code
    }

    /// The effective policy as TOML: a header stating the combination, the
    /// combined version, every declaration as a `[[declared]]` table (with
    /// the source line that declares it), then the policy's rules as
    /// `[[rule]]` tables in the policy file format (callers with their
    /// `{name}` captures, actions and `when` conditions), when the policy engine
    /// can list them ([`PolicyEngine::rules_snapshot`]).
    pub fn export(&self) -> String {
        let mut out = String::from(
            "# Effective policy. A request must be allowed both by the declarations\n\
             # in code ([[declared]]) and by the policy rules ([[rule]]); a denial in\n\
             # either wins.\n",
        );
        out.push_str(if self.code.requires_declared() {
            "# A request no declaration covers is refused (require_declared).\n"
        } else {
            "# A request no declaration covers is decided by the rules alone.\n"
        });
        let version = self.combined_version(&self.policy.version());
        let _ = writeln!(out, "version = {}", toml_string(&version));
        self.code.render(&mut out);
        match self.policy.rules_snapshot() {
            Some(policy) => {
                for rule in policy.rules() {
                    out.push_str("\n[[rule]]\n");
                    let _ = writeln!(out, "id = {}", toml_string(rule.id()));
                    let _ = writeln!(out, "effect = {}", toml_string(rule.effect().as_str()));
                    let _ = writeln!(out, "# from {}", rule.origin());
                    render_callers_and_actions(rule, &mut out);
                }
            }
            None => {
                out.push_str("\n# The policy rules come from an engine that cannot list them.\n");
            }
        }
        out
    }

    fn combined_version(&self, policy_version: &Arc<str>) -> Arc<str> {
        let cached = self.versions.load();
        if Arc::ptr_eq(&cached.0, policy_version) || cached.0 == *policy_version {
            return Arc::clone(&cached.1);
        }
        let combined = join_versions(policy_version, self.code.version());
        self.versions.store(Arc::new((
            Arc::clone(policy_version),
            Arc::clone(&combined),
        )));
        combined
    }
}

fn join_versions(policy: &str, code: &str) -> Arc<str> {
    Arc::from(format!("{policy}+{code}"))
}

impl PolicyEngine for Combined {
    fn evaluate(&self, request: &Request<'_>) -> Decision {
        if request.caller.is_none() {
            // The policy engine denies it as unauthenticated.
            let mut decision = self.policy.evaluate(request);
            decision.policy_version = self.combined_version(&decision.policy_version);
            return decision;
        }
        let code = self.code.check(request);
        if let CodeVerdict::Deny(id) = code {
            let version = self.combined_version(&self.policy.version());
            return denial(DecisionReason::CallerNotDeclared, Some(id), &version);
        }
        if code == CodeVerdict::NotCovered && self.code.requires_declared() {
            let version = self.combined_version(&self.policy.version());
            return denial(DecisionReason::Undeclared, None, &version);
        }
        let mut decision = self.policy.evaluate(request);
        decision.policy_version = self.combined_version(&decision.policy_version);
        decision
    }

    fn version(&self) -> Arc<str> {
        self.combined_version(&self.policy.version())
    }

    fn rules_snapshot(&self) -> Option<Policy> {
        self.policy.rules_snapshot()
    }
}

impl fmt::Debug for Combined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Combined")
            .field("code", &self.code)
            .field("policy_version", &self.policy.version())
            .finish_non_exhaustive()
    }
}

fn render_callers_and_actions(rule: &Rule, out: &mut String) {
    if !rule.callers().is_empty() {
        let callers: Vec<String> = rule
            .callers()
            .iter()
            .enumerate()
            .map(|(i, c)| match rule.caller_text(i) {
                Some(text) => toml_string(text),
                None => toml_string(&format!("{c:#}")),
            })
            .collect();
        let _ = writeln!(out, "callers = [{}]", callers.join(", "));
    }
    let mut http = Vec::new();
    let mut grpc = Vec::new();
    for action in rule.actions() {
        match action {
            Action::Http { method, path } => http.push(format!(
                "{{ method = {}, path = {} }}",
                toml_string(&method.to_string()),
                toml_string(path.as_str())
            )),
            Action::Grpc(pattern) => grpc.push(toml_string(pattern.as_str())),
        }
    }
    if !http.is_empty() {
        let _ = writeln!(out, "http = [{}]", http.join(", "));
    }
    if !grpc.is_empty() {
        let _ = writeln!(out, "grpc = [{}]", grpc.join(", "));
    }
    if !rule.conditions().is_empty() {
        let conditions: Vec<String> = rule.conditions().iter().map(|c| c.to_string()).collect();
        let _ = writeln!(out, "when = {{ {} }}", conditions.join(", "));
    }
}

/// A TOML basic string: quoted, with `"`, `\\` and control characters
/// escaped.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One endpoint declared in code, as a rule (`allow`, id `code:<endpoint>`)
/// and the source line that declares it; what
/// [`Policy::check_declared`](super::Policy::check_declared) compares.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeclaredEndpoint {
    /// The declaration as a rule: its callers and its action.
    pub rule: Rule,
    /// Where it is declared (`file:line`).
    pub source: String,
}

impl Declarations {
    /// The declarations, in declaration order.
    pub fn endpoints(&self) -> Vec<DeclaredEndpoint> {
        self.rules()
            .map(|rule| DeclaredEndpoint {
                rule: rule.clone(),
                source: rule.origin().to_string(),
            })
            .collect()
    }
}

#[derive(serde::Deserialize)]
struct ExportDoc {
    #[serde(default)]
    declared: Vec<toml::Spanned<ExportDeclared>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportDeclared {
    id: String,
    source: Option<String>,
    #[serde(default)]
    callers: Vec<String>,
    #[serde(default)]
    http: Vec<ExportHttp>,
    #[serde(default)]
    grpc: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportHttp {
    method: Option<String>,
    path: String,
}

/// Reads the `[[declared]]` tables of a [`Combined::export`] (other tables
/// and keys are ignored), for
/// [`Policy::check_declared`](super::Policy::check_declared) in CI.
///
/// # Errors
///
/// [`PolicyError::File`] for text that is not TOML of that shape, and the
/// rule errors ([`PolicyError::BadCaller`], …) for a malformed declaration,
/// each with its position in the file.
pub fn parse_export(text: &str, source_name: &str) -> Result<Vec<DeclaredEndpoint>, PolicyError> {
    let source: Arc<str> = Arc::from(source_name);
    let doc: ExportDoc = toml::from_str(text).map_err(|e| PolicyError::File {
        origin: Origin::at(&source, text, e.span().map_or(0, |s| s.start)),
        rule_id: None,
        message: e.message().trim_end().to_owned(),
    })?;
    let mut out = Vec::with_capacity(doc.declared.len());
    for spanned in doc.declared {
        let origin = Origin::at(&source, text, spanned.span().start);
        let entry = spanned.into_inner();
        let mut rule = Rule::allow(&entry.id);
        rule.set_origin(origin.clone());
        for caller in &entry.callers {
            rule = rule.caller(caller)?;
        }
        for http in &entry.http {
            rule = rule.http(http.method.as_deref().unwrap_or("*"), &http.path)?;
        }
        for grpc in &entry.grpc {
            rule = rule.grpc(grpc)?;
        }
        if rule.callers().is_empty() {
            return Err(PolicyError::NoCallers {
                origin,
                rule_id: entry.id,
            });
        }
        out.push(DeclaredEndpoint {
            rule,
            source: entry.source.unwrap_or_else(|| origin.to_string()),
        });
    }
    Ok(out)
}
