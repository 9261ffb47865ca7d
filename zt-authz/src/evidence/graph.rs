//! The observed call graph: who calls whom, with how many requests allowed
//! and denied, as SVG, DOT or Mermaid.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::clean;
use super::intern::Interner;
use super::reader::Record;
use crate::audit::Verdict;
use zt_core::SpiffeId;

type Fast = foldhash::fast::RandomState;

/// A service in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GraphNode {
    /// The SPIFFE ID, or the target name as the logs give it.
    pub id: String,
    /// A short label (the ID's path, `sa (ns)` for Kubernetes-style IDs).
    pub label: String,
    /// The group it is drawn in: its trust domain, `named targets` for a
    /// target known only by name, `no identity` for callers without one.
    pub group: String,
}

/// Calls from one service to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GraphEdge {
    /// Index of the caller in [`CallGraph::nodes`].
    pub from: usize,
    /// Index of the target.
    pub to: usize,
    /// Requests allowed.
    pub allowed: u64,
    /// Requests the policy denied but dry run let through.
    pub would_deny: u64,
    /// Requests refused.
    pub denied: u64,
}

/// Who calls whom, built from audit records: nodes are services (callers
/// by SPIFFE ID, targets by the name the logs give), edges carry counts.
///
/// A target named in the logs by a plain name (`ledger`) is drawn as the
/// caller node whose SPIFFE ID ends in that segment
/// (`spiffe://example.org/ledger`) when exactly one does, so a service that
/// both calls and is called is one node.
///
/// # Examples
///
/// ```
/// use zt_authz::evidence::{AuditReader, CallGraph};
///
/// let log = br#"{"caller":"spiffe://example.org/orders","target":"ledger","method":"GET","path":"/x","decision":"deny","reason":"no-matching-rule","policy_version":"v1"}
/// "#;
/// let mut graph = CallGraph::new();
/// AuditReader::new().read("audit.jsonl", &log[..], |r| graph.observe(r))?;
/// let graph = graph.finish();
/// assert_eq!(graph.edges().len(), 1);
/// assert!(graph.to_svg().starts_with("<svg"));
/// assert!(graph.to_dot().contains("1 denied"));
/// # Ok::<(), zt_authz::evidence::EvidenceError>(())
/// ```
#[derive(Debug, Default)]
pub struct CallGraph {
    nodes: Vec<GraphNode>,
    edges: Vec<GraphEdge>,
    by_caller: Vec<usize>,
    by_target: HashMap<u32, usize, Fast>,
    targets: Interner,
    edge_index: HashMap<(usize, usize), usize, Fast>,
    no_identity: Option<usize>,
}

const NAMED: &str = "named targets";
const NO_IDENTITY: &str = "no identity";

impl CallGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The services, in order of first appearance (after
    /// [`finish`](Self::finish), merged).
    pub fn nodes(&self) -> &[GraphNode] {
        &self.nodes
    }

    /// The calls, in order of first appearance.
    pub fn edges(&self) -> &[GraphEdge] {
        &self.edges
    }

    fn add_node(&mut self, id: String, label: String, group: String) -> usize {
        self.nodes.push(GraphNode { id, label, group });
        self.nodes.len() - 1
    }

    /// Counts one record.
    pub fn observe(&mut self, record: &Record<'_>) {
        let from = match record.caller {
            Some((key, id)) => {
                let slot = key.0 as usize;
                match self.by_caller.get(slot) {
                    Some(&node) if node != usize::MAX => node,
                    _ => {
                        let node = self.add_node(
                            id.to_string(),
                            short_label(id),
                            id.trust_domain().to_string(),
                        );
                        if self.by_caller.len() <= slot {
                            self.by_caller.resize(slot + 1, usize::MAX);
                        }
                        if let Some(cached) = self.by_caller.get_mut(slot) {
                            *cached = node;
                        }
                        node
                    }
                }
            }
            None => match self.no_identity {
                Some(node) => node,
                None => {
                    let node = self.add_node(
                        "-".to_owned(),
                        "(no SPIFFE ID)".to_owned(),
                        NO_IDENTITY.to_owned(),
                    );
                    self.no_identity = Some(node);
                    node
                }
            },
        };
        let target = self.targets.intern(record.target);
        let to = match self.by_target.get(&target) {
            Some(&node) => node,
            None => {
                let node = match SpiffeId::new(record.target) {
                    Ok(id) => self.add_node(
                        id.to_string(),
                        short_label(&id),
                        id.trust_domain().to_string(),
                    ),
                    Err(_) => self.add_node(
                        record.target.to_owned(),
                        clean(record.target, 40),
                        NAMED.to_owned(),
                    ),
                };
                self.by_target.insert(target, node);
                node
            }
        };
        let edge = match self.edge_index.get(&(from, to)) {
            Some(&e) => e,
            None => {
                self.edges.push(GraphEdge {
                    from,
                    to,
                    allowed: 0,
                    would_deny: 0,
                    denied: 0,
                });
                self.edge_index.insert((from, to), self.edges.len() - 1);
                self.edges.len() - 1
            }
        };
        if let Some(edge) = self.edges.get_mut(edge) {
            match record.decision {
                Verdict::Allow => edge.allowed += 1,
                Verdict::WouldDeny => edge.would_deny += 1,
                Verdict::Deny => edge.denied += 1,
            }
        }
    }

    /// Merges nodes that are the same service (a target named by the last
    /// segment of exactly one caller's SPIFFE ID, or by its full ID) and
    /// returns the finished graph.
    pub fn finish(self) -> Self {
        let mut into: Vec<usize> = (0..self.nodes.len()).collect();
        // Targets found by full SPIFFE ID are already shared with callers
        // only if added first as callers; merge equal IDs.
        let mut first_by_id: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.group != NAMED && node.group != NO_IDENTITY {
                match first_by_id.get(node.id.as_str()) {
                    Some(&first) => into[i] = first,
                    None => {
                        first_by_id.insert(&node.id, i);
                    }
                }
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.group != NAMED {
                continue;
            }
            let mut found = self.nodes.iter().enumerate().filter(|(j, other)| {
                into[*j] == *j
                    && other.group != NAMED
                    && other.group != NO_IDENTITY
                    && SpiffeId::new(&other.id)
                        .is_ok_and(|id| id.path().rsplit('/').next() == Some(node.id.as_str()))
            });
            if let (Some((j, _)), None) = (found.next(), found.next()) {
                into[i] = j;
            }
        }
        // Renumber the nodes that remain.
        let mut new_index = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if into[i] == i {
                new_index[i] = nodes.len();
                nodes.push(node.clone());
            }
        }
        let mut merged: Vec<GraphEdge> = Vec::new();
        let mut index: HashMap<(usize, usize), usize> = HashMap::new();
        for edge in &self.edges {
            let from = new_index[into[edge.from]];
            let to = new_index[into[edge.to]];
            match index.get(&(from, to)) {
                Some(&e) => {
                    let m = &mut merged[e];
                    m.allowed += edge.allowed;
                    m.would_deny += edge.would_deny;
                    m.denied += edge.denied;
                }
                None => {
                    index.insert((from, to), merged.len());
                    merged.push(GraphEdge { from, to, ..*edge });
                }
            }
        }
        Self {
            nodes,
            edges: merged,
            ..Self::default()
        }
    }

    /// Groups in drawing order: trust domains alphabetically, then named
    /// targets, then callers without identity; each with its nodes.
    fn groups(&self) -> Vec<(&str, Vec<usize>)> {
        let mut groups: BTreeMap<(u8, &str), Vec<usize>> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let order = match node.group.as_str() {
                NAMED => 1,
                NO_IDENTITY => 2,
                _ => 0,
            };
            groups.entry((order, &node.group)).or_default().push(i);
        }
        groups.into_iter().map(|((_, g), n)| (g, n)).collect()
    }

    /// The graph in Graphviz DOT: one cluster per group, every string
    /// quoted and escaped.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph calls {\n  rankdir=LR;\n  fontname=\"Helvetica\";\n  \
             node [shape=box, style=\"rounded,filled\", fillcolor=\"#f4f6fb\", \
             fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
        );
        for (g, (group, members)) in self.groups().iter().enumerate() {
            let _ = writeln!(
                out,
                "  subgraph \"cluster_{g}\" {{\n    label={};\n    style=\"rounded\";\n    color=\"#9aa3b5\";",
                dot_string(group)
            );
            for &i in members {
                let node = &self.nodes[i];
                let _ = writeln!(
                    out,
                    "    n{i} [label={}, tooltip={}];",
                    dot_string(&node.label),
                    dot_string(&node.id)
                );
            }
            out.push_str("  }\n");
        }
        for edge in &self.edges {
            let (color, style) = edge_style(edge);
            let _ = writeln!(
                out,
                "  n{} -> n{} [label={}, color=\"{color}\", fontcolor=\"{color}\", style={}];",
                edge.from,
                edge.to,
                dot_string(&edge_label(edge)),
                if style.is_empty() { "solid" } else { "dashed" }
            );
        }
        out.push_str("}\n");
        out
    }

    /// The graph as a Mermaid flowchart: one subgraph per group; every
    /// character of names outside a small safe set is written as a Mermaid
    /// entity code.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for (g, (group, members)) in self.groups().iter().enumerate() {
            let _ = writeln!(out, "  subgraph g{g}[\"{}\"]", mermaid_text(group));
            for &i in members {
                let _ = writeln!(out, "    n{i}[\"{}\"]", mermaid_text(&self.nodes[i].label));
            }
            out.push_str("  end\n");
        }
        for edge in &self.edges {
            let _ = writeln!(
                out,
                "  n{} -->|\"{}\"| n{}",
                edge.from,
                mermaid_text(&edge_label(edge)),
                edge.to
            );
        }
        for (i, edge) in self.edges.iter().enumerate() {
            let (color, dash) = edge_style(edge);
            let _ = write!(out, "  linkStyle {i} stroke:{color},color:{color}");
            if !dash.is_empty() {
                let _ = write!(out, ",stroke-dasharray:{dash}");
            }
            out.push('\n');
        }
        out
    }

    /// The graph as a standalone SVG document, laid out here (no external
    /// tool): services in columns by call depth, one band per trust domain,
    /// curved edges with their counts, refused calls dashed in red. Every
    /// name is XML-escaped.
    pub fn to_svg(&self) -> String {
        svg::render(self)
    }
}

/// `allowed`, `would-deny` and `denied` counts in words.
fn edge_label(edge: &GraphEdge) -> String {
    let mut parts = Vec::new();
    if edge.allowed > 0 {
        parts.push(format!("{} allowed", edge.allowed));
    }
    if edge.would_deny > 0 {
        parts.push(format!("{} would-deny", edge.would_deny));
    }
    if edge.denied > 0 {
        parts.push(format!("{} denied", edge.denied));
    }
    parts.join(", ")
}

/// Stroke colour and dash pattern: refused calls red and dashed, dry-run
/// denials orange and dotted, the rest green and solid.
fn edge_style(edge: &GraphEdge) -> (&'static str, &'static str) {
    if edge.denied > 0 {
        ("#c62828", "6 4")
    } else if edge.would_deny > 0 {
        ("#e08600", "2 3")
    } else {
        ("#2e7d32", "")
    }
}

/// The short label of an ID: its path without the leading `/`; Kubernetes
/// style `ns/N/sa/S` becomes `S (N)`; long paths keep their end.
fn short_label(id: &SpiffeId) -> String {
    let path = id.path().trim_start_matches('/');
    if path.is_empty() {
        return id.trust_domain().to_string();
    }
    let parts: Vec<&str> = path.split('/').collect();
    let label = match parts.as_slice() {
        ["ns", ns, "sa", sa] => format!("{sa} ({ns})"),
        _ => path.to_owned(),
    };
    let chars: Vec<char> = label.chars().collect();
    if chars.len() > 36 {
        let tail: String = chars[chars.len() - 35..].iter().collect();
        format!("…{tail}")
    } else {
        label
    }
}

/// A DOT quoted string.
fn dot_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for a Mermaid quoted label: letters, digits and `._:/@+-,()` and
/// spaces as they are, everything else as `#NNN;`.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || " ._:/@+-,()".contains(c) {
            out.push(c);
        } else {
            let _ = write!(out, "#{};", u32::from(c));
        }
    }
    out
}

/// Text for XML content and attribute values: markup characters escaped,
/// characters XML 1.0 forbids replaced by U+FFFD.
pub(crate) fn xml_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

mod svg;
