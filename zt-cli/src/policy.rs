//! `zt policy`: decide a request against a policy file, and lint one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use zt_authz::policy::{Context, ContextValue, Policy, PolicyEngine as _, Request};
use zt_core::SpiffeId;

use crate::args;
use crate::error::{CliError, CliResult};
use crate::files;
use crate::output::emit;

/// `zt policy` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Decide one request against a policy file, or compare the policy
    /// with a service's declarations in code (--declared).
    ///
    /// Prints the decision (allow or deny), the reason, the deciding rule
    /// (or `-`), the condition that failed (reason condition-not-met), the
    /// policy version and the audit-only rules that matched. --claim gives
    /// the request a verified context for rules with `when` conditions.
    /// Exit 0 if allowed; exit 1 if denied; exit 2 for bad arguments, an
    /// unreadable file or a policy file with an error (shown with its
    /// file:line:column).
    ///
    /// With --declared EXPORT.toml (the output of `Combined::export`),
    /// prints the allow rules that admit callers the code never declared
    /// for an endpoint, and declared endpoints no allow rule admits; exit 0
    /// when there are none, 1 otherwise.
    Check(CheckArgs),
    /// Check a policy file for mistakes and for rules that never decide.
    ///
    /// Errors are shown as the server would report them, with
    /// file:line:column and the rule id (exit 2). Otherwise each warning is
    /// printed as `warning: ...`: a rule shadowed by an earlier rule of the
    /// same effect, an allow rule that a deny rule covers completely, or a
    /// rule with a condition that can never hold. A conditioned rule never
    /// covers one without conditions. A summary line follows. Exit 0 without warnings; exit 1 with warnings.
    Lint(LintArgs),
}

/// Arguments of `zt policy check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Policy file (TOML, the format of `zt_authz::policy`); `-` reads
    /// standard input.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The caller's SPIFFE ID, as its verified SVID would carry it.
    #[arg(
        long,
        value_name = "ID",
        value_parser = args::spiffe_id,
        required_unless_present = "declared",
        conflicts_with = "declared"
    )]
    caller: Option<SpiffeId>,
    /// Compare the policy with a service's declarations instead: the TOML
    /// that `Combined::export` writes (its `[[declared]]` tables).
    #[arg(long, value_name = "EXPORT.toml")]
    declared: Option<PathBuf>,
    /// HTTP method, in uppercase as sent.
    #[arg(
        long,
        value_name = "METHOD",
        default_value = "GET",
        conflicts_with = "grpc",
        value_parser = http_method
    )]
    method: String,
    /// HTTP request path, without query, e.g. `/invoices/42`.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present_any = ["grpc", "declared"],
        conflicts_with = "grpc",
        value_parser = request_path
    )]
    path: Option<String>,
    /// Check a gRPC call instead: `/package.Service/Method` (sent as a
    /// POST to that path).
    #[arg(long, value_name = "/PKG.SERVICE/METHOD", value_parser = grpc_method)]
    grpc: Option<String>,
    /// The route template the router matched, e.g. `/invoices/{id}`; path
    /// patterns match it as well as the path.
    #[arg(long, value_name = "TEMPLATE", value_parser = request_path)]
    route: Option<String>,
    /// A claim of the request's verified context, which rule conditions
    /// (`when`) read: `KEY=VALUE` sets a string (a nested claim is its dotted
    /// path, `kubernetes.io.namespace=prod`), `KEY:=true` or `KEY:=false` a
    /// boolean. Repeat for more claims; a key given more than once is a
    /// list of its string values.
    #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = claim)]
    claims: Vec<(String, ContextValue)>,
}

/// Arguments of `zt policy lint`.
#[derive(Debug, Args)]
pub(crate) struct LintArgs {
    /// Policy file (TOML); `-` reads standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Runs a `zt policy` subcommand.
pub(crate) fn run(command: &PolicyCommand) -> CliResult {
    match command {
        PolicyCommand::Check(a) => check(a),
        PolicyCommand::Lint(a) => lint(a),
    }
}

/// Reads and compiles a policy file; every failure is a usage error (exit
/// 2) whose message starts with `file:line:column`.
pub(crate) fn load(path: &Path) -> CliResult<(Policy, String)> {
    let bytes = files::read(path)?;
    let source = if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::usage(format!("`{source}` is not UTF-8 text")))?;
    let policy =
        Policy::from_toml_str(&text, &source).map_err(|e| CliError::usage(e.to_string()))?;
    Ok((policy, source))
}

fn check(a: &CheckArgs) -> CliResult {
    let (policy, _) = load(&a.policy)?;
    if let Some(declared) = &a.declared {
        return check_declared(&policy, declared);
    }
    let Some(caller) = &a.caller else {
        return Err(CliError::usage(
            "give --caller ID (or --declared EXPORT.toml)",
        ));
    };
    let mut request = match (&a.grpc, &a.path) {
        (Some(grpc), _) => Request::new(Some(caller), "POST", grpc).with_grpc_method(grpc),
        (None, Some(path)) => Request::new(Some(caller), &a.method, path),
        // clap requires --path unless --grpc is given.
        (None, None) => return Err(CliError::usage("give --path PATH or --grpc METHOD")),
    };
    if let Some(route) = &a.route {
        request = request.with_route(route);
    }
    let context = context_of(&a.claims)?;
    if !a.claims.is_empty() {
        request = request.with_context(&context);
    }
    let decision = policy.evaluate(&request);

    let rule = match decision.rule_id.as_deref() {
        Some(id) => match policy.rule(id) {
            Some(rule) => format!("{id} ({})", rule.origin()),
            None => id.to_owned(),
        },
        None => "-".to_owned(),
    };
    let audit = if decision.audit_only_matches.is_empty() {
        "-".to_owned()
    } else {
        decision
            .audit_only_matches
            .iter()
            .map(|id| &**id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "decision: {}",
        if decision.allowed { "allow" } else { "deny" }
    );
    let _ = writeln!(text, "reason:   {}", decision.reason);
    let _ = writeln!(text, "rule:     {rule}");
    if let Some(condition) = &decision.condition {
        let _ = writeln!(text, "failed:   {condition}");
    }
    let _ = writeln!(text, "version:  {}", decision.policy_version);
    let _ = write!(text, "audit:    {audit}");
    emit(&text)?;
    if decision.allowed {
        Ok(())
    } else {
        Err(CliError::answered_no())
    }
}

/// `zt policy check --declared`: code and policy agree.
fn check_declared(policy: &Policy, export: &Path) -> CliResult {
    let bytes = files::read(export)?;
    let source = export.display().to_string();
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::usage(format!("`{source}` is not UTF-8 text")))?;
    let declared = zt_authz::policy::declare::parse_export(&text, &source)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let findings = policy.check_declared(&declared);
    let mut out = String::new();
    for finding in &findings {
        let _ = writeln!(out, "{}: {finding}", finding.kind.as_str());
    }
    let _ = write!(
        out,
        "{} declared endpoint{}, {} rule{}: {}",
        declared.len(),
        if declared.len() == 1 { "" } else { "s" },
        policy.rules().len(),
        if policy.rules().len() == 1 { "" } else { "s" },
        match findings.len() {
            0 => "code and policy agree".to_owned(),
            1 => "1 finding".to_owned(),
            n => format!("{n} findings"),
        }
    );
    emit(&out)?;
    if findings.is_empty() {
        Ok(())
    } else {
        Err(CliError::answered_no())
    }
}

fn lint(a: &LintArgs) -> CliResult {
    let (policy, source) = load(&a.file)?;
    let warnings = policy.lint();
    let mut text = String::new();
    for warning in &warnings {
        let _ = writeln!(text, "warning: {warning}");
    }
    let rules = policy.rules().len();
    let _ = write!(
        text,
        "{source}: {} rule{}, version {}{}: ",
        rules,
        if rules == 1 { "" } else { "s" },
        policy.version(),
        if policy.has_explicit_version() {
            ""
        } else {
            " (content hash)"
        },
    );
    let _ = match warnings.len() {
        0 => write!(text, "no warnings"),
        1 => write!(text, "1 warning"),
        n => write!(text, "{n} warnings"),
    };
    emit(&text)?;
    if warnings.is_empty() {
        Ok(())
    } else {
        Err(CliError::answered_no())
    }
}

/// Parses `--claim KEY=VALUE` (a string) or `KEY:=true|false` (a boolean).
fn claim(s: &str) -> Result<(String, ContextValue), String> {
    if let Some((key, value)) = s.split_once(":=") {
        let value = match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(format!(
                    "`{value}` is not a boolean; write KEY:=true or KEY:=false"
                ));
            }
        };
        if key.is_empty() {
            return Err("the claim key is empty; write KEY:=true".into());
        }
        return Ok((key.to_owned(), ContextValue::Bool(value)));
    }
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.into())),
        _ => Err(format!("`{s}` is not KEY=VALUE (or KEY:=true|false)")),
    }
}

/// The context of the `--claim` arguments: a key given more than once is a
/// list of its string values.
fn context_of(claims: &[(String, ContextValue)]) -> CliResult<Context> {
    let mut context = Context::new();
    for (key, value) in claims {
        let merged = match (context.get(key), value) {
            (None, value) => value.clone(),
            (Some(ContextValue::String(a)), ContextValue::String(b)) => {
                ContextValue::List(vec![a.clone(), b.clone()])
            }
            (Some(ContextValue::List(items)), ContextValue::String(b)) => {
                let mut items = items.clone();
                items.push(b.clone());
                ContextValue::List(items)
            }
            _ => {
                return Err(CliError::usage(format!(
                    "claim `{key}` is given as both a boolean and another value"
                )));
            }
        };
        context.insert(key, merged);
    }
    Ok(context)
}

/// Parses an HTTP method as a server would see it: an uppercase token.
fn http_method(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the method is empty; write one such as GET".into());
    }
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!(
            "`{s}` has lowercase letters; HTTP methods are case-sensitive and clients send them \
             in uppercase: write `{}`",
            s.to_ascii_uppercase()
        ));
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '-' | '_')))
    {
        return Err(format!(
            "`{s}` has {ch:?}; write a method such as GET or POST"
        ));
    }
    Ok(s.to_owned())
}

/// Parses a request path or route template: it starts with `/` and has no
/// query or fragment.
fn request_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "`{s}` does not start with `/`; write a path such as /invoices/42"
        ));
    }
    if let Some(ch) = s
        .chars()
        .find(|c| matches!(c, '?' | '#') || c.is_whitespace())
    {
        return Err(format!(
            "`{s}` has {ch:?}; give the path alone, without query or fragment, as the server \
             passes it to the policy"
        ));
    }
    Ok(s.to_owned())
}

/// Parses a gRPC method: `/package.Service/Method`.
fn grpc_method(s: &str) -> Result<String, String> {
    let shape = || format!("`{s}` is not a gRPC method; write /package.Service/Method");
    let (service, method) = s
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(shape)?;
    let name = |n: &str, dots: bool| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dots && c == '.'))
    };
    if name(service, true) && name(method, false) {
        Ok(s.to_owned())
    } else {
        Err(shape())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_must_be_uppercase_tokens() {
        assert!(http_method("GET").is_ok());
        assert!(http_method("M-SEARCH").is_ok());
        let err = http_method("get").unwrap_err();
        assert!(err.contains("`GET`"), "{err}");
        assert!(http_method("").is_err());
        assert!(http_method("G ET").is_err());
    }

    #[test]
    fn paths_start_with_a_slash_and_have_no_query() {
        assert!(request_path("/invoices/42").is_ok());
        assert!(request_path("/invoices/{id}").is_ok());
        assert!(request_path("invoices").is_err());
        assert!(request_path("/invoices?x=1").is_err());
    }

    #[test]
    fn grpc_methods_have_a_service_and_a_method() {
        assert!(grpc_method("/billing.Billing/GetInvoice").is_ok());
        assert!(grpc_method("/billing.Billing/*").is_err());
        assert!(grpc_method("billing.Billing/Get").is_err());
        assert!(grpc_method("/billing.Billing").is_err());
        assert!(grpc_method("/billing.Billing/Get/x").is_err());
    }
}
