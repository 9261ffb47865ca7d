//! Zero-trust calls in one process: a fake CA, an `orders` service calling
//! a `billing` service over mutual TLS, an impostor refused, SVIDs rotating
//! under traffic, and per-request authorization (a policy file and callers
//! declared in code with `#[callers]`) with audit lines and a revocation.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! No SPIRE is needed: the fake CA in `zt-dev` issues the same X.509-SVIDs
//! a SPIRE agent would. Set `RUST_LOG=zt=debug` to watch the handshakes,
//! `RUST_LOG=zt::audit=info` to see authorization decisions as `tracing`
//! events as well as the JSON lines printed here. Set
//! `ZT_AUDIT_FILE=audit.jsonl` to also append the audit lines to a file,
//! for `zt audit graph` and the other `zt audit` tools.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use zt_authz::Authorizer;
use zt_authz::audit::{AuditEvent, AuditSink, JsonLinesAuditWriter};
use zt_authz::policy::Policy;
use zt_client::{PeerRejected, ZtClient};
use zt_core::matcher::IdMatcher;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::macros::Declarations;
use zt_server::{AuthorizeLayer, VerifiedPeer, ZtServer, callers};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The billing service's only endpoint: it answers with who called it.
async fn invoice(peer: VerifiedPeer) -> String {
    format!(
        "invoice #42 for {} (cert serial {})",
        peer.id(),
        &peer.serial_hex()[..8]
    )
}

/// A ledger endpoint that declares its callers in code: only billing may
/// post entries, whatever the policy file grants. A typo in the ID would
/// fail the build.
#[callers("spiffe://example.org/billing", http = "POST /entries")]
async fn post_entry() -> &'static str {
    "entry posted"
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    zt_examples::init_tracing();

    step(1, "A development CA for trust domain example.org");
    let ca = FakeCa::new(TrustDomain::new("example.org")?)?;
    println!("    root CA issued; SVIDs will live 6 seconds and rotate at half-life");
    let ttl = Duration::from_secs(6);

    let billing_id = SpiffeId::new("spiffe://example.org/billing")?;
    let orders_id = SpiffeId::new("spiffe://example.org/orders")?;
    let billing = FakeCaSource::new(ca.clone(), billing_id.clone(), ttl)?;
    let orders = FakeCaSource::new(ca.clone(), orders_id.clone(), ttl)?;

    step(
        2,
        "billing serves over mutual TLS on 127.0.0.1, accepting only orders",
    );
    let server = ZtServer::builder(billing.clone())
        .accept_callers(IdMatcher::exact(orders_id.clone()))
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new().route("/invoice", get(invoice));
    let serving = tokio::spawn(async move {
        server
            .serve(listener, app, async {
                let _ = stop_rx.await;
            })
            .await
    });
    println!("    billing is {billing_id}, listening on {addr}");

    step(3, "orders calls billing, pinning billing's SPIFFE ID");
    let client = ZtClient::builder(orders.clone())
        .pin_server(IdMatcher::exact(billing_id.clone()))
        .build()?;
    let http = client.reqwest_client()?;
    let url = format!("https://{addr}/invoice");
    let reply = http.get(&url).send().await?.text().await?;
    println!("    orders presented {orders_id}");
    println!("    billing answered: {reply}");

    step(
        4,
        "an impostor with a valid SVID from the same CA calls billing",
    );
    let impostor_id = SpiffeId::new("spiffe://example.org/intruder")?;
    let impostor = FakeCaSource::new(ca.clone(), impostor_id.clone(), ttl)?;
    let impostor_client = ZtClient::builder(impostor)
        .pin_server(IdMatcher::exact(billing_id.clone()))
        .build()?;
    match impostor_client.reqwest_client()?.get(&url).send().await {
        Ok(resp) => return Err(format!("impostor was served: {}", resp.status()).into()),
        Err(_) => println!("    {impostor_id} was refused during the TLS handshake"),
    }

    step(5, "orders calls a server that is not who it pinned");
    let wrong_pin = ZtClient::builder(orders.clone())
        .pin_server(IdMatcher::exact(SpiffeId::new(
            "spiffe://example.org/ledger",
        )?))
        .build()?;
    match wrong_pin.connect(addr).await {
        Ok(_) => return Err("client accepted an unpinned server".into()),
        // The typed refusal: which ID the server presented, which the pin accepts.
        Err(e) => match PeerRejected::find(&e) {
            Some(refusal) => println!("    {refusal}"),
            None => return Err(format!("unexpected failure: {e}").into()),
        },
    }

    step(6, "SVIDs rotate every 3 s while orders keeps calling");
    billing.start_rotation();
    orders.start_rotation();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let fresh = client.reqwest_builder().pool_max_idle_per_host(0).build()?;
    let first_serial = orders.current()?.svid().serial_hex();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
    let mut seen = std::collections::BTreeSet::new();
    while tokio::time::Instant::now() < deadline {
        match fresh.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                ok.fetch_add(1, Ordering::Relaxed);
                if let Some(serial) = r.text().await?.split("serial ").nth(1) {
                    seen.insert(serial.trim_end_matches(')').to_owned());
                }
            }
            _ => {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_serial = orders.current()?.svid().serial_hex();
    println!(
        "    {} calls succeeded, {} failed; billing saw {} different orders certificates",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        seen.len()
    );
    println!(
        "    orders' serial went from {} to {}",
        &first_serial[..8],
        &last_serial[..8]
    );
    if failed.load(Ordering::Relaxed) > 0 || seen.len() < 2 {
        return Err("rotation under traffic did not go cleanly".into());
    }

    step(
        7,
        "ledger authorizes every request by policy and audits each decision",
    );
    let (ledger_addr, stop_ledger, audit, revocations) = start_ledger(&ca, ttl).await?;
    let ledger_client = ZtClient::builder(orders.clone())
        .pin_server(IdMatcher::exact(SpiffeId::new(
            "spiffe://example.org/ledger",
        )?))
        .build()?
        .reqwest_client()?;
    for (what, method, path, expected) in [
        ("an allowed route", "GET", "/entries/7", 200),
        ("a denied route", "GET", "/admin/reset", 403),
        (
            "a route an audit-only (dry-run) rule watches",
            "GET",
            "/entries/export",
            200,
        ),
        (
            "a route whose code declares only billing (#[callers])",
            "POST",
            "/entries",
            403,
        ),
    ] {
        let url = format!("https://{ledger_addr}{path}");
        let resp = match method {
            "POST" => ledger_client.post(url).send().await?,
            _ => ledger_client.get(url).send().await?,
        };
        let status = resp.status();
        println!(
            "    {what}: {method} {path} -> {status} {}",
            resp.text().await?
        );
        audit.flush();
        if status.as_u16() != expected {
            return Err(format!("{method} {path}: expected {expected}, got {status}").into());
        }
    }
    let billing_client = ZtClient::builder(billing.clone())
        .pin_server(IdMatcher::exact(SpiffeId::new(
            "spiffe://example.org/ledger",
        )?))
        .build()?
        .reqwest_client()?;
    let resp = billing_client
        .post(format!("https://{ledger_addr}/entries"))
        .send()
        .await?;
    let status = resp.status();
    println!(
        "    billing, which the code declares: POST /entries -> {status} {}",
        resp.text().await?
    );
    audit.flush();
    if status.as_u16() != 200 {
        return Err(format!("billing's POST /entries got {status}").into());
    }
    println!(
        "    revoking {orders_id}: the server ends its open connection, and refuses its next request or handshake"
    );
    revocations.revoke_id(orders_id.clone());
    match ledger_client
        .get(format!("https://{ledger_addr}/entries/7"))
        .send()
        .await
    {
        // The request reached the open connection before the server ended it.
        Ok(resp) => {
            let status = resp.status();
            println!("    GET /entries/7 -> {status} {}", resp.text().await?);
            if status.as_u16() != 403 {
                return Err(format!("a revoked caller got {status}").into());
            }
        }
        // The connection was already ended, and the new handshake refused.
        Err(e) => println!("    GET /entries/7 -> no response: {}", root_cause(&e)),
    }
    audit.flush();
    let _ = stop_ledger.send(());

    step(8, "shutting down");
    let _ = stop_tx.send(());
    serving.await??;
    println!("    done: every call proved who made it.");
    Ok(())
}

const LEDGER_POLICY: &str = r#"
version = "quickstart-1"

[[rule]]
id = "orders-reads-entries"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/entries/{id}" }]

[[rule]]
id = "billing-posts-entries"
effect = "allow"
callers = ["spiffe://example.org/billing"]
http = [{ method = "POST", path = "/entries" }]

[[rule]]
id = "nobody-resets"
effect = "deny"
http = [{ method = "*", path = "/admin/**" }]

[[rule]]
id = "watch-exports"
effect = "audit"
http = [{ method = "GET", path = "/entries/export" }]
"#;

/// Audit lines go to stdout through the non-blocking JSON-lines writer
/// (and to the file named by `ZT_AUDIT_FILE`, if set).
type Audit = Arc<Tee>;

/// Sends each audit event to every writer.
struct Tee(Vec<JsonLinesAuditWriter>);

impl Tee {
    /// Waits until every writer has written what it was given.
    fn flush(&self) {
        for writer in &self.0 {
            writer.flush();
        }
    }
}

impl AuditSink for Tee {
    fn record(&self, event: &AuditEvent<'_>) {
        for writer in &self.0 {
            writer.record(event);
        }
    }
}

/// Starts `ledger`: any workload of example.org may connect; the policy
/// file and the callers declared in code decide per request (both must
/// allow).
async fn start_ledger(
    ca: &FakeCa,
    ttl: Duration,
) -> Result<(SocketAddr, oneshot::Sender<()>, Audit, Revocations), BoxError> {
    let ledger = FakeCaSource::new(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/ledger")?,
        ttl,
    )?;
    let mut writers = vec![JsonLinesAuditWriter::new(
        Indented(std::io::stdout()),
        1024,
    )?];
    if let Some(path) = std::env::var_os("ZT_AUDIT_FILE") {
        writers.push(JsonLinesAuditWriter::append_to_file(path)?);
    }
    let audit: Audit = Arc::new(Tee(writers));
    let revocations = Revocations::new();
    let engine = Declarations::builder()
        .add::<post_entry>()
        .build()?
        .with_policy(Policy::from_toml_str(LEDGER_POLICY, "ledger.toml")?);
    let authorizer = Authorizer::builder(engine)
        .target("ledger")
        .revocations(revocations.clone())
        .audit_sink(audit.clone())
        .build();
    let app = Router::new()
        .route("/entries/{id}", get(|| async { "entry" }))
        .route("/entries", post(post_entry))
        .route("/admin/reset", get(|| async { "reset" }))
        .route_layer(AuthorizeLayer::new(authorizer));
    let server = ZtServer::builder(ledger)
        .accept_callers(IdMatcher::in_trust_domain(TrustDomain::new("example.org")?))
        .revocations(revocations.clone())
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .serve(listener, app, async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((addr, stop, audit, revocations))
}

/// Prefixes every audit line with `    audit: `.
struct Indented<W>(W);

impl<W: std::io::Write> std::io::Write for Indented<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(b"    audit: ")?;
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The innermost error of a chain, for one line of output.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
