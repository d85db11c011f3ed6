//! Listeners: unix sockets and TCP, with TLS and client certificate checks
//! when certificates are given (etcd's flag names): `https://` and, as
//! etcd's client names it, `unixs://`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::service::{routes, Service};
use super::{Store, Tuning};

/// How long a stop waits for clients to hang up.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the datastore listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Unix { path: PathBuf, tls: bool },
    Tcp { addr: String, tls: bool },
}

impl Listen {
    fn tls(&self) -> bool {
        match self {
            Listen::Unix { tls, .. } | Listen::Tcp { tls, .. } => *tls,
        }
    }
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let unix = match (url.strip_prefix("unix://"), url.strip_prefix("unixs://")) {
            (Some(path), _) => Some((path, false)),
            (_, Some(path)) => Some((path, true)),
            _ => None,
        };
        if let Some((path, tls)) = unix {
            if path.is_empty() {
                return Err(format!("{url}: a unix URL needs a path, e.g. unix:///run/k8s/datastore.sock"));
            }
            return Ok(Listen::Unix { path: path.into(), tls });
        }
        let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(format!("{url}: expected unix:///path, unixs:///path, http://host:port or https://host:port")),
        };
        let addr = rest.trim_end_matches('/');
        if addr.rsplit_once(':').map_or(true, |(_, port)| port.parse::<u16>().is_err()) {
            return Err(format!("{url}: expected host:port, e.g. http://127.0.0.1:2379"));
        }
        Ok(Listen::Tcp { addr: addr.to_string(), tls })
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: Vec<Listen>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub tuning: Tuning,
}

/// Opens the store, serves every listener until SIGINT or SIGTERM, then
/// stops accepting and lets in-flight requests finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    crate::signals::terminated().await;
    running.stop().await
}

/// A datastore serving in this process (`k8s server` runs it this way).
pub struct Running {
    store: std::sync::Arc<Store>,
    stop: tokio::sync::watch::Sender<bool>,
    servers: tokio::task::JoinSet<anyhow::Result<()>>,
    sockets: Vec<PathBuf>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, removes sockets.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        tracing::info!("datastore stopping");
        self.store.close();
        let _ = self.stop.send(true);
        // Graceful stop waits for clients to hang up; one that never does
        // (an idle connection) must not hold the process.
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while let Some(res) = self.servers.join_next().await {
                res??;
            }
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => {
                tracing::warn!("clients still connected after {STOP_GRACE:?}; closing them");
                self.servers.abort_all();
            }
        }
        for path in &self.sockets {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// Binds every listener, opens the store and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let tls = tls_config(&config)?;
    let urls = config.listen.iter().map(url).collect();
    let mut bound = Vec::new();
    for l in &config.listen {
        bound.push(bind(l).await?);
    }
    let store = Store::open(config.data_dir.clone(), config.tuning.clone(), urls)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (listen, listener) in config.listen.iter().zip(bound) {
        let routes = routes(Service(store.clone()));
        let mut builder = Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .tcp_nodelay(true);
        if listen.tls() {
            let Some(tls) = tls.clone() else {
                bail!("{}: TLS needs --cert-file and --key-file", url(listen));
            };
            builder = builder.tls_config(tls)?;
        }
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let router = builder.add_routes(routes);
        let name = url(listen);
        servers.spawn(async move {
            let served = match listener {
                Bound::Unix(l) => router.serve_with_incoming_shutdown(UnixListenerStream::new(l), shutdown).await,
                Bound::Tcp(l) => {
                    // tonic sets TCP_NODELAY only on listeners it binds itself;
                    // without it small replies wait ~40 ms for Nagle.
                    let incoming = tonic::transport::server::TcpIncoming::from_listener(l, true, Some(KEEPALIVE))
                        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                    router.serve_with_incoming_shutdown(incoming, shutdown).await
                }
            };
            served.with_context(|| format!("serving {name}"))
        });
    }
    tracing::info!(data_dir = %config.data_dir.display(), listen = ?config.listen.iter().map(url).collect::<Vec<_>>(), "datastore ready");
    let sockets = config
        .listen
        .iter()
        .filter_map(|l| match l {
            Listen::Unix { path, .. } => Some(path.clone()),
            Listen::Tcp { .. } => None,
        })
        .collect();
    Ok(Running { store, stop: stop_tx, servers, sockets })
}

enum Bound {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

async fn bind(listen: &Listen) -> anyhow::Result<Bound> {
    match listen {
        Listen::Unix { path, .. } => {
            remove_stale_socket(path)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let l = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("cannot listen on unix://{}", path.display()))?;
            // Only the owner (root) may talk to the store over the socket.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            Ok(Bound::Unix(l))
        }
        Listen::Tcp { addr, .. } => {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr}: is another etcd or datastore running there? pick another --listen address")
            })?;
            Ok(Bound::Tcp(l))
        }
    }
}

/// A socket file left by a killed process is removed; one that still
/// answers belongs to a running server and is an error.
fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("unix://{} is in use by a running process; stop it or pick another --listen path", path.display());
    }
    std::fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))
}

fn tls_config(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).with_context(|| format!("cannot read the {what} {}", p.display()))
    };
    match (&config.cert_file, &config.key_file) {
        (None, None) => {
            if config.trusted_ca_file.is_some() {
                bail!("--trusted-ca-file needs --cert-file and --key-file too");
            }
            Ok(None)
        }
        (Some(cert), Some(key)) => {
            let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert, "certificate")?, read(key, "key")?));
            if let Some(ca) = &config.trusted_ca_file {
                tls = tls.client_ca_root(Certificate::from_pem(read(ca, "CA certificate")?));
            }
            Ok(Some(tls))
        }
        _ => bail!("--cert-file and --key-file go together"),
    }
}

fn url(l: &Listen) -> String {
    match l {
        Listen::Unix { path, tls } => format!("{}://{}", if *tls { "unixs" } else { "unix" }, path.display()),
        Listen::Tcp { addr, tls } => format!("{}://{addr}", if *tls { "https" } else { "http" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_urls() {
        assert_eq!("unix:///run/x.sock".parse(), Ok(Listen::Unix { path: "/run/x.sock".into(), tls: false }));
        assert_eq!("unixs:///run/x.sock".parse(), Ok(Listen::Unix { path: "/run/x.sock".into(), tls: true }));
        assert!("unixs://".parse::<Listen>().is_err());
        assert_eq!(
            "https://127.0.0.1:2379".parse(),
            Ok(Listen::Tcp { addr: "127.0.0.1:2379".into(), tls: true })
        );
        assert!("127.0.0.1:2379".parse::<Listen>().is_err());
        assert!("http://127.0.0.1".parse::<Listen>().is_err());
        assert!("unix://".parse::<Listen>().is_err());
    }
}
