//! An in-memory filesystem for tests and tools. It models what durability depends on: bytes not
//! yet synced are lost by [`MemFileSystem::crash`], and a write can be made to tear and fail.
//! Directories are implicit (a file's parent path); renames and removals are durable at once.
//! Deterministic: files are kept in a BTreeMap.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fs::{AppendFile, FileLock, FileSystem, RandomAccessFile};

#[derive(Default)]
struct MemFile {
    data: Vec<u8>,
    synced_size: usize,
}

#[derive(Default)]
struct MemState {
    files: BTreeMap<PathBuf, MemFile>,
    fail_next_write: bool,
    fail_next_truncate: bool,
    fail_next_rename: bool,
    locked: std::collections::BTreeSet<PathBuf>,
    /// Total bytes the disk holds; `None` for unlimited.
    capacity_size: Option<usize>,
}

/// A filesystem in memory. Cloning shares the same files.
#[derive(Clone, Default)]
pub struct MemFileSystem(Arc<Mutex<MemState>>);

impl MemFileSystem {
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Power loss: everything not synced disappears.
    pub fn crash(&self) {
        for file in self.state().files.values_mut() {
            let synced_size = file.synced_size;
            file.data.truncate(synced_size);
        }
    }

    /// Changes a file's bytes in place, durably (bit rot, a torn tail).
    pub fn mutate(&self, path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.state();
        if let Some(file) = state.files.get_mut(path) {
            change(&mut file.data);
            file.synced_size = file.data.len();
        }
    }

    /// Limits the disk to `capacity_size` bytes over all files (`None`: unlimited). A write that
    /// does not fit lands as far as it fits and fails with `StorageFull`, as a full disk does.
    pub fn set_capacity(&self, capacity_size: Option<usize>) {
        self.state().capacity_size = capacity_size;
    }

    /// Bytes held over all files.
    pub fn used_size(&self) -> usize {
        self.state().files.values().map(|file| file.data.len()).sum()
    }

    /// Makes the next write tear: half its bytes land, then it fails.
    pub fn fail_next_write(&self) {
        self.state().fail_next_write = true;
    }

    /// Makes the next truncate fail (a repair attempt after a failed write, say).
    pub fn fail_next_truncate(&self) {
        self.state().fail_next_truncate = true;
    }

    /// Makes the next rename fail (a repair that cannot replace a segment).
    pub fn fail_next_rename(&self) {
        self.state().fail_next_rename = true;
    }

    /// Every file path, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state().files.keys().cloned().collect()
    }
}

struct MemAppendFile {
    fs: MemFileSystem,
    path: PathBuf,
}

impl AppendFile for MemAppendFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.fs.state();
        let fail = std::mem::take(&mut state.fail_next_write);
        let free_size = state
            .capacity_size
            .map(|capacity| capacity.saturating_sub(state.files.values().map(|file| file.data.len()).sum::<usize>()));
        let file = state.files.entry(self.path.clone()).or_default();
        if let Some(free_size) = free_size.filter(|free_size| *free_size < bytes.len()) {
            file.data.extend_from_slice(&bytes[..free_size]);
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        if fail {
            // A torn write: half the bytes land, then the device fails.
            file.data.extend_from_slice(&bytes[..bytes.len() / 2]);
            return Err(io::Error::other("injected write failure"));
        }
        file.data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = self.fs.state();
        let file = state.files.entry(self.path.clone()).or_default();
        file.synced_size = file.data.len();
        Ok(())
    }
}

struct MemRandomAccessFile {
    fs: MemFileSystem,
    path: PathBuf,
}

impl RandomAccessFile for MemRandomAccessFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.fs.read_at(&self.path, offset, buf)
    }

    fn size(&self) -> io::Result<u64> {
        self.fs.file_size(&self.path)
    }
}

struct MemFileLock {
    fs: MemFileSystem,
    path: PathBuf,
}

impl FileLock for MemFileLock {}

impl Drop for MemFileLock {
    fn drop(&mut self) {
        self.fs.state().locked.remove(&self.path);
    }
}

impl FileSystem for MemFileSystem {
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        // Directories are implicit: a file's ancestors below `path` show as entries too.
        let mut names: Vec<String> = self
            .state()
            .files
            .keys()
            .filter_map(|file| file.strip_prefix(path).ok())
            .filter_map(|relative| relative.components().next())
            .map(|first| first.as_os_str().to_string_lossy().into_owned())
            .collect();
        names.dedup(); // Keys are sorted, so equal first components are adjacent.
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.state()
            .files
            .get(path)
            .map(|file| file.data.clone())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        self.state().files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(MemAppendFile { fs: self.clone(), path: path.to_path_buf() }))
    }

    fn truncate(&self, path: &Path, size: u64) -> io::Result<()> {
        let mut state = self.state();
        if std::mem::take(&mut state.fail_next_truncate) {
            return Err(io::Error::other("injected truncate failure"));
        }
        let file = state.files.get_mut(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        file.data.truncate(size as usize);
        file.synced_size = file.data.len();
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.state().files.remove(path).map(|_| ()).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        if std::mem::take(&mut state.fail_next_rename) {
            return Err(io::Error::other("injected rename failure"));
        }
        if let Some(file) = state.files.remove(from) {
            state.files.insert(to.to_path_buf(), file);
            return Ok(());
        }
        // A directory: every file under it moves (directories are implicit).
        let moved: Vec<PathBuf> = state.files.keys().filter(|path| path.starts_with(from)).cloned().collect();
        if moved.is_empty() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        state.files.retain(|path, _| !path.starts_with(to));
        for path in moved {
            if let (Some(file), Ok(rest)) = (state.files.remove(&path), path.strip_prefix(from)) {
                state.files.insert(to.join(rest), file);
            }
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        let before_count = state.files.len();
        state.files.retain(|file, _| !file.starts_with(path));
        if state.files.len() == before_count {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(())
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let state = self.state();
        let file = state.files.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .filter(|range| range.end <= file.data.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&file.data[range]);
        Ok(())
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn RandomAccessFile>> {
        self.file_size(path)?; // NotFound as a real open would
        Ok(Box::new(MemRandomAccessFile { fs: self.clone(), path: path.to_path_buf() }))
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let mut state = self.state();
        if !state.locked.insert(path.to_path_buf()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        state.files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(MemFileLock { fs: self.clone(), path: path.to_path_buf() }))
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let state = self.state();
        let file = state.files.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(file.data.len() as u64)
    }
}
