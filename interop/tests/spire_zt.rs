//! zt against a real SPIRE 1.13.3 server and agent: `WorkloadApiSource`
//! takes its SVIDs, bundles and JWT-SVIDs from the agent; a zt server (the
//! `zt-peer` binary, a process of its own) and a zt client (the test
//! process) talk mutual TLS with pins both ways, across rotations, agent and
//! server restarts and the removal of an entry.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use zt_client::{PeerRejected, ZtClient};
use zt_core::matcher::IdMatcher;
use zt_core::source::{Health, SourceError, SvidSource, WorkloadApiSource};
use zt_core::{SpiffeId, TrustDomain};
use zt_interop::process::{JsonProcess, event_name};
use zt_interop::spire::{EntrySpec, Spire};
use zt_support::{
    Ctx, EVENT, TestResult, log, register_self, register_zt_peer, runtime, serial, source, spire,
    str_field, wait_until,
};

const SERVER: &str = "spiffe://example.org/zt/server";
const CLIENT: &str = "spiffe://example.org/zt/client";

/// Starts `zt-peer server` (registered as [`SERVER`]) with `args`; returns
/// it and its `https://addr` base URL.
fn start_server(spire: &Spire, args: &[&str]) -> zt_interop::Result<(JsonProcess, String)> {
    start_server_event(spire, args).map(|(server, url, _)| (server, url))
}

/// [`start_server`], also returning its `listening` event.
fn start_server_event(
    spire: &Spire,
    args: &[&str],
) -> zt_interop::Result<(JsonProcess, String, serde_json::Value)> {
    let path = register_zt_peer(spire, "zt-server", SERVER)?;
    let mut all = vec!["server"];
    all.extend_from_slice(args);
    let mut server = spire.spawn_json("zt-peer server", &path, &all)?;
    let listening = server.wait_for_event("listening", EVENT)?;
    assert_eq!(str_field(&listening, "spiffe_id"), SERVER, "{listening}");
    let url = format!("https://{}", str_field(&listening, "addr"));
    Ok((server, url, listening))
}

fn pinned(source: &Arc<WorkloadApiSource>, pin: &str) -> zt_interop::Result<reqwest::Client> {
    ZtClient::builder(source.clone())
        .pin_server(pin.parse::<IdMatcher>().ctx("pin")?)
        .build()
        .ctx("ZtClient")?
        .reqwest_client()
        .ctx("reqwest client")
}

/// A client that opens a new connection (a full handshake) per request, so
/// every request presents the SVID of the moment.
fn fresh_conns(source: &Arc<WorkloadApiSource>, pin: &str) -> zt_interop::Result<reqwest::Client> {
    ZtClient::builder(source.clone())
        .pin_server(pin.parse::<IdMatcher>().ctx("pin")?)
        .build()
        .ctx("ZtClient")?
        .reqwest_builder()
        .pool_max_idle_per_host(0)
        .build()
        .ctx("reqwest client")
}

/// Requests every 100 ms in the background until stopped; counts
/// successes and keeps every failure.
struct Traffic {
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(rt: &tokio::runtime::Runtime, http: reqwest::Client, url: String) -> Self {
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = {
            let (ok, failures) = (ok.clone(), failures.clone());
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => break,
                    }
                    let failure = match http.get(&url).send().await {
                        Ok(r) if r.status().is_success() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Ok(r) => format!("status {}", r.status()),
                        Err(e) => format!("{e:?}"),
                    };
                    failures.lock().unwrap().push(failure);
                }
            })
        };
        Self {
            ok,
            failures,
            stop,
            task,
        }
    }

    /// Successful requests so far.
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops and returns the successes and the failures.
    fn stop(self, rt: &tokio::runtime::Runtime) -> zt_interop::Result<(u64, Vec<String>)> {
        self.stop.send(true).ctx("stop traffic")?;
        rt.block_on(self.task).ctx("traffic task")?;
        let failures = self.failures.lock().unwrap().clone();
        Ok((self.ok.load(Ordering::Relaxed), failures))
    }
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn zt_server_and_client_take_spire_svids_and_enforce_pins_both_ways() -> TestResult {
    let t = Instant::now();
    let spire = spire()?;
    register_self(&spire, CLIENT)?;
    let (mut server, url) = start_server(&spire, &["--accept", CLIENT])?;
    let intruder = register_zt_peer(&spire, "zt-intruder", "spiffe://example.org/zt/intruder")?;
    log("spire, entries and server up", t);

    let rt = runtime();
    let source = rt.block_on(source(&spire))?;
    let snapshot = source.current().ctx("current")?;
    assert_eq!(snapshot.svid().id().to_string(), CLIENT);
    // The bundle is SPIRE's: the agent's trust domain with the server CA.
    let td = TrustDomain::new("example.org").ctx("td")?;
    let bundle = snapshot.bundles().get(&td).expect("an example.org bundle");
    let spire_pem = spire.bundle_pem()?;
    let spire_roots = zt_core::svid::parse_pem_certificates(spire_pem.as_bytes()).ctx("pem")?;
    assert_eq!(
        bundle.x509_authorities().to_vec(),
        spire_roots,
        "the Workload API bundle is `spire-server bundle show`"
    );
    assert!(
        snapshot.svid().not_after() > SystemTime::now(),
        "a live SVID"
    );

    // Pinned to the right server: accepted both ways.
    let http = pinned(&source, SERVER)?;
    let (status, body) = rt.block_on(async {
        let resp = http.get(format!("{url}/whoami")).send().await.ctx("GET")?;
        let status = resp.status().as_u16();
        zt_interop::Result::Ok((status, resp.text().await.ctx("body")?))
    })?;
    assert_eq!(
        (status, body.as_str()),
        (200, format!("hello {CLIENT}").as_str())
    );
    let request = server.wait_for_event("request", EVENT)?;
    assert_eq!(str_field(&request, "peer_id"), CLIENT);
    assert_eq!(
        str_field(&request, "peer_serial_hex"),
        snapshot.svid().serial_hex()
    );

    // Pinned to another ID: zt refuses the server, naming both IDs.
    let wrong = "spiffe://example.org/zt/ledger";
    let http = pinned(&source, wrong)?;
    let err = rt
        .block_on(http.get(format!("{url}/whoami")).send())
        .expect_err("a wrong pin must refuse the server");
    let rejected = PeerRejected::find(&err).expect("zt's typed refusal in the reqwest error");
    let text = rejected.to_string();
    assert!(
        text.contains(SERVER) && text.contains(wrong),
        "both IDs named: {text}"
    );

    // A workload with a valid SVID of the same trust domain, not accepted
    // by the server: refused during the handshake.
    let mut bad = spire.spawn_json(
        "zt-peer intruder",
        &intruder,
        &["client", "--url", &format!("{url}/whoami"), "--pin", SERVER],
    )?;
    let ready = bad.wait_for_event("ready", EVENT)?;
    assert_eq!(
        str_field(&ready, "spiffe_id"),
        "spiffe://example.org/zt/intruder"
    );
    let summary = bad.wait_for_event("summary", EVENT)?;
    assert_eq!(summary["ok"], 0, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    let err = bad.events_named("request_error").next().cloned();
    log(&format!("intruder: {err:?}"), t);
    assert!(
        err.is_some_and(|e| e["peer_rejected"].is_null()),
        "the server refused the intruder; the intruder did not refuse the server"
    );
    server.terminate(Duration::from_secs(5))?;
    assert!(
        server
            .events_named("request")
            .all(|e| str_field(e, "peer_id") == CLIENT),
        "no request of the intruder reached the handler"
    );
    rt.block_on(source.shutdown());
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn requests_keep_succeeding_across_three_rotations_of_both_sides() -> TestResult {
    let t = Instant::now();
    let spire = spire()?;
    register_self(&spire, CLIENT)?;
    let (mut server, url) = start_server(&spire, &["--accept", CLIENT])?;
    let rt = runtime();
    let source = rt.block_on(source(&spire))?;
    let http = fresh_conns(&source, SERVER)?;

    let traffic = Traffic::start(&rt, http, format!("{url}/whoami"));

    // Until both sides have rotated three times (new serials after the
    // first), reading the server's events as they come.
    let first_client = serial(&*source);
    let mut client_serials = BTreeSet::from([first_client]);
    let mut updates = source.updates();
    let deadline = Instant::now() + Duration::from_secs(75);
    let mut server_serials = BTreeSet::new();
    while client_serials.len() < 4 || server_serials.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "three rotations each within 75 s: client {client_serials:?}, server updates {server_serials:?}"
        );
        if updates.has_changed().unwrap_or(false) {
            updates.borrow_and_update();
            client_serials.insert(serial(&*source));
        }
        match server.next_event(Duration::from_millis(200)) {
            Ok(Some(e)) if event_name(&e) == "svid_update" => {
                server_serials.insert(str_field(&e, "serial_hex").to_string());
            }
            Ok(Some(_)) | Err(zt_interop::Error::Timeout(_)) => {}
            Ok(None) => panic!("zt-peer server exited: {}", server.stderr_tail()),
            Err(e) => return Err(e),
        }
    }
    log(
        &format!(
            "rotations seen: client {} serials, server {} new serials",
            client_serials.len(),
            server_serials.len()
        ),
        t,
    );
    let (ok, failures) = traffic.stop(&rt)?;
    log(&format!("{ok} requests ok, {} failed", failures.len()), t);
    assert!(failures.is_empty(), "no request failed: {failures:?}");
    assert!(ok >= 100, "traffic ran throughout: {ok} requests");

    server.terminate(Duration::from_secs(5))?;
    let seen: BTreeSet<String> = server
        .events_named("request")
        .map(|e| str_field(e, "peer_serial_hex").to_string())
        .collect();
    let rotated_in: Vec<_> = client_serials
        .iter()
        .filter(|s| seen.contains(*s))
        .collect();
    assert!(
        rotated_in.len() >= 3,
        "the server saw the client's new certificates: {} of {client_serials:?} in {seen:?}",
        rotated_in.len()
    );
    rt.block_on(source.shutdown());
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn jwt_svids_from_spire_pass_jwt_auth_layer_for_their_audience_only() -> TestResult {
    let spire = spire()?;
    register_self(&spire, CLIENT)?;
    let (mut server, url, listening) = start_server_event(
        &spire,
        &[
            "--accept",
            CLIENT,
            "--jwt-audience",
            "spiffe://example.org/zt/server",
        ],
    )?;
    let rt = runtime();
    let source = rt.block_on(source(&spire))?;
    let client = ZtClient::builder(source.clone())
        .pin_server(IdMatcher::exact(SpiffeId::new(SERVER).ctx("id")?))
        .build()
        .ctx("client")?;
    let http = client.reqwest_client().ctx("reqwest")?;
    let tokens = client.jwt_svids();
    let call = |header: Option<reqwest::header::HeaderValue>| {
        let req = http.get(format!("{url}/whoami"));
        let req = match header {
            Some(h) => req.header(reqwest::header::AUTHORIZATION, h),
            None => req,
        };
        rt.block_on(async { req.send().await.map(|r| r.status().as_u16()) })
            .ctx("GET /whoami")
    };

    let token = rt
        .block_on(tokens.token("spiffe://example.org/zt/server"))
        .ctx("JWT-SVID from SPIRE")?;
    assert_eq!(token.subject().to_string(), CLIENT);
    let good = rt
        .block_on(tokens.header_value("spiffe://example.org/zt/server"))
        .ctx("header")?;
    // The server validates with the JWT keys its Workload API source holds:
    // those of the agent's JWT bundle.
    assert_eq!(
        call(Some(good))?,
        200,
        "a SPIRE JWT-SVID for the audience; the server's source held {} JWT keys at start: {listening}",
        listening["jwt_authorities"]
    );
    let request = server.wait_for_event("request", EVENT)?;
    assert_eq!(str_field(&request, "jwt_subject"), CLIENT, "{request}");

    let other = rt
        .block_on(tokens.header_value("spiffe://example.org/other"))
        .ctx("header")?;
    assert_eq!(call(Some(other))?, 401, "a token for another audience");
    assert_eq!(call(None)?, 401, "no token");

    // The token from SPIRE validates in zt with the JWT keys `spire-server
    // bundle show` prints, and only for its audience.
    let bundle_json = spire.server_cli(&["bundle", "show", "-format", "spiffe"])?;
    let td = TrustDomain::new("example.org").ctx("td")?;
    let bundle = zt_core::bundle::TrustBundle::from_spiffe_json(td, bundle_json.as_bytes())
        .ctx("SPIRE's SPIFFE bundle")?;
    let mut set = zt_core::bundle::BundleSet::new();
    set.insert(bundle);
    let now = SystemTime::now();
    let claims = zt_core::jwt::validate_jwt_svid(
        token.token(),
        &set,
        "spiffe://example.org/zt/server",
        now,
        Duration::ZERO,
    )
    .ctx("validate")?;
    assert_eq!(claims.subject().to_string(), CLIENT);
    assert!(
        zt_core::jwt::validate_jwt_svid(
            token.token(),
            &set,
            "spiffe://example.org/x",
            now,
            Duration::ZERO
        )
        .is_err()
    );
    rt.block_on(source.shutdown());
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn agent_and_server_restarts_under_traffic_keep_the_last_svid_serving() -> TestResult {
    let t = Instant::now();
    let spire = spire()?;
    register_self(&spire, CLIENT)?;
    let (_server, url) = start_server(&spire, &["--accept", CLIENT])?;
    let rt = runtime();
    let source = rt.block_on(source(&spire))?;
    assert_eq!(source.health(), Health::Healthy);
    let traffic = Traffic::start(&rt, fresh_conns(&source, SERVER)?, format!("{url}/whoami"));
    // Requests succeed in each phase: at least `n` more from now on.
    let more_requests = |what: &str, n: u64| {
        let target = traffic.ok() + n;
        wait_until(what, EVENT, || (traffic.ok() >= target).then_some(()))
    };
    more_requests("requests before the restarts", 5)?;

    // Agent down: the source reports it and keeps serving its SVID.
    let before = serial(&*source);
    spire.stop_agent()?;
    log("agent stopped", t);
    let reason = wait_until(
        "health degraded with the agent down",
        EVENT,
        || match source.health() {
            Health::Degraded { reason, .. } => Some(reason),
            _ => None,
        },
    )?;
    log(&format!("degraded: {reason}"), t);
    more_requests("requests with the agent down", 10)?;
    assert_eq!(serial(&*source), before, "the last good SVID serves");

    // Agent back: it signs new SVIDs; the source reconnects by itself.
    spire.start_agent()?;
    log("agent started", t);
    let after_agent = wait_until("a new SVID after the agent restart", EVENT, || {
        let now = serial(&*source);
        (now != before && source.health() == Health::Healthy).then_some(now)
    })?;
    log("healthy with a new SVID", t);
    more_requests("requests after the agent restart", 5)?;

    // Server down: the agent keeps serving what it has; calls go on.
    spire.stop_server()?;
    log("server stopped", t);
    more_requests("requests with the server down", 10)?;
    assert!(source.health().is_serving());
    spire.start_server()?;
    log("server started", t);
    // Rotation resumes once the server is back.
    wait_until(
        "a rotation after the server restart",
        Duration::from_secs(45),
        || (serial(&*source) != after_agent).then_some(()),
    )?;
    log("rotated after the server restart", t);
    more_requests("requests after the server restart", 5)?;
    assert_eq!(source.health(), Health::Healthy);
    let (ok, failures) = traffic.stop(&rt)?;
    log(&format!("{ok} requests ok, {} failed", failures.len()), t);
    assert!(failures.is_empty(), "no request failed: {failures:?}");
    rt.block_on(source.shutdown());
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn a_deleted_entry_serves_its_last_svid_until_expiry_then_fails_closed() -> TestResult {
    let t = Instant::now();
    let spire = spire()?;
    // A short SVID (SPIRE backdates 10 s: it lives 25 s, 15 s after issue)
    // so that expiry comes soon after the deletion.
    let entry = spire
        .register(&EntrySpec::for_current_exe(CLIENT)?.x509_svid_ttl(Duration::from_secs(15)))?;
    let (_server, url) = start_server(&spire, &["--accept", CLIENT])?;
    let rt = runtime();
    let source = rt.block_on(source(&spire))?;
    let http = fresh_conns(&source, SERVER)?;
    let url = format!("{url}/whoami");
    let call = || rt.block_on(async { http.get(&url).send().await.map(|r| r.status().as_u16()) });
    assert_eq!(call().ctx("call before the deletion")?, 200);

    spire.delete_entry(&entry.id)?;
    spire.wait_for_entry_removed(&entry.id, EVENT)?;
    log("entry removed from the agent", t);
    let reason = wait_until(
        "health degraded after the deletion",
        EVENT,
        || match source.health() {
            Health::Degraded { reason, .. } => Some(reason),
            _ => None,
        },
    )?;
    log(&format!("degraded: {reason}"), t);
    let until = source.current().ctx("still serving")?.svid().not_after();
    assert_eq!(
        call().ctx("call after the deletion")?,
        200,
        "serves until expiry"
    );

    // Past expiry: fail closed, no request leaves.
    wait_until("the SVID expired", Duration::from_secs(40), || {
        matches!(source.health(), Health::Expired { .. }).then_some(())
    })?;
    assert!(SystemTime::now() >= until);
    log("expired", t);
    assert!(matches!(source.current(), Err(SourceError::Expired { .. })));
    let err = call().expect_err("an expired identity must not call");
    let mut chain = err.to_string();
    let mut next = std::error::Error::source(&err);
    while let Some(e) = next {
        chain = format!("{chain}: {e}");
        next = e.source();
    }
    log(&format!("call after expiry: {chain}"), t);
    assert!(
        chain.contains(&format!("the SVID for `{CLIENT}` expired")),
        "refused by zt for its own expired SVID: {chain}"
    );
    rt.block_on(source.shutdown());
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn a_workload_without_an_entry_fails_at_startup_within_its_timeout() -> TestResult {
    let spire = spire()?;
    let rt = runtime();
    let timeout = Duration::from_secs(3);
    let start = Instant::now();
    let result = rt.block_on(
        WorkloadApiSource::builder()
            .endpoint(spire.endpoint_socket())
            .initial_sync_timeout(timeout)
            .build(),
    );
    let took = start.elapsed();
    let err = result.expect_err("no entry matches the test binary");
    eprintln!("after {took:?}: {err}");
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(3),
        "{took:?}"
    );
    // The X.509 stream is the one that did not arrive.
    assert!(
        matches!(&err, SourceError::InitialSync { .. }) && err.to_string().contains("X.509-SVID"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&spire.endpoint_socket()),
        "names the endpoint: {text}"
    );
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn the_http_example_runs_against_the_spire_agent() -> TestResult {
    // Next to `zt-peer`: `<target>/<profile>/examples/http`.
    let example = zt_support::zt_peer()
        .parent()
        .map(|dir| dir.join("examples").join("http"))
        .expect("zt-peer lives in a directory");
    assert!(
        example.is_file(),
        "{} is missing: `cargo build -p zt-examples --example http` (interop/run.sh does)",
        example.display()
    );
    let spire = spire()?;
    let id = "spiffe://example.org/examples/http";
    spire.register(&EntrySpec::for_executable(id, &example)?)?;
    let out = zt_interop::util::output_with_timeout(&mut spire.command(&example), EVENT)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}", out.status);
    assert!(
        stdout.contains("identity from the Workload API"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("this workload is {id}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("second call: HTTP/2.0 200 OK -> hello, {id}")),
        "{stdout}"
    );
    Ok(())
}
