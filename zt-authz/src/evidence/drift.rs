//! Callers reaching what they never reached before.

use std::collections::{HashMap, HashSet};

use super::intern::Interner;
use super::reader::{CallerKey, Record};
use super::{Seen, clean};
use crate::audit::Verdict;

type Fast = foldhash::fast::RandomState;

/// What is new about a caller's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DriftKind {
    /// A caller the baseline never saw.
    NewCaller,
    /// A known caller reaching a target it never reached.
    NewTarget,
    /// A known caller reaching a known target with an action (route, path
    /// or gRPC method) it never used there.
    NewAction,
}

impl DriftKind {
    /// `new-caller`, `new-target` or `new-action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewCaller => "new-caller",
            Self::NewTarget => "new-target",
            Self::NewAction => "new-action",
        }
    }
}

/// One thing new in the current window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriftFinding {
    /// What is new.
    pub kind: DriftKind,
    /// The caller's SPIFFE ID.
    pub caller: String,
    /// The target (for [`DriftKind::NewCaller`], every target it reached,
    /// comma-separated).
    pub target: String,
    /// The action, for [`DriftKind::NewAction`]; the first one seen
    /// otherwise.
    pub action: String,
    /// Requests in the current window.
    pub count: u64,
    /// Of those, how many were refused (`deny`).
    pub denied: u64,
    /// First `time` seen.
    pub first_seen: String,
    /// Last `time` seen.
    pub last_seen: String,
    /// `file:line` of the first one.
    pub first_line: String,
}

/// What [`DriftDetector::finish`] found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DriftReport {
    /// Records in the baseline window.
    pub baseline_records: u64,
    /// Records in the current window.
    pub current_records: u64,
    /// Records without a verified caller (not compared).
    pub no_caller: u64,
    /// Findings, most requests first.
    pub findings: Vec<DriftFinding>,
}

/// Compares a current window of audit records with a baseline: feed the
/// baseline with [`baseline`](Self::baseline), then the current window with
/// [`current`](Self::current), both from the same
/// [`AuditReader`](super::AuditReader) (its caller keys are compared).
///
/// A new caller is reported once (not once per target or action), a known
/// caller on a new target once per target, and new actions one by one;
/// ranked by volume. This is the signal of a workload that starts reaching
/// outside its usual scope.
#[derive(Debug, Default)]
pub struct DriftDetector {
    strings: Interner,
    sources: Interner,
    scratch: String,
    known_callers: HashSet<CallerKey, Fast>,
    known_pairs: HashSet<(CallerKey, u32), Fast>,
    known_actions: HashSet<(CallerKey, u32, u32), Fast>,
    new_callers: HashMap<CallerKey, Finding, Fast>,
    new_pairs: HashMap<(CallerKey, u32), Finding, Fast>,
    new_actions: HashMap<(CallerKey, u32, u32), Finding, Fast>,
    report: DriftReport,
}

#[derive(Debug)]
struct Finding {
    seen: Seen,
    denied: u64,
    caller: String,
    targets: Vec<u32>,
    action: u32,
}

impl DriftDetector {
    /// A detector with an empty baseline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a baseline record.
    pub fn baseline(&mut self, record: &Record<'_>) {
        self.report.baseline_records += 1;
        let Some((caller, _)) = record.caller else {
            self.report.no_caller += 1;
            return;
        };
        let target = self.strings.intern(record.target);
        let action = self.action(record);
        self.known_callers.insert(caller);
        self.known_pairs.insert((caller, target));
        self.known_actions.insert((caller, target, action));
    }

    /// The action as interned text: the gRPC method, or `METHOD path`
    /// (the route when there is one), built in a reused buffer.
    fn action(&mut self, record: &Record<'_>) -> u32 {
        match (record.grpc_method, record.route) {
            (Some(grpc), _) => self.strings.intern(grpc),
            (None, route) => {
                self.scratch.clear();
                self.scratch.push_str(record.method);
                self.scratch.push(' ');
                self.scratch.push_str(route.unwrap_or(record.path));
                self.strings.intern(&self.scratch)
            }
        }
    }

    /// Adds a record of the current window.
    pub fn current(&mut self, record: &Record<'_>) {
        self.report.current_records += 1;
        let Some((caller, id)) = record.caller else {
            self.report.no_caller += 1;
            return;
        };
        let target = self.strings.intern(record.target);
        let action = self.action(record);
        let denied = u64::from(record.decision == Verdict::Deny);
        let source = self.sources.intern(record.source_name);
        let new = |targets: Vec<u32>| Finding {
            seen: Seen::new(record.time, source, record.line),
            denied,
            caller: id.to_string(),
            targets,
            action,
        };
        let bump = |f: &mut Finding| {
            f.seen.add(record.time);
            f.denied += denied;
        };
        if !self.known_callers.contains(&caller) {
            match self.new_callers.get_mut(&caller) {
                Some(f) => {
                    bump(f);
                    if !f.targets.contains(&target) && f.targets.len() < 64 {
                        f.targets.push(target);
                    }
                }
                None => {
                    self.new_callers.insert(caller, new(vec![target]));
                }
            }
        } else if !self.known_pairs.contains(&(caller, target)) {
            match self.new_pairs.get_mut(&(caller, target)) {
                Some(f) => bump(f),
                None => {
                    self.new_pairs.insert((caller, target), new(vec![target]));
                }
            }
        } else if !self.known_actions.contains(&(caller, target, action)) {
            match self.new_actions.get_mut(&(caller, target, action)) {
                Some(f) => bump(f),
                None => {
                    self.new_actions
                        .insert((caller, target, action), new(vec![target]));
                }
            }
        }
    }

    /// The report.
    pub fn finish(mut self) -> DriftReport {
        let mut findings = Vec::new();
        let strings = &self.strings;
        let sources = &self.sources;
        let mut emit = |kind: DriftKind, f: Finding| {
            findings.push(DriftFinding {
                kind,
                caller: f.caller,
                target: f
                    .targets
                    .iter()
                    .map(|t| clean(strings.get(*t), 100))
                    .collect::<Vec<_>>()
                    .join(", "),
                action: clean(strings.get(f.action), 200),
                count: f.seen.count,
                denied: f.denied,
                first_seen: clean(f.seen.first.as_str(), 40),
                last_seen: clean(f.seen.last.as_str(), 40),
                first_line: format!("{}:{}", sources.get(f.seen.first_source), f.seen.first_line),
            });
        };
        for f in self.new_callers.into_values() {
            emit(DriftKind::NewCaller, f);
        }
        for f in self.new_pairs.into_values() {
            emit(DriftKind::NewTarget, f);
        }
        for f in self.new_actions.into_values() {
            emit(DriftKind::NewAction, f);
        }
        findings.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.kind.cmp(&b.kind))
                .then_with(|| {
                    (&a.caller, &a.target, &a.action).cmp(&(&b.caller, &b.target, &b.action))
                })
        });
        self.report.findings = findings;
        self.report
    }
}
