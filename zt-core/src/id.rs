//! SPIFFE IDs in canonical form.
//!
//! [`SpiffeId`] and [`TrustDomain`] are the `spiffe` crate's types. Their
//! parser is lenient in one way that matters for authorization: it lowercases
//! an uppercase trust domain. An identity presented by a peer must already be
//! in canonical form, so that the string a policy author wrote is the string
//! the certificate carries. [`parse_canonical`] enforces that, the way
//! go-spiffe does: `spiffe://bar/%61dmin` is never `spiffe://bar/admin`.

use crate::{SpiffeId, TrustDomain};

/// Why a string is not a canonical SPIFFE ID.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string is empty.
    #[error("the SPIFFE ID is empty")]
    Empty,
    /// The string does not start with the lowercase `spiffe://` scheme.
    #[error("`{id}` is not a SPIFFE ID: it must start with lowercase `spiffe://`")]
    WrongScheme {
        /// The offending input.
        id: String,
    },
    /// The trust domain is missing.
    #[error("`{id}` has no trust domain after `spiffe://`")]
    MissingTrustDomain {
        /// The offending input.
        id: String,
    },
    /// The trust domain contains uppercase letters.
    #[error(
        "`{id}` has an uppercase trust domain; SPIFFE IDs must be written in lowercase (`{lower}`)"
    )]
    UppercaseTrustDomain {
        /// The offending input.
        id: String,
        /// The trust domain in lowercase.
        lower: String,
    },
    /// The ID contains a percent-encoded octet.
    #[error("`{id}` contains percent-encoding at byte {position}; SPIFFE IDs allow no escapes")]
    PercentEncoded {
        /// The offending input.
        id: String,
        /// Byte offset of the `%`.
        position: usize,
    },
    /// A path segment is empty (`//` or a trailing `/`).
    #[error("`{id}` has an empty path segment at byte {position}")]
    EmptySegment {
        /// The offending input.
        id: String,
        /// Byte offset of the empty segment.
        position: usize,
    },
    /// A path segment is `.` or `..`.
    #[error("`{id}` has a `.` or `..` path segment at byte {position}")]
    DotSegment {
        /// The offending input.
        id: String,
        /// Byte offset of the segment.
        position: usize,
    },
    /// The `spiffe` crate's parser rejected the ID.
    #[error("`{id}` is not a valid SPIFFE ID: {source}")]
    Invalid {
        /// The offending input.
        id: String,
        /// The parser's reason.
        #[source]
        source: spiffe::SpiffeIdError,
    },
}

/// Parses a SPIFFE ID that must already be in canonical form.
///
/// Accepts exactly what `SpiffeId::to_string` produces: lowercase scheme and
/// trust domain, no percent-encoding, no empty, `.` or `..` segments, no
/// trailing slash, no query or fragment.
///
/// # Errors
///
/// Returns the [`IdError`] for the first rule the string breaks.
///
/// ```
/// use zt_core::id::{parse_canonical, IdError};
///
/// let id = parse_canonical("spiffe://example.org/ns/prod/sa/billing")?;
/// assert_eq!(id.path(), "/ns/prod/sa/billing");
///
/// assert!(matches!(parse_canonical("spiffe://bar/%61dmin"), Err(IdError::PercentEncoded { .. })));
/// assert!(matches!(parse_canonical("spiffe://Example.org/a"), Err(IdError::UppercaseTrustDomain { .. })));
/// # Ok::<(), IdError>(())
/// ```
pub fn parse_canonical(id: &str) -> Result<SpiffeId, IdError> {
    const SCHEME: &str = "spiffe://";
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    let Some(rest) = id.strip_prefix(SCHEME) else {
        return Err(IdError::WrongScheme { id: id.to_owned() });
    };
    if let Some(position) = id.find('%') {
        return Err(IdError::PercentEncoded {
            id: id.to_owned(),
            position,
        });
    }
    let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if td.is_empty() {
        return Err(IdError::MissingTrustDomain { id: id.to_owned() });
    }
    if td.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(IdError::UppercaseTrustDomain {
            id: id.to_owned(),
            lower: td.to_ascii_lowercase(),
        });
    }
    if !path.is_empty() {
        let mut offset = SCHEME.len() + td.len();
        // `path` starts with '/', so the first split item is the empty string
        // before it; every later item is a segment.
        for segment in path.split('/').skip(1) {
            let position = offset + 1;
            match segment {
                "" => {
                    return Err(IdError::EmptySegment {
                        id: id.to_owned(),
                        position,
                    });
                }
                "." | ".." => {
                    return Err(IdError::DotSegment {
                        id: id.to_owned(),
                        position,
                    });
                }
                _ => {}
            }
            offset = position + segment.len();
        }
    }
    let parsed = SpiffeId::new(id).map_err(|source| IdError::Invalid {
        id: id.to_owned(),
        source,
    })?;
    Ok(parsed)
}

/// Parses a trust domain name that must be in canonical (lowercase) form.
///
/// Accepts a bare name (`example.org`); use [`TrustDomain::new`] directly for
/// the lenient form that also takes `spiffe://example.org`.
///
/// # Errors
///
/// [`IdError::UppercaseTrustDomain`] for uppercase input, [`IdError::Invalid`]
/// for anything else the SPIFFE grammar rejects.
pub fn parse_trust_domain(name: &str) -> Result<TrustDomain, IdError> {
    if name.is_empty() {
        return Err(IdError::Empty);
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(IdError::UppercaseTrustDomain {
            id: name.to_owned(),
            lower: name.to_ascii_lowercase(),
        });
    }
    if name.contains(':') || name.contains('/') {
        return Err(IdError::Invalid {
            id: name.to_owned(),
            source: spiffe::SpiffeIdError::BadTrustDomainChar,
        });
    }
    TrustDomain::new(name).map_err(|source| IdError::Invalid {
        id: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_id_parses() {
        let id = parse_canonical("spiffe://example.org/ns/prod").unwrap();
        assert_eq!(id.to_string(), "spiffe://example.org/ns/prod");
        assert!(parse_canonical("spiffe://example.org").is_ok());
    }

    #[test]
    fn percent_encoded_path_is_not_the_decoded_path() {
        let err = parse_canonical("spiffe://bar/%61dmin").unwrap_err();
        assert_eq!(
            err,
            IdError::PercentEncoded {
                id: "spiffe://bar/%61dmin".into(),
                position: 13
            }
        );
    }

    #[test]
    fn uppercase_scheme_and_trust_domain_are_rejected() {
        assert!(matches!(
            parse_canonical("SPIFFE://example.org/a"),
            Err(IdError::WrongScheme { .. })
        ));
        assert!(matches!(
            parse_canonical("spiffe://EXAMPLE.org/a"),
            Err(IdError::UppercaseTrustDomain { .. })
        ));
    }

    #[test]
    fn dot_and_empty_segments_are_rejected_with_position() {
        assert_eq!(
            parse_canonical("spiffe://td/a/../b").unwrap_err(),
            IdError::DotSegment {
                id: "spiffe://td/a/../b".into(),
                position: 14
            }
        );
        assert!(matches!(
            parse_canonical("spiffe://td/a/./b"),
            Err(IdError::DotSegment { .. })
        ));
        assert_eq!(
            parse_canonical("spiffe://td/a//b").unwrap_err(),
            IdError::EmptySegment {
                id: "spiffe://td/a//b".into(),
                position: 14
            }
        );
        assert!(matches!(
            parse_canonical("spiffe://td/a/"),
            Err(IdError::EmptySegment { .. })
        ));
    }

    #[test]
    fn query_fragment_and_userinfo_are_rejected() {
        for bad in [
            "spiffe://td/a?x=1",
            "spiffe://td/a#frag",
            "spiffe://user@td/a",
            "spiffe://td:443/a",
        ] {
            assert!(
                matches!(parse_canonical(bad), Err(IdError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn trust_domain_must_be_lowercase_bare_name() {
        assert!(parse_trust_domain("example.org").is_ok());
        assert!(matches!(
            parse_trust_domain("Example.org"),
            Err(IdError::UppercaseTrustDomain { .. })
        ));
        assert!(parse_trust_domain("spiffe://example.org").is_err());
    }
}
