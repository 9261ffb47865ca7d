//! Code and policy agree: declarations of callers in code against the
//! allow rules of a policy file.

use std::fmt;
use std::sync::Arc;

use super::{Atom, Callers, IdSegment};
use crate::policy::Policy;
use crate::policy::action::{Action, GrpcPattern, MethodMatch, PathPattern, Segment};
use crate::policy::declare::DeclaredEndpoint;
use crate::policy::rule::{Effect, Rule};

/// What a [`DeclaredFinding`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeclaredKind {
    /// An allow rule covers (part of) a declared endpoint and admits
    /// callers the declaration does not list.
    AdmitsUndeclared,
    /// No allow rule of the policy admits any declared caller of the
    /// endpoint: the policy never allows it.
    NeverAllowed,
}

impl DeclaredKind {
    /// `admits-undeclared` or `never-allowed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdmitsUndeclared => "admits-undeclared",
            Self::NeverAllowed => "never-allowed",
        }
    }
}

/// A disagreement between a service's declarations in code and a policy;
/// from [`Policy::check_declared`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeclaredFinding {
    /// What was found.
    pub kind: DeclaredKind,
    /// The declaration's rule id (`code:<endpoint>`).
    pub endpoint: Arc<str>,
    /// Where the endpoint is declared (its source line).
    pub endpoint_source: String,
    /// The policy rule, for [`DeclaredKind::AdmitsUndeclared`].
    pub rule_id: Option<Arc<str>>,
    /// Where that rule is.
    pub rule_origin: Option<String>,
    /// The rule's caller patterns the declaration does not cover.
    pub callers: Vec<String>,
}

impl fmt::Display for DeclaredFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DeclaredKind::AdmitsUndeclared => write!(
                f,
                "{}: rule `{}` admits {} to endpoint `{}` ({}), whose code does not declare \
                 them; narrow the rule or declare the callers",
                self.rule_origin.as_deref().unwrap_or("-"),
                self.rule_id.as_deref().unwrap_or("-"),
                self.callers.join(", "),
                self.endpoint,
                self.endpoint_source
            ),
            DeclaredKind::NeverAllowed => write!(
                f,
                "{}: endpoint `{}` is declared in code but no allow rule of the policy admits \
                 any of its declared callers; add a rule or remove the endpoint",
                self.endpoint_source, self.endpoint
            ),
        }
    }
}

impl Policy {
    /// Compares the policy with a service's declarations in code (from
    /// [`Declarations::endpoints`](crate::policy::declare::Declarations::endpoints)
    /// or [`parse_export`](crate::policy::declare::parse_export)):
    ///
    /// - [`DeclaredKind::AdmitsUndeclared`]: an allow rule whose actions
    ///   overlap a declared endpoint's admits callers the declaration does
    ///   not cover (no callers: every caller);
    /// - [`DeclaredKind::NeverAllowed`]: no allow rule overlaps the endpoint
    ///   with a caller that could be one of the declared ones.
    ///
    /// Deny rules are not taken into account, and caller closures are
    /// assumed to admit anyone. Findings are in declaration order.
    pub fn check_declared(&self, declared: &[DeclaredEndpoint]) -> Vec<DeclaredFinding> {
        let allows: Vec<(&Rule, Callers<'_>)> = self
            .rules()
            .iter()
            .filter(|r| r.effect() == Effect::Allow)
            .map(|r| (r, Callers::of(r.callers())))
            .collect();
        let mut findings = Vec::new();
        for endpoint in declared {
            let rule = &endpoint.rule;
            let code_callers = Callers::of(rule.callers());
            let mut allowed = false;
            for (allow, allow_callers) in &allows {
                if !actions_overlap(allow, rule) {
                    continue;
                }
                if callers_overlap(allow_callers, &code_callers) {
                    allowed = true;
                }
                if !code_callers.covers(allow_callers) {
                    let uncovered: Vec<String> = if allow.callers().is_empty() {
                        vec!["every authenticated caller".to_owned()]
                    } else {
                        allow
                            .callers()
                            .iter()
                            .filter(|m| {
                                !code_callers.covers(&Callers::of(std::slice::from_ref(*m)))
                            })
                            .map(|m| format!("{m:#}"))
                            .collect()
                    };
                    findings.push(DeclaredFinding {
                        kind: DeclaredKind::AdmitsUndeclared,
                        endpoint: Arc::clone(rule.id_arc()),
                        endpoint_source: endpoint.source.clone(),
                        rule_id: Some(Arc::clone(allow.id_arc())),
                        rule_origin: Some(allow.origin().to_string()),
                        callers: uncovered,
                    });
                }
            }
            if !allowed {
                findings.push(DeclaredFinding {
                    kind: DeclaredKind::NeverAllowed,
                    endpoint: Arc::clone(rule.id_arc()),
                    endpoint_source: endpoint.source.clone(),
                    rule_id: None,
                    rule_origin: None,
                    callers: Vec::new(),
                });
            }
        }
        findings
    }
}

/// `true` if some request could match both rules' actions.
fn actions_overlap(a: &Rule, b: &Rule) -> bool {
    a.actions().is_empty()
        || b.actions().is_empty()
        || a.actions()
            .iter()
            .any(|x| b.actions().iter().any(|y| action_overlaps(x, y)))
}

fn action_overlaps(a: &Action, b: &Action) -> bool {
    match (a, b) {
        (
            Action::Http {
                method: ma,
                path: pa,
            },
            Action::Http {
                method: mb,
                path: pb,
            },
        ) => method_overlaps(ma, mb) && path_overlaps(pa, pb),
        (Action::Grpc(a), Action::Grpc(b)) => grpc_overlaps(a, b),
        _ => false,
    }
}

fn method_overlaps(a: &MethodMatch, b: &MethodMatch) -> bool {
    match (a, b) {
        (MethodMatch::Exact(x), MethodMatch::Exact(y)) => x == y,
        _ => true,
    }
}

fn path_overlaps(a: &PathPattern, b: &PathPattern) -> bool {
    let ((a, tail_a), (b, tail_b)) = (a.segments(), b.segments());
    let lengths = match (tail_a, tail_b) {
        (false, false) => a.len() == b.len(),
        (true, false) => a.len() <= b.len(),
        (false, true) => b.len() <= a.len(),
        (true, true) => true,
    };
    lengths
        && a.iter().zip(b.iter()).all(|pair| match pair {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            (Segment::Param, Segment::Literal(lit)) | (Segment::Literal(lit), Segment::Param) => {
                !lit.is_empty()
            }
            (Segment::Param, Segment::Param) => true,
        })
}

fn grpc_overlaps(a: &GrpcPattern, b: &GrpcPattern) -> bool {
    fn service(p: &GrpcPattern) -> Option<&str> {
        p.as_str().rsplit_once('/').map(|(service, _)| service)
    }
    a == b || ((a.is_service_wide() || b.is_service_wide()) && service(a) == service(b))
}

/// `true` if some ID could be admitted by both.
fn callers_overlap(a: &Callers<'_>, b: &Callers<'_>) -> bool {
    match (a, b) {
        (Callers::Any, Callers::Atoms(x)) | (Callers::Atoms(x), Callers::Any) => !x.is_empty(),
        (Callers::Any, Callers::Any) => true,
        (Callers::Atoms(x), Callers::Atoms(y)) => {
            x.iter().any(|p| y.iter().any(|q| atom_overlaps(p, q)))
        }
    }
}

fn atom_overlaps(a: &Atom<'_>, b: &Atom<'_>) -> bool {
    let (
        Atom::Shape {
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
    ) = (a, b)
    else {
        // A closure: it may admit anyone.
        return true;
    };
    let lengths = match (tail_a, tail_b) {
        (false, false) => a.len() == b.len(),
        (true, false) => a.len() < b.len(),
        (false, true) => b.len() < a.len(),
        (true, true) => true,
    };
    td_a == td_b
        && lengths
        && a.iter().zip(b.iter()).all(|pair| match pair {
            (IdSegment::Literal(x), IdSegment::Literal(y)) => x == y,
            _ => true,
        })
}
