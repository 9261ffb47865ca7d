//! Differential test of X.509-SVID verification: certificates made by the
//! `openssl` command (not the fake CA, not rcgen), one valid and one for
//! each SPIFFE rule a certificate can break, are judged twice:
//!
//! - by zt: [`zt_core::x509::verify_x509_svid`] against a bundle set built
//!   from the CA files, for client use;
//! - independently: `openssl verify -purpose sslclient` against the CA file
//!   of **the leaf's own trust domain**, plus the SPIFFE rules checked in
//!   this file from `openssl x509 -ext` output (exactly one URI SAN, a
//!   canonical SPIFFE ID with a path, leaf not a CA, keyUsage with
//!   digitalSignature and without keyCertSign or cRLSign).
//!
//! Every case must get its expected verdict from both, and zt's error must
//! be the variant of the rule broken. The test prints a table. `openssl`
//! must be installed (`.ci/run` installs it): without it the test fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use zt_core::TrustDomain;
use zt_core::bundle::{BundleSet, TrustBundle};
use zt_core::x509::{Usage, verify_x509_svid};

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

/// Certificates made with the `openssl` command in one directory.
struct Workshop {
    dir: PathBuf,
    serial: u32,
}

/// Extensions of a certificate, as lines of an openssl extension section.
struct Ext<'a> {
    basic_constraints: Option<&'a str>,
    key_usage: Option<&'a str>,
    extended_key_usage: Option<&'a str>,
    san: Option<&'a str>,
}

const LEAF: Ext<'static> = Ext {
    basic_constraints: Some("critical,CA:FALSE"),
    key_usage: Some("critical,digitalSignature"),
    extended_key_usage: Some("clientAuth,serverAuth"),
    san: Some("URI:spiffe://example.org/workload"),
};

const CA: Ext<'static> = Ext {
    basic_constraints: Some("critical,CA:TRUE"),
    key_usage: Some("critical,keyCertSign,cRLSign"),
    extended_key_usage: None,
    san: None,
};

/// Validity of a certificate: days from now, or fixed dates.
#[derive(Clone, Copy)]
enum Validity {
    Days(u32),
    Between(&'static str, &'static str),
}

impl Workshop {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            serial: 0x1000,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn key(&self, name: &str) -> String {
        let key = format!("{name}.key");
        openssl_ok(
            &self.dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
        key
    }

    fn ext_file(&self, name: &str, ext: &Ext<'_>) -> String {
        let mut text = String::from("[v3]\nsubjectKeyIdentifier = hash\n");
        for (key, value) in [
            ("basicConstraints", ext.basic_constraints),
            ("keyUsage", ext.key_usage),
            ("extendedKeyUsage", ext.extended_key_usage),
            ("subjectAltName", ext.san),
        ] {
            if let Some(value) = value {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        let file = format!("{name}.ext");
        std::fs::write(self.dir.join(&file), text).unwrap();
        file
    }

    /// A self-signed CA certificate `name.pem` with key `name.key`.
    fn root(&mut self, name: &str, subject: &str) {
        let key = self.key(name);
        let ext = self.ext_file(name, &CA);
        openssl_ok(
            &self.dir,
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                &key,
                "-subj",
                subject,
                "-days",
                "3650",
                "-config",
                &ext,
                "-extensions",
                "v3",
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }

    /// A certificate `name.pem` for a new key, signed by `issuer`
    /// (`issuer.pem` / `issuer.key`), with these extensions and validity.
    fn issue(&mut self, name: &str, issuer: &str, ext: &Ext<'_>, validity: Validity) {
        let key = self.key(name);
        let csr = format!("{name}.csr");
        openssl_ok(
            &self.dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/O=zt differential/CN={name}"),
                "-config",
                &self.path("req.cnf"),
                "-out",
                &csr,
            ],
        );
        let ext = self.ext_file(name, ext);
        self.serial += 1;
        let serial = format!("{:08x}", self.serial);
        std::fs::write(self.dir.join("serial"), format!("{serial}\n")).unwrap();
        let mut args = vec![
            "ca".to_owned(),
            "-batch".into(),
            "-notext".into(),
            "-config".into(),
            self.path("ca.cnf"),
            "-cert".into(),
            format!("{issuer}.pem"),
            "-keyfile".into(),
            format!("{issuer}.key"),
            "-in".into(),
            csr,
            "-extfile".into(),
            ext,
            "-extensions".into(),
            "v3".into(),
            "-out".into(),
            format!("{name}.pem"),
        ];
        match validity {
            Validity::Days(days) => args.extend(["-days".into(), days.to_string()]),
            Validity::Between(start, end) => args.extend([
                "-startdate".into(),
                start.into(),
                "-enddate".into(),
                end.into(),
            ]),
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl_ok(&self.dir, &args);
    }

    fn setup(&self) {
        std::fs::create_dir_all(self.dir.join("newcerts")).unwrap();
        std::fs::write(self.dir.join("index.txt"), "").unwrap();
        std::fs::write(
            self.dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = zt\n\
                 [zt]\n\
                 database = {dir}/index.txt\n\
                 new_certs_dir = {dir}/newcerts\n\
                 serial = {dir}/serial\n\
                 default_md = sha256\n\
                 policy = any\n\
                 unique_subject = no\n\
                 email_in_dn = no\n\
                 copy_extensions = none\n\
                 [any]\n\
                 organizationName = optional\n\
                 commonName = supplied\n",
                dir = self.dir.display()
            ),
        )
        .unwrap();
        std::fs::write(
            self.dir.join("req.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n",
        )
        .unwrap();
    }
}

/// One certificate chain to judge.
struct Case {
    name: &'static str,
    /// PEM files, leaf first.
    chain: Vec<&'static str>,
    /// `None`: must verify. `Some(variant)`: must be refused, and zt's
    /// error must be this `SvidError` variant.
    expect: Option<&'static str>,
}

fn case(name: &'static str, chain: &[&'static str], expect: Option<&'static str>) -> Case {
    Case {
        name,
        chain: chain.to_vec(),
        expect,
    }
}

/// The SPIFFE ID rules, checked on the text of a URI SAN as the SPIFFE ID
/// specification states them: scheme `spiffe` in lowercase, a trust domain
/// of lowercase letters, digits, `.`, `-` and `_`, and a non-empty path of
/// segments made of letters, digits, `.`, `-` and `_`, none empty, `.` or
/// `..`. Returns the trust domain.
fn spiffe_id_rules(uri: &str) -> Result<&str, String> {
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| format!("`{uri}` is not a lowercase spiffe:// URI"))?;
    let (trust_domain, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("`{uri}` has no path"))?;
    if trust_domain.is_empty()
        || !trust_domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(format!("trust domain `{trust_domain}` is not valid"));
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("path segment `{segment}` is not allowed"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!(
                "path segment `{segment}` has a forbidden character"
            ));
        }
    }
    Ok(trust_domain)
}

/// The value lines of each extension in `openssl x509 -noout -ext ...`
/// output, keyed by the extension's name.
fn extensions(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.contains(':') {
            let name = line.split(':').next().unwrap().trim().to_owned();
            map.insert(name.clone(), String::new());
            current = Some(name);
        } else if let Some(name) = &current {
            let value = map.get_mut(name).unwrap();
            if !value.is_empty() {
                value.push_str(", ");
            }
            value.push_str(line.trim());
        }
    }
    map
}

/// The independent verdict: openssl's chain verification against the CA
/// file of the leaf's trust domain, plus the SPIFFE rules on openssl's
/// rendering of the leaf's extensions.
fn openssl_verdict(
    dir: &Path,
    chain: &[&str],
    ca_files: &BTreeMap<&str, &str>,
) -> Result<(), String> {
    let leaf = chain[0];
    let text = openssl_ok(
        dir,
        &[
            "x509",
            "-in",
            leaf,
            "-noout",
            "-ext",
            "subjectAltName,basicConstraints,keyUsage",
        ],
    );
    let ext = extensions(&text);

    let uris: Vec<&str> = ext
        .get("X509v3 Subject Alternative Name")
        .map(|sans| {
            sans.split(", ")
                .filter_map(|name| name.strip_prefix("URI:"))
                .collect()
        })
        .unwrap_or_default();
    let [uri] = uris.as_slice() else {
        return Err(format!("{} URI SANs", uris.len()));
    };
    let trust_domain = spiffe_id_rules(uri)?;

    if ext
        .get("X509v3 Basic Constraints")
        .is_some_and(|bc| bc.contains("CA:TRUE"))
    {
        return Err("leaf is a CA".into());
    }
    let key_usage = ext.get("X509v3 Key Usage").ok_or("no keyUsage")?;
    if !key_usage.contains("Digital Signature") {
        return Err("keyUsage lacks digitalSignature".into());
    }
    if key_usage.contains("Certificate Sign") || key_usage.contains("CRL Sign") {
        return Err("keyUsage has keyCertSign or cRLSign".into());
    }

    let ca_file = ca_files
        .get(trust_domain)
        .ok_or_else(|| format!("no CA file for trust domain `{trust_domain}`"))?;
    let mut args = vec!["verify", "-CAfile", ca_file, "-purpose", "sslclient"];
    let bundle_path;
    if chain.len() > 1 {
        bundle_path = format!("untrusted-{leaf}");
        let mut pem = String::new();
        for file in &chain[1..] {
            pem.push_str(&std::fs::read_to_string(dir.join(file)).unwrap());
        }
        std::fs::write(dir.join(&bundle_path), pem).unwrap();
        args.extend(["-untrusted", &bundle_path]);
    }
    args.push(leaf);
    let output = openssl(dir, &args);
    if output.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let reason = said
            .lines()
            .find(|l| l.starts_with("error "))
            .unwrap_or(said.trim())
            .to_owned();
        Err(format!("openssl verify: {reason}"))
    }
}

fn pem_chain(dir: &Path, files: &[&str]) -> Vec<CertificateDer<'static>> {
    files
        .iter()
        .map(|file| CertificateDer::from_pem_file(dir.join(file)).unwrap())
        .collect()
}

fn variant(debug: &str) -> &str {
    debug.split([' ', '(', '{']).next().unwrap()
}

#[test]
fn zt_and_openssl_agree_on_every_svid_rule_violation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = Workshop::new(dir);
    w.setup();

    // Trust domains: example.org (root, and an intermediate under it) and
    // other.org; an impostor CA with example.org's subject name.
    w.root("ca", "/O=example.org/CN=zt differential root");
    w.root("other-ca", "/O=other.org/CN=zt differential root");
    w.root("impostor-ca", "/O=example.org/CN=zt differential root");
    w.issue("inter", "ca", &CA, Validity::Days(365));
    w.issue(
        "inter-no-certsign",
        "ca",
        &Ext {
            key_usage: Some("critical,digitalSignature"),
            ..CA
        },
        Validity::Days(365),
    );

    let days = Validity::Days(1);
    let san = |uri: &'static str| Ext {
        san: Some(uri),
        ..LEAF
    };
    w.issue("valid", "ca", &LEAF, days);
    w.issue("valid-via-intermediate", "inter", &LEAF, days);
    w.issue(
        "valid-no-eku",
        "ca",
        &Ext {
            extended_key_usage: None,
            ..LEAF
        },
        days,
    );
    w.issue(
        "valid-long-path",
        "ca",
        &san("URI:spiffe://example.org/ns/prod/sa/a-b_c.d"),
        days,
    );
    w.issue(
        "valid-with-dns-san",
        "ca",
        &san("URI:spiffe://example.org/workload, DNS:workload.example.org"),
        days,
    );
    w.issue(
        "other-domain-valid",
        "other-ca",
        &san("URI:spiffe://other.org/workload"),
        days,
    );
    w.issue("no-uri-san", "ca", &san("DNS:workload.example.org"), days);
    w.issue("no-san", "ca", &Ext { san: None, ..LEAF }, days);
    w.issue(
        "two-uri-sans",
        "ca",
        &san("URI:spiffe://example.org/a, URI:spiffe://example.org/b"),
        days,
    );
    w.issue(
        "non-spiffe-uri",
        "ca",
        &san("URI:https://example.org/workload"),
        days,
    );
    w.issue(
        "uppercase-scheme",
        "ca",
        &san("URI:SPIFFE://example.org/workload"),
        days,
    );
    w.issue(
        "uppercase-trust-domain",
        "ca",
        &san("URI:spiffe://EXAMPLE.org/workload"),
        days,
    );
    w.issue(
        "percent-encoded",
        "ca",
        &san("URI:spiffe://example.org/%61dmin"),
        days,
    );
    w.issue(
        "dot-dot-segment",
        "ca",
        &san("URI:spiffe://example.org/a/../admin"),
        days,
    );
    w.issue(
        "dot-segment",
        "ca",
        &san("URI:spiffe://example.org/./admin"),
        days,
    );
    w.issue(
        "empty-segment",
        "ca",
        &san("URI:spiffe://example.org/a//b"),
        days,
    );
    w.issue(
        "trailing-slash",
        "ca",
        &san("URI:spiffe://example.org/workload/"),
        days,
    );
    w.issue(
        "query",
        "ca",
        &san("URI:spiffe://example.org/workload?x=1"),
        days,
    );
    w.issue(
        "port",
        "ca",
        &san("URI:spiffe://example.org:8443/workload"),
        days,
    );
    w.issue(
        "userinfo",
        "ca",
        &san("URI:spiffe://admin@example.org/workload"),
        days,
    );
    w.issue("root-id", "ca", &san("URI:spiffe://example.org"), days);
    w.issue(
        "root-id-slash",
        "ca",
        &san("URI:spiffe://example.org/"),
        days,
    );
    w.issue(
        "leaf-is-ca",
        "ca",
        &Ext {
            basic_constraints: Some("critical,CA:TRUE"),
            ..LEAF
        },
        days,
    );
    w.issue(
        "no-key-usage",
        "ca",
        &Ext {
            key_usage: None,
            ..LEAF
        },
        days,
    );
    w.issue(
        "no-digital-signature",
        "ca",
        &Ext {
            key_usage: Some("critical,keyEncipherment"),
            ..LEAF
        },
        days,
    );
    w.issue(
        "key-cert-sign",
        "ca",
        &Ext {
            key_usage: Some("critical,digitalSignature,keyCertSign"),
            ..LEAF
        },
        days,
    );
    w.issue(
        "crl-sign",
        "ca",
        &Ext {
            key_usage: Some("critical,digitalSignature,cRLSign"),
            ..LEAF
        },
        days,
    );
    w.issue(
        "server-eku-only",
        "ca",
        &Ext {
            extended_key_usage: Some("serverAuth"),
            ..LEAF
        },
        days,
    );
    w.issue(
        "expired",
        "ca",
        &LEAF,
        Validity::Between("20200101000000Z", "20200102000000Z"),
    );
    w.issue(
        "not-yet-valid",
        "ca",
        &LEAF,
        Validity::Between("20990101000000Z", "20990102000000Z"),
    );
    w.issue("signed-by-impostor", "impostor-ca", &LEAF, days);
    w.issue(
        "other-domain-id-signed-by-example",
        "ca",
        &san("URI:spiffe://other.org/workload"),
        days,
    );
    w.issue(
        "unknown-domain",
        "ca",
        &san("URI:spiffe://unknown.example/workload"),
        days,
    );
    w.issue(
        "signed-by-non-ca",
        "valid",
        &san("URI:spiffe://example.org/child"),
        days,
    );
    w.issue(
        "signed-by-ca-without-certsign",
        "inter-no-certsign",
        &LEAF,
        days,
    );

    let cases = [
        case("valid", &["valid.pem"], None),
        case(
            "valid-via-intermediate",
            &["valid-via-intermediate.pem", "inter.pem"],
            None,
        ),
        case("valid-no-eku", &["valid-no-eku.pem"], None),
        case("valid-long-path", &["valid-long-path.pem"], None),
        case("valid-with-dns-san", &["valid-with-dns-san.pem"], None),
        case(
            "other-domain-valid (federation)",
            &["other-domain-valid.pem"],
            None,
        ),
        case("no-uri-san", &["no-uri-san.pem"], Some("NoUriSan")),
        case("no-san", &["no-san.pem"], Some("NoUriSan")),
        case(
            "two-uri-sans",
            &["two-uri-sans.pem"],
            Some("MultipleUriSans"),
        ),
        case(
            "non-spiffe-uri",
            &["non-spiffe-uri.pem"],
            Some("NotSpiffeUri"),
        ),
        case(
            "uppercase-scheme",
            &["uppercase-scheme.pem"],
            Some("NonCanonicalId"),
        ),
        case(
            "uppercase-trust-domain",
            &["uppercase-trust-domain.pem"],
            Some("NonCanonicalId"),
        ),
        case(
            "percent-encoded",
            &["percent-encoded.pem"],
            Some("NonCanonicalId"),
        ),
        case(
            "dot-dot-segment",
            &["dot-dot-segment.pem"],
            Some("NonCanonicalId"),
        ),
        case("dot-segment", &["dot-segment.pem"], Some("NonCanonicalId")),
        case(
            "empty-segment",
            &["empty-segment.pem"],
            Some("NonCanonicalId"),
        ),
        case(
            "trailing-slash",
            &["trailing-slash.pem"],
            Some("NonCanonicalId"),
        ),
        case("query", &["query.pem"], Some("NonCanonicalId")),
        case("port", &["port.pem"], Some("NonCanonicalId")),
        case("userinfo", &["userinfo.pem"], Some("NonCanonicalId")),
        case("root-id", &["root-id.pem"], Some("RootId")),
        case(
            "root-id-slash",
            &["root-id-slash.pem"],
            Some("NonCanonicalId"),
        ),
        case("leaf-is-ca", &["leaf-is-ca.pem"], Some("LeafIsCa")),
        case(
            "no-key-usage",
            &["no-key-usage.pem"],
            Some("MissingKeyUsage"),
        ),
        case(
            "no-digital-signature",
            &["no-digital-signature.pem"],
            Some("MissingDigitalSignature"),
        ),
        case(
            "key-cert-sign",
            &["key-cert-sign.pem"],
            Some("LeafCanSignCertificates"),
        ),
        case("crl-sign", &["crl-sign.pem"], Some("LeafCanSignCrls")),
        case(
            "server-eku-only (client use)",
            &["server-eku-only.pem"],
            Some("WrongExtendedKeyUsage"),
        ),
        case("expired", &["expired.pem"], Some("Expired")),
        case("not-yet-valid", &["not-yet-valid.pem"], Some("NotYetValid")),
        case(
            "signed-by-impostor (same subject)",
            &["signed-by-impostor.pem"],
            Some("UntrustedChain"),
        ),
        case(
            "other.org ID signed by example.org",
            &["other-domain-id-signed-by-example.pem"],
            Some("UntrustedChain"),
        ),
        case(
            "unknown trust domain",
            &["unknown-domain.pem"],
            Some("UnknownTrustDomain"),
        ),
        case(
            "signed-by-non-ca",
            &["signed-by-non-ca.pem", "valid.pem"],
            Some("SigningCertNotCa"),
        ),
        case(
            "signed-by-ca-without-keyCertSign",
            &["signed-by-ca-without-certsign.pem", "inter-no-certsign.pem"],
            Some("SigningCertCannotSign"),
        ),
        case(
            "intermediate missing from chain",
            &["valid-via-intermediate.pem"],
            Some("UntrustedChain"),
        ),
        case("root presented as leaf", &["ca.pem"], Some("NoUriSan")),
    ];

    let example = TrustDomain::new("example.org").unwrap();
    let other = TrustDomain::new("other.org").unwrap();
    let bundles = BundleSet::new()
        .with(TrustBundle::from_pem(example, &std::fs::read(dir.join("ca.pem")).unwrap()).unwrap())
        .with(
            TrustBundle::from_pem(other, &std::fs::read(dir.join("other-ca.pem")).unwrap())
                .unwrap(),
        );
    let ca_files = BTreeMap::from([("example.org", "ca.pem"), ("other.org", "other-ca.pem")]);
    let now = SystemTime::now();

    println!(
        "{:<38} {:<8} {:<8} {:<8} zt error / openssl reason",
        "case", "expected", "zt", "openssl"
    );
    let mut problems = Vec::new();
    for case in &cases {
        let zt = verify_x509_svid(
            &pem_chain(dir, &case.chain),
            &bundles,
            now,
            Usage::ClientAuth,
        );
        let independent = openssl_verdict(dir, &case.chain, &ca_files);
        let verdict = |ok: bool| if ok { "accept" } else { "reject" };
        let zt_detail = match &zt {
            Ok(v) => v.id().to_string(),
            Err(e) => format!("{e:?}"),
        };
        let openssl_detail = match &independent {
            Ok(()) => "ok".to_owned(),
            Err(reason) => reason.clone(),
        };
        println!(
            "{:<38} {:<8} {:<8} {:<8} {} / {}",
            case.name,
            verdict(case.expect.is_none()),
            verdict(zt.is_ok()),
            verdict(independent.is_ok()),
            zt_detail,
            openssl_detail,
        );
        if zt.is_ok() != independent.is_ok() {
            problems.push(format!("{}: zt and openssl disagree", case.name));
        }
        if zt.is_ok() != case.expect.is_none() {
            problems.push(format!("{}: zt gave {zt_detail}", case.name));
        }
        if independent.is_ok() != case.expect.is_none() {
            problems.push(format!("{}: openssl gave {openssl_detail}", case.name));
        }
        if let (Err(e), Some(expected)) = (&zt, case.expect) {
            let debug = format!("{e:?}");
            if variant(&debug) != expected {
                problems.push(format!(
                    "{}: zt's error is {debug}, expected {expected}",
                    case.name
                ));
            }
        }
    }
    let accepted = cases.iter().filter(|c| c.expect.is_none()).count();
    println!(
        "{} cases: {accepted} to accept, {} to reject; {} problems",
        cases.len(),
        cases.len() - accepted,
        problems.len()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}
