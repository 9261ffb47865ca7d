//! Transaction Tokens (draft-ietf-oauth-transaction-tokens-08).
//!
//! - Tokens made by PyJWT (an outside implementation; the test fails if
//!   python3 or PyJWT with `cryptography` is missing): the good ones
//!   validate with their claims (one naming a chain of requesting
//!   workloads), each token breaking one rule fails with that rule's error.
//! - The configured TTS issuer (`iss`), the `req_wl` chain a replacement
//!   appends to, and their errors, with tokens from the development TTS.
//! - End to end over mutual TLS on 127.0.0.1: a gateway gets a Txn-Token
//!   from the development Txn-Token Service and calls orders; orders
//!   obtains a replacement naming itself and calls ledger. Each hop binds
//!   the token to its authenticated caller; a token forwarded unchanged is
//!   refused; the `txn` is in every audit record.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use zt_authz::Authorizer;
use zt_authz::policy::Policy;
use zt_client::ZtClient;
use zt_core::txn::{
    MAX_REQUESTING_WORKLOADS, TXN_TOKEN_HEADER, TXN_TOKEN_TYPE, TxnToken, TxnTokenError,
    TxnTokenValidator,
};
use zt_core::user::JwkSet;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{DevUserIssuer, FakeCa, FakeCaSource};
use zt_server::{AuthorizeLayer, JwtAuthLayer, ZtServer};
use zt_tests::audit_capture::{AuditCapture, Fields};
mod common;
use common::field;

const GATEWAY: &str = "spiffe://example.org/gateway";
const ORDERS: &str = "spiffe://example.org/orders";
const LEDGER: &str = "spiffe://example.org/ledger";
const TTL: Duration = Duration::from_secs(300);

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

/// Runs tests/python/txn_tokens.py: the TTS key as a JWKS and the tokens.
fn pyjwt_tokens(now: u64) -> (JwkSet, serde_json::Map<String, Value>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/txn_tokens.py");
    let output = std::process::Command::new("python3")
        .args([script, &now.to_string(), "example.org", GATEWAY])
        .output()
        .expect("python3 is needed for this test");
    assert!(
        output.status.success(),
        "the PyJWT token script failed (is PyJWT with `cryptography` installed?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    let jwks: JwkSet = serde_json::from_value(json!({ "keys": [out["jwk"]] })).unwrap();
    let Value::Object(tokens) = out["tokens"].clone() else {
        panic!("no tokens in {out}");
    };
    (jwks, tokens)
}

#[test]
#[ignore = "needs python3 with PyJWT and cryptography; .ci/run installs them and runs it with --ignored"]
fn pyjwt_tokens_validate_and_each_broken_rule_has_its_own_error() {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (jwks, tokens) = pyjwt_tokens(secs);
    let validator = TxnTokenValidator::new("example.org", &jwks).unwrap();

    let good = tokens["good"].as_str().unwrap();
    let txn = validator
        .validate_for_caller(good, now, &id(GATEWAY))
        .unwrap();
    assert_eq!(txn.txn(), "97053963-771d-49cc-a4e3-20aad399c312");
    assert_eq!(txn.subject(), "alice@example.com");
    assert_eq!(txn.requesting_workload(), &id(GATEWAY));
    assert!(txn.has_scope("trade.stocks"));
    assert_eq!(txn.transaction_context()["ticker"], "MSFT");
    assert_eq!(txn.requester_context()["req_ip"], "69.151.72.123");
    assert_eq!(txn.expiry(), UNIX_EPOCH + Duration::from_secs(secs + 60));
    assert!(!format!("{txn:?}").contains(good));

    let err = validator
        .validate_for_caller(good, now, &id(ORDERS))
        .unwrap_err();
    assert!(
        matches!(err, TxnTokenError::RequesterMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), "txn-token:requester-mismatch");
    let err = validator.validate("not.a-token", now).unwrap_err();
    assert_eq!(err.kind(), "txn-token:malformed");

    let chain = validator
        .validate_for_caller(tokens["good:chain"].as_str().unwrap(), now, &id(ORDERS))
        .unwrap();
    assert_eq!(chain.requesting_workload(), &id(ORDERS));
    assert_eq!(chain.requesting_workloads(), [id(GATEWAY), id(ORDERS)]);
    assert_eq!(chain.issuer(), None);

    let with_issuer = validator.clone().with_issuer("https://tts.example.org");
    let mut checked = 0;
    for (case, token) in &tokens {
        if case.starts_with("good") {
            continue;
        }
        let expected = format!("txn-token:{}", case.split(':').next().unwrap());
        let validator = if case.ends_with("with-issuer") {
            &with_issuer
        } else {
            &validator
        };
        let err = validator
            .validate(token.as_str().unwrap(), now)
            .expect_err(case);
        assert_eq!(err.kind(), expected, "{case}: {err}");
        checked += 1;
    }
    assert_eq!(checked, tokens.len() - 2);
    assert!(checked >= 32, "{checked} cases");
}

#[test]
fn a_jwks_with_a_symmetric_key_is_refused() {
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "alg": "HS256", "kid": "h"}
    ]}))
    .unwrap();
    let err = TxnTokenValidator::new("example.org", &jwks).unwrap_err();
    assert_eq!(err.kind(), "txn-token:unusable-key");
}

/// The development TTS, and claims it would issue for the gateway.
fn tts_claims() -> (DevUserIssuer, serde_json::Map<String, Value>) {
    let tts = DevUserIssuer::new("https://tts.example.org", "example.org").unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let Value::Object(claims) = json!({
        "iss": "https://tts.example.org", "txn": "txn-9", "sub": "alice@example.com",
        "aud": "example.org", "scope": "trade.stocks", "req_wl": GATEWAY,
        "iat": now, "exp": now + 60,
    }) else {
        unreachable!()
    };
    (tts, claims)
}

fn sign(tts: &DevUserIssuer, claims: &serde_json::Map<String, Value>) -> String {
    tts.sign_typed(&Value::Object(claims.clone()), Some(TXN_TOKEN_TYPE))
        .unwrap()
}

#[test]
fn a_txn_token_without_iss_is_refused_when_an_issuer_is_configured() {
    let (tts, mut claims) = tts_claims();
    let validator = tts.txn_validator().unwrap();
    assert_eq!(validator.issuer(), Some("https://tts.example.org"));
    let good = validator.validate(&sign(&tts, &claims), SystemTime::now());
    assert_eq!(good.unwrap().issuer(), Some("https://tts.example.org"));

    claims.remove("iss");
    let token = sign(&tts, &claims);
    let err = validator.validate(&token, SystemTime::now()).unwrap_err();
    assert_eq!(err.kind(), "txn-token:missing-iss", "{err}");
    assert!(err.to_string().contains("https://tts.example.org"), "{err}");
    // Without a configured issuer, `iss` is optional, as the draft has it.
    let open = TxnTokenValidator::new("example.org", &tts.jwks()).unwrap();
    assert!(open.validate(&token, SystemTime::now()).is_ok());
}

#[test]
fn a_txn_token_from_another_issuer_is_refused() {
    let (tts, mut claims) = tts_claims();
    let validator = tts.txn_validator().unwrap();
    claims.insert("iss".into(), json!("https://tts.attacker.example"));
    let err = validator
        .validate(&sign(&tts, &claims), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(&err, TxnTokenError::WrongIssuer { expected, found }
            if expected == "https://tts.example.org" && found.contains("attacker")),
        "{err:?}"
    );
    assert_eq!(err.kind(), "txn-token:wrong-iss");
    // PyJWT refuses to write an `iss` that is not a string; the
    // development issuer signs anything.
    claims.insert("iss".into(), json!(7));
    let token = sign(&tts, &claims);
    let err = validator.validate(&token, SystemTime::now()).unwrap_err();
    assert_eq!(err.kind(), "txn-token:wrong-iss", "{err}");
    let open = TxnTokenValidator::new("example.org", &tts.jwks()).unwrap();
    let err = open.validate(&token, SystemTime::now()).unwrap_err();
    assert_eq!(err.kind(), "txn-token:malformed", "{err}");
}

#[test]
fn a_replacement_appends_its_requester_to_req_wl_and_binds_to_it() {
    let (tts, _) = tts_claims();
    let validator = tts.txn_validator().unwrap();
    let now = SystemTime::now();
    let first = tts
        .mint_txn_token(
            "txn-7",
            "alice@example.com",
            &["trade.stocks"],
            &id(GATEWAY),
            None,
            None,
        )
        .unwrap();
    let first = validator
        .validate_for_caller(&first, now, &id(GATEWAY))
        .unwrap();
    assert_eq!(first.requesting_workloads(), [id(GATEWAY)]);
    let second = tts.replace_txn_token(&first, &id(ORDERS)).unwrap();
    let second = validator
        .validate_for_caller(&second, now, &id(ORDERS))
        .unwrap();
    assert_eq!(second.requesting_workloads(), [id(GATEWAY), id(ORDERS)]);
    assert_eq!(second.requesting_workload(), &id(ORDERS));
    assert_eq!(
        (second.txn(), second.subject()),
        ("txn-7", "alice@example.com")
    );
    // The earlier requester cannot use the replacement: binding reads the
    // last entry.
    let err = validator
        .validate_for_caller(second.token(), now, &id(GATEWAY))
        .unwrap_err();
    assert_eq!(err.kind(), "txn-token:requester-mismatch");
}

#[test]
fn a_req_wl_chain_longer_than_the_limit_is_refused() {
    let (tts, mut claims) = tts_claims();
    let validator = tts.txn_validator().unwrap();
    let at_limit = vec![GATEWAY; MAX_REQUESTING_WORKLOADS].join(",");
    claims.insert("req_wl".into(), json!(at_limit));
    let ok = validator.validate(&sign(&tts, &claims), SystemTime::now());
    assert_eq!(
        ok.unwrap().requesting_workloads().len(),
        MAX_REQUESTING_WORKLOADS
    );
    let over = vec![GATEWAY; MAX_REQUESTING_WORKLOADS + 1].join(",");
    claims.insert("req_wl".into(), json!(over));
    let err = validator
        .validate(&sign(&tts, &claims), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, TxnTokenError::TooManyRequestingWorkloads { count, max }
            if count == MAX_REQUESTING_WORKLOADS + 1 && max == MAX_REQUESTING_WORKLOADS),
        "{err:?}"
    );
    assert_eq!(err.kind(), "txn-token:too-many-req-wl");
}

#[test]
fn a_req_wl_chain_with_an_empty_or_foreign_entry_is_refused() {
    let (tts, mut claims) = tts_claims();
    let validator = tts.txn_validator().unwrap();
    for (bad, says) in [
        (
            format!("{GATEWAY},,{ORDERS}"),
            "entry 2 of `req_wl` is empty",
        ),
        (format!("{GATEWAY},"), "entry 2 of `req_wl` is empty"),
        (format!("{GATEWAY},orders"), "entry 2 is not a SPIFFE ID"),
        (format!("{GATEWAY}, {ORDERS}"), "entry 2 is not a SPIFFE ID"),
    ] {
        claims.insert("req_wl".into(), json!(bad));
        let err = validator
            .validate(&sign(&tts, &claims), SystemTime::now())
            .unwrap_err();
        assert_eq!(err.kind(), "txn-token:bad-req-wl", "{bad}: {err}");
        assert!(err.to_string().contains(says), "{bad}: {err}");
    }
}

const ORDERS_POLICY: &str = r#"
version = "orders-1"

[[rule]]
id = "gateway-places-orders"
effect = "allow"
callers = ["spiffe://example.org/gateway"]
http = [{ method = "GET", path = "/orders/{id}" }, { method = "GET", path = "/forward/{id}" }]
"#;

const LEDGER_POLICY: &str = r#"
version = "ledger-1"

[[rule]]
id = "orders-books-entries"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/entries/{id}" }]
"#;

struct Orders {
    tts: DevUserIssuer,
    ledger: reqwest::Client,
    ledger_addr: SocketAddr,
}

impl Orders {
    async fn book(&self, n: &str, token: &str) -> String {
        let response = self
            .ledger
            .get(format!("https://{}/entries/{n}", self.ledger_addr))
            .header(TXN_TOKEN_HEADER, token)
            .send()
            .await
            .unwrap();
        format!("ledger {}", response.status().as_u16())
    }
}

/// Obtains a replacement Txn-Token naming orders, then calls ledger.
async fn order(
    State(orders): State<Arc<Orders>>,
    Extension(txn): Extension<TxnToken>,
    Path(n): Path<String>,
) -> String {
    let replaced = orders.tts.replace_txn_token(&txn, &id(ORDERS)).unwrap();
    orders.book(&n, &replaced).await
}

/// Forwards the Txn-Token as received: ledger must refuse it.
async fn forward(
    State(orders): State<Arc<Orders>>,
    Extension(txn): Extension<TxnToken>,
    Path(n): Path<String>,
) -> String {
    orders.book(&n, txn.token()).await
}

async fn entry(Extension(txn): Extension<TxnToken>, Path(n): Path<String>) -> String {
    format!(
        "entry {n} for {} in {} ({})",
        txn.subject(),
        txn.txn(),
        txn.transaction_context()["ticker"]
    )
}

fn client(ca: &FakeCa, me: &str, server: &str) -> reqwest::Client {
    ZtClient::builder(FakeCaSource::new(ca.clone(), id(me), TTL).unwrap())
        .pin_server(server.parse().unwrap())
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap()
}

fn layer(source: Arc<FakeCaSource>, me: &str, tts: &DevUserIssuer, name: &str) -> JwtAuthLayer {
    JwtAuthLayer::builder(source, me)
        .require_jwt_svid(false)
        .txn_token(tts.txn_validator().unwrap())
        .require_txn_token(true)
        .target(name)
        .build()
}

struct Chain {
    ca: FakeCa,
    tts: DevUserIssuer,
    orders: SocketAddr,
    _stop: Vec<oneshot::Sender<()>>,
}

async fn chain() -> Chain {
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let tts = DevUserIssuer::new("https://tts.example.org", "example.org").unwrap();
    let ledger_source = FakeCaSource::new(ca.clone(), id(LEDGER), TTL).unwrap();
    let ledger_app = Router::new()
        .route("/entries/{id}", get(entry))
        .route_layer(AuthorizeLayer::new(
            Authorizer::builder(Policy::from_toml_str(LEDGER_POLICY, "ledger.toml").unwrap())
                .target("ledger")
                .build(),
        ))
        .layer(layer(ledger_source.clone(), LEDGER, &tts, "ledger"));
    let (ledger_addr, stop_ledger) = common::serve(
        ZtServer::builder(ledger_source).build().unwrap(),
        ledger_app,
    )
    .await
    .into_parts();
    let orders_source = FakeCaSource::new(ca.clone(), id(ORDERS), TTL).unwrap();
    let state = Arc::new(Orders {
        tts: tts.clone(),
        ledger: client(&ca, ORDERS, LEDGER),
        ledger_addr,
    });
    let orders_app = Router::new()
        .route("/orders/{id}", get(order))
        .route("/forward/{id}", get(forward))
        .route_layer(AuthorizeLayer::new(
            Authorizer::builder(Policy::from_toml_str(ORDERS_POLICY, "orders.toml").unwrap())
                .target("orders")
                .build(),
        ))
        .layer(layer(orders_source.clone(), ORDERS, &tts, "orders"))
        .with_state(state);
    let (orders, stop_orders) = common::serve(
        ZtServer::builder(orders_source).build().unwrap(),
        orders_app,
    )
    .await
    .into_parts();
    Chain {
        ca,
        tts,
        orders,
        _stop: vec![stop_ledger, stop_orders],
    }
}

async fn gateway_calls(chain: &Chain, path: &str, token: &str) -> (u16, String) {
    let http = client(&chain.ca, GATEWAY, ORDERS);
    let response = http
        .get(format!("https://{}{path}", chain.orders))
        .header(TXN_TOKEN_HEADER, token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn mint(chain: &Chain, txn: &str, requester: &str) -> String {
    chain
        .tts
        .mint_txn_token(
            txn,
            "alice@example.com",
            &["trade.stocks"],
            &id(requester),
            Some(json!({"action": "BUY", "ticker": "MSFT"})),
            Some(json!({"req_ip": "198.51.100.7"})),
        )
        .unwrap()
}

fn by_service(events: &[Fields], service: &str) -> Vec<Fields> {
    events
        .iter()
        .filter(|e| e.get("target_service").map(String::as_str) == Some(service))
        .cloned()
        .collect()
}

#[tokio::test]
async fn each_hop_binds_the_txn_token_to_its_caller_and_audits_the_txn() {
    let (audit, _guard) = AuditCapture::install();
    let chain = chain().await;
    let token = mint(&chain, "txn-1001", GATEWAY);
    let (status, body) = gateway_calls(&chain, "/orders/5", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "ledger 200");

    let events = audit.take();
    let orders = by_service(&events, "orders");
    let ledger = by_service(&events, "ledger");
    assert_eq!((orders.len(), ledger.len()), (1, 1), "{events:?}");
    assert_eq!(field(&orders[0], "decision"), "allow");
    assert_eq!(field(&orders[0], "caller"), GATEWAY);
    assert_eq!(field(&orders[0], "txn"), "txn-1001");
    assert_eq!(field(&ledger[0], "decision"), "allow");
    assert_eq!(field(&ledger[0], "caller"), ORDERS);
    assert_eq!(field(&ledger[0], "txn"), "txn-1001");
    assert_eq!(field(&ledger[0], "task"), "-");
    for event in &events {
        assert!(event.values().all(|v| !v.contains("eyJ")), "{event:?}");
    }
}

#[tokio::test]
async fn a_txn_token_forwarded_unchanged_is_refused_at_the_next_hop() {
    let (audit, _guard) = AuditCapture::install();
    let chain = chain().await;
    let token = mint(&chain, "txn-1002", GATEWAY);
    let (status, body) = gateway_calls(&chain, "/forward/5", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "ledger 401");
    let ledger = by_service(&audit.take(), "ledger");
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(field(&ledger[0], "decision"), "deny");
    assert_eq!(field(&ledger[0], "reason"), "txn-token:requester-mismatch");
}

#[tokio::test]
async fn a_token_naming_another_requester_or_none_is_refused_at_the_first_hop() {
    let (audit, _guard) = AuditCapture::install();
    let chain = chain().await;
    let token = mint(&chain, "txn-1003", ORDERS);
    assert_eq!(gateway_calls(&chain, "/orders/5", &token).await.0, 401);
    let untyped = chain
        .tts
        .sign(
            &json!({"txn": "t", "sub": "alice", "aud": "example.org", "scope": "a",
                      "req_wl": GATEWAY, "iat": 1, "exp": 4_000_000_000_u64}),
        )
        .unwrap();
    assert_eq!(gateway_calls(&chain, "/orders/5", &untyped).await.0, 401);
    let http = client(&chain.ca, GATEWAY, ORDERS);
    let missing = http
        .get(format!("https://{}/orders/5", chain.orders))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    let reasons: Vec<String> = by_service(&audit.take(), "orders")
        .iter()
        .map(|e| field(e, "reason").to_owned())
        .collect();
    assert_eq!(
        reasons,
        [
            "txn-token:requester-mismatch",
            "txn-token:bad-typ",
            "txn-token:missing"
        ]
    );
}
