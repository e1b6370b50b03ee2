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

/// The state file's behaviour, tested once here for both adapters (each adapter keeps one
/// smoke test: a node stopped and listened again from its file).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Node, SnapshotError};

    fn snapshot(key: &str) -> Snapshot {
        #[allow(clippy::disallowed_methods)]
        let now = std::time::Instant::now();
        Node::new(Config::default(), NodeId::for_key(key), [3; 32], now).snapshot(now)
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// What is saved is what is opened again; each write replaces the file whole and
    /// leaves no temporary file behind.
    #[test]
    fn a_saved_snapshot_opens_again_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.state");
        let fresh = open(path.clone(), None).expect("a missing file is a fresh node");
        assert!(fresh.restored.is_none());
        let (first, second) = (snapshot("first"), snapshot("second"));
        create(&path, &first).expect("create");
        assert!(write(&path, &second));
        assert_eq!(files_in(dir.path()), ["node.state", "node.state.lock"]);
        drop(fresh);
        let back = open(path, Some(second.id)).expect("open");
        assert_eq!(back.restored, Some(second));
    }

    /// A bad file is a clear error naming the file and the reason, and is left as it
    /// was: a node never silently starts afresh over its old state.
    #[test]
    fn a_corrupt_truncated_or_foreign_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = snapshot("good").to_bytes();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 0x20;
        let cases: [(&str, Vec<u8>, SnapshotError); 4] = [
            (
                "truncated",
                bytes[..bytes.len() - 7].to_vec(),
                SnapshotError::Checksum,
            ),
            ("corrupt", flipped, SnapshotError::Checksum),
            ("empty", Vec::new(), SnapshotError::BadMagic),
            ("foreign", b"{\"id\": 1}".to_vec(), SnapshotError::BadMagic),
        ];
        for (name, contents, reason) in cases {
            let path = dir.path().join(format!("{name}.state"));
            fs::write(&path, &contents).expect("write");
            let err = open(path.clone(), None).expect_err(name);
            let message = err.to_string();
            match err {
                Error::State {
                    path: p,
                    source: StateError::Invalid(r),
                } => {
                    assert_eq!(p, path);
                    assert_eq!(r, reason, "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
            assert!(message.contains(&*path.to_string_lossy()), "{message}");
            assert_eq!(fs::read(&path).expect("read"), contents, "{name} untouched");
        }
    }

    /// Another node's file is refused (its own id is fine), and so is a path that cannot
    /// be written.
    #[test]
    fn another_nodes_file_and_an_unwritable_path_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.state");
        let mine = snapshot("mine");
        create(&path, &mine).expect("create");
        let given = NodeId::for_key("someone else");
        let err = open(path.clone(), Some(given)).expect_err("another id");
        assert!(
            matches!(
                &err,
                Error::State { source: StateError::WrongNodeId { file, given: g }, .. }
                    if *file == mine.id && *g == given
            ),
            "{err:?}"
        );
        drop(open(path, Some(mine.id)).expect("the same id"));

        let nowhere = dir.path().join("no such directory").join("node.state");
        let err = open(nowhere.clone(), None).expect_err("no directory");
        assert!(
            matches!(&err, Error::State { path, source: StateError::Write(_) } if *path == nowhere),
            "{err:?}"
        );
        let err = create(&nowhere, &mine).expect_err("no directory");
        assert!(
            matches!(
                &err,
                Error::State {
                    source: StateError::Write(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!write(&nowhere, &mine));
    }

    /// Two nodes never share a state file: while one holds it, a second open fails with
    /// `Locked`; once the first lets go, the file is free again.
    #[test]
    fn a_state_file_in_use_is_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.state");
        let first = open(path.clone(), None).expect("first");
        let err = open(path.clone(), None).expect_err("a second node on the same file");
        assert!(
            matches!(&err, Error::State { path: p, source: StateError::Locked { lock } }
                if *p == path && *lock == dir.path().join("node.state.lock")),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("another node is using it"),
            "{err}"
        );
        drop(first);
        drop(open(path, None).expect("free again"));
    }
}
