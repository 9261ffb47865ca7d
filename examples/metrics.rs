//! Metrics and health: a zt server on the fake CA, a Prometheus recorder
//! installed by the application, and a plain-HTTP admin port serving
//! `/metrics` (Prometheus text) and `/ready` (the readiness probe). A few
//! calls are made (allowed, denied by policy, refused at the handshake),
//! the SVID rotates once, then the example fetches both admin pages over
//! HTTP and prints some of their lines.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example metrics
//! ```
//!
//! zt records through the `metrics` facade and never picks an exporter:
//! `metrics-exporter-prometheus` here, any other `metrics` recorder (an
//! OpenTelemetry bridge, statsd) the same way.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use zt_authz::Authorizer;
use zt_authz::policy::{Policy, PolicyStore};
use zt_core::matcher::IdMatcher;
use zt_core::metrics::HANDSHAKE_DURATION_SECONDS;
use zt_core::source::SvidSource as _;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::health::{HealthCheck, ready};
use zt_server::{AuthorizeLayer, ZtServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const POLICY: &str = r#"
version = "billing-v3"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]
"#;

/// A GET over plain HTTP/1.1: the admin port has no TLS.
async fn fetch(addr: SocketAddr, path: &str) -> Result<String, BoxError> {
    let mut tcp = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(response))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    zt_examples::init_tracing();

    // The application chooses the exporter; zt only records. Handshake
    // durations as a histogram with these buckets (seconds).
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(HANDSHAKE_DURATION_SECONDS.to_owned()),
            &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
        )?
        .install_recorder()?;

    let ca = FakeCa::new(TrustDomain::new("example.org")?)?;
    let id = |name: &str| SpiffeId::new(format!("spiffe://example.org/{name}"));
    let billing = FakeCaSource::new(ca.clone(), id("billing")?, Duration::from_secs(300))?;
    // This process also holds the callers' sources: name the service's own
    // so its SVID series stand apart from theirs (label `source`).
    billing.state().set_metrics_name("billing");
    let authz = Authorizer::builder(PolicyStore::new(Policy::from_toml_str(
        POLICY,
        "policy.toml",
    )?))
    .target("billing")
    .build();

    // The service, over mutual TLS.
    let server = ZtServer::builder(billing.clone())
        .accept_callers(IdMatcher::one_of([id("orders")?, id("reports")?]))
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/invoices/{id}", get(|| async { "invoice" }))
        .route_layer(AuthorizeLayer::new(authz.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });

    // The admin port: plain HTTP, for the scraper and the orchestrator.
    let health = HealthCheck::new(billing.clone()).authorizer(&authz);
    let admin = Router::new()
        .route("/metrics", get(move || async move { prometheus.render() }))
        .route("/ready", get(ready))
        .with_state(health);
    let admin_listener = TcpListener::bind("127.0.0.1:0").await?;
    let admin_addr = admin_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(admin_listener, admin).await });
    println!("service on https://{addr}, admin on http://{admin_addr}");

    // Calls: `orders` is allowed, `reports` is denied by policy, `intruder`
    // is refused in the handshake.
    let client = |name: &str| -> Result<reqwest::Client, BoxError> {
        let source = FakeCaSource::new(ca.clone(), id(name)?, Duration::from_secs(300))?;
        Ok(zt_client::ClientBuilder::new(source)
            .pin_server(IdMatcher::exact(id("billing")?))
            .build()?
            .reqwest_client()?)
    };
    for name in ["orders", "orders", "reports", "intruder"] {
        let outcome = match client(name)?
            .get(format!("https://{addr}/invoices/7"))
            .send()
            .await
        {
            Ok(response) => response.status().to_string(),
            Err(_) => "refused at the handshake".to_owned(),
        };
        println!("{name:>8} GET /invoices/7 -> {outcome}");
    }
    billing.rotate_now()?;
    println!("billing's SVID rotated");

    let metrics = fetch(admin_addr, "/metrics").await?;
    println!("\nGET http://{admin_addr}/metrics (some lines):");
    for line in metrics.lines().filter(|line| {
        [
            "zt_authz_decisions_total",
            "zt_handshakes_total",
            "zt_handshake_duration_seconds_count",
            "zt_svid_rotations_total{source=\"billing\"}",
            "zt_svid_expiry_timestamp_seconds{source=\"billing\"}",
            "zt_policy_info",
        ]
        .iter()
        .any(|name| line.starts_with(name))
    }) {
        println!("  {line}");
    }
    println!(
        "\nGET http://{admin_addr}/ready:\n  {}",
        fetch(admin_addr, "/ready").await?
    );

    let _ = stop.send(());
    serving.await??;
    Ok(())
}
