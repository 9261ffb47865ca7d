//! What one harness runs: trust domain, TTLs, sync intervals, federation;
//! and the HCL files written for `spire-server` and `spire-agent`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::federation::{
    BundleEndpoint, BundleEndpointProfile, EndpointProfile, FederationRelationship,
};

/// Default `default_x509_svid_ttl`: 30 s.
///
/// SPIRE backdates every X.509-SVID's `notBefore` by 10 s, so the certificate
/// lives 40 s, and the agent renews it once less than half of that (20 s,
/// jittered by ±10 %) is left: a new SVID about every 10 s, each with about
/// 20 s of validity left when it is replaced. Three rotations take ~30 s;
/// an agent restart of a few seconds never lets an SVID expire. Below ~20 s
/// the backdating makes the agent renew on every sync.
pub const DEFAULT_X509_SVID_TTL: Duration = Duration::from_secs(30);

/// Default `default_jwt_svid_ttl`: 30 s. JWT-SVIDs are not backdated; the
/// agent re-mints a cached one after half its life (15 s). Tests that must
/// hold a token across several SPIRE steps (authority rotation) set a longer
/// TTL on their entry (`EntrySpec::jwt_svid_ttl`).
pub const DEFAULT_JWT_SVID_TTL: Duration = Duration::from_secs(30);

/// Default `agent_ttl`: 2 min. The agent renews its own SVID at about half
/// life (~55 s after issue), so longer tests see it once; and the agent
/// survives a SPIRE server outage of about a minute. A join-token agent
/// whose SVID expires cannot attest again (the token is spent).
pub const DEFAULT_AGENT_TTL: Duration = Duration::from_secs(120);

/// Default `ca_ttl`: 20 min. SPIRE wants `ca_ttl` at least 6 times every
/// SVID TTL (it warns and shortens SVIDs otherwise): 6 × 2 min = 12 min. At
/// 20 min SPIRE prepares the next CA only after 10 min (half life) and
/// activates it after 16 min 40 s (five sixths), so no test shorter than 10
/// minutes sees an automatic CA or JWT-key change: tests that drive
/// `localauthority` own the authority lifecycle. A test that wants the
/// automatic rotation sets a short `ca_ttl` (and SVID TTLs at most a sixth
/// of it).
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(20 * 60);

/// Default for both the server's entry cache reload
/// (`experimental.cache_reload_interval`, SPIRE default 5 s) and the agent's
/// sync with the server (`experimental.sync_interval`, SPIRE default 5 s):
/// 1 s, so a new entry, a deleted entry or an authority change reaches
/// workloads in about 1–2 s instead of up to 10 s.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Default time to wait for the server and agent to become healthy.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run one SPIRE server and agent. Build with [`SpireConfig::new`],
/// adjust with the chained setters, then [`SpireConfig::start`].
#[derive(Debug, Clone)]
pub struct SpireConfig {
    pub(super) trust_domain: String,
    pub(super) x509_svid_ttl: Duration,
    pub(super) jwt_svid_ttl: Duration,
    pub(super) agent_ttl: Duration,
    pub(super) ca_ttl: Duration,
    pub(super) server_cache_reload: Duration,
    pub(super) agent_sync_interval: Duration,
    pub(super) bundle_endpoint: Option<BundleEndpoint>,
    pub(super) federates_with: Vec<FederationRelationship>,
    pub(super) workload_sha256: bool,
    pub(super) ready_timeout: Duration,
    pub(super) server_env: Vec<(String, String)>,
    pub(super) log_level: String,
}

impl SpireConfig {
    /// A server and agent for `trust_domain` (e.g. `"example.org"`), with the
    /// default TTLs and intervals above, no bundle endpoint, no federation.
    #[must_use]
    pub fn new(trust_domain: impl Into<String>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            x509_svid_ttl: DEFAULT_X509_SVID_TTL,
            jwt_svid_ttl: DEFAULT_JWT_SVID_TTL,
            agent_ttl: DEFAULT_AGENT_TTL,
            ca_ttl: DEFAULT_CA_TTL,
            server_cache_reload: DEFAULT_SYNC_INTERVAL,
            agent_sync_interval: DEFAULT_SYNC_INTERVAL,
            bundle_endpoint: None,
            federates_with: Vec::new(),
            workload_sha256: true,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            server_env: Vec::new(),
            log_level: "DEBUG".into(),
        }
    }

    /// The server's `default_x509_svid_ttl`.
    #[must_use]
    pub fn x509_svid_ttl(mut self, ttl: Duration) -> Self {
        self.x509_svid_ttl = ttl;
        self
    }

    /// The server's `default_jwt_svid_ttl`.
    #[must_use]
    pub fn jwt_svid_ttl(mut self, ttl: Duration) -> Self {
        self.jwt_svid_ttl = ttl;
        self
    }

    /// The server's `agent_ttl` (lifetime of the agent's own SVID).
    #[must_use]
    pub fn agent_ttl(mut self, ttl: Duration) -> Self {
        self.agent_ttl = ttl;
        self
    }

    /// The server's `ca_ttl` (X.509 CA and JWT signing key lifetime).
    #[must_use]
    pub fn ca_ttl(mut self, ttl: Duration) -> Self {
        self.ca_ttl = ttl;
        self
    }

    /// The server's entry cache reload and the agent's sync interval.
    #[must_use]
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.server_cache_reload = interval;
        self.agent_sync_interval = interval;
        self
    }

    /// Serves this trust domain's bundle on a SPIFFE bundle endpoint on
    /// 127.0.0.1 (a free port), in the given profile.
    #[must_use]
    pub fn bundle_endpoint(mut self, endpoint: BundleEndpoint) -> Self {
        self.bundle_endpoint = Some(endpoint);
        self
    }

    /// Serves a bundle endpoint in the `https_spiffe` profile (SPIRE's
    /// default), with a 5 s refresh hint.
    #[must_use]
    pub fn with_bundle_endpoint(self) -> Self {
        self.bundle_endpoint(BundleEndpoint::https_spiffe())
    }

    /// A `federates_with` block in the server config: the server polls this
    /// endpoint from its start. The relationship's initial bundle, if any,
    /// is loaded with `spire-server bundle set` once the server is up.
    /// Relationships to endpoints that start later are made at run time
    /// with `Spire::create_federation` or `Spire::federate_with`.
    #[must_use]
    pub fn federates_with(mut self, relationship: FederationRelationship) -> Self {
        self.federates_with.push(relationship);
        self
    }

    /// Whether the agent computes `unix:sha256` selectors (default: yes, as
    /// SPIRE does with `discover_workload_path`). It hashes the caller's
    /// executable on every Workload API call, which costs time for large
    /// test binaries; turn it off when no entry uses `unix:sha256`.
    #[must_use]
    pub fn workload_sha256(mut self, enabled: bool) -> Self {
        self.workload_sha256 = enabled;
        self
    }

    /// How long `start` (and every restart) waits for health.
    #[must_use]
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// An environment variable for the `spire-server` process, e.g.
    /// `SSL_CERT_FILE` naming a test CA so SPIRE trusts an `https_web`
    /// bundle endpoint served with a test certificate.
    #[must_use]
    pub fn server_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.server_env.push((key.into(), value.into()));
        self
    }

    /// SPIRE's `log_level` for both processes (default `DEBUG`; the harness
    /// reads the agent's debug log to know when an entry has arrived, so
    /// [`crate::spire::Spire::wait_for_entry`] needs `DEBUG`).
    #[must_use]
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    /// The trust domain name.
    #[must_use]
    pub fn trust_domain_name(&self) -> &str {
        &self.trust_domain
    }
}

/// Paths and ports one harness instance uses.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) root: PathBuf,
    pub(super) server_port: u16,
    pub(super) bundle_endpoint_port: Option<u16>,
}

impl Layout {
    pub(super) fn server_dir(&self) -> PathBuf {
        self.root.join("server")
    }
    pub(super) fn server_data(&self) -> PathBuf {
        self.server_dir().join("data")
    }
    pub(super) fn server_socket(&self) -> PathBuf {
        self.server_dir().join("api.sock")
    }
    pub(super) fn server_config(&self) -> PathBuf {
        self.server_dir().join("server.conf")
    }
    pub(super) fn server_log(&self) -> PathBuf {
        self.root.join("server.log")
    }
    pub(super) fn agent_dir(&self) -> PathBuf {
        self.root.join("agent")
    }
    pub(super) fn agent_data(&self) -> PathBuf {
        self.agent_dir().join("data")
    }
    pub(super) fn workload_socket(&self) -> PathBuf {
        self.agent_dir().join("api.sock")
    }
    pub(super) fn agent_config(&self) -> PathBuf {
        self.agent_dir().join("agent.conf")
    }
    pub(super) fn agent_bootstrap_bundle(&self) -> PathBuf {
        self.agent_dir().join("bootstrap.crt")
    }
    pub(super) fn agent_log(&self) -> PathBuf {
        self.root.join("agent.log")
    }
    pub(super) fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }
}

/// An HCL string literal (JSON escaping is a valid subset).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}

/// A Go duration string.
pub(super) fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

pub(super) fn server_hcl(config: &SpireConfig, layout: &Layout) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "server {{");
    let _ = writeln!(s, "    bind_address = \"127.0.0.1\"");
    let _ = writeln!(s, "    bind_port = {}", layout.server_port);
    let _ = writeln!(s, "    socket_path = {}", qp(&layout.server_socket()));
    let _ = writeln!(s, "    trust_domain = {}", q(&config.trust_domain));
    let _ = writeln!(s, "    data_dir = {}", qp(&layout.server_data()));
    let _ = writeln!(s, "    log_level = {}", q(&config.log_level));
    let _ = writeln!(s, "    ca_key_type = \"ec-p256\"");
    let _ = writeln!(s, "    ca_subject {{");
    let _ = writeln!(s, "        country = [\"US\"]");
    let _ = writeln!(s, "        organization = [\"zt-interop\"]");
    let _ = writeln!(s, "        common_name = \"\"");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "    ca_ttl = {}", q(&go_duration(config.ca_ttl)));
    let _ = writeln!(
        s,
        "    default_x509_svid_ttl = {}",
        q(&go_duration(config.x509_svid_ttl))
    );
    let _ = writeln!(
        s,
        "    default_jwt_svid_ttl = {}",
        q(&go_duration(config.jwt_svid_ttl))
    );
    let _ = writeln!(s, "    agent_ttl = {}", q(&go_duration(config.agent_ttl)));
    let _ = writeln!(s, "    experimental {{");
    let _ = writeln!(
        s,
        "        cache_reload_interval = {}",
        q(&go_duration(config.server_cache_reload))
    );
    let _ = writeln!(s, "    }}");
    if config.bundle_endpoint.is_some() || !config.federates_with.is_empty() {
        let _ = writeln!(s, "    federation {{");
        if let (Some(endpoint), Some(port)) = (&config.bundle_endpoint, layout.bundle_endpoint_port)
        {
            let _ = writeln!(s, "        bundle_endpoint {{");
            let _ = writeln!(s, "            address = \"127.0.0.1\"");
            let _ = writeln!(s, "            port = {port}");
            if let Some(hint) = endpoint.refresh_hint {
                let _ = writeln!(s, "            refresh_hint = {}", q(&go_duration(hint)));
            }
            match &endpoint.profile {
                BundleEndpointProfile::HttpsSpiffe => {
                    let _ = writeln!(s, "            profile \"https_spiffe\" {{}}");
                }
                BundleEndpointProfile::HttpsWeb {
                    cert_file,
                    key_file,
                } => {
                    let _ = writeln!(s, "            profile \"https_web\" {{");
                    let _ = writeln!(s, "                serving_cert_file {{");
                    let _ = writeln!(s, "                    cert_file_path = {}", qp(cert_file));
                    let _ = writeln!(s, "                    key_file_path = {}", qp(key_file));
                    // SPIRE 1.13.3 fails to start ("invalid duration") when
                    // this is left out. 1 s: a test replacing the files sees
                    // SPIRE serve the new certificate at once.
                    let _ = writeln!(s, "                    file_sync_interval = \"1s\"");
                    let _ = writeln!(s, "                }}");
                    let _ = writeln!(s, "            }}");
                }
            }
            let _ = writeln!(s, "        }}");
        }
        for rel in &config.federates_with {
            let _ = writeln!(s, "        federates_with {} {{", q(&rel.trust_domain));
            let _ = writeln!(
                s,
                "            bundle_endpoint_url = {}",
                q(&rel.bundle_endpoint_url)
            );
            match &rel.profile {
                EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                    let _ = writeln!(s, "            bundle_endpoint_profile \"https_spiffe\" {{");
                    let _ = writeln!(
                        s,
                        "                endpoint_spiffe_id = {}",
                        q(endpoint_spiffe_id)
                    );
                    let _ = writeln!(s, "            }}");
                }
                EndpointProfile::HttpsWeb => {
                    let _ = writeln!(s, "            bundle_endpoint_profile \"https_web\" {{}}");
                }
            }
            let _ = writeln!(s, "        }}");
        }
        let _ = writeln!(s, "    }}");
    }
    let _ = writeln!(s, "}}");
    let _ = writeln!(s);
    let _ = writeln!(s, "plugins {{");
    let _ = writeln!(s, "    DataStore \"sql\" {{");
    let _ = writeln!(s, "        plugin_data {{");
    let _ = writeln!(s, "            database_type = \"sqlite3\"");
    let _ = writeln!(
        s,
        "            connection_string = {}",
        qp(&layout.server_data().join("datastore.sqlite3"))
    );
    let _ = writeln!(s, "        }}");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "    KeyManager \"disk\" {{");
    let _ = writeln!(s, "        plugin_data {{");
    let _ = writeln!(
        s,
        "            keys_path = {}",
        qp(&layout.server_data().join("keys.json"))
    );
    let _ = writeln!(s, "        }}");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "    NodeAttestor \"join_token\" {{");
    let _ = writeln!(s, "        plugin_data {{}}");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "}}");
    s
}

pub(super) fn agent_hcl(config: &SpireConfig, layout: &Layout) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "agent {{");
    let _ = writeln!(s, "    data_dir = {}", qp(&layout.agent_data()));
    let _ = writeln!(s, "    log_level = {}", q(&config.log_level));
    // JSON, so the harness can read "SVID updated" / "Entry removed" lines.
    let _ = writeln!(s, "    log_format = \"json\"");
    let _ = writeln!(s, "    server_address = \"127.0.0.1\"");
    let _ = writeln!(s, "    server_port = {}", layout.server_port);
    let _ = writeln!(s, "    socket_path = {}", qp(&layout.workload_socket()));
    let _ = writeln!(
        s,
        "    trust_bundle_path = {}",
        qp(&layout.agent_bootstrap_bundle())
    );
    let _ = writeln!(s, "    trust_domain = {}", q(&config.trust_domain));
    let _ = writeln!(s, "    experimental {{");
    let _ = writeln!(
        s,
        "        sync_interval = {}",
        q(&go_duration(config.agent_sync_interval))
    );
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "}}");
    let _ = writeln!(s);
    let _ = writeln!(s, "plugins {{");
    let _ = writeln!(s, "    NodeAttestor \"join_token\" {{");
    let _ = writeln!(s, "        plugin_data {{}}");
    let _ = writeln!(s, "    }}");
    // On disk, so a restarted agent finds its SVID and key and needs no new
    // join token.
    let _ = writeln!(s, "    KeyManager \"disk\" {{");
    let _ = writeln!(s, "        plugin_data {{");
    let _ = writeln!(s, "            directory = {}", qp(&layout.agent_data()));
    let _ = writeln!(s, "        }}");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "    WorkloadAttestor \"unix\" {{");
    let _ = writeln!(s, "        plugin_data {{");
    let _ = writeln!(s, "            discover_workload_path = true");
    let _ = writeln!(
        s,
        "            workload_size_limit = {}",
        if config.workload_sha256 { 0 } else { -1 }
    );
    let _ = writeln!(s, "        }}");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "}}");
    s
}
