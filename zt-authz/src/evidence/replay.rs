//! Logged requests decided again under a candidate policy.

use std::collections::HashMap;
use std::sync::Arc;

use super::intern::Interner;
use super::reader::Record;
use super::{Seen, action_label, clean};
use crate::audit::Verdict;
use crate::policy::{Policy, Request, Rule};

/// How many disagreements a report keeps in full.
const KEPT_DISAGREEMENTS: usize = 100;

/// Decides every logged request again under a candidate policy and counts
/// what would change; see [`ReplayReport`].
///
/// Only decisions the policy made are replayed (reasons `matched-allow`,
/// `matched-deny`, `no-matching-rule`, `condition-not-met`): refusals of unauthenticated or
/// revoked callers and of callers a declaration in code does not accept do
/// not depend on the policy file, and are counted apart. The log carries no
/// user scopes and no token claims, so candidate rules that require scopes
/// never match, and context conditions see every claim as absent (captures
/// of the caller's ID are still compared).
#[derive(Debug)]
pub struct Replayer {
    policy: Policy,
    version: Arc<str>,
    strings: Interner,
    sources: Interner,
    /// Interned name of each reader caller key, filled on first use.
    caller_names: Vec<u32>,
    denied: HashMap<GroupKey, Seen, foldhash::fast::RandomState>,
    allowed: HashMap<GroupKey, Seen, foldhash::fast::RandomState>,
    report: ReplayReport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey {
    caller: u32,
    target: u32,
    action: u32,
}

/// Requests that change the same way, for the same caller and action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeGroup {
    /// The caller's SPIFFE ID.
    pub caller: String,
    /// The service deciding.
    pub target: String,
    /// `METHOD /route` (or path), or the gRPC method.
    pub action: String,
    /// How many requests.
    pub count: u64,
    /// The earliest `time` among them.
    pub first_seen: String,
    /// The latest.
    pub last_seen: String,
    /// `file:line` of the first one read.
    pub first_line: String,
}

/// A logged decision of the candidate's own version that the candidate
/// decides differently: the log and the policy do not belong together.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disagreement {
    /// `file:line`.
    pub at: String,
    /// The decision and rule in the log.
    pub logged: String,
    /// The candidate's decision and rule.
    pub replayed: String,
}

/// What [`Replayer::finish`] found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReplayReport {
    /// The candidate's version.
    pub version: String,
    /// Records seen.
    pub records: u64,
    /// Records not decided by the policy (identity refusals, declarations
    /// in code): not replayed.
    pub not_policy: u64,
    /// Replayed records whose outcome does not change.
    pub unchanged: u64,
    /// Requests that were served (`allow`, or `would-deny` in dry run) and
    /// that the candidate denies: what enforcing it would break.
    pub newly_denied: u64,
    /// Of those, how many were `would-deny` in the log (denied by the live
    /// policy too, served only by dry run).
    pub newly_denied_was_would_deny: u64,
    /// Requests that were refused and that the candidate allows.
    pub newly_allowed: u64,
    /// Newly denied requests by caller, target and action, most first.
    pub denied_groups: Vec<ChangeGroup>,
    /// Newly allowed requests by caller, target and action, most first.
    pub allowed_groups: Vec<ChangeGroup>,
    /// Records decided by a policy of the candidate's version.
    pub same_version: u64,
    /// Of those, how many the candidate decides otherwise (allowed or
    /// denied, or another rule).
    pub disagreement_count: u64,
    /// The first of them.
    pub disagreements: Vec<Disagreement>,
}

impl ReplayReport {
    /// `true` if no served request becomes denied: the candidate can be
    /// enforced without refusing logged traffic.
    pub fn is_safe(&self) -> bool {
        self.newly_denied == 0
    }
}

impl Replayer {
    /// A replayer deciding with `candidate`.
    pub fn new(candidate: Policy) -> Self {
        let version: Arc<str> = Arc::from(candidate.version());
        Self {
            report: ReplayReport {
                version: version.to_string(),
                ..ReplayReport::default()
            },
            policy: candidate,
            version,
            strings: Interner::new(),
            sources: Interner::new(),
            caller_names: Vec::new(),
            denied: HashMap::default(),
            allowed: HashMap::default(),
        }
    }

    /// `true` if the log line's version is the candidate's (alone, or
    /// combined with declarations in code: `<version>+code-…`).
    fn same_version(&self, logged: &str) -> bool {
        logged
            .strip_prefix(&*self.version)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("+code-"))
    }

    /// Replays one record.
    pub fn observe(&mut self, record: &Record<'_>) {
        self.report.records += 1;
        let Some((caller_key, caller)) = record.caller.filter(|_| record.is_policy_decision())
        else {
            self.report.not_policy += 1;
            return;
        };
        let mut request = Request::new(Some(caller), record.method, record.path);
        if let Some(route) = record.route {
            request = request.with_route(route);
        }
        if let Some(grpc) = record.grpc_method {
            request = request.with_grpc_method(grpc);
        }
        let (allowed, rule) = self.policy.decide(&request);
        let rule_id = rule.map(Rule::id);
        let logged_allowed = record.decision == Verdict::Allow;
        if self.same_version(record.policy_version) {
            self.report.same_version += 1;
            if allowed != logged_allowed || rule_id != record.rule {
                self.report.disagreement_count += 1;
                if self.report.disagreements.len() < KEPT_DISAGREEMENTS {
                    let show = |allowed: bool, rule: Option<&str>| {
                        format!(
                            "{} by {}",
                            if allowed { "allow" } else { "deny" },
                            clean(rule.unwrap_or("-"), 80)
                        )
                    };
                    self.report.disagreements.push(Disagreement {
                        at: format!("{}:{}", record.source_name, record.line),
                        logged: show(logged_allowed, record.rule),
                        replayed: show(allowed, rule_id),
                    });
                }
            }
        }
        let served = record.decision.proceeds();
        match (served, allowed) {
            (true, false) => {
                self.report.newly_denied += 1;
                if record.decision == Verdict::WouldDeny {
                    self.report.newly_denied_was_would_deny += 1;
                }
                self.group(true, caller_key.0, caller, record);
            }
            (false, true) => {
                self.report.newly_allowed += 1;
                self.group(false, caller_key.0, caller, record);
            }
            _ => self.report.unchanged += 1,
        }
    }

    fn group(&mut self, denied: bool, key: u32, caller: &zt_core::SpiffeId, record: &Record<'_>) {
        let slot = key as usize;
        if self.caller_names.len() <= slot {
            self.caller_names.resize(slot + 1, u32::MAX);
        }
        let caller_name = match self.caller_names.get(slot) {
            Some(&name) if name != u32::MAX => name,
            _ => {
                let name = self.strings.intern(&caller.to_string());
                if let Some(cached) = self.caller_names.get_mut(slot) {
                    *cached = name;
                }
                name
            }
        };
        let action = action_label(record.method, record.path, record.route, record.grpc_method);
        let key = GroupKey {
            caller: caller_name,
            target: self.strings.intern(record.target),
            action: self.strings.intern(&action),
        };
        let map = if denied {
            &mut self.denied
        } else {
            &mut self.allowed
        };
        match map.get_mut(&key) {
            Some(seen) => seen.add(record.time),
            None => {
                let source = self.sources.intern(record.source_name);
                map.insert(key, Seen::new(record.time, source, record.line));
            }
        }
    }

    /// The report.
    pub fn finish(mut self) -> ReplayReport {
        let groups = |map: &HashMap<GroupKey, Seen, _>| {
            let mut out: Vec<ChangeGroup> = map
                .iter()
                .map(|(key, seen)| ChangeGroup {
                    caller: self.strings.get(key.caller).to_owned(),
                    target: clean(self.strings.get(key.target), 200),
                    action: self.strings.get(key.action).to_owned(),
                    count: seen.count,
                    first_seen: clean(seen.first.as_str(), 40),
                    last_seen: clean(seen.last.as_str(), 40),
                    first_line: format!(
                        "{}:{}",
                        self.sources.get(seen.first_source),
                        seen.first_line
                    ),
                })
                .collect();
            out.sort_by(|a, b| {
                b.count.cmp(&a.count).then_with(|| {
                    (&a.caller, &a.target, &a.action).cmp(&(&b.caller, &b.target, &b.action))
                })
            });
            out
        };
        self.report.denied_groups = groups(&self.denied);
        self.report.allowed_groups = groups(&self.allowed);
        self.report
    }
}
