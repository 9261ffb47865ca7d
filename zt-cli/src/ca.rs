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
    /// Revoke an X.509-SVID: write a CRL signed by the CA.
    ///
    /// Adds the serial to DIR/revoked.txt and writes DIR/crl.pem, a CRL
    /// listing every serial revoked so far, signed by the CA that issues
    /// SVIDs (with --intermediate, the intermediate, whose certificate
    /// follows the CRL in the file). `zt agent --ca DIR` serves it to
    /// Workload API clients; `zt svid verify --crl DIR/crl.pem` checks
    /// against it.
    Revoke(RevokeArgs),
}

/// Arguments of `zt ca revoke`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["serial", "svid"])))]
pub(crate) struct RevokeArgs {
    /// CA directory written by `zt ca init`.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Serial of the certificate to revoke, in hex as `zt svid issue` and
    /// `zt svid inspect` print it (`3a9f…`, `0x3a9f…` or `3a:9f:…`).
    #[arg(long, value_name = "HEX")]
    serial: Option<String>,
    /// The certificate to revoke (PEM chain, leaf first, or DER).
    #[arg(long, value_name = "FILE")]
    svid: Option<PathBuf>,
    /// How long the CRL is valid (its nextUpdate).
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = crate::duration::parse_duration)]
    validity: std::time::Duration,
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
        CaCommand::Revoke(a) => revoke(a),
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

/// Reads a serial written in hex: plain (`3a9f`), `0x`-prefixed, or
/// colon-separated pairs.
fn parse_hex_serial(text: &str) -> CliResult<Vec<u8>> {
    let text = text.trim();
    let hex = if text.contains(':') || text.starts_with("0x") || text.starts_with("0X") {
        text.to_owned()
    } else {
        format!("0x{text}")
    };
    zt_core::serial::parse_serial(&hex)
        .map_err(|e| CliError::usage(format!("--serial `{text}` {e}")))
}

fn revoke(a: &RevokeArgs) -> CliResult {
    let ca = load(&a.ca)?;
    let serial = match (&a.serial, &a.svid) {
        (Some(text), _) => parse_hex_serial(text)?,
        (None, Some(path)) => {
            let chain = crate::svid::read_chain(path)?;
            let leaf = chain.first().ok_or_else(|| {
                CliError::usage(format!("`{}` holds no certificate", path.display()))
            })?;
            zt_core::x509::inspect_leaf(leaf)
                .map_err(|e| CliError::usage(format!("`{}`: {e}", path.display())))?
                .serial()
                .to_vec()
        }
        (None, None) => return Err(CliError::usage("pass --serial HEX or --svid FILE")),
    };
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    let added = ca.revoke_serial(&serial);
    let path = ca.save_crl(&a.ca, a.validity)?;
    let count = ca.revoked_serials().len();
    let mut text = if added {
        format!("revoked serial {hex}\n")
    } else {
        format!("serial {hex} was already revoked\n")
    };
    let _ = write!(
        text,
        "  CRL:        {} ({count} serial{} listed, valid {}s)",
        path.display(),
        if count == 1 { "" } else { "s" },
        a.validity.as_secs()
    );
    emit(&text)
}
