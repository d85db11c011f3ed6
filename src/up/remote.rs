//! One SSH session per host, with errors that name the host, and the few
//! remote operations `up` and `reset -i` share.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use crate::inventory::{Host, Inventory};
use crate::ssh;

/// How long `systemctl start`/`restart` of a unit may take (the units have
/// no start timeout of their own: a first start unpacks the components and
/// waits for the node to be Ready).
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Remote {
    /// `name (address)` or the address: for messages.
    pub who: String,
    session: ssh::Session,
}

/// The SSH target of every host, in inventory order.
pub fn targets(inv: &Inventory) -> anyhow::Result<Vec<ssh::Target>> {
    inv.hosts.iter().map(|h| target(inv, h)).collect()
}

pub fn target(inv: &Inventory, host: &Host) -> anyhow::Result<ssh::Target> {
    host.ssh_settings(&inv.ssh).target(&who(host)).map_err(|e| anyhow::anyhow!("{}: {e}", who(host)))
}

pub fn who(host: &Host) -> String {
    match &host.name {
        Some(n) => format!("{n} ({})", host.address),
        None => host.address.clone(),
    }
}

/// An argument for the remote shell, quoted only when it needs to be (so
/// commands in messages stay readable).
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b)) {
        return s.to_string();
    }
    ssh::sh_quote(s)
}

impl Remote {
    pub async fn connect(who: String, target: &ssh::Target, keys: &ssh::Keys) -> anyhow::Result<Remote> {
        let session = ssh::Session::connect(target, keys).await?;
        Ok(Remote { who, session })
    }

    /// Runs `cmd` as root; its stdout, or an error with the host, the
    /// command and its stderr.
    pub async fn run(&self, cmd: &str) -> anyhow::Result<String> {
        Ok(self.session.run_checked(cmd).await?)
    }

    /// Runs `cmd` as root, handing each line of its stdout to `on_line` as
    /// it comes; an error with the host, the command and its stderr.
    pub async fn run_lines(&self, cmd: &str, on_line: &mut (dyn FnMut(&str) + Send)) -> anyhow::Result<()> {
        let out = self.session.run_lines(cmd, on_line).await?;
        if out.status != 0 {
            bail!("{}: {}", self.who, out.stderr_text().trim_start_matches("Error: "));
        }
        Ok(())
    }

    pub async fn read(&self, path: &str) -> anyhow::Result<Option<String>> {
        let bytes = self.session.read_file(path).await?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Writes `path` (atomically) unless it holds `data` already; whether it changed.
    /// Writes `data` to `path` with `mode` (see [`ssh::Session::write_file`]);
    /// whether the content changed: a mode set on the same content is no
    /// reason to restart anything.
    pub async fn write(&self, path: &str, data: &[u8], mode: u32) -> anyhow::Result<bool> {
        Ok(self.session.write_file(path, data, mode).await? == ssh::Written::Content)
    }

    /// Uploads `local` to `remote` unless the sha256 matches; whether it was replaced.
    pub async fn upload(&self, local: &Path, remote: &str) -> anyhow::Result<bool> {
        let up = self.session.upload(local, remote, 0o755).await?;
        Ok(matches!(up, ssh::Upload::Replaced))
    }

    /// Uploads a data file (mode 0600, no previous copy kept); true when it
    /// was replaced.
    pub async fn upload_data(&self, local: &Path, remote: &str) -> anyhow::Result<bool> {
        let up = self.session.upload_data(local, remote, 0o600).await?;
        Ok(matches!(up, ssh::Upload::Replaced))
    }

    /// Uploads a file only root may read: into a 0700 directory of its own,
    /// so not even the upload's temporary file is readable by others.
    pub async fn upload_private(&self, local: &Path, dir: &str, name: &str) -> anyhow::Result<String> {
        self.run(&format!("mkdir -p {dir} && chmod 0700 {dir}")).await?;
        let remote = format!("{dir}/{name}");
        self.session.upload(local, &remote, 0o600).await?;
        Ok(remote)
    }

    /// `k8s kubectl ARGS` on this host (a server), as root.
    pub async fn kubectl(&self, args: &[String]) -> anyhow::Result<String> {
        let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
        self.run(&format!("/usr/local/bin/k8s kubectl {}", args.join(" "))).await
    }

    /// Starts (`enable --now`) or restarts `unit`, bounded by
    /// [`START_TIMEOUT`]; on failure the error ends with the unit's journal.
    pub async fn start(&self, unit: &str, restart: bool) -> anyhow::Result<()> {
        let secs = START_TIMEOUT.as_secs();
        let cmd = if restart {
            format!("systemctl enable {unit} 2>&1 && timeout {secs} systemctl restart {unit}")
        } else {
            format!("timeout {secs} systemctl enable --now {unit}")
        };
        let out = self.session.run(&cmd).await?;
        if out.status == 0 {
            return Ok(());
        }
        // 124: `timeout` ended systemctl; the start goes on on the host.
        let why = if out.status == 124 {
            format!("did not report ready within {secs} s")
        } else {
            format!("failed: {}", last_lines(&format!("{}{}", text(&out.stdout), text(&out.stderr)), 3))
        };
        let journal = self.journal(unit, 20).await;
        bail!("{}: {unit} {why}\nlast lines of `journalctl -u {unit}`:\n{journal}", self.who)
    }

    pub async fn journal(&self, unit: &str, lines: usize) -> String {
        match self.session.run(&format!("journalctl -u {unit} -n {lines} --no-pager -o cat")).await {
            Ok(out) if !out.stdout.is_empty() => indent(&text(&out.stdout)),
            Ok(_) => "  (empty)".into(),
            Err(e) => format!("  (cannot read it: {e:#})"),
        }
    }

    pub async fn close(self) {
        self.session.close().await;
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The last lines of systemctl's answer that say something (not the
/// symlinks `enable` made, nor its pointers to `systemctl status`).
fn last_lines(s: &str, n: usize) -> String {
    let noise = |l: &str| l.trim().is_empty() || l.starts_with("Created symlink") || l.starts_with("See \"systemctl status");
    let lines: Vec<&str> = s.lines().filter(|l| !noise(l)).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
