//! Reading and atomically writing the PKI's files.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::PkiError;

/// Private keys and kubeconfigs (they embed a key).
pub const SECRET: u32 = 0o600;
/// Certificates and public keys.
pub const PUBLIC: u32 = 0o644;

/// The file's text, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io(path, "read", e)),
    }
}

/// Creates `dir` (only the last component gets `mode`; parents get the defaults).
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), PkiError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| PkiError::io(parent, "create directory", e))?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(PkiError::io(dir, "create directory", e)),
        _ => Ok(()),
    }
}

/// Writes `data` with `mode` unless the file already holds exactly that, so a
/// re-run leaves files (and their mtimes) alone; a wrong mode is corrected.
/// Returns whether the contents were written.
pub fn write_if_changed(path: &Path, data: &[u8], mode: u32) -> Result<bool, PkiError> {
    match fs::read(path) {
        Ok(existing) if existing == data => {
            fix_mode(path, mode)?;
            Ok(false)
        }
        Ok(_) => write_atomic(path, data, mode).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_atomic(path, data, mode).map(|()| true),
        Err(e) => Err(PkiError::io(path, "read", e)),
    }
}

/// Temp file in the same directory (so rename is atomic; tempfile creates it
/// 0600, so a key is never readable by others, even briefly), exact mode, fsync,
/// rename, fsync the directory (so the rename survives a crash).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("pki");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| PkiError::io(dir, "create a temporary file in", e))?;
    let written = (|| {
        tmp.as_file().set_permissions(Permissions::from_mode(mode))?; // umask-proof
        tmp.write_all(data)?;
        tmp.as_file().sync_all()
    })();
    written.map_err(|e| PkiError::io(tmp.path(), "write", e))?;
    tmp.persist(path).map_err(|e| PkiError::io(path, "replace", e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| PkiError::io(dir, "sync", e))
}

fn fix_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(|e| PkiError::io(path, "stat", e))?;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|e| PkiError::io(path, "chmod", e))?;
    }
    Ok(())
}
