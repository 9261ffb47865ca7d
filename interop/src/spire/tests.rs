//! Unit tests of the harness that need neither SPIRE nor Go.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::config::{Layout, agent_hcl, go_duration, server_hcl};
use super::entry::{LogCursor, first_result};
use super::*;

fn layout() -> Layout {
    Layout {
        root: PathBuf::from("/tmp/zt-spire-x"),
        server_port: 18081,
        bundle_endpoint_port: Some(18443),
    }
}

#[test]
fn server_config_carries_the_chosen_ttls_sync_interval_and_plugins() {
    let hcl = server_hcl(
        &SpireConfig::new("example.org").with_bundle_endpoint(),
        &layout(),
    );
    for needle in [
        "bind_address = \"127.0.0.1\"",
        "bind_port = 18081",
        "socket_path = \"/tmp/zt-spire-x/server/api.sock\"",
        "trust_domain = \"example.org\"",
        "ca_ttl = \"1200s\"",
        "default_x509_svid_ttl = \"30s\"",
        "default_jwt_svid_ttl = \"30s\"",
        "agent_ttl = \"120s\"",
        "cache_reload_interval = \"1s\"",
        "port = 18443",
        "refresh_hint = \"5s\"",
        "profile \"https_spiffe\" {}",
        "database_type = \"sqlite3\"",
        "KeyManager \"disk\"",
        "NodeAttestor \"join_token\"",
    ] {
        assert!(hcl.contains(needle), "missing {needle:?} in\n{hcl}");
    }
}

#[test]
fn ca_ttl_is_at_least_six_times_every_svid_ttl_so_spire_does_not_shorten_svids() {
    for ttl in [
        DEFAULT_X509_SVID_TTL,
        DEFAULT_JWT_SVID_TTL,
        DEFAULT_AGENT_TTL,
    ] {
        assert!(DEFAULT_CA_TTL >= ttl * 6, "{ttl:?}");
    }
}

#[test]
fn server_config_writes_static_federation_relationships_in_both_profiles() {
    let config = SpireConfig::new("a.test")
        .federates_with(FederationRelationship::https_spiffe(
            "b.test",
            "https://127.0.0.1:9443",
            "spiffe://b.test/spire/server",
        ))
        .federates_with(FederationRelationship::https_web(
            "c.test",
            "https://127.0.0.1:9444",
        ));
    let hcl = server_hcl(
        &config,
        &Layout {
            bundle_endpoint_port: None,
            ..layout()
        },
    );
    assert!(hcl.contains("federates_with \"b.test\""), "{hcl}");
    assert!(
        hcl.contains("endpoint_spiffe_id = \"spiffe://b.test/spire/server\""),
        "{hcl}"
    );
    assert!(
        hcl.contains("bundle_endpoint_profile \"https_web\" {}"),
        "{hcl}"
    );
    assert!(
        !hcl.contains("bundle_endpoint {"),
        "no endpoint of its own: {hcl}"
    );
}

#[test]
fn agent_config_uses_json_logs_a_disk_key_manager_and_the_unix_attestor() {
    let hcl = agent_hcl(
        &SpireConfig::new("example.org").workload_sha256(false),
        &layout(),
    );
    for needle in [
        "log_format = \"json\"",
        "server_port = 18081",
        "socket_path = \"/tmp/zt-spire-x/agent/api.sock\"",
        "sync_interval = \"1s\"",
        "directory = \"/tmp/zt-spire-x/agent/data\"",
        "discover_workload_path = true",
        "workload_size_limit = -1",
    ] {
        assert!(hcl.contains(needle), "missing {needle:?} in\n{hcl}");
    }
}

#[test]
fn durations_render_as_go_durations() {
    assert_eq!(go_duration(Duration::from_secs(30)), "30s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
}

#[test]
fn entry_spec_renders_every_flag_and_defaults_the_parent_to_the_node_alias() {
    let spec = EntrySpec::new("spiffe://example.org/w")
        .unix_uid(1000)
        .unix_path(Path::new("/opt/w"))
        .unix_sha256("ab12")
        .hint("h")
        .x509_svid_ttl(Duration::from_secs(40))
        .jwt_svid_ttl(Duration::from_secs(90))
        .federates_with("b.test")
        .dns("w.example.org");
    let args = spec
        .cli_args("spiffe://example.org/zt-interop/node")
        .join(" ");
    assert_eq!(
        args,
        "entry create -spiffeID spiffe://example.org/w -parentID spiffe://example.org/zt-interop/node \
         -selector unix:uid:1000 -selector unix:path:/opt/w -selector unix:sha256:ab12 -hint h \
         -x509SVIDTTL 40 -jwtSVIDTTL 90 -federatesWith spiffe://b.test -dns w.example.org -output json"
    );
}

#[test]
fn entries_parse_from_spire_json_output() {
    // As `spire-server entry create -output json` prints it (SPIRE 1.13.3).
    let out = json!({"results":[{"entry":{"admin":false,"created_at":"1796189810","dns_names":["foo.test"],
        "downstream":false,"expires_at":"0","federates_with":[],"hint":"main",
        "id":"f58c1457-990e-46eb-aa93-2457ddaafb71","jwt_svid_ttl":0,
        "parent_id":{"path":"/zt-interop/node","trust_domain":"example.org"},"revision_number":"0",
        "selectors":[{"type":"unix","value":"path:/tmp/gopeers/workload"},{"type":"unix","value":"uid:0"}],
        "spiffe_id":{"path":"/go/workload","trust_domain":"example.org"},"store_svid":false,"x509_svid_ttl":30},
        "status":{"code":0,"message":"OK"}}]});
    let result = first_result(&out, "entry create").unwrap();
    let entry = Entry::from_json(&result["entry"]).unwrap();
    assert_eq!(entry.id, "f58c1457-990e-46eb-aa93-2457ddaafb71");
    assert_eq!(entry.spiffe_id, "spiffe://example.org/go/workload");
    assert_eq!(entry.parent_id, "spiffe://example.org/zt-interop/node");
    assert_eq!(
        entry.selectors,
        ["unix:path:/tmp/gopeers/workload", "unix:uid:0"]
    );
    assert_eq!(entry.hint.as_deref(), Some("main"));
    assert_eq!((entry.x509_svid_ttl, entry.jwt_svid_ttl), (30, 0));
    assert_eq!(entry.dns_names, ["foo.test"]);
}

#[test]
fn a_refused_batch_result_is_an_error_with_spires_message() {
    let out = json!({"results":[{"status":{"code":6,"message":"similar entry already exists"}}]});
    let err = first_result(&out, "entry create").unwrap_err();
    assert!(matches!(err, Error::Command(_)));
    assert!(
        err.message().contains("similar entry already exists"),
        "{err}"
    );
}

#[test]
fn the_log_cursor_reads_whole_lines_only_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut cursor = LogCursor {
        path: path.clone(),
        pos: 0,
    };
    assert!(cursor.read_new().unwrap().is_empty());
    write!(file, "{{\"a\":1}}\n{{\"b\":").unwrap();
    assert_eq!(cursor.read_new().unwrap(), ["{\"a\":1}"]);
    writeln!(file, "2}}").unwrap();
    assert_eq!(cursor.read_new().unwrap(), ["{\"b\":2}"]);
    assert!(cursor.read_new().unwrap().is_empty());
}

#[test]
fn an_https_web_bundle_endpoint_serves_cert_files_with_a_sync_interval() {
    let config = SpireConfig::new("example.org").bundle_endpoint(
        BundleEndpoint::https_web("/certs/leaf.pem", "/certs/key.pem").refresh_hint(None),
    );
    let hcl = server_hcl(&config, &layout());
    assert!(hcl.contains("profile \"https_web\""), "{hcl}");
    assert!(
        hcl.contains("cert_file_path = \"/certs/leaf.pem\""),
        "{hcl}"
    );
    assert!(hcl.contains("key_file_path = \"/certs/key.pem\""), "{hcl}");
    assert!(
        hcl.contains("file_sync_interval = \"1s\""),
        "SPIRE 1.13.3 needs it: {hcl}"
    );
    assert!(!hcl.contains("refresh_hint"), "{hcl}");
}

#[test]
fn a_harness_can_be_shared_across_threads_and_a_peer_moved_to_one() {
    fn shared<T: Send + Sync>() {}
    fn movable<T: Send>() {}
    shared::<Spire>();
    movable::<crate::process::JsonProcess>();
}
