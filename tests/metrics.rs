//! The metrics zt records, read back from a debugging recorder installed
//! for the test's thread only (`metrics::with_local_recorder`), with a
//! single-threaded runtime so that the server's and the client's tasks all
//! report to it: a refused call, rotations, handshakes refused by either
//! side, reloads and versions, audit drops, JWT-SVID validations, closed
//! connections and source states.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use std::sync::atomic::Ordering;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use zt_authz::Authorizer;
use zt_authz::policy::Policy;
use zt_client::ZtClient;
use zt_core::metrics as m;
use zt_core::source::SvidSource as _;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::{AuthorizeLayer, ZtServer};

mod common;
use common::serve;

const TTL: Duration = Duration::from_secs(300);

const POLICY: &str = r#"
version = "metrics-1"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn workload(ca: &FakeCa, name: &str) -> Arc<FakeCaSource> {
    FakeCaSource::new(ca.clone(), id(&format!("spiffe://example.org/{name}")), TTL).unwrap()
}

/// A recorder keeping every value (counters and gauges are read, not
/// drained, unlike `metrics_util`'s debugging recorder), in a registry the
/// test reads.
#[derive(Clone)]
struct Recorded(Arc<Registry<Key, AtomicStorage>>);

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// `key` is the metric `name` with exactly `labels`, in any order.
fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    let mut have: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    let mut want = labels.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    key.name() == name && have == want
}

impl Recorded {
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .get_counter_handles()
            .into_iter()
            .find(|(key, _)| matches(key, name, labels))
            .map_or(0, |(_, c)| c.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .get_gauge_handles()
            .into_iter()
            .find(|(key, _)| matches(key, name, labels))
            .map(|(_, g)| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.0
            .get_histogram_handles()
            .into_iter()
            .find(|(key, _)| matches(key, name, labels))
            .map(|(_, h)| h.data())
            .unwrap_or_default()
    }

    fn all(&self) -> Vec<String> {
        let mut all = Vec::new();
        self.0
            .visit_counters(|key, c| all.push(format!("{key:?} = {}", c.load(Ordering::SeqCst))));
        all
    }

    /// Polls until the counter reaches `want` (the server records after
    /// the handshake, in its own task), failing after five seconds.
    async fn wait_for_counter(&self, name: &str, labels: &[(&str, &str)], want: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let have = self.counter(name, labels);
            if have == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} is {have}, expected {want}; counters: {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Runs `test` on a single-threaded runtime with a recorder installed for
/// this thread only, so tests running in parallel do not see each other's
/// metrics.
fn with_recorder<F, Fut>(test: F)
where
    F: FnOnce(Recorded) -> Fut,
    Fut: Future<Output = ()>,
{
    let recorder = Recorded(Arc::new(Registry::atomic()));
    let reader = recorder.clone();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test(reader));
    });
}

#[test]
fn a_refused_call_counts_a_deny_decision_with_its_reason_and_target() {
    with_recorder(|recorded| async move {
        let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
        let policy = Policy::from_toml_str(POLICY, "policy.toml").unwrap();
        let authz = Authorizer::builder(policy).target("billing").build();
        let app = Router::new()
            .route("/invoices/{id}", get(|| async { "invoice" }))
            .route_layer(AuthorizeLayer::new(authz));
        let server = ZtServer::builder(workload(&ca, "billing")).build().unwrap();
        let running = serve(server, app).await;

        // `reports` has a valid SVID but no rule lets it read invoices.
        let client = ZtClient::builder(workload(&ca, "reports"))
            .pin_server("spiffe://example.org/billing".parse().unwrap())
            .build()
            .unwrap()
            .reqwest_client()
            .unwrap();
        let status = client
            .get(format!("https://{}/invoices/7", running.addr))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 403);

        let deny = [
            (m::label::DECISION, "deny"),
            (m::label::REASON, "no-matching-rule"),
            (m::label::TARGET, "billing"),
        ];
        assert_eq!(recorded.counter(m::AUTHZ_DECISIONS_TOTAL, &deny), 1);
        let allow = [
            (m::label::DECISION, "allow"),
            (m::label::REASON, "matched-allow"),
            (m::label::TARGET, "billing"),
        ];
        assert_eq!(recorded.counter(m::AUTHZ_DECISIONS_TOTAL, &allow), 0);
        // The handshake itself succeeded, on both sides.
        recorded
            .wait_for_counter(
                m::HANDSHAKES_TOTAL,
                &[
                    (m::label::SIDE, "server"),
                    (m::label::RESULT, "ok"),
                    (m::label::REASON, "none"),
                ],
                1,
            )
            .await;
        for side in ["client", "server"] {
            let accepted = [
                (m::label::SIDE, side),
                (m::label::RESULT, "accepted"),
                (m::label::REASON, "none"),
            ];
            assert_eq!(
                recorded.counter(m::PEER_VERIFICATIONS_TOTAL, &accepted),
                1,
                "{side}"
            );
        }
        // The policy version in force is exported as an info gauge.
        assert_eq!(
            recorded.gauge(m::POLICY_INFO, &[(m::label::VERSION, "metrics-1")]),
            Some(1.0)
        );
    });
}

#[test]
fn a_rotation_moves_the_rotation_counter_and_the_expiry_gauge() {
    with_recorder(|recorded| async move {
        let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
        let source = workload(&ca, "billing");
        let fake_ca = [(m::label::SOURCE, "fake_ca")];
        // The first SVID is not a rotation.
        assert_eq!(recorded.counter(m::SVID_ROTATIONS_TOTAL, &fake_ca), 0);

        let rotated = source.rotate_now().unwrap();
        assert_eq!(recorded.counter(m::SVID_ROTATIONS_TOTAL, &fake_ca), 1);
        let expiry = rotated
            .svid()
            .not_after()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert_eq!(
            recorded.gauge(m::SVID_EXPIRY_TIMESTAMP_SECONDS, &fake_ca),
            Some(expiry)
        );
        let state = |state| {
            recorded.gauge(
                m::SOURCE_STATE,
                &[(m::label::SOURCE, "fake_ca"), (m::label::STATE, state)],
            )
        };
        assert_eq!(state("healthy"), Some(1.0));
        assert_eq!(state("starting"), Some(0.0));

        source.rotate_now().unwrap();
        assert_eq!(recorded.counter(m::SVID_ROTATIONS_TOTAL, &fake_ca), 2);
        assert!(source.current().is_ok());
    });
}

#[test]
fn a_refused_handshake_is_counted_with_its_reason_on_the_refusing_side() {
    with_recorder(|recorded| async move {
        let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
        // The server accepts only `orders`; `reports` is refused in the
        // handshake, before any request.
        let server = ZtServer::builder(workload(&ca, "billing"))
            .accept_callers("spiffe://example.org/orders".parse().unwrap())
            .build()
            .unwrap();
        let running = serve(server, Router::new().route("/", get(|| async { "hi" }))).await;
        let client = ZtClient::builder(workload(&ca, "reports"))
            .pin_server("spiffe://example.org/billing".parse().unwrap())
            .build()
            .unwrap();
        // TLS 1.3: the client may finish its side before the server has
        // judged its certificate, so only the server's count is checked.
        let _connection = client.connect(running.addr).await;

        let refused = [
            (m::label::SIDE, "server"),
            (m::label::RESULT, "refused"),
            (m::label::REASON, "not-accepted"),
        ];
        recorded
            .wait_for_counter(m::HANDSHAKES_TOTAL, &refused, 1)
            .await;
        assert_eq!(recorded.counter(m::PEER_VERIFICATIONS_TOTAL, &refused), 1);
        let ok = [
            (m::label::SIDE, "server"),
            (m::label::RESULT, "ok"),
            (m::label::REASON, "none"),
        ];
        assert_eq!(recorded.counter(m::HANDSHAKES_TOTAL, &ok), 0);
        let durations = recorded.histogram(
            m::HANDSHAKE_DURATION_SECONDS,
            &[(m::label::SIDE, "server"), (m::label::RESULT, "refused")],
        );
        assert_eq!(durations.len(), 1, "{durations:?}");
        assert!(durations[0] > 0.0 && durations[0] < 5.0, "{durations:?}");
    });
}

/// A sink that blocks every write until opened.
#[derive(Clone, Default)]
struct Gate(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }
}

impl std::io::Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn reloads_versions_audit_drops_jwt_validations_and_closed_connections_are_counted() {
    with_recorder(|recorded| async move {
        // Policy: an applied reload moves the info gauge, a bad file is
        // counted as rejected and leaves the version in force.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "version = \"p1\"\n").unwrap();
        let store = zt_authz::policy::PolicyStore::from_file(&path).unwrap();
        let info = |version| recorded.gauge(m::POLICY_INFO, &[(m::label::VERSION, version)]);
        assert_eq!(info("p1"), Some(1.0));
        std::fs::write(&path, "version = \"p2\"\n").unwrap();
        store.reload().unwrap();
        assert_eq!((info("p1"), info("p2")), (Some(0.0), Some(1.0)));
        std::fs::write(&path, "version = \"p3\"\n[[rule]]\neffect = \"maybe\"\n").unwrap();
        assert!(store.reload().is_err());
        let reloads =
            |result| recorded.counter(m::POLICY_RELOADS_TOTAL, &[(m::label::RESULT, result)]);
        assert_eq!((reloads("applied"), reloads("rejected")), (1, 1));
        assert_eq!(info("p3"), None);

        // Revocations: every change is a new version.
        let revocations = zt_core::revocation::Revocations::new();
        revocations.revoke_id(id("spiffe://example.org/old"));
        revocations.revoke_serial(&[0x2a]);
        let version = |v| recorded.gauge(m::REVOCATION_INFO, &[(m::label::VERSION, v)]);
        assert_eq!((version("1"), version("2")), (Some(0.0), Some(1.0)));
        assert_eq!(revocations.version(), 2);

        // Audit: a writer stuck on its output drops what its queue cannot
        // hold, and each drop is counted.
        let gate = Gate::default();
        let writer = Arc::new(zt_authz::audit::JsonLinesAuditWriter::new(gate.clone(), 1).unwrap());
        let authz = Authorizer::builder(Policy::from_toml_str(POLICY, "policy.toml").unwrap())
            .target("billing")
            .audit_sink(writer.clone())
            .build();
        let caller = id("spiffe://example.org/orders");
        for _ in 0..100 {
            authz.authorize(
                &zt_authz::policy::Request::new(Some(&caller), "GET", "/invoices/1"),
                None,
            );
        }
        let dropped = recorded.counter(
            m::AUDIT_EVENTS_DROPPED_TOTAL,
            &[(m::label::SINK, "json_lines")],
        );
        assert!(dropped >= 98, "{dropped}");
        assert_eq!(dropped, writer.dropped());
        gate.open();

        // JWT-SVIDs: a valid token and one for another audience.
        let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
        let ledger = workload(&ca, "ledger");
        let layer = zt_server::JwtAuthLayer::builder(ledger, "spiffe://example.org/ledger").build();
        for audience in ["spiffe://example.org/ledger", "spiffe://example.org/other"] {
            let token = ca
                .issue_jwt_svid(&caller, &[audience], Duration::from_secs(120))
                .unwrap();
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.token()).parse().unwrap(),
            );
            let _ = layer.authenticate(&headers, None);
        }
        let jwt =
            |result| recorded.counter(m::JWT_SVID_VALIDATIONS_TOTAL, &[(m::label::RESULT, result)]);
        assert_eq!((jwt("ok"), jwt("wrong-audience")), (1, 1));

        // Connections ended because trust changed, by reason: two of a
        // caller that is then revoked, one of a caller the new pin excludes.
        use zt_core::source::SvidSource as _;
        let billing = workload(&ca, "billing");
        let revoked_list = zt_core::revocation::Revocations::new();
        let verifier = zt_core::peer::PeerVerifier::new(
            billing,
            zt_core::time::system_clock(),
            zt_core::x509::Usage::ClientAuth,
            None,
        )
        .with_revocations(revoked_list.clone());
        let monitor = zt_core::live::TrustMonitor::new(Arc::new(verifier));
        let chain = |source: &Arc<FakeCaSource>| source.current().unwrap().svid().chain().to_vec();
        let orders = workload(&ca, "orders");
        let payments = workload(&ca, "payments");
        let _connections = [
            monitor.admit(chain(&orders)).unwrap(),
            monitor.admit(chain(&orders)).unwrap(),
            monitor.admit(chain(&payments)).unwrap(),
        ];
        revoked_list.revoke_id(id("spiffe://example.org/orders"));
        let revoked = [(m::label::REASON, "revoked")];
        recorded
            .wait_for_counter(m::CONNECTIONS_CLOSED_TOTAL, &revoked, 2)
            .await;
        monitor
            .verifier()
            .replace_pin(Some("spiffe://example.org/orders".parse().unwrap()));
        let pin = [(m::label::REASON, "pin")];
        recorded
            .wait_for_counter(m::CONNECTIONS_CLOSED_TOTAL, &pin, 1)
            .await;
        let bundle = [(m::label::REASON, "bundle")];
        assert_eq!(recorded.counter(m::CONNECTIONS_CLOSED_TOTAL, &bundle), 0);
    });
}

#[test]
fn a_failing_upstream_and_a_renamed_source_show_in_the_source_gauges() {
    with_recorder(|recorded| async move {
        let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
        let source = workload(&ca, "billing");
        source.state().set_metrics_name("billing");
        let state = |state| {
            recorded.gauge(
                m::SOURCE_STATE,
                &[(m::label::SOURCE, "billing"), (m::label::STATE, state)],
            )
        };
        assert_eq!(state("healthy"), Some(1.0));
        source.state().report_failure("the CA is unreachable");
        assert_eq!(
            (state("healthy"), state("degraded")),
            (Some(0.0), Some(1.0))
        );
        source.rotate_now().unwrap();
        assert_eq!(
            (state("healthy"), state("degraded")),
            (Some(1.0), Some(0.0))
        );
        assert_eq!(
            recorded.counter(m::SVID_ROTATIONS_TOTAL, &[(m::label::SOURCE, "billing")]),
            1
        );
    });
}

#[test]
fn a_client_refusing_the_server_counts_its_handshake_as_refused() {
    with_recorder(|recorded| async move {
        let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
        let server = ZtServer::builder(workload(&ca, "billing")).build().unwrap();
        let running = serve(server, Router::new().route("/", get(|| async { "hi" }))).await;
        // The client expects `ledger`; `billing` answers.
        let client = ZtClient::builder(workload(&ca, "orders"))
            .pin_server("spiffe://example.org/ledger".parse().unwrap())
            .build()
            .unwrap();
        let refused = client.connect(running.addr).await;
        assert!(
            matches!(refused, Err(zt_client::Error::PeerRejected { .. })),
            "{refused:?}"
        );
        let labels = [
            (m::label::SIDE, "client"),
            (m::label::RESULT, "refused"),
            (m::label::REASON, "not-accepted"),
        ];
        assert_eq!(recorded.counter(m::HANDSHAKES_TOTAL, &labels), 1);
        assert_eq!(recorded.counter(m::PEER_VERIFICATIONS_TOTAL, &labels), 1);
        assert_eq!(
            recorded
                .histogram(
                    m::HANDSHAKE_DURATION_SECONDS,
                    &[(m::label::SIDE, "client"), (m::label::RESULT, "refused")],
                )
                .len(),
            1
        );
    });
}
