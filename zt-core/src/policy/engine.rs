//! The compiled index: which rules can apply to a caller, found without
//! scanning every rule.
//!
//! Each effect has its own [`CallerIndex`]. Rules naming exact IDs are
//! found by one hash lookup on the caller's ID, rules confined to a trust
//! domain (`spiffe://td/**`, prefixes, globs) by one lookup on its trust
//! domain, and the rest (any caller, closures, alternatives spanning trust
//! domains) sit in a short list tried for every caller. Candidate lists are
//! in rule order, so the first match in each list is its lowest-index match
//! and the search stops there.

use std::collections::HashMap;
use std::sync::Arc;

use super::rule::{Effect, Rule};
use super::{Decision, DecisionReason, Request};
use crate::matcher::{IdMatcher, MatcherKind};
use crate::{SpiffeId, TrustDomain};

/// The index of a policy's rules.
#[derive(Debug, Default)]
pub(super) struct Index {
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
    by_id: HashMap<SpiffeId, Vec<Candidate>, Hasher>,
    by_trust_domain: HashMap<TrustDomain, Vec<Candidate>, Hasher>,
    other: Vec<Candidate>,
    len: usize,
}

#[derive(Debug)]
struct Candidate {
    rule: usize,
    check: CallerCheck,
}

/// What is left to check of the caller once the candidate is found.
#[derive(Debug)]
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
            push(&mut self.other, rule, CallerCheck::None);
        }
        for matcher in callers {
            self.add_matcher(rule, matcher);
        }
    }

    fn add_matcher(&mut self, rule: usize, matcher: &IdMatcher) {
        match matcher.kind() {
            MatcherKind::Exact(id) => {
                push(
                    self.by_id.entry(id.clone()).or_default(),
                    rule,
                    CallerCheck::None,
                );
            }
            MatcherKind::OneOf(set) => {
                for id in set.iter() {
                    push(
                        self.by_id.entry(id.clone()).or_default(),
                        rule,
                        CallerCheck::None,
                    );
                }
            }
            MatcherKind::TrustDomain(td) => push(
                self.by_trust_domain.entry(td.clone()).or_default(),
                rule,
                CallerCheck::HasPath,
            ),
            MatcherKind::Prefix { trust_domain, .. } | MatcherKind::Glob { trust_domain, .. } => {
                push(
                    self.by_trust_domain
                        .entry(trust_domain.clone())
                        .or_default(),
                    rule,
                    CallerCheck::Matcher(matcher.clone()),
                );
            }
            MatcherKind::AnyOf(list) => {
                for m in list {
                    self.add_matcher(rule, m);
                }
            }
            // Closures, and kinds added to the matcher later: tried for
            // every caller, with the matcher's own logic.
            _ => push(&mut self.other, rule, CallerCheck::Matcher(matcher.clone())),
        }
    }

    /// The candidate lists for `caller`, each in rule order.
    fn lists<'a>(&'a self, caller: &SpiffeId) -> [&'a [Candidate]; 3] {
        if self.len == 0 {
            return [&[], &[], &[]];
        }
        [
            self.by_id.get(caller).map_or(&[][..], Vec::as_slice),
            self.by_trust_domain
                .get(caller.trust_domain())
                .map_or(&[][..], Vec::as_slice),
            &self.other,
        ]
    }

    /// The lowest index of a rule that matches the request.
    fn first_match(
        &self,
        rules: &[Rule],
        caller: &SpiffeId,
        request: &Request<'_>,
    ) -> Option<usize> {
        let mut best: Option<usize> = None;
        for list in self.lists(caller) {
            for c in list {
                if best.is_some_and(|b| c.rule >= b) {
                    break;
                }
                if c.check.passes(caller) && rules.get(c.rule).is_some_and(|r| r.covers(request)) {
                    best = Some(c.rule);
                    break;
                }
            }
        }
        best
    }

    /// The indexes of every rule that matches the request, in rule order.
    /// Allocates only when something matches.
    fn all_matches(&self, rules: &[Rule], caller: &SpiffeId, request: &Request<'_>) -> Vec<usize> {
        let mut found = Vec::new();
        for list in self.lists(caller) {
            for c in list {
                if c.check.passes(caller) && rules.get(c.rule).is_some_and(|r| r.covers(request)) {
                    found.push(c.rule);
                }
            }
        }
        if found.len() > 1 {
            found.sort_unstable();
            found.dedup();
        }
        found
    }
}

impl Index {
    pub(super) fn build(rules: &[Rule]) -> Self {
        let mut index = Self::default();
        for (i, rule) in rules.iter().enumerate() {
            let target = match rule.effect() {
                Effect::Allow => &mut index.allow,
                Effect::Deny => &mut index.deny,
                Effect::AuditOnly => &mut index.audit,
            };
            target.add_rule(i, rule.callers());
        }
        index
    }

    pub(super) fn evaluate(
        &self,
        rules: &[Rule],
        version: &Arc<str>,
        request: &Request<'_>,
    ) -> Decision {
        let decision = |allowed, reason, rule: Option<usize>, audit: Vec<Arc<str>>| Decision {
            allowed,
            reason,
            rule_id: rule
                .and_then(|i| rules.get(i))
                .map(|r| Arc::clone(r.id_arc())),
            audit_only_matches: audit,
            policy_version: Arc::clone(version),
        };
        let Some(caller) = request.caller else {
            return decision(false, DecisionReason::Unauthenticated, None, Vec::new());
        };
        let audit: Vec<Arc<str>> = self
            .audit
            .all_matches(rules, caller, request)
            .into_iter()
            .filter_map(|i| rules.get(i).map(|r| Arc::clone(r.id_arc())))
            .collect();
        if let Some(i) = self.deny.first_match(rules, caller, request) {
            return decision(false, DecisionReason::MatchedDeny, Some(i), audit);
        }
        if let Some(i) = self.allow.first_match(rules, caller, request) {
            return decision(true, DecisionReason::MatchedAllow, Some(i), audit);
        }
        decision(false, DecisionReason::NoMatchingRule, None, audit)
    }
}

#[cfg(test)]
impl Index {
    /// How many allow candidates each list holds for `caller`.
    pub(super) fn candidate_counts(&self, caller: &SpiffeId) -> [usize; 3] {
        self.allow.lists(caller).map(<[Candidate]>::len)
    }
}
