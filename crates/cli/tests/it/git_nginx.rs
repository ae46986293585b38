//! Issue 8, acceptance 3 (and git's half of 4): the real `git` client
//! cloning and pushing over HTTP through a real nginx (`auth_request`
//! pointed at Warrant's forward auth) in front of `git http-backend` under
//! `fcgiwrap`, with `warrant hook git-pre-receive` installed in the bare
//! repositories and `warrant git-credential` as git's credential helper,
//! all under `warrant exec`.
//!
//! nginx, fcgiwrap and git must be installed (scripts/test.sh installs
//! them): the tests fail, never skip, when they are not.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{BIN, Server};

/// How long a step of the scripted agent may take.
const PATIENCE: Duration = Duration::from_secs(180);

/// The `[policy]` the tests run: the default pack, except that a push to a
/// protected branch needs an approval (bound to the commit) instead of
/// being forbidden outright.
const PROTECTED_PUSH_APPROVAL: &str = r#"@id("approval.push.protected")
@approval("required")
@reason("pushing to a protected branch needs a human approval of that commit")
permit (
  principal is Run,
  action == Action::"repo.push",
  resource
)
when { context.branch_protected };
"#;

fn find(program: &str, candidates: &[&str], package: &str) -> PathBuf {
    for c in candidates {
        let p = PathBuf::from(c);
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(program);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "`{program}` is not installed: these tests need real nginx, fcgiwrap and git \
         (scripts/test.sh installs them: apt-get install {package})"
    );
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `git` isolated from the user's and the system's configuration.
fn git(home: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "agent")
        .env("GIT_AUTHOR_EMAIL", "agent@example.test")
        .env("GIT_COMMITTER_NAME", "agent")
        .env("GIT_COMMITTER_EMAIL", "agent@example.test")
        .env_remove("GIT_DIR")
        .env_remove("GIT_CONFIG_COUNT");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx (one process, no daemon) in front of `git http-backend` under
/// `fcgiwrap`, serving bare repositories from `root/repos`, every request
/// checked with Warrant's forward auth. Both are killed when dropped.
struct GitServer {
    /// `http://127.0.0.1:PORT`
    url: String,
    repos: PathBuf,
    dir: TempDir,
    nginx: Child,
    // Dropped after nginx.
    _fcgiwrap: ProcessGroup,
}

/// A child leading its own process group, killed with the whole group
/// when dropped.
struct ProcessGroup(Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl GitServer {
    fn start(warrant: &str) -> Self {
        let nginx_bin = find("nginx", &["/usr/sbin/nginx"], "nginx-light");
        let fcgiwrap_bin = find("fcgiwrap", &["/usr/sbin/fcgiwrap"], "fcgiwrap");
        find("git", &["/usr/bin/git"], "git");
        let exec_path = String::from_utf8(run_ok(Command::new("git").arg("--exec-path")).stdout)
            .unwrap()
            .trim()
            .to_owned();
        let backend = Path::new(&exec_path).join("git-http-backend");
        assert!(
            backend.is_file(),
            "git-http-backend is missing at {}: install git",
            backend.display()
        );

        let dir = TempDir::new().unwrap();
        let root = dir.path();
        let repos = root.join("repos");
        for d in ["repos", "tmp", "logs", "fcgi-home"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let socket = root.join("fcgi.sock");
        // A clean environment: nothing of the test's (or a run's) leaks to
        // the git backend and its hooks but what nginx passes.
        // Its own process group, so its preforked workers go with it.
        let fcgiwrap = ProcessGroup(
            Command::new(&fcgiwrap_bin)
                .args(["-c", "2", "-s"])
                .arg(format!("unix:{}", socket.display()))
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("HOME", root.join("fcgi-home"))
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(root.join("logs/fcgiwrap.log")).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start fcgiwrap: {e}")),
        );
        wait_until("fcgiwrap's socket", || socket.exists());

        let warrant = warrant.trim_end_matches('/');
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = root.join("nginx.conf");
            std::fs::write(
                &conf,
                nginx_conf(root, port, warrant, &backend, &repos, &socket),
            )
            .unwrap();
            let mut nginx = Command::new(&nginx_bin)
                .arg("-p")
                .arg(root)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(root.join("logs/error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start nginx: {e}"));
            let deadline = Instant::now() + PATIENCE;
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        url: format!("http://127.0.0.1:{port}"),
                        repos,
                        dir,
                        nginx,
                        _fcgiwrap: fcgiwrap,
                    };
                }
                if let Some(status) = nginx.try_wait().unwrap() {
                    let mut err = String::new();
                    use std::io::Read as _;
                    let _ = nginx.stderr.take().unwrap().read_to_string(&mut err);
                    last_error = format!(
                        "nginx exited with {status}: {err}\n{}",
                        std::fs::read_to_string(root.join("logs/error.log")).unwrap_or_default()
                    );
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = nginx.kill();
                    let _ = nginx.wait();
                    panic!("nginx did not listen in time");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx did not start: {last_error}");
    }

    /// A bare repository `name` (`owner/repo`) holding one commit on
    /// `main`, with Warrant's pre-receive hook installed.
    fn repo(&self, name: &str) {
        let home = self.dir.path().join("fcgi-home");
        let bare = self.repos.join(format!("{name}.git"));
        run_ok(
            git(&home)
                .args(["init", "-q", "--bare", "-b", "main"])
                .arg(&bare),
        );
        run_ok(
            git(&home)
                .arg("-C")
                .arg(&bare)
                .args(["config", "http.receivepack", "true"]),
        );
        let seed = self
            .dir
            .path()
            .join(format!("seed-{}", name.replace('/', "-")));
        run_ok(git(&home).args(["init", "-q", "-b", "main"]).arg(&seed));
        std::fs::write(seed.join("README.md"), format!("# {name}\n")).unwrap();
        run_ok(git(&home).arg("-C").arg(&seed).args(["add", "README.md"]));
        run_ok(
            git(&home)
                .arg("-C")
                .arg(&seed)
                .args(["commit", "-q", "-m", "initial"]),
        );
        run_ok(
            git(&home)
                .arg("-C")
                .arg(&seed)
                .arg("push")
                .arg("-q")
                .arg(&bare)
                .arg("main"),
        );
        // Installed after seeding: from now on every push asks Warrant.
        let hook = bare.join("hooks/pre-receive");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\nexec '{BIN}' hook git-pre-receive\n"),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The commit `name` points at in bare repository `repo`.
    fn rev(&self, repo: &str, name: &str) -> Option<String> {
        let out = git(&self.dir.path().join("fcgi-home"))
            .arg("-C")
            .arg(self.repos.join(format!("{repo}.git")))
            .args(["rev-parse", "--verify", "-q", name])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    /// nginx's access log: one `METHOD URI STATUS scheme=...` line each.
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- nginx error log ---\n{}\n--- nginx access log ---\n{}",
                std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default(),
                self.access_log()
            );
        }
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

/// The configuration docs/git.md shows, with this test's paths and ports.
fn nginx_conf(
    root: &Path,
    port: u16,
    warrant: &str,
    backend: &Path,
    repos: &Path,
    socket: &Path,
) -> String {
    let r = root.display();
    format!(
        r#"daemon off;
master_process off;
pid {r}/nginx.pid;
error_log {r}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {r}/tmp/body;
  proxy_temp_path {r}/tmp/proxy;
  fastcgi_temp_path {r}/tmp/fastcgi;
  uwsgi_temp_path {r}/tmp/uwsgi;
  scgi_temp_path {r}/tmp/scgi;
  log_format git '$request_method $request_uri $status auth=$warrant_scheme';
  map $http_authorization $warrant_scheme {{ default none; "~^(?<s>\S+) " $s; }}
  access_log {r}/logs/access.log git;

  server {{
    listen 127.0.0.1:{port};

    # Every request asks Warrant first.
    location = /_warrant {{
      internal;
      proxy_pass {warrant}/v1/authz/forward;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}

    location / {{
      auth_request /_warrant;
      auth_request_set $warrant_run $upstream_http_x_warrant_run;
      auth_request_set $warrant_task $upstream_http_x_warrant_task;
      client_max_body_size 0;

      fastcgi_pass unix:{socket};
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param REQUEST_SCHEME $scheme;
      fastcgi_param PATH_INFO $uri;
      fastcgi_param GIT_PROJECT_ROOT {repos};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      # Who pushed, for git's reflog and for the pre-receive hook.
      fastcgi_param REMOTE_USER $warrant_run;
      fastcgi_param WARRANT_RUN $warrant_run;
      fastcgi_param WARRANT_TASK $warrant_task;
      fastcgi_param WARRANT_GIT_CREDENTIAL $http_authorization;
      fastcgi_param WARRANT_ADDR {warrant};
    }}
  }}
}}
"#,
        repos = repos.display(),
        socket = socket.display(),
        backend = backend.display(),
    )
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not ready in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Warrant with the test policy, user `bob` (who delegates) and agent
/// `claude` (tier `propose`).
struct Setup {
    server: Server,
    bob: String,
    dir: TempDir,
}

impl Setup {
    fn start() -> Self {
        let dir = TempDir::new().unwrap();
        let policies = dir.path().join("policies");
        run_ok(
            Command::new(BIN)
                .args(["policy", "pack", "--out"])
                .arg(&policies)
                .env("HOME", dir.path()),
        );
        // The default pack forbids agents' pushes to protected branches;
        // here they need an approval of the pushed commit instead.
        let guards = policies.join("guards.cedar");
        let text = std::fs::read_to_string(&guards).unwrap();
        let cut = text
            .find("@id(\"guard.protected-branch-push\")")
            .expect("the default pack has the protected-branch guard");
        std::fs::write(&guards, &text[..cut]).unwrap();
        std::fs::write(policies.join("git.cedar"), PROTECTED_PUSH_APPROVAL).unwrap();
        let config = dir.path().join("warrant.toml");
        std::fs::write(
            &config,
            format!(
                "[policy]\ndir = \"{}\"\nprotected_branches = [\"main\"]\n",
                policies.display()
            ),
        )
        .unwrap();
        let server = Server::start_with_config(&dir.path().join("data"), &config, dir.path());
        let bob = server.add_user("bob", &[]);
        server.add_agent("claude", "propose");
        Self { server, bob, dir }
    }

    /// A task over `acme/api` (read, push; `main` and `feature/*`): its id
    /// and claim file.
    fn task(&self) -> (String, PathBuf) {
        let task = self
            .server
            .as_user(&self.bob)
            .args([
                "task",
                "create",
                "--agent",
                "claude",
                "--purpose",
                "fix the build",
            ])
            .args([
                "--repo",
                "acme/api",
                "--branch",
                "main",
                "--branch",
                "feature/*",
            ])
            .args(["--action", "repo.read", "--action", "repo.push"])
            .json();
        let id = task["id"].as_str().unwrap().to_owned();
        let claim = self.dir.path().join(format!("claim-{id}"));
        std::fs::write(&claim, task["claim"].as_str().unwrap()).unwrap();
        std::fs::set_permissions(&claim, std::fs::Permissions::from_mode(0o600)).unwrap();
        (id, claim)
    }

    fn audit(&self) -> Vec<Value> {
        self.server
            .admin()
            .args(["audit", "export", "--format", "jsonl"])
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `warrant exec --task ... -- sh -c SCRIPT` with git configured to use
    /// `warrant git-credential`, as `warrant run` configures it.
    fn agent(&self, task: &str, claim: &Path, work: &Path, script: &str) -> Child {
        let mut cmd = self.server.command(BIN);
        cmd.args(["exec", "--task", task, "--claim"])
            .arg(claim)
            .args(["--", "sh", "-c", script])
            .current_dir(work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "credential.helper")
            .env("GIT_CONFIG_VALUE_0", format!("{BIN} git-credential"))
            .env("GIT_CONFIG_KEY_1", "credential.useHttpPath")
            .env("GIT_CONFIG_VALUE_1", "true")
            .env("GIT_AUTHOR_NAME", "agent")
            .env("GIT_AUTHOR_EMAIL", "agent@example.test")
            .env("GIT_COMMITTER_NAME", "agent")
            .env("GIT_COMMITTER_EMAIL", "agent@example.test")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        cmd.spawn().unwrap()
    }
}

/// Waits for the scripted agent to write `name` in `work`, and reads it.
fn step(work: &Path, name: &str, agent: &mut Child) -> String {
    let path = work.join(name);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && text.ends_with('\n')
        {
            return text;
        }
        if let Some(status) = agent.try_wait().unwrap() {
            panic!(
                "the agent exited ({status}) before `{name}`; its files: {:?}",
                std::fs::read_dir(work)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect::<Vec<_>>()
            );
        }
        assert!(Instant::now() < deadline, "no `{name}` in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `<rc>` and the log of a git command the script ran as `run NAME git ...`.
fn result(work: &Path, name: &str, agent: &mut Child) -> (i32, String) {
    let rc = step(work, &format!("{name}.rc"), agent);
    let log = std::fs::read_to_string(work.join(format!("{name}.log"))).unwrap();
    (rc.trim().parse().unwrap(), log)
}

/// The approval id in the hook's `remote: warrant: approval <id> is pending` line.
fn approval_id(log: &str) -> String {
    let at = log
        .find("warrant: approval ")
        .unwrap_or_else(|| panic!("no approval id in:\n{log}"));
    log[at + "warrant: approval ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The scripted agent: each git command's output goes to `NAME.log` and
/// its exit code to `NAME.rc`; `wait FILE` blocks until the test writes it.
const SCRIPT_HEAD: &str = r#"set -u
run() { name=$1; shift; "$@" > "$WORK/$name.log" 2>&1; echo $? > "$WORK/$name.rc.tmp"; mv "$WORK/$name.rc.tmp" "$WORK/$name.rc"; }
wait_for() { n=0; while [ ! -f "$WORK/$1" ]; do n=$((n+1)); [ $n -gt 3000 ] && exit 9; sleep 0.05; done; }
"#;

#[test]
fn git_through_nginx_clones_and_pushes_only_what_the_task_and_policy_allow() {
    let setup = Setup::start();
    let git_server = GitServer::start(&setup.server.addr);
    git_server.repo("acme/api");
    git_server.repo("acme/other");
    let (task, claim) = setup.task();
    let work = TempDir::new().unwrap();
    let w = work.path();
    let url = &git_server.url;
    let script = format!(
        r#"{SCRIPT_HEAD}
WORK='{w}'
cd "$WORK"
run clone-api git clone {url}/acme/api.git api
run clone-other git clone {url}/acme/other.git other
cd api
git checkout -q -b feature/x && echo fix > fix.txt && git add fix.txt && git commit -q -m 'fix the build'
run push-feature git push origin feature/x
run push-main-1 git push origin HEAD:main
wait_for approved
run push-main-2 git push origin HEAD:main
echo more >> fix.txt && git commit -q -am 'another change'
run push-main-3 git push origin HEAD:main
printf 'protocol=http\nhost={host}\npath=acme/api.git\n\n' | '{BIN}' git-credential get > "$WORK/old-credential.txt"
git rev-parse HEAD~1 > "$WORK/approved-commit.tmp" && mv "$WORK/approved-commit.tmp" "$WORK/approved-commit"
wait_for task-ended
cd "$WORK"
run clone-after-end git clone {url}/acme/api.git api-again
CRED=$(sed -n 's/^password=//p' "$WORK/old-credential.txt")
run old-credential-after-end git -c credential.helper= -c "http.extraHeader=Authorization: Bearer $CRED" clone {url}/acme/api.git api-old
"#,
        w = w.display(),
        host = &url["http://".len()..],
    );
    let mut agent = setup.agent(&task, &claim, w, &script);

    // The task's repository clones; another one does not (no credential
    // is issued for it, so git stops at the 401).
    let (rc, log) = result(w, "clone-api", &mut agent);
    assert_eq!(rc, 0, "{log}");
    assert!(w.join("api/README.md").is_file());
    let (rc, log) = result(w, "clone-other", &mut agent);
    assert_ne!(rc, 0, "{log}");
    assert!(log.contains("repo_not_in_scope"), "{log}");
    assert!(!w.join("other/README.md").exists());

    // A feature branch pushes: the hook asked Warrant and said so.
    let (rc, log) = result(w, "push-feature", &mut agent);
    assert_eq!(rc, 0, "{log}");
    assert!(
        log.contains("remote: warrant: refs/heads/feature/x: allowed"),
        "{log}"
    );
    let fix = git_server
        .rev("acme/api", "refs/heads/feature/x")
        .expect("feature/x was pushed");

    // main is protected: refused until approved, with the approval to ask for.
    let (rc, log) = result(w, "push-main-1", &mut agent);
    assert_ne!(rc, 0, "{log}");
    assert!(
        log.contains("remote: warrant: refs/heads/main: needs a human approval"),
        "{log}"
    );
    assert!(log.contains("pre-receive hook declined"), "{log}");
    assert!(log.contains(&fix), "the approval names the commit: {log}");
    let approval = approval_id(&log);
    assert_ne!(
        git_server.rev("acme/api", "main").as_deref(),
        Some(fix.as_str())
    );
    let shown = setup
        .server
        .admin()
        .args(["approvals", "show", &approval])
        .json();
    assert_eq!(shown["state"], "pending", "{shown}");
    assert_eq!(shown["context"]["commit"], fix, "{shown}");
    assert_eq!(shown["context"]["branch"], "main", "{shown}");
    // An approver (the admin; bob delegated the task) approves it.
    setup
        .server
        .admin()
        .args([
            "approvals",
            "approve",
            &approval,
            "--reason",
            "reviewed the fix",
        ])
        .stdout();
    std::fs::write(w.join("approved"), "").unwrap();

    // The same commit now goes through, once.
    let (rc, log) = result(w, "push-main-2", &mut agent);
    assert_eq!(rc, 0, "{log}");
    assert!(
        log.contains("remote: warrant: refs/heads/main: allowed"),
        "{log}"
    );
    assert_eq!(
        git_server.rev("acme/api", "main").as_deref(),
        Some(fix.as_str())
    );
    // The approval was for that commit: the next one needs its own.
    let (rc, log) = result(w, "push-main-3", &mut agent);
    assert_ne!(rc, 0, "{log}");
    let second = approval_id(&log);
    assert_ne!(second, approval);
    assert_eq!(
        git_server.rev("acme/api", "main").as_deref(),
        Some(fix.as_str())
    );
    assert_eq!(step(w, "approved-commit", &mut agent).trim(), fix);

    // After the task ends, nothing is let through: no new credential, and
    // one issued before is refused by forward auth.
    setup
        .server
        .as_user(&setup.bob)
        .args(["task", "end", &task])
        .json();
    std::fs::write(w.join("task-ended"), "").unwrap();
    let (rc, log) = result(w, "clone-after-end", &mut agent);
    assert_ne!(rc, 0, "{log}");
    assert!(!w.join("api-again/README.md").exists());
    let (rc, log) = result(w, "old-credential-after-end", &mut agent);
    assert_ne!(rc, 0, "{log}");
    assert!(!w.join("api-old/README.md").exists());
    assert!(
        std::fs::read_to_string(w.join("old-credential.txt"))
            .unwrap()
            .starts_with("username=x-warrant\npassword="),
        "a credential was issued before the end"
    );
    let status = agent.wait().unwrap();
    assert!(status.code().is_some(), "{status}");

    // git sent the credential as a Bearer token (the `authtype` capability),
    // and nginx let requests through only on Warrant's 200.
    let access = git_server.access_log();
    assert!(
        access.contains("/acme/api.git/git-upload-pack 200 auth=Bearer"),
        "{access}"
    );
    assert!(
        !access.contains("/acme/other.git/git-upload-pack 200"),
        "{access}"
    );
    // The credential issued before the end, refused after it.
    assert!(
        access.contains("GET /acme/api.git/info/refs?service=git-upload-pack 401 auth=Bearer"),
        "{access}"
    );

    // The audit trail: credentials issued, the decisions with branch and
    // commit, the approval used by the push of that commit.
    let events = setup.audit();
    let issued = events
        .iter()
        .filter(|e| e["kind"] == "git.credential.issued" && e["task_id"] == task.as_str())
        .count();
    assert!(issued >= 4, "{issued} credentials issued");
    let pushes: Vec<(&str, &str, &str)> = events
        .iter()
        .filter(|e| e["kind"] == "decision" && e["data"]["input"]["action"] == "repo.push")
        .map(|e| {
            (
                e["data"]["input"]["context"]["branch"].as_str().unwrap(),
                e["data"]["input"]["context"]["commit"].as_str().unwrap(),
                e["data"]["outcome"]["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(pushes[0], ("feature/x", fix.as_str(), "allow"));
    assert_eq!(pushes[1], ("main", fix.as_str(), "approval_required"));
    assert_eq!(pushes[2], ("main", fix.as_str(), "allow"));
    assert_eq!(pushes[3].2, "approval_required");
    assert_eq!(pushes.len(), 4, "{pushes:?}");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "git.access.refused" && e["data"]["check"] == "run_revoked"),
        "the old credential's refusal is recorded"
    );
}

#[test]
fn with_warrant_stopped_git_credential_gives_nothing_and_the_hook_refuses() {
    let mut setup = Setup::start();
    let (task, claim) = setup.task();
    let work = TempDir::new().unwrap();
    let w = work.path();
    let describe = "protocol=https\nhost=git.example.test\npath=acme/api.git\n\n";
    // Under a live run, with Warrant up: a credential.
    let script = format!(
        r#"{SCRIPT_HEAD}
WORK='{w}'
printf '{describe}' | '{BIN}' git-credential get > "$WORK/up.out" 2> "$WORK/up.err"; echo $? > "$WORK/up.rc"
wait_for stopped
printf '{describe}' | '{BIN}' git-credential get > "$WORK/down.out" 2> "$WORK/down.err"; echo $? > "$WORK/down.rc"
"#,
        w = w.display(),
        describe = describe.replace('\n', "\\n"),
    );
    let mut agent = setup.agent(&task, &claim, w, &script);
    assert_eq!(step(w, "up.rc", &mut agent).trim(), "0");
    let up = std::fs::read_to_string(w.join("up.out")).unwrap();
    assert!(up.starts_with("username=x-warrant\npassword=ey"), "{up}");

    setup.server.stop();
    std::fs::write(w.join("stopped"), "").unwrap();
    assert_eq!(step(w, "down.rc", &mut agent).trim(), "0");
    assert_eq!(std::fs::read_to_string(w.join("down.out")).unwrap(), "");
    let err = std::fs::read_to_string(w.join("down.err")).unwrap();
    assert!(err.contains("cannot reach Warrant"), "{err}");
    let _ = agent.wait();

    // No run at all: nothing either, exit 0.
    let out = crate::util::TestCommand::new(setup.dir.path())
        .args(["git-credential", "get"])
        .stdin(describe)
        .output();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARRANT_RUN_SOCKET"));
    // `store` and `erase` read their input and do nothing.
    for op in ["store", "erase"] {
        let out = crate::util::TestCommand::new(setup.dir.path())
            .args(["git-credential", op])
            .stdin(format!("{describe}username=x\npassword=y\n"))
            .output();
        assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    }

    // The pre-receive hook with Warrant unreachable refuses the push.
    let zero = "0".repeat(40);
    let err = crate::util::TestCommand::new(setup.dir.path())
        .args([
            "hook",
            "git-pre-receive",
            "--origin",
            "https://git.example.test",
        ])
        .args(["--repo", "acme/api"])
        .env("WARRANT_ADDR", &setup.server.addr)
        .env("WARRANT_GIT_CREDENTIAL", "Bearer x.y.z")
        .stdin(format!("{} {zero} refs/heads/feature/x\n", "a".repeat(40)))
        .fails_with(1);
    assert!(err.contains("cannot reach Warrant"), "{err}");
    assert!(err.contains("the push is refused"), "{err}");
}
