//! A development OIDC issuer: discovery and JWKS served over HTTPS on
//! loopback, tokens shaped like GitHub Actions' and Kubernetes
//! service-account tokens, key rotation, and JWKS faults for negative tests.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use zt_core::time::{SharedClock, system_clock};

use crate::FakeCaError;
use crate::jws::Es256Key;

/// How long tokens minted by [`DevOidcIssuer`] are valid unless told
/// otherwise.
pub const DEFAULT_OIDC_TOKEN_TTL: Duration = Duration::from_secs(300);

/// What the JWKS endpoint of a [`DevOidcIssuer`] serves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksFault {
    /// The issuer's public keys, promptly.
    None,
    /// The keys, after waiting this long.
    Slow(Duration),
    /// A syntactically valid JWKS padded to at least this many bytes.
    Huge(usize),
    /// A body that is not JSON.
    Malformed,
    /// A JWKS holding a symmetric (`kty` `oct`) key next to the real keys.
    Symmetric,
    /// HTTP 503 with no keys: an outage.
    Unavailable,
}

struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    signer: Es256Key,
    jwk: Value,
}

impl SigningKey {
    fn generate() -> Result<Self, FakeCaError> {
        let jwt_err = |reason: String| FakeCaError::Jwt { reason };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crate::cert_err)?;
        let point = key.public_key_raw();
        let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
            return Err(jwt_err(
                "the generated key is not an uncompressed P-256 point".into(),
            ));
        };
        let kid = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(point);
            format!("oidc-{}", URL_SAFE_NO_PAD.encode(&digest[..12]))
        };
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y), "kid": kid,
        });
        let pkcs8 = key.serialize_der();
        Ok(Self {
            signer: Es256Key::from_pkcs8(&pkcs8)?,
            kid,
            pkcs8,
            jwk,
        })
    }
}

struct State {
    /// Published keys; the last one signs.
    keys: Vec<SigningKey>,
    fault: JwksFault,
    discovery_issuer: Option<String>,
    max_age: Option<u64>,
}

struct Inner {
    issuer: String,
    root_der: CertificateDer<'static>,
    state: Mutex<State>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    clock: SharedClock,
}

/// A development OIDC provider on `https://127.0.0.1:{port}`.
///
/// It serves `/.well-known/openid-configuration` and `/jwks` over TLS with a
/// server certificate from its own test root ([`root_der`](Self::root_der)),
/// signs ES256 tokens with a key it publishes, counts JWKS fetches, rotates
/// its key on request and can be told to misbehave ([`JwksFault`]). The
/// server stops when the issuer is dropped.
pub struct DevOidcIssuer {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl fmt::Debug for DevOidcIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevOidcIssuer")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

impl Drop for DevOidcIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DevOidcIssuer {
    /// Starts an issuer on 127.0.0.1 (port 0) minting on the system clock.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Certificate`] or [`FakeCaError::Jwt`] if keys or
    /// certificates cannot be made, [`FakeCaError::Io`] if the port
    /// cannot be bound.
    pub async fn start() -> Result<Self, FakeCaError> {
        Self::start_with_clock(system_clock()).await
    }

    /// Starts an issuer whose tokens take `iat`/`nbf`/`exp` from `clock`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with_clock(clock: SharedClock) -> Result<Self, FakeCaError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| io_err("binding 127.0.0.1:0", &e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io_err("reading the bound address", &e))?
            .port();
        let issuer = format!("https://127.0.0.1:{port}");

        let (root_der, chain, key) = tls_material()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(&e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| tls_err(&e))?;
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let inner = Arc::new(Inner {
            issuer,
            root_der,
            state: Mutex::new(State {
                keys: vec![SigningKey::generate()?],
                fault: JwksFault::None,
                discovery_issuer: None,
                max_age: None,
            }),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            clock,
        });
        let served = Arc::clone(&inner);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let inner = Arc::clone(&served);
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_one(tls, &inner).await;
                    }
                });
            }
        });
        Ok(Self { inner, task })
    }

    /// The issuer URL (`https://127.0.0.1:{port}`), the `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The JWKS URL that discovery names.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.inner.issuer)
    }

    /// The DER of the test root that signed the server certificate; a
    /// client must trust it to reach the issuer.
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.inner.root_der.clone()
    }

    /// How many times the JWKS endpoint has been requested.
    pub fn jwks_fetches(&self) -> usize {
        self.inner.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document has been requested.
    pub fn discovery_fetches(&self) -> usize {
        self.inner.discovery_fetches.load(Ordering::SeqCst)
    }

    /// The `kid` of the key that signs now.
    pub fn key_id(&self) -> String {
        self.with_state(|s| s.keys.last().map(|k| k.kid.clone()).unwrap_or_default())
    }

    /// The signing key as a PKCS#8 PEM (`PRIVATE KEY`), so an outside
    /// library can sign tokens the issuer's JWKS verifies.
    pub fn private_key_pem(&self) -> String {
        let der = self.with_state(|s| s.keys.last().map(|k| k.pkcs8.clone()).unwrap_or_default());
        pem::encode(&pem::Pem::new("PRIVATE KEY", der))
    }

    /// Replaces the signing key with a fresh one. With `keep_old`, the old
    /// public key stays in the JWKS (tokens it signed keep verifying);
    /// without, it is dropped. Returns the new `kid`.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] or [`FakeCaError::Certificate`] if no key can
    /// be generated.
    pub fn rotate(&self, keep_old: bool) -> Result<String, FakeCaError> {
        let key = SigningKey::generate()?;
        let kid = key.kid.clone();
        self.with_state(|s| {
            if !keep_old {
                s.keys.clear();
            }
            s.keys.push(key);
        });
        Ok(kid)
    }

    /// Makes the JWKS endpoint misbehave (or behave again with
    /// [`JwksFault::None`]).
    pub fn set_fault(&self, fault: JwksFault) {
        self.with_state(|s| s.fault = fault);
    }

    /// Makes discovery name another `issuer` (`None`: its own).
    pub fn set_discovery_issuer(&self, issuer: Option<String>) {
        self.with_state(|s| s.discovery_issuer = issuer);
    }

    /// Sends `Cache-Control: max-age={secs}` with the JWKS (`None`: no
    /// header).
    pub fn set_max_age(&self, secs: Option<u64>) {
        self.with_state(|s| s.max_age = secs);
    }

    /// Signs `claims` as they are (ES256, the current `kid`).
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] if signing fails.
    pub fn sign(&self, claims: &Value) -> Result<String, FakeCaError> {
        let (kid, signer) = self.with_state(|s| {
            s.keys
                .last()
                .map(|k| (k.kid.clone(), k.signer.clone()))
                .ok_or_else(|| FakeCaError::Jwt {
                    reason: "the issuer has no signing key".into(),
                })
        })?;
        signer.sign(&kid, Some("JWT"), claims)
    }

    /// Mints a token with `claims` plus `iss`, `aud`, `iat`, `nbf`, `exp`
    /// ([`DEFAULT_OIDC_TOKEN_TTL`]) and `jti`, unless `claims` sets them.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] if signing fails.
    pub fn mint(&self, audience: &str, claims: Map<String, Value>) -> Result<String, FakeCaError> {
        let now = self
            .inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut all = Map::new();
        all.insert("iss".into(), json!(self.inner.issuer));
        all.insert("aud".into(), json!(audience));
        all.insert("iat".into(), json!(now));
        all.insert("nbf".into(), json!(now));
        all.insert("exp".into(), json!(now + DEFAULT_OIDC_TOKEN_TTL.as_secs()));
        let mut jti = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti).map_err(
            |_| FakeCaError::Jwt {
                reason: "no randomness for jti".into(),
            },
        )?;
        all.insert("jti".into(), json!(URL_SAFE_NO_PAD.encode(jti)));
        all.extend(claims);
        self.sign(&Value::Object(all))
    }

    /// Mints a token shaped like a GitHub Actions OIDC token for a job of
    /// `repository` (`org/app`) deploying to `environment` from
    /// `refs/heads/main` on a GitHub-hosted runner.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] if signing fails.
    pub fn mint_github(
        &self,
        audience: &str,
        repository: &str,
        environment: &str,
    ) -> Result<String, FakeCaError> {
        self.mint(audience, github_actions_claims(repository, environment))
    }

    /// Mints a token shaped like a Kubernetes projected service-account
    /// token for `serviceaccount` in `namespace`.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Jwt`] if signing fails.
    pub fn mint_kubernetes(
        &self,
        audience: &str,
        namespace: &str,
        serviceaccount: &str,
    ) -> Result<String, FakeCaError> {
        self.mint(audience, kubernetes_claims(namespace, serviceaccount))
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

/// The claims GitHub Actions puts in a job's OIDC token (besides the
/// registered ones): `sub` `repo:{repository}:environment:{environment}`,
/// `repository`, `repository_owner`, `ref`, `environment`, `workflow`,
/// `runner_environment` (`github-hosted`), `job_workflow_ref`.
pub fn github_actions_claims(repository: &str, environment: &str) -> Map<String, Value> {
    let owner = repository.split('/').next().unwrap_or(repository);
    let Value::Object(map) = json!({
        "sub": format!("repo:{repository}:environment:{environment}"),
        "repository": repository,
        "repository_owner": owner,
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "environment": environment,
        "workflow": "deploy",
        "event_name": "push",
        "runner_environment": "github-hosted",
        "job_workflow_ref": format!("{repository}/.github/workflows/deploy.yml@refs/heads/main"),
    }) else {
        return Map::new();
    };
    map
}

/// The claims of a Kubernetes projected service-account token (besides
/// the registered ones): `sub` `system:serviceaccount:{ns}:{sa}` and the
/// nested `kubernetes.io` object with `namespace` and `serviceaccount`.
pub fn kubernetes_claims(namespace: &str, serviceaccount: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "sub": format!("system:serviceaccount:{namespace}:{serviceaccount}"),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": { "name": serviceaccount, "uid": "00000000-0000-4000-8000-000000000001" },
        },
    }) else {
        return Map::new();
    };
    map
}

fn io_err(what: &str, e: &std::io::Error) -> FakeCaError {
    FakeCaError::Io {
        path: what.to_owned(),
        reason: e.to_string(),
    }
}

fn tls_err(e: &rustls::Error) -> FakeCaError {
    FakeCaError::Certificate {
        reason: format!("TLS configuration: {e}"),
    }
}

type TlsMaterial = (
    CertificateDer<'static>,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
);

/// A test root and a server certificate for `127.0.0.1` and `localhost`.
fn tls_material() -> Result<TlsMaterial, FakeCaError> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crate::cert_err)?;
    let mut root_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "zt dev OIDC test root");
    root_params.distinguished_name = dn;
    root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = root_params
        .self_signed(&root_key)
        .map_err(crate::cert_err)?;

    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crate::cert_err)?;
    let mut leaf_params = CertificateParams::default();
    leaf_params.subject_alt_names = vec![
        SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        SanType::DnsName("localhost".try_into().map_err(crate::cert_err)?),
    ];
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let issuer = Issuer::from_params(&root_params, &root_key);
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(crate::cert_err)?;
    let root_der = root.der().clone();
    Ok((
        root_der.clone(),
        vec![leaf.der().clone(), root_der],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    ))
}

/// Reads one request head (bounded) and answers it, then closes.
async fn serve_one<S>(mut stream: S, inner: &Inner)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, headers, body) = respond(&path, inner).await;
    let mut response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for header in headers {
        response.push_str(&header);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(&body);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

async fn respond(path: &str, inner: &Inner) -> (&'static str, Vec<String>, Vec<u8>) {
    let (fault, discovery_issuer, max_age, keys) = {
        let s = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<Value> = s.keys.iter().map(|k| k.jwk.clone()).collect();
        (s.fault.clone(), s.discovery_issuer.clone(), s.max_age, keys)
    };
    match path {
        "/.well-known/openid-configuration" => {
            inner.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            let body = json!({
                "issuer": discovery_issuer.unwrap_or_else(|| inner.issuer.clone()),
                "jwks_uri": format!("{}/jwks", inner.issuer),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            });
            ("200 OK", Vec::new(), body.to_string().into_bytes())
        }
        "/jwks" => {
            inner.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let headers: Vec<String> = max_age
                .map(|s| format!("cache-control: max-age={s}"))
                .into_iter()
                .collect();
            match fault {
                JwksFault::None => (
                    "200 OK",
                    headers,
                    json!({ "keys": keys }).to_string().into_bytes(),
                ),
                JwksFault::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    (
                        "200 OK",
                        headers,
                        json!({ "keys": keys }).to_string().into_bytes(),
                    )
                }
                JwksFault::Huge(size) => {
                    let padding = "x".repeat(size);
                    (
                        "200 OK",
                        headers,
                        json!({ "keys": keys, "padding": padding })
                            .to_string()
                            .into_bytes(),
                    )
                }
                JwksFault::Malformed => ("200 OK", headers, b"{\"keys\": [ not json".to_vec()),
                JwksFault::Symmetric => {
                    let mut keys = keys;
                    keys.push(json!({
                        "kty": "oct", "kid": "shared", "alg": "HS256",
                        "k": URL_SAFE_NO_PAD.encode(b"a shared secret of thirty-two b!"),
                    }));
                    (
                        "200 OK",
                        headers,
                        json!({ "keys": keys }).to_string().into_bytes(),
                    )
                }
                JwksFault::Unavailable => ("503 Service Unavailable", headers, b"{}".to_vec()),
            }
        }
        _ => ("404 Not Found", Vec::new(), b"{}".to_vec()),
    }
}
