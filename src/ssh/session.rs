//! Commands and files on a connected host, as root (through `sudo -n` when
//! the target says so). Files are written atomically (temporary file, then
//! rename) and compared by sha256 on the host first, so re-runs write nothing.

use std::path::Path;

use russh::ChannelMsg;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::connect::{self, Connection};
use super::target::Resolved;
use super::{Keys, SshError, Target};

/// Exit status 3 from our own scripts: "absent" / "checksum mismatch".
const OUR_STATUS: u32 = 3;
/// How much of a command's input is read before it is handed to russh.
const SEND_CHUNK: usize = 1 << 20;

/// What a command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim_end().to_string()
    }
}

/// What `upload` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// The host already had the same content (its mode was set if it differed).
    Unchanged,
    /// The file was written (a previous one kept as `<remote>.prev`).
    Replaced,
}

/// What `write_file` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The host had the same content, mode and owner.
    Same,
    /// The same content; its mode or owner was set.
    Attributes,
    /// New content was written.
    Content,
}

/// An open, authenticated connection to one host.
pub struct Session {
    r: Resolved,
    conn: Connection,
}

/// A POSIX sh function, `sha256 FILE`, that prints the file's sha256 (hex,
/// then anything): OpenSSL's where the host has it, coreutils' `sha256sum`
/// otherwise. OpenSSL uses the CPU's SHA instructions and coreutils does not:
/// 0.11 s against 0.37–0.46 s for 96 MiB on this machine, which was a third
/// of an upload's time (tests/ssh.rs `upload_throughput`) and of what
/// `k8s up` spends re-reading each host's installed binary.
pub const SHA256_FN: &str =
    "sha256() { openssl dgst -sha256 -r < \"$1\" 2>/dev/null || sha256sum < \"$1\"; }\n";

impl Session {
    /// Connects (through the jump hosts, if any), checks the host key,
    /// authenticates, and checks that sudo works when it is to be used.
    pub async fn connect(target: &Target, keys: &Keys) -> Result<Session, SshError> {
        let r = target.resolve()?;
        let conn = connect::open(&r, keys).await?;
        let session = Session { r, conn };
        if session.r.sudo {
            session.run_checked("true").await?;
        }
        Ok(session)
    }

    /// Runs `cmd` with `sh -c` as root (through `sudo -n` per the target's
    /// sudo setting). A non-zero status is not an error here.
    pub async fn run(&self, cmd: &str) -> Result<Output, SshError> {
        self.exec(cmd, None::<&[u8]>, &mut |_| {}).await
    }

    /// Runs `cmd` like [`Session::run`], handing each line of its stdout to
    /// `on_line` as it arrives (a long command's progress).
    pub async fn run_lines(&self, cmd: &str, on_line: &mut (dyn FnMut(&str) + Send)) -> Result<Output, SshError> {
        let mut pending = Vec::new();
        let mut split = |data: &[u8]| {
            pending.extend_from_slice(data);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                on_line(String::from_utf8_lossy(&line[..end]).trim_end_matches('\r'));
            }
        };
        let out = self.exec(cmd, None::<&[u8]>, &mut split).await?;
        if !pending.is_empty() {
            on_line(&String::from_utf8_lossy(&pending));
        }
        Ok(out)
    }

    /// Runs `cmd`; its stdout, or `SshError::Command` for a non-zero status.
    pub async fn run_checked(&self, cmd: &str) -> Result<String, SshError> {
        let out = self.run(cmd).await?;
        self.checked(cmd, out).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn checked(&self, cmd: &str, out: Output) -> Result<Output, SshError> {
        if out.status == 0 {
            return Ok(out);
        }
        Err(SshError::Command {
            host: self.r.name.clone(),
            command: cmd.to_string(),
            status: out.status,
            stderr: out.stderr_text(),
        })
    }

    /// Copies a local file to `remote` unless the host has it already
    /// (same sha256). The copy goes to `<remote>.tmp`, is checked with
    /// [`SHA256_FN`] on the host, gets `mode` (and owner root), and replaces
    /// `remote` by a rename; the file it replaces is kept as `<remote>.prev`.
    pub async fn upload(&self, local: &Path, remote: &str, mode: u32) -> Result<Upload, SshError> {
        self.upload_keeping(local, remote, mode, true).await
    }

    /// [`Session::upload`] for data whose previous copy is of no use (an
    /// image archive): nothing is kept beside it.
    pub async fn upload_data(&self, local: &Path, remote: &str, mode: u32) -> Result<Upload, SshError> {
        self.upload_keeping(local, remote, mode, false).await
    }

    async fn upload_keeping(&self, local: &Path, remote: &str, mode: u32, keep_prev: bool) -> Result<Upload, SshError> {
        // The local hash and the host's (of the installed copy) at once.
        let (sum, state) = tokio::join!(local_sha256(local), self.remote_state(remote));
        let sum = sum.map_err(|e| SshError::Local { host: self.r.name.clone(), file: local.to_path_buf(), error: e.to_string() })?;
        let state = state?;
        if let Some(s) = &state {
            if s.sha256 == sum {
                self.fix_attributes(remote, s, mode).await?;
                return Ok(Upload::Unchanged);
            }
        }
        let file = tokio::fs::File::open(local).await.map_err(|e| SshError::Local {
            host: self.r.name.clone(),
            file: local.to_path_buf(),
            error: e.to_string(),
        })?;
        self.replace(remote, file, &sum, mode, keep_prev).await?;
        Ok(Upload::Replaced)
    }

    /// Writes `bytes` to `remote` atomically with `mode`, owner root.
    /// Nothing is written when the host has the same content (its mode and
    /// owner are set if they differ).
    pub async fn write_file(&self, remote: &str, bytes: &[u8], mode: u32) -> Result<Written, SshError> {
        let sum = hex::encode(Sha256::digest(bytes));
        if let Some(s) = self.remote_state(remote).await? {
            if s.sha256 == sum {
                let fixed = self.fix_attributes(remote, &s, mode).await?;
                return Ok(if fixed { Written::Attributes } else { Written::Same });
            }
        }
        self.replace(remote, bytes, &sum, mode, false).await?;
        Ok(Written::Content)
    }

    /// The content of `remote`, `None` if it does not exist.
    pub async fn read_file(&self, remote: &str) -> Result<Option<Vec<u8>>, SshError> {
        let q = sh_quote(remote);
        let cmd = format!("if [ -e {q} ]; then exec cat -- {q}; else exit {OUR_STATUS}; fi");
        let out = self.run(&cmd).await?;
        if out.status == OUR_STATUS && out.stderr.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.checked(&format!("cat {remote}"), out)?.stdout))
    }

    /// Closes the connection (and those to its jump hosts).
    pub async fn close(self) {
        self.conn.close().await;
    }

    /// The file's sha256, mode and owner on the host; `None` if absent.
    async fn remote_state(&self, remote: &str) -> Result<Option<RemoteState>, SshError> {
        let q = sh_quote(remote);
        let cmd = format!("{SHA256_FN}if [ -f {q} ]; then stat -c '%a %u %g' -- {q} && sha256 {q}; fi");
        let out = self.run_checked(&cmd).await?;
        if out.trim().is_empty() {
            return Ok(None);
        }
        let fields: Vec<&str> = out.split_whitespace().collect();
        match fields.as_slice() {
            [mode, uid, gid, sum, ..] => Ok(Some(RemoteState {
                mode: u32::from_str_radix(mode, 8).unwrap_or(0),
                root_owned: *uid == "0" && *gid == "0",
                sha256: sum.to_string(),
            })),
            _ => Err(SshError::Remote {
                host: self.r.name.clone(),
                remote: remote.to_string(),
                message: format!("unexpected answer from stat and sha256sum (or openssl): {out:?}; does the host have coreutils?"),
            }),
        }
    }

    /// Same content: sets mode and owner if they differ. True if it did.
    async fn fix_attributes(&self, remote: &str, s: &RemoteState, mode: u32) -> Result<bool, SshError> {
        let want_root = self.as_root();
        if s.mode == mode && (s.root_owned || !want_root) {
            return Ok(false);
        }
        let q = sh_quote(remote);
        let chown = if want_root { format!(" && chown 0:0 -- {q}") } else { String::new() };
        self.run_checked(&format!("chmod {mode:o} -- {q}{chown}")).await?;
        Ok(true)
    }

    /// Streams `content` to `<remote>.tmp`, checks its sha256 on the host,
    /// sets mode and owner, optionally keeps the old file as `.prev`, renames.
    async fn replace(
        &self,
        remote: &str,
        content: impl AsyncRead + Unpin + Send,
        sum: &str,
        mode: u32,
        keep_prev: bool,
    ) -> Result<(), SshError> {
        let q = sh_quote(remote);
        let tmp = sh_quote(&format!("{remote}.tmp"));
        let chown = if self.as_root() { format!("chown 0:0 -- {tmp}; ") } else { String::new() };
        let prev = if keep_prev {
            format!("if [ -e {q} ]; then ln -f -- {q} {}; fi; ", sh_quote(&format!("{remote}.prev")))
        } else {
            String::new()
        };
        let script = format!(
            "{SHA256_FN}set -e; mkdir -p -- \"$(dirname -- {q})\"; umask 077; cat > {tmp}; \
             sum=$(sha256 {tmp}); sum=${{sum%% *}}; \
             if [ \"$sum\" != {sum} ]; then rm -f -- {tmp}; echo \"sha256 $sum\" >&2; exit {OUR_STATUS}; fi; \
             chmod {mode:o} -- {tmp}; {chown}{prev}mv -f -- {tmp} {q}"
        );
        let out = self.exec(&script, Some(content), &mut |_| {}).await?;
        if out.status == OUR_STATUS {
            return Err(SshError::Remote {
                host: self.r.name.clone(),
                remote: remote.to_string(),
                message: format!(
                    "the copy on the host has {} but {sum} was sent: the transfer was damaged; run again",
                    out.stderr_text()
                ),
            });
        }
        self.checked(&format!("write {remote}"), out).map(|_| ())
    }

    /// Whether commands run as root (directly or through sudo).
    fn as_root(&self) -> bool {
        self.r.sudo || self.r.user == "root"
    }

    /// Runs `cmd` (wrapped in sudo as needed) with `stdin` streamed to it;
    /// stdout is kept in the output and also handed to `on_stdout` as it
    /// arrives.
    async fn exec(
        &self,
        cmd: &str,
        stdin: Option<impl AsyncRead + Unpin + Send>,
        on_stdout: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<Output, SshError> {
        // Always POSIX sh, whatever the user's login shell is (sshd runs the
        // command with it).
        let sh = format!("sh -c {}", sh_quote(cmd));
        let wrapped = if self.r.sudo { format!("sudo -n -- {sh}") } else { sh };
        let lost = |e: russh::Error| SshError::Lost {
            host: self.r.name.clone(),
            what: format!("`{}`", short(cmd)),
            reason: e.to_string(),
        };
        let channel = tokio::time::timeout(self.r.timeout, self.conn.handle.channel_open_session())
            .await
            .map_err(|_| SshError::Timeout {
                host: self.r.name.clone(),
                what: "opening a channel".into(),
                after: self.r.timeout,
            })?
            .map_err(lost)?;
        channel.exec(true, wrapped.as_bytes()).await.map_err(lost)?;
        let (mut read, write) = channel.split();
        let send = async {
            if let Some(mut input) = stdin {
                // Big owned chunks, which russh cuts into full-size packets; its
                // AsyncRead path (`data`) sends a packet per 8 KiB read.
                loop {
                    let mut chunk = bytes::BytesMut::with_capacity(SEND_CHUNK);
                    while chunk.len() < SEND_CHUNK && input.read_buf(&mut chunk).await? > 0 {}
                    if chunk.is_empty() {
                        break;
                    }
                    write.data_bytes(chunk.freeze()).await?;
                }
            }
            write.eof().await
        };
        let receive = async {
            let mut out = Output { status: 0, stdout: Vec::new(), stderr: Vec::new() };
            let mut status = None;
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        on_stdout(&data);
                        out.stdout.extend_from_slice(&data);
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.stderr.extend_from_slice(format!("\n(killed by signal {signal_name:?})").as_bytes());
                        status = Some(255);
                    }
                    _ => {}
                }
            }
            (out, status)
        };
        // A command that ends before reading all its input (a write to a
        // full disk failed) closes the channel while input is still being
        // sent, and no window for more will come: its answer ends the send.
        tokio::pin!(send, receive);
        let (sent, (mut out, status)) = tokio::select! {
            sent = &mut send => (Some(sent), (&mut receive).await),
            received = &mut receive => (None, received),
        };
        let Some(status) = status else {
            let reason = match sent {
                Some(Err(e)) => e.to_string(),
                _ => "no exit status (the host stopped answering, or sshd ended)".into(),
            };
            return Err(SshError::Lost { host: self.r.name.clone(), what: format!("`{}`", short(cmd)), reason });
        };
        out.status = status;
        if self.r.sudo {
            self.sudo_problem(&out)?;
        }
        Ok(out)
    }

    /// sudo's own failures, told apart from the command's.
    fn sudo_problem(&self, out: &Output) -> Result<(), SshError> {
        let err = out.stderr_text();
        // sudo may warn first (e.g. "unable to resolve host"): look at each line.
        let said = |what: &str| err.lines().find(|l| l.starts_with("sudo:") && l.contains(what));
        let (host, user) = (self.r.name.clone(), self.r.user.clone());
        if out.status == 1 && said("password is required").is_some() {
            return Err(SshError::SudoPassword { host, user });
        }
        let missing = (out.status == 127).then(|| err.lines().find(|l| l.contains("sudo") && l.contains("not found"))).flatten();
        let refused = if out.status == 1 { said("sudoers") } else { None };
        if let Some(line) = missing.or(refused) {
            return Err(SshError::SudoUnavailable { host, user, stderr: line.to_string() });
        }
        Ok(())
    }
}

struct RemoteState {
    mode: u32,
    root_owned: bool,
    sha256: String,
}

/// `'…'` for sh, with single quotes escaped.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A command shortened for messages about the connection.
fn short(cmd: &str) -> String {
    let line = cmd.lines().next().unwrap_or("");
    match line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None if cmd.contains('\n') => format!("{line}…"),
        None => line.to_string(),
    }
}

/// The sha256 of a local file, computed once per file as it is now (path,
/// size, mtime) in this process, also when asked for several hosts at once:
/// `k8s up` sends one binary to every host.
async fn local_sha256(path: &Path) -> std::io::Result<String> {
    type Key = (std::path::PathBuf, u64, std::time::SystemTime);
    type Sum = std::sync::Arc<std::sync::OnceLock<Result<String, String>>>;
    static KNOWN: std::sync::Mutex<Vec<(Key, Sum)>> = std::sync::Mutex::new(Vec::new());
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path)?;
        let meta = f.metadata()?;
        let key = (path, meta.len(), meta.modified()?);
        let sum = {
            let mut known = KNOWN.lock().unwrap();
            match known.iter().find(|(k, _)| *k == key) {
                Some((_, sum)) => sum.clone(),
                None => {
                    let sum = Sum::default();
                    known.push((key, sum.clone()));
                    sum
                }
            }
        };
        // The first caller hashes; the others wait for its result.
        sum.get_or_init(|| {
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h).map(|_| hex::encode(h.finalize())).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(std::io::Error::other)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/etc/k8s/config.yaml"), "'/etc/k8s/config.yaml'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(short("echo hi"), "echo hi");
        assert_eq!(short("a\nb"), "a…");
        assert!(short(&"é".repeat(70)).ends_with('…'));
    }

    /// Hosts with and without OpenSSL give the same digest first: with it
    /// (where this machine has one) and with a PATH holding only coreutils.
    #[test]
    fn sha256_fn_with_and_without_openssl() {
        use crate::fsutil::which;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("it's a file");
        std::fs::write(&file, b"hello\n").unwrap();
        let want = hex::encode(Sha256::digest(b"hello\n"));
        let coreutils_only = dir.path().join("bin");
        std::fs::create_dir(&coreutils_only).unwrap();
        let sha256sum = which("sha256sum").expect("coreutils' sha256sum on PATH");
        std::os::unix::fs::symlink(sha256sum, coreutils_only.join("sha256sum")).unwrap();
        let run = |path: &std::ffi::OsStr| {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("{SHA256_FN}sha256 {}", sh_quote(file.to_str().unwrap())))
                .env("PATH", path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let full = run(&std::env::var_os("PATH").unwrap());
        assert_eq!(full.split_whitespace().next(), Some(want.as_str()), "{full}");
        if which("openssl").is_some() {
            assert!(full.contains('*'), "openssl's `-r` answer expected: {full}");
        }
        let plain = run(coreutils_only.as_os_str());
        assert_eq!(plain.split_whitespace().next(), Some(want.as_str()), "{plain}");
        assert!(!plain.contains('*'), "sha256sum's answer expected: {plain}");
    }
}
