//! Opening an authenticated SSH connection: TCP (or a direct-tcpip channel
//! through a jump host), the handshake with the host key checked against
//! known_hosts, then public-key authentication (key files, the agent).
//! Transient failures (refused, reset, timed out) are retried with backoff;
//! host-key and authentication failures never are.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::MethodKind;

use super::error::secs;
use super::keys::Keys;
use super::known_hosts::{self, Verdict};
use super::target::{HostKeyChecking, Resolved};
use super::SshError;

/// Retries after the first attempt.
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// An authenticated connection, and the jump host's it runs over.
pub(crate) struct Connection {
    pub handle: Handle<Client>,
    via: Option<Box<Connection>>,
}

impl Connection {
    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
        if let Some(via) = self.via {
            Box::pin(via.close()).await;
        }
    }
}

/// Opens `r` (and its jump hosts first).
pub(crate) fn open<'a>(r: &'a Resolved, keys: &'a Keys) -> Pin<Box<dyn Future<Output = Result<Connection, SshError>> + Send + 'a>> {
    Box::pin(async move {
        let via = match &r.jump {
            Some(j) => Some(Box::new(open(j, keys).await?)),
            None => None,
        };
        let mut handle = with_retries(r, via.as_deref()).await?;
        authenticate(&mut handle, r, keys).await?;
        Ok(Connection { handle, via })
    })
}

enum Failure {
    /// Worth another try.
    Transient(String),
    /// Why the host cannot be reached, which retrying would not change.
    Final(String),
    Fatal(SshError),
}

async fn with_retries(r: &Resolved, via: Option<&Connection>) -> Result<Handle<Client>, SshError> {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 0..=RETRIES {
        match handshake(r, via).await {
            Ok(h) => return Ok(h),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Final(reason)) => return Err(unreachable(r, via, reason)),
            Err(Failure::Transient(reason)) if attempt == RETRIES => {
                let tries = RETRIES + 1;
                return Err(unreachable(r, via, format!("{reason} ({tries} attempts)")));
            }
            Err(Failure::Transient(reason)) => {
                tracing::debug!("{}: {reason}; retrying in {}", r.name, secs(&backoff));
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    unreachable!("the last attempt returns")
}

fn unreachable(r: &Resolved, via: Option<&Connection>, reason: String) -> SshError {
    let addr = match via {
        Some(_) => format!("{} (through its jump host)", r.addr()),
        None => r.addr(),
    };
    SshError::Unreachable { host: r.name.clone(), addr, reason }
}

fn client_config(r: &Resolved) -> client::Config {
    let mut preferred = russh::Preferred::default();
    preferred.key = known_types_first(&known_hosts::known_algorithms(&r.known_hosts, &r.host, r.port)).into();
    preferred.cipher = aes_gcm_first().into();
    client::Config {
        // A host that answers no keepalive for about `timeout` is gone.
        keepalive_interval: Some((r.timeout / 3).max(Duration::from_secs(1))),
        keepalive_max: 3,
        nodelay: true,
        preferred,
        ..Default::default()
    }
}

/// russh's ciphers with AES-256-GCM first: with the CPU's AES instructions it
/// moves a binary faster than ChaCha20-Poly1305, russh's first choice.
fn aes_gcm_first() -> Vec<russh::cipher::Name> {
    let mut all = russh::Preferred::DEFAULT.cipher.to_vec();
    all.sort_by_key(|c| *c != russh::cipher::AES_256_GCM);
    all
}

/// Our host key algorithms with the ones known_hosts has for the host first.
fn known_types_first(known: &[Algorithm]) -> Vec<Algorithm> {
    let all = russh::Preferred::DEFAULT.key.to_vec();
    let is_known = |a: &Algorithm| known.iter().any(|k| k == a || (k.clone().is_rsa() && a.clone().is_rsa()));
    let (mut first, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(is_known);
    first.extend(rest);
    first
}

async fn handshake(r: &Resolved, via: Option<&Connection>) -> Result<Handle<Client>, Failure> {
    let config = Arc::new(client_config(r));
    let handler = Client { r: r.clone() };
    let attempt = async {
        match via {
            None => {
                let tcp = tokio::net::TcpStream::connect((r.host.as_str(), r.port)).await.map_err(io_failure)?;
                // Commands are small request/answer exchanges that Nagle's
                // algorithm would hold back waiting for ACKs.
                let _ = tcp.set_nodelay(true);
                client::connect_stream(config, tcp, handler).await.map_err(handshake_failure)
            }
            Some(jump) => {
                let ch = jump
                    .handle
                    .channel_open_direct_tcpip(r.host.as_str(), u32::from(r.port), "127.0.0.1", 0)
                    .await
                    .map_err(|e| match e {
                        russh::Error::ChannelOpenFailure(f) => {
                            Failure::Transient(format!("the jump host could not connect to it ({f:?})"))
                        }
                        e => Failure::Transient(format!("the jump host's connection failed: {e}")),
                    })?;
                client::connect_stream(config, ch.into_stream(), handler).await.map_err(handshake_failure)
            }
        }
    };
    match tokio::time::timeout(r.timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Transient(format!("timed out after {}", secs(&r.timeout)))),
    }
}

fn io_failure(e: std::io::Error) -> Failure {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Failure::Transient("connection refused".into()),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            Failure::Transient(format!("connection closed during the handshake ({e})"))
        }
        TimedOut => Failure::Transient("timed out".into()),
        // Name resolution and the like: no OS error code, no point retrying.
        _ if e.raw_os_error().is_none() => Failure::Final(e.to_string()),
        _ => Failure::Transient(e.to_string()),
    }
}

fn handshake_failure(e: HandshakeError) -> Failure {
    match e {
        HandshakeError::HostKey(e) => Failure::Fatal(e),
        HandshakeError::Ssh(russh::Error::IO(e)) => io_failure(e),
        HandshakeError::Ssh(e @ (russh::Error::Disconnect | russh::Error::HUP)) => {
            Failure::Transient(format!("the server closed the connection during the handshake ({e})"))
        }
        HandshakeError::Ssh(e) => Failure::Final(format!("the SSH handshake failed: {e}")),
    }
}

/// The handler: checks the host key; nothing else is expected from servers.
pub(crate) struct Client {
    r: Resolved,
}

#[derive(Debug)]
pub(crate) enum HandshakeError {
    Ssh(russh::Error),
    HostKey(SshError),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Ssh(e)
    }
}

impl client::Handler for Client {
    type Error = HandshakeError;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, HandshakeError> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            // We never offer certificate host key types.
            return Ok(false);
        };
        let (r, key) = (self.r.clone(), key.clone());
        tokio::task::spawn_blocking(move || check_host_key(&r, &key))
            .await
            .map_err(|e| HandshakeError::HostKey(SshError::Lost { host: self.r.name.clone(), what: "the host key check".into(), reason: e.to_string() }))?
            .map_err(HandshakeError::HostKey)?;
        Ok(true)
    }
}

fn check_host_key(r: &Resolved, key: &PublicKey) -> Result<(), SshError> {
    let file = &r.known_hosts;
    let io_error = |e: std::io::Error| SshError::KnownHosts { host: r.name.clone(), file: file.clone(), error: e.to_string() };
    let mut verdict = known_hosts::check(file, &r.host, r.port, key).map_err(io_error)?;
    if verdict == Verdict::Unknown && r.host_key_checking == HostKeyChecking::AcceptNew {
        verdict = known_hosts::learn(file, &r.host, r.port, key).map_err(io_error)?;
        if verdict == Verdict::Known {
            tracing::info!("{}: recorded its host key {} in {}", r.name, fingerprint(key), file.display());
        }
    }
    let entry = known_hosts::host_entry(&r.host, r.port);
    match verdict {
        Verdict::Known => Ok(()),
        Verdict::Unknown => Err(SshError::HostKeyUnknown {
            host: r.name.clone(),
            entry,
            address: r.host.clone(),
            port_arg: if r.port == 22 { String::new() } else { format!(" -p {}", r.port) },
            fingerprint: fingerprint(key),
            file: file.clone(),
        }),
        Verdict::Changed { line, known } => Err(SshError::HostKeyChanged {
            host: r.name.clone(),
            entry,
            file: file.clone(),
            line,
            known,
            offered: fingerprint(key),
        }),
        Verdict::Revoked { line } => Err(SshError::HostKeyRevoked {
            host: r.name.clone(),
            entry,
            fingerprint: fingerprint(key),
            file: file.clone(),
            line,
        }),
    }
}

fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), key.fingerprint(HashAlg::Sha256))
}

/// What authentication has tried, for the failure message.
struct Attempts {
    tried: Vec<String>,
    /// The server stopped listening (MaxAuthTries) or refused publickey.
    stop: Option<String>,
}

async fn authenticate(h: &mut Handle<Client>, r: &Resolved, keys: &Keys) -> Result<(), SshError> {
    let rsa_hash = match h.best_supported_rsa_hash().await {
        Ok(Some(alg)) => alg,
        _ => Some(HashAlg::Sha256),
    };
    let mut a = Attempts { tried: Vec::new(), stop: None };
    // Named encrypted files whose keys the agent holds: its first tries.
    let mut agent_first: Vec<(std::path::PathBuf, PublicKey)> = Vec::new();
    for f in &r.identity_files {
        if let Some(public) = keys.in_agent(f) {
            agent_first.push((f.clone(), public.clone()));
            continue;
        }
        let key = match keys.get(f) {
            Some(k) => k,
            None => Arc::new(load_unprepared(f).map_err(|message| SshError::KeyFile {
                host: r.name.clone(),
                file: f.clone(),
                message,
            })?),
        };
        if try_key(h, r, &key, rsa_hash, &format!("key file {}", f.display()), &mut a).await? {
            return Ok(());
        }
    }
    if let Some(sock) = &r.agent {
        let first: Vec<&PublicKey> = agent_first.iter().map(|(_, k)| k).collect();
        if a.stop.is_none() && try_agent(h, r, sock, rsa_hash, &first, &mut a).await? {
            return Ok(());
        }
    }
    if r.default_keys {
        for f in Resolved::default_key_files() {
            match (keys.get(&f), keys.skipped(&f)) {
                (Some(key), _) if a.stop.is_none() => {
                    if try_key(h, r, &key, rsa_hash, &format!("key file {}", f.display()), &mut a).await? {
                        return Ok(());
                    }
                }
                (None, Some(why)) => a.tried.push(format!("not {} ({why})", f.display())),
                _ => {}
            }
        }
    }
    let agent_only: Vec<_> = agent_first.into_iter().map(|(f, _)| f).collect();
    Err(auth_error(r, a, &agent_only))
}

/// A key file that `Keys::prepare` was not given: loaded now, without
/// asking for a passphrase.
fn load_unprepared(f: &Path) -> Result<PrivateKey, String> {
    let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read the identity file: {e}"))?;
    let pass = std::env::var(super::keys::PASSPHRASE_ENV).ok();
    russh::keys::decode_secret_key(&text, pass.as_deref()).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => "the key is encrypted and was not prepared (Keys::prepare) for this host".into(),
        e => format!("not a private key we can read ({e})"),
    })
}

async fn try_key(
    h: &mut Handle<Client>,
    r: &Resolved,
    key: &Arc<PrivateKey>,
    rsa_hash: Option<HashAlg>,
    what: &str,
    a: &mut Attempts,
) -> Result<bool, SshError> {
    let label = format!("{what} ({})", fingerprint(key.public_key()));
    let attempt = h.authenticate_publickey(r.user.clone(), PrivateKeyWithHashAlg::new(key.clone(), rsa_hash));
    let result = bounded(r, attempt).await?;
    judge(result.map_err(|e| e.to_string()), label, a)
}

async fn try_agent(
    h: &mut Handle<Client>,
    r: &Resolved,
    sock: &Path,
    rsa_hash: Option<HashAlg>,
    first: &[&PublicKey],
    a: &mut Attempts,
) -> Result<bool, SshError> {
    let mut agent = match bounded(r, AgentClient::connect_uds(sock)).await? {
        Ok(agent) => agent,
        Err(e) => {
            a.tried.push(format!("no agent keys (cannot use ssh-agent at {}: {e})", sock.display()));
            return Ok(false);
        }
    };
    let identities = bounded(r, agent.request_identities()).await?.unwrap_or_default();
    let mut keys: Vec<PublicKey> = identities
        .into_iter()
        .filter_map(|id| match id {
            AgentIdentity::PublicKey { key, .. } => Some(key),
            AgentIdentity::Certificate { .. } => None,
        })
        .collect();
    // Stable: the named keys first, the rest in the agent's order.
    keys.sort_by_key(|k| !first.iter().any(|f| f.key_data() == k.key_data()));
    if keys.is_empty() {
        a.tried.push(format!("no agent keys (ssh-agent at {} holds none)", sock.display()));
    }
    for key in keys {
        if a.stop.is_some() {
            break;
        }
        let label = format!("agent key {}", fingerprint(&key));
        let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
        let attempt = h.authenticate_publickey_with(r.user.clone(), key, hash, &mut agent);
        let result = bounded(r, attempt).await?;
        if judge(result.map_err(|e| e.to_string()), label, a)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Records one attempt; true when it succeeded.
fn judge(result: Result<AuthResult, String>, label: String, a: &mut Attempts) -> Result<bool, SshError> {
    match result {
        Ok(AuthResult::Success) => Ok(true),
        Ok(AuthResult::Failure { remaining_methods, .. }) => {
            a.tried.push(label);
            if !remaining_methods.contains(&MethodKind::PublicKey) {
                a.stop = Some("the server accepts no (more) public keys".into());
            }
            Ok(false)
        }
        Err(e) => {
            a.tried.push(format!("{label}: {e}"));
            a.stop = Some("the server closed the connection (too many attempts? see sshd's MaxAuthTries)".into());
            Ok(false)
        }
    }
}

async fn bounded<T>(r: &Resolved, f: impl Future<Output = T>) -> Result<T, SshError> {
    tokio::time::timeout(r.timeout, f).await.map_err(|_| SshError::Timeout {
        host: r.name.clone(),
        what: format!("authentication as {}", r.user),
        after: r.timeout,
    })
}

fn auth_error(r: &Resolved, a: Attempts, agent_only: &[std::path::PathBuf]) -> SshError {
    let mut tried = a.tried;
    for f in agent_only {
        tried.push(format!("not {} (encrypted; meant for ssh-agent, which did not offer it)", f.display()));
    }
    let tried = if tried.is_empty() {
        "no key at all: no identity file is set, SSH_AUTH_SOCK names no ssh-agent, and none of ~/.ssh/id_ed25519, id_ecdsa, id_rsa exists".to_string()
    } else {
        tried.join(", ")
    };
    let stop = a.stop.map(|s| format!(" ({s})")).unwrap_or_default();
    let who = format!("{}@{}", r.user, r.host);
    let advice = if r.default_keys {
        format!(
            "Put your public key in ~{}/.ssh/authorized_keys on the host (e.g. `ssh-copy-id{} {who}`), load the right key into ssh-agent (ssh-add), or set ssh.identity-file in the inventory; check that ssh.user is right",
            r.user,
            if r.port == 22 { String::new() } else { format!(" -p {}", r.port) }
        )
    } else {
        format!(
            "Check that the public half of the identity file is in ~{}/.ssh/authorized_keys on the host and that the user is right (`ssh -i FILE{} {who}` should work)",
            r.user,
            if r.port == 22 { String::new() } else { format!(" -p {}", r.port) }
        )
    };
    SshError::Auth { host: r.name.clone(), user: r.user.clone(), tried: format!("{tried}{stop}"), advice }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_are_asked_first() {
        let order = known_types_first(&[Algorithm::Rsa { hash: None }]);
        assert!(order[..3].iter().all(|a| a.clone().is_rsa()), "{order:?}");
        assert_eq!(order.len(), russh::Preferred::DEFAULT.key.len());
        assert_eq!(known_types_first(&[])[0], Algorithm::Ed25519);
    }
}
