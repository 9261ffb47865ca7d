//! What a rule covers: HTTP method + path patterns and gRPC method patterns.
//!
//! Methods and paths are plain strings: `zt-core` knows nothing of HTTP
//! types. Patterns are validated and split into segments once, when the rule
//! is built; matching does not allocate.

use std::borrow::Cow;
use std::fmt;

use super::Request;

/// One operation a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// An HTTP method (or any) on a path pattern. It matches a request whose
    /// method matches and whose raw path or route template matches the
    /// pattern.
    Http {
        /// The method.
        method: MethodMatch,
        /// The path pattern.
        path: PathPattern,
    },
    /// A gRPC method or every method of a service. It matches only requests
    /// that carry a gRPC method.
    Grpc(GrpcPattern),
}

impl Action {
    /// `true` if the request is this operation.
    pub(crate) fn matches(&self, request: &Request<'_>) -> bool {
        match self {
            Self::Http { method, path } => {
                method.matches(request.method)
                    && (path.matches(request.path, false)
                        || request.route.is_some_and(|route| path.matches(route, true)))
            }
            Self::Grpc(pattern) => request.grpc_method.is_some_and(|m| pattern.matches(m)),
        }
    }
}

/// Writes `http METHOD PATH` or `grpc PATTERN`.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { method, path } => write!(f, "http {method} {path}"),
            Self::Grpc(pattern) => write!(f, "grpc {pattern}"),
        }
    }
}

/// The HTTP method of an [`Action::Http`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MethodMatch {
    /// `*`: any method.
    Any,
    /// Exactly this method (case-sensitive, as HTTP methods are).
    Exact(Box<str>),
}

impl MethodMatch {
    /// Parses `*` or an uppercase method token such as `GET`.
    pub(crate) fn parse(method: &str) -> Result<Self, String> {
        if method == "*" {
            return Ok(Self::Any);
        }
        if method.is_empty() {
            return Err("is empty; write a method such as `GET`, or `*` for any".into());
        }
        if method.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(format!(
                "has lowercase letters; HTTP methods are case-sensitive: write `{}`",
                method.to_ascii_uppercase()
            ));
        }
        if let Some(ch) = method
            .chars()
            .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '-' | '_')))
        {
            return Err(format!(
                "has {ch:?}; write a method such as `GET`, or `*` for any"
            ));
        }
        Ok(Self::Exact(method.into()))
    }

    fn matches(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(want) => **want == *method,
        }
    }
}

impl fmt::Display for MethodMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(m) => f.write_str(m),
        }
    }
}

/// An HTTP path pattern.
///
/// | pattern | matches | does not match |
/// |---|---|---|
/// | `/invoices` | `/invoices` | `/invoices/`, `/invoices/1` |
/// | `/invoices/{id}` | `/invoices/42`, route `/invoices/{id}` | `/invoices`, `/invoices/42/lines` |
/// | `/invoices/*` | same as `/invoices/{id}` | |
/// | `/admin/**` | `/admin`, `/admin/`, `/admin/users/7` | `/administrator` |
/// | `/**` | every path | |
///
/// - `{name}` (or `*`) is a whole segment and matches exactly one non-empty
///   segment.
/// - `**` may only be the last segment; it matches the base path itself and
///   everything below it, on a segment boundary (so a deny rule on
///   `/admin/**` also covers `/admin`).
/// - Paths are compared as given, byte for byte: no percent-decoding, no
///   `.`/`..` resolution, no case folding. The server layer is expected to
///   pass the normalised request path (and the router's matched route
///   template, which rules may also match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: Box<str>,
    kind: PathKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathKind {
    /// No wildcard: string equality.
    Exact,
    Segments {
        segments: Box<[Segment]>,
        /// Ends in `/**`.
        tail: bool,
    },
}

/// One segment of a path pattern (after the leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Exactly this text (empty only in the pattern `/`).
    Literal(Box<str>),
    /// `{name}` or `*`: one non-empty segment.
    Param,
}

impl PathPattern {
    /// Parses a pattern (syntax on the type).
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err("does not start with `/`; write a path such as `/invoices/{id}`".into());
        };
        if let Some(ch) = pattern
            .chars()
            .find(|c| matches!(c, '?' | '#') || c.is_whitespace())
        {
            return Err(format!(
                "has {ch:?}; a path pattern has no query, fragment or whitespace"
            ));
        }
        if rest.is_empty() {
            return Ok(Self {
                text: pattern.into(),
                kind: PathKind::Exact,
            });
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        let mut tail = false;
        let mut wild = false;
        for (i, part) in parts.iter().enumerate() {
            match *part {
                "" => {
                    return Err(
                        "has an empty segment (a doubled or trailing `/`); remove it, or end \
                         with `/**` to cover everything below a path"
                            .into(),
                    );
                }
                "**" if i == last => {
                    tail = true;
                    wild = true;
                }
                "**" => {
                    return Err("has `**` before the end; `**` may only be the last segment".into());
                }
                "*" => {
                    segments.push(Segment::Param);
                    wild = true;
                }
                part if part.starts_with('{') && part.ends_with('}') => {
                    let name = &part[1..part.len() - 1];
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!(
                            "has parameter `{part}`; a parameter is `{{name}}` with a name of \
                             letters, digits and `_` (for everything below a path, end with `/**`)"
                        ));
                    }
                    segments.push(Segment::Param);
                    wild = true;
                }
                part if part.contains(['*', '{', '}']) => {
                    return Err(format!(
                        "has segment `{part}`; wildcards are whole segments: `{{name}}` or `*` \
                         for one segment, a final `**` for everything below"
                    ));
                }
                part => segments.push(Segment::Literal(part.into())),
            }
        }
        let kind = if wild {
            PathKind::Segments {
                segments: segments.into(),
                tail,
            }
        } else {
            PathKind::Exact
        };
        Ok(Self {
            text: pattern.into(),
            kind,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `true` if the pattern has no wildcard.
    pub fn is_exact(&self) -> bool {
        matches!(self.kind, PathKind::Exact)
    }

    /// The segments after the leading `/`, and whether the pattern ends in
    /// `/**` (which is not among them). An exact pattern is all literals;
    /// `/` is one empty literal, as the path `/` splits.
    pub(crate) fn segments(&self) -> (Cow<'_, [Segment]>, bool) {
        match &self.kind {
            PathKind::Exact => {
                let rest = self.text.strip_prefix('/').unwrap_or(&self.text);
                let literals = rest.split('/').map(|s| Segment::Literal(s.into()));
                (Cow::Owned(literals.collect()), false)
            }
            PathKind::Segments { segments, tail } => (Cow::Borrowed(segments), *tail),
        }
    }

    /// `true` if `path` (a raw path, or a route template when `route`)
    /// matches. In a route template, a catch-all segment (`{*rest}`) is
    /// matched only by a final `**`.
    fn matches(&self, path: &str, route: bool) -> bool {
        match &self.kind {
            PathKind::Exact => *self.text == *path,
            PathKind::Segments { segments, tail } => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                if segments.is_empty() {
                    // `/**`
                    return true;
                }
                // Split on the byte `/` (ASCII, so never inside a character).
                let mut parts = rest.as_bytes().split(|&b| b == b'/');
                for want in segments.iter() {
                    let Some(got) = parts.next() else {
                        return false;
                    };
                    let ok = match want {
                        Segment::Literal(lit) => lit.as_bytes() == got,
                        Segment::Param => !(got.is_empty() || (route && got.starts_with(b"{*"))),
                    };
                    if !ok {
                        return false;
                    }
                }
                *tail || parts.next().is_none()
            }
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A gRPC method pattern: `/package.Service/Method`, or
/// `/package.Service/*` for every method of the service. It is compared
/// with the request's gRPC method, which has the same `/service/method`
/// form (the HTTP/2 `:path` of a gRPC call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcPattern {
    text: Box<str>,
    /// `/package.Service/` when the pattern ends in `/*`.
    service_prefix: Option<usize>,
}

impl GrpcPattern {
    /// Parses a pattern (syntax on the type).
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        const SHAPE: &str = "write `/package.Service/Method`, or `/package.Service/*` for every \
                             method of a service";
        let Some((service, method)) = pattern
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
        else {
            return Err(format!("is not of the form `/service/method`; {SHAPE}"));
        };
        let name = |s: &str, dots: bool| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dots && c == '.'))
        };
        if !name(service, true) || service.starts_with('.') || service.ends_with('.') {
            return Err(format!(
                "has service name `{service}`; a service is dot-separated letters, digits and \
                 `_`; {SHAPE}"
            ));
        }
        let service_prefix = if method == "*" {
            Some(service.len() + 2)
        } else if name(method, false) {
            None
        } else {
            return Err(format!(
                "has method name `{method}`; a method is letters, digits and `_`, or `*`; {SHAPE}"
            ));
        };
        Ok(Self {
            text: pattern.into(),
            service_prefix,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `true` for `/package.Service/*`.
    pub fn is_service_wide(&self) -> bool {
        self.service_prefix.is_some()
    }

    fn matches(&self, grpc_method: &str) -> bool {
        match self.service_prefix {
            None => *self.text == *grpc_method,
            Some(len) => self.text.get(..len).is_some_and(|prefix| {
                grpc_method
                    .strip_prefix(prefix)
                    .is_some_and(|m| !m.is_empty() && !m.contains('/'))
            }),
        }
    }
}

impl fmt::Display for GrpcPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
