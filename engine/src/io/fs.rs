//! Filesystem seam. The engine reads and writes files only through [`FileSystem`], so that the
//! simulator can substitute turmoil's simulated disk (torn writes, lost unsynced data, disk full).
//!
//! The interface is synchronous: every implementation is a local disk (real or simulated), and
//! storage calls are short appends and whole-file reads. Durability contract: bytes written to
//! an [`AppendFile`] survive a crash only after [`AppendFile::sync`] returns `Ok`; a newly created
//! file's directory entry (and a rename or removal) survives only after [`FileSystem::sync_dir`]
//! on its parent.

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
    /// Renames the file `from` to `to`, atomically replacing `to` if it exists; durable only
    /// after [`FileSystem::sync_dir`] on the parent.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created or removed files) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
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

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
}

/// Joins a directory and a file name; a helper so callers do not build paths by hand.
pub fn child(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
