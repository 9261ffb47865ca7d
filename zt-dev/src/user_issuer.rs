//! A development issuer of user-context tokens.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{Map, Value, json};

use super::{FakeCaError, cert_err};
use zt_core::SpiffeId;
use zt_core::revocation::Revocations;
use zt_core::source::BoxFuture;
use zt_core::task::{IssuedTaskToken, TaskTokenError, TaskTokenRequest, TaskTokenService};
use zt_core::time::{SharedClock, Timestamp, system_clock};
use zt_core::txn::{
    MAX_REQUESTING_WORKLOADS, TXN_TOKEN_TYPE, TxnToken, TxnTokenError, TxnTokenValidator,
};
use zt_core::user::{
    ActorExchange, ExchangeError, JwkSet, MAX_ACT_DEPTH, UserContext, UserContextError,
    UserContextValidator, act_claim, is_scope_token,
};

/// Default lifetime of the tokens a [`DevUserIssuer`] mints.
pub const DEFAULT_USER_CONTEXT_TTL: Duration = Duration::from_secs(300);

/// A development issuer of user-context tokens (ES256), for tests and
/// laptops; see [`zt_core::user`] for the token format and trust model.
///
/// It mints tokens for any subject and scopes, and implements
/// [`ActorExchange`] by signing locally, without authenticating the actor:
/// that is what makes it a development issuer. Cheap to clone.
#[derive(Clone)]
pub struct DevUserIssuer {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    issuer: String,
    audience: String,
    key_id: String,
    signing: crate::jws::Es256Key,
    jwk: Jwk,
    clock: SharedClock,
    ttl: Duration,
    revocations: Option<Revocations>,
}

impl fmt::Debug for DevUserIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevUserIssuer")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("key_id", &self.inner.key_id)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl DevUserIssuer {
    /// An issuer named `issuer` (the `iss` claim) minting tokens for
    /// `audience`, with a fresh P-256 key, on the system clock.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Certificate`] or [`FakeCaError::Jwt`] if the key
    /// cannot be generated.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, FakeCaError> {
        let jwt_err = |reason: String| FakeCaError::Jwt { reason };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let point = key.public_key_raw();
        let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
            return Err(jwt_err(
                "the generated key is not an uncompressed P-256 point".into(),
            ));
        };
        let key_id = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(point);
            format!("user-{}", URL_SAFE_NO_PAD.encode(&digest[..12]))
        };
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": key_id,
        }))
        .map_err(|e| jwt_err(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: issuer.into(),
                audience: audience.into(),
                key_id,
                signing: crate::jws::Es256Key::from_pkcs8(&key.serialize_der())?,
                jwk,
                clock: system_clock(),
                ttl: DEFAULT_USER_CONTEXT_TTL,
                revocations: None,
            }),
        })
    }

    /// Reads `iat`/`exp` from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        Arc::make_mut(&mut self.inner).clock = clock;
        self
    }

    /// Sets the lifetime of minted tokens (default
    /// [`DEFAULT_USER_CONTEXT_TTL`]).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        Arc::make_mut(&mut self.inner).ttl = ttl;
        self
    }

    /// Records the revocations of task tokens
    /// ([`TaskTokenService::revoke`]) in `revocations`: share the list with
    /// the services that accept the tokens (their validators'
    /// [`with_revocations`](UserContextValidator::with_revocations) or
    /// their `JwtAuthLayer`'s revocation list).
    #[must_use]
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        Arc::make_mut(&mut self.inner).revocations = Some(revocations);
        self
    }

    /// The issuer name.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience of minted tokens.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The `kid` of the signing key.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// The issuer's public keys.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.inner.jwk.clone()],
        }
    }

    /// A validator trusting this issuer, for its audience.
    ///
    /// # Errors
    ///
    /// [`UserContextError::UnusableKey`] (not expected for the issuer's
    /// own key).
    pub fn validator(&self) -> Result<UserContextValidator, UserContextError> {
        UserContextValidator::new(&self.inner.issuer, &self.inner.audience, &self.jwks())
    }

    /// Mints a token for user `subject` with `scopes` and no actors.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] for an invalid scope or a signing failure.
    pub fn mint(&self, subject: &str, scopes: &[&str]) -> Result<String, FakeCaError> {
        self.mint_for(subject, scopes, &[])
    }

    /// Mints a token for user `subject` with `scopes` and the `act` chain
    /// `actors` (oldest first).
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] for an invalid scope or a signing failure.
    pub fn mint_for(
        &self,
        subject: &str,
        scopes: &[&str],
        actors: &[SpiffeId],
    ) -> Result<String, FakeCaError> {
        if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(FakeCaError::Jwt {
                reason: format!("`{bad}` is not a scope token"),
            });
        }
        let now = self.now_secs();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.inner.issuer));
        claims.insert("sub".into(), json!(subject));
        claims.insert("aud".into(), json!(self.inner.audience));
        claims.insert("iat".into(), json!(now));
        claims.insert(
            "exp".into(),
            json!(now.saturating_add(self.inner.ttl.as_secs())),
        );
        claims.insert("scope".into(), json!(scopes.join(" ")));
        if let Some(act) = act_claim(actors) {
            claims.insert("act".into(), act);
        }
        self.sign(&Value::Object(claims))
    }

    /// A Txn-Token validator trusting this issuer as a Txn-Token Service,
    /// for its audience, requiring its name as `iss`.
    ///
    /// # Errors
    ///
    /// [`TxnTokenError::UnusableKey`] (not expected for the issuer's own
    /// key).
    pub fn txn_validator(&self) -> Result<TxnTokenValidator, TxnTokenError> {
        Ok(TxnTokenValidator::new(&self.inner.audience, &self.jwks())?
            .with_issuer(&self.inner.issuer))
    }

    /// Acts as a Txn-Token Service: mints a Txn-Token
    /// ([`zt_core::txn`]) for transaction `txn` of `subject` with `scopes`,
    /// requested by workload `requester`, with the transaction context
    /// `tctx` and requester context `rctx` (JSON objects, if given), for
    /// the issuer's audience, naming the issuer as `iss`, living the
    /// issuer's TTL.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] for an invalid scope or a signing failure.
    pub fn mint_txn_token(
        &self,
        txn: &str,
        subject: &str,
        scopes: &[&str],
        requester: &SpiffeId,
        tctx: Option<Value>,
        rctx: Option<Value>,
    ) -> Result<String, FakeCaError> {
        if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(FakeCaError::Jwt {
                reason: format!("`{bad}` is not a scope token"),
            });
        }
        let now = self.now_secs();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.inner.issuer));
        claims.insert("txn".into(), json!(txn));
        claims.insert("sub".into(), json!(subject));
        claims.insert("aud".into(), json!(self.inner.audience));
        claims.insert("scope".into(), json!(scopes.join(" ")));
        claims.insert("req_wl".into(), json!(requester.to_string()));
        claims.insert("iat".into(), json!(now));
        claims.insert(
            "exp".into(),
            json!(now.saturating_add(self.inner.ttl.as_secs())),
        );
        if let Some(tctx) = tctx {
            claims.insert("tctx".into(), tctx);
        }
        if let Some(rctx) = rctx {
            claims.insert("rctx".into(), rctx);
        }
        self.sign_typed(&Value::Object(claims), Some(TXN_TOKEN_TYPE))
    }

    /// Acts as a Txn-Token Service replacing `token` for the next hop, as
    /// draft-ietf-oauth-transaction-tokens-08 has a TTS do when a Txn-Token
    /// is the `subject_token`: the same `txn`, `sub`, `aud`, scopes and
    /// contexts, `requester` appended to `req_wl` (so it is the requesting
    /// workload and the earlier ones stay), expiring no later than `token`.
    /// Like the rest of this issuer, it does not authenticate `requester`.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] if `token` has expired, if its `req_wl` already
    /// names [`MAX_REQUESTING_WORKLOADS`] workloads, or if signing fails.
    pub fn replace_txn_token(
        &self,
        token: &TxnToken,
        requester: &SpiffeId,
    ) -> Result<String, FakeCaError> {
        if self.inner.clock.now() > token.expiry() {
            return Err(FakeCaError::Jwt {
                reason: format!(
                    "the Txn-Token expired at {}; it cannot be replaced",
                    Timestamp(token.expiry())
                ),
            });
        }
        let now = self.now_secs();
        let expiry = token
            .expiry()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .min(now.saturating_add(self.inner.ttl.as_secs()));
        if token.requesting_workloads().len() >= MAX_REQUESTING_WORKLOADS {
            return Err(FakeCaError::Jwt {
                reason: format!(
                    "the Txn-Token's `req_wl` already names {MAX_REQUESTING_WORKLOADS} \
                     workloads; it cannot be replaced again"
                ),
            });
        }
        let scopes: Vec<&str> = token.scopes().iter().map(|s| &**s).collect();
        let mut chain: Vec<String> = token
            .requesting_workloads()
            .iter()
            .map(ToString::to_string)
            .collect();
        chain.push(requester.to_string());
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.inner.issuer));
        claims.insert("txn".into(), json!(token.txn()));
        claims.insert("sub".into(), json!(token.subject()));
        let audience = match token.audience() {
            [one] => json!(one),
            several => json!(several),
        };
        claims.insert("aud".into(), audience);
        claims.insert("scope".into(), json!(scopes.join(" ")));
        claims.insert("req_wl".into(), json!(chain.join(",")));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(expiry));
        if !token.transaction_context().is_empty() {
            claims.insert(
                "tctx".into(),
                Value::Object(token.transaction_context().clone()),
            );
        }
        if !token.requester_context().is_empty() {
            claims.insert(
                "rctx".into(),
                Value::Object(token.requester_context().clone()),
            );
        }
        self.sign_typed(&Value::Object(claims), Some(TXN_TOKEN_TYPE))
    }

    /// Signs arbitrary claims with the issuer's key (ES256, its `kid`), for
    /// tests that need tokens breaking one rule.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] if signing fails.
    pub fn sign(&self, claims: &Value) -> Result<String, FakeCaError> {
        self.sign_typed(claims, Some("JWT"))
    }

    /// Signs arbitrary claims like [`sign`](Self::sign), with the JOSE
    /// `typ` header `typ` (none if `None`).
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] if signing fails.
    pub fn sign_typed(&self, claims: &Value, typ: Option<&str>) -> Result<String, FakeCaError> {
        self.inner.signing.sign(&self.inner.key_id, typ, claims)
    }

    fn now_secs(&self) -> u64 {
        self.inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl ActorExchange for DevUserIssuer {
    fn exchange<'a>(
        &'a self,
        context: &'a UserContext,
        actor: &'a SpiffeId,
        scopes: Option<&'a [&'a str]>,
    ) -> BoxFuture<'a, Result<String, ExchangeError>> {
        Box::pin(async move {
            if self.inner.clock.now() > context.expiry() {
                return Err(ExchangeError::Expired {
                    expired_at: Timestamp(context.expiry()),
                });
            }
            if context.actors().len() >= MAX_ACT_DEPTH {
                return Err(ExchangeError::ActChainTooLong);
            }
            let kept: Vec<&str> = match scopes {
                Some(wanted) => {
                    if let Some(extra) = wanted.iter().find(|s| !context.has_scope(s)) {
                        return Err(ExchangeError::WidenedScope {
                            scope: (*extra).to_owned(),
                        });
                    }
                    wanted.to_vec()
                }
                None => context.scopes().iter().map(|s| &**s).collect(),
            };
            let mut actors = context.actors().to_vec();
            actors.push(actor.clone());
            let now = self.now_secs();
            let expiry = context
                .expiry()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .min(now.saturating_add(self.inner.ttl.as_secs()));
            let mut claims = Map::new();
            claims.insert("iss".into(), json!(self.inner.issuer));
            claims.insert("sub".into(), json!(context.subject()));
            claims.insert("aud".into(), json!(self.inner.audience));
            claims.insert("iat".into(), json!(now));
            claims.insert("exp".into(), json!(expiry));
            claims.insert("scope".into(), json!(kept.join(" ")));
            if let Some(act) = act_claim(&actors) {
                claims.insert("act".into(), act);
            }
            self.sign(&Value::Object(claims))
                .map_err(|e| ExchangeError::Issuer {
                    reason: e.to_string(),
                })
        })
    }
}

/// 16 random bytes, hex: a token ID.
pub(crate) fn random_id() -> Result<String, String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0_u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random source failed".to_owned())?;
    Ok(hex::encode(bytes))
}

/// Issues task tokens as user-context tokens: `sub` the request's subject,
/// `act` naming the runner, `aud` the request's audiences, `scope` its
/// scopes, `exp` its deadline, a random `jti` and the `task_id`. Revokes
/// them in the list given to [`with_revocations`](DevUserIssuer::with_revocations);
/// without one, revocation fails (and is audited as failed).
impl TaskTokenService for DevUserIssuer {
    fn issue<'a>(
        &'a self,
        request: &'a TaskTokenRequest,
    ) -> BoxFuture<'a, Result<IssuedTaskToken, TaskTokenError>> {
        Box::pin(async move {
            let service = |reason: String| TaskTokenError::Service { reason };
            request.check(self.inner.clock.now())?;
            let token_id = random_id().map_err(service)?;
            let expires = request
                .deadline
                .duration_since(UNIX_EPOCH)
                .map_err(|_| service("the deadline is before 1970".to_owned()))?
                .as_secs();
            let mut claims = Map::new();
            claims.insert("iss".into(), json!(self.inner.issuer));
            claims.insert("sub".into(), json!(request.subject));
            claims.insert("aud".into(), json!(request.audiences));
            claims.insert("iat".into(), json!(self.now_secs()));
            claims.insert("exp".into(), json!(expires));
            claims.insert("scope".into(), json!(request.scopes.join(" ")));
            claims.insert("jti".into(), json!(token_id));
            claims.insert("task_id".into(), json!(request.task_id));
            if let Some(act) = act_claim(std::slice::from_ref(&request.actor)) {
                claims.insert("act".into(), act);
            }
            let token = self
                .sign(&Value::Object(claims))
                .map_err(|e| service(e.to_string()))?;
            Ok(IssuedTaskToken::new(
                token,
                token_id,
                UNIX_EPOCH + Duration::from_secs(expires),
            ))
        })
    }

    fn revoke(&self, token_id: &str, expires: std::time::SystemTime) -> Result<(), TaskTokenError> {
        let revocations =
            self.inner
                .revocations
                .as_ref()
                .ok_or_else(|| TaskTokenError::Service {
                    reason: "the development issuer has no revocation list to record it in"
                        .to_owned(),
                })?;
        revocations.revoke_token_id(token_id, expires);
        Ok(())
    }
}
