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
//!
//! **Chains of two (n = 2).** The `-n2` benches repeat zt (cache on and
//! off), plain rustls and spiffe-rustls with a second fake CA that issues
//! through an intermediate: each side presents leaf and intermediate, and
//! the bundle holds the root only. Verifying a peer in full then takes three
//! signature checks (the leaf's signature by the intermediate, the
//! intermediate's by the root, the CertificateVerify by the leaf's key), six
//! for the two sides; the root's self-signature is never checked, since the
//! root is a trust anchor. zt's chain cache leaves the two CertificateVerify
//! checks, saving 4 of 6. The floor for n = 2 is therefore one exchange, two
//! signatures and 6 verifications (2 with the cache), printed as
//! `handshake n=2 zt/floor = R` beside `handshake n=2 zt/rustls = R`.
//!
//! **Paired ratios.** The `n=2` and `server` ratio lines do not divide two
//! criterion medians taken seconds apart: on a machine shared with other
//! work the load changes between them. They come from paired rounds
//! (`zt_benches::paired`): each configuration and each floor operation
//! runs in turn (in an order shuffled each round), 11 times, 101 rounds
//! over; each round keeps each one's
//! median time (a handshake during which the thread was preempted by
//! another process counts the wait, and drops out as long as it is not
//! the median); ratios are taken within each round and their median
//! printed. Criterion's medians are printed too.
//!
//! **Server side only.** The `server` group measures what the server of a
//! mutual handshake spends, with the client taken out of the timing. TLS
//! 1.3 client flights cannot be recorded once and replayed (each
//! ClientHello carries fresh key shares, and the client's second flight
//! depends on the server's), so both ends still run in memory, and only the
//! server's calls are timed: `ServerConnection::new`, its `read_tls` and
//! `process_new_packets` on the client's bytes, its `write_tls`, and its
//! drop, each between two `Instant` readings, summed per handshake
//! (criterion `iter_custom`, and in the paired rounds). The client's calls
//! run between the timed spans. The sum is wall time on one thread, so it
//! is one core's work as long as the thread is not preempted inside a span;
//! on a loaded machine preemption inflates it, and the medians within and
//! over rounds discard the worst. The bench prints
//! `server handshakes/s zt = X, rustls = Y, zt/rustls = R` (1 s over the
//! median server time per handshake) and the server's floor: its half of
//! the key exchange, one signature, and two verifications of the client
//! (one with the cache).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rustls::client::Resumption;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};
use rustls_pki_types::ServerName;
use zt_benches::criterion_median_ns as median_ns;
use zt_benches::paired::{self, timed};
use zt_client::ZtClient;
use zt_core::matcher::IdMatcher;
use zt_core::source::SvidSource;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource, WorkloadApiServer};
use zt_server::ZtServer;

const TTL: Duration = Duration::from_secs(3600);
/// Rounds of the paired measurements.
const PAIRED_ROUNDS: usize = 101;
/// Units of work per job in each paired round.
const PAIRED_PER_ROUND: u32 = 11;

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

/// One full mutual handshake in memory, returning the time spent in the
/// server's calls only (its construction, every `read_tls`,
/// `process_new_packets` and `write_tls`, and its drop); the client's
/// calls run between the timed spans.
fn server_side_handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &ServerName<'static>,
) -> Duration {
    let mut c = ClientConnection::new(client.clone(), name.clone()).unwrap();
    let start = Instant::now();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut server_time = start.elapsed();
    let mut to_server = Vec::with_capacity(8192);
    let mut to_client = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        to_server.clear();
        while c.wants_write() {
            c.write_tls(&mut to_server).unwrap();
        }
        let start = Instant::now();
        let mut rd = &to_server[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        to_client.clear();
        while s.wants_write() {
            s.write_tls(&mut to_client).unwrap();
        }
        server_time += start.elapsed();
        let mut rd = &to_client[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    assert!(!s.is_handshaking(), "the server finished its handshake");
    let start = Instant::now();
    drop(s);
    server_time + start.elapsed()
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
    // Chains of two: the same identities issued through an intermediate.
    let ca2 = FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .intermediate(true)
        .build()
        .unwrap();
    let orders2 = FakeCaSource::new(
        ca2.clone(),
        SpiffeId::new("spiffe://example.org/orders").unwrap(),
        TTL,
    )
    .unwrap();
    let billing2 = FakeCaSource::with_dns_names(
        ca2.clone(),
        SpiffeId::new("spiffe://example.org/billing").unwrap(),
        TTL,
        vec!["billing.test".into()],
    )
    .unwrap();
    for source in [&orders2, &billing2] {
        assert_eq!(
            source.current().unwrap().svid().chain().len(),
            2,
            "leaf and intermediate"
        );
    }
    let zt2 = zt_configs(&orders2, &billing2, cache, &provider());
    let zt2_full = zt_configs(&orders2, &billing2, 0, &provider());
    let plain2 = rustls_configs(&ca2, &orders2, &billing2);
    let dir2 = dir.path().join("n2");
    std::fs::create_dir(&dir2).unwrap();
    let (spiffe2, _apis2) = runtime.block_on(spiffe_rustls_configs(&dir2, &orders2, &billing2));

    let name = ServerName::try_from("billing.test").unwrap();
    // Sanity: every pair completes a handshake before being timed.
    for c in [
        &zt,
        &zt_classical,
        &zt_full,
        &zt_sha256,
        &plain,
        &spiffe,
        &zt2,
        &zt2_full,
        &plain2,
        &spiffe2,
    ] {
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
    group.bench_function("zt-n2", |b| {
        b.iter(|| handshake(&zt2.client, &zt2.server, &name))
    });
    group.bench_function("zt-n2-no-chain-cache", |b| {
        b.iter(|| handshake(&zt2_full.client, &zt2_full.server, &name))
    });
    group.bench_function("rustls-n2", |b| {
        b.iter(|| handshake(&plain2.client, &plain2.server, &name))
    });
    group.bench_function("spiffe-rustls-n2", |b| {
        b.iter(|| handshake(&spiffe2.client, &spiffe2.server, &name))
    });
    group.finish();
    let mut group = criterion.benchmark_group("server");
    for (id, configs) in [
        ("zt", &zt),
        ("zt-no-chain-cache", &zt_full),
        ("rustls", &plain),
    ] {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| server_side_handshake(&configs.client, &configs.server, &name))
                    .sum()
            })
        });
    }
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

    // Chains of two and the server side: criterion's medians for the
    // record, then the ratios from paired rounds (see `zt_benches::paired`),
    // which hold up on a machine shared with other work.
    let zt2_ns = median_ns(&criterion_dir, "handshake", "zt-n2");
    let zt2_full_ns = median_ns(&criterion_dir, "handshake", "zt-n2-no-chain-cache");
    let rustls2_ns = median_ns(&criterion_dir, "handshake", "rustls-n2");
    let spiffe2_ns = median_ns(&criterion_dir, "handshake", "spiffe-rustls-n2");
    println!(
        "median handshake n=2 (leaf + intermediate on both sides): zt {:.1} µs, zt without chain cache {:.1} µs, rustls {:.1} µs, spiffe-rustls {:.1} µs",
        zt2_ns / 1e3,
        zt2_full_ns / 1e3,
        rustls2_ns / 1e3,
        spiffe2_ns / 1e3
    );
    let server_zt_ns = median_ns(&criterion_dir, "server", "zt");
    let server_zt_full_ns = median_ns(&criterion_dir, "server", "zt-no-chain-cache");
    let server_rustls_ns = median_ns(&criterion_dir, "server", "rustls");
    println!(
        "median server side of a handshake: zt {:.1} µs, zt without chain cache {:.1} µs, rustls {:.1} µs",
        server_zt_ns / 1e3,
        server_zt_full_ns / 1e3,
        server_rustls_ns / 1e3
    );

    let ops = zt_benches::floor::Ops::new(&provider(), &key);
    let n2 = paired::run(
        PAIRED_ROUNDS,
        PAIRED_PER_ROUND,
        &mut [
            ("zt", &mut || {
                timed(&mut || handshake(&zt2.client, &zt2.server, &name))
            }),
            ("zt-no-chain-cache", &mut || {
                timed(&mut || handshake(&zt2_full.client, &zt2_full.server, &name))
            }),
            ("rustls", &mut || {
                timed(&mut || handshake(&plain2.client, &plain2.server, &name))
            }),
            ("spiffe-rustls", &mut || {
                timed(&mut || handshake(&spiffe2.client, &spiffe2.server, &name))
            }),
            ("kx", &mut || timed(&mut || ops.x25519mlkem768_pair())),
            ("sign", &mut || timed(&mut || ops.sign())),
            ("verify", &mut || timed(&mut || ops.verify())),
        ],
    );
    let floor_n2 = |ns: &dyn Fn(&str) -> f64, verifications: f64| {
        ns("kx") + 2.0 * ns("sign") + verifications * ns("verify")
    };
    println!(
        "paired n=2 ({} rounds of {PAIRED_PER_ROUND}, medians): zt {:.1} µs, zt without chain cache {:.1} µs, rustls {:.1} µs, spiffe-rustls {:.1} µs; floor {:.1} µs with 2 verifications, {:.1} µs with 6",
        n2.len(),
        n2.median_ns("zt") / 1e3,
        n2.median_ns("zt-no-chain-cache") / 1e3,
        n2.median_ns("rustls") / 1e3,
        n2.median_ns("spiffe-rustls") / 1e3,
        n2.median(|ns| floor_n2(ns, 2.0)) / 1e3,
        n2.median(|ns| floor_n2(ns, 6.0)) / 1e3,
    );
    println!(
        "handshake n=2 zt/rustls = {:.3}",
        n2.median(|ns| ns("rustls") / ns("zt"))
    );
    println!(
        "handshake n=2 zt-no-chain-cache/rustls = {:.3}",
        n2.median(|ns| ns("rustls") / ns("zt-no-chain-cache"))
    );
    println!(
        "handshake n=2 zt/spiffe-rustls = {:.3}",
        n2.median(|ns| ns("spiffe-rustls") / ns("zt"))
    );
    println!(
        "handshake n=2 zt/floor = {:.3} (chain cache on; floor = 1 X25519MLKEM768 exchange + 2 signatures + 2 verifications)",
        n2.median(|ns| ns("zt") / floor_n2(ns, 2.0))
    );
    println!(
        "handshake n=2 zt/floor = {:.3} (chain cache off; floor = 1 X25519MLKEM768 exchange + 2 signatures + 6 verifications)",
        n2.median(|ns| ns("zt-no-chain-cache") / floor_n2(ns, 6.0))
    );
    println!(
        "handshake n=2 chain cache saves {:.1} µs per handshake (floor of 4 verifications: {:.1} µs)",
        n2.median(|ns| ns("zt-no-chain-cache") - ns("zt")) / 1e3,
        n2.median(|ns| 4.0 * ns("verify")) / 1e3
    );

    let server = paired::run(
        PAIRED_ROUNDS,
        PAIRED_PER_ROUND,
        &mut [
            ("zt", &mut || {
                server_side_handshake(&zt.client, &zt.server, &name)
            }),
            ("zt-no-chain-cache", &mut || {
                server_side_handshake(&zt_full.client, &zt_full.server, &name)
            }),
            ("rustls", &mut || {
                server_side_handshake(&plain.client, &plain.server, &name)
            }),
            ("kx", &mut || timed(&mut || ops.x25519mlkem768_server())),
            ("sign", &mut || timed(&mut || ops.sign())),
            ("verify", &mut || timed(&mut || ops.verify())),
        ],
    );
    let server_floor = |ns: &dyn Fn(&str) -> f64, verifications: f64| {
        ns("kx") + ns("sign") + verifications * ns("verify")
    };
    println!(
        "paired server side ({} rounds of {PAIRED_PER_ROUND}, medians): zt {:.1} µs, zt without chain cache {:.1} µs, rustls {:.1} µs; server floor {:.1} µs with 1 verification, {:.1} µs with 2",
        server.len(),
        server.median_ns("zt") / 1e3,
        server.median_ns("zt-no-chain-cache") / 1e3,
        server.median_ns("rustls") / 1e3,
        server.median(|ns| server_floor(ns, 1.0)) / 1e3,
        server.median(|ns| server_floor(ns, 2.0)) / 1e3,
    );
    println!(
        "server handshakes/s zt = {:.0}, rustls = {:.0}, zt/rustls = {:.3}",
        1e9 / server.median_ns("zt"),
        1e9 / server.median_ns("rustls"),
        server.median(|ns| ns("rustls") / ns("zt"))
    );
    println!(
        "server handshakes/s zt-no-chain-cache = {:.0}, zt-no-chain-cache/rustls = {:.3}",
        1e9 / server.median_ns("zt-no-chain-cache"),
        server.median(|ns| ns("rustls") / ns("zt-no-chain-cache"))
    );
    println!(
        "server zt/floor = {:.3} (chain cache on; floor = server half of X25519MLKEM768 + 1 signature + 1 verification)",
        server.median(|ns| ns("zt") / server_floor(ns, 1.0))
    );
    println!(
        "server zt/floor = {:.3} (chain cache off; floor = server half of X25519MLKEM768 + 1 signature + 2 verifications)",
        server.median(|ns| ns("zt-no-chain-cache") / server_floor(ns, 2.0))
    );
}
