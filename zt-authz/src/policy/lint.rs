//! Static checks of a policy: rules that can never decide a request.
//!
//! A rule is reported when another single rule provably matches every
//! request it matches:
//!
//! - **shadowed**: an earlier rule of the same effect does, so the earlier
//!   rule is always the one a decision names;
//! - **never allows**: for an allow rule, a deny rule anywhere in the policy
//!   does, and deny rules are checked first.
//!
//! The comparison is conservative: a warning means certainty, and anything
//! the linter cannot reason about (closures, requests covered only by
//! several rules together) is not reported. Audit-only rules never decide,
//! and every one that matches is listed, so they are neither checked nor
//! used to shadow others.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::Policy;
use super::action::{Action, GrpcPattern, MethodMatch, PathPattern, Segment};
use super::condition::{Condition, Test};
use super::error::Origin;
use super::rule::{Effect, Rule};
use zt_core::matcher::{IdMatcher, MatcherKind, SegmentPattern};
use zt_core::{SpiffeId, TrustDomain};

/// What a [`LintWarning`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LintKind {
    /// An earlier rule of the same effect matches every request this rule
    /// matches, so this rule is never the deciding one.
    Shadowed,
    /// An allow rule whose every request a deny rule also matches: deny
    /// rules are checked first, so it never allows anything.
    NeverAllows,
    /// A condition of the rule can never hold (a test on a caller capture
    /// that no single path segment passes), so the rule never matches; the
    /// other rule of the warning is the rule itself.
    ConditionNeverHolds,
}

impl LintKind {
    /// A short, stable name: `shadowed` or `never-allows`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shadowed => "shadowed",
            Self::NeverAllows => "never-allows",
            Self::ConditionNeverHolds => "condition-never-holds",
        }
    }
}

impl fmt::Display for LintKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule that can never decide, and the rule that decides instead; from
/// [`Policy::lint`].
///
/// `Display` writes one line that starts with the rule's origin
/// (`file:line:column` for rules read from a file) and names the other rule
/// and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LintWarning {
    /// What was found.
    pub kind: LintKind,
    /// The rule that can never decide.
    pub rule_id: Arc<str>,
    /// Where that rule is defined.
    pub origin: Origin,
    /// The rule that matches every request the first one matches.
    pub other_rule_id: Arc<str>,
    /// Where the other rule is defined.
    pub other_origin: Origin,
}

impl fmt::Display for LintWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            kind,
            rule_id,
            origin,
            other_rule_id,
            other_origin,
        } = self;
        match kind {
            LintKind::Shadowed => write!(
                f,
                "{origin}: rule `{rule_id}` is shadowed by rule `{other_rule_id}` \
                 ({other_origin}): the earlier rule, of the same effect, matches every request \
                 this one matches, so this one never decides; remove it or narrow the earlier rule"
            ),
            LintKind::NeverAllows => write!(
                f,
                "{origin}: allow rule `{rule_id}` never allows: deny rule `{other_rule_id}` \
                 ({other_origin}) matches every request it matches, and deny rules are checked \
                 first; remove one of them or narrow the deny rule"
            ),
            LintKind::ConditionNeverHolds => write!(
                f,
                "{origin}: rule `{rule_id}` never matches: one of its conditions on a caller \
                 capture can never hold (a capture is one non-empty path segment); fix or remove it"
            ),
        }
    }
}

impl Policy {
    /// Finds rules that can never decide a request: allow and deny rules
    /// shadowed by an earlier rule of the same effect, and allow rules that
    /// a deny rule covers completely ([`LintKind`]). Each rule is reported
    /// at most once, [`LintKind::NeverAllows`] first; warnings are in policy
    /// order.
    ///
    /// Only certainties are reported: one rule covers another when each of
    /// the other's callers is covered by one of its own (no callers covers
    /// every caller; closures are never certain), each of the other's
    /// actions by one of its own (no actions covers every action; an HTTP
    /// action never covers a gRPC one), it requires no scope the other
    /// does not (a rule with scopes never covers one without), and each of
    /// its conditions is one of the other's (a rule with conditions never
    /// covers one without). Requests covered only by several
    /// rules together are not reported.
    ///
    /// # Examples
    ///
    /// ```
    /// use zt_authz::policy::{LintKind, Policy, Rule};
    ///
    /// let policy = Policy::builder()
    ///     .rule(Rule::allow("invoices").http("GET", "/invoices/**")?)
    ///     .rule(Rule::allow("one-invoice").http("GET", "/invoices/{id}")?)
    ///     .rule(Rule::deny("no-invoices").http("*", "/invoices/**")?)
    ///     .build()?;
    /// let warnings = policy.lint();
    /// assert_eq!(warnings.len(), 2);
    /// assert_eq!(warnings[0].kind, LintKind::NeverAllows);
    /// assert_eq!(&*warnings[0].other_rule_id, "no-invoices");
    /// # Ok::<(), zt_authz::policy::PolicyError>(())
    /// ```
    pub fn lint(&self) -> Vec<LintWarning> {
        let rules = self.rules();
        let callers: Vec<Callers<'_>> = rules.iter().map(|r| Callers::of(r.callers())).collect();
        let index = CoverIndex::build(rules, &callers);
        let mut warnings = Vec::new();
        let mut candidates = Vec::new();
        for (i, (rule, rule_callers)) in rules.iter().zip(&callers).enumerate() {
            if rule.effect() == Effect::AuditOnly {
                continue;
            }
            if impossible_condition(rule).is_some() {
                warnings.push(LintWarning {
                    kind: LintKind::ConditionNeverHolds,
                    rule_id: Arc::clone(rule.id_arc()),
                    origin: rule.origin().clone(),
                    other_rule_id: Arc::clone(rule.id_arc()),
                    other_origin: rule.origin().clone(),
                });
                continue;
            }
            index.candidates(rule_callers, &mut candidates);
            let covered_by = |j: usize| {
                j != i
                    && callers.get(j).is_some_and(|c| {
                        c.covers(rule_callers)
                            && covers_actions(&rules[j], rule)
                            && covers_scopes(&rules[j], rule)
                            && covers_conditions(&rules[j], rule)
                    })
            };
            let found = if rule.effect() == Effect::Allow {
                candidates
                    .iter()
                    .copied()
                    .find(|&j| rules[j].effect() == Effect::Deny && covered_by(j))
                    .map(|j| (LintKind::NeverAllows, j))
            } else {
                None
            };
            let found = found.or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .take_while(|&j| j < i)
                    .find(|&j| rules[j].effect() == rule.effect() && covered_by(j))
                    .map(|j| (LintKind::Shadowed, j))
            });
            if let Some((kind, j)) = found {
                let other = &rules[j];
                warnings.push(LintWarning {
                    kind,
                    rule_id: Arc::clone(rule.id_arc()),
                    origin: rule.origin().clone(),
                    other_rule_id: Arc::clone(other.id_arc()),
                    other_origin: other.origin().clone(),
                });
            }
        }
        warnings
    }
}

/// `true` if every user context `b` accepts, `a` accepts: `a` requires no
/// scope that `b` does not.
fn covers_scopes(a: &Rule, b: &Rule) -> bool {
    a.scopes()
        .iter()
        .all(|s| b.scopes().binary_search(s).is_ok())
}

/// `true` if every request `b`'s conditions accept, `a`'s accept: each
/// condition of `a` is also a condition of `b`, on a key that means the
/// same in both (a capture in both or a context key in both). A rule with
/// conditions therefore never covers one without.
fn covers_conditions(a: &Rule, b: &Rule) -> bool {
    // Captures of different caller patterns name different segments, so a
    // condition on a capture is never certain to cover.
    let is_capture = |rule: &Rule, key: &str| rule.capture_names().any(|n| n == key);
    a.conditions()
        .iter()
        .all(|c| b.conditions().contains(c) && !is_capture(a, c.key()) && !is_capture(b, c.key()))
}

/// The first condition of `rule` that no request can satisfy, if one is
/// certain: a test on a caller capture (always one non-empty segment,
/// never a boolean) that such a segment cannot pass, or `present = false`
/// on a capture every caller pattern declares.
fn impossible_condition(rule: &Rule) -> Option<&Condition> {
    let captured_by_all = |key: &str| {
        !rule.callers().is_empty()
            && (0..rule.callers().len()).all(|i| rule.caller_captures(i).any(|n| n == key))
    };
    let segment = |s: &str| !s.is_empty() && !s.contains('/');
    rule.conditions().iter().find(|c| {
        if !rule.capture_names().any(|n| n == c.key()) {
            return false;
        }
        match c.test() {
            Test::Equals(v) => !segment(v),
            Test::OneOf(options) => !options.iter().any(|o| segment(o)),
            Test::IsBool(_) => true,
            Test::Present(false) => captured_by_all(c.key()),
            _ => false,
        }
    })
}

// ---- callers ----

/// The callers of a rule, as the linter compares them.
enum Callers<'a> {
    /// No callers: every authenticated caller.
    Any,
    /// Any of these; empty when the rule matches no caller at all.
    Atoms(Vec<Atom<'a>>),
}

/// One alternative of a caller matcher.
enum Atom<'a> {
    /// IDs of a trust domain whose path segments match `segments` and, with
    /// `tail`, have one or more segments more (`**`). Every parseable
    /// matcher kind is a list of these.
    Shape {
        trust_domain: &'a TrustDomain,
        /// The ID, when this is exactly one ID.
        exact: Option<&'a SpiffeId>,
        segments: Vec<IdSegment<'a>>,
        tail: bool,
    },
    /// A closure: what it matches is never certain.
    Opaque,
}

#[derive(Clone, Copy)]
enum IdSegment<'a> {
    Literal(&'a str),
    Any,
}

impl<'a> Callers<'a> {
    fn of(matchers: &'a [IdMatcher]) -> Self {
        if matchers.is_empty() {
            return Self::Any;
        }
        let mut atoms = Vec::new();
        for m in matchers {
            push_atoms(m, &mut atoms);
        }
        Self::Atoms(atoms)
    }

    /// `true` if every caller `other` accepts, `self` accepts.
    fn covers(&self, other: &Callers<'_>) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (Self::Atoms(_), Callers::Any) => false,
            // A rule that matches no caller is not worth a warning.
            (Self::Atoms(_), Callers::Atoms(theirs)) if theirs.is_empty() => false,
            (Self::Atoms(ours), Callers::Atoms(theirs)) => {
                theirs.iter().all(|b| ours.iter().any(|a| a.covers(b)))
            }
        }
    }
}

fn push_atoms<'a>(matcher: &'a IdMatcher, atoms: &mut Vec<Atom<'a>>) {
    match matcher.kind() {
        MatcherKind::Exact(id) => atoms.push(Atom::exact(id)),
        MatcherKind::OneOf(set) => atoms.extend(set.iter().map(Atom::exact)),
        MatcherKind::TrustDomain(trust_domain) => atoms.push(Atom::Shape {
            trust_domain,
            exact: None,
            segments: Vec::new(),
            tail: true,
        }),
        MatcherKind::Prefix { trust_domain, path } => atoms.push(Atom::Shape {
            trust_domain,
            exact: None,
            segments: id_segments(path),
            tail: true,
        }),
        MatcherKind::Glob {
            trust_domain,
            segments,
            tail,
        } => {
            let known: Option<Vec<IdSegment<'_>>> = segments
                .iter()
                .map(|s| match s {
                    SegmentPattern::Literal(lit) => Some(IdSegment::Literal(lit)),
                    SegmentPattern::Any => Some(IdSegment::Any),
                    _ => None,
                })
                .collect();
            atoms.push(match known {
                Some(segments) => Atom::Shape {
                    trust_domain,
                    exact: None,
                    segments,
                    tail,
                },
                None => Atom::Opaque,
            });
        }
        MatcherKind::AnyOf(list) => {
            for m in list {
                push_atoms(m, atoms);
            }
        }
        // Closures, and kinds this lint does not know, cannot be reasoned
        // about: they cover nothing and are covered by nothing.
        _ => atoms.push(Atom::Opaque),
    }
}

/// The segments of an ID path (`/a/b`: `a`, `b`; the empty path: none).
fn id_segments(path: &str) -> Vec<IdSegment<'_>> {
    path.strip_prefix('/')
        .map(|rest| rest.split('/').map(IdSegment::Literal).collect())
        .unwrap_or_default()
}

impl<'a> Atom<'a> {
    fn exact(id: &'a SpiffeId) -> Self {
        Self::Shape {
            trust_domain: id.trust_domain(),
            exact: Some(id),
            segments: id_segments(id.path()),
            tail: false,
        }
    }

    /// `true` if every ID `other` accepts, `self` accepts.
    fn covers(&self, other: &Atom<'_>) -> bool {
        let (
            Self::Shape {
                trust_domain: td_a,
                segments: a,
                tail: tail_a,
                ..
            },
            Atom::Shape {
                trust_domain: td_b,
                segments: b,
                tail: tail_b,
                ..
            },
        ) = (self, other)
        else {
            return false;
        };
        // Without a tail a shape matches exactly its length; with one, one
        // or more segments more.
        let lengths = match (tail_a, tail_b) {
            (false, false) => a.len() == b.len(),
            (false, true) => false,
            (true, true) => a.len() <= b.len(),
            (true, false) => a.len() < b.len(),
        };
        td_a == td_b
            && lengths
            && a.iter().zip(b).all(|pair| match pair {
                (IdSegment::Any, _) => true,
                (IdSegment::Literal(x), IdSegment::Literal(y)) => x == y,
                (IdSegment::Literal(_), IdSegment::Any) => false,
            })
    }
}

// ---- actions ----

/// `true` if every request `b` covers (by its actions), `a` covers.
fn covers_actions(a: &Rule, b: &Rule) -> bool {
    if a.actions().is_empty() {
        return true;
    }
    // Every action, including requests whose path does not start with `/`,
    // is more than any list of patterns covers.
    !b.actions().is_empty()
        && b.actions()
            .iter()
            .all(|theirs| a.actions().iter().any(|ours| action_covers(ours, theirs)))
}

fn action_covers(a: &Action, b: &Action) -> bool {
    match (a, b) {
        (
            Action::Http {
                method: method_a,
                path: path_a,
            },
            Action::Http {
                method: method_b,
                path: path_b,
            },
        ) => method_covers(method_a, method_b) && path_covers(path_a, path_b),
        (Action::Grpc(a), Action::Grpc(b)) => grpc_covers(a, b),
        // An HTTP action matches the method and path, a gRPC one the gRPC
        // method: neither tells anything of the other.
        _ => false,
    }
}

fn method_covers(a: &MethodMatch, b: &MethodMatch) -> bool {
    match (a, b) {
        (MethodMatch::Any, _) => true,
        (MethodMatch::Exact(x), MethodMatch::Exact(y)) => x == y,
        (MethodMatch::Exact(_), MethodMatch::Any) => false,
    }
}

/// Path patterns, for raw paths and route templates alike: a path splits
/// into segments after its `/`; without `/**` a pattern matches exactly its
/// segment count, with it that many or more.
fn path_covers(a: &PathPattern, b: &PathPattern) -> bool {
    let ((a, tail_a), (b, tail_b)) = (a.segments(), b.segments());
    let lengths = match (tail_a, tail_b) {
        (false, false) => a.len() == b.len(),
        (false, true) => false,
        (true, _) => a.len() <= b.len(),
    };
    lengths
        && a.iter().zip(b.iter()).all(|pair| match pair {
            (Segment::Param, Segment::Param) => true,
            // A parameter needs a non-empty segment (the only empty literal
            // is the path `/`).
            (Segment::Param, Segment::Literal(lit)) => !lit.is_empty(),
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            (Segment::Literal(_), Segment::Param) => false,
        })
}

fn grpc_covers(a: &GrpcPattern, b: &GrpcPattern) -> bool {
    fn service(p: &GrpcPattern) -> Option<&str> {
        p.as_str().rsplit_once('/').map(|(service, _)| service)
    }
    a == b || (a.is_service_wide() && service(a).is_some() && service(a) == service(b))
}

// ---- candidates ----

/// Which rules could cover a rule, found without comparing every pair: a
/// rule's first caller can only be covered by rules with no callers, by
/// rules naming the same ID, or by rules with a pattern in its trust domain.
#[derive(Default)]
struct CoverIndex<'a> {
    any: Vec<usize>,
    by_id: HashMap<&'a SpiffeId, Vec<usize>>,
    by_trust_domain: HashMap<&'a TrustDomain, Vec<usize>>,
}

impl<'a> CoverIndex<'a> {
    fn build(rules: &[Rule], callers: &[Callers<'a>]) -> Self {
        let mut index = Self::default();
        for (i, (rule, callers)) in rules.iter().zip(callers).enumerate() {
            if rule.effect() == Effect::AuditOnly {
                continue;
            }
            match callers {
                Callers::Any => index.any.push(i),
                Callers::Atoms(atoms) => {
                    for atom in atoms {
                        let list = match atom {
                            Atom::Shape {
                                exact: Some(id), ..
                            } => index.by_id.entry(id).or_default(),
                            Atom::Shape { trust_domain, .. } => {
                                index.by_trust_domain.entry(trust_domain).or_default()
                            }
                            Atom::Opaque => continue,
                        };
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
            }
        }
        index
    }

    /// The rules that could cover a rule with these callers, in policy
    /// order, into `out`.
    fn candidates(&self, callers: &Callers<'_>, out: &mut Vec<usize>) {
        out.clear();
        out.extend_from_slice(&self.any);
        if let Callers::Atoms(atoms) = callers
            && let Some(Atom::Shape {
                trust_domain,
                exact,
                ..
            }) = atoms.first()
        {
            if let Some(list) = exact.and_then(|id| self.by_id.get(id)) {
                out.extend_from_slice(list);
            }
            if let Some(list) = self.by_trust_domain.get(trust_domain) {
                out.extend_from_slice(list);
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

mod declared;
#[cfg(test)]
mod tests;

pub use declared::{DeclaredFinding, DeclaredKind};
