//! Two trust domains federated through SPIFFE bundle endpoints: `bank.example`
//! publishes its bundle with zt's bundle endpoint server, `shop.example`
//! fetches it (and the other way round), and a shop workload calls a bank
//! service over mutual TLS. A workload of `other.example`, which nobody
//! federates with, is refused; a new bank root reaches the shop by the
//! background refresh.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example federation
//! ```
//!
//! Both trust domains use zt's fake CA; with SPIRE, the `Endpoint` would
//! point at the SPIRE server's bundle endpoint
//! (`spiffe://<trust domain>/spire/server`, `https_spiffe`) and the local
//! source would be a `WorkloadApiSource`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use zt_client::ZtClient;
use zt_core::source::SvidSource;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_federation::{BundleEndpointServer, Endpoint, FederatedSource, Federation};
use zt_server::{VerifiedPeer, ZtServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TTL: Duration = Duration::from_secs(300);

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

async fn pay(peer: VerifiedPeer) -> String {
    format!("payment accepted from {}", peer.id())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    zt_examples::init_tracing();
    let shop_td: TrustDomain = "shop.example".parse()?;
    let bank_td: TrustDomain = "bank.example".parse()?;
    let shop_ca = FakeCa::new(shop_td.clone())?;
    let bank_ca = FakeCa::new(bank_td.clone())?;

    step(
        1,
        "Each trust domain serves its bundle (https_spiffe profile)",
    );
    let any = "127.0.0.1:0".parse()?;
    let bank_endpoint_id: SpiffeId = "spiffe://bank.example/bundle-endpoint".parse()?;
    let shop_endpoint_id: SpiffeId = "spiffe://shop.example/bundle-endpoint".parse()?;
    let bank_endpoint_source = FakeCaSource::new(bank_ca.clone(), bank_endpoint_id.clone(), TTL)?;
    let bank_endpoint = BundleEndpointServer::https_spiffe(bank_endpoint_source.clone())
        .refresh_hint(Duration::from_secs(1))
        .bind(any)
        .await?;
    let shop_endpoint = BundleEndpointServer::https_spiffe(FakeCaSource::new(
        shop_ca.clone(),
        shop_endpoint_id.clone(),
        TTL,
    )?)
    .bind(any)
    .await?;
    println!("    bank.example: {}", bank_endpoint.url());
    println!("    shop.example: {}", shop_endpoint.url());

    step(
        2,
        "Each side federates with the other, starting from a bundle exchanged once",
    );
    // The endpoint presents an SVID of its own trust domain, so the first
    // fetch needs that trust domain's bundle, obtained out of band.
    let shop_federation = Federation::builder()
        .endpoint(
            Endpoint::https_spiffe(bank_td.clone(), bank_endpoint.url(), bank_endpoint_id)
                .initial_bundle(bank_ca.bundle())?,
        )
        .refresh_bounds(Duration::from_secs(1), Duration::from_secs(300))
        .build()?;
    let bank_federation = Federation::builder()
        .endpoint(
            Endpoint::https_spiffe(shop_td.clone(), shop_endpoint.url(), shop_endpoint_id)
                .initial_bundle(shop_ca.bundle())?,
        )
        .build()?;
    // One fetch each now, then background refreshes at the refresh hint.
    shop_federation.refresh(&bank_td).await?;
    bank_federation.refresh(&shop_td).await?;
    shop_federation.start()?;
    bank_federation.start()?;
    let orders = FederatedSource::new(
        FakeCaSource::new(
            shop_ca.clone(),
            "spiffe://shop.example/orders".parse()?,
            TTL,
        )?,
        shop_federation.clone(),
    )?;
    let payments = FederatedSource::new(
        FakeCaSource::new(
            bank_ca.clone(),
            "spiffe://bank.example/payments".parse()?,
            TTL,
        )?,
        bank_federation,
    )?;
    for status in shop_federation.status() {
        println!(
            "    shop.example trusts {} (sequence {:?})",
            status.trust_domain, status.sequence
        );
    }

    step(
        3,
        "shop.example/orders calls bank.example/payments over mutual TLS",
    );
    let server = ZtServer::builder(payments).build()?;
    let listener = TcpListener::bind(any).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = Router::new().route("/pay", get(pay));
        if let Err(e) = server.serve(listener, app, std::future::pending()).await {
            eprintln!("server stopped: {e}");
        }
    });
    let client = ZtClient::builder(orders.clone())
        .pin_server("spiffe://bank.example/payments".parse()?)
        .build()?;
    let http = client.reqwest_client()?;
    let answer = http.get(format!("https://{addr}/pay")).send().await?;
    println!("    {} {}", answer.status(), answer.text().await?);

    step(
        4,
        "other.example trusts the bank, but the bank does not federate with it",
    );
    let other_ca = FakeCa::new("other.example".parse()?)?;
    let intruder = FakeCaSource::new(other_ca, "spiffe://other.example/intruder".parse()?, TTL)?;
    intruder.add_federated_bundle(bank_ca.bundle())?;
    let intruder_client = ZtClient::builder(intruder)
        .pin_server("spiffe://bank.example/payments".parse()?)
        .build()?;
    match intruder_client
        .reqwest_client()?
        .get(format!("https://{addr}/pay"))
        .send()
        .await
    {
        Ok(answer) => {
            return Err(format!("the bank answered other.example: {}", answer.status()).into());
        }
        Err(e) => println!("    refused at the handshake: {e}"),
    }

    step(
        5,
        "bank.example adds a root; the shop picks it up at the next refresh",
    );
    bank_ca.rotate()?;
    bank_endpoint_source.refresh_bundles()?;
    let started = Instant::now();
    loop {
        let roots = orders
            .current()?
            .bundles()
            .get(&bank_td)
            .map_or(0, |b| b.x509_authorities().len());
        if roots == 2 {
            println!(
                "    shop.example now holds {roots} bank.example roots ({:.1} s after the change)",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err("the new bank root did not arrive within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
