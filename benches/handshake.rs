//! Full mutual-TLS handshakes in memory: zt against plain rustls (same
//! keys, same provider, zt's default: aws-lc-rs with X25519MLKEM768 first,
//! webpki verifiers) and against spiffe-rustls fed by the fake CA's
//! Workload API. `zt-classical` is zt with the same provider offering
//! X25519 and P-256 only, for `handshake pq/classical = R`: what the
//! post-quantum key exchange costs per handshake.
//!
//! ```text
//! cargo bench --bench handshake
//! ```
//!
//! Every configuration has session resumption off, so each iteration is a
//! full handshake: each side signs once (ECDSA P-256) and checks the other's
//! handshake signature. rustls and spiffe-rustls also verify the peer's
//! chain at every handshake; zt verifies a given chain once per bundle
//! revision and reuses the result while it stays valid (see
//! `zt_core::peer::PeerVerifier`), so repeat connections from the same
//! workload skip that work. `zt-no-chain-cache` measures zt verifying in
//! full every time. The last lines print throughput ratios (higher is
//! better for zt): `handshake zt/rustls = R` and
//! `handshake zt/spiffe-rustls = R`; then the floor (one P-256 signature,
//! one verification and one X25519 exchange, measured in the same run) and
//! `handshake zt/floor = R` with the chain cache on and off (time over the
//! unavoidable public-key work; 1.0 would be a handshake that costs nothing
//! else).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use rustls::client::Resumption;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};
use rustls_pki_types::ServerName;
use zt_benches::criterion_median_ns as median_ns;
use zt_client::ZtClient;
use zt_core::matcher::IdMatcher;
use zt_core::source::SvidSource;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource, WorkloadApiServer};
use zt_server::ZtServer;

const TTL: Duration = Duration::from_secs(3600);

/// zt's default provider (aws-lc-rs, X25519MLKEM768 first), which plain
/// rustls uses too so both do the same key exchange.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(zt_tls::default_provider())
}

/// zt's provider with the SHA-256 suite (TLS13_AES_128_GCM_SHA256) moved
/// first, for the cipher-suite order measurement.
fn sha256_first_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = zt_tls::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// The same provider offering classical groups only (X25519, P-256).
fn classical_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = zt_tls::default_provider();
    provider
        .kx_groups
        .retain(|g| !zt_tls::is_post_quantum(g.name()));
    Arc::new(provider)
}

/// Moves TLS records between the two ends until both finish the handshake.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>, name: &ServerName<'static>) {
    let mut c = Connection::Client(ClientConnection::new(client.clone(), name.clone()).unwrap());
    let mut s = Connection::Server(ServerConnection::new(server.clone()).unwrap());
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        transfer(&mut c, &mut s, &mut buf);
        transfer(&mut s, &mut c, &mut buf);
    }
}

fn transfer(from: &mut Connection, to: &mut Connection, buf: &mut Vec<u8>) {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
    }
}

struct Configs {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

/// zt configs with `provider`; `chain_cache` 0 verifies every peer chain
/// in full.
fn zt_configs(
    client: &Arc<FakeCaSource>,
    server: &Arc<FakeCaSource>,
    chain_cache: usize,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Configs {
    let client = ZtClient::builder(client.clone())
        .pin_server("spiffe://example.org/billing".parse::<IdMatcher>().unwrap())
        .verified_chain_cache(chain_cache)
        .crypto_provider(provider.clone())
        .build()
        .unwrap()
        .rustls_config_with_alpn(Vec::new());
    let server = ZtServer::builder(server.clone())
        .verified_chain_cache(chain_cache)
        .crypto_provider(provider.clone())
        .build()
        .unwrap()
        .rustls_config_with_alpn(Vec::new());
    Configs { client, server }
}

/// Plain rustls with the very same certificates and keys.
fn rustls_configs(ca: &FakeCa, client: &Arc<FakeCaSource>, server: &Arc<FakeCaSource>) -> Configs {
    let mut roots = RootCertStore::empty();
    roots.add(ca.root_certificate()).unwrap();
    let roots = Arc::new(roots);
    let c = client.current().unwrap();
    let s = server.current().unwrap();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(
            c.svid().chain().to_vec(),
            c.svid().private_key().clone_key(),
        )
        .unwrap();
    client.resumption = Resumption::disabled();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .unwrap();
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            s.svid().chain().to_vec(),
            s.svid().private_key().clone_key(),
        )
        .unwrap();
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    Configs {
        client: Arc::new(client),
        server: Arc::new(server),
    }
}

/// spiffe-rustls configs over `X509Source`s connected to two fake-CA
/// Workload API servers serving the same identities.
async fn spiffe_rustls_configs(
    dir: &Path,
    client: &Arc<FakeCaSource>,
    server: &Arc<FakeCaSource>,
) -> (Configs, Vec<zt_dev::WorkloadApiServerHandle>) {
    let client_api = WorkloadApiServer::new(client.clone())
        .serve_unix(dir.join("orders.sock"))
        .await
        .unwrap();
    let server_api = WorkloadApiServer::new(server.clone())
        .serve_unix(dir.join("billing.sock"))
        .await
        .unwrap();
    let client_source = spiffe::X509Source::builder()
        .endpoint(client_api.endpoint())
        .build()
        .await
        .unwrap();
    let server_source = spiffe::X509Source::builder()
        .endpoint(server_api.endpoint())
        .build()
        .await
        .unwrap();
    let client = spiffe_rustls::mtls_client(client_source)
        .authorize(spiffe_rustls::exact(["spiffe://example.org/billing"]).unwrap())
        .build()
        .unwrap();
    let server = spiffe_rustls::mtls_server(server_source).build().unwrap();
    (
        Configs {
            client: Arc::new(client),
            server: Arc::new(server),
        },
        vec![client_api, server_api],
    )
}

fn main() {
    // spiffe-rustls takes rustls's process-wide provider; give it zt's.
    let _ = rustls::crypto::CryptoProvider::install_default(zt_tls::default_provider());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let orders = FakeCaSource::new(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/orders").unwrap(),
        TTL,
    )
    .unwrap();
    let billing = FakeCaSource::with_dns_names(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/billing").unwrap(),
        TTL,
        vec!["billing.test".into()],
    )
    .unwrap();

    let cache = zt_core::peer::DEFAULT_CHAIN_CACHE_CAPACITY;
    let zt = zt_configs(&orders, &billing, cache, &provider());
    let zt_classical = zt_configs(&orders, &billing, cache, &classical_provider());
    let zt_full = zt_configs(&orders, &billing, 0, &provider());
    let zt_sha256 = zt_configs(&orders, &billing, cache, &sha256_first_provider());
    let plain = rustls_configs(&ca, &orders, &billing);
    let (spiffe, _apis) = runtime.block_on(spiffe_rustls_configs(dir.path(), &orders, &billing));
    let name = ServerName::try_from("billing.test").unwrap();
    // Sanity: every pair completes a handshake before being timed.
    for c in [&zt, &zt_classical, &zt_full, &zt_sha256, &plain, &spiffe] {
        handshake(&c.client, &c.server, &name);
    }

    let criterion_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .configure_from_args();
    let mut group = criterion.benchmark_group("handshake");
    group.bench_function("zt", |b| {
        b.iter(|| handshake(&zt.client, &zt.server, &name))
    });
    group.bench_function("zt-classical", |b| {
        b.iter(|| handshake(&zt_classical.client, &zt_classical.server, &name))
    });
    group.bench_function("zt-sha256-first", |b| {
        b.iter(|| handshake(&zt_sha256.client, &zt_sha256.server, &name))
    });
    group.bench_function("zt-no-chain-cache", |b| {
        b.iter(|| handshake(&zt_full.client, &zt_full.server, &name))
    });
    group.bench_function("rustls", |b| {
        b.iter(|| handshake(&plain.client, &plain.server, &name))
    });
    group.bench_function("spiffe-rustls", |b| {
        b.iter(|| handshake(&spiffe.client, &spiffe.server, &name))
    });
    group.finish();
    let key = orders.current().unwrap().svid().private_key().clone_key();
    let floor = zt_benches::floor::measure(&mut criterion, &criterion_dir, &provider(), &key);
    criterion.final_summary();

    let zt_ns = median_ns(&criterion_dir, "handshake", "zt");
    let zt_full_ns = median_ns(&criterion_dir, "handshake", "zt-no-chain-cache");
    let zt_classical_ns = median_ns(&criterion_dir, "handshake", "zt-classical");
    let zt_sha256_ns = median_ns(&criterion_dir, "handshake", "zt-sha256-first");
    let rustls_ns = median_ns(&criterion_dir, "handshake", "rustls");
    let spiffe_ns = median_ns(&criterion_dir, "handshake", "spiffe-rustls");
    println!(
        "median handshake: zt {:.1} µs, zt without chain cache {:.1} µs, rustls {:.1} µs, spiffe-rustls {:.1} µs",
        zt_ns / 1e3,
        zt_full_ns / 1e3,
        rustls_ns / 1e3,
        spiffe_ns / 1e3
    );
    println!(
        "handshake zt-no-chain-cache/rustls = {:.3}",
        rustls_ns / zt_full_ns
    );
    println!("handshake zt/rustls = {:.3}", rustls_ns / zt_ns);
    println!("handshake zt/spiffe-rustls = {:.3}", spiffe_ns / zt_ns);
    println!(
        "handshake pq/classical = {:.3} (X25519MLKEM768 {:.1} µs, X25519 {:.1} µs: ML-KEM adds {:.1} µs per handshake)",
        zt_ns / zt_classical_ns,
        zt_ns / 1e3,
        zt_classical_ns / 1e3,
        (zt_ns - zt_classical_ns) / 1e3
    );
    println!(
        "handshake sha256-first/sha384-first = {:.3} (TLS13_AES_128_GCM_SHA256 first {:.1} µs, TLS13_AES_256_GCM_SHA384 first {:.1} µs)",
        zt_sha256_ns / zt_ns,
        zt_sha256_ns / 1e3,
        zt_ns / 1e3
    );
    floor.print();
    let pq_floor = |verifications| {
        floor
            .handshake_pq_ns(verifications)
            .expect("zt's default provider has X25519MLKEM768")
    };
    println!(
        "handshake zt/floor = {:.3} (chain cache on: floor {:.1} µs = 1 X25519MLKEM768 exchange + 2 signatures + 2 verifications)",
        zt_ns / pq_floor(2),
        pq_floor(2) / 1e3
    );
    println!(
        "handshake zt/floor = {:.3} (chain cache off: floor {:.1} µs = 1 X25519MLKEM768 exchange + 2 signatures + 4 verifications)",
        zt_full_ns / pq_floor(4),
        pq_floor(4) / 1e3
    );
    println!(
        "handshake zt-classical/floor = {:.3} (chain cache on, X25519: floor {:.1} µs)",
        zt_classical_ns / floor.handshake_ns(2),
        floor.handshake_ns(2) / 1e3
    );
}
