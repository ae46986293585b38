//! Runs the real `warrant` binary: one-shot commands ([`TestCommand`]) and a
//! `warrant serve` child process ([`Server`]) that is stopped with SIGTERM
//! when dropped.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_warrant");

/// How long anything may take before the test gives up instead of hanging.
/// Generous: debug builds on a busy 2-core machine are slow to start.
const PATIENCE: Duration = Duration::from_secs(180);

/// Environment variables a developer's shell may hold that would change
/// what the binary does.
const ISOLATED_VARS: &[&str] = &[
    "WARRANT_ADDR",
    "WARRANT_TOKEN",
    "WARRANT_DATA_DIR",
    "WARRANT_STORE",
    "WARRANT_CONFIG",
    "WARRANT_LISTEN",
    "WARRANT_LOG_FORMAT",
    "WARRANT_CONFIG_DIR",
    "XDG_CONFIG_HOME",
    "RUST_LOG",
    "WARRANT_CLAIM",
    "WARRANT_RUN_SOCKET",
];

/// One `warrant` invocation, isolated from the user's environment and home.
pub struct TestCommand {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl TestCommand {
    /// `warrant` with `config_dir` as its config directory (and `HOME`).
    pub fn new(config_dir: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        for var in ISOLATED_VARS {
            cmd.env_remove(var);
        }
        cmd.env("WARRANT_CONFIG_DIR", config_dir)
            .env("HOME", config_dir);
        Self { cmd, stdin: None }
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn arg(&mut self, arg: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    pub fn env(&mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.env(key, value);
        self
    }

    pub fn stdin(&mut self, input: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(input.into());
        self
    }

    /// Runs to completion (killed after [`PATIENCE`]).
    pub fn output(&mut self) -> Output {
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn warrant");
        if let Some(input) = self.stdin.take() {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&input).unwrap();
        }
        let out = drain(child.stdout.take().unwrap());
        let err = drain(child.stderr.take().unwrap());
        let status = wait_for(&mut child, PATIENCE)
            .unwrap_or_else(|| panic!("{:?} did not finish in time", self.cmd));
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }

    /// Runs, asserts success and returns stdout.
    pub fn stdout(&mut self) -> String {
        let out = self.output();
        assert!(
            out.status.success(),
            "{:?} failed with {}\nstdout: {}\nstderr: {}",
            self.cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--output json`, asserts success and parses stdout.
    pub fn json(&mut self) -> Value {
        self.cmd.args(["--output", "json"]);
        let text = self.stdout();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
    }

    /// Runs, asserts failure with exit code `code` and returns stderr.
    pub fn fails_with(&mut self, code: i32) -> String {
        let out = self.output();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{:?}: expected exit code {code}\nstdout: {}\nstderr: {stderr}",
            self.cmd,
            String::from_utf8_lossy(&out.stdout),
        );
        stderr
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn wait_for(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `warrant serve` on a free loopback port, with a config dir of
/// its own for the CLI commands run against it.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    pub data_dir: PathBuf,
    /// Every line the server printed on stdout so far.
    pub stdout: Vec<String>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    config_dir: TempDir,
    /// Keeps the data directory alive when the server made it.
    _tmp: Option<TempDir>,
}

impl Server {
    /// A server on a fresh data directory.
    pub fn start() -> Self {
        let tmp = TempDir::new().unwrap();
        let data_dir = tmp.path().join("data");
        let mut server = Self::start_in(&data_dir, tmp.path());
        server._tmp = Some(tmp);
        server
    }

    /// A server on `data_dir`, run from `cwd`.
    pub fn start_in(data_dir: &Path, cwd: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        for var in ISOLATED_VARS {
            cmd.env_remove(var);
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .current_dir(cwd);
        Self::spawn(cmd, data_dir.to_owned())
    }

    /// Spawns `cmd` (a `warrant serve ...`) and waits for its
    /// `warrant listening on` line.
    pub fn spawn(mut cmd: Command, data_dir: PathBuf) -> Self {
        let config_dir = TempDir::new().unwrap();
        cmd.env("HOME", config_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn warrant serve");

        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });

        let mut server = Self {
            child: Some(child),
            addr: String::new(),
            data_dir,
            stdout: Vec::new(),
            lines,
            stderr,
            config_dir,
            _tmp: None,
        };
        let line = server.wait_for_line("warrant listening on http://");
        let addr = line
            .strip_prefix("warrant listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in `{line}`"));
        server.addr = addr.to_owned();
        server
    }

    /// Waits for a stdout line starting with `prefix`.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        if let Some(line) = self.stdout.iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no `{prefix}` line in time; stderr:\n{}", self.stderr())
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "warrant serve exited before printing `{prefix}`; stdout: {:?}\nstderr:\n{}",
                    self.stdout,
                    self.stderr()
                ),
            }
        }
    }

    /// Lines printed on stdout that have not been read yet, added to `stdout`.
    pub fn collect_stdout(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.stdout.push(line);
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn config_dir(&self) -> &Path {
        self.config_dir.path()
    }

    pub fn admin_token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.admin_token_file())
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `warrant` pointed at this server, without a token.
    pub fn cmd(&self) -> TestCommand {
        let mut cmd = TestCommand::new(self.config_dir.path());
        cmd.env("WARRANT_ADDR", &self.addr);
        cmd
    }

    /// `warrant` pointed at this server with the admin's token.
    pub fn admin(&self) -> TestCommand {
        let mut cmd = self.cmd();
        cmd.env("WARRANT_TOKEN", self.admin_token());
        cmd
    }

    /// `program` (`warrant` itself, or a program that runs it) pointed at
    /// this server, as a plain [`Command`] to spawn (for interactive
    /// children), isolated like [`TestCommand`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for var in ISOLATED_VARS {
            cmd.env_remove(var);
        }
        cmd.env("WARRANT_CONFIG_DIR", self.config_dir.path())
            .env("HOME", self.config_dir.path())
            .env("WARRANT_ADDR", &self.addr);
        cmd
    }

    /// A new user (admin-made) in `groups`: its API token.
    pub fn add_user(&self, name: &str, groups: &[&str]) -> String {
        let mut cmd = self.admin();
        cmd.args(["user", "add", name]);
        for g in groups {
            cmd.args(["--group", g]);
        }
        cmd.json()["token"].as_str().unwrap().to_owned()
    }

    /// A new agent of `tier`.
    pub fn add_agent(&self, name: &str, tier: &str) {
        self.admin()
            .args(["agent", "add", name, "--tier", tier])
            .json();
    }

    /// `warrant` with someone's token.
    pub fn as_user(&self, token: &str) -> TestCommand {
        let mut cmd = self.cmd();
        cmd.env("WARRANT_TOKEN", token);
        cmd
    }

    /// SIGKILL: the server gets no chance to clean up (a crash).
    pub fn kill_hard(&mut self) {
        let mut child = self.child.take().expect("server already stopped");
        child.kill().unwrap();
        child.wait().unwrap();
        self.collect_stdout();
    }

    /// A server on `data_dir` with `--config config`, run from `cwd`.
    pub fn start_with_config(data_dir: &Path, config: &Path, cwd: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        for var in ISOLATED_VARS {
            cmd.env_remove(var);
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .current_dir(cwd);
        Self::spawn(cmd, data_dir.to_owned())
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        terminate(&child);
        let status = wait_for(&mut child, PATIENCE).unwrap_or_else(|| {
            panic!(
                "warrant serve did not stop after SIGTERM; stderr:\n{}",
                self.stderr()
            )
        });
        self.collect_stdout();
        status
    }

    /// `GET path` with a bare HTTP/1.1 request; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let hostport = self.addr.trim_start_matches("http://");
        let mut conn = TcpStream::connect(hostport).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).unwrap();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {resp}"));
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- warrant serve stderr ---\n{}", self.stderr());
        }
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            if wait_for(&mut child, Duration::from_secs(20)).is_none() {
                eprintln!("warrant serve ignored SIGTERM and was killed");
            }
        }
    }
}

/// Sends SIGTERM. Failure shows up as the process not exiting.
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// A copy of a (stopped) server's data directory, to tamper with.
pub fn copy_dir(from: &Path) -> TempDir {
    let tmp = TempDir::new().unwrap();
    copy_tree(from, tmp.path());
    tmp
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Parses JSON lines.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {l}")))
        .collect()
}

/// The venv Python with the official MCP SDK (and PyJWT), made and filled
/// on first use: `WARRANT_PYTHON`, else `~/.cache/warrant-venv`.
pub fn mcp_python() -> PathBuf {
    if let Ok(p) = std::env::var("WARRANT_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").expect("HOME must be set to find the Python venv");
    let venv = PathBuf::from(home).join(".cache/warrant-venv");
    let python = venv.join("bin/python");
    let has = |p: &PathBuf| {
        Command::new(p)
            .args(["-c", "import mcp.client.stdio"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&python) {
        if !python.exists() {
            let made = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .expect("python3 is required for the MCP SDK tests");
            assert!(
                made.success(),
                "cannot create the venv at {}",
                venv.display()
            );
        }
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "mcp==2.3.0", "pyjwt[crypto]"])
            .status()
            .expect("pip is required for the MCP SDK tests");
        assert!(pip.success(), "cannot install the Python MCP SDK");
    }
    assert!(
        has(&python),
        "the MCP SDK is not importable by {}",
        python.display()
    );
    python
}

/// `@modelcontextprotocol/server-everything`'s entry point, installed with
/// npm on first use into `WARRANT_NPM_CACHE` (default `~/.cache/warrant-npm`).
pub fn server_everything() -> PathBuf {
    let cache = std::env::var_os("WARRANT_NPM_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/warrant-npm"),
        PathBuf::from,
    );
    let entry = cache.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !entry.exists() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&cache)
            .arg("@modelcontextprotocol/server-everything@2026.8.31")
            .status()
            .expect("npm is needed to install server-everything");
        assert!(status.success(), "npm install of server-everything failed");
    }
    entry
}

/// A child process spoken to in JSON lines: each `send` writes one line on
/// its stdin and reads one line from its stdout, never waiting longer than
/// [`PATIENCE`]. Killed when dropped.
pub struct LineChild {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
}

impl LineChild {
    /// Spawns `cmd` with piped stdin and stdout (stderr passes through).
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The next stdout line.
    pub fn read_line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no answer from the child in time"),
            Err(RecvTimeoutError::Disconnected) => panic!("the child closed its stdout"),
        }
    }

    /// The next stdout line, as JSON.
    pub fn read(&mut self) -> Value {
        let line = self.read_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Writes `line` and a newline on the child's stdin.
    pub fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// One command, one answer.
    pub fn send(&mut self, cmd: &Value) -> Value {
        self.write_line(&cmd.to_string());
        self.read()
    }

    /// Closes stdin and waits for the child to exit.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        wait_for(&mut self.child, PATIENCE).expect("the child did not exit in time")
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
