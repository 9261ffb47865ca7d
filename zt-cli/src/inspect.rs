//! `zt svid inspect`: show what a certificate file holds, without trusting
//! it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::time::ASN1Time;
use zt_core::BundleSet;
use zt_core::time::Timestamp;
use zt_core::x509::{SvidError, Usage, inspect_leaf, verify_x509_svid};

use crate::error::{CliError, CliResult};
use crate::output::emit;
use crate::svid::read_chain;

/// Arguments of `zt svid inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Certificate file: a PEM chain (leaf first) or one DER certificate.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Runs `zt svid inspect`.
pub(crate) fn run(a: &InspectArgs) -> CliResult {
    let chain = read_chain(&a.file)?;
    let Some(leaf_der) = chain.first() else {
        return Err(CliError::usage(format!(
            "`{}` holds no certificate",
            a.file.display()
        )));
    };
    let leaf = parse(leaf_der).map_err(|reason| {
        CliError::usage(format!(
            "`{}`: the first certificate is not valid X.509: {reason}",
            a.file.display()
        ))
    })?;

    let mut text = String::new();
    let info = inspect_leaf(leaf_der);
    match &info {
        Ok(info) => {
            let _ = writeln!(text, "SPIFFE ID:   {}", info.id());
        }
        Err(_) => {
            let _ = writeln!(text, "SPIFFE ID:   (none)");
            let uris = uri_sans(&leaf);
            let shown = if uris.is_empty() {
                "(none)".to_owned()
            } else {
                uris.join(", ")
            };
            let _ = writeln!(text, "URI SANs:    {shown}");
        }
    }
    let id_rule = info.err();
    let _ = writeln!(text, "serial:      {}", serial_hex(leaf.raw_serial()));
    let _ = writeln!(
        text,
        "subject:     {}",
        name_or_empty(&leaf.subject().to_string())
    );
    let _ = writeln!(
        text,
        "issuer:      {}",
        name_or_empty(&leaf.issuer().to_string())
    );
    let not_before = system_time(leaf.validity().not_before);
    let not_after = system_time(leaf.validity().not_after);
    let _ = writeln!(text, "not before:  {}", Timestamp(not_before));
    let _ = writeln!(text, "not after:   {}", Timestamp(not_after));
    let _ = writeln!(text, "status:      {}", status(not_before, not_after));
    let _ = writeln!(text, "key type:    {}", key_type(&leaf));
    let _ = writeln!(
        text,
        "signature:   {}",
        oid_name(&leaf.signature_algorithm.algorithm)
    );

    // With an empty bundle set, verification stops at the trust-domain
    // lookup once every structural rule has passed. Checking as of the
    // leaf's start of validity keeps expiry out of it (shown above).
    let rule = id_rule.or_else(|| {
        match verify_x509_svid(&chain, &BundleSet::new(), not_before, Usage::ClientAuth) {
            Ok(_) | Err(SvidError::UnknownTrustDomain { .. }) => None,
            Err(e) => Some(e),
        }
    });
    match &rule {
        None => {
            let _ = writeln!(
                text,
                "SVID rules:  ok (trust not checked; use `zt svid verify` with a bundle)"
            );
        }
        Some(e) => {
            let _ = writeln!(text, "SVID rules:  BROKEN: {e}");
        }
    }

    let count = chain.len();
    let plural = if count == 1 { "" } else { "s" };
    let _ = write!(text, "chain:       {count} certificate{plural}");
    for (index, der) in chain.iter().enumerate() {
        let _ = write!(text, "\n  {}", chain_line(index, der));
    }
    emit(&text)?;
    match rule {
        None => Ok(()),
        Some(e) => Err(CliError::failure(format!(
            "`{}` is not a valid X.509-SVID: {e}",
            a.file.display()
        ))),
    }
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after the certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// One line per certificate of the chain.
fn chain_line(index: usize, der: &CertificateDer<'_>) -> String {
    let cert = match parse(der) {
        Ok(cert) => cert,
        Err(reason) => return format!("#{index} not a valid X.509 certificate: {reason}"),
    };
    let role = match (index, cert.is_ca()) {
        (0, false) => "leaf",
        (0, true) => "leaf (CA!)",
        (_, true) => "CA",
        (_, false) => "not a CA",
    };
    format!(
        "#{index} {role}: subject=\"{}\" issuer=\"{}\" serial={} not after={}",
        cert.subject(),
        cert.issuer(),
        serial_hex(cert.raw_serial()),
        Timestamp(system_time(cert.validity().not_after)),
    )
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(uri) => Some((*uri).to_owned()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => vec![format!("(unreadable SAN extension: {e})")],
    }
}

fn name_or_empty(name: &str) -> &str {
    if name.is_empty() { "(empty)" } else { name }
}

/// Lowercase hex of the serial without leading zero bytes, as `zt svid
/// issue` and zt-core print it.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw.get(start..)
        .unwrap_or_default()
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn system_time(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

fn status(not_before: SystemTime, not_after: SystemTime) -> String {
    let now = SystemTime::now();
    if now < not_before {
        "not yet valid".to_owned()
    } else if now > not_after {
        "expired".to_owned()
    } else {
        let left = not_after.duration_since(now).unwrap_or_default().as_secs();
        format!("valid, expires in {}", human(left))
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `9s`.
fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn oid_name(oid: &Oid<'_>) -> String {
    oid2sn(oid, oid_registry()).map_or_else(|_| oid.to_id_string(), str::to_owned)
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid_name(&oid).as_str() {
                    "prime256v1" => "P-256".to_owned(),
                    "secp384r1" => "P-384".to_owned(),
                    "secp521r1" => "P-521".to_owned(),
                    other => other.to_owned(),
                })
                .unwrap_or_else(|| "unknown curve".to_owned());
            format!("ECDSA {curve}")
        }
        Ok(PublicKey::RSA(rsa)) => format!("RSA {} bits", rsa.key_size()),
        _ => oid_name(&spki.algorithm.algorithm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_leading_zero_bytes_but_keep_one() {
        assert_eq!(serial_hex(&[0, 0x1a, 0x02]), "1a02");
        assert_eq!(serial_hex(&[0]), "00");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn remaining_time_reads_naturally() {
        assert_eq!(human(9), "9s");
        assert_eq!(human(250), "4m 10s");
        assert_eq!(human(3600 * 2 + 300), "2h 5m");
        assert_eq!(human(86_400 * 3 + 3600 * 4), "3d 4h");
    }
}
