//! Errors of policy construction and policy files.

use zt_core::matcher::PatternError;

pub use zt_core::origin::Origin;

/// Why a policy could not be built or read. Every variant names where the
/// mistake is ([`Origin`]) and, where there is one, the rule id. A policy is
/// validated completely before it is returned, so a reloading server keeps
/// its old policy when it gets one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file is not valid TOML or does not have the policy shape: a
    /// syntax error, an unknown field, a missing field or a value of the
    /// wrong type.
    #[error("{origin}: {}{message}; see the policy file format in the zt_authz::policy docs", in_rule(.rule_id))]
    File {
        /// Where.
        origin: Origin,
        /// The rule the mistake is in, if it could be told.
        rule_id: Option<String>,
        /// What the TOML reader said.
        message: String,
    },
    /// A rule has an empty id.
    #[error("{origin}: a rule has an empty id; give every rule a unique, non-empty id")]
    EmptyRuleId {
        /// Where.
        origin: Origin,
    },
    /// Two rules have the same id.
    #[error(
        "{origin}: rule id `{rule_id}` is already used by the rule at {first}; rule ids must be \
         unique, because decisions and audit records name the rule by its id"
    )]
    DuplicateRuleId {
        /// Where the second rule is.
        origin: Origin,
        /// The id.
        rule_id: String,
        /// Where the first rule with this id is.
        first: Origin,
    },
    /// The effect is not one of `allow`, `deny`, `audit`.
    #[error(
        "{origin}: rule `{rule_id}`: unknown effect `{effect}`; write `allow`, `deny` or `audit`"
    )]
    UnknownEffect {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The effect as written.
        effect: String,
    },
    /// A caller is not a valid SPIFFE ID or ID pattern.
    #[error(
        "{origin}: rule `{rule_id}`: caller `{pattern}` is not a valid SPIFFE ID pattern: {source}"
    )]
    BadCaller {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The caller as written.
        pattern: String,
        /// What is wrong with it.
        source: Box<PatternError>,
    },
    /// A caller pattern's `{name}` capture is malformed.
    #[error("{origin}: rule `{rule_id}`: caller `{pattern}` {reason}")]
    BadCapture {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The caller as written.
        pattern: String,
        /// What is wrong with it and what to write instead.
        reason: String,
    },
    /// A `when` condition is malformed.
    #[error("{origin}: rule `{rule_id}`: condition on `{key}` {reason}")]
    BadCondition {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The condition's key.
        key: String,
        /// What is wrong with it and what to write instead.
        reason: String,
    },
    /// An HTTP method is neither `*` nor an uppercase method token.
    #[error("{origin}: rule `{rule_id}`: HTTP method `{method}` {reason}")]
    BadMethod {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The method as written.
        method: String,
        /// What is wrong with it and what to write instead.
        reason: String,
    },
    /// An HTTP path pattern is malformed.
    #[error("{origin}: rule `{rule_id}`: path pattern `{path}` {reason}")]
    BadPath {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The pattern as written.
        path: String,
        /// What is wrong with it and what to write instead.
        reason: String,
    },
    /// A gRPC method pattern is malformed.
    #[error("{origin}: rule `{rule_id}`: gRPC method pattern `{pattern}` {reason}")]
    BadGrpcMethod {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it and what to write instead.
        reason: String,
    },
    /// A required scope is not an RFC 6749 scope token.
    #[error(
        "{origin}: rule `{rule_id}`: scope `{scope}` is not a scope token; write printable ASCII \
         without spaces, `\"` or `\\`, such as `invoices:read`"
    )]
    BadScope {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The scope as written.
        scope: String,
    },
    /// An explicit policy version is empty.
    #[error("{origin}: the policy version is empty; remove it to use a content hash, or write one")]
    EmptyVersion {
        /// Where.
        origin: Origin,
    },
    /// A declared trust domain is not a valid trust domain name.
    #[error("{origin}: rule `{rule_id}`: trust domain `{trust_domain}` {reason}")]
    BadTrustDomain {
        /// Where.
        origin: Origin,
        /// The rule.
        rule_id: String,
        /// The trust domain as written.
        trust_domain: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint declaration accepts no caller.
    #[error(
        "{origin}: `{rule_id}` declares no callers; name at least one SPIFFE ID, ID pattern \
         or trust domain"
    )]
    NoCallers {
        /// Where.
        origin: Origin,
        /// The declaration's rule id.
        rule_id: String,
    },
    /// Two endpoint declarations are for the same method and path, or the
    /// same gRPC method.
    #[error(
        "{origin}: `{endpoint}` is already declared at {first}; declare each endpoint's \
         callers in one place"
    )]
    DuplicateEndpoint {
        /// Where the second declaration is.
        origin: Origin,
        /// The endpoint: `METHOD /path` or `/package.Service/Method`.
        endpoint: String,
        /// Where the first declaration is.
        first: Origin,
    },
    /// Endpoints are implemented without declared callers while
    /// declarations are required.
    #[error(
        "{origin}: these endpoints declare no required callers: {}; declare them, or turn \
         require_declared off",
        .endpoints.join(", ")
    )]
    UndeclaredEndpoints {
        /// Where the first one is.
        origin: Origin,
        /// Each endpoint, with its source location.
        endpoints: Vec<String>,
    },
    /// The policy file could not be read.
    #[error("{origin}: cannot read the policy file: {reason}")]
    Io {
        /// The file.
        origin: Origin,
        /// The I/O error, or why the content is not text.
        reason: String,
    },
}

fn in_rule(rule_id: &Option<String>) -> String {
    rule_id
        .as_ref()
        .map(|id| format!("in rule `{id}`: "))
        .unwrap_or_default()
}

impl PolicyError {
    /// Where the mistake is.
    pub fn origin(&self) -> &Origin {
        match self {
            Self::File { origin, .. }
            | Self::EmptyRuleId { origin }
            | Self::DuplicateRuleId { origin, .. }
            | Self::UnknownEffect { origin, .. }
            | Self::BadCaller { origin, .. }
            | Self::BadCapture { origin, .. }
            | Self::BadCondition { origin, .. }
            | Self::BadMethod { origin, .. }
            | Self::BadPath { origin, .. }
            | Self::BadGrpcMethod { origin, .. }
            | Self::BadScope { origin, .. }
            | Self::EmptyVersion { origin }
            | Self::BadTrustDomain { origin, .. }
            | Self::NoCallers { origin, .. }
            | Self::DuplicateEndpoint { origin, .. }
            | Self::UndeclaredEndpoints { origin, .. }
            | Self::Io { origin, .. } => origin,
        }
    }

    /// The 1-based line of the mistake, for policy files.
    pub fn line(&self) -> Option<u32> {
        self.origin().line()
    }

    /// The id of the rule the mistake is in, when known.
    pub fn rule_id(&self) -> Option<&str> {
        match self {
            Self::File { rule_id, .. } => rule_id.as_deref(),
            Self::DuplicateRuleId { rule_id, .. }
            | Self::UnknownEffect { rule_id, .. }
            | Self::BadCaller { rule_id, .. }
            | Self::BadCapture { rule_id, .. }
            | Self::BadCondition { rule_id, .. }
            | Self::BadMethod { rule_id, .. }
            | Self::BadPath { rule_id, .. }
            | Self::BadGrpcMethod { rule_id, .. }
            | Self::BadTrustDomain { rule_id, .. }
            | Self::NoCallers { rule_id, .. }
            | Self::BadScope { rule_id, .. } => Some(rule_id),
            Self::EmptyRuleId { .. }
            | Self::EmptyVersion { .. }
            | Self::DuplicateEndpoint { .. }
            | Self::UndeclaredEndpoints { .. }
            | Self::Io { .. } => None,
        }
    }

    /// The same error, placed at `at`.
    pub(crate) fn at(mut self, at: Origin) -> Self {
        match &mut self {
            Self::File { origin, .. }
            | Self::EmptyRuleId { origin }
            | Self::DuplicateRuleId { origin, .. }
            | Self::UnknownEffect { origin, .. }
            | Self::BadCaller { origin, .. }
            | Self::BadCapture { origin, .. }
            | Self::BadCondition { origin, .. }
            | Self::BadMethod { origin, .. }
            | Self::BadPath { origin, .. }
            | Self::BadGrpcMethod { origin, .. }
            | Self::BadScope { origin, .. }
            | Self::EmptyVersion { origin }
            | Self::BadTrustDomain { origin, .. }
            | Self::NoCallers { origin, .. }
            | Self::DuplicateEndpoint { origin, .. }
            | Self::UndeclaredEndpoints { origin, .. }
            | Self::Io { origin, .. } => *origin = at,
        }
        self
    }
}
