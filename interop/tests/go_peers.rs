//! zt and go-spiffe v2.9.0 as each other's peers: a go-spiffe client calling
//! a zt server (accepted, forbidden by policy, refusing a wrong server ID), a
//! zt client calling a go-spiffe server (accepted, refused under a wrong
//! pin), go-spiffe's Workload API client against `zt agent` with rotations
//! pushed by it, and JWT-SVIDs validated the same way by both sides.
//!
//! The TLS version and key-exchange group zt and Go negotiate are printed
//! (`--nocapture`) and checked.
//!
//! Run with `interop/run.sh` (or `cargo test -p zt-interop -- --ignored`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod zt_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use zt_client::{PeerRejected, ZtClient};
use zt_core::bundle::BundleSet;
use zt_core::matcher::IdMatcher;
use zt_core::source::SvidSource;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{BadJwt, FakeCa, FakeCaSource, WorkloadApiServer};
use zt_interop::go::GoProgram;
use zt_interop::process::JsonProcess;
use zt_interop::spire::{EntrySpec, Spire};
use zt_support::{
    Ctx, EVENT, TestResult, log, register_self, register_zt_peer, runtime, source, spire, str_field,
};

const ZT_SERVER: &str = "spiffe://example.org/zt/server";
const ZT_CLIENT: &str = "spiffe://example.org/zt/client";
const GO_SERVER: &str = "spiffe://example.org/go/server";
const GO_CLIENT_A: &str = "spiffe://example.org/go/client-a";
const GO_CLIENT_B: &str = "spiffe://example.org/go/client-b";

/// TLS 1.3 is the only version zt and Go should agree on here.
const TLS13: &str = "TLS 1.3";

fn go_client(
    spire: &Spire,
    program: &std::path::Path,
    name: &str,
    args: &[&str],
) -> zt_interop::Result<(JsonProcess, Value)> {
    let mut client = spire.spawn_json(name, program, args)?;
    let summary = client.wait_for_event("summary", EVENT)?;
    Ok((client, summary))
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn go_spiffe_client_calls_zt_server_allowed_forbidden_and_pinning_the_wrong_id() -> TestResult {
    let t = Instant::now();
    let spire = spire()?;
    let policy = spire.dir().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"version = "go-peers-1"

[[rule]]
id = "client-a-reads"
effect = "allow"
callers = ["{GO_CLIENT_A}"]
http = [{{ method = "GET", path = "/whoami" }}]
"#
        ),
    )
    .ctx("write policy")?;
    let server_bin = register_zt_peer(&spire, "zt-server", ZT_SERVER)?;
    let go_a = GoProgram::MtlsClient.path()?;
    spire.register(&EntrySpec::for_executable(GO_CLIENT_A, &go_a)?)?;
    let go_b = spire.copy_executable(&go_a, "mtls-client-b")?;
    spire.register(&EntrySpec::for_executable(GO_CLIENT_B, &go_b)?)?;
    let policy_arg = policy.to_string_lossy().into_owned();
    let mut server = spire.spawn_json(
        "zt-peer server",
        &server_bin,
        &["server", "--policy", &policy_arg],
    )?;
    let listening = server.wait_for_event("listening", EVENT)?;
    let url = format!("https://{}/whoami", str_field(&listening, "addr"));
    log("spire, entries and zt server up", t);

    // Allowed by policy: 200, and the handler saw client A.
    let (a, summary) = go_client(
        &spire,
        &go_a,
        "go client a",
        &["-url", &url, "-server-id", ZT_SERVER, "-n", "2"],
    )?;
    assert_eq!(summary["ok"], 2, "{summary}");
    assert_eq!(summary["statuses"]["200"], 2, "{summary}");
    let response = a
        .events_named("response")
        .next()
        .cloned()
        .expect("a response event");
    assert_eq!(str_field(&response, "body"), format!("hello {GO_CLIENT_A}"));
    let (version, group) = (
        str_field(&response, "tls_version"),
        str_field(&response, "key_exchange"),
    );
    eprintln!(
        "negotiated, go-spiffe client -> zt server: {version}, {}, key exchange {group} ({}), ALPN {:?}",
        str_field(&response, "cipher_suite"),
        response["key_exchange_id"],
        str_field(&response, "alpn"),
    );
    assert_eq!(version, TLS13, "{response}");
    // Go 1.26 offers the hybrid post-quantum group first, and zt's default
    // provider has it.
    assert_eq!(group, "X25519MLKEM768", "{response}");

    // Another workload of the trust domain, not in the policy: 403, and the
    // reason only in the audit record.
    let (_b, summary) = go_client(
        &spire,
        &go_b,
        "go client b",
        &["-url", &url, "-server-id", ZT_SERVER],
    )?;
    assert_eq!(summary["statuses"]["403"], 1, "{summary}");

    // Client A pinning an ID the zt server does not have: go-spiffe refuses.
    let mut wrong = spire.spawn_json(
        "go client a, wrong pin",
        &go_a,
        &["-url", &url, "-server-id", "spiffe://example.org/zt/ledger"],
    )?;
    let summary = wrong.wait_for_event("summary", EVENT)?;
    assert_eq!(summary["failed"], 1, "{summary}");
    let errors = summary["errors"].to_string();
    assert!(
        errors.contains(ZT_SERVER),
        "go-spiffe names the server's ID: {errors}"
    );
    log(&format!("wrong pin: {errors}"), t);

    server.terminate(Duration::from_secs(5))?;
    let audits: Vec<&Value> = server.events_named("audit").collect();
    let deny = audits
        .iter()
        .find(|e| e["record"]["caller"] == GO_CLIENT_B)
        .expect("an audit record for client b");
    assert_eq!(deny["record"]["decision"], "deny", "{deny}");
    let allow = audits
        .iter()
        .find(|e| e["record"]["caller"] == GO_CLIENT_A)
        .expect("an audit record for client a");
    assert_eq!(allow["record"]["decision"], "allow", "{allow}");
    assert_eq!(allow["record"]["rule"], "client-a-reads", "{allow}");
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn zt_client_calls_go_spiffe_server_and_refuses_it_under_a_wrong_pin() -> TestResult {
    let t = Instant::now();
    let spire = spire()?;
    register_self(&spire, ZT_CLIENT)?;
    let go = GoProgram::MtlsServer.path()?;
    spire.register(&EntrySpec::for_executable(GO_SERVER, &go)?)?;
    let mut server = spire.spawn_json("go server", &go, &["-authorize-id", ZT_CLIENT])?;
    let listening = server.wait_for_event("listening", EVENT)?;
    let addr: std::net::SocketAddr = str_field(&listening, "addr").parse().ctx("addr")?;
    log("spire, entries and go server up", t);

    let rt = runtime();
    let source = rt.block_on(source(&spire))?;
    let client = ZtClient::builder(source.clone())
        .pin_server(IdMatcher::exact(SpiffeId::new(GO_SERVER).ctx("id")?))
        .build()
        .ctx("ZtClient")?;
    let http = client.reqwest_client().ctx("reqwest")?;
    let (status, body) = rt.block_on(async {
        let resp = http
            .get(format!("https://{addr}/"))
            .send()
            .await
            .ctx("GET")?;
        let status = resp.status().as_u16();
        zt_interop::Result::Ok((status, resp.text().await.ctx("body")?))
    })?;
    assert_eq!((status, body.as_str()), (200, ZT_CLIENT));
    let request = server.wait_for_event("request", EVENT)?;
    assert_eq!(str_field(&request, "peer_id"), ZT_CLIENT);
    eprintln!(
        "negotiated, zt client -> go-spiffe server (Go's view): {}, {}, key exchange {} ({}), ALPN {:?}",
        str_field(&request, "tls_version"),
        str_field(&request, "cipher_suite"),
        str_field(&request, "key_exchange"),
        request["key_exchange_id"],
        str_field(&request, "alpn"),
    );
    assert_eq!(str_field(&request, "tls_version"), TLS13, "{request}");

    // The same handshake seen from zt's side (rustls).
    let (version, group) = rt.block_on(async {
        let tls = client.connect(addr).await.ctx("connect")?;
        let (_, conn) = tls.get_ref();
        zt_interop::Result::Ok((
            conn.protocol_version().map(|v| format!("{v:?}")),
            conn.negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name())),
        ))
    })?;
    eprintln!("negotiated, zt client -> go-spiffe server (rustls' view): {version:?}, {group:?}");
    assert_eq!(version.as_deref(), Some("TLSv1_3"));
    let go_group = str_field(&request, "key_exchange");
    assert!(
        group.as_deref().is_some_and(|g| g == go_group),
        "both sides name the same group: zt {group:?}, go {go_group}"
    );
    assert_eq!(go_group, "X25519MLKEM768", "{request}");

    // Pinned to another ID: refused, naming both.
    let wrong = "spiffe://example.org/go/ledger";
    let http = ZtClient::builder(source.clone())
        .pin_server(wrong.parse::<IdMatcher>().ctx("pin")?)
        .build()
        .ctx("ZtClient")?
        .reqwest_client()
        .ctx("reqwest")?;
    let err = rt
        .block_on(http.get(format!("https://{addr}/")).send())
        .expect_err("a wrong pin refuses the go-spiffe server");
    let text = PeerRejected::find(&err)
        .expect("zt's typed refusal")
        .to_string();
    log(&format!("wrong pin: {text}"), t);
    assert!(
        text.contains(GO_SERVER) && text.contains(wrong),
        "both IDs: {text}"
    );
    rt.block_on(source.shutdown());
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn go_spiffe_workloadapi_follows_zt_agent_rotations_bundles_and_jwt() -> TestResult {
    let t = Instant::now();
    let rt = runtime();
    let dir = tempfile::tempdir().ctx("temp dir")?;
    let ca = FakeCa::new(TrustDomain::new("example.org").ctx("td")?).ctx("fake CA")?;
    let id = SpiffeId::new("spiffe://example.org/go/workload").ctx("id")?;
    let source =
        FakeCaSource::new(ca.clone(), id.clone(), Duration::from_secs(300)).ctx("source")?;
    let agent = rt
        .block_on(WorkloadApiServer::new(source.clone()).serve_unix(dir.path().join("agent.sock")))
        .ctx("zt agent")?;
    let audience = "spiffe://example.org/billing";
    let mut w = GoProgram::Workload.spawn(
        &agent.endpoint(),
        &["-updates", "0", "-timeout", "60s", "-fetch-jwt", audience],
    )?;

    let first = w.wait_for_event("x509_update", EVENT)?;
    assert_eq!(str_field(&first, "spiffe_id"), id.to_string());
    let mut serials = BTreeSet::from([str_field(&first, "serial_hex").to_string()]);
    assert!(serials.contains(&source.current().ctx("current")?.svid().serial_hex()));
    // The watchers report in any order: look at what has arrived, then wait.
    let is = |name: &'static str| {
        move |e: &Value| {
            str_field(e, "event") == name && str_field(e, "trust_domain") == "example.org"
        }
    };
    let bundle = seen_or_wait(&mut w, "the example.org X.509 bundle", is("x509_bundle"))?;
    assert_eq!(
        bundle["authorities"].as_array().map(Vec::len),
        Some(1),
        "{bundle}"
    );
    seen_or_wait(&mut w, "the example.org JWT bundle", is("jwt_bundle"))?;
    let jwt = seen_or_wait(&mut w, "a JWT-SVID", |e| {
        str_field(e, "event") == "jwt_svid"
    })?;
    let claims = zt_core::jwt::validate_jwt_svid(
        str_field(&jwt, "token"),
        &BundleSet::new().with(ca.bundle()),
        audience,
        SystemTime::now(),
        Duration::ZERO,
    )
    .ctx("zt validates the token go-spiffe fetched from zt agent")?;
    assert_eq!(claims.subject(), &id);
    log("first update, bundles and a JWT-SVID", t);

    // Rotations pushed by the agent reach go-spiffe's watcher.
    for _ in 0..2 {
        let next = source.rotate_now().ctx("rotate")?.svid().serial_hex();
        let update = w.wait_for("the pushed rotation", EVENT, |e| {
            str_field(e, "event") == "x509_update" && str_field(e, "serial_hex") == next
        })?;
        serials.insert(str_field(&update, "serial_hex").to_string());
    }
    assert_eq!(serials.len(), 3, "{serials:?}");
    // A CA rotation: the bundle watcher sees the new root next to the old.
    ca.rotate().ctx("CA rotation")?;
    source.refresh_bundles().ctx("refresh bundles")?;
    let bundle = w.wait_for("a bundle with two roots", EVENT, |e| {
        str_field(e, "event") == "x509_bundle"
            && e["authorities"].as_array().map(Vec::len) == Some(2)
    })?;
    log(&format!("rotations {serials:?}, bundle {bundle}"), t);
    w.kill()?;
    rt.block_on(agent.shutdown());
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn go_spiffe_x509_source_on_zt_agent_serves_zt_client_and_follows_a_pushed_rotation() -> TestResult
{
    let rt = runtime();
    let dir = tempfile::tempdir().ctx("temp dir")?;
    let ca = FakeCa::new(TrustDomain::new("example.org").ctx("td")?).ctx("fake CA")?;
    let server_id = SpiffeId::new(GO_SERVER).ctx("id")?;
    let client_id = SpiffeId::new("spiffe://example.org/orders").ctx("id")?;
    let server_source =
        FakeCaSource::new(ca.clone(), server_id, Duration::from_secs(300)).ctx("source")?;
    let client_source =
        FakeCaSource::new(ca, client_id.clone(), Duration::from_secs(300)).ctx("source")?;
    let agent = rt
        .block_on(
            WorkloadApiServer::new(server_source.clone()).serve_unix(dir.path().join("agent.sock")),
        )
        .ctx("zt agent")?;
    let client_arg = client_id.to_string();
    let mut server =
        GoProgram::MtlsServer.spawn(&agent.endpoint(), &["-authorize-id", &client_arg])?;
    let listening = server.wait_for_event("listening", EVENT)?;
    let addr = str_field(&listening, "addr").to_string();
    let client = ZtClient::builder(client_source)
        .pin_server(IdMatcher::exact(SpiffeId::new(GO_SERVER).ctx("id")?))
        .build()
        .ctx("ZtClient")?;
    let http = client
        .reqwest_builder()
        .pool_max_idle_per_host(0)
        .build()
        .ctx("reqwest")?;
    let sock: std::net::SocketAddr = addr.parse().ctx("addr")?;
    // One GET, and the leaf certificate the server presents to a new handshake.
    let call = || {
        rt.block_on(async {
            let resp = http
                .get(format!("https://{addr}/"))
                .send()
                .await
                .ctx("GET")?;
            let status = resp.status().as_u16();
            let body = resp.text().await.ctx("body")?;
            let tls = client.connect(sock).await.ctx("connect")?;
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec())
                .unwrap_or_default();
            zt_interop::Result::Ok((status, body, leaf))
        })
    };
    let (status, body, leaf) = call()?;
    assert_eq!((status, body.as_str()), (200, client_arg.as_str()));
    let leaf_of = |s: &FakeCaSource| s.current().map(|c| c.svid().leaf().as_ref().to_vec());
    assert_eq!(Some(leaf), leaf_of(&server_source).ok(), "the agent's SVID");

    // The agent pushes a new server SVID; go-spiffe's X509Source serves it
    // to the next handshake.
    let next = server_source
        .rotate_now()
        .ctx("rotate")?
        .svid()
        .serial_hex();
    let next = next.trim_start_matches("00").to_string();
    server.wait_for("the go server's new SVID", EVENT, |e| {
        str_field(e, "event") == "svid_update"
            && str_field(e, "serial_hex").trim_start_matches("00") == next
    })?;
    let (status, _, leaf) = call()?;
    assert_eq!(status, 200);
    assert_eq!(Some(leaf), leaf_of(&server_source).ok(), "the rotated SVID");
    server.kill()?;
    rt.block_on(agent.shutdown());
    Ok(())
}

/// The first event already read that matches `pred`, or the next one.
fn seen_or_wait(
    p: &mut JsonProcess,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> zt_interop::Result<Value> {
    if let Some(e) = p.events().iter().find(|e| pred(e)) {
        return Ok(e.clone());
    }
    p.wait_for(what, EVENT, pred)
}

/// Every kind of broken JWT-SVID zt's fake CA can make.
const BAD_JWTS: [BadJwt; 13] = [
    BadJwt::AlgNone,
    BadJwt::HmacWithPublicKey,
    BadJwt::Expired,
    BadJwt::NotYetValid,
    BadJwt::WrongAudience,
    BadJwt::MissingAudience,
    BadJwt::MissingExpiry,
    BadJwt::UnknownKeyId,
    BadJwt::SubjectNotSpiffeId,
    BadJwt::TamperedPayload,
    BadJwt::ForeignKey,
    BadJwt::WrongType,
    BadJwt::LowercaseType,
];

/// Feeds `tokens` to go-spiffe's `jwtsvid.ParseAndValidate` and returns
/// its verdicts in order (`Ok(spiffe_id)` or `Err(reason)`).
fn go_verdicts(
    mut validator: JsonProcess,
    tokens: &[String],
) -> zt_interop::Result<Vec<Result<String, String>>> {
    validator.wait_for_event("ready", EVENT)?;
    let mut out = Vec::new();
    for token in tokens {
        validator.write_line(token)?;
        let v = validator.wait_for("a verdict", EVENT, |e| {
            matches!(str_field(e, "event"), "accept" | "reject")
        })?;
        out.push(if str_field(&v, "event") == "accept" {
            Ok(str_field(&v, "spiffe_id").to_string())
        } else {
            Err(str_field(&v, "error").to_string())
        });
    }
    validator.close_stdin();
    Ok(out)
}

fn zt_verdicts(
    tokens: &[String],
    bundles: &BundleSet,
    audience: &str,
) -> Vec<Result<String, String>> {
    tokens
        .iter()
        .map(|t| {
            zt_core::jwt::validate_jwt_svid(
                t,
                bundles,
                audience,
                SystemTime::now(),
                zt_server::DEFAULT_JWT_LEEWAY,
            )
            .map(|c| c.subject().to_string())
            .map_err(|e| e.to_string())
        })
        .collect()
}

fn compare(
    labels: &[String],
    go: &[Result<String, String>],
    zt: &[Result<String, String>],
) -> TestResult {
    let mut disagreements = Vec::new();
    for ((label, g), z) in labels.iter().zip(go).zip(zt) {
        eprintln!("{label:>28}: go {g:?} | zt {z:?}");
        if g.is_ok() != z.is_ok() || (g.is_ok() && g != z) {
            disagreements.push(label.clone());
        }
    }
    zt_support::ensure(disagreements.is_empty(), || {
        format!("go-spiffe and zt disagree on {disagreements:?}")
    })
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn zt_and_go_spiffe_agree_on_fake_ca_jwt_svids_good_and_bad() -> TestResult {
    let rt = runtime();
    let dir = tempfile::tempdir().ctx("temp dir")?;
    let ca = FakeCa::new(TrustDomain::new("example.org").ctx("td")?).ctx("fake CA")?;
    let id = SpiffeId::new("spiffe://example.org/orders").ctx("id")?;
    let source =
        FakeCaSource::new(ca.clone(), id.clone(), Duration::from_secs(300)).ctx("source")?;
    let agent = rt
        .block_on(WorkloadApiServer::new(source).serve_unix(dir.path().join("agent.sock")))
        .ctx("zt agent")?;
    let audience = "spiffe://example.org/billing";

    let mut labels = vec!["good".to_string()];
    let mut tokens = vec![
        ca.issue_jwt_svid(&id, &[audience], Duration::from_secs(300))
            .ctx("issue")?
            .token()
            .to_string(),
    ];
    for kind in BAD_JWTS {
        labels.push(format!("{kind:?}"));
        tokens.push(
            ca.issue_bad_jwt_svid(kind, &id, audience)
                .ctx("issue bad")?,
        );
    }
    // go-spiffe with the JWT bundle it gets from zt agent.
    let validator = GoProgram::JwtValidate.spawn(&agent.endpoint(), &["-audience", audience])?;
    let go = go_verdicts(validator, &tokens)?;
    let zt = zt_verdicts(&tokens, &BundleSet::new().with(ca.bundle()), audience);
    compare(&labels, &go, &zt)?;
    assert_eq!(go[0], Ok(id.to_string()), "the good token is accepted");
    assert!(
        go[1..].iter().all(Result::is_err),
        "every bad token is refused"
    );
    rt.block_on(agent.shutdown());
    Ok(())
}

/// Breaks `token` (three base64url parts) in one way.
fn mangle(token: &str, how: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    match how {
        "signature-cut" => format!("{}.{}.", parts[0], parts[1]),
        "signature-of-other" => {
            let sig = parts[2];
            let mut bytes = sig.as_bytes().to_vec();
            let i = bytes.len() / 2;
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                String::from_utf8(bytes).unwrap()
            )
        }
        "header-swapped" => format!("{}.{}.{}", parts[1], parts[0], parts[2]),
        _ => token.to_string(),
    }
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn zt_and_go_spiffe_agree_on_spire_minted_jwt_svids_good_and_bad() -> TestResult {
    let spire = spire()?;
    register_self(&spire, ZT_CLIENT)?;
    let validator_bin = GoProgram::JwtValidate.path()?;
    spire.register(&EntrySpec::for_executable(
        "spiffe://example.org/go/validator",
        &validator_bin,
    )?)?;
    let rt = runtime();
    let source = rt.block_on(source(&spire))?;
    let audience = "spiffe://example.org/go/validator";
    let good = rt
        .block_on(source.fetch_jwt_svid(&[audience.to_string()]))
        .ctx("SPIRE JWT-SVID")?;
    let other = rt
        .block_on(source.fetch_jwt_svid(&["spiffe://example.org/else".to_string()]))
        .ctx("SPIRE JWT-SVID")?;
    let mut labels = vec!["spire good".to_string(), "spire other audience".to_string()];
    let mut tokens = vec![good.token().to_string(), other.token().to_string()];
    for how in ["signature-cut", "signature-of-other", "header-swapped"] {
        labels.push(format!("spire {how}"));
        tokens.push(mangle(good.token(), how));
    }
    // go-spiffe with the JWT bundle from the SPIRE agent; zt with the JWT
    // keys of `spire-server bundle show`.
    let validator = spire.spawn_go(GoProgram::JwtValidate, &["-audience", audience])?;
    let go = go_verdicts(validator, &tokens)?;
    let json = spire.server_cli(&["bundle", "show", "-format", "spiffe"])?;
    let bundle = zt_core::bundle::TrustBundle::from_spiffe_json(
        TrustDomain::new("example.org").ctx("td")?,
        json.as_bytes(),
    )
    .ctx("SPIRE bundle")?;
    let zt = zt_verdicts(&tokens, &BundleSet::new().with(bundle), audience);
    compare(&labels, &go, &zt)?;
    assert_eq!(zt[0], Ok(ZT_CLIENT.to_string()), "zt accepts SPIRE's token");
    assert!(zt[1..].iter().all(Result::is_err));
    rt.block_on(source.shutdown());
    Ok(())
}
