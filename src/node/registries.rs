//! Private registries and mirrors: `/etc/k8s/registries.yaml` in k3s's
//! format, rendered as containerd's hosts dir (its `config_path`: one
//! `<registry>/hosts.toml` per registry, `_default/` for `"*"`).
//!
//! What each setting becomes in containerd 2.4, unpatched:
//!
//! - `mirrors.<registry>.endpoint`: the `[host."<url>"]` tables of the
//!   registry's hosts.toml, tried in order to resolve and pull; containerd
//!   then falls back to the registry itself, as k3s's does. An endpoint on the
//!   registry's own host becomes that fallback (`server`) rather than a
//!   second try. `"*"` mirrors every registry without an entry of its own.
//! - `configs.<host>.tls` (`ca_file`, `cert_file` + `key_file`,
//!   `insecure_skip_verify`): that host's `ca`, `client` and `skip_verify`
//!   wherever it appears, as an endpoint or as the fallback; `"*"` serves
//!   hosts without an entry of their own.
//! - `configs.<host>.auth` `username` + `password`, or `auth`: a static
//!   `Authorization: Basic` header on that host's requests (hosts.toml has no
//!   credentials). A registry with Basic auth takes it as is; containerd
//!   also sends it along with a Bearer challenge's token request.
//! - `identity_token`: the CRI plugin's `registry.configs` in containerd.toml
//!   (deprecated, still in 2.4), which containerd reads when it starts only.
//! - `rewrite`: refused. containerd has no rewrite (k3s patches its own).
//!
//! Lifecycle: `k8s server` and `k8s agent` check the file before they create
//! anything (an invalid one stops the start, naming its line) and read it
//! again when containerd starts: the hosts dir is rendered, and containerd.toml
//! points at it. While the node runs, [`watch`] reads the file every
//! [`WATCH_INTERVAL`]. containerd reads hosts.toml at every pull, so a change
//! applies to the next pull without a restart (identity tokens excepted: the
//! log says to restart). An invalid file is logged and the settings applied
//! before stay; a removed file removes the rendered dirs. Credentials go only
//! to files of mode 0600 and never to the log.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::fsutil::write_if_changed;

/// How often a running node reads registries.yaml again.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// The registry key that stands for every registry (k3s's), and the hosts
/// dir containerd falls back to for a registry without a dir of its own.
const ANY: &str = "*";
const DEFAULT_DIR: &str = "_default";

/// The first line of every rendered hosts.toml.
const RENDERED: &str = "# Rendered by k8s from /etc/k8s/registries.yaml: edit that file, not this one.\n";

/// A registries.yaml that cannot be used: the file, where, and why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {file}: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}{at}: {message}\n(the format is k3s's registries.yaml: `mirrors` and `configs`; see docs/registries.md)")]
    Invalid { file: PathBuf, at: String, message: String },
}

/// The settings of a valid registries.yaml (none when there is no file).
#[derive(Default, PartialEq)]
#[cfg_attr(test, derive(Debug))]
pub struct Registries {
    mirrors: BTreeMap<Registry, Mirror>,
    configs: BTreeMap<Registry, HostConfig>,
}

impl Registries {
    /// Reads and checks `file`; a missing file means no settings.
    pub fn load(file: &Path) -> Result<Registries, Error> {
        match read(file)? {
            Some(text) => Registries::parse(file, &text),
            None => Ok(Registries::default()),
        }
    }

    /// Checks `text`, the content of `file` (named in errors): what
    /// [`Registries::load`] does after reading it, for a copy elsewhere
    /// (`k8s up` checks the workstation's before writing it to hosts).
    pub fn parse(file: &Path, text: &str) -> Result<Registries, Error> {
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let raw: RawFile = serde_yaml::from_str(text).map_err(|e| {
            let message = e.to_string();
            match e.location() {
                // The position goes in front, as in every file:line:column message.
                Some(l) => Error::Invalid {
                    file: file.to_path_buf(),
                    at: format!(":{}:{}", l.line(), l.column()),
                    message: message.trim_end_matches(&format!(" at line {} column {}", l.line(), l.column())).to_string(),
                },
                None => Error::Invalid { file: file.to_path_buf(), at: String::new(), message },
            }
        })?;
        Ok(Registries { mirrors: raw.mirrors, configs: raw.configs.0 })
    }

    /// The registries with settings, by name, for the log (empty: none).
    pub fn names(&self) -> String {
        let names: std::collections::BTreeSet<&str> = self.mirrors.keys().chain(self.configs.keys()).map(|r| r.0.as_str()).collect();
        names.into_iter().collect::<Vec<_>>().join(" ")
    }

    /// Makes `dir` hold exactly the rendered hosts files; true when that
    /// changed anything.
    pub fn apply(&self, dir: &Path) -> anyhow::Result<bool> {
        let want = self.hosts_files();
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        crate::fsutil::set_mode(dir, 0o700)?;
        let mut changed = false;
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if !want.contains_key(&name) {
                let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                removed.with_context(|| format!("cannot remove {}", path.display()))?;
                changed = true;
            }
        }
        for (name, text) in &want {
            changed |= write_if_changed(&dir.join(name).join("hosts.toml"), text.as_bytes(), 0o600)?;
        }
        Ok(changed)
    }

    /// hosts.toml by dir name: every mirrored registry, and every configured
    /// host (so its TLS and credentials hold when pulled from directly).
    fn hosts_files(&self) -> BTreeMap<String, String> {
        let any = Registry(ANY.into());
        let mut files = BTreeMap::new();
        for registry in self.mirrors.keys().chain(self.configs.keys()) {
            let endpoints = match self.mirrors.get(registry).or_else(|| self.mirrors.get(&any)) {
                Some(m) => m.endpoint.as_slice(),
                None => &[],
            };
            let dir = if registry.0 == ANY { DEFAULT_DIR.to_string() } else { registry.0.clone() };
            files.insert(dir, self.hosts_toml(registry, endpoints));
        }
        files
    }

    /// One registry's hosts.toml: the fallback's settings first (TOML wants
    /// a document's own keys before its tables), then the endpoints in order.
    fn hosts_toml(&self, registry: &Registry, endpoints: &[Endpoint]) -> String {
        let mut unique: Vec<&Endpoint> = Vec::new();
        for e in endpoints {
            // A table twice would make the whole file invalid TOML.
            if !unique.iter().any(|u| u.url == e.url) {
                unique.push(e);
            }
        }
        let (own, mirrors): (Vec<&Endpoint>, Vec<&Endpoint>) = unique.into_iter().partition(|e| e.host == registry.0);
        let mut out = RENDERED.to_string();
        if let Some(server) = own.first() {
            let _ = writeln!(out, "server = {}", toml_str(&server.url));
        }
        if let Some(config) = self.config(&registry.0) {
            config.write_tls(&mut out, "");
            config.write_header(&mut out, "", "header");
        }
        for e in mirrors {
            let table = format!("host.{}", toml_str(&e.url));
            let _ = writeln!(out, "\n[{table}]\n  capabilities = [\"pull\", \"resolve\"]");
            if let Some(config) = self.config(&e.host) {
                config.write_tls(&mut out, "  ");
                config.write_header(&mut out, "  ", &format!("{table}.header"));
            }
        }
        out
    }

    /// The settings of `host`: its own entry, else `"*"`'s.
    fn config(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(&Registry(host.into())).or_else(|| self.configs.get(&Registry(ANY.into())))
    }

    /// The CRI plugin's `registry.configs` tables for identity tokens, for
    /// containerd.toml (empty without any).
    pub fn containerd_credentials(&self) -> String {
        let mut out = String::new();
        for (host, config) in &self.configs {
            if let Some(Auth::IdentityToken(token)) = &config.auth {
                let _ = writeln!(
                    out,
                    "  [plugins.'io.containerd.cri.v1.images'.registry.configs.{}.auth]\n    identitytoken = {}",
                    toml_str(&host.0),
                    toml_str(token)
                );
            }
        }
        out
    }
}

/// The file's text; `None` when there is no file.
fn read(file: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { file: file.to_path_buf(), source }),
    }
}

/// Reads `file` every [`WATCH_INTERVAL`] while the node runs and applies it
/// to `hosts_dir` when its text changed; `started` is what containerd
/// started with (its identity tokens need a restart to change).
pub fn watch(file: PathBuf, hosts_dir: PathBuf, started: &Registries) {
    let credentials = started.containerd_credentials();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        // The first look applies whatever changed since containerd started.
        let mut seen: Option<Option<String>> = None;
        loop {
            tick.tick().await;
            let text = match read(&file) {
                Ok(text) => text,
                Err(e) => {
                    tracing::warn!("{e}; the registry settings applied before stay");
                    continue;
                }
            };
            if seen.as_ref() == Some(&text) {
                continue;
            }
            reload(&file, &hosts_dir, text.as_deref(), &credentials);
            seen = Some(text);
        }
    });
}

/// Applies a new text of registries.yaml (`None`: the file is gone),
/// logging what happened; an invalid text changes nothing.
fn reload(file: &Path, hosts_dir: &Path, text: Option<&str>, credentials: &str) {
    let parsed = match text {
        Some(text) => Registries::parse(file, text),
        None => Ok(Registries::default()),
    };
    let registries = match parsed {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{e}\nthe registry settings applied before stay until the file is fixed");
            return;
        }
    };
    match registries.apply(hosts_dir) {
        Ok(true) if text.is_none() => tracing::info!(file = %file.display(), "registries file removed: no mirrors or registry settings any more"),
        Ok(true) => tracing::info!(file = %file.display(), registries = registries.names(), "registry settings applied to the next pulls"),
        Ok(false) => {}
        Err(e) => tracing::warn!("applying {}: {e:#}", file.display()),
    }
    if registries.containerd_credentials() != credentials {
        tracing::warn!(file = %file.display(), "identity_token settings changed: containerd reads them when it starts; restart k8s to apply them");
    }
}

// ---------------------------------------------------------------- the file

/// The file as k3s defines it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    mirrors: BTreeMap<Registry, Mirror>,
    #[serde(default)]
    configs: Configs,
}

/// A registry's name as images spell it, `host[:port]`, or `"*"`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(test, derive(Debug))]
struct Registry(String);

impl<'de> Deserialize<'de> for Registry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Registry, D::Error> {
        d.deserialize_str(Checked(|s: &str| {
            if s == ANY {
                return Ok(Registry(s.into()));
            }
            if s == DEFAULT_DIR {
                return Err(format!("{s:?} is containerd's name for every registry; write \"*\""));
            }
            if s.contains("://") || s.contains('/') {
                return Err(format!("registry {s:?}: a registry is a host[:port], without scheme or path (endpoints take URLs)"));
            }
            check_host(s).map_err(|e| format!("registry {s:?}: {e}"))?;
            Ok(Registry(s.into()))
        }))
    }
}

#[derive(Deserialize, PartialEq)]
#[cfg_attr(test, derive(Debug))]
#[serde(deny_unknown_fields)]
struct Mirror {
    #[serde(default)]
    endpoint: Vec<Endpoint>,
    #[serde(default, rename = "rewrite", deserialize_with = "refuse_rewrite")]
    _rewrite: (),
}

/// k3s's rewrites need its patched containerd: refused where they are
/// written (an empty one changes nothing and passes).
fn refuse_rewrite<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    struct Refuse;
    impl<'de> Visitor<'de> for Refuse {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("no rewrite")
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            if map.next_key::<de::IgnoredAny>()?.is_none() {
                return Ok(());
            }
            Err(de::Error::custom(
                "rewrite is not supported: containerd has no rewrite of image names (k3s patches its containerd for it); \
                 push the images to the mirror under their upstream names, then remove the rewrite",
            ))
        }
    }
    d.deserialize_any(Refuse)
}

/// A mirror endpoint: its URL (a scheme added when it had none) and host.
#[derive(PartialEq)]
#[cfg_attr(test, derive(Debug))]
struct Endpoint {
    url: String,
    host: String,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        d.deserialize_str(Checked(parse_endpoint))
    }
}

/// `[scheme://]host[:port][/path]`; https when no scheme is given (as
/// containerd assumes).
fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = s.split_once("://").unwrap_or(("https", s));
    if scheme != "http" && scheme != "https" {
        return Err(format!("endpoint {s:?}: the scheme must be http or https"));
    }
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if host.contains('@') {
        return Err(format!("endpoint {s:?}: credentials do not go in the URL; write them under configs.<host>.auth"));
    }
    if path.contains(['?', '#']) {
        return Err(format!("endpoint {s:?}: a query or fragment has no meaning here"));
    }
    check_host(host).map_err(|e| format!("endpoint {s:?}: {e}"))?;
    let path = path.trim_end_matches('/');
    Ok(Endpoint { url: format!("{scheme}://{host}{path}"), host: host.to_string() })
}

/// `name[:port]` or `[ipv6][:port]`, as an image reference's first part.
fn check_host(s: &str) -> Result<(), String> {
    let (name, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (addr, after) = rest.split_once(']').ok_or("an IPv6 address needs its closing ]")?;
            addr.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
            (None, after.strip_prefix(':').or_else(|| (!after.is_empty()).then_some(after)))
        }
        None => match s.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(s), None),
        },
    };
    if let Some(name) = name {
        let valid = !name.is_empty()
            && !name.starts_with(['.', '-'])
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return Err("not a host name or address (letters, digits, '.', '-', then optionally :port)".to_string());
        }
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err("the port must be a number from 1 to 65535".to_string());
        }
    }
    Ok(())
}

/// `configs`, checked as a whole: identity tokens need a host.
#[derive(Default, PartialEq)]
#[cfg_attr(test, derive(Debug))]
struct Configs(BTreeMap<Registry, HostConfig>);

impl<'de> Deserialize<'de> for Configs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Configs, D::Error> {
        d.deserialize_map(checked_map(|all: BTreeMap<Registry, HostConfig>| {
            if all.get(&Registry(ANY.into())).is_some_and(|c| matches!(c.auth, Some(Auth::IdentityToken(_)))) {
                return Err("\"*\".auth.identity_token: containerd takes identity tokens per registry host only; \
                            write it under the host's own entry"
                    .to_string());
            }
            Ok(Configs(all))
        }))
    }
}

/// One host's settings.
#[derive(Deserialize, PartialEq)]
#[cfg_attr(test, derive(Debug))]
#[serde(deny_unknown_fields)]
struct HostConfig {
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    tls: Tls,
}

impl HostConfig {
    /// `ca`, `client` and `skip_verify` lines, each under `indent`.
    fn write_tls(&self, out: &mut String, indent: &str) {
        let t = &self.tls;
        if let Some(ca) = &t.ca_file {
            let _ = writeln!(out, "{indent}ca = [{}]", toml_str(ca));
        }
        match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                let _ = writeln!(out, "{indent}client = [[{}, {}]]", toml_str(cert), toml_str(key));
            }
            (Some(cert), None) => {
                let _ = writeln!(out, "{indent}client = [{}]", toml_str(cert));
            }
            _ => {}
        }
        if t.insecure_skip_verify {
            let _ = writeln!(out, "{indent}skip_verify = true");
        }
    }

    /// The `[table]` with the Authorization header, when there are credentials.
    fn write_header(&self, out: &mut String, indent: &str, table: &str) {
        if let Some(Auth::Basic(encoded)) = &self.auth {
            let _ = writeln!(out, "{indent}[{table}]\n{indent}  Authorization = {}", toml_str(&format!("Basic {encoded}")));
        }
    }
}

/// Credentials: Basic (base64 of `username:password`) or an identity token.
#[derive(PartialEq)]
enum Auth {
    Basic(String),
    IdentityToken(String),
}

/// Never the secret itself.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Auth::Basic(_) => "Basic(..)",
            Auth::IdentityToken(_) => "IdentityToken(..)",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
    identity_token: Option<String>,
}

impl<'de> Deserialize<'de> for Auth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Auth, D::Error> {
        d.deserialize_map(checked_map(|raw: RawAuth| match raw {
            RawAuth { username: Some(user), password: Some(password), auth: None, identity_token: None } => {
                if user.is_empty() {
                    return Err("the username is empty".to_string());
                }
                if user.contains(':') {
                    return Err("the username cannot hold ':' (Basic auth separates username and password with it)".to_string());
                }
                Ok(Auth::Basic(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
            }
            RawAuth { username: None, password: None, auth: Some(auth), identity_token: None } => {
                let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok();
                if !decoded.is_some_and(|d| d.contains(&b':')) {
                    return Err("`auth` must be the base64 of username:password".to_string());
                }
                Ok(Auth::Basic(auth.trim().to_string()))
            }
            RawAuth { username: None, password: None, auth: None, identity_token: Some(token) } => Ok(Auth::IdentityToken(token)),
            RawAuth { username: Some(_), password: None, auth: None, identity_token: None } => {
                Err("a username needs a password".to_string())
            }
            RawAuth { username: None, password: Some(_), auth: None, identity_token: None } => {
                Err("a password needs a username".to_string())
            }
            _ => Err("set one of: username and password, auth, or identity_token".to_string()),
        }))
    }
}

#[derive(Deserialize, Default, PartialEq)]
#[cfg_attr(test, derive(Debug))]
#[serde(deny_unknown_fields)]
struct Tls {
    #[serde(default, deserialize_with = "absolute")]
    cert_file: Option<String>,
    #[serde(default, deserialize_with = "absolute")]
    key_file: Option<String>,
    #[serde(default, deserialize_with = "absolute")]
    ca_file: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

/// A file path containerd reads: absolute (it would take a relative one
/// from its hosts dir, which nobody means).
fn absolute<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_str(Checked(|s: &str| {
        if !s.starts_with('/') {
            return Err(format!("{s:?}: write the file's absolute path"));
        }
        Ok(Some(s.to_string()))
    }))
}

// -------------------------------------------------- checks with a position

/// A string checked inside serde_yaml's visit, so an error carries the
/// line and column of the value.
struct Checked<F>(F);

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for Checked<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        (self.0)(s).map_err(E::custom)
    }
}

/// A mapping read as `R`, then checked as a whole inside serde_yaml's
/// visit, so an error carries the mapping's line and column.
struct CheckedMap<R, F>(F, PhantomData<R>);

fn checked_map<R, F>(check: F) -> CheckedMap<R, F> {
    CheckedMap(check, PhantomData)
}

impl<'de, R: Deserialize<'de>, T, F: FnOnce(R) -> Result<T, String>> Visitor<'de> for CheckedMap<R, F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let raw = R::deserialize(MapAccessDeserializer::new(map))?;
        (self.0)(raw).map_err(de::Error::custom)
    }
}

/// A TOML basic string. Braces are escaped too, so no value can look like
/// a placeholder of the containerd.toml template it goes into.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || c == '{' || c == '}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/k8s/registries.yaml";

    fn parse(text: &str) -> Result<Registries, String> {
        Registries::parse(Path::new(FILE), text).map_err(|e| e.to_string())
    }

    fn files(text: &str) -> BTreeMap<String, String> {
        parse(text).unwrap().hosts_files()
    }

    /// The error names the file, the line and column, and the setting.
    fn assert_error(text: &str, at: &str, words: &[&str]) {
        let e = parse(text).unwrap_err();
        assert!(e.starts_with(&format!("{FILE}:{at}: ")), "{e}");
        for w in words {
            assert!(e.contains(w), "{e:?} lacks {w:?}");
        }
    }

    #[test]
    fn no_file_or_an_empty_one_means_no_settings() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Registries::load(&dir.path().join("registries.yaml")).unwrap(), Registries::default());
        assert_eq!(parse("# nothing yet\n").unwrap(), Registries::default());
        assert!(Registries::default().hosts_files().is_empty());
    }

    #[test]
    fn a_mirror_with_tls_and_credentials() {
        let f = files(
            "mirrors:\n  docker.io:\n    endpoint:\n      - \"https://mirror.example.com:5000\"\n      - mirror2.example.com\n\
             configs:\n  \"mirror.example.com:5000\":\n    auth:\n      username: user\n      password: \"p\\\"w\"\n    tls:\n\
             \x20     ca_file: /etc/k8s/ca.pem\n      cert_file: /etc/k8s/c.pem\n      key_file: /etc/k8s/k.pem\n",
        );
        let creds = base64::engine::general_purpose::STANDARD.encode("user:p\"w");
        assert_eq!(
            f["docker.io"],
            format!(
                "{RENDERED}\n[host.\"https://mirror.example.com:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n\
                 \x20 ca = [\"/etc/k8s/ca.pem\"]\n  client = [[\"/etc/k8s/c.pem\", \"/etc/k8s/k.pem\"]]\n\
                 \x20 [host.\"https://mirror.example.com:5000\".header]\n    Authorization = \"Basic {creds}\"\n\
                 \n[host.\"https://mirror2.example.com\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            )
        );
        // The configured host pulled from directly: its own settings on the fallback.
        assert_eq!(
            f["mirror.example.com:5000"],
            format!(
                "{RENDERED}ca = [\"/etc/k8s/ca.pem\"]\nclient = [[\"/etc/k8s/c.pem\", \"/etc/k8s/k.pem\"]]\n\
                 [header]\n  Authorization = \"Basic {creds}\"\n"
            )
        );
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn an_endpoint_on_the_registry_itself_is_its_fallback() {
        let f = files(
            "mirrors:\n  \"reg.local:5000\":\n    endpoint: [\"http://reg.local:5000\", \"https://cache.local\", \"http://reg.local:5000/\"]\n\
             configs:\n  reg.local:5000:\n    tls: {insecure_skip_verify: true}\n",
        );
        assert_eq!(
            f["reg.local:5000"],
            format!("{RENDERED}server = \"http://reg.local:5000\"\nskip_verify = true\n\n[host.\"https://cache.local\"]\n  capabilities = [\"pull\", \"resolve\"]\n")
        );
    }

    #[test]
    fn the_wildcard_mirrors_every_registry_without_its_own_entry() {
        let f = files(
            "mirrors:\n  \"*\":\n    endpoint: [\"https://cache.local\"]\n  quay.io:\n    endpoint: []\n\
             configs:\n  ghcr.io:\n    auth: {auth: dTpw}\n  \"*\":\n    tls: {ca_file: /ca.pem}\n",
        );
        let any = format!("{RENDERED}ca = [\"/ca.pem\"]\n\n[host.\"https://cache.local\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = [\"/ca.pem\"]\n");
        assert_eq!(f[DEFAULT_DIR], any);
        assert_eq!(f["quay.io"], format!("{RENDERED}ca = [\"/ca.pem\"]\n"), "its own empty list: no mirror");
        assert_eq!(
            f["ghcr.io"],
            format!("{RENDERED}[header]\n  Authorization = \"Basic dTpw\"\n\n[host.\"https://cache.local\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = [\"/ca.pem\"]\n")
        );
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn identity_tokens_go_to_containerd_toml_only() {
        let r = parse("configs:\n  acr.example.com:\n    auth:\n      identity_token: \"tok{{en}}\"\n").unwrap();
        assert_eq!(
            r.containerd_credentials(),
            "  [plugins.'io.containerd.cri.v1.images'.registry.configs.\"acr.example.com\".auth]\n    identitytoken = \"tok\\u007B\\u007Ben\\u007D\\u007D\"\n"
        );
        assert_eq!(r.hosts_files()["acr.example.com"], RENDERED);
        assert_eq!(parse("mirrors: {}\n").unwrap().containerd_credentials(), "");
        // The whole containerd.toml still renders (no value looks like a placeholder).
        let values: Vec<(&str, String)> = ["root", "state", "socket", "pause_image", "cni_bin_dir", "cni_conf_dir", "runc",
            "systemd_cgroup", "restrict_oom_score_adj", "registry_hosts"]
            .into_iter()
            .map(|k| (k, "x".to_string()))
            .chain([("registry_credentials", r.containerd_credentials())])
            .collect();
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(crate::templates::render(crate::templates::CONTAINERD, &values).contains("identitytoken"));
    }

    #[test]
    fn errors_name_the_line_column_and_setting() {
        assert_error("mirrors:\n  docker.io:\n    endpoints: [x]\n", "3:5", &["unknown field `endpoints`", "expected `endpoint` or `rewrite`"]);
        assert_error("mirror: {}\n", "1:1", &["unknown field `mirror`"]);
        assert_error(
            "mirrors:\n  docker.io:\n    endpoint: [\"https://m.local\"]\n    rewrite:\n      \"^rancher/(.*)\": \"mirror/$1\"\n",
            "5:7",
            &["mirrors.docker.io.rewrite", "rewrite is not supported", "remove the rewrite"],
        );
        assert_error("mirrors:\n  docker.io:\n    endpoint:\n      - ftp://m.local\n", "4:9", &["\"ftp://m.local\"", "http or https"]);
        assert_error("mirrors:\n  docker.io:\n    endpoint: [\"https://u:p@m.local\"]\n", "3:16", &["configs.<host>.auth"]);
        assert_error("mirrors:\n  docker.io:\n    endpoint: [\"https://m.local:http\"]\n", "3:16", &["port"]);
        assert_error("mirrors:\n  https://docker.io:\n    endpoint: []\n", "2:3", &["without scheme"]);
        assert_error("configs:\n  _default:\n    tls: {}\n", "2:3", &["write \"*\""]);
        assert_error("configs:\n  r.local:\n    tls:\n      ca_file: ca.pem\n", "4:16", &["absolute path"]);
        assert_error("configs:\n  r.local:\n    tls:\n      insecure_skip_verify: maybe\n", "4:29", &["insecure_skip_verify"]);
        assert_error("configs:\n  r.local:\n    auth:\n      username: u\n", "4:7", &["configs.r.local.auth: a username needs a password"]);
        assert_error("configs:\n  r.local:\n    auth:\n      username: u\n      password: p\n      identity_token: t\n", "4:7", &["one of"]);
        assert_error("configs:\n  r.local:\n    auth:\n      auth: not-base64!\n", "4:7", &["`auth` must be the base64 of username:password"]);
        assert_error("configs:\n  r.local:\n    auth:\n      user: u\n", "4:7", &["unknown field `user`"]);
        assert_error("configs:\n  \"*\":\n    auth: {identity_token: t}\n", "2:3", &["configs: \"*\".auth.identity_token", "host's own entry"]);
        assert_error("mirrors: [docker.io]\n", "1:10", &["mirrors"]);
    }

    #[test]
    fn errors_never_show_secrets() {
        for text in [
            "configs:\n  r.local:\n    auth:\n      auth: c2VjcmV0LXZhbHVl\n",
            "configs:\n  r.local:\n    auth:\n      password: secret-value\n",
        ] {
            let e = parse(text).unwrap_err();
            assert!(!e.contains("secret-value") && !e.contains("c2VjcmV0LXZhbHVl"), "{e}");
        }
        let r = parse("configs:\n  r.local:\n    auth: {username: u, password: secret-value}\n").unwrap();
        assert!(!format!("{r:?}").contains("secret-value"));
    }

    #[test]
    fn hosts_accept_names_ports_and_addresses() {
        for ok in ["docker.io", "r.local:5000", "10.0.0.1:443", "[fd00::1]:5000", "[::1]", "my_registry"] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", ":5000", "r.local:0", "r.local:99999", "[::1", "[zz]:1", "-r.local", "r local"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        let e = parse_endpoint("m.local/v2/").unwrap();
        assert_eq!((e.url.as_str(), e.host.as_str()), ("https://m.local/v2", "m.local"));
    }

    #[test]
    fn apply_renders_removes_and_keeps_secrets_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("certs.d");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let r = parse("mirrors:\n  docker.io:\n    endpoint: [m.local]\nconfigs:\n  m.local:\n    auth: {username: u, password: p}\n").unwrap();
        assert!(r.apply(&hosts).unwrap());
        assert!(!r.apply(&hosts).unwrap(), "the same settings change nothing");
        assert_eq!(mode(&hosts), 0o700);
        assert_eq!(mode(&hosts.join("docker.io/hosts.toml")), 0o600);
        assert!(hosts.join("m.local/hosts.toml").exists());
        let fewer = parse("mirrors:\n  docker.io:\n    endpoint: [m.local]\n").unwrap();
        assert!(fewer.apply(&hosts).unwrap());
        assert!(!hosts.join("m.local").exists(), "a host gone from the file loses its dir");
        assert!(Registries::default().apply(&hosts).unwrap());
        assert_eq!(std::fs::read_dir(&hosts).unwrap().count(), 0);
    }

    #[test]
    fn a_bad_file_while_running_keeps_the_last_good_settings() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("certs.d");
        let file = dir.path().join("registries.yaml");
        reload(&file, &hosts, Some("mirrors:\n  docker.io:\n    endpoint: [m.local]\n"), "");
        let good = std::fs::read_to_string(hosts.join("docker.io/hosts.toml")).unwrap();
        reload(&file, &hosts, Some("mirrors:\n  docker.io:\n    endpoint: [ftp://x]\n"), "");
        assert_eq!(std::fs::read_to_string(hosts.join("docker.io/hosts.toml")).unwrap(), good);
        reload(&file, &hosts, None, "");
        assert!(!hosts.join("docker.io").exists());
    }
}
