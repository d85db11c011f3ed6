//! Where a server keeps its files.
//!
//! `<data-dir>` (default /var/lib/k8s): `bin/<hash>/` components, `pki/`,
//! `kubeconfigs/`, `server/db/` (the datastore), `server/manifests/`
//! (addons), `agent/` (containerd, kubelet and CNI state), `logs/`.
//! `/run/k8s`: sockets and the status file, gone at reboot.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub const RUN_DIR: &str = "/run/k8s";

pub struct Layout {
    data_dir: PathBuf,
    run_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout { data_dir: data_dir.into(), run_dir: RUN_DIR.into() }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.clone()
    }
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }
    pub fn kubeconfig_dir(&self) -> PathBuf {
        self.data_dir.join("kubeconfigs")
    }
    pub fn datastore_dir(&self) -> PathBuf {
        self.data_dir.join("server/db")
    }
    pub fn manifests_dir(&self) -> PathBuf {
        self.data_dir.join("server/manifests")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
    pub fn datastore_socket(&self) -> PathBuf {
        self.run_dir.join("datastore.sock")
    }
    pub fn status_file(&self) -> PathBuf {
        self.run_dir.join("status.json")
    }

    /// Fails with the reason when the data dir cannot be created or written.
    pub fn check_writable(&self) -> anyhow::Result<()> {
        let dir = &self.data_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data dir {}", dir.display()))?;
        tempfile::tempfile_in(dir).with_context(|| {
            format!("cannot write in the data dir {} (read-only filesystem or permissions?); pick another with --data-dir", dir.display())
        })?;
        Ok(())
    }

    /// One server per data dir: holds an exclusive lock while it runs.
    pub fn lock(&self) -> anyhow::Result<std::fs::File> {
        let path = self.data_dir.join("server.lock");
        let mut f = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a file we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!("another k8s server (pid {}) is using {}; stop it first", holder.trim(), self.data_dir.display());
        }
        f.set_len(0)?;
        write!(f, "{}", std::process::id())?;
        Ok(f)
    }
}
