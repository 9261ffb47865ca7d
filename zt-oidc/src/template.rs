//! SPIFFE IDs made from token claims.

use serde_json::{Map, Value};
use zt_core::SpiffeId;

use crate::OidcError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A claim by dotted path; `multi` lets its value span several path
    /// segments separated by `/`.
    Claim {
        path: String,
        multi: bool,
    },
}

/// How a verified token's claims become a SPIFFE ID, per issuer.
///
/// A template is a SPIFFE ID with placeholders in its path:
///
/// - `{claim}` is replaced by the claim's string value, which must be one
///   valid path segment (letters, digits, `.`, `-`, `_`; not `.` or `..`);
/// - `{claim:path}` may hold several such segments joined by `/` (a GitHub
///   `repository` such as `org/app`);
/// - a claim is named by a dotted path into nested objects:
///   `{kubernetes.io.namespace}` reads `namespace` inside the
///   `kubernetes.io` claim (the longest claim name that exists is taken at
///   each level).
///
/// A claim that is missing, not a string, or not a valid segment is an
/// [`OidcError::IdentityClaim`]; a template never yields a silently
/// different ID.
///
/// ```
/// use zt_oidc::IdentityTemplate;
///
/// let github = IdentityTemplate::new(
///     "spiffe://github.example/repo/{repository:path}/env/{environment}",
/// )?;
/// let k8s = IdentityTemplate::new(
///     "spiffe://k8s.example/ns/{kubernetes.io.namespace}/sa/{kubernetes.io.serviceaccount.name}",
/// )?;
/// let claims = serde_json::json!({"repository": "org/app", "environment": "prod"});
/// let id = github.render(claims.as_object().unwrap())?;
/// assert_eq!(id.to_string(), "spiffe://github.example/repo/org/app/env/prod");
/// # let _ = k8s;
/// # Ok::<(), zt_oidc::OidcError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityTemplate {
    text: String,
    parts: Vec<Part>,
}

impl IdentityTemplate {
    /// Parses a template.
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidTemplate`] if it does not start with
    /// `spiffe://`, has unbalanced braces, an empty placeholder, a
    /// placeholder in the trust domain, or is not a valid SPIFFE ID with
    /// its placeholders filled.
    pub fn new(text: &str) -> Result<Self, OidcError> {
        let invalid = |reason: &str| OidcError::InvalidTemplate {
            template: text.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or_else(|| invalid("a template starts with spiffe://"))?;
        let domain_end = rest.find('/').unwrap_or(rest.len());
        if rest.get(..domain_end).is_some_and(|d| d.contains('{')) {
            return Err(invalid("the trust domain cannot hold a placeholder"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => return Err(invalid("unbalanced `{`")),
                            Some(c) => name.push(c),
                        }
                    }
                    let (path, multi) = match name.strip_suffix(":path") {
                        Some(path) => (path.to_owned(), true),
                        None => (name, false),
                    };
                    if path.is_empty() {
                        return Err(invalid("empty placeholder"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Claim { path, multi });
                }
                '}' => return Err(invalid("unbalanced `}`")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let template = Self {
            text: text.to_owned(),
            parts,
        };
        // Filled with a valid segment, the template must be a valid ID.
        let sample: String = template
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_str(),
                Part::Claim { .. } => "x",
            })
            .collect();
        SpiffeId::new(&sample).map_err(|e| invalid(&e.to_string()))?;
        Ok(template)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The SPIFFE ID for `claims`.
    ///
    /// # Errors
    ///
    /// [`OidcError::IdentityClaim`] naming the claim that is missing, not
    /// a string, or not a valid path segment.
    pub fn render(&self, claims: &Map<String, Value>) -> Result<SpiffeId, OidcError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Claim { path, multi } => {
                    let bad = |reason: &str| OidcError::IdentityClaim {
                        claim: path.clone(),
                        reason: reason.to_owned(),
                    };
                    let value = lookup(claims, path).ok_or_else(|| bad("missing"))?;
                    let text = value.as_str().ok_or_else(|| bad("not a string"))?;
                    let segments: Vec<&str> = if *multi {
                        text.split('/').collect()
                    } else {
                        vec![text]
                    };
                    for segment in &segments {
                        check_segment(segment).map_err(bad)?;
                    }
                    out.push_str(text);
                }
            }
        }
        SpiffeId::new(&out).map_err(|e| OidcError::IdentityClaim {
            claim: self.text.clone(),
            reason: e.to_string(),
        })
    }
}

fn check_segment(segment: &str) -> Result<(), &'static str> {
    if segment.is_empty() {
        return Err("an empty path segment");
    }
    if segment == "." || segment == ".." {
        return Err("a `.` or `..` path segment");
    }
    if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("characters outside letters, digits, `.`, `-`, `_`");
    }
    Ok(())
}

/// The value at a dotted `path`, trying the longest existing claim name at
/// each level.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let dots: Vec<usize> = path.match_indices('.').map(|(i, _)| i).collect();
    for &i in dots.iter().rev() {
        let (head, tail) = (path.get(..i)?, path.get(i + 1..)?);
        if let Some(Value::Object(inner)) = claims.get(head)
            && let Some(v) = lookup(inner, tail)
        {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn kubernetes_nested_claims() {
        let t = IdentityTemplate::new(
            "spiffe://k8s.example/ns/{kubernetes.io.namespace}/sa/{kubernetes.io.serviceaccount.name}",
        )
        .unwrap();
        let claims = obj(
            json!({"kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "deployer"}}}),
        );
        assert_eq!(
            t.render(&claims).unwrap().to_string(),
            "spiffe://k8s.example/ns/prod/sa/deployer"
        );
    }

    #[test]
    fn slash_refused_in_single_segment_placeholder() {
        let t = IdentityTemplate::new("spiffe://gh.example/repo/{repository}").unwrap();
        let err = t
            .render(&obj(json!({"repository": "org/app"})))
            .unwrap_err();
        assert!(matches!(err, OidcError::IdentityClaim { ref claim, .. } if claim == "repository"));
    }

    #[test]
    fn dot_segments_and_missing_claims_refused() {
        let t = IdentityTemplate::new("spiffe://gh.example/repo/{repository:path}").unwrap();
        for claims in [
            json!({"repository": "org/.."}),
            json!({"repository": "org//app"}),
            json!({"repository": 7}),
            json!({}),
            json!({"repository": "org/a b"}),
        ] {
            assert!(matches!(
                t.render(&obj(claims)),
                Err(OidcError::IdentityClaim { .. })
            ));
        }
    }

    #[test]
    fn bad_templates_refused() {
        for text in [
            "https://x/{a}",
            "spiffe://{td}/x",
            "spiffe://td/{a",
            "spiffe://td/a}",
            "spiffe://td/{}",
            "spiffe://td/a//{b}",
        ] {
            assert!(
                matches!(
                    IdentityTemplate::new(text),
                    Err(OidcError::InvalidTemplate { .. })
                ),
                "{text}"
            );
        }
    }
}
