//! CRLs made by `openssl ca -gencrl` with a real `openssl ca` configuration
//! and index (not rcgen, not the fake CA), judged by zt:
//!
//! - a CRL of an intermediate CA listing a leaf (delivered with the
//!   intermediate's certificate): that leaf is refused at the handshake of a
//!   real zt server, its sibling is served;
//! - a CRL of the root listing the intermediate: every leaf below it is
//!   refused at the handshake;
//! - a CRL signed by another CA with the same name: refused with a typed
//!   error, nothing changes;
//! - an expired CRL (`nextUpdate` in the past): its entries stay revoked and
//!   the rest is accepted (fail open, the default), everything of its issuer
//!   is refused once the trust domain is set to fail closed;
//! - a CRL listing a serial with a leading zero byte (`00:8f:…`, as openssl
//!   encodes a serial with the high bit set).
//!
//! `openssl` must be installed: without it the test fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::get;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zt_client::ZtClient;
use zt_core::bundle::{BundleSet, TrustBundle};
use zt_core::crl::{Crl, CrlError, StaleCrlPolicy};
use zt_core::revocation::{RevocationError, Revocations, Revoked};
use zt_core::source::StaticSource;
use zt_core::svid::X509Svid;
use zt_core::x509::{Usage, VerifiedSvid, verify_x509_svid};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::ZtServer;

mod common;

const TD: &str = "openssl.test";

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `openssl` ({e}); install it (.ci/run does) — this test does not skip"
            )
        })
}

fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let output = openssl(dir, args);
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An `openssl ca` directory: key, certificate, index, serial and CRL
/// number files, and a configuration.
struct OpensslCa {
    dir: PathBuf,
    /// Leaves of an intermediate present it in their chain.
    is_intermediate: bool,
}

const REQ_CONFIG: &str = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n";

impl OpensslCa {
    fn config(dir: &Path) -> String {
        format!(
            r#"[ca]
default_ca = ca_default

[ca_default]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir/issued
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 1
default_crl_days = 1
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none

[policy_any]
organizationName = optional
commonName = supplied

[root_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
subjectAltName = URI:spiffe://{TD}

[intermediate_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = URI:spiffe://{TD}

[crl_ext]
authorityKeyIdentifier = keyid:always
"#,
            dir = dir.display()
        )
    }

    fn prepare(dir: &Path) {
        std::fs::create_dir_all(dir.join("issued")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        std::fs::write(dir.join("ca.cnf"), Self::config(dir)).unwrap();
        std::fs::write(dir.join("req.cnf"), REQ_CONFIG).unwrap();
        new_key(dir, "ca.key");
    }

    /// A self-signed root named `O=openssl test, CN=root`.
    fn root(dir: &Path) -> Self {
        Self::prepare(dir);
        std::fs::write(
            dir.join("req.cnf"),
            format!("{REQ_CONFIG}O = openssl test\nCN = root\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("root.cnf"),
            format!(
                "{}\n[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = root_ext\n[dn]\nO = openssl test\nCN = root\n",
                Self::config(dir)
            ),
        )
        .unwrap();
        openssl_ok(
            dir,
            &[
                "req", "-x509", "-new", "-config", "root.cnf", "-key", "ca.key", "-days", "2",
                "-sha256", "-out", "ca.pem",
            ],
        );
        Self {
            dir: dir.to_path_buf(),
            is_intermediate: false,
        }
    }

    /// An intermediate CA in `dir`, signed by `self` with `openssl ca`.
    fn intermediate(&self, dir: &Path) -> Self {
        Self::prepare(dir);
        // Its leaves' serials start where the root's never go, so that a
        // test can give a root leaf the same serial on purpose.
        std::fs::write(dir.join("serial"), "5000\n").unwrap();
        let csr = dir.join("ca.csr");
        std::fs::write(
            dir.join("req.cnf"),
            format!("{REQ_CONFIG}O = openssl test\nCN = intermediate\n"),
        )
        .unwrap();
        openssl_ok(
            dir,
            &[
                "req", "-new", "-config", "req.cnf", "-key", "ca.key", "-out", "ca.csr",
            ],
        );
        self.sign(&csr, &dir.join("ca.pem"), "intermediate_ext", None);
        Self {
            dir: dir.to_path_buf(),
            is_intermediate: true,
        }
    }

    /// Signs the request `csr` into `out` with the extension section
    /// `extensions` (of this CA's configuration, or of `extfile`).
    fn sign(&self, csr: &Path, out: &Path, extensions: &str, extfile: Option<&Path>) {
        let csr = csr.display().to_string();
        let out = out.display().to_string();
        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-config",
            "ca.cnf",
            "-in",
            &csr,
            "-out",
            &out,
            "-extensions",
            extensions,
        ];
        let extfile = extfile.map(|p| p.display().to_string());
        if let Some(extfile) = &extfile {
            args.extend(["-extfile", extfile.as_str()]);
        }
        openssl_ok(&self.dir, &args);
    }

    /// Issues a leaf for `spiffe://openssl.test/<name>` with the next
    /// serial `serial_hex` if given; returns it as an SVID with its key.
    fn leaf(&self, name: &str, serial_hex: Option<&str>) -> X509Svid {
        if let Some(serial) = serial_hex {
            std::fs::write(self.dir.join("serial"), format!("{serial}\n")).unwrap();
        }
        let key = format!("{name}.key");
        new_key(&self.dir, &key);
        std::fs::write(
            self.dir.join(format!("{name}.req.cnf")),
            format!("{REQ_CONFIG}O = openssl test workload\nCN = {name}\n"),
        )
        .unwrap();
        openssl_ok(
            &self.dir,
            &[
                "req",
                "-new",
                "-config",
                &format!("{name}.req.cnf"),
                "-key",
                &key,
                "-out",
                &format!("{name}.csr"),
            ],
        );
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth,serverAuth\nauthorityKeyIdentifier = keyid\nsubjectAltName = URI:spiffe://{TD}/{name}\n"
            ),
        )
        .unwrap();
        let pem = self.dir.join(format!("{name}.pem"));
        self.sign(
            &self.dir.join(format!("{name}.csr")),
            &pem,
            "leaf",
            Some(&ext),
        );
        let mut chain = vec![read_cert(&pem)];
        if self.is_intermediate {
            chain.push(self.cert());
        }
        let key = PrivateKeyDer::from_pem_file(self.dir.join(&key)).unwrap();
        X509Svid::from_der(chain, key).unwrap()
    }

    /// Revokes the certificate in `pem` in this CA's index.
    fn revoke(&self, pem: &Path) {
        let pem = pem.display().to_string();
        openssl_ok(
            &self.dir,
            &["ca", "-batch", "-config", "ca.cnf", "-revoke", &pem],
        );
    }

    /// `openssl ca -gencrl` into `out`, with extra arguments.
    fn gencrl(&self, out: &str, extra: &[&str]) -> PathBuf {
        let mut args = vec![
            "ca", "-batch", "-config", "ca.cnf", "-gencrl", "-crlexts", "crl_ext", "-out", out,
        ];
        args.extend(extra);
        openssl_ok(&self.dir, &args);
        self.dir.join(out)
    }

    fn cert(&self) -> CertificateDer<'static> {
        read_cert(&self.dir.join("ca.pem"))
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

fn new_key(dir: &Path, name: &str) {
    openssl_ok(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ],
    );
}

fn read_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn td() -> TrustDomain {
    TrustDomain::new(TD).unwrap()
}

/// The openssl CAs: a root, an intermediate, and leaves of both.
struct Pki {
    _dir: tempfile::TempDir,
    root: OpensslCa,
    intermediate: OpensslCa,
    bundles: BundleSet,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let root = OpensslCa::root(&dir.path().join("root"));
    let intermediate = root.intermediate(&dir.path().join("intermediate"));
    let bundle = TrustBundle::from_pem(td(), &std::fs::read(root.path("ca.pem")).unwrap()).unwrap();
    Pki {
        _dir: dir,
        root,
        intermediate,
        bundles: BundleSet::new().with(bundle),
    }
}

fn verified(svid: &X509Svid, bundles: &BundleSet) -> VerifiedSvid {
    verify_x509_svid(svid.chain(), bundles, SystemTime::now(), Usage::ClientAuth).unwrap()
}

/// A zt server in `example.org` (fake CA) that federates the openssl trust
/// domain and checks `revocations` at every handshake.
struct Server {
    running: common::Running,
    fake: FakeCa,
}

async fn server(pki: &Pki, revocations: &Revocations) -> Server {
    server_with(
        pki,
        revocations,
        Router::new().route("/", get(|| async { "ok" })),
    )
    .await
}

/// As [`server`], serving `router`.
async fn server_with(pki: &Pki, revocations: &Revocations, router: Router) -> Server {
    let fake = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let billing = FakeCaSource::new(
        fake.clone(),
        SpiffeId::new("spiffe://example.org/billing").unwrap(),
        Duration::from_secs(300),
    )
    .unwrap();
    billing
        .add_federated_bundle(pki.bundles.get(&td()).unwrap().as_ref().clone())
        .unwrap();
    let server = ZtServer::builder(billing)
        .revocations(revocations.clone())
        .build()
        .unwrap();
    Server {
        running: common::serve(server, router).await,
        fake,
    }
}

/// Calls the server once over a fresh connection as `svid`; `true` if it
/// answered 200.
async fn served(server: &Server, svid: &X509Svid) -> bool {
    let http = http_client(server, svid);
    status(&http, server).await == Some(200)
}

/// A client presenting `svid`; its connections are kept alive.
fn http_client(server: &Server, svid: &X509Svid) -> reqwest::Client {
    let bundles = BundleSet::new().with(server.fake.bundle());
    let source = Arc::new(StaticSource::new(svid.clone(), bundles));
    let client = ZtClient::builder(source)
        .pin_server(
            "spiffe://example.org/billing"
                .parse::<zt_core::matcher::IdMatcher>()
                .unwrap(),
        )
        .build()
        .unwrap();
    client.reqwest_client().unwrap()
}

/// The status of `GET /`, or `None` if no response came (handshake
/// refused).
async fn status(http: &reqwest::Client, server: &Server) -> Option<u16> {
    http.get(format!("https://{}/", server.running.addr))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn an_intermediate_crl_listing_a_leaf_refuses_it_at_the_handshake() {
    let pki = pki();
    let revoked = pki.intermediate.leaf("revoked", None);
    let sibling = pki.intermediate.leaf("sibling", None);
    // Issued by the root with the revoked leaf's serial: another issuer,
    // another certificate.
    let namesake = pki.root.leaf("namesake", Some("5000"));
    assert_eq!(namesake.serial(), revoked.serial());
    let revocations = Revocations::new();
    let server = server(&pki, &revocations).await;
    assert!(served(&server, &revoked).await, "served before the CRL");

    pki.intermediate
        .revoke(&pki.intermediate.path("revoked.pem"));
    let crl = pki.intermediate.gencrl("crl.pem", &[]);
    // The CRL alone: its signer is not in the bundle.
    let alone = revocations
        .add_crl_file_with_bundles(&crl, Arc::new(pki.bundles.clone()))
        .unwrap_err();
    assert!(
        matches!(
            alone,
            RevocationError::Crl(CrlError::UntrustedSigner { .. })
        ),
        "{alone}"
    );
    assert!(revocations.crls().is_empty());

    // With the intermediate's certificate in the same file: accepted.
    let mut with_issuer = std::fs::read_to_string(&crl).unwrap();
    with_issuer.push_str(&std::fs::read_to_string(pki.intermediate.path("ca.pem")).unwrap());
    let file = pki.intermediate.path("crl-with-issuer.pem");
    std::fs::write(&file, with_issuer).unwrap();
    let changes = revocations.changes();
    let before = *changes.borrow();
    revocations
        .add_crl_file_with_bundles(&file, Arc::new(pki.bundles.clone()))
        .unwrap();
    assert_eq!(*changes.borrow(), before + 1);

    assert_eq!(
        revocations.check_svid(&verified(&revoked, &pki.bundles)),
        Some(Revoked::Crl)
    );
    assert_eq!(
        revocations.check_svid(&verified(&sibling, &pki.bundles)),
        None
    );
    // Scoped by issuer: the intermediate's CRL does not revoke the root's
    // certificate with the same serial. `check`, which does not see the
    // issuer, errs on refusal.
    let namesake_verified = verified(&namesake, &pki.bundles);
    assert_eq!(revocations.check_svid(&namesake_verified), None);
    assert_eq!(
        revocations.check(namesake_verified.id(), namesake_verified.serial()),
        Some(Revoked::Crl)
    );
    assert!(!served(&server, &revoked).await, "revoked leaf was served");
    assert!(served(&server, &sibling).await, "sibling was refused");
    assert!(served(&server, &namesake).await, "namesake was refused");
}

#[tokio::test]
async fn a_root_crl_listing_the_intermediate_refuses_every_leaf_below_it() {
    let pki = pki();
    let below = pki.intermediate.leaf("below", None);
    let direct = pki.root.leaf("direct", None);
    let revocations = Revocations::new();
    let server = server(&pki, &revocations).await;
    assert!(served(&server, &below).await);

    pki.root.revoke(&pki.intermediate.path("ca.pem"));
    let crl = pki.root.gencrl("crl.pem", &[]);
    revocations
        .add_crl_file_with_bundles(&crl, Arc::new(pki.bundles.clone()))
        .unwrap();
    let crls: Vec<_> = revocations.crls().iter().cloned().collect();
    assert_eq!(crls.len(), 1);
    assert_eq!(crls[0].issuer_name(), "O=openssl test, CN=root");
    assert!(crls[0].number().is_some(), "a v2 CRL with a CRL number");

    let below_verified = verified(&below, &pki.bundles);
    assert_eq!(revocations.check_svid(&below_verified), Some(Revoked::Crl));
    // The leaf's own serial is not listed: only the chain check sees it.
    assert_eq!(
        revocations.check(below_verified.id(), below_verified.serial()),
        None
    );
    assert_eq!(
        revocations.check_svid(&verified(&direct, &pki.bundles)),
        None
    );
    assert!(
        !served(&server, &below).await,
        "leaf of a revoked intermediate was served"
    );
    assert!(served(&server, &direct).await);
}

#[test]
fn a_crl_signed_by_another_ca_with_the_same_name_changes_nothing() {
    let pki = pki();
    let victim = pki.root.leaf("victim", Some("2000"));
    let other_dir = tempfile::tempdir().unwrap();
    let impostor = OpensslCa::root(other_dir.path());
    // The impostor issues a certificate with the victim's serial and
    // revokes it: its CRL lists the victim's serial under the same name.
    let decoy = impostor.leaf("decoy", Some("2000"));
    assert_eq!(decoy.serial(), victim.serial());
    impostor.revoke(&impostor.path("decoy.pem"));
    let crl = impostor.gencrl("crl.pem", &[]);

    let revocations = Revocations::new();
    let changes = revocations.changes();
    let err = revocations
        .add_crl_file_with_bundles(&crl, Arc::new(pki.bundles.clone()))
        .unwrap_err();
    match &err {
        RevocationError::Crl(CrlError::UntrustedSigner { issuer, reason, .. }) => {
            assert_eq!(issuer, "O=openssl test, CN=root");
            assert!(reason.contains("signature does not verify"), "{reason}");
        }
        other => panic!("expected UntrustedSigner, got {other}"),
    }
    assert_eq!(*changes.borrow(), 0);
    assert!(revocations.crls().is_empty());
    assert_eq!(
        revocations.check_svid(&verified(&victim, &pki.bundles)),
        None
    );
    assert_eq!(revocations.last_error(), Some(err));
    // Sanity: the impostor's CRL does verify against the impostor's root.
    let theirs = BundleSet::new().with(
        TrustBundle::from_pem(td(), &std::fs::read(impostor.path("ca.pem")).unwrap()).unwrap(),
    );
    Crl::verify_all(
        &std::fs::read(&crl).unwrap(),
        &theirs,
        SystemTime::now(),
        "impostor",
    )
    .unwrap();
}

#[test]
fn an_expired_crl_keeps_its_entries_and_fails_closed_only_when_asked() {
    let pki = pki();
    let listed = pki.root.leaf("listed", None);
    let other = pki.root.leaf("other", None);
    pki.root.revoke(&pki.root.path("listed.pem"));
    let crl = pki.root.gencrl(
        "expired.pem",
        &[
            "-crl_lastupdate",
            "20200101000000Z",
            "-crl_nextupdate",
            "20200102000000Z",
        ],
    );
    let revocations = Revocations::new();
    revocations
        .add_crl_file_with_bundles(&crl, Arc::new(pki.bundles.clone()))
        .unwrap();
    let stale = revocations.stale_crls();
    assert_eq!(stale.len(), 1);
    match revocations.last_error() {
        Some(RevocationError::Crl(CrlError::Stale { issuer, .. })) => {
            assert_eq!(issuer, "O=openssl test, CN=root");
        }
        other => panic!("expected a stale report, got {other:?}"),
    }
    let listed = verified(&listed, &pki.bundles);
    let other = verified(&other, &pki.bundles);
    assert_eq!(revocations.check_svid(&listed), Some(Revoked::Crl));
    assert_eq!(revocations.check_svid(&other), None, "fail open by default");

    revocations.set_stale_crl_policy(td(), StaleCrlPolicy::RefuseIssued);
    assert_eq!(revocations.check_svid(&listed), Some(Revoked::Crl));
    assert_eq!(revocations.check_svid(&other), Some(Revoked::CrlStale));
    // Another trust domain's policy does not apply.
    revocations.set_stale_crl_policy(td(), StaleCrlPolicy::KeepEnforcing);
    revocations.set_stale_crl_policy(
        TrustDomain::new("example.org").unwrap(),
        StaleCrlPolicy::RefuseIssued,
    );
    assert_eq!(revocations.check_svid(&other), None);
}

#[test]
fn a_serial_with_a_leading_zero_byte_is_matched() {
    let pki = pki();
    // The high bit of 0x8f makes DER pad the serial with 0x00.
    let padded = pki.root.leaf("padded", Some("8F0102030405060708"));
    let neighbour = pki.root.leaf("neighbour", Some("0F0102030405060708"));
    let text = openssl_ok(
        &pki.root.dir,
        &["x509", "-in", "padded.pem", "-noout", "-serial"],
    );
    assert_eq!(text.trim(), "serial=8F0102030405060708");
    let der = padded.chain()[0].as_ref();
    let pad = der.windows(11).any(|w| {
        w == [
            0x02, 0x0a, 0x00, 0x8f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        ]
    });
    assert!(pad, "the DER serial carries a 0x00 pad");
    assert_eq!(padded.serial(), [0x8f, 1, 2, 3, 4, 5, 6, 7, 8]);

    pki.root.revoke(&pki.root.path("padded.pem"));
    let crl = pki.root.gencrl("crl.pem", &[]);
    let crl_text = openssl_ok(&pki.root.dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(crl_text.contains("8F0102030405060708"), "{crl_text}");
    let revocations = Revocations::new();
    revocations
        .add_crl_file_with_bundles(&crl, Arc::new(pki.bundles.clone()))
        .unwrap();
    let crls: Vec<_> = revocations.crls().iter().cloned().collect();
    assert!(crls[0].lists(&[0x00, 0x8f, 1, 2, 3, 4, 5, 6, 7, 8]));
    assert_eq!(
        revocations.check_svid(&verified(&padded, &pki.bundles)),
        Some(Revoked::Crl)
    );
    assert_eq!(
        revocations.check(padded.id(), &[0x00, 0x8f, 1, 2, 3, 4, 5, 6, 7, 8]),
        Some(Revoked::Crl)
    );
    assert_eq!(
        revocations.check_svid(&verified(&neighbour, &pki.bundles)),
        None
    );
}

#[tokio::test]
async fn a_crl_loaded_while_a_connection_is_open_refuses_its_next_request() {
    let pki = pki();
    let caller = pki.intermediate.leaf("caller", None);
    let namesake = pki.root.leaf("namesake", Some("5000"));
    assert_eq!(namesake.serial(), caller.serial());
    let revocations = Revocations::new();
    let policy = zt_authz::policy::Policy::from_toml_str(
        r#"
version = "crl-1"

[[rule]]
id = "openssl-workloads"
effect = "allow"
callers = ["spiffe://openssl.test/**"]
http = [{ method = "GET", path = "/" }]
"#,
        "policy.toml",
    )
    .unwrap();
    let authorizer = zt_authz::Authorizer::builder(policy)
        .target("billing")
        .revocations(revocations.clone())
        .build();
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .route_layer(zt_server::AuthorizeLayer::new(authorizer));
    // The list is the authorizer's only: the TLS layer, which would end the
    // open connection and refuse new handshakes (`tests/live.rs`), does not
    // know it, so each request is judged by `AuthorizeLayer`.
    let server = server_with(&pki, &Revocations::new(), router).await;
    let open = http_client(&server, &caller);
    let other = http_client(&server, &namesake);
    assert_eq!(status(&open, &server).await, Some(200));
    assert_eq!(status(&other, &server).await, Some(200));

    pki.intermediate
        .revoke(&pki.intermediate.path("caller.pem"));
    let mut file = std::fs::read_to_string(pki.intermediate.gencrl("crl.pem", &[])).unwrap();
    file.push_str(&std::fs::read_to_string(pki.intermediate.path("ca.pem")).unwrap());
    let path = pki.intermediate.path("crl-with-issuer.pem");
    std::fs::write(&path, file).unwrap();
    revocations
        .add_crl_file_with_bundles(&path, Arc::new(pki.bundles.clone()))
        .unwrap();

    // A 403 (not a failed handshake) is the open connection answering.
    assert_eq!(status(&open, &server).await, Some(403));
    // The root's certificate with the same serial is not the intermediate's.
    assert_eq!(status(&other, &server).await, Some(200));
    assert_eq!(
        status(&http_client(&server, &caller), &server).await,
        Some(403)
    );
}

#[tokio::test]
async fn a_crl_loaded_into_the_servers_list_ends_the_open_connection_it_lists() {
    let (audit, _guard) = zt_tests::audit_capture::AuditCapture::install();
    let pki = pki();
    let caller = pki.intermediate.leaf("caller", None);
    let namesake = pki.root.leaf("namesake", Some("5000"));
    assert_eq!(namesake.serial(), caller.serial());
    let revocations = Revocations::new();
    let router = Router::new().route("/", get(|| async { "ok" }));
    let server = server_with(&pki, &revocations, router).await;
    let listed = http_client(&server, &caller);
    let other = http_client(&server, &namesake);
    assert_eq!(status(&listed, &server).await, Some(200));
    assert_eq!(status(&other, &server).await, Some(200));

    pki.intermediate
        .revoke(&pki.intermediate.path("caller.pem"));
    let mut file = std::fs::read_to_string(pki.intermediate.gencrl("crl.pem", &[])).unwrap();
    file.push_str(&std::fs::read_to_string(pki.intermediate.path("ca.pem")).unwrap());
    let path = pki.intermediate.path("crl-with-issuer.pem");
    std::fs::write(&path, file).unwrap();
    revocations
        .add_crl_file_with_bundles(&path, Arc::new(pki.bundles.clone()))
        .unwrap();

    // The server's trust monitor ends the listed caller's open connection
    // (polled with a deadline: it acts on its own task).
    let ended = |peer: &str| {
        audit
            .connection_events()
            .into_iter()
            .filter(|e| e.get("peer").map(String::as_str) == Some(peer))
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ended("spiffe://openssl.test/caller").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the listed caller's connection stayed open"
        );
        tokio::task::yield_now().await;
    }
    let event = &ended("spiffe://openssl.test/caller")[0];
    assert_eq!(event.get("reason").map(String::as_str), Some("revoked"));
    // The root's certificate with the same serial keeps its connection.
    assert!(ended("spiffe://openssl.test/namesake").is_empty());
    assert_eq!(status(&other, &server).await, Some(200));
    // And the listed caller cannot come back.
    assert_eq!(status(&listed, &server).await, None);
}
