//! Reading and atomically writing the PKI's files.

use std::fs::{self, Permissions};
use std::io;
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

/// See [`crate::fsutil::replace`]; errors name the file.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    crate::fsutil::replace(path, data, mode).map_err(|e| PkiError::io(path, "write", e))
}

fn fix_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(|e| PkiError::io(path, "stat", e))?;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|e| PkiError::io(path, "chmod", e))?;
    }
    Ok(())
}
