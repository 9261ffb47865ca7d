//! `zt audit`: policy from evidence. Suggest a policy from audit logs,
//! replay logs under a candidate policy, find drift between two windows,
//! draw the call graph.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use zt_authz::evidence::{
    AuditReader, CallGraph, DriftDetector, EvidenceError, ReadReport, Record, Replayer,
    SuggestOptions, Suggester,
};

use crate::error::{CliError, CliResult};
use crate::files;
use crate::output::{emit, warn_line};

/// How many bad lines are listed on standard error; the rest are counted.
const SHOWN_ISSUES: usize = 20;

/// `zt audit` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Suggest the narrowest policy that allows every request the logs show
    /// as allowed or would-deny, and nothing else.
    ///
    /// Callers by exact SPIFFE ID (unless --generalize), HTTP actions by the
    /// route template where the log has one (else the exact path), gRPC
    /// calls by full method name; each rule carries its evidence in a
    /// comment. The policy goes to standard output or --out; a summary to
    /// standard error. Exit 0; 2 on bad input (with --strict, any bad line).
    Suggest(SuggestArgs),
    /// Decide every logged request again under a candidate policy and
    /// report what would change.
    ///
    /// Newly denied requests (served before: allow or would-deny; denied by
    /// the candidate) are listed by caller and action, then newly allowed
    /// ones. Exit 0 when nothing served becomes denied, 1 otherwise, 2 on
    /// bad input (with --strict, any bad line).
    Replay(ReplayArgs),
    /// Find callers reaching targets, routes or methods they never reached
    /// in a baseline window, and new callers, ranked by volume.
    ///
    /// Exit 0 when nothing is new, 1 otherwise, 2 on bad input.
    Drift(DriftArgs),
    /// Draw the observed call graph: services as nodes grouped by trust
    /// domain, edges with allowed and denied counts, refused calls dashed.
    ///
    /// SVG is drawn by zt itself; DOT (Graphviz) and Mermaid are for your
    /// own tools. Exit 0; 2 on bad input.
    Graph(GraphArgs),
}

/// Input options shared by every verb.
#[derive(Debug, Args)]
pub(crate) struct InputArgs {
    /// Treat any bad line (malformed, unknown field, newer format, bad
    /// caller) as an error: exit 2.
    #[arg(long)]
    strict: bool,
    /// The longest line read, in bytes; longer lines are skipped and
    /// reported.
    #[arg(long, value_name = "BYTES", default_value_t = zt_authz::evidence::DEFAULT_MAX_LINE)]
    max_line: usize,
}

/// Arguments of `zt audit suggest`.
#[derive(Debug, Args)]
pub(crate) struct SuggestArgs {
    /// Audit files (JSON lines); `-` reads standard input.
    #[arg(value_name = "AUDIT.jsonl", required = true)]
    files: Vec<PathBuf>,
    /// The service to write a policy for (the records' `target`); needed
    /// when the logs hold several.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Write the policy to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Widen on purpose: `ids=N` merges sibling IDs (same parent path) into
    /// one `…/*` pattern when at least N were seen.
    #[arg(long, value_name = "ids=N", value_parser = generalize)]
    generalize: Option<usize>,
    #[command(flatten)]
    input: InputArgs,
}

/// Arguments of `zt audit replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The candidate policy file (TOML).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Audit files (JSON lines); `-` reads standard input.
    #[arg(value_name = "AUDIT.jsonl", required = true)]
    files: Vec<PathBuf>,
    /// How many groups of changes to list in each section.
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    input: InputArgs,
}

/// Arguments of `zt audit drift`.
#[derive(Debug, Args)]
pub(crate) struct DriftArgs {
    /// The baseline window's audit files (repeat for several).
    #[arg(long, value_name = "BASELINE.jsonl", required = true)]
    baseline: Vec<PathBuf>,
    /// The current window's audit files.
    #[arg(value_name = "CURRENT.jsonl", required = true)]
    files: Vec<PathBuf>,
    /// How many findings to list.
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    input: InputArgs,
}

/// Output formats of `zt audit graph`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum GraphFormat {
    /// A standalone SVG picture.
    Svg,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// Arguments of `zt audit graph`.
#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    /// Audit files (JSON lines); `-` reads standard input.
    #[arg(value_name = "AUDIT.jsonl", required = true)]
    files: Vec<PathBuf>,
    /// The output format.
    #[arg(long, value_enum, default_value = "svg")]
    format: GraphFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
}

/// Runs a `zt audit` subcommand.
pub(crate) fn run(command: &AuditCommand) -> CliResult {
    match command {
        AuditCommand::Suggest(a) => suggest(a),
        AuditCommand::Replay(a) => replay(a),
        AuditCommand::Drift(a) => drift(a),
        AuditCommand::Graph(a) => graph(a),
    }
}

/// Parses `ids=N` (N at least 2).
fn generalize(s: &str) -> Result<usize, String> {
    let n = s
        .strip_prefix("ids=")
        .ok_or_else(|| format!("`{s}`: write ids=N, e.g. ids=3"))?;
    match n.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(format!(
            "`{s}`: N is how many sibling IDs make a family, at least 2"
        )),
    }
}

fn evidence_error(e: EvidenceError) -> CliError {
    CliError::usage(e.to_string())
}

/// Streams every file through `reader`.
fn read_all(
    reader: &mut AuditReader,
    paths: &[PathBuf],
    mut each: impl FnMut(&Record<'_>),
) -> CliResult {
    for path in paths {
        if path == Path::new("-") {
            reader
                .read("<stdin>", std::io::stdin().lock(), &mut each)
                .map_err(evidence_error)?;
        } else {
            let file = std::fs::File::open(path).map_err(|e| CliError::io(path, &e))?;
            reader
                .read(&path.display().to_string(), file, &mut each)
                .map_err(evidence_error)?;
        }
    }
    Ok(())
}

/// Lists bad lines on standard error; with `strict` any is an error.
fn report_issues(report: &ReadReport, strict: bool) -> CliResult {
    for issue in report.issues.iter().take(SHOWN_ISSUES) {
        warn_line(&format!("warning: {issue}"));
    }
    if report.issue_count > SHOWN_ISSUES as u64 {
        warn_line(&format!(
            "warning: … and {} more bad lines",
            report.issue_count - SHOWN_ISSUES as u64
        ));
    }
    if strict && report.issue_count > 0 {
        return Err(CliError::usage(format!(
            "{} bad line{} in the input (--strict): {}",
            report.issue_count,
            if report.issue_count == 1 { "" } else { "s" },
            report.summary()
        )));
    }
    Ok(())
}

fn new_reader(input: &InputArgs) -> AuditReader {
    AuditReader::new().max_line(input.max_line)
}

fn write_out(out: Option<&Path>, text: &str) -> CliResult {
    match out {
        Some(path) => files::write(path, text.as_bytes(), false),
        None => emit(text),
    }
}

fn suggest(a: &SuggestArgs) -> CliResult {
    let mut options = SuggestOptions::default();
    if let Some(target) = &a.target {
        options = options.target(target.clone());
    }
    if let Some(n) = a.generalize {
        options = options.generalize_ids(n);
    }
    let mut suggester = Suggester::new(options);
    let mut reader = new_reader(&a.input);
    read_all(&mut reader, &a.files, |r| suggester.observe(r))?;
    report_issues(reader.report(), a.input.strict)?;
    let suggestion = suggester.finish().map_err(evidence_error)?;
    for what in &suggestion.unexpressible {
        warn_line(&format!(
            "warning: not expressible as a rule, left denied: {what}"
        ));
    }
    write_out(a.out.as_deref(), &suggestion.toml)?;
    warn_line(&format!(
        "suggested {} rule{} for target {} from {} served request{} ({}; left out: {} refused, {} \
         without caller, {} for other targets)",
        suggestion.rules,
        if suggestion.rules == 1 { "" } else { "s" },
        suggestion.target,
        suggestion.requests,
        if suggestion.requests == 1 { "" } else { "s" },
        reader.report().summary(),
        suggestion.refused,
        suggestion.no_caller,
        suggestion.other_target
    ));
    Ok(())
}

fn replay(a: &ReplayArgs) -> CliResult {
    let (policy, _) = crate::policy::load(&a.policy)?;
    let mut replayer = Replayer::new(policy);
    let mut reader = new_reader(&a.input);
    read_all(&mut reader, &a.files, |r| replayer.observe(r))?;
    report_issues(reader.report(), a.input.strict)?;
    let report = replayer.finish();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "replayed {} records under policy version {} ({})",
        report.records,
        report.version,
        reader.report().summary()
    );
    let _ = writeln!(
        text,
        "newly denied: {} (of which {} were would-deny in dry run)",
        report.newly_denied, report.newly_denied_was_would_deny
    );
    for g in report.denied_groups.iter().take(a.limit) {
        let _ = writeln!(
            text,
            "  {:>8}  {} -> {} {}  (first {} at {}, last {})",
            g.count, g.caller, g.target, g.action, g.first_seen, g.first_line, g.last_seen
        );
    }
    more(&mut text, report.denied_groups.len(), a.limit);
    let _ = writeln!(text, "newly allowed: {}", report.newly_allowed);
    for g in report.allowed_groups.iter().take(a.limit) {
        let _ = writeln!(
            text,
            "  {:>8}  {} -> {} {}  (first {} at {}, last {})",
            g.count, g.caller, g.target, g.action, g.first_seen, g.first_line, g.last_seen
        );
    }
    more(&mut text, report.allowed_groups.len(), a.limit);
    let _ = writeln!(text, "unchanged: {}", report.unchanged);
    let _ = writeln!(
        text,
        "not decided by policy (identity, declarations in code): {}",
        report.not_policy
    );
    if report.same_version > 0 {
        let _ = writeln!(
            text,
            "records of this policy version: {}, decided differently now: {}",
            report.same_version, report.disagreement_count
        );
        for d in report.disagreements.iter().take(a.limit) {
            let _ = writeln!(
                text,
                "  {}: logged {}, replayed {}",
                d.at, d.logged, d.replayed
            );
        }
    }
    let _ = write!(
        text,
        "{}",
        if report.is_safe() {
            "result: safe to enforce: no served request becomes denied"
        } else {
            "result: NOT safe to enforce: served requests become denied"
        }
    );
    emit(&text)?;
    if report.is_safe() {
        Ok(())
    } else {
        Err(CliError::answered_no())
    }
}

fn more(text: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = writeln!(text, "  … {} more (--limit)", total - shown);
    }
}

fn drift(a: &DriftArgs) -> CliResult {
    let mut detector = DriftDetector::new();
    let mut reader = new_reader(&a.input);
    read_all(&mut reader, &a.baseline, |r| detector.baseline(r))?;
    read_all(&mut reader, &a.files, |r| detector.current(r))?;
    report_issues(reader.report(), a.input.strict)?;
    let report = detector.finish();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "baseline: {} records; current: {} records ({})",
        report.baseline_records,
        report.current_records,
        reader.report().summary()
    );
    for f in report.findings.iter().take(a.limit) {
        let _ = writeln!(
            text,
            "{:<11} {:>8} requests ({} denied)  {} -> {}  {}  (first {} at {}, last {})",
            f.kind.as_str(),
            f.count,
            f.denied,
            f.caller,
            f.target,
            f.action,
            f.first_seen,
            f.first_line,
            f.last_seen
        );
    }
    more(&mut text, report.findings.len(), a.limit);
    let _ = write!(
        text,
        "{} finding{}",
        report.findings.len(),
        if report.findings.len() == 1 { "" } else { "s" }
    );
    emit(&text)?;
    if report.findings.is_empty() {
        Ok(())
    } else {
        Err(CliError::answered_no())
    }
}

fn graph(a: &GraphArgs) -> CliResult {
    let mut graph = CallGraph::new();
    let mut reader = new_reader(&a.input);
    read_all(&mut reader, &a.files, |r| graph.observe(r))?;
    report_issues(reader.report(), a.input.strict)?;
    let graph = graph.finish();
    let text = match a.format {
        GraphFormat::Svg => graph.to_svg(),
        GraphFormat::Dot => graph.to_dot(),
        GraphFormat::Mermaid => graph.to_mermaid(),
    };
    write_out(a.out.as_deref(), &text)?;
    if a.out.is_some() {
        warn_line(&format!(
            "{} services, {} edges ({})",
            graph.nodes().len(),
            graph.edges().len(),
            reader.report().summary()
        ));
    }
    Ok(())
}
