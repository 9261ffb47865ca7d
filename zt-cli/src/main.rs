//! `zt`: the command-line tool of the zt zero-trust SDK.
//!
//! It runs a development SPIFFE trust domain on a laptop, with no SPIRE:
//!
//! ```text
//! zt ca init --trust-domain example.org --dir ca      # a CA on disk
//! zt svid issue --ca ca --id spiffe://example.org/web --out certs/web
//! zt svid verify --cert certs/web.pem --bundle example.org=certs/bundle.pem
//! zt jwt issue --ca ca --id spiffe://example.org/web --aud orders
//! zt agent --ca ca --socket /tmp/zt.sock --id spiffe://example.org/web
//! zt policy check --policy policy.toml --caller spiffe://example.org/web --path /health
//! zt policy lint policy.toml
//! zt policy check --declared export.toml --policy policy.toml
//! zt audit suggest audit.jsonl --out policy.toml
//! zt audit replay --policy policy.toml audit.jsonl
//! zt audit drift --baseline last-week.jsonl today.jsonl
//! zt audit graph audit.jsonl --format svg --out calls.svg
//! ```
//!
//! Exit codes: 0 success; 1 a check said no (a rejected SVID or token, a
//! denied request, a policy with lint warnings) or an operation failed; 2
//! bad arguments or unreadable input files. Errors are written to stderr as
//! `error: <message>`.
#![forbid(unsafe_code)]

mod agent;
mod args;
mod audit;
mod ca;
mod duration;
mod error;
mod files;
mod inspect;
mod jwt;
mod output;
mod policy;
mod svid;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliResult;

/// Every command, listed in `zt --help`.
const COMMANDS: &str = "\
Commands in full:
  zt ca init       Create a development CA in a directory
  zt ca bundle     Print a CA's trust bundle (PEM or SPIFFE JWKS)
  zt svid issue    Issue an X.509-SVID: PREFIX.pem, PREFIX.key, bundle.pem
  zt svid inspect  Show a certificate's SPIFFE ID, serial, issuer, validity, key
  zt svid verify   Verify an X.509-SVID chain against trust bundles
  zt jwt issue     Issue a JWT-SVID and print the token
  zt jwt verify    Validate a JWT-SVID against trust bundles
  zt agent         Serve the SPIFFE Workload API on a Unix socket (dev agent)
  zt policy check  Decide one request against a policy file
  zt policy lint   Check a policy file for errors and rules that never decide
  zt audit suggest Suggest the narrowest policy from audit logs
  zt audit replay  Replay audit logs under a candidate policy: what would change
  zt audit drift   Callers reaching what they never reached in a baseline window
  zt audit graph   Draw the observed call graph (SVG, DOT, Mermaid)

Exit codes: 0 success; 1 rejected or failed; 2 bad arguments or unreadable files.
Run `zt <command> <subcommand> --help` for the flags of each.";

/// Development CA, SVID and JWT-SVID tools for zt, the SPIFFE zero-trust SDK.
#[derive(Debug, Parser)]
#[command(name = "zt", version, after_help = COMMANDS)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Development CA: create one on disk, print its trust bundle.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// X.509-SVIDs: issue, inspect, verify.
    #[command(subcommand)]
    Svid(svid::SvidCommand),
    /// JWT-SVIDs: issue, verify.
    #[command(subcommand)]
    Jwt(jwt::JwtCommand),
    /// Serve the SPIFFE Workload API on a Unix socket (dev agent).
    ///
    /// Hands out one identity issued from the CA, renewing it at half its
    /// TTL, until Ctrl-C or SIGTERM. Prints the
    /// `SPIFFE_ENDPOINT_SOCKET=unix://…` line clients need.
    Agent(agent::AgentArgs),
    /// Authorization policy files: decide a request, lint a file.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Policy from evidence: suggest, replay, drift, graph.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

fn main() -> ExitCode {
    // Bad arguments: clap prints `error: …` and usage, and exits 2.
    let cli = Cli::parse();
    init_tracing();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_answered() {
                output::warn_line(&format!("error: {e}"));
            }
            e.exit_code()
        }
    }
}

fn run(cli: &Cli) -> CliResult {
    match &cli.command {
        Command::Ca(c) => ca::run(c),
        Command::Svid(c) => svid::run(c),
        Command::Jwt(c) => jwt::run(c),
        Command::Agent(a) => agent::run(a),
        Command::Policy(c) => policy::run(c),
        Command::Audit(c) => audit::run(c),
    }
}

/// Logs to stderr; `RUST_LOG` sets the filter (default `warn`).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // A subscriber set elsewhere is fine; keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
