//! The narrowest policy that allows what the logs show was served.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::error::EvidenceError;
use super::intern::Interner;
use super::reader::Record;
use super::{Seen, clean};
use crate::policy::declare::toml_string;
use crate::policy::{Policy, Rule};
use zt_core::SpiffeId;

/// What [`Suggester`] suggests for.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SuggestOptions {
    /// The service to write a policy for; required when the logs hold
    /// decisions of several.
    pub target: Option<String>,
    /// Merge sibling IDs (same trust domain, same path but for the last
    /// segment) into one `…/*` pattern when at least this many were seen;
    /// `None` (the default) keeps every caller exact.
    pub generalize_ids: Option<usize>,
}

impl SuggestOptions {
    /// Only decisions of `target`.
    #[must_use]
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Merges sibling IDs when at least `siblings` (2 or more) were seen.
    #[must_use]
    pub fn generalize_ids(mut self, siblings: usize) -> Self {
        self.generalize_ids = Some(siblings.max(2));
        self
    }
}

/// Collects the requests that were served (logged `allow` or `would-deny`)
/// and writes the narrowest policy that allows each of them and nothing
/// else: callers by exact SPIFFE ID (unless
/// [`generalize_ids`](SuggestOptions::generalize_ids)), HTTP actions by the
/// route template where the log has one, else the exact path, gRPC calls by
/// full method name. Every rule carries a comment with its evidence: how
/// many requests, first and last seen.
#[derive(Debug)]
pub struct Suggester {
    options: SuggestOptions,
    strings: Interner,
    sources: Interner,
    caller_names: Vec<u32>,
    evidence: HashMap<Key, Seen, foldhash::fast::RandomState>,
    records: u64,
    refused: u64,
    no_caller: u64,
    other_target: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    target: u32,
    caller: u32,
    action: ActionKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ActionKey {
    Grpc(u32),
    /// Method, route template.
    Route(u32, u32),
    /// Method, exact path.
    Path(u32, u32),
}

/// A suggested policy, and what it was made from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Suggestion {
    /// The policy file (TOML), with the evidence in comments.
    pub toml: String,
    /// The service it is for.
    pub target: String,
    /// Rules written.
    pub rules: usize,
    /// Requests it allows that the logs show were served.
    pub requests: u64,
    /// Records read.
    pub records: u64,
    /// Records left out: refused requests (`deny`).
    pub refused: u64,
    /// Records left out: no verified caller.
    pub no_caller: u64,
    /// Records left out: another target.
    pub other_target: u64,
    /// Served actions no rule can express (a method or path the policy
    /// syntax rejects), with the reason; those requests stay denied.
    pub unexpressible: Vec<String>,
}

impl Suggester {
    /// A suggester.
    pub fn new(options: SuggestOptions) -> Self {
        Self {
            options,
            strings: Interner::new(),
            sources: Interner::new(),
            caller_names: Vec::new(),
            evidence: HashMap::default(),
            records: 0,
            refused: 0,
            no_caller: 0,
            other_target: 0,
        }
    }

    /// Takes one record into account.
    pub fn observe(&mut self, record: &Record<'_>) {
        self.records += 1;
        if !record.decision.proceeds() {
            self.refused += 1;
            return;
        }
        let Some((caller_key, caller)) = record.caller else {
            self.no_caller += 1;
            return;
        };
        if self
            .options
            .target
            .as_deref()
            .is_some_and(|t| t != record.target)
        {
            self.other_target += 1;
            return;
        }
        let slot = caller_key.0 as usize;
        if self.caller_names.len() <= slot {
            self.caller_names.resize(slot + 1, u32::MAX);
        }
        let caller = match self.caller_names.get(slot) {
            Some(&name) if name != u32::MAX => name,
            _ => {
                let name = self.strings.intern(&caller.to_string());
                if let Some(cached) = self.caller_names.get_mut(slot) {
                    *cached = name;
                }
                name
            }
        };
        let action = match (record.grpc_method, record.route) {
            (Some(grpc), _) => ActionKey::Grpc(self.strings.intern(grpc)),
            (None, Some(route)) => ActionKey::Route(
                self.strings.intern(record.method),
                self.strings.intern(route),
            ),
            (None, None) => ActionKey::Path(
                self.strings.intern(record.method),
                self.strings.intern(record.path),
            ),
        };
        let key = Key {
            target: self.strings.intern(record.target),
            caller,
            action,
        };
        match self.evidence.get_mut(&key) {
            Some(seen) => seen.add(record.time),
            None => {
                let source = self.sources.intern(record.source_name);
                self.evidence
                    .insert(key, Seen::new(record.time, source, record.line));
            }
        }
    }

    /// Writes the policy.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::SeveralTargets`] if no target was chosen and the
    /// logs hold several; [`EvidenceError::Suggested`] if the policy
    /// written does not compile (a defect, never expected).
    pub fn finish(self) -> Result<Suggestion, EvidenceError> {
        let target = match &self.options.target {
            Some(t) => t.clone(),
            None => {
                let mut targets: Vec<&str> = self
                    .evidence
                    .keys()
                    .map(|k| self.strings.get(k.target))
                    .collect();
                targets.sort_unstable();
                targets.dedup();
                match targets.as_slice() {
                    [] => "-".to_owned(),
                    [one] => (*one).to_owned(),
                    _ => {
                        return Err(EvidenceError::SeveralTargets {
                            targets: targets.iter().map(|t| clean(t, 100)).collect(),
                        });
                    }
                }
            }
        };
        // Caller -> action -> evidence, sorted for a stable file.
        let mut by_caller: BTreeMap<&str, BTreeMap<Action<'_>, Seen>> = BTreeMap::new();
        for (key, seen) in &self.evidence {
            let action = match key.action {
                ActionKey::Grpc(m) => Action::Grpc(self.strings.get(m)),
                ActionKey::Route(m, r) => {
                    Action::Http(self.strings.get(m), self.strings.get(r), true)
                }
                ActionKey::Path(m, p) => {
                    Action::Http(self.strings.get(m), self.strings.get(p), false)
                }
            };
            by_caller
                .entry(self.strings.get(key.caller))
                .or_default()
                .insert(action, *seen);
        }
        let groups = self.caller_groups(by_caller);

        let mut toml = String::new();
        let requests: u64 = self.evidence.values().map(|s| s.count).sum();
        let _ = writeln!(
            toml,
            "# Suggested from audit logs for target {}: the narrowest policy that allows\n\
             # the {requests} served request{} (allow or would-deny) of {} caller{} and nothing else.\n\
             # Review it, then replay the logs under it before enforcing:\n\
             #   zt audit replay --policy THIS_FILE AUDIT.jsonl...",
            toml_string(&target),
            if requests == 1 { "" } else { "s" },
            self.caller_count(),
            if self.caller_count() == 1 { "" } else { "s" },
        );
        let mut rules = 0;
        let mut unexpressible = Vec::new();
        for group in &groups {
            if let Some(text) = render_rule(group, &self.sources, &mut unexpressible) {
                toml.push_str(&text);
                rules += 1;
            }
        }
        if rules == 0 {
            toml.push_str("\n# No served request was found: this policy denies everything.\n");
        }
        Policy::from_toml_str(&toml, "suggested.toml").map_err(EvidenceError::Suggested)?;
        Ok(Suggestion {
            toml,
            target,
            rules,
            requests,
            records: self.records,
            refused: self.refused,
            no_caller: self.no_caller,
            other_target: self.other_target,
            unexpressible,
        })
    }

    fn caller_count(&self) -> usize {
        let mut callers: Vec<u32> = self.evidence.keys().map(|k| k.caller).collect();
        callers.sort_unstable();
        callers.dedup();
        callers.len()
    }

    /// Callers as rules: one per exact ID, or one per merged family of
    /// sibling IDs.
    fn caller_groups<'s>(
        &self,
        by_caller: BTreeMap<&'s str, BTreeMap<Action<'s>, Seen>>,
    ) -> Vec<CallerGroup<'s>> {
        let min = self.options.generalize_ids.unwrap_or(usize::MAX);
        // Family (the ID without its last segment) -> members.
        let mut families: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        if min != usize::MAX {
            for caller in by_caller.keys() {
                if let Some(family) = family_of(caller) {
                    families.entry(family).or_default().push(caller);
                }
            }
        }
        let mut merged: BTreeMap<String, CallerGroup<'s>> = BTreeMap::new();
        for (caller, actions) in by_caller {
            let family = family_of(caller)
                .filter(|f| families.get(f).is_some_and(|members| members.len() >= min));
            let pattern = match &family {
                Some(f) => format!("{f}/*"),
                None => caller.to_owned(),
            };
            let group = merged
                .entry(pattern.clone())
                .or_insert_with(|| CallerGroup {
                    pattern,
                    members: Vec::new(),
                    actions: BTreeMap::new(),
                });
            group.members.push(caller);
            for (action, seen) in actions {
                match group.actions.get_mut(&action) {
                    Some(existing) => existing.merge(&seen),
                    None => {
                        group.actions.insert(action, seen);
                    }
                }
            }
        }
        merged.into_values().collect()
    }
}

/// `spiffe://td/a/b` -> `spiffe://td/a`; `None` for an ID without a path.
fn family_of(caller: &str) -> Option<String> {
    let id = SpiffeId::new(caller).ok()?;
    let path = id.path();
    let (parent, _) = path.rsplit_once('/')?;
    if path.is_empty() {
        return None;
    }
    Some(format!("spiffe://{}{parent}", id.trust_domain()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action<'a> {
    /// Method, route template or path, `true` for a template.
    Http(&'a str, &'a str, bool),
    Grpc(&'a str),
}

struct CallerGroup<'a> {
    pattern: String,
    members: Vec<&'a str>,
    actions: BTreeMap<Action<'a>, Seen>,
}

/// A route template as a path pattern: a final catch-all `{*rest}` becomes
/// `**`.
fn route_pattern(route: &str) -> String {
    match route.rsplit_once('/') {
        Some((head, last)) if last.starts_with("{*") && last.ends_with('}') => {
            format!("{head}/**")
        }
        _ => route.to_owned(),
    }
}

/// Renders one rule, or `None` when none of its actions can be written
/// (a rule without actions would cover every action).
fn render_rule(
    group: &CallerGroup<'_>,
    sources: &Interner,
    unexpressible: &mut Vec<String>,
) -> Option<String> {
    let id = format!(
        "from:{}",
        group
            .pattern
            .strip_prefix("spiffe://")
            .unwrap_or(&group.pattern)
    );
    let mut rule = match Rule::allow(&id).caller(&group.pattern) {
        Ok(rule) => rule,
        Err(e) => {
            unexpressible.push(clean(&format!("caller {}: {e}", group.pattern), 400));
            return None;
        }
    };
    let mut http = Vec::new();
    let mut grpc = Vec::new();
    let mut total: Option<Seen> = None;
    for (action, seen) in &group.actions {
        let evidence = evidence_comment(seen, sources);
        match *action {
            Action::Http(method, text, is_route) => {
                let mut pattern = if is_route {
                    route_pattern(text)
                } else {
                    text.to_owned()
                };
                let mut attempt = rule.clone().http(method, &pattern);
                if attempt.is_err() && is_route {
                    // A template the policy syntax cannot express: no exact
                    // path is known either.
                    pattern = text.to_owned();
                    attempt = rule.clone().http(method, &pattern);
                }
                match attempt {
                    Ok(next) => {
                        rule = next;
                        http.push(format!(
                            "    {{ method = {}, path = {} }},  # {evidence}",
                            toml_string(method),
                            toml_string(&pattern)
                        ));
                    }
                    Err(e) => {
                        unexpressible.push(clean(&format!("{method} {text}: {e}"), 400));
                        continue;
                    }
                }
            }
            Action::Grpc(method) => match rule.clone().grpc(method) {
                Ok(next) => {
                    rule = next;
                    grpc.push(format!("    {},  # {evidence}", toml_string(method)));
                }
                Err(e) => {
                    unexpressible.push(clean(&format!("{method}: {e}"), 400));
                    continue;
                }
            },
        }
        match &mut total {
            Some(t) => t.merge(seen),
            None => total = Some(*seen),
        }
    }
    let total = total?;
    let mut out = String::new();
    out.push_str("\n[[rule]]\n");
    let _ = writeln!(out, "# {}", evidence_comment(&total, sources));
    if group.members.len() > 1 || group.pattern != group.members.first().copied().unwrap_or("") {
        let _ = writeln!(
            out,
            "# merged from {} sibling IDs: {}",
            group.members.len(),
            group
                .members
                .iter()
                .map(|m| clean(m, 200))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(out, "id = {}", toml_string(&id));
    out.push_str("effect = \"allow\"\n");
    let _ = writeln!(out, "callers = [{}]", toml_string(&group.pattern));
    if !http.is_empty() {
        let _ = writeln!(out, "http = [\n{}\n]", http.join("\n"));
    }
    if !grpc.is_empty() {
        let _ = writeln!(out, "grpc = [\n{}\n]", grpc.join("\n"));
    }
    Some(out)
}

fn evidence_comment(seen: &Seen, sources: &Interner) -> String {
    format!(
        "{} request{}, first {}, last {} (first at {}:{})",
        seen.count,
        if seen.count == 1 { "" } else { "s" },
        or_dash(&clean(seen.first.as_str(), 40)),
        or_dash(&clean(seen.last.as_str(), 40)),
        clean(sources.get(seen.first_source), 200),
        seen.first_line
    )
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
