//! Tokens made by an outside library, PyJWT, with the key the development
//! issuer publishes: a good ES256 token is accepted, and each forged or
//! broken one (alg `none`, HS256 keyed with the public key, expired, wrong
//! audience, wrong issuer, no `kid`, a `crit` header) is refused with its own error.
//!
//! Needs python3 with PyJWT and cryptography (`python3 -m pip install
//! --user pyjwt cryptography`; .ci/run does this). Without them the test
//! fails.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use zt_core::time::{Clock as _, ManualClock};
use zt_dev::{DevOidcIssuer, github_actions_claims};
use zt_oidc::{FetchOptions, IdentityTemplate, IssuerConfig, OidcError, OidcValidator};

const AUD: &str = "https://deploy.example";

/// Reads `{"key": pem, "kid": kid, "tokens": {name: {"alg", "claims", "kid"?}}}`
/// from stdin and prints `{name: token}`.
const SCRIPT: &str = r#"
import json, sys
import jwt
from jwt.algorithms import HMACAlgorithm
from cryptography.hazmat.primitives import serialization

spec = json.load(sys.stdin)
private = serialization.load_pem_private_key(spec["key"].encode(), password=None)
public_pem = private.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

# The algorithm-confusion attack: HS256 keyed with the issuer's public key.
# PyJWT refuses PEM keys as HMAC secrets, so the check is lifted here.
class RawHmac(HMACAlgorithm):
    def prepare_key(self, key):
        return key
confused = jwt.PyJWS()
confused.unregister_algorithm("HS256")
confused.register_algorithm("HS256", RawHmac(HMACAlgorithm.SHA256))

out = {}
for name, t in spec["tokens"].items():
    headers = {"kid": spec["kid"]} if t.get("kid", True) else {}
    headers.update(t.get("headers", {}))
    if t["alg"] == "ES256":
        out[name] = jwt.encode(t["claims"], private, algorithm="ES256", headers=headers)
    elif t["alg"] == "none":
        out[name] = jwt.encode(t["claims"], None, algorithm="none", headers=headers)
    elif t["alg"] == "HS256-public-key":
        out[name] = confused.encode(json.dumps(t["claims"]).encode(), public_pem,
                                    algorithm="HS256", headers=headers)
print(json.dumps(out))
"#;

fn python() -> String {
    std::env::var("ZT_PYTHON").unwrap_or_else(|_| "python3".into())
}

async fn pyjwt(spec: &Value) -> serde_json::Map<String, Value> {
    let py = python();
    let probe = std::process::Command::new(&py)
        .args(["-c", "import jwt, cryptography"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "python3 with PyJWT is required: `{py} -m pip install --user pyjwt cryptography` (.ci/run does this)"
    );
    let mut child = tokio::process::Command::new(&py)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(spec.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("PyJWT answered within 60 s")
        .unwrap();
    assert!(
        out.status.success(),
        "PyJWT script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
#[ignore = "needs python3 with PyJWT and cryptography; .ci/run installs them and runs it with --ignored"]
async fn pyjwt_tokens_accepted_and_forgeries_refused_each_with_its_error() {
    let clock = ManualClock::starting_now();
    let issuer = DevOidcIssuer::start_with_clock(Arc::new(clock.clone()))
        .await
        .unwrap();
    let validator = OidcValidator::with_clock(
        vec![
            IssuerConfig::new(
                issuer.issuer(),
                AUD,
                IdentityTemplate::new(
                    "spiffe://github.example/repo/{repository:path}/env/{environment}",
                )
                .unwrap(),
            )
            .unwrap(),
        ],
        FetchOptions {
            roots: vec![issuer.root_der()],
            ..FetchOptions::default()
        },
        Arc::new(clock.clone()),
    )
    .unwrap();

    let now = clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = |extra: Value| {
        let mut c = github_actions_claims("org/app", "prod");
        c.insert("iss".into(), json!(issuer.issuer()));
        c.insert("aud".into(), json!(AUD));
        c.insert("iat".into(), json!(now));
        c.insert("exp".into(), json!(now + 300));
        c.extend(extra.as_object().unwrap().clone());
        Value::Object(c)
    };
    let spec = json!({
        "key": issuer.private_key_pem(),
        "kid": issuer.key_id(),
        "tokens": {
            "good": {"alg": "ES256", "claims": claims(json!({}))},
            "none": {"alg": "none", "claims": claims(json!({}))},
            "hs256": {"alg": "HS256-public-key", "claims": claims(json!({}))},
            "expired": {"alg": "ES256", "claims": claims(json!({"exp": now - 600}))},
            "wrong_aud": {"alg": "ES256", "claims": claims(json!({"aud": "https://other.example"}))},
            "wrong_iss": {"alg": "ES256", "claims": claims(json!({"iss": "https://evil.example"}))},
            "no_kid": {"alg": "ES256", "claims": claims(json!({})), "kid": false},
            "crit": {"alg": "ES256", "claims": claims(json!({})), "headers": {"crit": ["exp"]}},
        }
    });
    let tokens = pyjwt(&spec).await;
    let token = |name: &str| tokens[name].as_str().unwrap().to_owned();

    let verified = validator.validate(&token("good")).await.unwrap();
    assert_eq!(
        verified.identity().to_string(),
        "spiffe://github.example/repo/org/app/env/prod"
    );
    assert_eq!(verified.subject(), "repo:org/app:environment:prod");

    assert_eq!(
        validator.validate(&token("none")).await.unwrap_err(),
        OidcError::UnsignedToken
    );
    assert_eq!(
        validator.validate(&token("hs256")).await.unwrap_err(),
        OidcError::SymmetricAlgorithm {
            alg: "HS256".into()
        }
    );
    assert_eq!(
        validator.validate(&token("expired")).await.unwrap_err(),
        OidcError::Expired { exp: now - 600 }
    );
    assert!(matches!(
        validator.validate(&token("wrong_aud")).await,
        Err(OidcError::WrongAudience { .. })
    ));
    assert_eq!(
        validator.validate(&token("wrong_iss")).await.unwrap_err(),
        OidcError::UntrustedIssuer {
            issuer: "https://evil.example".into()
        }
    );
    assert_eq!(
        validator.validate(&token("no_kid")).await.unwrap_err(),
        OidcError::MissingKeyId
    );

    assert!(matches!(
        validator.validate(&token("crit")).await,
        Err(OidcError::Malformed { reason }) if reason.contains("critical")
    ));

    // Each refusal has its own audit code.
    let mut kinds = Vec::new();
    for name in [
        "none",
        "hs256",
        "expired",
        "wrong_aud",
        "wrong_iss",
        "no_kid",
    ] {
        kinds.push(validator.validate(&token(name)).await.unwrap_err().kind());
    }
    assert_eq!(
        kinds,
        [
            "oidc:alg-none",
            "oidc:symmetric-algorithm",
            "oidc:expired",
            "oidc:wrong-aud",
            "oidc:untrusted-issuer",
            "oidc:missing-kid"
        ]
    );
}
