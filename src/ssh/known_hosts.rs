//! OpenSSH's `known_hosts`: plain and hashed (`|1|salt|hash`) host fields,
//! patterns with `*`/`?`/`!`, `[host]:port` for ports other than 22,
//! `@revoked` lines. Appends take an exclusive lock on the file, so hosts
//! connected at the same time (or two `k8s up` runs) never interleave lines.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use base64::Engine;
use russh::keys::{Algorithm, PublicKey};

use super::config::wildcard_match;

/// What the file says about a host's key.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Known,
    /// No line names the host.
    Unknown,
    /// The host is known with another key (of this type or, since we ask
    /// for the known types first, of a type the host no longer offers).
    Changed { line: usize, known: String },
    /// The key is on a `@revoked` line.
    Revoked { line: usize },
}

/// How the file names a host: `host`, or `[host]:port` when port != 22.
pub fn host_entry(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

struct Line {
    number: usize,
    revoked: bool,
    key: PublicKey,
}

/// Lines whose host field names `entry`, with keys we can parse.
fn lines_for(text: &str, entry: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let mut fields = raw.split_whitespace();
        let Some(mut first) = fields.next() else { continue };
        if first.starts_with('#') {
            continue;
        }
        let mut revoked = false;
        if first.starts_with('@') {
            // @cert-authority lines trust CAs, which we do not use.
            revoked = first == "@revoked";
            if !revoked {
                continue;
            }
            let Some(f) = fields.next() else { continue };
            first = f;
        }
        let (Some(_type), Some(blob)) = (fields.next(), fields.next()) else { continue };
        if !host_field_matches(first, entry) {
            continue;
        }
        if let Ok(key) = russh::keys::parse_public_key_base64(blob) {
            out.push(Line { number: i + 1, revoked, key });
        }
    }
    out
}

fn host_field_matches(field: &str, entry: &str) -> bool {
    if field.starts_with("|1|") {
        return hashed_matches(field, entry);
    }
    let entry = entry.to_ascii_lowercase();
    let mut matched = false;
    for p in field.split(',') {
        let p = p.to_ascii_lowercase();
        match p.strip_prefix('!') {
            Some(neg) if wildcard_match(neg, &entry) => return false,
            Some(_) => {}
            None => matched |= wildcard_match(&p, &entry),
        }
    }
    matched
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, entry))`.
fn hashed_matches(field: &str, entry: &str) -> bool {
    let mut parts = field.trim_start_matches("|1|").split('|');
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Some(Ok(salt)), Some(Ok(hash))) = (parts.next().map(|s| b64.decode(s)), parts.next().map(|s| b64.decode(s)))
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, entry.as_bytes(), &hash).is_ok()
}

/// A hashed host field for `entry` with the given salt (for tests and
/// for people who want to write one).
#[cfg(test)]
pub fn hash_entry(entry: &str, salt: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
    let tag = ring::hmac::sign(&key, entry.as_bytes());
    format!("|1|{}|{}", b64.encode(salt), b64.encode(tag.as_ref()))
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), key.fingerprint(russh::keys::HashAlg::Sha256))
}

/// Judges `key` for `host:port` against the file's text.
pub fn judge(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let lines = lines_for(text, &host_entry(host, port));
    if let Some(l) = lines.iter().find(|l| l.revoked && same_key(&l.key, key)) {
        return Verdict::Revoked { line: l.number };
    }
    let trusted: Vec<&Line> = lines.iter().filter(|l| !l.revoked).collect();
    if trusted.iter().any(|l| same_key(&l.key, key)) {
        return Verdict::Known;
    }
    let same_type = trusted.iter().find(|l| l.key.algorithm() == key.algorithm());
    match same_type.or(trusted.first()) {
        Some(l) => Verdict::Changed { line: l.number, known: fingerprint(&l.key) },
        None => Verdict::Unknown,
    }
}

/// The key types the file knows for the host, to ask the server for those
/// first (as OpenSSH does): a host that still has its recorded key then
/// always shows it.
pub fn known_algorithms(path: &Path, host: &str, port: u16) -> Vec<Algorithm> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut algs: Vec<Algorithm> = Vec::new();
    for l in lines_for(&text, &host_entry(host, port)) {
        if !l.revoked && !algs.contains(&l.key.algorithm()) {
            algs.push(l.key.algorithm());
        }
    }
    algs
}

/// Reads the file (absent: empty) and judges the key.
pub fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(judge(&text, host, port, key))
}

/// Records an unknown host's key (file created 0600, its directory 0700).
/// Under the lock the file is judged again: if another process recorded
/// the host meanwhile, its verdict is returned and nothing is written.
pub fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path)?;
    // SAFETY: flock on a descriptor we own; released when `file` closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let text = std::fs::read_to_string(path)?;
    let verdict = judge(&text, host, port, key);
    if verdict != Verdict::Unknown {
        return Ok(verdict);
    }
    let sep = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
    let line = format!("{sep}{} {}\n", host_entry(host, port), key.to_openssh().map_err(io::Error::other)?);
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    Ok(Verdict::Known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PublicKey {
        let k = russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]));
        k.public_key().clone()
    }

    fn line(entry: &str, k: &PublicKey) -> String {
        format!("{entry} {}\n", k.to_openssh().unwrap())
    }

    #[test]
    fn plain_port_and_patterns() {
        let (a, b) = (key(1), key(2));
        let text = format!("# c\n{}{}", line("cp-1,10.0.0.11", &a), line("[10.0.0.12]:2222", &b));
        assert_eq!(judge(&text, "10.0.0.11", 22, &a), Verdict::Known);
        assert_eq!(judge(&text, "CP-1", 22, &a), Verdict::Known);
        assert_eq!(judge(&text, "10.0.0.11", 2222, &a), Verdict::Unknown, "another port is another host");
        assert_eq!(judge(&text, "10.0.0.12", 2222, &b), Verdict::Known);
        assert!(matches!(judge(&text, "10.0.0.11", 22, &b), Verdict::Changed { line: 2, .. }));
        let wild = line("*.example.com,!bad.example.com", &a);
        assert_eq!(judge(&wild, "x.example.com", 22, &a), Verdict::Known);
        assert_eq!(judge(&wild, "bad.example.com", 22, &a), Verdict::Unknown);
    }

    #[test]
    fn hashed_entries() {
        let a = key(3);
        let text = line(&hash_entry("[127.0.0.1]:2200", b"0123456789abcdefghij"), &a);
        assert_eq!(judge(&text, "127.0.0.1", 2200, &a), Verdict::Known);
        assert_eq!(judge(&text, "127.0.0.1", 22, &a), Verdict::Unknown);
        assert!(matches!(judge(&text, "127.0.0.1", 2200, &key(4)), Verdict::Changed { line: 1, .. }));
    }

    #[test]
    fn revoked_and_cert_authority_lines() {
        let a = key(5);
        let text = format!("@cert-authority * {}@revoked * {}", line("", &key(6)).trim_start(), line("", &a).trim_start());
        assert_eq!(judge(&text, "h", 22, &a), Verdict::Revoked { line: 2 });
        assert_eq!(judge(&text, "h", 22, &key(6)), Verdict::Unknown, "CA lines do not trust a plain key");
    }

    #[test]
    fn learn_appends_once_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        let a = key(7);
        assert_eq!(check(&path, "h", 2222, &a).unwrap(), Verdict::Unknown);
        assert_eq!(learn(&path, "h", 2222, &a).unwrap(), Verdict::Known);
        assert_eq!(learn(&path, "h", 2222, &a).unwrap(), Verdict::Known);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("[h]:2222 ssh-ed25519 "));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(learn(&path, "h", 2222, &key(8)).unwrap(), Verdict::Changed { line: 1, .. }));
        assert_eq!(known_algorithms(&path, "h", 2222), vec![Algorithm::Ed25519]);
    }

    #[test]
    fn concurrent_learns_do_not_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, "# no newline at the end").unwrap();
        let threads: Vec<_> = (0..16u8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || learn(&path, &format!("h{i}"), 22, &key(i + 10)).unwrap())
            })
            .collect();
        threads.into_iter().for_each(|t| assert_eq!(t.join().unwrap(), Verdict::Known));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 17, "{text}");
        for i in 0..16u8 {
            assert_eq!(judge(&text, &format!("h{i}"), 22, &key(i + 10)), Verdict::Known);
        }
    }
}
