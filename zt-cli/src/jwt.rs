//! `zt jwt`: issue and verify JWT-SVIDs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use zt_core::SpiffeId;
use zt_core::jwt::validate_jwt_svid;
use zt_core::time::Timestamp;

use crate::args::{self, BundleArg};
use crate::duration::parse_duration;
use crate::error::{CliError, CliResult};
use crate::files;
use crate::output::emit;

/// `zt jwt` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum JwtCommand {
    /// Issue a JWT-SVID and print the token.
    ///
    /// The token is signed (ES256) with the CA's JWT key.
    Issue(IssueArgs),
    /// Validate a JWT-SVID against trust bundles.
    ///
    /// Checks the signature, expiry and audience by the SPIFFE rules. Exit 0
    /// prints the subject and expiry; exit 1 prints the rule that failed;
    /// exit 2 means bad arguments or unreadable files.
    Verify(VerifyArgs),
}

/// Arguments of `zt jwt issue`.
#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// CA directory written by `zt ca init`.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// SPIFFE ID to issue for (the `sub` claim), in the CA's trust domain.
    #[arg(long, value_name = "ID", value_parser = args::spiffe_id)]
    id: SpiffeId,
    /// Audience (`aud` claim): who the token is for. Repeat for several.
    #[arg(long, value_name = "AUD", required = true)]
    aud: Vec<String>,
    /// Lifetime of the token: a number and a unit (s, m, h, d).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    ttl: Duration,
}

/// Arguments of `zt jwt verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Trust bundle of a trust domain, as TD=FILE. The file must hold JWT
    /// authorities: a SPIFFE bundle (`zt ca bundle --format jwks`). Repeat
    /// for federated trust domains.
    #[arg(long, value_name = "TD=FILE", required = true, value_parser = args::bundle)]
    bundle: Vec<BundleArg>,
    /// The audience the token must be for (your service's name).
    #[arg(long, value_name = "AUD")]
    aud: String,
    /// Validate as of this time (RFC 3339, e.g. 2030-01-01T00:00:00Z)
    /// instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = args::rfc3339)]
    at: Option<SystemTime>,
    /// The token; `-` reads it from standard input.
    #[arg(value_name = "TOKEN")]
    token: String,
}

/// Runs a `zt jwt` subcommand.
pub(crate) fn run(command: &JwtCommand) -> CliResult {
    match command {
        JwtCommand::Issue(a) => issue(a),
        JwtCommand::Verify(a) => verify(a),
    }
}

fn issue(a: &IssueArgs) -> CliResult {
    let ca = crate::ca::load(&a.ca)?;
    let token = ca.issue_jwt_svid(&a.id, &a.aud, a.ttl)?;
    emit(token.token())
}

fn verify(a: &VerifyArgs) -> CliResult {
    let token = if a.token == "-" {
        let bytes = files::read(Path::new("-"))?;
        String::from_utf8(bytes)
            .map_err(|_| CliError::usage("the token on standard input is not UTF-8"))?
    } else {
        a.token.clone()
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(CliError::usage("the token is empty"));
    }
    let bundles = files::load_bundles(&a.bundle)?;
    let now = a.at.unwrap_or_else(SystemTime::now);
    let claims = validate_jwt_svid(token, &bundles, &a.aud, now, Duration::ZERO).map_err(|e| {
        let hint = if bundles.iter().all(|b| b.jwt_authorities().next().is_none()) {
            "; the bundles hold no JWT authorities (PEM holds X.509 ones only): \
             pass a SPIFFE bundle from `zt ca bundle --format jwks`"
        } else {
            ""
        };
        CliError::failure(format!("JWT-SVID rejected: {e}{hint}"))
    })?;
    emit(&format!(
        "{}\nexpires: {}",
        claims.subject(),
        Timestamp(claims.expiry())
    ))
}
