//! Filesystem seam. The engine reads and writes files only through [`FileSystem`], so that the
//! simulator can substitute turmoil's simulated disk (torn writes, lost unsynced data, disk full).
//!
//! The interface is synchronous: every implementation is a local disk (real or simulated), and
//! storage calls are short appends and whole-file reads. Durability contract: bytes written to
//! an [`AppendFile`] survive a crash only after [`AppendFile::sync`] returns `Ok`; a newly created
//! file's directory entry (and a rename or removal) survives only after [`FileSystem::sync_dir`]
//! on its parent. Positional reads ([`FileSystem::read_at`]) serve head chunks by reference
//! without reading whole files.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // The sanctioned entry to the OS filesystem.

use std::io;
use std::path::{Path, PathBuf};

/// A file opened for appending.
pub trait AppendFile: Send {
    /// Appends all of `bytes` at the end of the file.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
}

/// A file opened for positional reads; it sees bytes appended after it was opened.
pub trait RandomAccessFile: Send + Sync {
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Current size in bytes.
    fn size(&self) -> io::Result<u64>;
}

/// An exclusive lock on a file, held until dropped.
pub trait FileLock: Send + Sync {}

/// Directory and file operations the engine needs.
pub trait FileSystem: Send + Sync {
    /// Creates `path` and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries in `path`, sorted, so callers never see directory order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whole contents of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens `path` for appending, creating it when missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Shortens (or extends with zeros) the file at `path` to `size` bytes and syncs it.
    fn truncate(&self, path: &Path, size: u64) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames the file or directory `from` to `to`, atomically replacing `to` if it exists; durable only
    /// after [`FileSystem::sync_dir`] on the parent.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the directory at `path` with everything in it; `NotFound` when it does not exist.
    /// Durable only after [`FileSystem::sync_dir`] on the parent.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created or removed files) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    // Positional reads (head chunk files): one contiguous block.
    /// Fills `buf` with the bytes of the file at `path` starting at `offset`; fails with
    /// `UnexpectedEof` when the file ends first. Sees bytes written but not yet synced.
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Current size of the file at `path` in bytes.
    fn file_size(&self, path: &Path) -> io::Result<u64>;
    /// Opens `path` for positional reads (kept open by callers that read it often).
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn RandomAccessFile>>;
    /// Creates `path` if missing and takes an exclusive lock on it without waiting; fails with
    /// `ErrorKind::WouldBlock` while another holder (another process, for the real disk) has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>>;
}

/// The operating system's filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFileSystem;

struct RealAppendFile(std::fs::File);

impl AppendFile for RealAppendFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.0, bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

struct RealRandomAccessFile(std::fs::File);

impl RandomAccessFile for RealRandomAccessFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// `flock`-style lock on a real file; the OS releases it when the file closes, even after `kill -9`.
struct RealFileLock(#[allow(dead_code)] std::fs::File); // Held for its Drop.

impl FileLock for RealFileLock {}

impl FileSystem for RealFileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Box::new(RealAppendFile(file)))
    }

    fn truncate(&self, path: &Path, size: u64) -> io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(size)?;
        file.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(path)?, buf, offset)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn RandomAccessFile>> {
        Ok(Box::new(RealRandomAccessFile(std::fs::File::open(path)?)))
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealFileLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(std::fs::TryLockError::Error(error)) => Err(error),
        }
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
}

/// Joins a directory and a file name; a helper so callers do not build paths by hand.
pub fn child(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFileSystem;

    /// Both filesystems read ranges alike: exact ranges, `UnexpectedEof` past the end,
    /// `NotFound` for a missing file.
    #[track_caller]
    fn check_read_at(fs: &dyn FileSystem, dir: &Path) {
        fs.create_dir_all(dir).unwrap();
        let path = child(dir, "file");
        let mut file = fs.open_append(&path).unwrap();
        file.write_all(b"0123456789").unwrap();
        assert_eq!(fs.file_size(&path).unwrap(), 10);
        let mut buf = [0_u8; 4];
        fs.read_at(&path, 3, &mut buf).unwrap();
        assert_eq!(&buf, b"3456");
        fs.read_at(&path, 6, &mut buf).unwrap();
        assert_eq!(&buf, b"6789");
        assert_eq!(fs.read_at(&path, 7, &mut buf).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        fs.read_at(&path, 10, &mut []).unwrap();
        let missing = child(dir, "missing");
        assert_eq!(fs.file_size(&missing).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.read_at(&missing, 0, &mut buf).unwrap_err().kind(), io::ErrorKind::NotFound);
        fs.remove_file(&path).unwrap();
    }

    #[test]
    fn real_file_locks_are_exclusive_until_dropped() {
        let dir = std::env::temp_dir().join(format!("engine-lock-test-{}", std::process::id()));
        RealFileSystem.create_dir_all(&dir).unwrap();
        let path = dir.join("lock");
        let held = RealFileSystem.lock(&path).unwrap();
        let refused = RealFileSystem.lock(&path).err().map(|error| error.kind());
        assert_eq!(refused, Some(io::ErrorKind::WouldBlock));
        drop(held);
        drop(RealFileSystem.lock(&path).unwrap());
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }

    /// Both filesystems rename and remove whole directories alike.
    #[track_caller]
    fn check_directories(fs: &dyn FileSystem, dir: &Path) {
        let from = child(dir, "block.tmp");
        let to = child(dir, "block");
        fs.create_dir_all(&child(&from, "chunks")).unwrap();
        for name in ["index", "chunks/000001"] {
            fs.open_append(&from.join(name)).unwrap().write_all(name.as_bytes()).unwrap();
        }
        fs.rename(&from, &to).unwrap();
        assert_eq!(fs.read(&to.join("chunks/000001")).unwrap(), b"chunks/000001");
        assert_eq!(fs.read(&to.join("index")).unwrap(), b"index");
        assert_eq!(fs.read(&from.join("index")).unwrap_err().kind(), io::ErrorKind::NotFound);
        fs.remove_dir_all(&to).unwrap();
        assert_eq!(fs.read(&to.join("index")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.remove_dir_all(&to).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.rename(&from, &to).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn directories_rename_and_remove_alike_on_real_and_memory_filesystems() {
        let dir = std::env::temp_dir().join(format!("engine-fs-dirs-{}", std::process::id()));
        check_directories(&RealFileSystem, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        check_directories(&MemFileSystem::default(), Path::new("/mem"));
    }

    #[test]
    fn positional_reads_agree_on_real_and_memory_filesystems() {
        let dir = std::env::temp_dir().join(format!("engine-fs-read-at-{}", std::process::id()));
        check_read_at(&RealFileSystem, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        check_read_at(&MemFileSystem::default(), Path::new("/mem"));
    }
}
