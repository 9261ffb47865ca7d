//! The compiled index: which rules can apply to a caller, found without
//! scanning every rule.
//!
//! Each effect has its own [`CallerIndex`]. Rules naming exact IDs are
//! found by one hash lookup on the caller's ID, rules confined to a trust
//! domain (`spiffe://td/**`, prefixes, globs) by one lookup on its trust
//! domain, and the rest (any caller, closures, alternatives spanning trust
//! domains) sit in a bucket tried for every caller.
//!
//! Then by route: a bucket holding more than [`ROUTE_INDEX_MIN`] rules
//! indexes them again by what every action of a rule pins down, the first
//! path segment of HTTP patterns (`/invoices/{id}` → `invoices`) and the
//! service of gRPC patterns (`/pkg.Svc/*` → `pkg.Svc`), so a trust domain
//! with thousands of rules costs a request only the rules on its route.
//! Rules with an action that pins neither (`/**`, `/{id}`, no actions) stay
//! in the bucket's list for every request.
//!
//! Candidate lists are in rule order, so the first match in each list is
//! its lowest-index match and the search stops there.

use std::collections::HashMap;
use std::sync::Arc;

use super::action::{Action, Segment};
use super::rule::{Effect, Rule};
use super::{DecisionReason, DecisionRef, Request};
use zt_core::matcher::{IdMatcher, MatcherKind};
use zt_core::{SpiffeId, TrustDomain};

/// The index of a policy's rules.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Some allow rule has conditions: a request no rule allows is checked
    /// once more, for the condition that kept one from matching.
    conditioned_allow: bool,
    deny: CallerIndex,
    allow: CallerIndex,
    audit: CallerIndex,
}

/// The index's hasher. Keys are SPIFFE IDs and trust domains of callers
/// that completed mutual TLS with a trusted CA, so hash flooding by chosen
/// keys is not a concern, and SipHash would cost several times more per
/// request; the seed is still random per process.
type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
struct CallerIndex {
    by_id: HashMap<SpiffeId, Bucket, Hasher>,
    by_trust_domain: HashMap<TrustDomain, Bucket, Hasher>,
    other: Bucket,
    len: usize,
}

/// Buckets with more rules than this are indexed by route as well.
pub(super) const ROUTE_INDEX_MIN: usize = 2;

/// The rules that can apply to one caller key, by route.
#[derive(Debug, Default)]
struct Bucket {
    /// Rules tried for every request (all of them until the bucket is
    /// indexed by route).
    any: Vec<Candidate>,
    /// Rules whose every action is keyed, by HTTP first path segment.
    by_segment: HashMap<Box<str>, Vec<Candidate>, Hasher>,
    /// … and by gRPC service.
    by_service: HashMap<Box<str>, Vec<Candidate>, Hasher>,
}

#[derive(Debug, Clone)]
struct Candidate {
    rule: usize,
    check: CallerCheck,
}

/// What a rule's actions pin down, if every one of them pins something.
#[derive(Debug, Default)]
struct RouteKeys {
    segments: Vec<Box<str>>,
    services: Vec<Box<str>>,
}

impl RouteKeys {
    /// `None` when some action (or the absence of actions) can match
    /// requests on any route.
    fn of(rule: &Rule) -> Option<Self> {
        if rule.actions().is_empty() {
            return None;
        }
        let mut keys = Self::default();
        for action in rule.actions() {
            match action {
                Action::Http { path, .. } => match path.segments().0.first() {
                    Some(Segment::Literal(first)) => keys.segments.push(first.clone()),
                    _ => return None,
                },
                Action::Grpc(pattern) => keys.services.push(grpc_service(pattern.as_str())?.into()),
            }
        }
        keys.segments.sort_unstable();
        keys.segments.dedup();
        keys.services.sort_unstable();
        keys.services.dedup();
        Some(keys)
    }
}

/// `pkg.Svc` of `/pkg.Svc/Method`.
fn grpc_service(method: &str) -> Option<&str> {
    let rest = method.strip_prefix('/')?;
    rest.get(..slash(rest)?)
}

/// `invoices` of `/invoices/42`.
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    Some(slash(rest).and_then(|at| rest.get(..at)).unwrap_or(rest))
}

/// The byte offset of the first `/` (a byte search: `/` is ASCII, so the
/// offset is a character boundary).
fn slash(text: &str) -> Option<usize> {
    text.bytes().position(|b| b == b'/')
}

/// The route keys of a request, found the first time a bucket indexed by
/// route asks (most buckets of most policies are too small to be).
struct RequestKeys<'a> {
    path: &'a str,
    route: Option<&'a str>,
    grpc_method: Option<&'a str>,
    keys: std::cell::OnceCell<RouteOf<'a>>,
}

/// The first path segment of the path and of the route (when it differs),
/// and the gRPC service.
struct RouteOf<'a> {
    path: Option<&'a str>,
    route: Option<&'a str>,
    service: Option<&'a str>,
}

impl<'a> RequestKeys<'a> {
    fn of(request: &Request<'a>) -> Self {
        Self {
            path: request.path,
            route: request.route,
            grpc_method: request.grpc_method,
            keys: std::cell::OnceCell::new(),
        }
    }

    fn get(&self) -> &RouteOf<'a> {
        self.keys.get_or_init(|| {
            let path = first_segment(self.path);
            let route = self
                .route
                .and_then(first_segment)
                .filter(|r| Some(*r) != path);
            RouteOf {
                path,
                route,
                service: self.grpc_method.and_then(grpc_service),
            }
        })
    }
}

impl Bucket {
    fn push(&mut self, rule: usize, check: CallerCheck) {
        push(&mut self.any, rule, check);
    }

    /// Moves keyed rules out of `any` once the bucket is large enough for
    /// the lookups to pay.
    fn index_by_route(&mut self, keys: &[Option<RouteKeys>]) {
        if self.any.len() <= ROUTE_INDEX_MIN {
            return;
        }
        let mut any = Vec::new();
        for candidate in std::mem::take(&mut self.any) {
            match keys.get(candidate.rule).and_then(Option::as_ref) {
                Some(route) => {
                    for segment in &route.segments {
                        self.by_segment
                            .entry(segment.clone())
                            .or_default()
                            .push(candidate.clone());
                    }
                    for service in &route.services {
                        self.by_service
                            .entry(service.clone())
                            .or_default()
                            .push(candidate.clone());
                    }
                }
                None => any.push(candidate),
            }
        }
        self.any = any;
    }

    /// Visits the lists that can hold rules matching `keys`.
    fn lists<'a>(&'a self, keys: &RequestKeys<'_>, visit: &mut impl FnMut(&'a [Candidate])) {
        let mut add = |list: &'a [Candidate]| {
            if !list.is_empty() {
                visit(list);
            }
        };
        add(&self.any);
        if !self.by_segment.is_empty() {
            let keys = keys.get();
            for key in [keys.path, keys.route].into_iter().flatten() {
                if let Some(list) = self.by_segment.get(key) {
                    add(list);
                }
            }
        }
        if !self.by_service.is_empty()
            && let Some(list) = keys.get().service.and_then(|s| self.by_service.get(s))
        {
            add(list);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.any.len()
            + self.by_segment.values().map(Vec::len).sum::<usize>()
            + self.by_service.values().map(Vec::len).sum::<usize>()
    }
}

/// What is left to check of the caller once the candidate is found.
#[derive(Debug, Clone)]
enum CallerCheck {
    /// Nothing: the lookup key was the whole condition.
    None,
    /// The ID must have a path (`spiffe://td/**` never matches `spiffe://td`).
    HasPath,
    /// The matcher itself.
    Matcher(IdMatcher),
}

impl CallerCheck {
    fn passes(&self, caller: &SpiffeId) -> bool {
        match self {
            Self::None => true,
            Self::HasPath => !caller.path().is_empty(),
            Self::Matcher(m) => m.matches(caller),
        }
    }
}

fn push(list: &mut Vec<Candidate>, rule: usize, check: CallerCheck) {
    // A rule that already matches unconditionally in this list needs no
    // second entry.
    if list
        .last()
        .is_some_and(|c| c.rule == rule && matches!(c.check, CallerCheck::None))
    {
        return;
    }
    list.push(Candidate { rule, check });
}

impl CallerIndex {
    fn add_rule(&mut self, rule: usize, callers: &[IdMatcher]) {
        self.len += 1;
        if callers.is_empty() {
            self.other.push(rule, CallerCheck::None);
        }
        for matcher in callers {
            self.add_matcher(rule, matcher);
        }
    }

    fn add_matcher(&mut self, rule: usize, matcher: &IdMatcher) {
        match matcher.kind() {
            MatcherKind::Exact(id) => {
                self.by_id
                    .entry(id.clone())
                    .or_default()
                    .push(rule, CallerCheck::None);
            }
            MatcherKind::OneOf(set) => {
                for id in set.iter() {
                    self.by_id
                        .entry(id.clone())
                        .or_default()
                        .push(rule, CallerCheck::None);
                }
            }
            MatcherKind::TrustDomain(td) => self
                .by_trust_domain
                .entry(td.clone())
                .or_default()
                .push(rule, CallerCheck::HasPath),
            MatcherKind::Prefix { trust_domain, .. } | MatcherKind::Glob { trust_domain, .. } => {
                self.by_trust_domain
                    .entry(trust_domain.clone())
                    .or_default()
                    .push(rule, CallerCheck::Matcher(matcher.clone()));
            }
            MatcherKind::AnyOf(list) => {
                for m in list {
                    self.add_matcher(rule, m);
                }
            }
            // Closures, and kinds added to the matcher later: tried for
            // every caller, with the matcher's own logic.
            _ => self.other.push(rule, CallerCheck::Matcher(matcher.clone())),
        }
    }

    fn index_by_route(&mut self, keys: &[Option<RouteKeys>]) {
        for bucket in self
            .by_id
            .values_mut()
            .chain(self.by_trust_domain.values_mut())
            .chain(std::iter::once(&mut self.other))
        {
            bucket.index_by_route(keys);
        }
    }

    /// Visits the candidate lists for `caller` and the request's route,
    /// each in rule order (nothing is collected: this runs per request).
    fn lists<'a>(
        &'a self,
        caller: &SpiffeId,
        keys: &RequestKeys<'_>,
        mut visit: impl FnMut(&'a [Candidate]),
    ) {
        if self.len == 0 {
            return;
        }
        if let Some(bucket) = self.by_id.get(caller) {
            bucket.lists(keys, &mut visit);
        }
        if let Some(bucket) = self.by_trust_domain.get(caller.trust_domain()) {
            bucket.lists(keys, &mut visit);
        }
        self.other.lists(keys, &mut visit);
    }

    /// The lowest index of a rule that matches the request.
    fn first_match(
        &self,
        rules: &[Rule],
        caller: &SpiffeId,
        keys: &RequestKeys<'_>,
        request: &Request<'_>,
    ) -> Option<usize> {
        let mut best: Option<usize> = None;
        self.lists(caller, keys, |list| {
            for c in list {
                if best.is_some_and(|b| c.rule >= b) {
                    break;
                }
                if c.check.passes(caller) && rules.get(c.rule).is_some_and(|r| r.covers(request)) {
                    best = Some(c.rule);
                    break;
                }
            }
        });
        best
    }

    /// The lowest index of a rule that matches the request but for one of
    /// its conditions, and that condition.
    fn first_condition_failure(
        &self,
        rules: &[Rule],
        caller: &SpiffeId,
        keys: &RequestKeys<'_>,
        request: &Request<'_>,
    ) -> Option<(usize, String)> {
        let mut best: Option<(usize, String)> = None;
        self.lists(caller, keys, |list| {
            for c in list {
                if best.as_ref().is_some_and(|(b, _)| c.rule >= *b) {
                    break;
                }
                let Some(rule) = rules.get(c.rule) else {
                    continue;
                };
                if rule.conditions().is_empty()
                    || !c.check.passes(caller)
                    || !rule.covers_unconditioned(request)
                {
                    continue;
                }
                if let Some(failed) = rule.failed_condition(request) {
                    best = Some((c.rule, failed));
                    break;
                }
            }
        });
        best
    }

    /// The indexes of every rule that matches the request, in rule order.
    /// Allocates only when something matches.
    fn all_matches(
        &self,
        rules: &[Rule],
        caller: &SpiffeId,
        keys: &RequestKeys<'_>,
        request: &Request<'_>,
    ) -> Vec<usize> {
        let mut found = Vec::new();
        self.lists(caller, keys, |list| {
            for c in list {
                if c.check.passes(caller) && rules.get(c.rule).is_some_and(|r| r.covers(request)) {
                    found.push(c.rule);
                }
            }
        });
        if found.len() > 1 {
            found.sort_unstable();
            found.dedup();
        }
        found
    }
}

impl Index {
    pub(super) fn build(rules: &[Rule]) -> Self {
        let mut index = Self {
            conditioned_allow: rules
                .iter()
                .any(|r| r.effect() == Effect::Allow && !r.conditions().is_empty()),
            ..Self::default()
        };
        for (i, rule) in rules.iter().enumerate() {
            let target = match rule.effect() {
                Effect::Allow => &mut index.allow,
                Effect::Deny => &mut index.deny,
                Effect::AuditOnly => &mut index.audit,
            };
            target.add_rule(i, rule.callers());
        }
        let keys: Vec<Option<RouteKeys>> = rules.iter().map(RouteKeys::of).collect();
        for effect in [&mut index.deny, &mut index.allow, &mut index.audit] {
            effect.index_by_route(&keys);
        }
        index
    }

    /// The deciding effect and rule, without audit-only matches and without
    /// building a [`Decision`]: for replaying many logged requests.
    pub(super) fn decide(&self, rules: &[Rule], request: &Request<'_>) -> (bool, Option<usize>) {
        let Some(caller) = request.caller else {
            return (false, None);
        };
        let keys = RequestKeys::of(request);
        if let Some(i) = self.deny.first_match(rules, caller, &keys, request) {
            return (false, Some(i));
        }
        match self.allow.first_match(rules, caller, &keys, request) {
            Some(i) => (true, Some(i)),
            None => (false, None),
        }
    }

    /// Decides `request` and hands the decision, borrowed from `rules` and
    /// `version`, to `finish`.
    pub(super) fn decide_into<T>(
        &self,
        rules: &[Rule],
        version: &Arc<str>,
        request: &Request<'_>,
        finish: impl FnOnce(DecisionRef<'_>) -> T,
    ) -> T {
        let rule_id = |i: usize| rules.get(i).map(Rule::id_arc);
        let Some(caller) = request.caller else {
            return finish(DecisionRef::denied(
                DecisionReason::Unauthenticated,
                version,
            ));
        };
        let keys = RequestKeys::of(request);
        // Allocates only when an audit-only rule matches.
        let audit: Vec<Arc<str>> = self
            .audit
            .all_matches(rules, caller, &keys, request)
            .into_iter()
            .filter_map(|i| rules.get(i).map(|r| Arc::clone(r.id_arc())))
            .collect();
        let (allowed, reason, rule, failed) =
            if let Some(i) = self.deny.first_match(rules, caller, &keys, request) {
                (false, DecisionReason::MatchedDeny, Some(i), None)
            } else if let Some(i) = self.allow.first_match(rules, caller, &keys, request) {
                (true, DecisionReason::MatchedAllow, Some(i), None)
            } else if self.conditioned_allow
                && let Some((i, failed)) = self
                    .allow
                    .first_condition_failure(rules, caller, &keys, request)
            {
                (
                    false,
                    DecisionReason::ConditionNotMet,
                    Some(i),
                    Some(failed),
                )
            } else {
                (false, DecisionReason::NoMatchingRule, None, None)
            };
        finish(DecisionRef {
            allowed,
            reason,
            rule_id: rule.and_then(rule_id),
            condition: failed.as_deref(),
            audit_only_matches: &audit,
            policy_version: version,
        })
    }
}

#[cfg(test)]
impl Index {
    /// How many allow candidates each bucket holds for `caller`: by ID,
    /// by trust domain, for any caller.
    pub(super) fn candidate_counts(&self, caller: &SpiffeId) -> [usize; 3] {
        [
            self.allow.by_id.get(caller).map_or(0, Bucket::len),
            self.allow
                .by_trust_domain
                .get(caller.trust_domain())
                .map_or(0, Bucket::len),
            self.allow.other.len(),
        ]
    }

    /// How many allow candidates `request` is actually tried against.
    pub(super) fn tried(&self, request: &Request<'_>) -> usize {
        let Some(caller) = request.caller else {
            return 0;
        };
        let keys = RequestKeys::of(request);
        let mut tried = 0;
        self.allow.lists(caller, &keys, |list| tried += list.len());
        tried
    }
}
