//! A real SPIRE 1.13.3 server and agent for one test, on loopback, in a
//! fresh temporary directory.
//!
//! [`Spire::start`] (or [`SpireConfig::start`]) writes the configs, starts
//! `spire-server`, mints a join token, starts `spire-agent` with its Workload
//! API socket in the temp dir, and waits for both to report healthy by
//! polling their `healthcheck` commands. Dropping the [`Spire`] kills both
//! processes, waits for them and removes the directory, also when the test
//! panics (then the tails of both logs go to stderr). `ZT_SPIRE_KEEP=1` keeps
//! the directory and prints its path.
//!
//! Identities go to processes by registration entries with `unix` selectors:
//! a test registers a program by its path and the uid
//! ([`EntrySpec::for_executable`]), copies a program to a fresh path first
//! when two instances need two identities ([`Spire::copy_executable`]), or
//! registers itself ([`EntrySpec::for_current_exe`]).
//!
//! [`Spire::wait_for_entry`] knows an entry has reached the agent when the
//! agent logs `SVID updated` for that entry ID (the agent's debug log, JSON):
//! from then on the Workload API serves that SVID to matching processes.
//!
//! Every method takes `&self`, so one thread may restart the agent while
//! another drives traffic.

mod binaries;
mod config;
mod entry;
mod federation;
#[cfg(test)]
mod tests;

use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub use binaries::{SPIRE_VERSION, SpireBinaries, bin_dir, build_script, spire_binaries};
pub use config::{
    DEFAULT_AGENT_TTL, DEFAULT_CA_TTL, DEFAULT_JWT_SVID_TTL, DEFAULT_READY_TIMEOUT,
    DEFAULT_SYNC_INTERVAL, DEFAULT_X509_SVID_TTL, SpireConfig,
};
pub use entry::{Entry, EntrySpec};
pub use federation::{
    BundleEndpoint, BundleEndpointProfile, BundleFormat, EndpointProfile, FederationRelationship,
};

use crate::error::{Error, Result};
use crate::go::GoProgram;
use crate::process::{self, JsonProcess};
use crate::util::{self, Attempt};
use config::Layout;

/// Path of the node alias the join token is bound to; entries default to
/// this parent.
const NODE_ALIAS_PATH: &str = "/zt-interop/node";
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 30;
/// Default wait for an entry to reach the agent.
pub const DEFAULT_ENTRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which SPIRE process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Component {
    /// `spire-server`.
    Server,
    /// `spire-agent`.
    Agent,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Self::Server => "spire-server",
            Self::Agent => "spire-agent",
        }
    }
}

/// A running SPIRE server and agent for one test; see the module docs.
#[derive(Debug)]
pub struct Spire {
    config: SpireConfig,
    bins: SpireBinaries,
    layout: Layout,
    tempdir: Option<TempDir>,
    server: Mutex<Option<Child>>,
    agent: Mutex<Option<Child>>,
    /// The join token until the agent has attested with it (it is single use).
    join_token: Mutex<Option<String>>,
}

impl SpireConfig {
    /// Starts the server and agent and waits until both are healthy.
    ///
    /// # Errors
    /// [`Error::Setup`] when SPIRE cannot be found or built; otherwise the
    /// step that failed, with the tails of both logs.
    pub fn start(self) -> Result<Spire> {
        Spire::launch(self)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io(format!("create {}", path.display()), &e))
}

fn write(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).map_err(|e| Error::io(format!("write {}", path.display()), &e))
}

fn keep_requested() -> bool {
    std::env::var("ZT_SPIRE_KEEP").is_ok_and(|v| v == "1")
}

impl Spire {
    /// A server and agent for `trust_domain` with the default configuration
    /// (see [`SpireConfig`]).
    ///
    /// # Errors
    /// As [`SpireConfig::start`].
    pub fn start(trust_domain: &str) -> Result<Self> {
        SpireConfig::new(trust_domain).start()
    }

    fn launch(config: SpireConfig) -> Result<Self> {
        let bins = spire_binaries()?;
        let tempdir = tempfile::Builder::new()
            .prefix("zt-spire-")
            .tempdir()
            .map_err(|e| Error::io("create the SPIRE temp dir", &e))?;
        let layout = Layout {
            root: tempdir.path().to_path_buf(),
            server_port: util::free_port()?,
            bundle_endpoint_port: if config.bundle_endpoint.is_some() {
                Some(util::free_port()?)
            } else {
                None
            },
        };
        // sun_path holds 108 bytes.
        for socket in [layout.workload_socket(), layout.server_socket()] {
            if socket.as_os_str().len() > 100 {
                return Err(Error::Setup(format!(
                    "socket path {} is too long for a Unix socket; set TMPDIR to a shorter directory",
                    socket.display()
                )));
            }
        }
        for dir in [layout.server_data(), layout.agent_data(), layout.bin_dir()] {
            create_dir(&dir)?;
        }
        let spire = Self {
            config,
            bins,
            layout,
            tempdir: Some(tempdir),
            server: Mutex::new(None),
            agent: Mutex::new(None),
            join_token: Mutex::new(None),
        };
        // From here on, an error drops `spire`: processes are killed and the
        // directory removed (or kept with ZT_SPIRE_KEEP=1).
        write(
            &spire.layout.server_config(),
            &config::server_hcl(&spire.config, &spire.layout),
        )?;
        spire.start_server()?;
        for rel in &spire.config.federates_with {
            if let Some((format, contents)) = &rel.initial_bundle {
                spire.set_bundle(&rel.trust_domain, *format, contents)?;
            }
        }
        let token = spire.server_cli_json(&[
            "token",
            "generate",
            "-spiffeID",
            &spire.node_alias_id(),
            "-ttl",
            "3600",
        ])?;
        let token = token
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::Parse(format!("`token generate` printed no token value: {token}"))
            })?
            .to_string();
        *lock(&spire.join_token) = Some(token);
        write(&spire.layout.agent_bootstrap_bundle(), &spire.bundle_pem()?)?;
        write(
            &spire.layout.agent_config(),
            &config::agent_hcl(&spire.config, &spire.layout),
        )?;
        spire.start_agent()?;
        Ok(spire)
    }

    // ----- where things are -----

    /// The trust domain name.
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.config.trust_domain
    }

    /// The configuration this harness was started with.
    #[must_use]
    pub fn config(&self) -> &SpireConfig {
        &self.config
    }

    /// The temporary directory holding configs, data, sockets and logs.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.layout.root
    }

    /// The agent's Workload API socket path.
    #[must_use]
    pub fn workload_socket(&self) -> PathBuf {
        self.layout.workload_socket()
    }

    /// The Workload API address in `SPIFFE_ENDPOINT_SOCKET` form,
    /// `unix:///tmp/zt-spire-.../agent/api.sock`.
    #[must_use]
    pub fn endpoint_socket(&self) -> String {
        format!("unix://{}", self.layout.workload_socket().display())
    }

    /// The server API socket (what `spire-server <cmd> -socketPath` takes).
    #[must_use]
    pub fn server_socket(&self) -> PathBuf {
        self.layout.server_socket()
    }

    /// The server's agent-facing address, `127.0.0.1:<port>`.
    #[must_use]
    pub fn server_address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.layout.server_port))
    }

    /// `https://127.0.0.1:<port>` of the bundle endpoint, when configured.
    #[must_use]
    pub fn bundle_endpoint_url(&self) -> Option<String> {
        self.layout
            .bundle_endpoint_port
            .map(|p| format!("https://127.0.0.1:{p}"))
    }

    /// The server's own SPIFFE ID, `spiffe://<td>/spire/server`: the
    /// endpoint SPIFFE ID of its `https_spiffe` bundle endpoint.
    #[must_use]
    pub fn server_spiffe_id(&self) -> String {
        format!("spiffe://{}/spire/server", self.config.trust_domain)
    }

    /// The node alias the agent's join token maps to,
    /// `spiffe://<td>/zt-interop/node`: the default parent of entries.
    #[must_use]
    pub fn node_alias_id(&self) -> String {
        format!("spiffe://{}{NODE_ALIAS_PATH}", self.config.trust_domain)
    }

    /// The SPIRE binaries in use.
    #[must_use]
    pub fn binaries(&self) -> &SpireBinaries {
        &self.bins
    }

    /// The server's log file (text).
    #[must_use]
    pub fn server_log_path(&self) -> PathBuf {
        self.layout.server_log()
    }

    /// The agent's log file (JSON lines).
    #[must_use]
    pub fn agent_log_path(&self) -> PathBuf {
        self.layout.agent_log()
    }

    /// The last `lines` lines of both logs, labeled.
    #[must_use]
    pub fn logs_tail(&self, lines: usize) -> String {
        format!(
            "--- spire-server log ({}) ---\n{}\n--- spire-agent log ({}) ---\n{}{}",
            self.layout.server_log().display(),
            util::tail(&self.layout.server_log(), lines),
            self.layout.agent_log().display(),
            util::tail(&self.layout.agent_log(), lines),
            if keep_requested() {
                String::new()
            } else {
                "\n(the temp dir is removed at the end of the test; ZT_SPIRE_KEEP=1 keeps it)"
                    .to_string()
            }
        )
    }

    fn with_logs(&self, err: Error) -> Error {
        err.with_detail(self.logs_tail(LOG_TAIL_LINES))
    }

    // ----- processes -----

    fn slot(&self, which: Component) -> &Mutex<Option<Child>> {
        match which {
            Component::Server => &self.server,
            Component::Agent => &self.agent,
        }
    }

    /// The pid of the server or agent, when running.
    #[must_use]
    pub fn pid(&self, which: Component) -> Option<u32> {
        lock(self.slot(which)).as_ref().map(Child::id)
    }

    /// Whether the process is running (it was started and has not exited).
    #[must_use]
    pub fn is_running(&self, which: Component) -> bool {
        let mut slot = lock(self.slot(which));
        match slot.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *slot = None;
                false
            }
            None => false,
        }
    }

    /// Errors when the process is not running (with the reason and logs).
    fn check_running(&self, which: Component) -> Result<()> {
        let mut slot = lock(self.slot(which));
        match slot.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => {
                *slot = None;
                drop(slot);
                Err(self.with_logs(Error::Command(format!(
                    "{} exited unexpectedly ({status})",
                    which.name()
                ))))
            }
            Some(Err(e)) => Err(Error::io(format!("wait for {}", which.name()), &e)),
            None => Err(Error::Command(format!("{} is stopped", which.name()))),
        }
    }

    fn spawn(&self, which: Component) -> Result<()> {
        let mut slot = lock(self.slot(which));
        if let Some(child) = slot.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            return Err(Error::Command(format!(
                "{} is already running",
                which.name()
            )));
        }
        let (bin, conf, dir, log) = match which {
            Component::Server => (
                &self.bins.server,
                self.layout.server_config(),
                self.layout.server_dir(),
                self.layout.server_log(),
            ),
            Component::Agent => (
                &self.bins.agent,
                self.layout.agent_config(),
                self.layout.agent_dir(),
                self.layout.agent_log(),
            ),
        };
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| Error::io(format!("open {}", log.display()), &e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| Error::io(format!("dup {}", log.display()), &e))?;
        let mut cmd = Command::new(bin);
        cmd.arg("run").arg("-config").arg(&conf).current_dir(dir);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err));
        match which {
            Component::Server => {
                for (k, v) in &self.config.server_env {
                    cmd.env(k, v);
                }
            }
            Component::Agent => {
                if let Some(token) = lock(&self.join_token).as_deref() {
                    cmd.arg("-joinToken").arg(token);
                }
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("start {}", bin.display()), &e))?;
        *slot = Some(child);
        Ok(())
    }

    fn wait_healthy(&self, which: Component) -> Result<()> {
        let (bin, socket) = match which {
            Component::Server => (&self.bins.server, self.layout.server_socket()),
            Component::Agent => (&self.bins.agent, self.layout.workload_socket()),
        };
        let what = format!("{} healthy", which.name());
        let result = util::poll(&what, self.config.ready_timeout, POLL_INTERVAL, || {
            self.check_running(which)?;
            let out = util::output_with_timeout(
                Command::new(bin)
                    .arg("healthcheck")
                    .arg("-socketPath")
                    .arg(&socket),
                CLI_TIMEOUT,
            )?;
            if out.status.success() {
                Ok(Attempt::Done(()))
            } else {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok(Attempt::NotYet(format!(
                    "`{} healthcheck`: {}",
                    which.name(),
                    text.trim()
                )))
            }
        });
        result.map_err(|e| match e {
            Error::Timeout(_) => self.with_logs(e),
            other => other,
        })
    }

    /// Starts the server (same config, data, port and socket as before) and
    /// waits until it is healthy.
    ///
    /// # Errors
    /// When it is already running, exits, or is not healthy in time.
    pub fn start_server(&self) -> Result<()> {
        self.spawn(Component::Server)?;
        self.wait_healthy(Component::Server)
    }

    /// Starts the agent (same config, data dir and socket; after the first
    /// start it reuses the SVID and key on disk, no new join token) and
    /// waits until it is healthy.
    ///
    /// # Errors
    /// When it is already running, exits, or is not healthy in time.
    pub fn start_agent(&self) -> Result<()> {
        self.spawn(Component::Agent)?;
        self.wait_healthy(Component::Agent)?;
        // Attested: the token is spent; later starts load the SVID from disk.
        *lock(&self.join_token) = None;
        Ok(())
    }

    /// Stops a process gracefully: SIGTERM, then SIGKILL after 10 s.
    ///
    /// # Errors
    /// When it is not running or cannot be signaled.
    pub fn stop(&self, which: Component) -> Result<()> {
        let mut slot = lock(self.slot(which));
        let mut child = slot
            .take()
            .ok_or_else(|| Error::Command(format!("{} is not running", which.name())))?;
        if matches!(child.try_wait(), Ok(None)) {
            process::signal(child.id(), "TERM")?;
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        child
            .wait()
            .map_err(|e| Error::io(format!("wait for {}", which.name()), &e))?;
        Ok(())
    }

    /// Kills a process at once (SIGKILL), as a crash would.
    ///
    /// # Errors
    /// When it is not running.
    pub fn kill(&self, which: Component) -> Result<()> {
        let mut slot = lock(self.slot(which));
        let mut child = slot
            .take()
            .ok_or_else(|| Error::Command(format!("{} is not running", which.name())))?;
        let _ = child.kill();
        child
            .wait()
            .map_err(|e| Error::io(format!("wait for {}", which.name()), &e))?;
        Ok(())
    }

    /// [`Spire::stop`] the server.
    ///
    /// # Errors
    /// As `stop`.
    pub fn stop_server(&self) -> Result<()> {
        self.stop(Component::Server)
    }

    /// [`Spire::stop`] the agent.
    ///
    /// # Errors
    /// As `stop`.
    pub fn stop_agent(&self) -> Result<()> {
        self.stop(Component::Agent)
    }

    /// Stops and starts the server in place.
    ///
    /// # Errors
    /// As `stop` and `start_server`.
    pub fn restart_server(&self) -> Result<()> {
        self.stop_server()?;
        self.start_server()
    }

    /// Stops and starts the agent in place.
    ///
    /// # Errors
    /// As `stop` and `start_agent`.
    pub fn restart_agent(&self) -> Result<()> {
        self.stop_agent()?;
        self.start_agent()
    }

    // ----- the CLIs -----

    fn cli(&self, which: Component, args: &[&str]) -> Result<String> {
        let (bin, socket) = match which {
            Component::Server => (&self.bins.server, self.layout.server_socket()),
            Component::Agent => (&self.bins.agent, self.layout.workload_socket()),
        };
        // -socketPath goes after the subcommand words, before the flags.
        let at = args
            .iter()
            .position(|a| a.starts_with('-'))
            .unwrap_or(args.len());
        let mut cmd = Command::new(bin);
        cmd.args(&args[..at])
            .arg("-socketPath")
            .arg(&socket)
            .args(&args[at..]);
        let out = util::output_with_timeout(&mut cmd, CLI_TIMEOUT)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Command(format!(
                "`{} {}` failed ({}):\n{}{}",
                which.name(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Runs `spire-server <args>` against this server (`-socketPath` is
    /// added after the subcommand words) and returns its stdout. For
    /// `localauthority x509|jwt prepare|activate|taint|revoke`, `bundle
    /// show`, `bundle list`, `federation ...`, `agent list`, ...
    ///
    /// # Errors
    /// [`Error::Command`] with its output when it exits non-zero.
    pub fn server_cli(&self, args: &[&str]) -> Result<String> {
        self.cli(Component::Server, args)
    }

    /// [`Spire::server_cli`] with `-output json`, parsed.
    ///
    /// # Errors
    /// As `server_cli`, or [`Error::Parse`].
    pub fn server_cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut full: Vec<&str> = args.to_vec();
        if !args.contains(&"-output") {
            full.extend(["-output", "json"]);
        }
        let out = self.server_cli(&full)?;
        serde_json::from_str(&out).map_err(|e| {
            Error::Parse(format!(
                "`spire-server {}` printed non-JSON ({e}): {out}",
                args.join(" ")
            ))
        })
    }

    /// Runs `spire-agent <args>` with `-socketPath` set to this agent's
    /// Workload API socket (`api fetch x509`, `api fetch jwt`, ...) and
    /// returns its stdout. Note that `api fetch` attests the `spire-agent`
    /// CLI process itself.
    ///
    /// # Errors
    /// [`Error::Command`] with its output when it exits non-zero.
    pub fn agent_cli(&self, args: &[&str]) -> Result<String> {
        self.cli(Component::Agent, args)
    }

    // ----- workloads -----

    /// Copies an executable to `<temp dir>/bin/<name>` (mode kept) and
    /// returns the canonical path, so that two copies of one program can be
    /// registered with two `unix:path` selectors and get two identities.
    ///
    /// # Errors
    /// When `name` is taken or the copy fails.
    pub fn copy_executable(&self, src: &Path, name: &str) -> Result<PathBuf> {
        let dest = self.layout.bin_dir().join(name);
        if dest.exists() {
            return Err(Error::Io(format!(
                "{} already exists; pick another name",
                dest.display()
            )));
        }
        fs::copy(src, &dest)
            .map_err(|e| Error::io(format!("copy {} to {}", src.display(), dest.display()), &e))?;
        dest.canonicalize()
            .map_err(|e| Error::io(format!("canonicalize {}", dest.display()), &e))
    }

    /// A `Command` for `program` with `SPIFFE_ENDPOINT_SOCKET` pointing at
    /// this agent.
    #[must_use]
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SPIFFE_ENDPOINT_SOCKET", self.endpoint_socket());
        cmd
    }

    /// Spawns `program` with `args` against this agent, reading JSON lines.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn spawn_json(&self, name: &str, program: &Path, args: &[&str]) -> Result<JsonProcess> {
        let mut cmd = self.command(program);
        cmd.args(args);
        JsonProcess::spawn(name, cmd)
    }

    /// Spawns a Go peer (built on first use) against this agent.
    ///
    /// # Errors
    /// When Go is missing, the build fails, or it cannot be started.
    pub fn spawn_go(&self, program: GoProgram, args: &[&str]) -> Result<JsonProcess> {
        self.spawn_json(program.name(), &program.path()?, args)
    }
}

impl Drop for Spire {
    fn drop(&mut self) {
        for slot in [&self.agent, &self.server] {
            if let Some(mut child) = lock(slot).take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "zt-interop: test panicked with SPIRE running; log tails:\n{}",
                self.logs_tail(LOG_TAIL_LINES)
            );
        }
        if keep_requested()
            && let Some(dir) = self.tempdir.take()
        {
            eprintln!("zt-interop: ZT_SPIRE_KEEP=1: kept {}", dir.keep().display());
        }
        // Otherwise the TempDir field removes the directory.
    }
}
