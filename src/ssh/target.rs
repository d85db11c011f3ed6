//! A host to connect to, and how its settings combine with `~/.ssh/config`:
//! a value written in the inventory wins, then the config's, then the
//! defaults (port 22, user root; keys: the agent and `~/.ssh/id_*`).

use std::path::PathBuf;
use std::time::Duration;

use super::config::{self, expand_tokens, SshConfig};
use super::SshError;

/// OpenSSH's defaults (the inventory's too).
pub const DEFAULT_PORT: u16 = 22;
pub const DEFAULT_USER: &str = "root";
/// Jump chains longer than this are refused (a loop in ProxyJump).
const MAX_JUMPS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyChecking {
    /// The host key must already be in known_hosts.
    Strict,
    /// An unknown host's key is recorded; a changed key is refused.
    AcceptNew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sudo {
    /// Through sudo when the user is not root.
    Auto,
    Always,
    Never,
}

/// A host to connect to, as the inventory (or a caller) gives it.
#[derive(Debug, Clone)]
pub struct Target {
    /// For messages, e.g. "cp-1 (10.0.0.11)".
    pub name: String,
    /// An IP, a DNS name or a `~/.ssh/config` Host alias.
    pub address: String,
    /// `None`: the config's Port, else 22.
    pub port: Option<u16>,
    /// `None`: the config's User, else root.
    pub user: Option<String>,
    /// `None`: the config's IdentityFile, then ssh-agent, then `~/.ssh/id_{ed25519,ecdsa,rsa}`.
    pub identity_file: Option<PathBuf>,
    /// A jump host (like `ssh -J`); `None`: the config's ProxyJump if any.
    pub bastion: Option<Box<Target>>,
    /// Connect directly: no jump host, whatever the config says.
    pub direct: bool,
    pub host_key_checking: HostKeyChecking,
    pub known_hosts: PathBuf,
    pub sudo: Sudo,
    /// Connect timeout, auth timeout, and how long a silent host may go
    /// without answering keepalives before its commands fail.
    pub timeout: Duration,
    /// `None`: `$HOME/.ssh/config` if it exists.
    pub ssh_config: Option<PathBuf>,
}

impl Target {
    /// The config file that applies: the named one, else `~/.ssh/config`.
    fn config_path(&self) -> PathBuf {
        self.ssh_config.clone().unwrap_or_else(|| config::home().join(".ssh/config"))
    }

    /// Everything settled: the config applied, defaults filled in.
    pub(crate) fn resolve(&self) -> Result<Resolved, SshError> {
        let path = self.config_path();
        let cfg = SshConfig::load(&path).map_err(|e| SshError::Config {
            host: self.name.clone(),
            message: format!("{e}; fix ~/.ssh/config (or the file named in the inventory)"),
        })?;
        self.resolve_with(&cfg, 0, None)
    }

    /// `fallback_user`: the user when neither the target nor the config
    /// names one (a bastion's default is its host's user).
    fn resolve_with(&self, cfg: &SshConfig, depth: usize, fallback_user: Option<&str>) -> Result<Resolved, SshError> {
        let config_error = |message: String| SshError::Config { host: self.name.clone(), message };
        if depth > MAX_JUMPS {
            return Err(config_error(format!("more than {MAX_JUMPS} jump hosts in a chain; is there a ProxyJump loop?")));
        }
        let hc = cfg.lookup(&self.address);
        let host = hc.hostname.as_deref().map(|h| expand_tokens(h, &self.address, "", 0)).unwrap_or(self.address.clone());
        let port = match (self.port, hc.port, &hc.port_at) {
            (Some(p), _, _) => p,
            (None, Some(p), _) => p,
            (None, None, Some(at)) => return Err(config_error(format!("{at}: Port is not a port number from 1 to 65535"))),
            (None, None, None) => DEFAULT_PORT,
        };
        let user = (self.user.clone().or(hc.user.clone()))
            .unwrap_or_else(|| fallback_user.unwrap_or(DEFAULT_USER).to_string());
        let identity_files: Vec<PathBuf> = match &self.identity_file {
            Some(f) => vec![f.clone()],
            None => hc.identity_files.iter().map(|f| PathBuf::from(expand_tokens(f, &host, &user, port))).collect(),
        };
        let agent = match hc.identity_agent.as_deref() {
            Some(a) if a.eq_ignore_ascii_case("none") => None,
            Some(a) if a != "SSH_AUTH_SOCK" => Some(PathBuf::from(expand_tokens(a, &host, &user, port))),
            _ => std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from),
        };
        let agent = if hc.identities_only == Some(true) && !identity_files.is_empty() { None } else { agent };
        let (jump, jump_user) = match &self.bastion {
            _ if self.direct => (None, None),
            Some(b) => (Some(b.as_ref().clone()), Some(user.as_str())),
            None => (self.jump_from_config(&hc)?, None),
        };
        if jump.is_none() && !self.direct {
            if let Some(at) = &hc.proxy_command {
                return Err(config_error(format!(
                    "{at}: ProxyCommand is not supported by k8s up; use ProxyJump (or a bastion in the inventory)"
                )));
            }
        }
        let jump = match jump {
            Some(j) => Some(Box::new(j.resolve_with(cfg, depth + 1, jump_user)?)),
            None => None,
        };
        let as_root = match self.sudo {
            Sudo::Always => true,
            Sudo::Never => false,
            Sudo::Auto => user != "root",
        };
        Ok(Resolved {
            name: self.name.clone(),
            host,
            port,
            user,
            default_keys: identity_files.is_empty(),
            identity_files,
            agent,
            jump,
            host_key_checking: self.host_key_checking,
            known_hosts: self.known_hosts.clone(),
            sudo: as_root,
            timeout: self.timeout,
        })
    }

    /// The config's ProxyJump as a chain of targets (last hop nearest the host).
    fn jump_from_config(&self, hc: &config::HostConfig) -> Result<Option<Target>, SshError> {
        let Some(value) = hc.proxy_jump.as_deref() else { return Ok(None) };
        let hops = config::parse_proxy_jump(value)
            .map_err(|m| SshError::Config { host: self.name.clone(), message: format!("~/.ssh/config: {m}") })?;
        let Some(hops) = hops else { return Ok(None) };
        let mut chain: Option<Box<Target>> = None;
        for hop in hops {
            chain = Some(Box::new(Target {
                name: format!("jump host {} (for {})", hop.host, self.name),
                address: hop.host,
                port: hop.port,
                user: hop.user,
                identity_file: None,
                // Each hop goes through the one before it.
                bastion: chain,
                direct: false,
                host_key_checking: self.host_key_checking,
                known_hosts: self.known_hosts.clone(),
                sudo: Sudo::Never,
                timeout: self.timeout,
                ssh_config: self.ssh_config.clone(),
            }));
        }
        Ok(chain.map(|b| *b))
    }
}

/// A target with every setting decided.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub name: String,
    /// Where to connect (HostName applied); known_hosts names it so.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Key files to offer, in order (the inventory's or the config's).
    pub identity_files: Vec<PathBuf>,
    /// No file was named: the agent's keys, then `~/.ssh/id_*`.
    pub default_keys: bool,
    /// The agent socket to use, if any.
    pub agent: Option<PathBuf>,
    pub jump: Option<Box<Resolved>>,
    pub host_key_checking: HostKeyChecking,
    pub known_hosts: PathBuf,
    /// Commands go through `sudo -n`.
    pub sudo: bool,
    pub timeout: Duration,
}

impl Resolved {
    /// `host:port` (IPv6 in brackets) for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The default key files, in OpenSSH's order.
    pub fn default_key_files() -> Vec<PathBuf> {
        let dir = config::home().join(".ssh");
        ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|f| dir.join(f)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(address: &str, cfg: &std::path::Path) -> Target {
        Target {
            name: format!("t ({address})"),
            address: address.into(),
            port: None,
            user: None,
            identity_file: None,
            bastion: None,
            direct: false,
            host_key_checking: HostKeyChecking::Strict,
            known_hosts: "/kh".into(),
            sudo: Sudo::Auto,
            timeout: Duration::from_secs(5),
            ssh_config: Some(cfg.to_path_buf()),
        }
    }

    #[test]
    fn precedence_written_over_config_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "Host cp-1\n  HostName 10.0.0.11\n  User debian\n  Port 2222\n  IdentityFile /keys/%h\n  ProxyJump ops@jump:2200\nHost jump\n  HostName 10.0.0.1\n",
        )
        .unwrap();
        let r = target("cp-1", &cfg).resolve().unwrap();
        assert_eq!((r.host.as_str(), r.port, r.user.as_str()), ("10.0.0.11", 2222, "debian"));
        assert_eq!(r.identity_files, [PathBuf::from("/keys/10.0.0.11")]);
        assert!(r.sudo, "debian is not root");
        let j = r.jump.as_ref().unwrap();
        assert_eq!((j.host.as_str(), j.port, j.user.as_str()), ("10.0.0.1", 2200, "ops"));
        assert!(!j.sudo && j.jump.is_none());

        let mut t = target("cp-1", &cfg);
        t.port = Some(22);
        t.user = Some("root".into());
        t.identity_file = Some("/mine".into());
        let r = t.resolve().unwrap();
        assert_eq!((r.port, r.user.as_str(), !r.sudo), (22, "root", true));
        assert_eq!(r.identity_files, [PathBuf::from("/mine")]);

        let r = target("10.9.9.9", &cfg).resolve().unwrap();
        assert_eq!((r.host.as_str(), r.port, r.user.as_str(), r.default_keys), ("10.9.9.9", 22, "root", true));
        assert!(r.jump.is_none());
    }

    #[test]
    fn jump_chains_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, "Host h\n  ProxyJump a,b:2\nHost loop\n  ProxyJump loop\nHost pc\n  ProxyCommand nc %h %p\n").unwrap();
        let r = target("h", &cfg).resolve().unwrap();
        let b = r.jump.as_ref().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("b", 2));
        assert_eq!(b.jump.as_ref().unwrap().host, "a", "the first hop is connected first");
        let e = target("loop", &cfg).resolve().unwrap_err().to_string();
        assert!(e.contains("ProxyJump loop"), "{e}");
        let e = target("pc", &cfg).resolve().unwrap_err().to_string();
        assert!(e.contains(":6: ProxyCommand is not supported"), "{e}");
        let direct = Target { direct: true, ..target("h", &cfg) };
        assert!(direct.resolve().unwrap().jump.is_none(), "bastion: none wins over ProxyJump");
    }
}
