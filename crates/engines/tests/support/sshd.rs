//! A real OpenSSH `sshd` on 127.0.0.1 for the `ssh` engine's tests, and the
//! real `ssh`, `ssh-keygen` clients.
//!
//! `sshd` runs in the foreground (`-D -e`) with its own host key and config
//! in a temp dir: `TrustedUserCAKeys` (the engine's CA), `RevokedKeys` (a
//! KRL file the test rewrites), `AuthorizedPrincipalsFile` (which
//! principals may log in as which user), no password or plain-key logins.
//! The login user is the one running the tests: as root that needs
//! `PermitRootLogin prohibit-password` (certificates are public-key logins);
//! an unprivileged `sshd` can only log its own user in, which is the same.
//!
//! Missing `sshd` is a failure, not a skip: `scripts/test.sh` installs
//! `openssh-server`.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub user: String,
}

fn sshd_binary() -> PathBuf {
    if let Ok(p) = std::env::var("WARRANT_SSHD") {
        return PathBuf::from(p);
    }
    for p in ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/usr/bin/sshd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("sshd not found: install openssh-server (scripts/test.sh does) or set WARRANT_SSHD");
}

pub fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("cannot run `id -un`");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command to completion and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Generates a key pair with the real `ssh-keygen`; returns the private key
/// path and the public key line.
pub fn keygen(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = run(Command::new("ssh-keygen")
        .args(args)
        .args(["-q", "-N", "", "-C", name, "-f"])
        .arg(&key));
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_owned())
}

/// `ssh-keygen -L`: OpenSSH's own reading of a certificate.
pub fn describe_cert(cert: &Path) -> String {
    let out = run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(cert));
    assert!(
        out.status.success(),
        "ssh-keygen -L: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ssh-keygen -Q -f KRL CERT`: `Ok(())` when not revoked, `Err(output)`
/// when revoked; panics when the KRL cannot be read.
pub fn krl_check(krl: &Path, cert: &Path) -> Result<(), String> {
    let out = run(Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(cert));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        assert!(
            text.contains(": ok"),
            "unexpected ssh-keygen -Q output: {text}"
        );
        Ok(())
    } else {
        assert!(
            text.contains("REVOKED"),
            "ssh-keygen -Q could not check the KRL: {text}"
        );
        Err(text)
    }
}

impl Sshd {
    /// Starts `sshd` trusting `ca_public_key`, letting `principals` log in
    /// as the current user, with an empty KRL `krl` (bytes of a KRL).
    pub fn start(ca_public_key: &str, principals: &[&str], krl: &[u8]) -> Sshd {
        let binary = sshd_binary();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let user = current_user();
        let root = user == "root";
        if root && !Path::new("/run/sshd").exists() {
            // The privilege separation directory Debian's sshd is built with.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        keygen(d, "host_ed25519", &["-t", "ed25519"]);
        std::fs::write(d.join("ca.pub"), format!("{ca_public_key}\n")).unwrap();
        std::fs::create_dir(d.join("principals")).unwrap();
        std::fs::write(
            d.join("principals").join(&user),
            principals.join("\n") + "\n",
        )
        .unwrap();
        let port = spare_port();
        let config = format!(
            "ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {d}/host_ed25519\n\
             PidFile {d}/sshd.pid\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             AuthorizedKeysFile none\n\
             TrustedUserCAKeys {d}/ca.pub\n\
             RevokedKeys {d}/revoked.krl\n\
             AuthorizedPrincipalsFile {d}/principals/%u\n\
             LogLevel VERBOSE\n\
             LoginGraceTime 30\n\
             PrintMotd no\n\
             PrintLastLog no\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let mut sshd = Sshd {
            child: Command::new(&binary)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(d.join("sshd.log")).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display())),
            port,
            dir,
            user,
        };
        sshd.set_krl(krl);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = sshd.child.try_wait().unwrap() {
                panic!("sshd exited with {status}: {}", sshd.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    pub fn krl_path(&self) -> PathBuf {
        self.dir.path().join("revoked.krl")
    }

    /// Replaces the `RevokedKeys` file (sshd reads it on every login).
    pub fn set_krl(&self, krl: &[u8]) {
        let tmp = self.dir.path().join("revoked.krl.tmp");
        std::fs::write(&tmp, krl).unwrap();
        std::fs::rename(&tmp, self.krl_path()).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Logs in with the real `ssh` client using `key` and `cert`, running
    /// `command`.
    pub fn login(&self, key: &Path, cert: &Path, command: &str) -> Output {
        run(Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "LogLevel=ERROR",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(command))
    }

    /// Asserts that a login succeeds and returns its standard output.
    pub fn assert_login(&self, key: &Path, cert: &Path, command: &str) -> String {
        let out = self.login(key, cert, command);
        assert!(
            out.status.success(),
            "login failed: {}\n--- sshd log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Asserts that a login is refused and that sshd's log says `why`.
    pub fn assert_refused(&self, key: &Path, cert: &Path, why: &str) {
        let out = self.login(key, cert, "true");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "login succeeded but should not have");
        assert!(
            stderr.contains("Permission denied"),
            "ssh failed for another reason: {stderr}"
        );
        // sshd may write the line just after the client gave up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(why) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = self.log();
        assert!(log.contains(why), "sshd did not log `{why}`:\n{log}");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
