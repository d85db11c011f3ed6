//! Private keys, loaded once for all connections. Encrypted keys are
//! decrypted up front (passphrase from `K8S_SSH_PASSPHRASE` or asked once
//! per file on the terminal), so no prompt appears once progress is shown.
//! An encrypted key whose public half the ssh-agent holds is left to the
//! agent and never asked for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};

use super::target::Resolved;
use super::{SshError, Target};

/// The environment variable that holds the passphrase of encrypted keys.
pub const PASSPHRASE_ENV: &str = "K8S_SSH_PASSPHRASE";
const PROMPT_TRIES: usize = 3;

/// Decrypted private keys, shared by every connection.
#[derive(Default)]
pub struct Keys {
    loaded: HashMap<PathBuf, Arc<PrivateKey>>,
    /// Encrypted files that are used through the agent instead, with
    /// their public keys.
    in_agent: HashMap<PathBuf, PublicKey>,
    /// Default key files that exist but are not used, and why.
    skipped: BTreeMap<PathBuf, String>,
}

/// One key file some targets need.
struct Wanted {
    hosts: Vec<String>,
    /// Named in the inventory or the config (else one of `~/.ssh/id_*`).
    named: bool,
}

impl Keys {
    /// Loads every key file the targets (and their jump hosts) need.
    pub fn prepare(targets: &[&Target]) -> Result<Keys, SshError> {
        let mut wanted: BTreeMap<PathBuf, Wanted> = BTreeMap::new();
        let mut agents: BTreeSet<PathBuf> = BTreeSet::new();
        for t in targets {
            let mut hop = Some(t.resolve()?);
            while let Some(r) = hop {
                note_wanted(&r, &mut wanted);
                agents.extend(r.agent.clone());
                hop = r.jump.map(|j| *j);
            }
        }
        let agent_keys: Vec<PublicKey> = agents.iter().flat_map(|sock| agent_identities(sock).unwrap_or_default()).collect();
        let mut keys = Keys::default();
        for (path, w) in wanted {
            keys.load(&path, &w, &agent_keys)?;
        }
        Ok(keys)
    }

    fn load(&mut self, path: &Path, w: &Wanted, agent_keys: &[PublicKey]) -> Result<(), SshError> {
        let hosts = w.hosts.join(", ");
        let error = |message: String| SshError::KeyFile { host: hosts.clone(), file: path.to_path_buf(), message };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !w.named => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(error("the identity file does not exist; fix identity-file in the inventory (or IdentityFile in ~/.ssh/config)".into()))
            }
            Err(e) => return Err(error(format!("cannot read the identity file: {e}"))),
        };
        match russh::keys::decode_secret_key(&text, None) {
            Ok(k) => {
                self.loaded.insert(path.to_path_buf(), Arc::new(k));
                return Ok(());
            }
            Err(russh::keys::Error::KeyIsEncrypted) => {}
            Err(e) if w.named => return Err(error(format!("not a private key we can read ({e}); name an ed25519, ecdsa or rsa private key"))),
            Err(e) => {
                self.skipped.insert(path.to_path_buf(), format!("unreadable: {e}"));
                return Ok(());
            }
        }
        if let Some(public) = public_half(path, &text) {
            if agent_keys.iter().any(|k| k.key_data() == public.key_data()) {
                self.in_agent.insert(path.to_path_buf(), public);
                return Ok(());
            }
        }
        if !w.named && !agent_keys.is_empty() {
            // Like ssh, do not ask for a default key while the agent may do.
            let why = format!("encrypted and not in ssh-agent; add it with `ssh-add {}`", path.display());
            self.skipped.insert(path.to_path_buf(), why);
            return Ok(());
        }
        let key = decrypt(path, &text, &hosts).map_err(error)?;
        self.loaded.insert(path.to_path_buf(), Arc::new(key));
        Ok(())
    }

    /// The decrypted key of a file, if it was prepared.
    pub(crate) fn get(&self, path: &Path) -> Option<Arc<PrivateKey>> {
        self.loaded.get(path).cloned()
    }

    /// The public key of an encrypted file that is used through the agent.
    pub(crate) fn in_agent(&self, path: &Path) -> Option<&PublicKey> {
        self.in_agent.get(path)
    }

    pub(crate) fn skipped(&self, path: &Path) -> Option<&str> {
        self.skipped.get(path).map(String::as_str)
    }
}

fn note_wanted(r: &Resolved, wanted: &mut BTreeMap<PathBuf, Wanted>) {
    let named = !r.default_keys;
    let files = if named { r.identity_files.clone() } else { Resolved::default_key_files() };
    for f in files {
        let w = wanted.entry(f).or_insert(Wanted { hosts: vec![], named });
        w.named |= named;
        if !w.hosts.contains(&r.name) {
            w.hosts.push(r.name.clone());
        }
    }
}

/// The public key of an encrypted file: OpenSSH's format keeps it in the
/// clear; older formats have it in `<file>.pub`.
fn public_half(path: &Path, text: &str) -> Option<PublicKey> {
    if let Ok(k) = PrivateKey::from_openssh(text) {
        return Some(k.public_key().clone());
    }
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    russh::keys::load_public_key(PathBuf::from(pub_path)).ok()
}

fn decrypt(path: &Path, text: &str, hosts: &str) -> Result<PrivateKey, String> {
    if let Some(pass) = std::env::var_os(PASSPHRASE_ENV) {
        let pass = pass.to_string_lossy().into_owned();
        return russh::keys::decode_secret_key(text, Some(&pass))
            .map_err(|_| format!("{PASSPHRASE_ENV} does not decrypt this key; set the right passphrase, or add the key to ssh-agent (ssh-add)"));
    }
    let no_tty = |e: std::io::Error| {
        format!("the key is encrypted and its passphrase cannot be asked ({e}); run from a terminal, set {PASSPHRASE_ENV}, or add the key to ssh-agent (ssh-add {})", path.display())
    };
    for _ in 0..PROMPT_TRIES {
        let pass = rpassword::prompt_password(format!("Passphrase for {} (for {hosts}): ", path.display())).map_err(no_tty)?;
        match russh::keys::decode_secret_key(text, Some(&pass)) {
            Ok(k) => return Ok(k),
            Err(_) => {
                if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
                    let _ = writeln!(tty, "Wrong passphrase, try again.");
                }
            }
        }
    }
    Err(format!("wrong passphrase {PROMPT_TRIES} times; run again, or add the key to ssh-agent (ssh-add {})", path.display()))
}

/// The agent's public keys, asked over its socket (blocking, bounded):
/// SSH2_AGENTC_REQUEST_IDENTITIES (11) → SSH2_AGENT_IDENTITIES_ANSWER (12).
pub(crate) fn agent_identities(sock: &Path) -> std::io::Result<Vec<PublicKey>> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&[0, 0, 0, 1, 11])?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 256 * 1024 {
        return Err(std::io::Error::other("agent answer too large"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let bad = || std::io::Error::other("unexpected answer from ssh-agent");
    let mut rest = body.strip_prefix(&[12u8]).ok_or_else(bad)?;
    let count = take_u32(&mut rest).ok_or_else(bad)?;
    let mut keys = Vec::new();
    for _ in 0..count {
        let blob = take_string(&mut rest).ok_or_else(bad)?;
        take_string(&mut rest).ok_or_else(bad)?;
        if let Ok(k) = PublicKey::from_bytes(blob) {
            keys.push(k);
        }
    }
    Ok(keys)
}

fn take_u32(buf: &mut &[u8]) -> Option<u32> {
    let (head, tail) = buf.split_first_chunk::<4>()?;
    *buf = tail;
    Some(u32::from_be_bytes(*head))
}

fn take_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = take_u32(buf)? as usize;
    if buf.len() < n {
        return None;
    }
    let (s, tail) = buf.split_at(n);
    *buf = tail;
    Some(s)
}
