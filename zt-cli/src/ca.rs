//! `zt ca`: create a development CA on disk and print its trust bundle.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use zt_core::TrustDomain;
use zt_core::time::system_clock;
use zt_dev::FakeCa;

use crate::args;
use crate::error::{CliError, CliResult};
use crate::output::emit;

/// Files whose presence means a directory already holds a CA.
const CA_FILES: [&str; 4] = ["ca.json", "root.pem", "root.key", "jwt.key"];

/// `zt ca` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a development CA in a directory.
    ///
    /// Writes a root (and, with --intermediate, an intermediate) certificate
    /// and key, and a JWT signing key. Private keys are written with mode
    /// 0600.
    Init(InitArgs),
    /// Print the CA's trust bundle, for peers that verify its SVIDs.
    Bundle(BundleArgs),
}

/// Arguments of `zt ca init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Trust domain the CA issues for, e.g. `example.org` (lowercase).
    #[arg(long, value_name = "TD", value_parser = args::trust_domain)]
    trust_domain: TrustDomain,
    /// Directory to write the CA to; created (mode 0700) if missing.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Issue SVIDs from an intermediate CA signed by the root, as SPIRE does
    /// with an upstream authority.
    #[arg(long)]
    intermediate: bool,
    /// Replace a CA already in DIR. SVIDs and tokens it issued stop
    /// verifying against the new bundle.
    #[arg(long)]
    force: bool,
}

/// Output formats of `zt ca bundle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BundleFormat {
    /// The X.509 authorities as PEM certificates (for openssl, curl, rustls).
    Pem,
    /// The SPIFFE bundle format: a JWKS holding X.509 and JWT authorities.
    Jwks,
}

/// Arguments of `zt ca bundle`.
#[derive(Debug, Args)]
pub(crate) struct BundleArgs {
    /// CA directory written by `zt ca init`.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Output format. `jwks` is needed to verify JWT-SVIDs.
    #[arg(long, value_enum, default_value_t = BundleFormat::Pem)]
    format: BundleFormat,
}

/// Runs a `zt ca` subcommand.
pub(crate) fn run(command: &CaCommand) -> CliResult {
    match command {
        CaCommand::Init(a) => init(a),
        CaCommand::Bundle(a) => bundle(a),
    }
}

/// Loads the CA saved in `dir`, on the system clock.
pub(crate) fn load(dir: &Path) -> CliResult<FakeCa> {
    if !dir.join("ca.json").is_file() {
        return Err(CliError::usage(format!(
            "`{}` holds no CA; create one with `zt ca init --trust-domain TD --dir {}`",
            dir.display(),
            dir.display()
        )));
    }
    Ok(FakeCa::load(dir, system_clock())?)
}

fn init(a: &InitArgs) -> CliResult {
    if !a.force
        && let Some(existing) = CA_FILES.iter().find(|f| a.dir.join(f).exists())
    {
        return Err(CliError::failure(format!(
            "`{}` already holds a CA (found {existing}); pass --force to replace it, \
             which stops everything it issued from verifying",
            a.dir.display()
        )));
    }
    create_private_dir(&a.dir)?;
    let ca = FakeCa::builder(a.trust_domain.clone())
        .intermediate(a.intermediate)
        .build()?;
    ca.save(&a.dir)?;

    let dir = a.dir.display();
    let td = &a.trust_domain;
    let mut text = format!("created a development CA for trust domain `{td}` in {dir}\n");
    let _ = writeln!(
        text,
        "  root certificate:  {}",
        a.dir.join("root.pem").display()
    );
    let mut keys = "root.key, jwt.key";
    if a.intermediate {
        let path = a.dir.join("intermediate.pem");
        let _ = writeln!(text, "  intermediate:      {}", path.display());
        keys = "root.key, intermediate.key, jwt.key";
    }
    let _ = writeln!(text, "  private keys:      {keys} (mode 0600)");
    let _ = write!(
        text,
        "next: zt svid issue --ca {dir} --id spiffe://{td}/web --out web"
    );
    emit(&text)
}

/// Creates `dir` (and missing parents) readable by the owner only.
fn create_private_dir(dir: &Path) -> CliResult {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| CliError::io(dir, &e))
}

fn bundle(a: &BundleArgs) -> CliResult {
    let bundle = load(&a.ca)?.bundle();
    let text = match a.format {
        BundleFormat::Pem => bundle.to_pem(),
        BundleFormat::Jwks => bundle
            .to_spiffe_json()
            .map_err(|e| CliError::failure(e.to_string()))?,
    };
    emit(&text)
}
