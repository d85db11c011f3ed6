//! Join tokens: `K10<ca-sha256>::<id>.<secret>`, like k3s's secure
//! format. The joiner checks the cluster CA against the hash before it
//! sends the secret; the server keeps only the secret's sha256, in a
//! Secret in kube-system, so every server of a cluster sees every token.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Role> {
        match s {
            "server" => Ok(Role::Server),
            "agent" => Ok(Role::Agent),
            _ => bail!("role must be server or agent, not {s:?}"),
        }
    }
}

/// A parsed token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub ca_hash: String,
    pub id: String,
    pub secret: String,
}

// Never print the secret.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Token({})", self.id)
    }
}

impl Token {
    pub fn generate(ca_pem: &[u8]) -> Token {
        Token { ca_hash: ca_hash(ca_pem), id: random_string(6), secret: random_string(16) }
    }

    pub fn parse(text: &str) -> anyhow::Result<Token> {
        let text = text.trim();
        let rest = text.strip_prefix("K10").context("a join token starts with K10 (copy it whole from the server)")?;
        let (hash, cred) = rest.split_once("::").context("a join token looks like K10<hash>::<id>.<secret>")?;
        let (id, secret) = cred.split_once('.').context("a join token looks like K10<hash>::<id>.<secret>")?;
        let valid = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || !valid(id, 6) || !valid(secret, 16) {
            bail!("malformed join token (expected K10<64 hex>::<6 chars>.<16 chars>)");
        }
        Ok(Token { ca_hash: hash.to_ascii_lowercase(), id: id.into(), secret: secret.into() })
    }

    pub fn secret_hash(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "K10{}::{}.{}", self.ca_hash, self.id, self.secret)
    }
}

pub fn ca_hash(ca_pem: &[u8]) -> String {
    hex::encode(Sha256::digest(ca_pem))
}

pub(super) fn random_string(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; n];
    getrandom(&mut bytes);
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("/dev/urandom is readable");
}

/// What the cluster stores about a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub role: Role,
    pub secret_sha256: String,
    /// Seconds since the epoch; None: never expires.
    pub expires: Option<u64>,
    pub description: String,
}

impl Record {
    pub fn new(token: &Token, role: Role, ttl: Option<Duration>, description: &str) -> Record {
        Record {
            id: token.id.clone(),
            role,
            secret_sha256: token.secret_hash(),
            expires: ttl.map(|t| now() + t.as_secs()),
            description: description.into(),
        }
    }

    /// Checks a presented token against this record.
    pub fn admits(&self, token: &Token, role: Role) -> bool {
        self.role == role
            && constant_time_eq(&self.secret_sha256, &token.secret_hash())
            && self.expires.map_or(true, |e| now() < e)
    }

    pub fn secret_name(&self) -> String {
        secret_name(&self.id)
    }

    /// The Secret object holding this record.
    pub fn to_secret(&self) -> Secret {
        let fields = [
            ("id", self.id.clone()),
            ("role", self.role.as_str().to_string()),
            ("secret-sha256", self.secret_sha256.clone()),
            ("expires", self.expires.map(|e| e.to_string()).unwrap_or_default()),
            ("description", self.description.clone()),
        ];
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name()),
                namespace: Some("kube-system".into()),
                labels: Some([(LABEL.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE.into()),
            string_data: Some(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            ..Default::default()
        }
    }

    pub fn from_secret(secret: &Secret) -> anyhow::Result<Record> {
        let name = secret.metadata.name.as_deref().unwrap_or("?");
        let field = |k: &str| -> anyhow::Result<String> {
            let bytes = secret.data.as_ref().and_then(|d| d.get(k)).map(|b| b.0.clone()).unwrap_or_default();
            String::from_utf8(bytes).with_context(|| format!("Secret kube-system/{name}: {k} is not text"))
        };
        let expires = field("expires")?;
        Ok(Record {
            id: field("id")?,
            role: Role::parse(&field("role")?)?,
            secret_sha256: field("secret-sha256")?,
            expires: if expires.is_empty() { None } else { Some(expires.parse()?) },
            description: field("description")?,
        })
    }
}

pub const SECRET_TYPE: &str = "k8s.io/join-token";
pub const LABEL: &str = "k8s.io/join-token";

pub fn secret_name(id: &str) -> String {
    format!("k8s-join-token-{id}")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_admission() {
        let t = Token::generate(b"ca pem");
        let parsed = Token::parse(&t.to_string()).unwrap();
        assert_eq!(parsed, t);
        assert_eq!(parsed.ca_hash, ca_hash(b"ca pem"));
        let rec = Record::new(&t, Role::Agent, None, "test");
        assert!(rec.admits(&t, Role::Agent));
        assert!(!rec.admits(&t, Role::Server), "an agent token does not join servers");
        let mut wrong = t.clone();
        wrong.secret = "0000000000000000".into();
        assert!(!rec.admits(&wrong, Role::Agent));
        let expired = Record { expires: Some(1), ..rec };
        assert!(!expired.admits(&t, Role::Agent));
    }

    #[test]
    fn records_round_trip_through_a_secret() {
        let t = Token::generate(b"ca pem");
        let rec = Record::new(&t, Role::Server, Some(Duration::from_secs(60)), "for node-4");
        let mut secret = rec.to_secret();
        assert_eq!(secret.metadata.labels.as_ref().unwrap()[LABEL], "true");
        // What the API server stores: stringData becomes data.
        let data = secret.string_data.take().unwrap();
        secret.data = Some(data.into_iter().map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes()))).collect());
        assert_eq!(Record::from_secret(&secret).unwrap(), rec);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "K10abc::x.y", "abc", &format!("K10{}::abcdef.short", "0".repeat(64))] {
            assert!(Token::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = Token::generate(b"x");
        assert!(!format!("{t:?}").contains(&t.secret));
    }
}
