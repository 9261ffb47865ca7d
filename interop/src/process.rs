//! A spawned program that reports JSON lines on stdout (the Go peers, or any
//! helper): read its events with a timeout, keep its stderr tail, and kill it
//! on drop.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};

const STDERR_TAIL_LINES: usize = 40;

/// A child process whose stdout is a stream of JSON objects, one per line.
///
/// Lines that are not JSON objects arrive as `{"event":"stdout","line":...}`.
/// Every event read is also kept in [`JsonProcess::events`]. On drop the
/// process is killed and reaped.
#[derive(Debug)]
pub struct JsonProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    events: Vec<Value>,
    eof: bool,
    status: Option<ExitStatus>,
}

impl JsonProcess {
    /// Spawns `cmd` with piped stdin, stdout and stderr. `name` labels errors.
    ///
    /// # Errors
    /// When the program cannot be started.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Result<Self> {
        let name = name.into();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawn {name} ({cmd:?})"), &e))?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let value = match serde_json::from_str::<Value>(&line) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => serde_json::json!({ "event": "stdout", "line": line }),
                    };
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == STDERR_TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
            });
        }
        Ok(Self {
            name,
            child,
            stdin,
            lines,
            stderr,
            events: Vec::new(),
            eof: false,
            status: None,
        })
    }

    /// The label given at spawn.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every event read so far, in order.
    #[must_use]
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// Events read so far whose `"event"` is `name`.
    pub fn events_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| event_name(e) == name)
    }

    /// The last lines the process wrote on stderr.
    #[must_use]
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// The next event, waiting up to `timeout`; `Ok(None)` once stdout has
    /// closed (the process ended).
    ///
    /// # Errors
    /// [`Error::Timeout`] when nothing arrives in time.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Value>> {
        if self.eof {
            return Ok(None);
        }
        match self.lines.recv_timeout(timeout) {
            Ok(v) => {
                self.events.push(v.clone());
                Ok(Some(v))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                Ok(None)
            }
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout(format!(
                "{}: no event within {:.1} s{}",
                self.name,
                timeout.as_secs_f64(),
                self.context()
            ))),
        }
    }

    /// Reads events until one satisfies `pred` and returns it; `what`
    /// describes it for errors. An `{"event":"error"}` from the program, or
    /// its exit, ends the wait with [`Error::Command`].
    ///
    /// # Errors
    /// Timeout, the program's own error event, or its exit.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.next_event(left) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    let status = self.reap();
                    return Err(Error::Command(format!(
                        "{}: exited ({status}) before {what}{}",
                        self.name,
                        self.context()
                    )));
                }
                Err(Error::Timeout(_)) => {
                    return Err(Error::Timeout(format!(
                        "{}: no {what} within {:.1} s{}",
                        self.name,
                        timeout.as_secs_f64(),
                        self.context()
                    )));
                }
                Err(e) => return Err(e),
            };
            if pred(&event) {
                return Ok(event);
            }
            if event_name(&event) == "error" {
                return Err(Error::Command(format!(
                    "{}: reported an error while waiting for {what}: {}{}",
                    self.name,
                    event.get("error").and_then(Value::as_str).unwrap_or("?"),
                    self.context()
                )));
            }
        }
    }

    /// [`JsonProcess::wait_for`] an event named `name`.
    ///
    /// # Errors
    /// As `wait_for`.
    pub fn wait_for_event(&mut self, name: &str, timeout: Duration) -> Result<Value> {
        self.wait_for(&format!("event {name:?}"), timeout, |e| {
            event_name(e) == name
        })
    }

    /// Writes one line to the program's stdin (a token for `jwt-validate`).
    ///
    /// # Errors
    /// When stdin is closed.
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::Io(format!("{}: stdin already closed", self.name)))?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .map_err(|e| Error::io(format!("{}: write to stdin", self.name), &e))
    }

    /// Closes stdin (end of input for programs that read it).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `timeout` for the program to exit on its own, reading
    /// the rest of its events, and returns its exit status.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it is still running (it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while !self.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Ok(_) => {}
                Err(Error::Timeout(_)) => {
                    return Err(Error::Timeout(format!(
                        "{}: still running after {:.1} s{}",
                        self.name,
                        timeout.as_secs_f64(),
                        self.context()
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    return Err(Error::Timeout(format!(
                        "{}: closed stdout but did not exit",
                        self.name
                    )));
                }
                Err(e) => return Err(Error::io(format!("{}: wait", self.name), &e)),
            }
        }
    }

    /// Sends SIGTERM (through `kill(1)`) and waits up to `timeout` for the
    /// exit, then kills. Returns the exit status.
    ///
    /// # Errors
    /// When the process cannot be signaled or reaped.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        signal(self.pid(), "TERM")?;
        match self.wait_exit(timeout) {
            Ok(status) => Ok(status),
            Err(_) => self.kill(),
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    ///
    /// # Errors
    /// When it cannot be reaped.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("{}: wait after kill", self.name), &e))?;
        self.status = Some(status);
        Ok(status)
    }

    fn reap(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    return status.to_string();
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => return "stdout closed, still running".into(),
                Err(e) => return format!("wait failed: {e}"),
            }
        }
    }

    fn context(&self) -> String {
        let recent: Vec<String> = self
            .events
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(std::string::ToString::to_string)
            .collect();
        let mut out = String::new();
        if !recent.is_empty() {
            out.push_str("\n--- last events ---\n");
            out.push_str(&recent.join("\n"));
        }
        let stderr = self.stderr_tail();
        if !stderr.is_empty() {
            out.push_str("\n--- stderr tail ---\n");
            out.push_str(&stderr);
        }
        out
    }
}

impl Drop for JsonProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `"event"` field of an event, or `""`.
#[must_use]
pub fn event_name(event: &Value) -> &str {
    event.get("event").and_then(Value::as_str).unwrap_or("")
}

/// Sends a signal by name (`"TERM"`, `"KILL"`, `"STOP"`, `"CONT"`) to a
/// process through `kill(1)` (the harness forbids unsafe code, so no libc).
///
/// # Errors
/// When `kill` cannot run or reports failure.
pub fn signal(pid: u32, name: &str) -> Result<()> {
    let out = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .output()
        .map_err(|e| Error::io(format!("run kill -{name} {pid}"), &e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command(format!(
            "kill -{name} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
