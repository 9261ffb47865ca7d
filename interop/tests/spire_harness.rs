//! The harness itself against a real SPIRE 1.13.3 and go-spiffe v2.9.0,
//! with no zt code: entries reach the agent, Go workloads get X.509- and
//! JWT-SVIDs, SVIDs rotate, processes restart in place, two trust domains
//! federate, and go-spiffe peers talk mutual TLS under SPIRE identities.
//!
//! Run with `interop/run.sh` (or `cargo test -p zt-interop -- --ignored`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use zt_interop::Error;
use zt_interop::go::GoProgram;
use zt_interop::process::JsonProcess;
use zt_interop::spire::{
    BundleEndpoint, Component, EntrySpec, FederationRelationship, Spire, SpireConfig,
};

type TestResult = zt_interop::Result<()>;

const EVENT: Duration = Duration::from_secs(60);

fn str_field<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Registers a Go program by path and uid and waits until the agent has
/// its SVID.
fn register_go(spire: &Spire, program: GoProgram, id: &str) -> zt_interop::Result<()> {
    spire.register(&EntrySpec::for_executable(id, &program.path()?)?)?;
    Ok(())
}

fn log(what: &str, start: Instant) {
    eprintln!("[{:6.1} s] {what}", start.elapsed().as_secs_f64());
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn go_workload_gets_x509_and_jwt_svids_and_the_bundles_from_spire() -> TestResult {
    let t = Instant::now();
    let spire = Spire::start("example.org")?;
    log("spire up", t);
    let id = "spiffe://example.org/go/workload";
    register_go(&spire, GoProgram::Workload, id)?;
    register_go(
        &spire,
        GoProgram::JwtValidate,
        "spiffe://example.org/go/validator",
    )?;
    log("entries on the agent", t);

    let mut w = spire.spawn_go(
        GoProgram::Workload,
        &["-updates", "1", "-fetch-jwt", "svc-a"],
    )?;
    let x509 = w.wait_for_event("x509_update", EVENT)?;
    log("x509 update", t);
    assert_eq!(str_field(&x509, "spiffe_id"), id);
    assert_eq!(x509["svid_count"], 1);
    let bundle = w.wait_for("the example.org X.509 bundle", EVENT, |e| {
        str_field(e, "event") == "x509_bundle" && str_field(e, "trust_domain") == "example.org"
    })?;
    assert_eq!(bundle["authorities"].as_array().map(Vec::len), Some(1));
    let jwt = w.wait_for_event("jwt_svid", EVENT)?;
    assert_eq!(str_field(&jwt, "spiffe_id"), id);
    let token = str_field(&jwt, "token").to_string();
    w.wait_for_event("done", EVENT)?;
    assert!(
        w.events_named("jwt_bundle")
            .any(|e| str_field(e, "trust_domain") == "example.org")
    );

    // go-spiffe validates the SPIRE token with the Workload API's JWT
    // bundle, with the bundle from `spire-server bundle show`, and with its
    // JWT keys as a plain JWKS; a token for another audience is refused by
    // all three.
    let bundle_file = spire.dir().join("example.org.spiffe.json");
    std::fs::write(&bundle_file, spire.bundle_spiffe()?).map_err(|e| Error::Io(e.to_string()))?;
    let file_arg = bundle_file.to_string_lossy().into_owned();
    // The same JWT keys as a plain RFC 7517 JWKS (no "use", no X.509 keys).
    let spiffe_bundle: Value =
        serde_json::from_str(&spire.bundle_spiffe()?).map_err(|e| Error::Parse(e.to_string()))?;
    let jwt_keys: Vec<Value> = spiffe_bundle["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter(|k| k["use"] == "jwt-svid")
                .map(|k| {
                    let mut k = k.clone();
                    k.as_object_mut().map(|o| o.remove("use"));
                    k
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(jwt_keys.len(), 1, "{spiffe_bundle}");
    let jwks_file = spire.dir().join("example.org.jwks.json");
    std::fs::write(
        &jwks_file,
        serde_json::json!({ "keys": jwt_keys }).to_string(),
    )
    .map_err(|e| Error::Io(e.to_string()))?;
    let jwks_arg = jwks_file.to_string_lossy().into_owned();
    for extra in [
        &["-bundle-file", &jwks_arg, "-trust-domain", "example.org"][..],
        &[][..],
        &["-bundle-file", &file_arg, "-trust-domain", "example.org"][..],
    ] {
        let mut args = vec!["-audience", "svc-a", "-token", &token];
        args.extend_from_slice(extra);
        let mut v = spire.spawn_go(GoProgram::JwtValidate, &args)?;
        let verdict = v.wait_for("a verdict", EVENT, |e| {
            matches!(str_field(e, "event"), "accept" | "reject")
        })?;
        assert_eq!(str_field(&verdict, "event"), "accept", "{verdict}");
        assert_eq!(str_field(&verdict, "spiffe_id"), id);

        let mut args = vec!["-audience", "svc-b", "-token", &token];
        args.extend_from_slice(extra);
        let mut v = spire.spawn_go(GoProgram::JwtValidate, &args)?;
        let verdict = v.wait_for("a verdict", EVENT, |e| {
            matches!(str_field(e, "event"), "accept" | "reject")
        })?;
        assert_eq!(str_field(&verdict, "event"), "reject", "{verdict}");
        assert!(
            str_field(&verdict, "error").contains("audience"),
            "{verdict}"
        );
    }
    log("jwt validated", t);
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn x509_svids_rotate_several_times_within_a_minute() -> TestResult {
    let t = Instant::now();
    let spire = Spire::start("example.org")?;
    register_go(&spire, GoProgram::Workload, "spiffe://example.org/rotating")?;
    let mut w = spire.spawn_go(GoProgram::Workload, &["-updates", "4", "-timeout", "90s"])?;
    let mut serials = Vec::new();
    let mut at = Vec::new();
    for _ in 0..4 {
        let u = w.wait_for_event("x509_update", EVENT)?;
        serials.push(str_field(&u, "serial_hex").to_string());
        at.push(t.elapsed());
        log(
            &format!(
                "update {} not_after {}",
                str_field(&u, "serial_hex"),
                str_field(&u, "not_after")
            ),
            t,
        );
    }
    let distinct: BTreeSet<_> = serials.iter().collect();
    assert_eq!(distinct.len(), 4, "every update is a new SVID: {serials:?}");
    let three_rotations = at[3] - at[0];
    eprintln!(
        "three rotations took {:.1} s",
        three_rotations.as_secs_f64()
    );
    assert!(
        three_rotations < Duration::from_secs(50),
        "{three_rotations:?}"
    );
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn agent_and_server_restart_in_place_and_the_workload_fetches_again() -> TestResult {
    let t = Instant::now();
    let spire = Spire::start("example.org")?;
    register_go(&spire, GoProgram::Workload, "spiffe://example.org/restart")?;
    let mut w = spire.spawn_go(
        GoProgram::Workload,
        &["-updates", "0", "-timeout", "150s", "-backoff", "200ms"],
    )?;
    let first = w.wait_for_event("x509_update", EVENT)?;
    let socket = spire.workload_socket();
    let agent_pid = spire.pid(Component::Agent);

    spire.restart_agent()?;
    log("agent restarted", t);
    assert_ne!(spire.pid(Component::Agent), agent_pid);
    assert_eq!(spire.workload_socket(), socket);
    w.wait_for("the watch error of the agent going away", EVENT, |e| {
        str_field(e, "event") == "watch_error" && str_field(e, "stream") == "x509"
    })?;
    let again = w.wait_for_event("x509_update", EVENT)?;
    log(
        &format!(
            "fetched again after the agent restart: {} (first before it: {})",
            str_field(&again, "serial_hex"),
            str_field(&first, "serial_hex"),
        ),
        t,
    );

    // A crash (SIGKILL) and start works the same.
    spire.kill(Component::Agent)?;
    assert!(!spire.is_running(Component::Agent));
    spire.start_agent()?;
    w.wait_for_event("x509_update", EVENT)?;
    log("fetched again after an agent crash", t);

    // Server down: the agent keeps serving the SVID it has; server back on
    // the same port: rotations resume.
    let before = w.events_named("x509_update").count();
    spire.stop_server()?;
    log("server stopped", t);
    spire.start_server()?;
    log("server started", t);
    let rotated = w.wait_for("a rotation after the server restart", EVENT, |e| {
        str_field(e, "event") == "x509_update"
    })?;
    assert!(w.events_named("x509_update").count() > before);
    log(
        &format!(
            "rotated after the server restart: {}",
            str_field(&rotated, "serial_hex")
        ),
        t,
    );
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn entries_come_and_go_and_the_cli_reports_them() -> TestResult {
    let spire = Spire::start("example.org")?;
    let path = spire.copy_executable(&GoProgram::Workload.path()?, "workload-copy")?;
    let spec = EntrySpec::for_executable("spiffe://example.org/copy", &path)?
        .hint("primary")
        .x509_svid_ttl(Duration::from_secs(40))
        .jwt_svid_ttl(Duration::from_secs(90))
        .dns("copy.example.org");
    let entry = spire.create_entry(&spec)?;
    assert_eq!(entry.spiffe_id, "spiffe://example.org/copy");
    assert_eq!(entry.parent_id, spire.node_alias_id());
    assert_eq!(entry.hint.as_deref(), Some("primary"));
    assert_eq!((entry.x509_svid_ttl, entry.jwt_svid_ttl), (40, 90));
    assert!(
        entry
            .selectors
            .iter()
            .any(|s| s.starts_with("unix:path:") && s.ends_with("/bin/workload-copy"))
    );
    let t = Instant::now();
    spire.wait_for_entry(&entry.id, Duration::from_secs(30))?;
    eprintln!(
        "entry reached the agent in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert!(spire.entries()?.iter().any(|e| e.id == entry.id));

    // The copy has the identity; the original path does not.
    let mut copy = JsonProcess::spawn("workload-copy", {
        let mut c = spire.command(&path);
        c.args(["-updates", "1"]);
        c
    })?;
    let u = copy.wait_for_event("x509_update", EVENT)?;
    assert_eq!(str_field(&u, "spiffe_id"), "spiffe://example.org/copy");
    assert_eq!(str_field(&u, "hint"), "primary");
    let mut original = spire.spawn_go(GoProgram::Workload, &["-updates", "1", "-timeout", "5s"])?;
    let err = original
        .wait_for_event("x509_update", Duration::from_secs(20))
        .expect_err("no identity");
    assert!(matches!(err, Error::Command(_)), "{err}");
    assert!(
        original
            .events_named("watch_error")
            .any(|e| str_field(e, "error").contains("no identity issued")),
        "{:?}",
        original.events()
    );

    // Deleted: the agent drops it.
    let t = Instant::now();
    spire.delete_entry(&entry.id)?;
    spire.wait_for_entry_removed(&entry.id, Duration::from_secs(30))?;
    eprintln!(
        "deletion reached the agent in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert!(!spire.entries()?.iter().any(|e| e.id == entry.id));

    // The harness says clearly what did not happen.
    let err = spire
        .wait_for_entry("no-such-entry", Duration::from_secs(2))
        .expect_err("timeout");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.message().contains("spire-agent log"), "{err}");
    let err = spire
        .server_cli(&["entry", "show", "-entryID", "no-such-entry"])
        .expect_err("not found");
    assert!(matches!(err, Error::Command(_)), "{err}");
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn a_prepared_jwt_authority_reaches_the_workload_bundle() -> TestResult {
    let t = Instant::now();
    let spire = Spire::start("example.org")?;
    register_go(
        &spire,
        GoProgram::Workload,
        "spiffe://example.org/jwt-watch",
    )?;
    let mut w = spire.spawn_go(GoProgram::Workload, &["-updates", "0", "-timeout", "60s"])?;
    let first = w.wait_for_event("jwt_bundle", EVENT)?;
    assert_eq!(first["key_ids"].as_array().map(Vec::len), Some(1));
    let prepared = spire.server_cli_json(&["localauthority", "jwt", "prepare"])?;
    let new_kid = prepared
        .pointer("/prepared_authority/authority_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(!new_kid.is_empty(), "{prepared}");
    let prepared_at = Instant::now();
    let seen = w.wait_for("the prepared JWT key in the bundle", EVENT, |e| {
        str_field(e, "event") == "jwt_bundle"
            && e["key_ids"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == new_kid))
    })?;
    assert_eq!(seen["key_ids"].as_array().map(Vec::len), Some(2));
    log(
        &format!(
            "prepared JWT key {new_kid} reached the workload in {:.2} s",
            prepared_at.elapsed().as_secs_f64()
        ),
        t,
    );
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn two_federated_trust_domains_see_each_others_bundles_and_talk_mtls() -> TestResult {
    let t = Instant::now();
    // b first; a federates with b from its config file (initial bundle set
    // at start), b with a at run time (`federation create`).
    let b = SpireConfig::new("b.test").with_bundle_endpoint().start()?;
    let a = SpireConfig::new("a.test")
        .with_bundle_endpoint()
        .federates_with(b.federation_relationship()?)
        .start()?;
    b.federate_with(&a)?;
    log("two servers federated", t);
    a.wait_for_federated_bundle("b.test", EVENT, |_| true)?;
    b.wait_for_federated_bundle("a.test", EVENT, |_| true)?;
    b.refresh_federation("a.test")?;

    let server_id = "spiffe://b.test/go/server";
    let client_id = "spiffe://a.test/go/client";
    b.register(
        &EntrySpec::for_executable(server_id, &GoProgram::MtlsServer.path()?)?
            .federates_with("a.test"),
    )?;
    a.register(
        &EntrySpec::for_executable(client_id, &GoProgram::MtlsClient.path()?)?
            .federates_with("b.test"),
    )?;
    a.register(
        &EntrySpec::for_executable("spiffe://a.test/go/watch", &GoProgram::Workload.path()?)?
            .federates_with("b.test"),
    )?;

    let mut w = a.spawn_go(GoProgram::Workload, &["-updates", "1"])?;
    w.wait_for("the b.test bundle in a.test's Workload API", EVENT, |e| {
        str_field(e, "event") == "x509_bundle" && str_field(e, "trust_domain") == "b.test"
    })?;
    log("a.test workload sees the b.test bundle", t);

    let mut server = b.spawn_go(GoProgram::MtlsServer, &["-authorize-member-of", "a.test"])?;
    let listening = server.wait_for_event("listening", EVENT)?;
    assert_eq!(str_field(&listening, "spiffe_id"), server_id);
    let url = format!("https://{}/hello", str_field(&listening, "addr"));

    let mut client = a.spawn_go(
        GoProgram::MtlsClient,
        &["-url", &url, "-server-id", server_id, "-n", "2"],
    )?;
    let resp = client.wait_for_event("response", EVENT)?;
    assert_eq!(resp["status"], 200, "{resp}");
    assert_eq!(str_field(&resp, "body"), client_id);
    assert_eq!(str_field(&resp, "peer_id"), server_id);
    assert_eq!(str_field(&resp, "tls_version"), "TLS 1.3");
    eprintln!(
        "go<->go over SPIRE federation: {} {} {}",
        str_field(&resp, "tls_version"),
        str_field(&resp, "cipher_suite"),
        str_field(&resp, "key_exchange")
    );
    let summary = client.wait_for_event("summary", EVENT)?;
    assert_eq!(
        (summary["ok"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(0)),
        "{summary}"
    );
    let req = server.wait_for_event("request", EVENT)?;
    assert_eq!(str_field(&req, "peer_id"), client_id);

    // A wrong pin is refused by the client, with the server's ID in the error.
    let mut wrong = a.spawn_go(
        GoProgram::MtlsClient,
        &["-url", &url, "-server-id", "spiffe://b.test/other"],
    )?;
    let err = wrong.wait_for_event("request_error", EVENT)?;
    assert!(str_field(&err, "error").contains(server_id), "{err}");
    log("mTLS across trust domains, pins enforced", t);
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn go_peers_keep_talking_across_svid_rotations() -> TestResult {
    let t = Instant::now();
    let spire = Spire::start("example.org")?;
    let server_id = "spiffe://example.org/server";
    let client_id = "spiffe://example.org/client";
    register_go(&spire, GoProgram::MtlsServer, server_id)?;
    register_go(&spire, GoProgram::MtlsClient, client_id)?;
    let mut server = spire.spawn_go(GoProgram::MtlsServer, &["-authorize-id", client_id])?;
    let listening = server.wait_for_event("listening", EVENT)?;
    let url = format!("https://{}/", str_field(&listening, "addr"));
    let mut client = spire.spawn_go(
        GoProgram::MtlsClient,
        &[
            "-url",
            &url,
            "-server-id",
            server_id,
            "-duration",
            "25s",
            "-interval",
            "50ms",
            "-fresh-conns",
        ],
    )?;
    let summary = client.wait_for_event("summary", Duration::from_secs(90))?;
    log(&format!("summary {summary}"), t);
    assert_eq!(summary["failed"], 0, "{summary}");
    let serials = summary["server_serials"].as_array().map_or(0, Vec::len);
    assert!(
        serials >= 3,
        "the server rotated at least twice during the run: {summary}"
    );
    // Reads the server's remaining events before it exits.
    server.terminate(Duration::from_secs(5))?;
    let client_serials: BTreeSet<_> = server
        .events_named("request")
        .map(|e| str_field(e, "peer_serial_hex").to_string())
        .collect();
    assert!(
        client_serials.len() >= 3,
        "the server saw the client's new certificates: {client_serials:?}"
    );
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn a_server_that_cannot_start_fails_fast_with_its_log_tail() {
    let t = Instant::now();
    let err = SpireConfig::new("Not A Trust Domain")
        .start()
        .expect_err("SPIRE refuses the trust domain");
    let elapsed = t.elapsed();
    eprintln!("{err}");
    assert!(matches!(err, Error::Command(_)), "{err}");
    assert!(
        err.message().contains("spire-server exited unexpectedly"),
        "{err}"
    );
    assert!(err.message().contains("--- spire-server log"), "{err}");
    assert!(
        err.message().to_lowercase().contains("trust domain"),
        "the log says why: {err}"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "no wait for the ready timeout: {elapsed:?}"
    );
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn a_process_matching_two_entries_gets_both_svids_ordered_by_entry_id_with_hints() -> TestResult {
    let spire = Spire::start("example.org")?;
    let path = GoProgram::Workload.path()?;
    // Created in this order on purpose: does SPIRE return them in creation
    // order or by entry ID?
    let z = spire.register(
        &EntrySpec::for_executable("spiffe://example.org/first", &path)?
            .hint("internal")
            .entry_id("zz-first"),
    )?;
    let a = spire.register(
        &EntrySpec::for_executable("spiffe://example.org/second", &path)?
            .hint("external")
            .entry_id("aa-second"),
    )?;
    let mut w = spire.spawn_go(
        GoProgram::Workload,
        &[
            "-updates",
            "0",
            "-timeout",
            "30s",
            "-fetch-jwt",
            "aud",
            "-jwt-all",
        ],
    )?;
    let update = w.wait_for("an update with both SVIDs", EVENT, |e| e["svid_count"] == 2)?;
    let order: Vec<(&str, &str)> = update["svids"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| (str_field(s, "spiffe_id"), str_field(s, "hint")))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "entry ids {} then {}; X.509-SVIDs in order: {order:?}",
        z.id, a.id
    );
    let jwts: Vec<String> = (0..2)
        .map(|_| {
            w.wait_for_event("jwt_svid", EVENT)
                .map(|e| format!("{}#{}", str_field(&e, "spiffe_id"), str_field(&e, "hint")))
        })
        .collect::<zt_interop::Result<_>>()?;
    eprintln!("JWT-SVIDs in order: {jwts:?}");
    // SPIRE sorts a caller's SVIDs by entry ID (pkg/agent/manager/cache
    // sortIdentities), not by creation: "aa-second" comes first.
    assert_eq!(
        order,
        [
            ("spiffe://example.org/second", "external"),
            ("spiffe://example.org/first", "internal")
        ]
    );
    assert_eq!(
        jwts,
        [
            "spiffe://example.org/second#external",
            "spiffe://example.org/first#internal"
        ]
    );
    Ok(())
}

/// A throwaway CA and a leaf for 127.0.0.1 / localhost, as PEM files:
/// `(ca.pem, leaf.pem, leaf-key.pem)`.
fn web_pki(
    dir: &std::path::Path,
) -> zt_interop::Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    let bad = |e: rcgen::Error| Error::Setup(format!("test CA: {e}"));
    let ca_key = KeyPair::generate().map_err(bad)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(bad)?;
    let leaf_key = KeyPair::generate().map_err(bad)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).map_err(bad)?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let leaf_cert = leaf
        .signed_by(&leaf_key, &Issuer::from_params(&ca, &ca_key))
        .map_err(bad)?;
    let files = (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf-key.pem"),
    );
    for (path, pem) in [
        (&files.0, ca_cert.pem()),
        (&files.1, leaf_cert.pem()),
        (&files.2, leaf_key.serialize_pem()),
    ] {
        std::fs::write(path, pem)
            .map_err(|e| Error::Io(format!("write {}: {e}", path.display())))?;
    }
    Ok(files)
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn a_server_federates_over_an_https_web_bundle_endpoint_trusted_through_ssl_cert_file() -> TestResult
{
    let t = Instant::now();
    let pki = tempfile::tempdir().map_err(|e| Error::Io(e.to_string()))?;
    let (ca, cert, key) = web_pki(pki.path())?;
    let b = SpireConfig::new("web-b.test")
        .bundle_endpoint(BundleEndpoint::https_web(&cert, &key))
        .start()?;
    let url = b.bundle_endpoint_url().unwrap_or_default();
    let a = SpireConfig::new("web-a.test")
        .server_env("SSL_CERT_FILE", ca.to_string_lossy())
        .start()?;
    a.create_federation(&FederationRelationship::https_web("web-b.test", &url))?;
    // No initial bundle: https_web needs none, the first fetch brings it.
    let b_bundle = b.bundle_spiffe()?;
    let b_key = serde_json::from_str::<Value>(&b_bundle)
        .ok()
        .and_then(|v| {
            v.pointer("/keys/0/x5c/0")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    assert!(!b_key.is_empty(), "{b_bundle}");
    let got = a.wait_for_federated_bundle("web-b.test", EVENT, |bundle| bundle.contains(&b_key))?;
    log(
        &format!(
            "web-a.test fetched web-b.test's bundle over https_web ({} bytes)",
            got.len()
        ),
        t,
    );
    let relationships = a.server_cli(&["federation", "list"])?;
    assert!(relationships.contains("https_web"), "{relationships}");
    Ok(())
}
