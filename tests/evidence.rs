//! Policy from evidence, end to end: real mutual-TLS traffic against axum
//! and tonic services behind `AuthorizeLayer`, audited to a JSON-lines
//! file, then read back by `zt_authz::evidence`: a suggested policy that
//! keeps every served request and refuses a caller never seen, a replay
//! that agrees with the live decisions, and the call graph as SVG and DOT
//! (checked with Graphviz's `dot` by an ignored test that `.ci/run` runs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::routing::get;
use tonic::{Request, Response, Status};
use tower::Layer as _;
use zt_authz::Authorizer;
use zt_authz::audit::JsonLinesAuditWriter;
use zt_authz::evidence::{
    AuditReader, CallGraph, ReplayReport, Replayer, SuggestOptions, Suggester, Suggestion,
};
use zt_authz::policy::{Policy, PolicyEngine};
use zt_client::ZtClient;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_examples::billing::billing_client::BillingClient;
use zt_examples::billing::billing_server::{Billing, BillingServer};
use zt_examples::billing::{Invoice, InvoiceRequest};
use zt_server::{AuthorizeLayer, ZtServer};

mod common;
use common::{Running, serve};

const TTL: Duration = Duration::from_secs(300);

/// The live policy: what the team runs in dry run while it collects
/// evidence.
const LIVE: &str = r#"
version = "live-1"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]
grpc = ["/billing.Billing/GetInvoice"]

[[rule]]
id = "workloads-see-admin"
effect = "allow"
callers = ["spiffe://example.org/**"]
http = [{ method = "GET", path = "/admin/**" }]

[[rule]]
id = "no-admin-for-orders"
effect = "deny"
callers = ["spiffe://example.org/orders"]
http = [{ method = "*", path = "/admin/**" }]
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn workload(ca: &FakeCa, name: &str) -> Arc<FakeCaSource> {
    FakeCaSource::new(ca.clone(), id(&format!("spiffe://example.org/{name}")), TTL).unwrap()
}

fn zt_client(ca: &FakeCa, name: &str) -> ZtClient {
    ZtClient::builder(workload(ca, name))
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .build()
        .unwrap()
}

struct Svc;

#[tonic::async_trait]
impl Billing for Svc {
    async fn get_invoice(&self, req: Request<InvoiceRequest>) -> Result<Response<Invoice>, Status> {
        Ok(Response::new(Invoice {
            order_id: req.into_inner().order_id,
            amount_cents: 100,
            caller: String::new(),
        }))
    }
}

/// billing over HTTP (axum) and gRPC (tonic), both deciding with
/// `authorizer`.
async fn billing(ca: &FakeCa, authorizer: &Authorizer) -> (Running, Running) {
    let app = Router::new()
        .route(
            "/invoices/{id}",
            get(|UrlPath(n): UrlPath<String>| async move { format!("invoice {n}") }),
        )
        .route("/admin/users", get(|| async { "users" }))
        .route_layer(AuthorizeLayer::new(authorizer.clone()));
    let http = serve(
        ZtServer::builder(workload(ca, "billing")).build().unwrap(),
        app,
    )
    .await;
    let routes = tonic::service::Routes::new(BillingServer::new(Svc)).prepare();
    let grpc = serve(
        ZtServer::builder(workload(ca, "billing")).build().unwrap(),
        AuthorizeLayer::new(authorizer.clone()).layer(routes),
    )
    .await;
    (http, grpc)
}

async fn get_status(client: &reqwest::Client, addr: SocketAddr, path: &str) -> u16 {
    client
        .get(format!("https://{addr}{path}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn grpc_call(ca: &FakeCa, name: &str, addr: SocketAddr) -> Result<(), Status> {
    let channel = zt_client(ca, name)
        .grpc_channel(&format!("http://{addr}"))
        .await
        .unwrap();
    BillingClient::new(channel)
        .get_invoice(InvoiceRequest {
            order_id: "o-1".into(),
        })
        .await
        .map(|_| ())
}

/// Real traffic from orders, ledger and reports against billing, which
/// decides with the live policy (`dry_run` or enforcing) and audits to a
/// JSON-lines file. Returns the file and the (caller, status) of each
/// HTTP request in order.
async fn traffic(ca: &FakeCa, dir: &Path, dry_run: bool) -> PathBuf {
    let path = dir.join(if dry_run {
        "dry-run.jsonl"
    } else {
        "live.jsonl"
    });
    let writer = Arc::new(JsonLinesAuditWriter::append_to_file(&path).unwrap());
    let authorizer = Authorizer::builder(Policy::from_toml_str(LIVE, "live.toml").unwrap())
        .target("billing")
        .dry_run(dry_run)
        .audit_sink(writer.clone())
        .build();
    let (http, grpc) = billing(ca, &authorizer).await;
    let orders = zt_client(ca, "orders").reqwest_client().unwrap();
    let ledger = zt_client(ca, "ledger").reqwest_client().unwrap();
    let reports = zt_client(ca, "reports").reqwest_client().unwrap();
    let served = if dry_run { 200 } else { 403 };
    for n in 1..=3 {
        assert_eq!(
            get_status(&orders, http.addr, &format!("/invoices/{n}")).await,
            200
        );
    }
    // Denied by the deny rule; served in dry run.
    assert_eq!(get_status(&orders, http.addr, "/admin/users").await, served);
    assert_eq!(get_status(&ledger, http.addr, "/admin/users").await, 200);
    // No rule lets ledger or reports read invoices.
    assert_eq!(get_status(&ledger, http.addr, "/invoices/9").await, served);
    assert_eq!(
        get_status(&reports, http.addr, "/invoices/10").await,
        served
    );
    assert!(grpc_call(ca, "orders", grpc.addr).await.is_ok());
    assert_eq!(
        grpc_call(ca, "ledger", grpc.addr).await.is_ok(),
        dry_run,
        "ledger's gRPC call"
    );
    writer.flush();
    assert_eq!(writer.written(), 9, "one audit line per request");
    path
}

fn suggest(file: &Path) -> Suggestion {
    let mut suggester = Suggester::new(SuggestOptions::default());
    let mut reader = AuditReader::new();
    let input = std::fs::File::open(file).unwrap();
    reader
        .read("audit.jsonl", input, |r| suggester.observe(r))
        .unwrap();
    assert_eq!(reader.report().issue_count, 0, "{:?}", reader.report());
    suggester.finish().unwrap()
}

fn replay(policy: Policy, file: &Path) -> ReplayReport {
    let mut replayer = Replayer::new(policy);
    let mut reader = AuditReader::new();
    let input = std::fs::File::open(file).unwrap();
    reader
        .read("audit.jsonl", input, |r| replayer.observe(r))
        .unwrap();
    assert_eq!(reader.report().issue_count, 0, "{:?}", reader.report());
    replayer.finish()
}

fn ca() -> FakeCa {
    FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap()
}

#[tokio::test]
async fn a_policy_suggested_from_dry_run_traffic_keeps_every_served_request_and_refuses_a_new_caller()
 {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let log = traffic(&ca, dir.path(), true).await;

    let suggestion = suggest(&log);
    assert_eq!(suggestion.target, "billing");
    assert_eq!(suggestion.requests, 9);
    assert_eq!(
        suggestion.rules, 3,
        "one rule per caller:\n{}",
        suggestion.toml
    );
    assert!(suggestion.unexpressible.is_empty());
    let policy = Policy::from_toml_str(&suggestion.toml, "suggested.toml").unwrap();
    assert!(policy.lint().is_empty(), "{:?}", policy.lint());
    // Exact callers, route templates, full gRPC method names.
    assert!(
        suggestion
            .toml
            .contains(r#"callers = ["spiffe://example.org/orders"]"#)
    );
    assert!(
        suggestion
            .toml
            .contains(r#"{ method = "GET", path = "/invoices/{id}" }"#)
    );
    assert!(suggestion.toml.contains(r#""/billing.Billing/GetInvoice""#));
    assert!(!suggestion.toml.contains("**"), "{}", suggestion.toml);

    let report = replay(policy.clone(), &log);
    assert_eq!(report.records, 9);
    assert_eq!(report.newly_denied, 0, "{:?}", report.denied_groups);
    assert_eq!(report.unchanged, 9);
    assert!(report.is_safe());

    // Enforced, the suggestion serves the callers it saw and refuses one
    // it never saw, over real mutual TLS.
    let enforcing = Authorizer::builder(policy).target("billing").build();
    let (http, grpc) = billing(&ca, &enforcing).await;
    let orders = zt_client(&ca, "orders").reqwest_client().unwrap();
    let intruder = zt_client(&ca, "intruder").reqwest_client().unwrap();
    assert_eq!(get_status(&orders, http.addr, "/invoices/77").await, 200);
    assert_eq!(get_status(&intruder, http.addr, "/invoices/77").await, 403);
    // Nothing was widened: ledger may not write what it only read.
    let ledger = zt_client(&ca, "ledger").reqwest_client().unwrap();
    let status = ledger
        .delete(format!("https://{}/invoices/9", http.addr))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 403);
    assert!(grpc_call(&ca, "ledger", grpc.addr).await.is_ok());
    let refused = grpc_call(&ca, "intruder", grpc.addr).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn replay_agrees_with_every_live_decision_of_the_policy_that_made_it() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let live = Policy::from_toml_str(LIVE, "live.toml").unwrap();

    // Enforcing: every line is a decision of live-1; replay changes none.
    let log = traffic(&ca, dir.path(), false).await;
    let report = replay(live.clone(), &log);
    assert_eq!(report.records, 9);
    assert_eq!(report.same_version, 9);
    assert_eq!(report.disagreement_count, 0, "{:?}", report.disagreements);
    assert_eq!((report.newly_denied, report.newly_allowed), (0, 0));
    assert_eq!(report.unchanged, 9);

    // Dry run: the same decisions, and the would-deny lines are exactly
    // what enforcing the live policy would refuse.
    let log = traffic(&ca, dir.path(), true).await;
    let report = replay(live.clone(), &log);
    assert_eq!(report.same_version, 9);
    assert_eq!(report.disagreement_count, 0, "{:?}", report.disagreements);
    assert_eq!(report.newly_denied, 4);
    assert_eq!(report.newly_denied_was_would_deny, 4);
    assert!(!report.is_safe());
    let groups: BTreeSet<(String, String)> = report
        .denied_groups
        .iter()
        .map(|g| (g.caller.clone(), g.action.clone()))
        .collect();
    assert_eq!(
        groups,
        BTreeSet::from([
            (
                "spiffe://example.org/ledger".into(),
                "/billing.Billing/GetInvoice".into()
            ),
            (
                "spiffe://example.org/ledger".into(),
                "GET /invoices/{id}".into()
            ),
            (
                "spiffe://example.org/orders".into(),
                "GET /admin/users".into()
            ),
            (
                "spiffe://example.org/reports".into(),
                "GET /invoices/{id}".into()
            ),
        ])
    );

    // Every line checked one by one against the policy, as a second
    // opinion on the replayer's own count.
    let mut reader = AuditReader::new();
    let mut checked = 0;
    reader
        .read("live.jsonl", std::fs::File::open(&log).unwrap(), |r| {
            let caller = r.caller_id().unwrap();
            let mut request = zt_authz::policy::Request::new(Some(caller), r.method, r.path);
            if let Some(route) = r.route {
                request = request.with_route(route);
            }
            if let Some(grpc) = r.grpc_method {
                request = request.with_grpc_method(grpc);
            }
            let decision = live.evaluate(&request);
            assert_eq!(decision.rule_id.as_deref(), r.rule, "line {}", r.line);
            assert_eq!(
                decision.allowed,
                r.decision == zt_authz::audit::Verdict::Allow,
                "line {}",
                r.line
            );
            checked += 1;
        })
        .unwrap();
    assert_eq!(checked, 9);
}

/// The call graph of real traffic (orders, ledger and reports calling
/// billing), read back from its audit log.
async fn graph_of_traffic() -> CallGraph {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let log = traffic(&ca, dir.path(), false).await;
    let mut graph = CallGraph::new();
    let mut reader = AuditReader::new();
    reader
        .read("live.jsonl", std::fs::File::open(&log).unwrap(), |r| {
            graph.observe(r)
        })
        .unwrap();
    graph.finish()
}

#[tokio::test]
async fn the_graph_of_real_traffic_parses_as_svg_and_holds_every_edge() {
    let graph = graph_of_traffic().await;
    // orders, ledger and reports call billing.
    assert_eq!(graph.nodes().len(), 4);
    assert_eq!(graph.edges().len(), 3);
    let counts = |caller: &str| {
        graph
            .edges()
            .iter()
            .find(|e| graph.nodes()[e.from].id == format!("spiffe://example.org/{caller}"))
            .map(|e| (e.allowed, e.would_deny, e.denied))
            .unwrap()
    };
    assert_eq!(counts("orders"), (4, 0, 1));
    assert_eq!(counts("ledger"), (1, 0, 2));
    assert_eq!(counts("reports"), (0, 0, 1));

    let svg = graph.to_svg();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("edge"))
        .filter_map(|g| g.children().find(|c| c.has_tag_name("title")))
        .filter_map(|t| t.text())
        .collect();
    assert_eq!(titles.len(), 3, "{titles:?}");
    for caller in ["orders", "ledger", "reports"] {
        let edge = format!("spiffe://example.org/{caller} → billing");
        assert!(
            titles.iter().any(|t| t.starts_with(&edge)),
            "{edge} in {titles:?}"
        );
    }
    // Refused calls are drawn dashed.
    let dashed = doc
        .descendants()
        .filter(|n| n.has_tag_name("path") && n.attribute("stroke-dasharray").is_some())
        .count();
    assert_eq!(dashed, 3);
}

/// Needs Graphviz's `dot`, which the README's test command does not ask a
/// newcomer to install: `.ci/run` installs it and runs this test.
#[tokio::test]
#[ignore = "needs Graphviz `dot`; .ci/run installs it and runs this test"]
async fn the_graph_of_real_traffic_renders_with_graphviz_dot() {
    let graph = graph_of_traffic().await;
    let rendered = dot_to_svg(&graph.to_dot());
    // Graphviz writes a DOCTYPE.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let rendered = roxmltree::Document::parse_with_options(&rendered, options).unwrap();
    let text: String = rendered
        .descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    for label in [
        "orders",
        "ledger",
        "reports",
        "billing",
        "4 allowed, 1 denied",
    ] {
        assert!(text.contains(label), "`{label}` in dot's SVG");
    }
    let edges = rendered
        .descendants()
        .filter(|n| n.attribute("class") == Some("edge"))
        .count();
    assert_eq!(edges, 3);
}

/// Renders DOT with Graphviz's `dot -Tsvg`; `.ci/run` installs Graphviz.
fn dot_to_svg(dot: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run Graphviz `dot` ({e}); install it: apt-get install graphviz")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dot rejected the graph: {}\n{dot}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
