//! The state file: a node's [`Snapshot`] kept on disk between runs.
//!
//! Reading and writing are blocking file operations; an adapter runs them on its runtime's
//! blocking pool (tokio's `spawn_blocking`, `smol::unblock`), so a slow disk never holds up
//! the socket.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::server::StateError;
use crate::Snapshot;

/// Takes the exclusive lock of the state file at `path`: an advisory lock on
/// `<path>.lock` (the state file itself is replaced by every write, so it cannot hold a
/// lock), held until the returned file is dropped, which the operating system also does
/// when the process dies. A lock file that cannot be created is a path that cannot be
/// written ([`StateError::Write`]).
pub fn lock(path: &Path) -> Result<File, StateError> {
    let lock_path = with_suffix(path, ".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(StateError::Write)?;
    match FileExt::try_lock_exclusive(&file) {
        Ok(true) => Ok(file),
        Ok(false) => Err(StateError::Locked { lock: lock_path }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            Err(StateError::Locked { lock: lock_path })
        }
        Err(e) => Err(StateError::Lock(e)),
    }
}

/// The snapshot in `path`; `None` when there is no file (a fresh node). A file that is
/// there but unreadable, truncated or corrupted is an error: silently starting afresh
/// would lose the node's records and identity.
pub fn load(path: &Path) -> Result<Option<Snapshot>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::Read(e)),
    };
    Ok(Some(Snapshot::from_bytes(&bytes)?))
}

/// Writes `snapshot` to `path` so that a crash at any moment leaves either the old file
/// or the new one, whole: the bytes go to a temporary file in the same directory
/// (`tempfile`), are synced to disk, and the file is renamed over `path` (`persist`).
pub fn save(path: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(&with_suffix(
            Path::new(path.file_name().unwrap_or_default()),
            ".",
        ))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(&snapshot.to_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    // Makes the rename itself durable. Best effort: not every platform can open or sync
    // a directory, and the file's contents are already on disk.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `<path><suffix>`: next to the file.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}
