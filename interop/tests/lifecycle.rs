//! SPIRE's authority lifecycle, followed by two zt workloads under
//! continuous traffic: `localauthority jwt prepare / activate / taint /
//! revoke`, `localauthority x509 prepare / activate / taint / revoke`, an
//! agent restart and the server workload's entry deleted and re-created.
//!
//! A zt server (mutual TLS, the caller pinned, `JwtAuthLayer` bound to the
//! peer) and a zt client (a new handshake and a JWT-SVID from `JwtSvids` on
//! every request) run as two processes with their own SPIRE identities:
//! this test binary, copied twice and registered by path. Each prints JSON
//! events; the test drives SPIRE and prints the time from each SPIRE command
//! to zt acting on it.
//!
//! Run with `interop/run.sh lifecycle --nocapture` (or `cargo test -p
//! zt-interop --test lifecycle -- --ignored`). Without `--ignored` it is
//! reported as ignored, as the other SPIRE tests are.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

#[path = "lifecycle/peer.rs"]
mod lifecycle_peer;

use std::time::{Duration, Instant};

use serde_json::Value;
use zt_interop::process::JsonProcess;
use zt_interop::spire::{EntrySpec, Spire, SpireConfig};

const NAME: &str = "spire_authority_lifecycle_under_traffic";
const SERVER_ID: &str = "spiffe://example.org/lifecycle/server";
const CLIENT_ID: &str = "spiffe://example.org/lifecycle/client";
const EVENT: Duration = Duration::from_secs(60);

type TestResult = zt_interop::Result<()>;

fn main() {
    if let Ok(role) = std::env::var(lifecycle_peer::ROLE_ENV) {
        std::process::exit(lifecycle_peer::run(&role));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    let mut filters = Vec::new();
    let mut args_iter = args.iter();
    while let Some(arg) = args_iter.next() {
        if matches!(
            arg.as_str(),
            "--test-threads" | "--skip" | "--format" | "--color" | "--logfile" | "-Z"
        ) {
            args_iter.next();
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    let exact = args.iter().any(|a| a == "--exact");
    let selected = filters.is_empty()
        || filters
            .iter()
            .any(|f| if exact { *f == NAME } else { NAME.contains(f) });
    if !selected {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 1 filtered out");
        return;
    }
    let ignored = args
        .iter()
        .any(|a| a == "--ignored" || a == "--include-ignored");
    if !ignored {
        println!(
            "\nrunning 1 test\ntest {NAME} ... ignored, interop: needs SPIRE and Go; run interop/run.sh\n\ntest result: ok. 0 passed; 0 failed; 1 ignored"
        );
        return;
    }
    println!("\nrunning 1 test");
    match lifecycle() {
        Ok(()) => println!("test {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed"),
        Err(e) => {
            eprintln!("{e}");
            println!("test {NAME} ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed");
            std::process::exit(101);
        }
    }
}

fn str_field<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn strings(event: &Value, key: &str) -> Vec<String> {
    event
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn check(ok: bool, what: impl FnOnce() -> String) -> TestResult {
    if ok {
        Ok(())
    } else {
        Err(zt_interop::Error::Command(what()))
    }
}

/// Prints one figure: the time from a SPIRE command to zt acting on it.
fn figure(step: &str, since: Instant) {
    eprintln!("[lifecycle] {step}: {:.2} s", since.elapsed().as_secs_f64());
}

/// Waits for the server peer's snapshot satisfying `pred`.
fn server_snapshot(
    server: &mut JsonProcess,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> zt_interop::Result<Value> {
    server.wait_for(what, EVENT, |e| {
        str_field(e, "event") == "snapshot" && pred(e)
    })
}

/// The serial of the last SVID the server peer reported.
fn last_serial(server: &JsonProcess) -> Option<String> {
    server
        .events_named("snapshot")
        .last()
        .map(|e| str_field(e, "serial").to_owned())
}

/// The authority ID of `kind`'s (`jwt` or `x509`) active authority, from
/// `spire-server localauthority <kind> show -output json`.
fn active_authority(spire: &Spire, kind: &str) -> zt_interop::Result<String> {
    let shown = spire.server_cli_json(&["localauthority", kind, "show"])?;
    shown
        .get("active")
        .and_then(|a| a.get("authority_id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| zt_interop::Error::Command(format!("no active {kind} authority in {shown}")))
}

/// The ID `localauthority <kind> prepare` gave the prepared authority.
fn prepare(spire: &Spire, kind: &str) -> zt_interop::Result<String> {
    let prepared = spire.server_cli_json(&["localauthority", kind, "prepare"])?;
    prepared
        .get("prepared_authority")
        .and_then(|a| a.get("authority_id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| zt_interop::Error::Command(format!("no prepared authority in {prepared}")))
}

fn lifecycle() -> TestResult {
    let t = Instant::now();
    // The peers are copies of this (large) test binary: no sha256 selector.
    let spire = SpireConfig::new("example.org")
        .workload_sha256(false)
        .start()?;
    let exe = std::env::current_exe().map_err(|e| zt_interop::Error::Io(e.to_string()))?;
    let server_exe = spire.copy_executable(&exe, "zt-lifecycle-server")?;
    let client_exe = spire.copy_executable(&exe, "zt-lifecycle-client")?;
    let server_spec = EntrySpec::for_executable(SERVER_ID, &server_exe)?;
    spire.register(&server_spec)?;
    // The client's X.509-SVIDs live 200 s (the most a 20 min CA allows), so
    // the agent renews one at about 100 s, after the X.509 activation even
    // on a loaded machine where the JWT steps before it take a minute, and
    // one issued under the old authority is still valid when that
    // authority is revoked; its
    // JWT-SVIDs 1 minute, so its cached token outlives a SPIRE server outage
    // of 12 s wherever in the token's life the outage falls.
    spire.register(
        &EntrySpec::for_executable(CLIENT_ID, &client_exe)?
            .x509_svid_ttl(Duration::from_secs(200))
            .jwt_svid_ttl(Duration::from_secs(60)),
    )?;
    eprintln!(
        "[lifecycle] SPIRE and entries ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut server_cmd = spire.command(&server_exe);
    server_cmd
        .env(lifecycle_peer::ROLE_ENV, "server")
        .env(lifecycle_peer::PEER_ID_ENV, CLIENT_ID);
    let mut server = JsonProcess::spawn("zt-server-peer", server_cmd)?;
    let listening = server.wait_for_event("listening", EVENT)?;
    let addr = str_field(&listening, "addr").to_owned();
    let first = server_snapshot(&mut server, "the server's first snapshot", |_| true)?;
    let old_jwt_keys = strings(&first, "jwt_kids");
    let old_x509 = strings(&first, "x509_authorities");
    check(old_jwt_keys.len() == 1 && old_x509.len() == 1, || {
        format!("expected one JWT key and one X.509 authority: {first}")
    })?;

    let mut client_cmd = spire.command(&client_exe);
    client_cmd
        .env(lifecycle_peer::ROLE_ENV, "client")
        .env(lifecycle_peer::PEER_ID_ENV, SERVER_ID)
        .env(lifecycle_peer::ADDR_ENV, &addr);
    let mut client = JsonProcess::spawn("zt-client-peer", client_cmd)?;
    client.wait_for("traffic", EVENT, |e| {
        str_field(e, "event") == "progress" && e["ok"].as_u64() >= Some(10)
    })?;
    eprintln!(
        "[lifecycle] traffic flowing at {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // A token signed by the current JWT key, kept and sent on its own.
    client.write_line("mint old")?;
    let minted = client.wait_for_event("minted", EVENT)?;
    check(str_field(&minted, "kid") == old_jwt_keys[0], || {
        format!(
            "the first token is not signed by {}: {minted}",
            old_jwt_keys[0]
        )
    })?;
    client.wait_for("the old token accepted", EVENT, |e| {
        str_field(e, "event") == "probe" && str_field(e, "name") == "old" && e["ok"] == true
    })?;

    // JWT: prepare, activate, taint, revoke.
    let since = Instant::now();
    let old_jwt = active_authority(&spire, "jwt")?;
    check(old_jwt == old_jwt_keys[0], || {
        format!(
            "SPIRE's JWT authority ID {old_jwt} is not the key ID {}",
            old_jwt_keys[0]
        )
    })?;
    let new_jwt = prepare(&spire, "jwt")?;
    server_snapshot(&mut server, "the prepared JWT key", |e| {
        strings(e, "jwt_kids").contains(&new_jwt)
    })?;
    figure("jwt prepare -> zt server holds the new key", since);

    let since = Instant::now();
    spire.server_cli(&[
        "localauthority",
        "jwt",
        "activate",
        "-authorityID",
        &new_jwt,
    ])?;
    let deadline = Instant::now() + EVENT;
    let mut n = 0;
    loop {
        n += 1;
        client.write_line(&format!("mint new{n}"))?;
        let minted = client.wait_for_event("minted", EVENT)?;
        if str_field(&minted, "kid") == new_jwt {
            break;
        }
        check(Instant::now() < deadline, || {
            format!("no token signed by {new_jwt} within {EVENT:?}")
        })?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let name = format!("new{n}");
    client.wait_for("the new key's token accepted", EVENT, |e| {
        str_field(e, "event") == "probe" && str_field(e, "name") == name && e["ok"] == true
    })?;
    figure(
        "jwt activate -> a token signed by the new key validates at the zt server",
        since,
    );
    // As an operator does before tainting: wait until the workloads' tokens
    // are signed by the new key (JwtSvids refreshes them at half life).
    client.wait_for("the traffic's token signed by the new key", EVENT, |e| {
        str_field(e, "event") == "traffic_token" && str_field(e, "kid") == new_jwt
    })?;
    figure(
        "jwt activate -> zt client's traffic carries tokens of the new key",
        since,
    );

    let since = Instant::now();
    spire.server_cli(&[
        "localauthority",
        "jwt",
        "taint",
        "-authorityID",
        &old_jwt_keys[0],
    ])?;
    figure(
        "jwt taint (the old key's tokens keep validating until revoked)",
        since,
    );

    let since = Instant::now();
    spire.server_cli(&[
        "localauthority",
        "jwt",
        "revoke",
        "-authorityID",
        &old_jwt_keys[0],
    ])?;
    client.wait_for("the old token refused", EVENT, |e| {
        str_field(e, "event") == "probe" && str_field(e, "name") == "old" && e["ok"] == false
    })?;
    let refused_after = since.elapsed();
    figure("jwt revoke -> the old key's token refused", since);
    let deny = server.wait_for("the audit record of the refusal", EVENT, |e| {
        str_field(e, "event") == "deny" && str_field(e, "detail").contains(&old_jwt_keys[0])
    })?;
    check(str_field(&deny, "reason") == "jwt-svid:unknown-kid", || {
        format!("unexpected audit reason: {deny}")
    })?;
    // The agent syncs every second; allow for a loaded machine.
    check(refused_after < Duration::from_secs(10), || {
        format!("the revoked key was honoured for {refused_after:?}")
    })?;

    // X.509: prepare, activate, taint, revoke.
    let since = Instant::now();
    let old_x509_id = active_authority(&spire, "x509")?;
    let new_x509 = prepare(&spire, "x509")?;
    let prepared = server_snapshot(&mut server, "the prepared X.509 authority", |e| {
        strings(e, "x509_authorities").len() == 2
    })?;
    figure("x509 prepare -> zt server trusts the new authority", since);
    let new_authority = strings(&prepared, "x509_authorities")
        .into_iter()
        .find(|a| *a != old_x509[0])
        .unwrap_or_default();

    let since = Instant::now();
    spire.server_cli(&[
        "localauthority",
        "x509",
        "activate",
        "-authorityID",
        &new_x509,
    ])?;
    server_snapshot(&mut server, "a server SVID under the new authority", |e| {
        str_field(e, "svid_authority") == new_authority
    })?;
    figure(
        "x509 activate -> zt server serves an SVID of the new authority",
        since,
    );
    // The client's SVID (200 s TTL) is still from the old authority: probe
    // a handshake with it while that authority is trusted.
    client.write_line("keep-svid")?;
    let kept = client.wait_for_event("kept_svid", EVENT)?;
    check(str_field(&kept, "authority") == old_x509[0], || {
        format!("the client's SVID should still be from the old authority: {kept}")
    })?;
    client.write_line("probe-svid")?;
    let probe = client.wait_for_event("svid_probe", EVENT)?;
    if probe["ok"] != true {
        let refusal = server.wait_for("the refusal", Duration::from_secs(5), |e| {
            str_field(e, "event") == "deny"
        });
        return Err(zt_interop::Error::Command(format!(
            "a handshake with the old authority's SVID failed while it is trusted: {probe}; server: {refusal:?}"
        )));
    }

    let since = Instant::now();
    let agent_log = spire.agent_log_position();
    spire.server_cli(&[
        "localauthority",
        "x509",
        "taint",
        "-authorityID",
        &old_x509_id,
    ])?;
    client.wait_for("the client's SVID under the new authority", EVENT, |e| {
        str_field(e, "event") == "snapshot" && str_field(e, "svid_authority") == new_authority
    })?;
    figure(
        "x509 taint -> zt client re-issued under the new authority",
        since,
    );
    // The agent's own SVID is re-issued too; revoking before that would cut
    // the agent off from its server.
    spire.wait_for_agent_log(agent_log, "the agent's own SVID re-issued", EVENT, |v| {
        v.get("msg").and_then(Value::as_str) == Some("Successfully rotated agent SVID")
    })?;
    figure("x509 taint -> the SPIRE agent's own SVID re-issued", since);

    let since = Instant::now();
    spire.server_cli(&[
        "localauthority",
        "x509",
        "revoke",
        "-authorityID",
        &old_x509_id,
    ])?;
    server_snapshot(&mut server, "the old authority gone", |e| {
        strings(e, "x509_authorities") == [new_authority.clone()]
    })?;
    figure(
        "x509 revoke -> zt server no longer trusts the old authority",
        since,
    );
    client.write_line("probe-svid")?;
    let probe = client.wait_for_event("svid_probe", EVENT)?;
    check(probe["ok"] == false, || {
        format!("a handshake with the revoked authority's SVID succeeded: {probe}")
    })?;

    // Agent restart while the JWT stream is open.
    let since = Instant::now();
    let before = last_serial(&server);
    spire.restart_agent()?;
    server.wait_for("the agent restart reported", EVENT, |e| {
        str_field(e, "event") == "health" && str_field(e, "health").contains("Degraded")
    })?;
    figure("agent restart -> zt server reports it in health", since);
    server_snapshot(&mut server, "an SVID from the restarted agent", |e| {
        Some(str_field(e, "serial").to_owned()) != before
    })?;
    server.wait_for("health back to healthy", EVENT, |e| {
        str_field(e, "event") == "health" && str_field(e, "health") == "Healthy"
    })?;
    figure("agent restart -> zt server rotated and healthy", since);

    // The server workload's entry deleted, then re-created.
    let entry = spire
        .entries()?
        .into_iter()
        .find(|e| e.spiffe_id == SERVER_ID)
        .ok_or_else(|| zt_interop::Error::Command("the server's entry is gone".into()))?;
    let since = Instant::now();
    spire.delete_entry(&entry.id)?;
    server.wait_for("the withdrawal reported", EVENT, |e| {
        str_field(e, "event") == "health" && str_field(e, "health").contains("withdr")
    })?;
    figure(
        "entry delete -> zt server reports the withdrawal (keeps serving)",
        since,
    );
    let since = Instant::now();
    let before = last_serial(&server);
    spire.register(&server_spec)?;
    server_snapshot(&mut server, "an SVID of the re-created entry", |e| {
        Some(str_field(e, "serial").to_owned()) != before
    })?;
    server.wait_for("health back to healthy", EVENT, |e| {
        str_field(e, "event") == "health" && str_field(e, "health") == "Healthy"
    })?;
    figure(
        "entry re-created -> zt server serves its new SVID, healthy",
        since,
    );

    // The SPIRE server down for 12 s under traffic: the agent keeps serving
    // what it holds, JWT-SVID refreshes that fall in the outage fail in the
    // background, and no request waits for them.
    let outage = Duration::from_secs(12);
    let down = Instant::now();
    spire.stop_server()?;
    let mut during = (0_u64, 0_u64);
    while down.elapsed() < outage {
        let progress = client.wait_for_event("progress", EVENT)?;
        during.0 += 1;
        during.1 = during
            .1
            .max(progress["max_ms"].as_u64().unwrap_or_default());
    }
    spire.start_server()?;
    let after = client.wait_for_event("progress", EVENT)?;
    eprintln!(
        "[lifecycle] SPIRE server down {:.1} s: slowest request {} ms ({} progress windows); after restart {} ms",
        down.elapsed().as_secs_f64(),
        during.1,
        during.0,
        after["max_ms"]
    );

    client.write_line("stop")?;
    let summary = client.wait_for_event("summary", EVENT)?;
    eprintln!("[lifecycle] traffic: {summary}");
    check(summary["failed"] == 0, || {
        format!("requests failed: {summary}")
    })?;
    check(summary["ok"].as_u64() > Some(100), || {
        format!("too little traffic: {summary}")
    })?;
    eprintln!("[lifecycle] done in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
