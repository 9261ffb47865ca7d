//! HTTP over mutual TLS: an axum server that greets its verified caller and
//! a reqwest client pinned to the server's SPIFFE ID.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example http
//! ```
//!
//! With a SPIRE agent (or `zt agent`) instead of the fake CA, set
//! `SPIFFE_ENDPOINT_SOCKET`; the same workload then serves and calls with
//! the identity the agent hands out:
//!
//! ```text
//! zt ca init --trust-domain example.org --dir ./dev-ca
//! zt agent --ca ./dev-ca --socket /tmp/zt.sock --id spiffe://example.org/api &
//! SPIFFE_ENDPOINT_SOCKET=unix:///tmp/zt.sock cargo run --example http
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use zt_core::matcher::IdMatcher;
use zt_core::source::{SvidSource, WorkloadApiSource};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::VerifiedPeer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn hello(peer: VerifiedPeer) -> String {
    format!(
        "hello, {} (trust domain {})",
        peer.id(),
        peer.trust_domain()
    )
}

/// One identity for both sides: from the Workload API if
/// `SPIFFE_ENDPOINT_SOCKET` is set, else from a fresh fake CA.
async fn identity() -> Result<Arc<dyn SvidSource>, BoxError> {
    if std::env::var_os("SPIFFE_ENDPOINT_SOCKET").is_some() {
        println!("identity from the Workload API at $SPIFFE_ENDPOINT_SOCKET");
        let source = WorkloadApiSource::builder()
            .initial_sync_timeout(Duration::from_secs(10))
            .build()
            .await?;
        return Ok(source);
    }
    println!("identity from a fake CA (set SPIFFE_ENDPOINT_SOCKET to use SPIRE)");
    let ca = FakeCa::new(TrustDomain::new("example.org")?)?;
    let id = SpiffeId::new("spiffe://example.org/api")?;
    Ok(FakeCaSource::new(ca, id, Duration::from_secs(300))?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    zt_examples::init_tracing();
    let source = identity().await?;
    let me = source.current()?.svid().id().clone();
    println!("this workload is {me}");

    let server = zt_server::ServerBuilder::new(source.clone()).build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new().route("/hello", get(hello));
    let serving = tokio::spawn(async move {
        server
            .serve(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });

    // The same workload calls itself, pinning its own ID.
    let client = zt_client::ClientBuilder::new(source)
        .pin_server(IdMatcher::exact(me))
        .build()?;
    let http = client.reqwest_client()?;
    for version in ["first", "second"] {
        let resp = http.get(format!("https://{addr}/hello")).send().await?;
        println!(
            "{version} call: {:?} {} -> {}",
            resp.version(),
            resp.status(),
            resp.text().await?
        );
    }

    let _ = stop.send(());
    serving.await??;
    Ok(())
}
