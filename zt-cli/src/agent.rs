//! `zt agent`: serve the SPIFFE Workload API from a development CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use zt_core::SpiffeId;
use zt_dev::{FakeCa, FakeCaSource, WorkloadApiServer};

use crate::args;
use crate::duration::parse_duration;
use crate::error::{CliError, CliResult};
use crate::output::{emit, warn_line};

/// Arguments of `zt agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// CA directory written by `zt ca init`.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Unix socket to serve on. A stale socket there is replaced. Anyone who
    /// can open it gets the identity: keep it in a private directory.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// SPIFFE ID to hand out, in the CA's trust domain.
    #[arg(long, value_name = "ID", value_parser = args::spiffe_id)]
    id: SpiffeId,
    /// Lifetime of each X.509-SVID; a fresh one is issued and pushed to
    /// clients at half of it.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    ttl: Duration,
}

/// Runs `zt agent` until Ctrl-C or SIGTERM.
pub(crate) fn run(a: &AgentArgs) -> CliResult {
    let ca = crate::ca::load(&a.ca)?;
    let crl_path = a.ca.join("crl.pem");
    let socket = std::path::absolute(&a.socket).map_err(|e| CliError::io(&a.socket, &e))?;
    if let Some(dir) = socket.parent()
        && !dir.is_dir()
    {
        return Err(CliError::usage(format!(
            "the socket's directory `{}` does not exist",
            dir.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(ca, a.id.clone(), a.ttl, &socket, crl_path))
}

/// How often the agent looks for a new `crl.pem` in the CA directory.
const CRL_POLL: Duration = Duration::from_secs(1);

async fn serve(
    ca: FakeCa,
    id: SpiffeId,
    ttl: Duration,
    socket: &Path,
    crl_path: PathBuf,
) -> CliResult {
    let source = FakeCaSource::new(ca, id.clone(), ttl)?;
    source.start_rotation();
    let agent = WorkloadApiServer::new(source.clone());
    // The CRL on disk is served from the first response on, then followed.
    let mut last: Option<Vec<u8>> = None;
    publish_crl_file(&agent, &crl_path, &mut last);
    let publisher = agent.clone();
    let crl_task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(CRL_POLL);
        loop {
            ticker.tick().await;
            publish_crl_file(&publisher, &crl_path, &mut last);
        }
    });
    let server = agent.serve_unix(socket).await?;
    emit(&format!("SPIFFE_ENDPOINT_SOCKET={}", server.endpoint()))?;
    warn_line(&format!(
        "serving {id} (SVIDs valid {}s, renewed every {}s); Ctrl-C or SIGTERM stops",
        ttl.as_secs(),
        ttl.as_secs() / 2
    ));
    let stopped = wait_for_stop_signal().await;
    crl_task.abort();
    server.shutdown().await;
    source.stop_rotation();
    stopped
}

/// Serves the CRLs of `path` (written by `zt ca revoke`) if the file
/// changed since `last`; a missing file serves none.
fn publish_crl_file(agent: &WorkloadApiServer, path: &Path, last: &mut Option<Vec<u8>>) {
    let bytes = std::fs::read(path).unwrap_or_default();
    if last.as_ref() == Some(&bytes) {
        return;
    }
    let crls = if bytes.is_empty() {
        Vec::new()
    } else {
        match zt_core::crl::read_crls(&bytes, &path.display().to_string()) {
            Ok(material) => material.crls,
            Err(e) => {
                warn_line(&format!("not serving {}: {e}", path.display()));
                *last = Some(bytes);
                return;
            }
        }
    };
    if !crls.is_empty() {
        warn_line(&format!("serving the CRL of {}", path.display()));
    }
    agent.publish_crls(crls);
    *last = Some(bytes);
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop_signal() -> CliResult {
    let signal_err = |e: std::io::Error| CliError::failure(format!("cannot watch signals: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(signal_err),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(signal_err)
    }
}
