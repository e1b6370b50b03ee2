//! The state file: a node's [`Snapshot`] kept on disk between runs.
//!
//! Reading and writing are blocking file operations; the driver runs them on tokio's
//! blocking pool (`spawn_blocking`), so a slow disk never holds up the socket.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kad_core::Snapshot;

use crate::error::StateError;

/// How often the state file is written when [`crate::Builder::state_interval`] is not
/// set: every 60 seconds (and when the node stops).
pub const DEFAULT_STATE_INTERVAL: Duration = Duration::from_secs(60);

/// Shortest interval between writes: a zero interval would write in a loop.
pub(crate) const MIN_STATE_INTERVAL: Duration = Duration::from_millis(1);

/// The snapshot in `path`; `None` when there is no file (a fresh node). A file that is
/// there but unreadable, truncated or corrupted is an error: silently starting afresh
/// would lose the node's records and identity.
pub(crate) fn load(path: &Path) -> Result<Option<Snapshot>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::Read(e)),
    };
    Ok(Some(Snapshot::from_bytes(&bytes)?))
}

/// Writes `snapshot` to `path` so that a crash at any moment leaves either the old file
/// or the new one, whole: the bytes go to `<path>.tmp` in the same directory, are synced
/// to disk, and the temporary file is renamed over `path`.
pub(crate) fn save(path: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let tmp = tmp_path(path);
    let mut file = File::create(&tmp)?;
    file.write_all(&snapshot.to_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(path);
    Ok(())
}

/// `<path>.tmp`: next to the file, so the rename stays within one file system.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".tmp");
    PathBuf::from(name)
}

/// Makes the rename itself durable. Best effort: not every platform can open or sync a
/// directory, and the file's contents are already on disk.
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
