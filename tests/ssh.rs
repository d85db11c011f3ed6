//! The `ssh` module against a real OpenSSH sshd on 127.0.0.1 (random ports,
//! its own host keys and authorized_keys in a temp dir), a real ssh-agent,
//! and real sudo for a throwaway user. Needs root (sshd's privilege
//! separation) and the packages of scripts/deps.sh.
//!
//! Its own harness (`harness = false`): the cases run one after the other
//! in one thread, since each sets HOME, SSH_AUTH_SOCK and K8S_SSH_PASSPHRASE,
//! which the module reads (and the modules' unit tests stay out of it).
//! `cargo test --release --test ssh [filter…]`.

use k8s::ssh::{self, HostKeyChecking, Keys, Session, SshError, Sudo, Target, Upload, Written};

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const PASSPHRASE: &str = "correct horse battery";

/// One case's surroundings: a temp dir (also $HOME) and a clean environment.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        assert!(unsafe { libc::geteuid() } == 0, "tests/ssh.rs needs root (sshd privilege separation)");
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: run scripts/deps.sh (openssh-server)");
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".ssh")).unwrap();
        // Cases run one at a time, before their runtime starts: nothing reads
        // the environment while it changes.
        std::env::set_var("HOME", dir.path());
        std::env::remove_var("SSH_AUTH_SOCK");
        std::env::remove_var(ssh::PASSPHRASE_ENV);
        World { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn known_hosts(&self) -> PathBuf {
        self.path(".ssh/known_hosts")
    }

    /// A client key pair; `pass` empty for none.
    fn key(&self, name: &str, kind: &str, pass: &str) -> PathBuf {
        let path = self.path(name);
        let mut args = vec!["-q", "-t", kind, "-N", pass, "-C", name, "-f"];
        let p = path.to_str().unwrap().to_string();
        args.push(&p);
        if kind == "rsa" {
            args.extend(["-b", "2048"]);
        }
        run("ssh-keygen", &args);
        path
    }

    /// A target on 127.0.0.1:port, accept-new, no ~/.ssh/config.
    fn target(&self, name: &str, port: u16, key: Option<&Path>) -> Target {
        Target {
            name: name.to_string(),
            address: "127.0.0.1".into(),
            port: Some(port),
            user: Some("root".into()),
            identity_file: key.map(Path::to_path_buf),
            bastion: None,
            direct: false,
            host_key_checking: HostKeyChecking::AcceptNew,
            known_hosts: self.known_hosts(),
            sudo: Sudo::Auto,
            timeout: Duration::from_secs(5),
            ssh_config: Some(self.path("no-ssh-config")),
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn pubkey(key: &Path) -> String {
    std::fs::read_to_string(format!("{}.pub", key.display())).unwrap()
}

fn fingerprint(key: &Path) -> String {
    // "256 SHA256:… comment (ED25519)"
    run("ssh-keygen", &["-l", "-f", &format!("{}.pub", key.display())]).split(' ').nth(1).unwrap().to_string()
}

/// A real sshd on 127.0.0.1, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sshd {
    /// `authorized`: the keys root may log in with.
    fn start(w: &World, name: &str, authorized: &[&Path]) -> Sshd {
        let dir = w.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let host_key = dir.join("ssh_host_ed25519_key");
        run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", host_key.to_str().unwrap()]);
        let keys: String = authorized.iter().map(|k| pubkey(k)).collect();
        std::fs::write(dir.join("authorized_keys.root"), keys).unwrap();
        Sshd::launch(dir, free_port())
    }

    fn launch(dir: PathBuf, port: u16) -> Sshd {
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {dir}/ssh_host_ed25519_key\n\
             PidFile none\n\
             AuthorizedKeysFile {dir}/authorized_keys.%u\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             AllowTcpForwarding yes\n\
             PubkeyAcceptedAlgorithms ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256\n\
             MaxStartups 50:30:100\n\
             LogLevel DEBUG1\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        // -E appends: a restarted sshd starts a fresh log.
        let _ = std::fs::remove_file(dir.join("sshd.log"));
        // -E, not -e: with -e the session's own debug lines reach the client's stderr.
        let child = Command::new(SSHD)
            .args(["-D", "-f"])
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let sshd = Sshd { child, port, dir };
        sshd.wait_listening();
        sshd
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {}: {}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    fn authorize(&self, user: &str, key: &Path) {
        std::fs::write(self.dir.join(format!("authorized_keys.{user}")), pubkey(key)).unwrap();
    }

    /// The same sshd with a new host key, on the same port.
    fn rekey(mut self) -> Sshd {
        self.stop();
        let key = self.dir.join("ssh_host_ed25519_key");
        std::fs::remove_file(&key).unwrap();
        std::fs::remove_file(key.with_extension("pub")).unwrap();
        run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()]);
        let (dir, port) = (self.dir.clone(), self.port);
        drop(self);
        Sshd::launch(dir, port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real ssh-agent in the foreground on its own socket, killed on drop.
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(w: &World) -> Agent {
        let sock = w.path("agent.sock");
        let child = Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).stdout(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { child, sock }
    }

    /// ssh-add, giving the passphrase through SSH_ASKPASS.
    fn add(&self, w: &World, key: &Path, pass: &str) {
        let askpass = w.path("askpass.sh");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{pass}'\n")).unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-add: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn connect(t: &Target) -> Result<Session, SshError> {
    let keys = Keys::prepare(&[t])?;
    Session::connect(t, &keys).await
}

async fn echo(t: &Target) -> String {
    let s = connect(t).await.unwrap_or_else(|e| panic!("{}: {e}", t.name));
    let out = s.run_checked("echo hello from $(id -un)").await.unwrap();
    s.close().await;
    out
}

fn key_files_of_each_type() {
    let w = World::new();
    let keys: Vec<PathBuf> = ["ed25519", "ecdsa", "rsa"].iter().map(|k| w.key(&format!("id_{k}"), k, "")).collect();
    let sshd = Sshd::start(&w, "sshd", &keys.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    runtime().block_on(async {
        for k in &keys {
            assert_eq!(echo(&w.target("h", sshd.port, Some(k))).await, "hello from root\n", "{}", k.display());
        }
    });
    // sshd accepts no SHA-1 RSA signatures here, so RSA went through rsa-sha2-*.
    let log = sshd.log();
    assert_eq!(log.matches("Accepted publickey for root").count(), 3, "{log}");
    assert!(log.contains("Accepted publickey for root from 127.0.0.1") && log.contains(": RSA SHA256:"), "{log}");
}

fn encrypted_key_with_passphrase_from_the_environment() {
    let w = World::new();
    let key = w.key("id_enc", "ed25519", PASSPHRASE);
    let sshd = Sshd::start(&w, "sshd", &[&key]);
    let t = w.target("enc", sshd.port, Some(&key));
    std::env::set_var(ssh::PASSPHRASE_ENV, PASSPHRASE);
    runtime().block_on(async { assert_eq!(echo(&t).await, "hello from root\n") });

    std::env::set_var(ssh::PASSPHRASE_ENV, "wrong");
    let e = Keys::prepare(&[&t]).err().expect("a wrong passphrase must fail").to_string();
    assert!(e.contains("K8S_SSH_PASSPHRASE does not decrypt") && e.contains(&key.display().to_string()), "{e}");

    let missing = w.target("cp-9", sshd.port, Some(&w.path("no-such-key")));
    let e = Keys::prepare(&[&missing]).err().unwrap().to_string();
    assert!(e.contains("cp-9") && e.contains("no-such-key") && e.contains("does not exist"), "{e}");
}

fn ssh_agent_from_ssh_auth_sock() {
    let w = World::new();
    let plain = w.key("agent_plain", "ecdsa", "");
    let encrypted = w.key("agent_enc", "ed25519", "agent-only passphrase");
    let sshd = Sshd::start(&w, "sshd", &[&plain, &encrypted]);
    let agent = Agent::start(&w);
    agent.add(&w, &plain, "");
    agent.add(&w, &encrypted, "agent-only passphrase");
    std::env::set_var("SSH_AUTH_SOCK", &agent.sock);
    runtime().block_on(async {
        // No identity file: the agent's keys.
        assert_eq!(echo(&w.target("agent", sshd.port, None)).await, "hello from root\n");
        // An encrypted file the agent holds: no passphrase needed (none is set).
        let mut enc = w.target("agent-enc", sshd.port, Some(&encrypted));
        enc.name = "agent-enc".into();
        assert_eq!(echo(&enc).await, "hello from root\n");
    });
    let log = sshd.log();
    assert!(log.contains(&format!("ECDSA {}", fingerprint(&plain))), "{log}");
    assert!(log.contains(&format!("ED25519 {}", fingerprint(&encrypted))), "{log}");
}

fn strict_refuses_an_unknown_host_and_says_how_to_add_it() {
    let w = World::new();
    let key = w.key("id", "ed25519", "");
    let sshd = Sshd::start(&w, "sshd", &[&key]);
    let mut t = w.target("cp-1 (127.0.0.1)", sshd.port, Some(&key));
    t.host_key_checking = HostKeyChecking::Strict;
    let e = runtime().block_on(connect(&t)).err().expect("unknown host must be refused");
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
    let msg = e.to_string();
    let kh = w.known_hosts().display().to_string();
    assert!(msg.contains("cp-1 (127.0.0.1)") && msg.contains(&format!("ssh-keyscan -p {} 127.0.0.1 >> {kh}", sshd.port)), "{msg}");
    assert!(msg.contains("accept-new"), "{msg}");
    assert!(!w.known_hosts().exists(), "strict checking wrote {kh}");
    assert!(!sshd.log().contains("Accepted publickey"), "authenticated to an unverified host");

    // Added the way the message says (hashed, as Debian's ssh does): accepted.
    let scan = run("ssh-keyscan", &["-H", "-t", "ed25519", "-p", &sshd.port.to_string(), "127.0.0.1"]);
    assert!(scan.starts_with("|1|"), "{scan}");
    std::fs::write(w.known_hosts(), scan).unwrap();
    runtime().block_on(async { assert_eq!(echo(&t).await, "hello from root\n") });
}

fn accept_new_records_then_a_changed_key_is_refused() {
    let w = World::new();
    let key = w.key("id", "ed25519", "");
    let sshd = Sshd::start(&w, "sshd", &[&key]);
    let t = w.target("cp-2", sshd.port, Some(&key));
    runtime().block_on(async {
        // Several hosts at once: one line, no interleaving.
        let all: Vec<_> = (0..6).map(|_| echo(&t)).collect();
        for out in futures::future::join_all(all).await {
            assert_eq!(out, "hello from root\n");
        }
    });
    let kh = std::fs::read_to_string(w.known_hosts()).unwrap();
    assert_eq!(kh.lines().count(), 1, "{kh}");
    assert!(kh.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)), "{kh}");
    assert_eq!(std::fs::metadata(w.known_hosts()).unwrap().permissions().mode() & 0o777, 0o600);

    let sshd = sshd.rekey();
    let e = runtime().block_on(connect(&t)).err().expect("a changed host key must be refused");
    let msg = e.to_string();
    assert!(matches!(e, SshError::HostKeyChanged { line: 1, .. }), "{e:?}");
    assert!(msg.contains("HAS CHANGED") && msg.contains("cp-2"), "{msg}");
    assert!(msg.contains(&format!("{}:1", w.known_hosts().display())), "{msg}");
    assert!(msg.contains(&format!("ssh-keygen -R '[127.0.0.1]:{}'", sshd.port)), "{msg}");
    assert_eq!(std::fs::read_to_string(w.known_hosts()).unwrap(), kh, "the old key must stay");
    assert!(!sshd.log().contains("Accepted publickey"));
}

fn through_a_bastion() {
    let w = World::new();
    let key = w.key("id", "ed25519", "");
    let host = Sshd::start(&w, "host", &[&key]);
    let bastion = Sshd::start(&w, "bastion", &[&key]);
    let mut t = w.target("behind", host.port, Some(&key));
    t.bastion = Some(Box::new(w.target("bastion", bastion.port, Some(&key))));
    runtime().block_on(async { assert_eq!(echo(&t).await, "hello from root\n") });
    let log = bastion.log();
    assert!(log.contains(&format!("server_request_direct_tcpip: originator 127.0.0.1 port 0, target 127.0.0.1 port {}", host.port)), "{log}");
    assert!(host.log().contains("Accepted publickey for root"));
    let kh = std::fs::read_to_string(w.known_hosts()).unwrap();
    assert_eq!(kh.lines().count(), 2, "both hosts' keys are recorded: {kh}");
}

fn ssh_config_alias_and_proxy_jump() {
    let w = World::new();
    let key = w.key("fleet_key", "ed25519", "");
    let host = Sshd::start(&w, "host", &[&key]);
    let bastion = Sshd::start(&w, "bastion", &[&key]);
    // $HOME/.ssh/config, found without being named.
    let config = format!(
        "Host cp-alias\n  HostName 127.0.0.1\n  Port {hp}\n  User root\n  IdentityFile ~/fleet_key\n\
         Host cp-jumped\n  HostName 127.0.0.1\n  Port {hp}\n  User root\n  ProxyJump root@jumpbox:{bp}\n  IdentityFile ~/fleet_key\n\
         Host jumpbox\n  HostName 127.0.0.1\n  IdentityFile ~/fleet_key\n\
         Host *\n  User nobody-by-default\n  Port 1\n",
        hp = host.port,
        bp = bastion.port
    );
    std::fs::write(w.path(".ssh/config"), config).unwrap();
    let alias = |address: &str| Target {
        address: address.into(),
        port: None,
        user: None,
        identity_file: None,
        ssh_config: None,
        ..w.target(address, 0, None)
    };
    runtime().block_on(async {
        assert_eq!(echo(&alias("cp-alias")).await, "hello from root\n");
        assert_eq!(echo(&alias("cp-jumped")).await, "hello from root\n");
    });
    assert!(bastion.log().contains("server_request_direct_tcpip"), "{}", bastion.log());
    // known_hosts names the HostName, as OpenSSH does.
    let kh = std::fs::read_to_string(w.known_hosts()).unwrap();
    assert!(kh.contains(&format!("[127.0.0.1]:{} ", host.port)) && !kh.contains("cp-alias"), "{kh}");
}

fn upload_write_and_read_files() {
    let w = World::new();
    let key = w.key("id", "ed25519", "");
    let sshd = Sshd::start(&w, "sshd", &[&key]);
    let t = w.target("files", sshd.port, Some(&key));
    let local = w.path("k8s-binary");
    let v1: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&local, &v1).unwrap();
    let remote = w.path("remote/usr/local/bin/k8s");
    let r = remote.to_str().unwrap();
    runtime().block_on(async {
        let s = connect(&t).await.unwrap();
        assert_eq!(s.upload(&local, r, 0o755).await.unwrap(), Upload::Replaced);
        assert_eq!(std::fs::read(&remote).unwrap(), v1);
        let meta = std::fs::metadata(&remote).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert!(!Path::new(&format!("{r}.tmp")).exists());

        assert_eq!(s.upload(&local, r, 0o755).await.unwrap(), Upload::Unchanged);
        assert_eq!(std::fs::metadata(&remote).unwrap().modified().unwrap(), meta.modified().unwrap(), "rewritten");

        let mut v2 = v1.clone();
        v2[12345] ^= 0xff;
        std::fs::write(&local, &v2).unwrap();
        assert_eq!(s.upload(&local, r, 0o700).await.unwrap(), Upload::Replaced);
        assert_eq!(std::fs::read(&remote).unwrap(), v2);
        assert_eq!(std::fs::read(format!("{r}.prev")).unwrap(), v1, "the replaced file is kept as .prev");
        assert_eq!(std::fs::metadata(&remote).unwrap().permissions().mode() & 0o777, 0o700);

        let e = s.upload(&w.path("absent"), r, 0o755).await.unwrap_err().to_string();
        assert!(e.contains("files") && e.contains("absent"), "{e}");

        // The host cannot write the copy (here its .tmp is a directory; a full
        // disk goes the same way): the command ends before reading all it is
        // sent, and the upload ends with the host's own reason (it used to
        // wait forever for room to send the rest); nothing is replaced.
        std::fs::write(&local, &v1).unwrap();
        std::fs::create_dir(format!("{r}.tmp")).unwrap();
        let e = s.upload(&local, r, 0o755).await.unwrap_err().to_string();
        assert!(e.contains("files") && e.contains("Is a directory") && !e.contains("damaged"), "{e}");
        assert_eq!(std::fs::read(&remote).unwrap(), v2, "a failed upload replaced the file");
        std::fs::remove_dir(format!("{r}.tmp")).unwrap();

        let cfg = w.path("remote/etc/k8s/config.yaml");
        let c = cfg.to_str().unwrap();
        assert_eq!(s.read_file(c).await.unwrap(), None);
        assert_eq!(s.write_file(c, b"a: 1\n", 0o600).await.unwrap(), Written::Content);
        assert_eq!(s.write_file(c, b"a: 1\n", 0o600).await.unwrap(), Written::Same, "same content and mode: no write");
        assert_eq!(s.write_file(c, b"a: 1\n", 0o644).await.unwrap(), Written::Attributes, "a new mode is set");
        assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(s.write_file(c, b"a: 2\n", 0o644).await.unwrap(), Written::Content);
        assert_eq!(s.read_file(c).await.unwrap().as_deref(), Some(&b"a: 2\n"[..]));
        assert!(!Path::new(&format!("{c}.prev")).exists(), "write_file keeps no .prev");
        assert_eq!(s.read_file(&format!("{c}.missing")).await.unwrap(), None);
        s.close().await;
    });
}

/// Not a timed assertion: prints what an upload of a binary-sized file costs
/// through our `Session::upload` (hashing both ends, temp file, rename)
/// beside OpenSSH's `scp` and `ssh 'cat > file'` of the same file to the same
/// sshd, and checks the copies arrived whole.
fn upload_throughput_beside_openssh() {
    let w = World::new();
    let key = w.key("id", "ed25519", "");
    let sshd = Sshd::start(&w, "sshd", &[&key]);
    let t = w.target("bulk", sshd.port, Some(&key));
    let local = w.path("bulk-binary");
    let size = 96usize << 20;
    let mut x = 0x9e3779b97f4a7c15u64;
    let data: Vec<u8> = (0..size / 8).flat_map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_le_bytes()
    }).collect();
    std::fs::write(&local, &data).unwrap();
    let mib = size as f64 / f64::from(1 << 20);
    let remote = w.path("remote/bulk");
    let ours = runtime().block_on(async {
        let s = connect(&t).await.unwrap();
        let t0 = Instant::now();
        assert_eq!(s.upload(&local, remote.to_str().unwrap(), 0o755).await.unwrap(), Upload::Replaced);
        let took = t0.elapsed().as_secs_f64();
        s.close().await;
        took
    });
    assert!(std::fs::read(&remote).unwrap() == data, "the upload arrived damaged");
    let ssh_opts = |cmd: &mut Command| {
        cmd.arg("-i").arg(&key).args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .arg("-o").arg(format!("UserKnownHostsFile={}", w.path("openssh-known-hosts").display()));
    };
    let timed = |cmd: &mut Command, what: &str| {
        let t0 = Instant::now();
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        t0.elapsed().as_secs_f64()
    };
    let scp_copy = w.path("remote/bulk-scp");
    let mut scp = Command::new("scp");
    ssh_opts(&mut scp);
    // -O: the scp protocol (the test sshd has no sftp subsystem).
    scp.args(["-q", "-O", "-P", &sshd.port.to_string()]).arg(&local).arg(format!("root@127.0.0.1:{}", scp_copy.display()));
    let scp_s = timed(&mut scp, "scp");
    let cat_copy = w.path("remote/bulk-cat");
    let mut cat = Command::new("ssh");
    ssh_opts(&mut cat);
    cat.args(["-p", &sshd.port.to_string(), "root@127.0.0.1"]).arg(format!("cat > {}", cat_copy.display()))
        .stdin(std::fs::File::open(&local).unwrap());
    let cat_s = timed(&mut cat, "ssh cat");
    assert!(std::fs::read(&scp_copy).unwrap() == data && std::fs::read(&cat_copy).unwrap() == data, "OpenSSH's copies differ");
    println!(
        "BENCH ssh upload of {mib:.0} MiB on loopback: k8s (russh, sha256 both ends) {ours:.2} s ({:.0} MiB/s); \
         OpenSSH scp {scp_s:.2} s ({:.0} MiB/s), ssh 'cat >' {cat_s:.2} s; ours/scp speed {:.2}x",
        mib / ours, mib / scp_s, scp_s / ours
    );
}

fn commands_errors_and_silence() {
    let w = World::new();
    let key = w.key("id", "ed25519", "");
    let sshd = Sshd::start(&w, "sshd", &[&key]);
    let mut t = w.target("cp-3 (127.0.0.1)", sshd.port, Some(&key));
    t.timeout = Duration::from_secs(1);
    runtime().block_on(async {
        let s = connect(&t).await.unwrap();
        // POSIX sh, not root's login shell (bash here).
        assert_eq!(s.run_checked("echo $0").await.unwrap(), "sh\n");
        let out = s.run("printf out; printf err >&2; exit 3").await.unwrap();
        assert_eq!((out.status, &out.stdout[..], &out.stderr[..]), (3, &b"out"[..], &b"err"[..]));
        let e = s.run_checked("echo 'no such unit' >&2; exit 7").await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, SshError::Command { status: 7, .. }), "{e:?}");
        assert!(msg.contains("cp-3 (127.0.0.1)") && msg.contains("status 7") && msg.contains("no such unit"), "{msg}");
        // Silent for longer than the timeout: fine while the host answers keepalives.
        assert_eq!(s.run_checked("sleep 2; echo done").await.unwrap(), "done\n");
        s.close().await;
    });
}

fn unreachable_hosts_are_named() {
    let w = World::new();
    let key = w.key("id", "ed25519", "");
    let port = free_port();
    let refused = w.target("cp-4 (127.0.0.1)", port, Some(&key));
    // A port that accepts but never speaks SSH: the connect timeout.
    let silent_port = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut silent = w.target("cp-5", silent_port.local_addr().unwrap().port(), Some(&key));
    silent.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (e1, e2) = runtime().block_on(async { tokio::join!(connect(&refused), connect(&silent)) });
    let (e1, e2) = (e1.err().unwrap().to_string(), e2.err().unwrap().to_string());
    assert!(e1.starts_with(&format!("cannot reach cp-4 (127.0.0.1) at 127.0.0.1:{port}: connection refused (4 attempts)")), "{e1}");
    assert!(e1.contains("that sshd runs"), "{e1}");
    assert!(started.elapsed() >= Duration::from_millis(3500), "retried with backoff");
    assert!(e2.starts_with("cannot reach cp-5 at 127.0.0.1:") && e2.contains("timed out after 0.3s (4 attempts)"), "{e2}");
}

fn authentication_failure_lists_what_was_tried() {
    let w = World::new();
    let good = w.key("good", "ed25519", "");
    let wrong = w.key("wrong", "rsa", "");
    let in_agent = w.key("agent_key", "ed25519", "");
    let sshd = Sshd::start(&w, "sshd", &[&good]);
    let agent = Agent::start(&w);
    agent.add(&w, &in_agent, "");
    std::env::set_var("SSH_AUTH_SOCK", &agent.sock);
    let t = w.target("cp-5", sshd.port, Some(&wrong));
    let e = runtime().block_on(connect(&t)).err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, SshError::Auth { .. }), "{e:?}");
    assert!(msg.starts_with("authentication as root on cp-5 failed; tried "), "{msg}");
    assert!(msg.contains(&format!("key file {} (ssh-rsa {})", wrong.display(), fingerprint(&wrong))), "{msg}");
    assert!(msg.contains(&format!("agent key ssh-ed25519 {}", fingerprint(&in_agent))), "{msg}");
    assert!(msg.contains("authorized_keys"), "{msg}");

    // No key at all.
    std::env::remove_var("SSH_AUTH_SOCK");
    let e = runtime().block_on(connect(&w.target("cp-6", sshd.port, None))).err().unwrap().to_string();
    assert!(e.contains("cp-6") && e.contains("no key at all") && e.contains("ssh-copy-id"), "{e}");
}

/// A throwaway local user with sudo, removed on drop.
struct SudoUser {
    name: &'static str,
}

impl SudoUser {
    fn create(sshd: &Sshd, key: &Path) -> SudoUser {
        let u = SudoUser { name: "k8s-ssh-test" };
        let _ = Command::new("userdel").arg(u.name).output();
        run("useradd", &["-M", "-d", "/nonexistent", "-s", "/bin/sh", u.name]);
        // Not locked ("!"), so sshd lets it log in with a key.
        run("usermod", &["-p", "*", u.name]);
        sshd.authorize(u.name, key);
        u
    }

    fn sudoers(&self, line: &str) {
        let path = format!("/etc/sudoers.d/{}", self.name);
        std::fs::write(&path, format!("{} ALL=(ALL) {line}\n", self.name)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
}

impl Drop for SudoUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/etc/sudoers.d/{}", self.name));
        let _ = Command::new("userdel").arg(self.name).output();
    }
}

fn sudo_for_a_user_that_is_not_root() {
    let w = World::new();
    assert!(Path::new("/usr/bin/sudo").exists(), "sudo is missing: run scripts/deps.sh");
    let key = w.key("id", "ed25519", "");
    let sshd = Sshd::start(&w, "sshd", &[&key]);
    let user = SudoUser::create(&sshd, &key);
    let mut t = w.target("cp-7", sshd.port, Some(&key));
    t.user = Some(user.name.into());

    user.sudoers("ALL");
    let e = runtime().block_on(connect(&t)).err().unwrap();
    assert_eq!(
        e.to_string(),
        "user k8s-ssh-test on host cp-7 needs a password for sudo; give it passwordless sudo for k8s \
         (a line `k8s-ssh-test ALL=(ALL) NOPASSWD:ALL` in /etc/sudoers.d/k8s) or connect as root"
    );

    user.sudoers("NOPASSWD:ALL");
    let file = w.path("by-sudo");
    runtime().block_on(async {
        let s = connect(&t).await.unwrap();
        assert_eq!(s.run_checked("id -u").await.unwrap(), "0\n");
        assert_eq!(s.write_file(file.to_str().unwrap(), b"x", 0o640).await.unwrap(), Written::Content);
        t.sudo = Sudo::Never;
        let plain = connect(&t).await.unwrap();
        assert_ne!(plain.run_checked("id -u").await.unwrap(), "0\n");
        s.close().await;
        plain.close().await;
    });
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((std::os::unix::fs::MetadataExt::uid(&meta), meta.permissions().mode() & 0o777), (0, 0o640));
}

fn main() {
    let cases: &[(&str, fn())] = &[
        ("key_files_of_each_type", key_files_of_each_type),
        ("encrypted_key_with_passphrase_from_the_environment", encrypted_key_with_passphrase_from_the_environment),
        ("ssh_agent_from_ssh_auth_sock", ssh_agent_from_ssh_auth_sock),
        ("strict_refuses_an_unknown_host_and_says_how_to_add_it", strict_refuses_an_unknown_host_and_says_how_to_add_it),
        ("accept_new_records_then_a_changed_key_is_refused", accept_new_records_then_a_changed_key_is_refused),
        ("through_a_bastion", through_a_bastion),
        ("ssh_config_alias_and_proxy_jump", ssh_config_alias_and_proxy_jump),
        ("upload_write_and_read_files", upload_write_and_read_files),
        ("upload_throughput_beside_openssh", upload_throughput_beside_openssh),
        ("commands_errors_and_silence", commands_errors_and_silence),
        ("unreachable_hosts_are_named", unreachable_hosts_are_named),
        ("authentication_failure_lists_what_was_tried", authentication_failure_lists_what_was_tried),
        ("sudo_for_a_user_that_is_not_root", sudo_for_a_user_that_is_not_root),
    ];
    // Like libtest: arguments are name filters; flags are ignored.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let started = Instant::now();
    let (mut passed, mut failed, mut filtered) = (0, Vec::new(), 0);
    println!("\nrunning {} tests", cases.len());
    for (name, case) in cases {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        let t = Instant::now();
        let ok = std::panic::catch_unwind(*case).is_ok();
        println!("test {name} ... {} ({:.1}s)", if ok { "ok" } else { "FAILED" }, t.elapsed().as_secs_f64());
        if ok {
            passed += 1;
        } else {
            failed.push(*name);
        }
    }
    let result = if failed.is_empty() { "ok" } else { "FAILED" };
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {result}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s\n",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    std::process::exit(if failed.is_empty() { 0 } else { 101 });
}
