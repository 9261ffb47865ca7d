//! `zt svid`: issue, inspect and verify X.509-SVIDs.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use rustls_pki_types::CertificateDer;
use zt_core::BundleSet;
use zt_core::SpiffeId;
use zt_core::crl::{Crl, CrlSet};
use zt_core::matcher::IdMatcher;
use zt_core::svid::parse_pem_certificates;
use zt_core::time::Timestamp;
use zt_core::x509::{Usage, VerifiedSvid, verify_x509_svid};

use crate::args::{self, BundleArg};
use crate::duration::parse_duration;
use crate::error::{CliError, CliResult};
use crate::files;
use crate::inspect::{self, InspectArgs};
use crate::output::{emit, warn_line};

/// `zt svid` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SvidCommand {
    /// Issue an X.509-SVID: PREFIX.pem, PREFIX.key, bundle.pem.
    ///
    /// Writes PREFIX.pem (the chain, leaf first), PREFIX.key (mode 0600)
    /// and bundle.pem (the CA's trust bundle) in PREFIX's directory.
    Issue(IssueArgs),
    /// Show a certificate's SPIFFE ID, serial, issuer, validity and key.
    ///
    /// Also lists each certificate of the chain. Trust is not checked; use
    /// `zt svid verify` for that. Exit 0 if the leaf keeps the SVID rules;
    /// exit 1 if it breaks one (after showing what it can, and which rule);
    /// exit 2 if the file is unreadable.
    Inspect(InspectArgs),
    /// Verify an X.509-SVID chain against trust bundles.
    ///
    /// Checks every SPIFFE X.509-SVID rule and the chain to the bundle of
    /// the leaf's trust domain, and, with --crl, that no certificate of the
    /// chain is revoked. Exit 0 prints the SPIFFE ID; exit 1 prints the rule
    /// that failed (or that the ID does not match --expect, or the CRL that
    /// revokes it); exit 2 means bad arguments, unreadable files, or a CRL
    /// not signed by a CA of the bundles.
    Verify(VerifyArgs),
}

/// Arguments of `zt svid issue`.
#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// CA directory written by `zt ca init`.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// SPIFFE ID to issue for, in the CA's trust domain, e.g.
    /// `spiffe://example.org/web`.
    #[arg(long, value_name = "ID", value_parser = args::spiffe_id)]
    id: SpiffeId,
    /// Lifetime of the SVID: a number and a unit (s, m, h, d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
    /// Output path prefix: writes PREFIX.pem, PREFIX.key and bundle.pem in
    /// PREFIX's directory (created if missing).
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
}

/// Which extended key usage the leaf must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum UsageArg {
    /// As a TLS client certificate (clientAuth).
    Client,
    /// As a TLS server certificate (serverAuth).
    Server,
}

/// Arguments of `zt svid verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Certificate chain to verify, leaf first (PEM, or one DER certificate);
    /// `-` reads standard input.
    #[arg(long, value_name = "CHAIN")]
    cert: PathBuf,
    /// Trust bundle of a trust domain, as TD=FILE (PEM, SPIFFE bundle JSON or
    /// DER). Repeat for federated trust domains; the chain is checked against
    /// the bundle of the leaf's own trust domain.
    #[arg(long, value_name = "TD=FILE", required = true, value_parser = args::bundle)]
    bundle: Vec<BundleArg>,
    /// Also require the SPIFFE ID to match this pattern: an exact ID,
    /// `spiffe://td/**` (any ID in td), `spiffe://td/ns/prod/**` (below a
    /// path) or `spiffe://td/ns/*/sa/web` (`*` is one segment).
    #[arg(long, value_name = "MATCHER", value_parser = args::matcher)]
    expect: Option<IdMatcher>,
    /// Verify as of this time (RFC 3339, e.g. 2030-01-01T00:00:00Z) instead
    /// of now.
    #[arg(long, value_name = "RFC3339", value_parser = args::rfc3339)]
    at: Option<SystemTime>,
    /// The TLS role the SVID is presented in.
    #[arg(long, value_enum, default_value_t = UsageArg::Client)]
    usage: UsageArg,
    /// A certificate revocation list (PEM or DER; a PEM file may carry the
    /// intermediate CA that signed it). It must be signed by a CA of the
    /// bundles. Repeat for several. A CRL past its nextUpdate still revokes
    /// what it lists, with a warning.
    #[arg(long, value_name = "FILE")]
    crl: Vec<PathBuf>,
}

/// Runs a `zt svid` subcommand.
pub(crate) fn run(command: &SvidCommand) -> CliResult {
    match command {
        SvidCommand::Issue(a) => issue(a),
        SvidCommand::Inspect(a) => inspect::run(a),
        SvidCommand::Verify(a) => verify(a),
    }
}

/// Reads a certificate chain: every `CERTIFICATE` block of a PEM file, or
/// a file holding one DER certificate.
pub(crate) fn read_chain(path: &Path) -> CliResult<Vec<CertificateDer<'static>>> {
    let bytes = files::read(path)?;
    if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        parse_pem_certificates(&bytes)
            .map_err(|e| CliError::usage(format!("`{}` holds no certificate: {e}", path.display())))
    } else if bytes.is_empty() {
        Err(CliError::usage(format!("`{}` is empty", path.display())))
    } else {
        Ok(vec![CertificateDer::from(bytes)])
    }
}

/// `PREFIX` + `suffix`, keeping any dots already in PREFIX.
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(prefix.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

fn issue(a: &IssueArgs) -> CliResult {
    if a.out.file_name().is_none() || a.out.as_os_str().to_string_lossy().ends_with('/') {
        return Err(CliError::usage(format!(
            "--out `{}` must end in a file name prefix, e.g. `certs/web`",
            a.out.display()
        )));
    }
    let ca = crate::ca::load(&a.ca)?;
    let svid = ca.issue_x509_svid(&a.id, a.ttl)?;
    let dir = match a.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, &e))?;
    let chain_path = with_suffix(&a.out, ".pem");
    let key_path = with_suffix(&a.out, ".key");
    let bundle_path = dir.join("bundle.pem");
    files::write(&chain_path, svid.chain_pem().as_bytes(), false)?;
    files::write(&key_path, svid.key_pem().as_bytes(), true)?;
    files::write(&bundle_path, ca.bundle().to_pem().as_bytes(), false)?;

    let mut text = String::new();
    let _ = writeln!(text, "issued {}", svid.id());
    let _ = writeln!(text, "  serial:     {}", svid.serial_hex());
    let _ = writeln!(text, "  not after:  {}", Timestamp(svid.not_after()));
    let _ = writeln!(text, "  chain:      {}", chain_path.display());
    let _ = writeln!(text, "  key:        {} (mode 0600)", key_path.display());
    let _ = write!(text, "  bundle:     {}", bundle_path.display());
    emit(&text)
}

fn verify(a: &VerifyArgs) -> CliResult {
    let chain = read_chain(&a.cert)?;
    let bundles = files::load_bundles(&a.bundle)?;
    let now = a.at.unwrap_or_else(SystemTime::now);
    let usage = match a.usage {
        UsageArg::Client => Usage::ClientAuth,
        UsageArg::Server => Usage::ServerAuth,
    };
    let verified = verify_x509_svid(&chain, &bundles, now, usage)
        .map_err(|e| CliError::failure(format!("SVID rejected: {e}")))?;
    if let Some(expect) = &a.expect
        && !expect.matches(verified.id())
    {
        return Err(CliError::failure(format!(
            "SVID rejected: its SPIFFE ID `{}` does not match the expected `{expect}`",
            verified.id()
        )));
    }
    check_crls(&a.crl, &verified, &bundles, now)?;
    emit(&verified.id().to_string())
}

/// Refuses `verified` if a CRL of `files` lists a certificate of its path.
fn check_crls(
    files: &[PathBuf],
    verified: &VerifiedSvid,
    bundles: &BundleSet,
    now: SystemTime,
) -> CliResult {
    let mut crls = Vec::new();
    for path in files {
        let bytes = files::read(path)?;
        let name = path.display().to_string();
        let verified_crls = Crl::verify_all(&bytes, bundles, now, &name)
            .map_err(|e| CliError::usage(e.to_string()))?;
        for crl in verified_crls {
            if crl.is_stale(now) {
                warn_line(&format!("warning: {}", crl.stale_error()));
            }
            crls.push(Arc::new(crl));
        }
    }
    let crls = CrlSet::new(crls);
    let td = verified.trust_domain();
    for (index, cert) in verified.path().iter().enumerate() {
        if let Some(crl) = crls.find(td, cert.serial(), Some(cert.issuer())) {
            let what = if index == 0 {
                "its leaf".to_owned()
            } else {
                format!("intermediate #{index} of its chain")
            };
            return Err(CliError::failure(format!(
                "SVID rejected: {what} (serial {}) is revoked by CRL {} (issuer `{}`)",
                cert.serial()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                crl.source(),
                crl.issuer_name()
            )));
        }
    }
    Ok(())
}
