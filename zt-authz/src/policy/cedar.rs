//! A [Cedar](https://www.cedarpolicy.com) translation of a [`Policy`]: the
//! same rules, decided by the `cedar-policy` authorizer (feature `cedar`).
//!
//! [`CedarPolicy`] exists to be compared with the built-in engine: in
//! property tests (both engines must give the same [`Decision`] for every
//! request) and in benchmarks (the cost of the same decision in Cedar). It
//! implements [`PolicyEngine`], so it can stand in for a [`Policy`]
//! anywhere, but it is slower: Cedar evaluates every policy for every
//! request, where [`Policy`] looks up the few rules that can apply.
//!
//! # Mapping
//!
//! Each zt rule becomes one Cedar policy whose id is `r<index>` (its
//! position in the zt policy) and whose `@id` annotation is the zt rule id:
//! `permit` for [`Effect::Allow`] and [`Effect::AuditOnly`], `forbid` for
//! [`Effect::Deny`]. Allow and deny policies form one policy set; audit-only
//! policies form a second set, evaluated separately, whose satisfied
//! policies are the [`Decision::audit_only_matches`]. A rule's condition is
//! `(any caller matches) && (any action matches)`, an absent list being
//! `true`.
//!
//! A request becomes a Cedar request as follows.
//!
//! | zt | Cedar |
//! |---|---|
//! | caller `spiffe://td/a/b` | principal `Workload::"spiffe://td/a/b"` |
//! | HTTP method `GET` | action `Action::"GET"` |
//! | path `/x/y` | resource `Path::"/x/y"` |
//!
//! The principal has the attributes `trust_domain` (`"td"`), `depth` (the
//! number of path segments, `2`; `0` for an ID without a path) and
//! `segments`, a record `{ s0: "a", s1: "b" }` of the segments by position.
//! The resource has:
//!
//! - `path`: a record `{ text, rooted, depth, segments }` for the raw path:
//!   the path as given, whether it starts with `/`, the number of
//!   `/`-separated segments after the leading `/` (`/` has one, empty), and
//!   those segments by position as above;
//! - `route`, only when the request has a route template: the same record
//!   for the template, except that catch-all segments (`{*rest}`) are
//!   written as `""`, so only a final `**` matches them;
//! - `grpc_method`: the gRPC method, or `""`;
//! - `grpc_service`: `/package.Service/` when the gRPC method is a method
//!   name below a service, else `""`.
//!
//! Segment records hold only as many positions as the policy's longest
//! pattern needs. Cedar's `like` wildcard crosses `/`, so one-segment
//! wildcards are compared position by position instead:
//!
//! | zt pattern | Cedar condition |
//! |---|---|
//! | caller `spiffe://td/a/b` | `principal == Workload::"spiffe://td/a/b"` |
//! | one of several IDs | `[Workload::"…", …].contains(principal)` |
//! | caller `spiffe://td/**` | `principal.trust_domain == "td" && principal.depth > 0` |
//! | caller `spiffe://td/a/**` | trust domain, `principal.depth > 1`, `principal.segments.s0 == "a"` |
//! | caller `spiffe://td/a/*/c` | trust domain, `principal.depth == 3`, `s0 == "a"`, `s2 == "c"` |
//! | method `GET` / `*` | `action == Action::"GET"` / nothing |
//! | path `/invoices` | `resource.path.text == "/invoices"` |
//! | path `/invoices/{id}` | `resource.path.depth == 2`, `s0 == "invoices"`, `s1 != ""` |
//! | path `/admin/**` | `resource.path.rooted`, `resource.path.depth >= 1`, `s0 == "admin"` |
//! | each path pattern, again on the route | `resource has route && …resource.route…` |
//! | gRPC `/pkg.Svc/Get` | `resource.grpc_method == "/pkg.Svc/Get"` |
//! | gRPC `/pkg.Svc/*` | `resource.grpc_service == "/pkg.Svc/"` |
//!
//! A request without a caller is decided before Cedar is asked, as in
//! [`Policy`]: denied, [`DecisionReason::Unauthenticated`], no audit
//! matches. Of the policies Cedar reports as determining a decision, the one
//! with the lowest index names the rule, as [`Policy`] names the first
//! matching rule in policy order. Rules whose callers are closures
//! ([`IdMatcher::from_fn`](zt_core::matcher::IdMatcher::from_fn)) cannot be
//! written in Cedar, and rules that require scopes of the user context are
//! not translated: [`CedarPolicy::from_policy`] refuses both with
//! [`CedarError::Untranslatable`].
//!
//! # Examples
//!
//! ```
//! use zt_core::SpiffeId;
//! use zt_authz::policy::cedar::CedarPolicy;
//! use zt_authz::policy::{Policy, PolicyEngine, Request, Rule};
//!
//! let policy = Policy::builder()
//!     .rule(
//!         Rule::allow("billing-reads-invoices")
//!             .caller("spiffe://example.org/ns/*/sa/billing")?
//!             .http("GET", "/invoices/{id}")?,
//!     )
//!     .build()?;
//! let cedar = CedarPolicy::from_policy(&policy)?;
//!
//! let billing = SpiffeId::new("spiffe://example.org/ns/prod/sa/billing")?;
//! let request = Request::new(Some(&billing), "GET", "/invoices/42");
//! assert_eq!(cedar.evaluate(&request), policy.evaluate(&request));
//! assert!(cedar.policy_text().contains("@id(\"billing-reads-invoices\")"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, RestrictedExpression,
};

use super::action::{Action, GrpcPattern, MethodMatch, PathPattern};
use super::rule::{Effect, Rule};
use super::{Decision, DecisionReason, Policy, PolicyEngine, Request};
use zt_core::SpiffeId;
use zt_core::matcher::{IdMatcher, MatcherKind, SegmentPattern};

/// Why a [`Policy`] could not be translated into Cedar.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CedarError {
    /// The rule uses something Cedar cannot express, such as a caller
    /// closure. Keep such rules out of policies meant for Cedar, or write
    /// the condition as an ID pattern.
    #[error("rule `{rule_id}` cannot be written in Cedar: {reason}")]
    Untranslatable {
        /// The rule.
        rule_id: String,
        /// What in the rule has no Cedar equivalent.
        reason: String,
    },
    /// The Cedar text generated for a rule does not parse. This is a bug in
    /// the translation; please report it with the rule.
    #[error("the Cedar text generated for rule `{rule_id}` does not parse (a bug in zt): {text}")]
    Generated {
        /// The rule.
        rule_id: String,
        /// The generated text.
        text: String,
        /// Cedar's parse errors.
        #[source]
        source: Box<cedar_policy::ParseErrors>,
    },
    /// Cedar refused to add a translated rule to its policy set. This is a
    /// bug in the translation; please report it with the policy.
    #[error("Cedar refused the policy generated for rule `{rule_id}` (a bug in zt)")]
    PolicySet {
        /// The rule.
        rule_id: String,
        /// Cedar's error.
        #[source]
        source: Box<cedar_policy::PolicySetError>,
    },
    /// A Cedar entity type name used by the translation does not parse.
    /// This is a bug in zt; please report it.
    #[error("the Cedar entity type `{name}` does not parse (a bug in zt)")]
    EntityType {
        /// The type name.
        name: &'static str,
        /// Cedar's parse errors.
        #[source]
        source: Box<cedar_policy::ParseErrors>,
    },
}

/// A [`Policy`] translated into Cedar and decided by Cedar's authorizer
/// (mapping in the [module docs](self)). It gives the same [`Decision`] as
/// the policy it was built from, including the rule id, the audit-only
/// matches and the policy version.
pub struct CedarPolicy {
    version: Arc<str>,
    /// Rule ids in policy order; Cedar policy `r<i>` is rule `i`.
    rule_ids: Vec<Arc<str>>,
    /// Allow (`permit`) and deny (`forbid`) rules.
    decide: PolicySet,
    /// Audit-only rules, as `permit`s.
    audit: PolicySet,
    /// Every generated policy, in rule order.
    text: String,
    /// Positions of the principal's `segments` record the policies read.
    id_positions: usize,
    /// Positions of the resource's `segments` records the policies read.
    path_positions: usize,
    types: Types,
    authorizer: Authorizer,
}

/// The entity types of a request, parsed once.
struct Types {
    workload: EntityTypeName,
    action: EntityTypeName,
    path: EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, CedarError> {
        let parse = |name: &'static str| {
            EntityTypeName::from_str(name).map_err(|source| CedarError::EntityType {
                name,
                source: Box::new(source),
            })
        };
        Ok(Self {
            workload: parse("Workload")?,
            action: parse("Action")?,
            path: parse("Path")?,
        })
    }
}

impl CedarPolicy {
    /// Translates every rule of `policy` into Cedar.
    ///
    /// # Errors
    ///
    /// [`CedarError::Untranslatable`] for the first rule with a caller
    /// closure (or another matcher Cedar cannot express) or with scopes; the other
    /// variants only if the translation itself is faulty.
    pub fn from_policy(policy: &Policy) -> Result<Self, CedarError> {
        let mut out = Self {
            version: PolicyEngine::version(policy),
            rule_ids: Vec::with_capacity(policy.rules().len()),
            decide: PolicySet::new(),
            audit: PolicySet::new(),
            text: String::new(),
            id_positions: 0,
            path_positions: 0,
            types: Types::new()?,
            authorizer: Authorizer::new(),
        };
        for (index, rule) in policy.rules().iter().enumerate() {
            out.add_rule(index, rule)?;
        }
        Ok(out)
    }

    fn add_rule(&mut self, index: usize, rule: &Rule) -> Result<(), CedarError> {
        if !rule.scopes().is_empty() {
            return Err(CedarError::Untranslatable {
                rule_id: rule.id().to_owned(),
                reason: "scope requirements (`scopes`) are not translated; the Cedar \
                         request carries no user context"
                    .to_owned(),
            });
        }
        if let Some(condition) = rule.conditions().first() {
            return Err(CedarError::Untranslatable {
                rule_id: rule.id().to_owned(),
                reason: format!(
                    "context conditions (`when`, here `{condition}`) are not translated; the \
                     Cedar request carries no token claims or caller captures"
                ),
            });
        }
        if rule.capture_names().next().is_some() {
            return Err(CedarError::Untranslatable {
                rule_id: rule.id().to_owned(),
                reason: "caller captures (`{name}` segments) are not translated".to_owned(),
            });
        }
        let mut t = Translator {
            rule_id: rule.id(),
            id_positions: 0,
            path_positions: 0,
        };
        let callers = t.any(rule.callers(), |t, m| t.caller(m))?;
        let actions = t.any(rule.actions(), |t, a| t.action(a))?;
        let (kind, set, note) = match rule.effect() {
            Effect::Allow => ("permit", &mut self.decide, "allow"),
            Effect::Deny => ("forbid", &mut self.decide, "deny"),
            Effect::AuditOnly => (
                "permit",
                &mut self.audit,
                "audit-only, in its own policy set",
            ),
        };
        let text = format!(
            "// r{index}: {note}\n@id({id})\n{kind} (principal, action, resource)\nwhen {{\n  \
             {callers}\n  && {actions}\n}};\n",
            id = quote(rule.id()),
        );
        let parsed =
            cedar_policy::Policy::parse(Some(policy_id(index)), &text).map_err(|source| {
                CedarError::Generated {
                    rule_id: rule.id().to_owned(),
                    text: text.clone(),
                    source: Box::new(source),
                }
            })?;
        set.add(parsed).map_err(|source| CedarError::PolicySet {
            rule_id: rule.id().to_owned(),
            source: Box::new(source),
        })?;
        self.text.push_str(&text);
        self.id_positions = self.id_positions.max(t.id_positions);
        self.path_positions = self.path_positions.max(t.path_positions);
        self.rule_ids.push(Arc::clone(rule.id_arc()));
        Ok(())
    }

    /// The generated Cedar policies, in rule order (audit-only rules
    /// included, as `permit`s).
    pub fn policy_text(&self) -> &str {
        &self.text
    }

    /// The Cedar principal, resource and entities for a request.
    fn cedar_request(
        &self,
        caller: &SpiffeId,
        request: &Request<'_>,
    ) -> Result<(cedar_policy::Request, Entities), String> {
        let principal = EntityUid::from_type_name_and_id(
            self.types.workload.clone(),
            EntityId::new(caller.to_string()),
        );
        let action = EntityUid::from_type_name_and_id(
            self.types.action.clone(),
            EntityId::new(request.method),
        );
        let resource =
            EntityUid::from_type_name_and_id(self.types.path.clone(), EntityId::new(request.path));

        let id_path = caller.path();
        let id_segments: Vec<&str> = if id_path.is_empty() {
            Vec::new()
        } else {
            id_path.trim_start_matches('/').split('/').collect()
        };
        let principal_attrs = [
            (
                "trust_domain".to_owned(),
                RestrictedExpression::new_string(caller.trust_domain().as_str().to_owned()),
            ),
            ("depth".to_owned(), long(id_segments.len())),
            (
                "segments".to_owned(),
                positions(id_segments.iter().copied(), self.id_positions)?,
            ),
        ];

        let grpc_method = request.grpc_method.unwrap_or("");
        let mut resource_attrs = vec![
            (
                "path".to_owned(),
                path_record(request.path, false, self.path_positions)?,
            ),
            (
                "grpc_method".to_owned(),
                RestrictedExpression::new_string(grpc_method.to_owned()),
            ),
            (
                "grpc_service".to_owned(),
                RestrictedExpression::new_string(grpc_service(grpc_method).to_owned()),
            ),
        ];
        if let Some(route) = request.route {
            resource_attrs.push((
                "route".to_owned(),
                path_record(route, true, self.path_positions)?,
            ));
        }

        let entities = Entities::from_entities(
            [
                Entity::new(
                    principal.clone(),
                    principal_attrs.into_iter().collect(),
                    HashSet::new(),
                )
                .map_err(|e| e.to_string())?,
                Entity::new(
                    resource.clone(),
                    resource_attrs.into_iter().collect(),
                    HashSet::new(),
                )
                .map_err(|e| e.to_string())?,
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
        let request =
            cedar_policy::Request::new(principal, action, resource, Context::empty(), None)
                .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// The indexes of the policies that determined Cedar's answer, lowest
    /// first; `Err` if Cedar reported evaluation errors.
    fn determining(
        &self,
        set: &PolicySet,
        request: &cedar_policy::Request,
        entities: &Entities,
    ) -> Result<(cedar_policy::Decision, Vec<usize>), String> {
        let response = self.authorizer.is_authorized(request, set, entities);
        let diagnostics = response.diagnostics();
        if let Some(error) = diagnostics.errors().next() {
            return Err(error.to_string());
        }
        let mut found: Vec<usize> = diagnostics.reason().filter_map(rule_index).collect();
        found.sort_unstable();
        Ok((response.decision(), found))
    }

    fn decision(
        &self,
        allowed: bool,
        reason: DecisionReason,
        rule: Option<usize>,
        audit: Vec<Arc<str>>,
    ) -> Decision {
        Decision {
            allowed,
            reason,
            rule_id: rule.and_then(|i| self.rule_ids.get(i)).map(Arc::clone),
            audit_only_matches: audit,
            policy_version: Arc::clone(&self.version),
            condition: None,
        }
    }
}

impl PolicyEngine for CedarPolicy {
    /// Decides as the [`Policy`] it was built from would. If Cedar cannot
    /// be asked (an entity it refuses) or reports an evaluation error, the
    /// request is denied ([`DecisionReason::NoMatchingRule`]) and the
    /// failure logged: the engine fails closed.
    fn evaluate(&self, request: &Request<'_>) -> Decision {
        let Some(caller) = request.caller else {
            return self.decision(false, DecisionReason::Unauthenticated, None, Vec::new());
        };
        let fail_closed = |what: &str, error: String| {
            tracing::error!(
                policy_version = %self.version,
                "Cedar policy engine: {what}: {error}; denying the request"
            );
            self.decision(false, DecisionReason::NoMatchingRule, None, Vec::new())
        };
        let (cedar_request, entities) = match self.cedar_request(caller, request) {
            Ok(built) => built,
            Err(error) => return fail_closed("cannot build the Cedar request", error),
        };
        let audit = if self.audit.is_empty() {
            Vec::new()
        } else {
            match self.determining(&self.audit, &cedar_request, &entities) {
                Ok((_, found)) => found
                    .into_iter()
                    .filter_map(|i| self.rule_ids.get(i).map(Arc::clone))
                    .collect(),
                Err(error) => return fail_closed("audit-only policy error", error),
            }
        };
        match self.determining(&self.decide, &cedar_request, &entities) {
            Ok((cedar_policy::Decision::Allow, found)) => self.decision(
                true,
                DecisionReason::MatchedAllow,
                found.first().copied(),
                audit,
            ),
            Ok((cedar_policy::Decision::Deny, found)) => match found.first() {
                Some(&first) => {
                    self.decision(false, DecisionReason::MatchedDeny, Some(first), audit)
                }
                None => self.decision(false, DecisionReason::NoMatchingRule, None, audit),
            },
            Err(error) => fail_closed("policy error", error),
        }
    }

    fn version(&self) -> Arc<str> {
        Arc::clone(&self.version)
    }
}

impl fmt::Debug for CedarPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarPolicy")
            .field("version", &self.version)
            .field("rules", &self.rule_ids.len())
            .finish_non_exhaustive()
    }
}

fn policy_id(index: usize) -> PolicyId {
    PolicyId::new(format!("r{index}"))
}

fn rule_index(id: &PolicyId) -> Option<usize> {
    let text: &str = id.as_ref();
    text.strip_prefix('r')?.parse().ok()
}

fn long(n: usize) -> RestrictedExpression {
    // Counts of path segments; a path of 2^63 segments does not fit in
    // memory, so saturating is never observable.
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `{ s0: …, s1: … }`: the first `limit` segments by position.
fn positions<'a>(
    segments: impl Iterator<Item = &'a str>,
    limit: usize,
) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record(segments.take(limit).enumerate().map(|(i, s)| {
        (
            format!("s{i}"),
            RestrictedExpression::new_string(s.to_owned()),
        )
    }))
    .map_err(|e| e.to_string())
}

/// The `path` / `route` record of the resource (see the module docs).
fn path_record(path: &str, route: bool, limit: usize) -> Result<RestrictedExpression, String> {
    let (rooted, depth, segments) = match path.strip_prefix('/') {
        Some(rest) => {
            let segments = rest.split('/').take(limit).map(|s| {
                // In a route, a catch-all segment is matched by no literal
                // and no one-segment wildcard; blank it so none does.
                if route && s.starts_with("{*") { "" } else { s }
            });
            (true, rest.split('/').count(), positions(segments, limit)?)
        }
        None => (false, 0, positions(std::iter::empty(), 0)?),
    };
    RestrictedExpression::new_record([
        (
            "text".to_owned(),
            RestrictedExpression::new_string(path.to_owned()),
        ),
        ("rooted".to_owned(), RestrictedExpression::new_bool(rooted)),
        ("depth".to_owned(), long(depth)),
        ("segments".to_owned(), segments),
    ])
    .map_err(|e| e.to_string())
}

/// `/package.Service/` if `grpc_method` is a non-empty method name below
/// it, else `""`.
fn grpc_service(grpc_method: &str) -> &str {
    match grpc_method.rfind('/') {
        Some(i) if i + 1 < grpc_method.len() => grpc_method.get(..=i).unwrap_or(""),
        _ => "",
    }
}

/// A Cedar string literal.
fn quote(s: &str) -> String {
    // Rust's escapes (`\"`, `\\`, `\n`, `\u{…}`) are the ones Cedar's
    // parser reads.
    format!("\"{}\"", s.escape_default())
}

/// Translates one rule's callers and actions into Cedar conditions.
struct Translator<'r> {
    rule_id: &'r str,
    id_positions: usize,
    path_positions: usize,
}

impl Translator<'_> {
    fn untranslatable(&self, reason: String) -> CedarError {
        CedarError::Untranslatable {
            rule_id: self.rule_id.to_owned(),
            reason,
        }
    }

    /// `(a || b || …)`, or `a` alone; `true` for an empty list (no callers /
    /// no actions).
    fn any<T>(
        &mut self,
        items: &[T],
        mut each: impl FnMut(&mut Self, &T) -> Result<String, CedarError>,
    ) -> Result<String, CedarError> {
        if items.is_empty() {
            return Ok("true".to_owned());
        }
        let mut parts = items
            .iter()
            .map(|item| each(self, item))
            .collect::<Result<Vec<_>, _>>()?;
        // Every part is a comparison or parenthesised, so one needs no
        // parentheses of its own.
        match parts.pop() {
            Some(only) if parts.is_empty() => Ok(only),
            Some(last) => {
                parts.push(last);
                Ok(format!("({})", parts.join(" || ")))
            }
            None => Ok("false".to_owned()),
        }
    }

    fn caller(&mut self, matcher: &IdMatcher) -> Result<String, CedarError> {
        let workload = |id: &SpiffeId| format!("Workload::{}", quote(&id.to_string()));
        let td =
            |td: &zt_core::TrustDomain| format!("principal.trust_domain == {}", quote(td.as_str()));
        Ok(match matcher.kind() {
            MatcherKind::Exact(id) => format!("principal == {}", workload(id)),
            MatcherKind::OneOf(set) => {
                if set.is_empty() {
                    return Ok("false".to_owned());
                }
                let mut ids: Vec<&SpiffeId> = set.iter().collect();
                ids.sort_unstable();
                let list: Vec<String> = ids.into_iter().map(workload).collect();
                format!("[{}].contains(principal)", list.join(", "))
            }
            MatcherKind::TrustDomain(trust_domain) => {
                format!("({} && principal.depth > 0)", td(trust_domain))
            }
            MatcherKind::Prefix { trust_domain, path } => {
                let base: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                let mut cond = format!("({} && principal.depth > {}", td(trust_domain), base.len());
                for (i, segment) in base.iter().enumerate() {
                    let _ = write!(cond, " && principal.segments.s{i} == {}", quote(segment));
                }
                cond.push(')');
                self.id_positions = self.id_positions.max(base.len());
                cond
            }
            MatcherKind::Glob {
                trust_domain,
                segments,
                tail,
            } => {
                let op = if tail { ">" } else { "==" };
                let mut cond = format!(
                    "({} && principal.depth {op} {}",
                    td(trust_domain),
                    segments.len()
                );
                for (i, segment) in segments.iter().enumerate() {
                    match segment {
                        SegmentPattern::Literal(lit) => {
                            let _ = write!(cond, " && principal.segments.s{i} == {}", quote(lit));
                        }
                        // A SPIFFE ID has no empty segments: any one is fine.
                        SegmentPattern::Any => {}
                        other => {
                            return Err(self.untranslatable(format!(
                                "caller segment pattern {other:?} has no Cedar translation"
                            )));
                        }
                    }
                }
                cond.push(')');
                self.id_positions = self.id_positions.max(segments.len());
                cond
            }
            MatcherKind::AnyOf(list) => {
                if list.is_empty() {
                    return Ok("false".to_owned());
                }
                self.any(list, |t, m| t.caller(m))?
            }
            MatcherKind::Custom { description } => {
                return Err(self.untranslatable(format!(
                    "caller `{description}` is a Rust closure, which Cedar cannot call; \
                     write it as an ID pattern"
                )));
            }
            other => {
                return Err(self
                    .untranslatable(format!("caller matcher {other:?} has no Cedar translation")));
            }
        })
    }

    fn action(&mut self, action: &Action) -> Result<String, CedarError> {
        Ok(match action {
            Action::Http { method, path } => {
                let method = match method {
                    MethodMatch::Any => None,
                    MethodMatch::Exact(m) => Some(format!("action == Action::{}", quote(m))),
                };
                let on_path = self.path(path, "resource.path");
                let on_route = self.path(path, "resource.route");
                let paths = format!("({on_path} || (resource has route && {on_route}))");
                match method {
                    Some(m) => format!("({m} && {paths})"),
                    None => paths,
                }
            }
            Action::Grpc(pattern) => self.grpc(pattern),
        })
    }

    /// The condition for `pattern` on the path record at `record`.
    fn path(&mut self, pattern: &PathPattern, record: &str) -> String {
        let text = pattern.as_str();
        if pattern.is_exact() {
            return format!("{record}.text == {}", quote(text));
        }
        // A validated pattern with a wildcard: `/` then segments, each a
        // literal, `*` or `{name}`, and possibly a final `**`.
        let rest = text.strip_prefix('/').unwrap_or(text);
        let mut parts: Vec<&str> = rest.split('/').collect();
        let tail = parts.last() == Some(&"**");
        if tail {
            parts.pop();
        }
        let op = if tail { ">=" } else { "==" };
        let mut cond = format!("({record}.rooted");
        if !parts.is_empty() {
            let _ = write!(cond, " && {record}.depth {op} {}", parts.len());
        }
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" || (part.starts_with('{') && part.ends_with('}')) {
                let _ = write!(cond, " && {record}.segments.s{i} != \"\"");
            } else {
                let _ = write!(cond, " && {record}.segments.s{i} == {}", quote(part));
            }
        }
        cond.push(')');
        self.path_positions = self.path_positions.max(parts.len());
        cond
    }

    fn grpc(&mut self, pattern: &GrpcPattern) -> String {
        let text = pattern.as_str();
        match text.strip_suffix('*') {
            Some(service) if pattern.is_service_wide() => {
                format!("resource.grpc_service == {}", quote(service))
            }
            _ => format!("resource.grpc_method == {}", quote(text)),
        }
    }
}
