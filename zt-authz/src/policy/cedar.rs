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
//! # Context conditions and captures
//!
//! A rule's [conditions](super::Condition) become further `&&` terms of its
//! `when` clause. The Cedar request's `context` is built from the zt
//! request's [`Context`](super::Context) (the verified token's claims),
//! split by the type of each value so that no comparison can raise a Cedar
//! type error:
//!
//! - `context.claims`: the string claims, by key (`context.claims.repository`,
//!   or `context.claims["kubernetes.io.namespace"]` for a key that is not a
//!   Cedar identifier);
//! - `context.lists`: the list claims, as sets of strings;
//! - `context.flags`: the boolean claims;
//! - `context.parts`: for the string claims that glob conditions read, a
//!   record `{ depth, segments }` of their `/`-separated segments, as for
//!   paths.
//!
//! A request without a context has all four empty. Every read is guarded
//! with `has`, so a missing claim makes the condition false (a missing
//! claim denies), never a Cedar error. A condition key that one of the
//! rule's caller patterns captures (`{ns}` in `spiffe://td/ns/{ns}/sa/*`)
//! reads the principal's segment at that position, under the condition
//! that this caller pattern matches and no earlier pattern declaring the
//! same capture does, as the zt engine looks captures up.
//!
//! | zt condition | Cedar condition (for a claim `k`) |
//! |---|---|
//! | `k = "v"` | `(context.claims has "k" && context.claims.k == "v") \|\| (context.lists has "k" && context.lists.k.contains("v"))` |
//! | `k = true` | `context.flags has "k" && context.flags.k == true` |
//! | `k = { one_of = ["a", "b"] }` | `["a", "b"].contains(context.claims.k)`, or `context.lists.k.containsAny(["a", "b"])` for a list, each guarded |
//! | `k = { glob = "refs/tags/v*" }` | `context.parts.k.depth == 3 && …segments.s0 == "refs" && …s1 == "tags" && …s2 like "v*"` (`*` segment: `!= ""`; final `**`: `depth > n`) |
//! | `k = { present = true }` / `false` | `context.claims has "k" \|\| context.lists has "k" \|\| context.flags has "k"` / its negation |
//! | `k = { same_as = "j" }` | for each pair of types `k` and `j` may hold: `==` (strings, booleans), `.contains` (string and list), `.containsAny` (two lists), each guarded |
//! | capture `ns = "prod"` on `spiffe://td/ns/{ns}/**` | `(<the pattern's condition>) && principal.segments.s1 == "prod"` |
//! | capture `sa = { glob = "api*" }` | `principal.segments.s3 like "api*"` (a glob of more than one segment, or with `**`, is `false`: a segment holds no `/`) |
//!
//! One form has no Cedar equivalent: a glob on a claim whose value is a
//! *list* (zt: some element matches). Cedar has no quantifier over sets, and
//! whether a claim is a list is known only per request, so the translation
//! cannot refuse it in advance: a request whose context holds a list for a
//! key a glob condition reads is denied by [`CedarPolicy`] (fail closed,
//! logged), where [`Policy`] may allow it.
//!
//! When no rule allows a request, [`Policy`] names the first allow rule that
//! matched but for a condition ([`DecisionReason::ConditionNotMet`]). Each
//! allow rule with conditions is therefore also added, without them, to a
//! third policy set; when Cedar allows nothing, the lowest satisfied policy
//! of that set names the rule, and the failed condition is described by
//! the rule's own condition code (the same text [`Policy`] records).
//!
//! # Untranslatable rules
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
use super::condition::{Condition, ContextValue, GlobSegment, Test, ValueGlob};
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
    /// Allow rules that have conditions, without their conditions: asked
    /// when nothing is allowed, for the rule that failed only a condition.
    unconditioned: PolicySet,
    /// The zt rules of `unconditioned`, by index, to describe the failed
    /// condition.
    conditioned: Vec<Option<Rule>>,
    /// Context keys that glob conditions on claims read.
    glob_keys: Vec<Arc<str>>,
    /// Positions of the `context.parts` records the policies read.
    glob_positions: usize,
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
            unconditioned: PolicySet::new(),
            conditioned: Vec::new(),
            glob_keys: Vec::new(),
            glob_positions: 0,
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
        let mut t = Translator {
            rule_id: rule.id(),
            id_positions: 0,
            path_positions: 0,
            glob_keys: Vec::new(),
            glob_positions: 0,
        };
        let callers = t.any(rule.callers(), |t, m| t.caller(m))?;
        let actions = t.any(rule.actions(), |t, a| t.action(a))?;
        let mut conditions = String::new();
        for condition in rule.conditions() {
            let cond = t.condition(rule, condition)?;
            let _ = write!(conditions, "\n  && {cond}");
        }
        if !rule.conditions().is_empty() && rule.effect() == Effect::Allow {
            let text = format!(
                "// r{index}: allow, without its conditions\n@id({id})\npermit (principal, \
                 action, resource)\nwhen {{\n  {callers}\n  && {actions}\n}};\n",
                id = quote(rule.id()),
            );
            let parsed = parse(index, rule.id(), text)?;
            self.unconditioned
                .add(parsed)
                .map_err(|source| CedarError::PolicySet {
                    rule_id: rule.id().to_owned(),
                    source: Box::new(source),
                })?;
            if self.conditioned.len() <= index {
                self.conditioned.resize(index + 1, None);
            }
            if let Some(slot) = self.conditioned.get_mut(index) {
                *slot = Some(rule.clone());
            }
        }
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
             {callers}\n  && {actions}{conditions}\n}};\n",
            id = quote(rule.id()),
        );
        let parsed = parse(index, rule.id(), text.clone())?;
        set.add(parsed).map_err(|source| CedarError::PolicySet {
            rule_id: rule.id().to_owned(),
            source: Box::new(source),
        })?;
        self.text.push_str(&text);
        self.id_positions = self.id_positions.max(t.id_positions);
        self.path_positions = self.path_positions.max(t.path_positions);
        self.glob_positions = self.glob_positions.max(t.glob_positions);
        for key in t.glob_keys {
            if !self.glob_keys.contains(&key) {
                self.glob_keys.push(key);
            }
        }
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
        let context = self.cedar_context(request.context)?;
        let request = cedar_policy::Request::new(principal, action, resource, context, None)
            .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// The Cedar context of a request's zt [`Context`](super::Context):
    /// records `claims` (strings), `lists` (sets of strings), `flags`
    /// (booleans) and `parts` (the segments of the string claims glob
    /// conditions read); all empty for a request without one.
    fn cedar_context(&self, context: Option<&super::Context>) -> Result<Context, String> {
        let mut claims = Vec::new();
        let mut lists = Vec::new();
        let mut flags = Vec::new();
        let mut parts = Vec::new();
        for (key, value) in context.into_iter().flat_map(super::Context::iter) {
            match value {
                ContextValue::String(text) => {
                    if self.glob_keys.iter().any(|k| &**k == key) {
                        parts.push((key.to_owned(), segments_record(text, self.glob_positions)?));
                    }
                    claims.push((
                        key.to_owned(),
                        RestrictedExpression::new_string(text.to_string()),
                    ));
                }
                ContextValue::List(items) => {
                    if self.glob_keys.iter().any(|k| &**k == key) {
                        return Err(format!(
                            "the claim `{key}` is a list and a glob condition reads it; Cedar \
                             cannot test whether some element of a set matches a pattern"
                        ));
                    }
                    lists.push((
                        key.to_owned(),
                        RestrictedExpression::new_set(
                            items
                                .iter()
                                .map(|i| RestrictedExpression::new_string(i.to_string())),
                        ),
                    ));
                }
                ContextValue::Bool(b) => {
                    flags.push((key.to_owned(), RestrictedExpression::new_bool(*b)));
                }
            }
        }
        let record = |entries: Vec<(String, RestrictedExpression)>| {
            RestrictedExpression::new_record(entries).map_err(|e| e.to_string())
        };
        Context::from_pairs([
            ("claims".to_owned(), record(claims)?),
            ("lists".to_owned(), record(lists)?),
            ("flags".to_owned(), record(flags)?),
            ("parts".to_owned(), record(parts)?),
        ])
        .map_err(|e| e.to_string())
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
                None if self.unconditioned.is_empty() => {
                    self.decision(false, DecisionReason::NoMatchingRule, None, audit)
                }
                None => match self.determining(&self.unconditioned, &cedar_request, &entities) {
                    Ok((_, found)) => {
                        let failed = found.first().and_then(|&i| {
                            let rule = self.conditioned.get(i)?.as_ref()?;
                            Some((i, rule.failed_condition(request)?))
                        });
                        match failed {
                            Some((i, condition)) => {
                                let mut denied = self.decision(
                                    false,
                                    DecisionReason::ConditionNotMet,
                                    Some(i),
                                    audit,
                                );
                                denied.condition = Some(Arc::from(condition));
                                denied
                            }
                            None => {
                                self.decision(false, DecisionReason::NoMatchingRule, None, audit)
                            }
                        }
                    }
                    Err(error) => fail_closed("policy error", error),
                },
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

/// Parses the generated text of rule `index`.
fn parse(index: usize, rule_id: &str, text: String) -> Result<cedar_policy::Policy, CedarError> {
    cedar_policy::Policy::parse(Some(policy_id(index)), &text).map_err(|source| {
        CedarError::Generated {
            rule_id: rule_id.to_owned(),
            text,
            source: Box::new(source),
        }
    })
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

/// `{ depth, s0, … }`: a claim's `/`-separated segments, for glob
/// conditions.
fn segments_record(value: &str, limit: usize) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record([
        ("depth".to_owned(), long(value.split('/').count())),
        ("segments".to_owned(), positions(value.split('/'), limit)?),
    ])
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

/// `.key` when `key` is a Cedar identifier that is not a reserved word,
/// else `["key"]`.
fn attr(key: &str) -> String {
    const RESERVED: &[&str] = &[
        "true",
        "false",
        "if",
        "then",
        "else",
        "in",
        "like",
        "has",
        "is",
        "principal",
        "action",
        "resource",
        "context",
        "permit",
        "forbid",
        "when",
        "unless",
        "__cedar",
    ];
    let ident = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !RESERVED.contains(&key);
    if ident {
        format!(".{key}")
    } else {
        format!("[{}]", quote(key))
    }
}

/// A Cedar `like` pattern matching strings that start with `prefix`.
fn starts_with(prefix: &str) -> String {
    // `*` is the only character `like` treats specially; a glob prefix
    // holds none, but escape it anyway.
    let escaped = quote(prefix);
    let inner = escaped
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or("");
    format!("\"{}*\"", inner.replace('*', "\\*"))
}

/// The kind of value one alternative of a condition key holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string claim, read with `context.claims`.
    Claim,
    /// A captured segment of the caller's SPIFFE ID.
    Capture,
    /// A list claim (a set of strings), read with `context.lists`.
    Set,
    /// A boolean claim, read with `context.flags`.
    Bool,
}

/// One place a condition key's value may be: when `guard` holds, the
/// value is `expr`, of `kind`. At most one guard of a key holds; none
/// holding means the value is absent.
struct Alt {
    guard: String,
    kind: Kind,
    expr: String,
    /// For a string claim: the key, to reach its `context.parts` record.
    key: Option<String>,
}

/// `a || b || …`, parenthesised; `false` for none.
fn or(parts: Vec<String>) -> String {
    match parts.len() {
        0 => "false".to_owned(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => format!("({})", parts.join(" || ")),
    }
}

/// Translates one rule's callers, actions and conditions into Cedar
/// conditions.
struct Translator<'r> {
    rule_id: &'r str,
    id_positions: usize,
    path_positions: usize,
    /// Context keys the rule's glob conditions read.
    glob_keys: Vec<Arc<str>>,
    /// Positions of `context.parts` records those globs read.
    glob_positions: usize,
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

    /// Where the value of condition key `key` is, as the zt engine looks
    /// it up: a capture of the first caller pattern that declares it and
    /// matches the caller, or, when no pattern declares it, the claim.
    fn lookup(&mut self, rule: &Rule, key: &str) -> Result<Vec<Alt>, CedarError> {
        let mut alts = Vec::new();
        let mut earlier: Vec<String> = Vec::new();
        let mut declared = false;
        for captures in rule.captures() {
            let Some((_, at)) = captures.names.iter().find(|(n, _)| &**n == key) else {
                continue;
            };
            declared = true;
            let Some(matcher) = rule.callers().get(captures.caller) else {
                continue;
            };
            let matches = self.caller(matcher)?;
            self.id_positions = self.id_positions.max(at + 1);
            let mut guard = matches.clone();
            for other in &earlier {
                let _ = write!(guard, " && !({other})");
            }
            alts.push(Alt {
                guard: format!("({guard})"),
                kind: Kind::Capture,
                expr: format!("principal.segments.s{at}"),
                key: None,
            });
            earlier.push(matches);
        }
        if declared {
            return Ok(alts);
        }
        let a = attr(key);
        let has = quote(key);
        Ok(vec![
            Alt {
                guard: format!("context.claims has {has}"),
                kind: Kind::Claim,
                expr: format!("context.claims{a}"),
                key: Some(key.to_owned()),
            },
            Alt {
                guard: format!("context.lists has {has}"),
                kind: Kind::Set,
                expr: format!("context.lists{a}"),
                key: None,
            },
            Alt {
                guard: format!("context.flags has {has}"),
                kind: Kind::Bool,
                expr: format!("context.flags{a}"),
                key: None,
            },
        ])
    }

    /// The Cedar condition for one zt condition of `rule` (mapping in the
    /// module docs).
    fn condition(&mut self, rule: &Rule, condition: &Condition) -> Result<String, CedarError> {
        let alts = self.lookup(rule, condition.key())?;
        let present = || or(alts.iter().map(|a| a.guard.clone()).collect());
        let each = |f: &mut dyn FnMut(&Alt) -> Option<String>| {
            or(alts
                .iter()
                .filter_map(|a| f(a).map(|c| format!("({} && {c})", a.guard)))
                .collect())
        };
        Ok(match condition.test() {
            Test::Present(true) => present(),
            Test::Present(false) => format!("!{}", present()),
            Test::Equals(value) => each(&mut |a| match a.kind {
                Kind::Claim | Kind::Capture => Some(format!("{} == {}", a.expr, quote(value))),
                Kind::Set => Some(format!("{}.contains({})", a.expr, quote(value))),
                Kind::Bool => None,
            }),
            Test::IsBool(value) => {
                each(&mut |a| (a.kind == Kind::Bool).then(|| format!("{} == {value}", a.expr)))
            }
            Test::OneOf(options) => {
                let list: Vec<String> = options.iter().map(|o| quote(o)).collect();
                let list = format!("[{}]", list.join(", "));
                each(&mut |a| match a.kind {
                    Kind::Claim | Kind::Capture => Some(format!("{list}.contains({})", a.expr)),
                    Kind::Set => Some(format!("{}.containsAny({list})", a.expr)),
                    Kind::Bool => None,
                })
            }
            Test::Glob(glob) => {
                let mut needs_parts = false;
                let mut positions = 0;
                let cond = each(&mut |a| match (a.kind, &a.key) {
                    (Kind::Capture, _) => Some(glob_on_segment(glob, &a.expr)),
                    (Kind::Claim, Some(key)) => {
                        needs_parts = true;
                        positions = positions.max(glob.segments().0.len());
                        Some(glob_on_parts(glob, key))
                    }
                    // A list read by a glob is refused when the request is
                    // built; booleans never match a glob.
                    _ => None,
                });
                if needs_parts {
                    let key: Arc<str> = Arc::from(condition.key());
                    if !self.glob_keys.contains(&key) {
                        self.glob_keys.push(key);
                    }
                    self.glob_positions = self.glob_positions.max(positions);
                }
                cond
            }
            Test::SameAs(other) => {
                let others = self.lookup(rule, other)?;
                let mut parts = Vec::new();
                for a in &alts {
                    for b in &others {
                        let string = |k| matches!(k, Kind::Claim | Kind::Capture);
                        let same = match (a.kind, b.kind) {
                            (x, y) if string(x) && string(y) => {
                                format!("{} == {}", a.expr, b.expr)
                            }
                            (x, Kind::Set) if string(x) => {
                                format!("{}.contains({})", b.expr, a.expr)
                            }
                            (Kind::Set, y) if string(y) => {
                                format!("{}.contains({})", a.expr, b.expr)
                            }
                            (Kind::Set, Kind::Set) => {
                                format!("{}.containsAny({})", a.expr, b.expr)
                            }
                            (Kind::Bool, Kind::Bool) => format!("{} == {}", a.expr, b.expr),
                            _ => continue,
                        };
                        parts.push(format!("({} && {} && {same})", a.guard, b.guard));
                    }
                }
                or(parts)
            }
        })
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

/// A glob on a captured SPIFFE ID segment (one segment, never empty).
fn glob_on_segment(glob: &ValueGlob, expr: &str) -> String {
    match glob.segments() {
        ([only], false) => match only {
            GlobSegment::Any => format!("{expr} != \"\""),
            GlobSegment::Prefix(prefix) => format!("{expr} like {}", starts_with(prefix)),
            GlobSegment::Literal(literal) => format!("{expr} == {}", quote(literal)),
        },
        // More than one segment, or `**`: a segment holds no `/`.
        _ => "false".to_owned(),
    }
}

/// A glob on the `context.parts` record of string claim `key`.
fn glob_on_parts(glob: &ValueGlob, key: &str) -> String {
    let record = format!("context.parts{}", attr(key));
    let (segments, rest) = glob.segments();
    let op = if rest { ">" } else { "==" };
    let mut cond = format!(
        "context.parts has {} && {record}.depth {op} {}",
        quote(key),
        segments.len()
    );
    for (i, segment) in segments.iter().enumerate() {
        let at = format!("{record}.segments.s{i}");
        let _ = match segment {
            GlobSegment::Any => write!(cond, " && {at} != \"\""),
            GlobSegment::Prefix(prefix) => write!(cond, " && {at} like {}", starts_with(prefix)),
            GlobSegment::Literal(literal) => write!(cond, " && {at} == {}", quote(literal)),
        };
    }
    cond
}
