//! Parsers for argument values shared by several commands.

use std::path::PathBuf;
use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zt_core::id::{parse_canonical, parse_trust_domain};
use zt_core::matcher::IdMatcher;
use zt_core::{SpiffeId, TrustDomain};

/// Parses a workload SPIFFE ID in canonical form (it must have a path).
pub(crate) fn spiffe_id(s: &str) -> Result<SpiffeId, String> {
    let id = parse_canonical(s).map_err(|e| e.to_string())?;
    if id.path().is_empty() {
        return Err(format!(
            "`{s}` names a trust domain, not a workload; add a path, e.g. `{s}/web`"
        ));
    }
    Ok(id)
}

/// Parses a trust domain name in canonical (lowercase) form.
pub(crate) fn trust_domain(s: &str) -> Result<TrustDomain, String> {
    parse_trust_domain(s).map_err(|e| e.to_string())
}

/// Parses an ID matcher pattern (`spiffe://td/path`, `spiffe://td/ns/*/sa/web`,
/// `spiffe://td/**`).
pub(crate) fn matcher(s: &str) -> Result<IdMatcher, String> {
    IdMatcher::parse(s).map_err(|e| e.to_string())
}

/// Parses an RFC 3339 timestamp such as `2030-01-01T00:00:00Z`.
pub(crate) fn rfc3339(s: &str) -> Result<SystemTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time such as 2030-01-01T00:00:00Z: {e}"))
}

/// A `--bundle TD=PATH` argument: the trust bundle of one trust domain.
#[derive(Debug, Clone)]
pub(crate) struct BundleArg {
    /// The trust domain the file holds authorities for.
    pub(crate) trust_domain: TrustDomain,
    /// The bundle file (PEM, SPIFFE bundle JSON or DER).
    pub(crate) path: PathBuf,
}

/// Parses `TD=PATH`.
pub(crate) fn bundle(s: &str) -> Result<BundleArg, String> {
    let (td, path) = s.split_once('=').ok_or_else(|| {
        format!("`{s}` is not TRUST_DOMAIN=FILE; write e.g. example.org=bundle.pem")
    })?;
    if path.is_empty() {
        return Err(format!("`{s}` names no bundle file after `=`"));
    }
    Ok(BundleArg {
        trust_domain: trust_domain(td)?,
        path: PathBuf::from(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_argument_splits_at_the_first_equals_sign() {
        let arg = bundle("example.org=dir/a=b.pem").unwrap();
        assert_eq!(arg.trust_domain.as_str(), "example.org");
        assert_eq!(arg.path, PathBuf::from("dir/a=b.pem"));
    }

    #[test]
    fn bundle_argument_without_trust_domain_or_file_is_rejected() {
        assert!(bundle("bundle.pem").is_err());
        assert!(bundle("=bundle.pem").is_err());
        assert!(bundle("example.org=").is_err());
        assert!(bundle("Example.org=bundle.pem").is_err());
    }

    #[test]
    fn workload_ids_need_a_path() {
        assert!(spiffe_id("spiffe://example.org/web").is_ok());
        assert!(spiffe_id("spiffe://example.org").is_err());
    }

    #[test]
    fn rfc3339_times_parse_with_offsets() {
        let a = rfc3339("2030-01-01T00:00:00Z").unwrap();
        let b = rfc3339("2030-01-01T01:00:00+01:00").unwrap();
        assert_eq!(a, b);
        assert!(rfc3339("2030-01-01").is_err());
    }
}
