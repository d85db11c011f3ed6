//! A small reader of OpenSSH's client configuration (`~/.ssh/config`): the
//! keys `k8s up` honours (HostName, User, Port, IdentityFile, IdentitiesOnly,
//! IdentityAgent, ProxyJump) with OpenSSH's rules: `Host` patterns with `*`,
//! `?` and `!`, the first value found wins (IdentityFile accumulates),
//! `Include` with globs. `Match` blocks other than `Match all` are skipped
//! with a warning; a `ProxyCommand` is refused (use ProxyJump).

use std::path::{Path, PathBuf};

/// Includes nested deeper than this are refused (OpenSSH allows 16).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a line came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A problem in the file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub at: Location,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

#[derive(Debug, Clone)]
enum Condition {
    /// `Host a b !c`.
    Host(Vec<String>),
    /// Before the first `Host`, or `Match all`.
    Always,
    /// A `Match` we do not evaluate: never applies.
    Never,
}

#[derive(Debug, Clone)]
struct Entry {
    condition: usize,
    key: String,
    value: String,
    at: Location,
}

/// A parsed configuration (with its includes).
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    conditions: Vec<Condition>,
    entries: Vec<Entry>,
    /// `Match` blocks that were skipped, for one warning at lookup.
    skipped_match: Vec<Location>,
}

/// What the configuration says about one host (`None`: not set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// In order; `~` and `%` tokens not yet expanded.
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    /// `none`, `SSH_AUTH_SOCK` or a socket path.
    pub identity_agent: Option<String>,
    /// `none` or `[user@]host[:port][,…]`.
    pub proxy_jump: Option<String>,
    /// Where an unsupported ProxyCommand was found.
    pub proxy_command: Option<Location>,
    /// Where `Port` was set (to name the line of a bad value).
    pub port_at: Option<Location>,
}

impl SshConfig {
    /// Reads `path` (and what it includes). A missing file is an empty config.
    pub fn load(path: &Path) -> Result<SshConfig, ConfigError> {
        let mut cfg = SshConfig { conditions: vec![Condition::Always], ..Default::default() };
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        match std::fs::read_to_string(path) {
            Ok(text) => cfg.add_text(&text, path, &base, 0)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let at = Location { file: path.to_path_buf(), line: 0 };
                return Err(ConfigError { at, message: format!("cannot read it: {e}") });
            }
        }
        Ok(cfg)
    }

    /// Parses text as if read from `file` (includes relative to `base`).
    #[cfg(test)]
    pub fn parse(text: &str, file: &Path, base: &Path) -> Result<SshConfig, ConfigError> {
        let mut cfg = SshConfig { conditions: vec![Condition::Always], ..Default::default() };
        cfg.add_text(text, file, base, 0)?;
        Ok(cfg)
    }

    fn add_text(&mut self, text: &str, file: &Path, base: &Path, depth: usize) -> Result<(), ConfigError> {
        // Like OpenSSH, each included file starts in the block that includes
        // it, and that block is active again after the file.
        let mut current = self.conditions.len() - 1;
        for (i, raw) in text.lines().enumerate() {
            let at = Location { file: file.to_path_buf(), line: i + 1 };
            let Some((key, args)) = split_line(raw).map_err(|m| ConfigError { at: at.clone(), message: m })? else {
                continue;
            };
            match key.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(ConfigError { at, message: "Host needs at least one pattern".into() });
                    }
                    self.conditions.push(Condition::Host(args));
                    current = self.conditions.len() - 1;
                }
                "match" => {
                    let all = args.len() == 1 && args[0].eq_ignore_ascii_case("all");
                    if !all {
                        self.skipped_match.push(at);
                    }
                    self.conditions.push(if all { Condition::Always } else { Condition::Never });
                    current = self.conditions.len() - 1;
                }
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(ConfigError { at, message: "Include nested too deeply (a loop?)".into() });
                    }
                    for pattern in &args {
                        for path in expand_include(pattern, base) {
                            let Ok(text) = std::fs::read_to_string(&path) else { continue };
                            // The included file's lines belong to the current block.
                            self.conditions.push(self.conditions[current].clone());
                            self.add_text(&text, &path, base, depth + 1)?;
                            self.conditions.push(self.conditions[current].clone());
                            current = self.conditions.len() - 1;
                        }
                    }
                }
                _ => {
                    let value = args.join(" ");
                    if value.is_empty() {
                        return Err(ConfigError { at, message: format!("{key} has no value") });
                    }
                    self.entries.push(Entry { condition: current, key, value, at });
                }
            }
        }
        Ok(())
    }

    /// The settings for `host` (the name as given, before HostName).
    pub fn lookup(&self, host: &str) -> HostConfig {
        static WARNED: std::sync::Once = std::sync::Once::new();
        if let Some(at) = self.skipped_match.first() {
            WARNED.call_once(|| tracing::warn!("{at}: Match blocks are not supported by k8s up; their settings are ignored"));
        }
        let mut h = HostConfig::default();
        for e in &self.entries {
            if !self.applies(e.condition, host) {
                continue;
            }
            let v = e.value.clone();
            match e.key.as_str() {
                "hostname" => set(&mut h.hostname, v),
                "user" => set(&mut h.user, v),
                "port" => {
                    if h.port_at.is_none() {
                        h.port_at = Some(e.at.clone());
                        h.port = v.parse().ok().filter(|p| *p != 0);
                    }
                }
                "identityfile" => h.identity_files.push(v),
                "identitiesonly" => set(&mut h.identities_only, v.eq_ignore_ascii_case("yes")),
                "identityagent" => set(&mut h.identity_agent, v),
                "proxyjump" => set(&mut h.proxy_jump, v),
                "proxycommand" => {
                    if h.proxy_command.is_none() && !v.eq_ignore_ascii_case("none") {
                        h.proxy_command = Some(e.at.clone());
                    }
                }
                _ => {}
            }
        }
        h
    }

    fn applies(&self, condition: usize, host: &str) -> bool {
        match &self.conditions[condition] {
            Condition::Always => true,
            Condition::Never => false,
            Condition::Host(patterns) => host_matches(patterns, host),
        }
    }
}

fn set<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

/// `Key value…`, `Key=value`; `#` comments; double quotes group words.
/// Returns the lower-cased key and the arguments.
fn split_line(raw: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let key_end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let key = line[..key_end].to_ascii_lowercase();
    let mut rest = line[key_end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            break;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(c) => word.push(c),
                    None => return Err(format!("{key}: unterminated quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        args.push(word);
    }
    Ok(Some((key, args)))
}

/// OpenSSH's `Host` rule: some positive pattern matches and no negated one.
pub fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if wildcard_match(&neg.to_ascii_lowercase(), &host.to_ascii_lowercase()) => return false,
            Some(_) => {}
            None => matched |= wildcard_match(&p.to_ascii_lowercase(), &host.to_ascii_lowercase()),
        }
    }
    matched
}

/// `*` any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// An Include argument: `~` expanded, relative to `~/.ssh` (`base`), with
/// wildcards in the last component; sorted like glob(3).
fn expand_include(pattern: &str, base: &Path) -> Vec<PathBuf> {
    let path = match pattern.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None if Path::new(pattern).is_absolute() => PathBuf::from(pattern),
        None => base.join(pattern),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let Ok(read) = std::fs::read_dir(dir) else { return vec![] };
    let mut found: Vec<PathBuf> = read
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !n.starts_with('.') && wildcard_match(&name, &n)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

pub fn home() -> PathBuf {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

/// Expands `~`, `%d` (home), `%h` (host), `%r` (remote user), `%u` (local
/// user), `%p` (port) and `%%` in IdentityFile and IdentityAgent values.
pub fn expand_tokens(value: &str, host: &str, user: &str, port: u16) -> String {
    let home = home();
    let value = match value.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", home.display()),
        None if value == "~" => home.display().to_string(),
        None => value.to_string(),
    };
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('d') => out.push_str(&home.display().to_string()),
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(user),
            Some('p') => out.push_str(&port.to_string()),
            Some('u') => out.push_str(&local_user()),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn local_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".into())
}

/// One hop of a ProxyJump list: `[user@]host[:port]`, `[user@][v6]:port`
/// or `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// `None` for `none`; each hop in order (the first is connected first).
pub fn parse_proxy_jump(value: &str) -> Result<Option<Vec<Jump>>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    value.split(',').map(|hop| parse_jump(hop.trim())).collect::<Result<Vec<_>, _>>().map(Some)
}

fn parse_jump(hop: &str) -> Result<Jump, String> {
    let bad = || format!("ProxyJump hop {hop:?} is not [user@]host[:port]");
    let rest = hop.strip_prefix("ssh://").unwrap_or(hop);
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
        Some(_) => return Err(bad()),
        None => (None, rest),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else if hostport.matches(':').count() == 1 {
        let (h, p) = hostport.split_once(':').ok_or_else(bad)?;
        (h, Some(p))
    } else {
        (hostport, None)
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?),
        None => None,
    };
    Ok(Jump { user, host: host.to_string(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> SshConfig {
        SshConfig::parse(text, Path::new("/home/u/.ssh/config"), Path::new("/home/u/.ssh")).unwrap()
    }

    #[test]
    fn first_match_wins_per_key() {
        let c = cfg("\
# comment
Host cp-1
  HostName 10.0.0.11
  User debian
Host cp-*
  User ignored
  Port 2222
  IdentityFile ~/.ssh/fleet
Host *
  User fallback
  IdentityFile ~/.ssh/other
");
        let h = c.lookup("cp-1");
        assert_eq!(h.hostname.as_deref(), Some("10.0.0.11"));
        assert_eq!(h.user.as_deref(), Some("debian"));
        assert_eq!(h.port, Some(2222));
        assert_eq!(h.identity_files, ["~/.ssh/fleet", "~/.ssh/other"], "IdentityFile accumulates");
        let other = c.lookup("db");
        assert_eq!((other.hostname, other.user.as_deref(), other.port), (None, Some("fallback"), None));
    }

    #[test]
    fn equals_sign_quotes_comments_and_case() {
        let c = cfg("HOST web\n  hostname=web.example.com\n  IdentityFile \"/keys/my key\" # the key\n  port = 22\n");
        let h = c.lookup("WEB");
        assert_eq!(h.hostname.as_deref(), Some("web.example.com"));
        assert_eq!(h.identity_files, ["/keys/my key"]);
        assert_eq!(h.port, Some(22));
    }

    #[test]
    fn patterns() {
        let p = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(host_matches(&p("*.example.com"), "a.example.com"));
        assert!(!host_matches(&p("*.example.com"), "example.com"));
        assert!(host_matches(&p("10.0.0.?"), "10.0.0.7"));
        assert!(!host_matches(&p("10.0.0.?"), "10.0.0.17"));
        assert!(host_matches(&p("* !bastion"), "cp-1"));
        assert!(!host_matches(&p("* !bastion"), "bastion"));
        assert!(!host_matches(&p("!bastion"), "cp-1"), "a negation alone matches nothing");
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn settings_before_any_host_apply_to_all() {
        let c = cfg("User early\nHost x\n  User late\n");
        assert_eq!(c.lookup("x").user.as_deref(), Some("early"));
    }

    #[test]
    fn match_blocks_are_skipped_except_match_all() {
        let c = cfg("Match host x exec true\n  User m\nMatch all\n  Port 2200\n");
        let h = c.lookup("x");
        assert_eq!((h.user, h.port), (None, Some(2200)));
    }

    #[test]
    fn proxy_settings() {
        let c = cfg("Host a\n  ProxyJump ops@jump:2222,[fd00::1]:22\nHost b\n  ProxyCommand ssh -W %h:%p j\n");
        let a = c.lookup("a");
        let hops = parse_proxy_jump(a.proxy_jump.as_deref().unwrap()).unwrap().unwrap();
        assert_eq!(hops[0], Jump { user: Some("ops".into()), host: "jump".into(), port: Some(2222) });
        assert_eq!(hops[1], Jump { user: None, host: "fd00::1".into(), port: Some(22) });
        assert_eq!(c.lookup("b").proxy_command.unwrap().line, 4);
        assert_eq!(parse_proxy_jump("none").unwrap(), None);
        assert_eq!(parse_proxy_jump("ssh://u@h").unwrap().unwrap()[0].user.as_deref(), Some("u"));
        assert_eq!(parse_proxy_jump("fd00::1").unwrap().unwrap()[0].host, "fd00::1");
        for bad in ["@h", "h:x", "h:0", "[::1", "a b"] {
            assert!(parse_proxy_jump(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_lines_name_their_place() {
        let e = SshConfig::parse("Host x\n  User \"oops\n", Path::new("/c"), Path::new("/")).unwrap_err();
        assert_eq!(e.to_string(), "/c:2: user: unterminated quote");
        let e = SshConfig::parse("Host\n", Path::new("/c"), Path::new("/")).unwrap_err();
        assert_eq!(e.at.line, 1);
    }

    #[test]
    fn bad_port_keeps_its_line() {
        let h = cfg("Host x\n  Port 99999\n").lookup("x");
        assert_eq!((h.port, h.port_at.map(|a| a.line)), (None, Some(2)));
    }

    #[test]
    fn include_with_glob_in_the_current_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(dir.path().join("conf.d/10-a.conf"), "Host a\n  User from-a\n").unwrap();
        std::fs::write(dir.path().join("conf.d/20-b.conf"), "Port 2022\n").unwrap();
        let main = dir.path().join("config");
        std::fs::write(&main, "Include conf.d/*.conf\nHost *\n  User star\n").unwrap();
        let c = SshConfig::load(&main).unwrap();
        assert_eq!(c.lookup("a").user.as_deref(), Some("from-a"));
        assert_eq!(c.lookup("b").user.as_deref(), Some("star"));
        // Each included file starts in the including block (here: all hosts),
        // not after the previous file's `Host a`.
        assert_eq!(c.lookup("b").port, Some(2022));
        assert!(SshConfig::load(&dir.path().join("absent")).unwrap().lookup("a").user.is_none());
    }

    #[test]
    fn tokens() {
        std::env::var_os("HOME").map(|home| {
            let home = PathBuf::from(home);
            assert_eq!(expand_tokens("~/.ssh/%h-%r-%p%%", "cp", "ops", 22), format!("{}/.ssh/cp-ops-22%", home.display()));
            assert_eq!(expand_tokens("%d/k", "cp", "ops", 22), format!("{}/k", home.display()));
        });
    }
}
