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

use crate::server::{Error, StateError};
use crate::{NodeId, Snapshot};

/// A node's state file, opened: locked, and read.
#[derive(Debug)]
pub struct Opened {
    /// The state file.
    pub path: PathBuf,
    /// Its lock, held until this is dropped (the adapter keeps it until its last write).
    pub lock: File,
    /// The snapshot in it; `None` for a fresh node.
    pub restored: Option<Snapshot>,
}

/// Takes the lock of the state file at `path` ([`lock`]) and reads it ([`load`]); a
/// snapshot of another node than `id` (when given) is refused.
pub fn open(path: PathBuf, id: Option<NodeId>) -> Result<Opened, Error> {
    let err = |source| Error::State {
        path: path.clone(),
        source,
    };
    let lock = self::lock(&path).map_err(err)?;
    let restored = load(&path).map_err(err)?;
    if let (Some(given), Some(snapshot)) = (id, &restored) {
        if given != snapshot.id {
            return Err(err(StateError::WrongNodeId {
                file: snapshot.id,
                given,
            }));
        }
    }
    Ok(Opened {
        path,
        lock,
        restored,
    })
}

/// The first write of a fresh node's state: its id is on disk before anything else
/// happens, and a path that cannot be written is an error of `listen` rather than a log
/// line later.
pub fn create(path: &Path, snapshot: &Snapshot) -> Result<(), Error> {
    save(path, snapshot).map_err(|e| Error::State {
        path: path.to_owned(),
        source: StateError::Write(e),
    })
}

/// A periodic or last write ([`save`]): whether it went well; a failure is logged.
pub fn write(path: &Path, snapshot: &Snapshot) -> bool {
    let result = save(path, snapshot);
    if let Err(e) = &result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the state file");
    }
    result.is_ok()
}

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
