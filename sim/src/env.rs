//! The engine's environment seams implemented on turmoil: virtual clock, simulated network and
//! simulated disk (turmoil's `unstable-fs`: unsynced data is lost when a host crashes). Tasks
//! are spawned with tokio's spawner, which under turmoil runs on the host's own runtime and is
//! cancelled with the host.

use std::io;
use std::path::Path;
use std::sync::Arc;

use engine::io::fs::RandomAccessFile;
use engine::io::net::BoxFuture;
use engine::io::{
    AppendFile, BoxConnection, Clock, Env, FileLock, FileSystem, Listener, Network, RandomStreams, TokioSpawner,
};
use turmoil::fs::shim::std::fs as sim_fs;

/// Builds the environment for an engine running inside the current turmoil host.
pub fn sim_env(seed: u64) -> Env {
    sim_env_with_disk(seed, DiskFaults::default())
}

/// [`sim_env`] with a disk whose faults the harness switches (`disk`).
pub fn sim_env_with_disk(seed: u64, disk: DiskFaults) -> Env {
    Env {
        clock: Arc::new(SimClock),
        fs: Arc::new(SimFileSystem { disk, ..SimFileSystem::default() }),
        net: Arc::new(SimNetwork),
        spawner: Arc::new(TokioSpawner),
        random: RandomStreams::new(seed),
    }
}

/// Turmoil's logical wall clock (`Builder::epoch` plus elapsed virtual time).
pub struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        turmoil::since_epoch().map(|since_epoch| since_epoch.as_millis() as i64).unwrap_or(0)
    }
}

/// Turmoil's simulated TCP.
pub struct SimNetwork;

struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, String)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(stream) as BoxConnection, peer.to_string()))
        })
    }

    fn local_addr(&self) -> io::Result<String> {
        self.0.local_addr().map(|address| address.to_string())
    }
}

impl Network for SimNetwork {
    fn bind(&self, address: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(address).await?;
            Ok(Box::new(SimListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect(&self, address: String) -> BoxFuture<'static, io::Result<BoxConnection>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(address).await?;
            Ok(Box::new(stream) as BoxConnection)
        })
    }
}

/// Turmoil's per-host simulated filesystem. Locks live in the instance, which an engine
/// incarnation owns: a crash drops them with the host's tasks, as the OS drops a dead process'
/// `flock`s.
#[derive(Default)]
pub struct SimFileSystem {
    locked: Arc<std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>>>,
    disk: DiskFaults,
}

/// Disk faults of one host, switched by the harness at virtual times and shared by every
/// incarnation of the host (a full disk stays full across a crash).
#[derive(Clone, Debug, Default)]
pub struct DiskFaults {
    full: Arc<std::sync::atomic::AtomicBool>,
}

impl DiskFaults {
    /// Fills or frees the disk. While full, an append writes only the first half of its bytes
    /// (what still fitted) and fails with `StorageFull`, as a filling disk leaves a torn write.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_full(&self) -> bool {
        self.full.load(std::sync::atomic::Ordering::Relaxed)
    }
}

struct SimRandomAccessFile(sim_fs::File);

impl RandomAccessFile for SimRandomAccessFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

struct SimFileLock {
    locked: Arc<std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>>>,
    path: std::path::PathBuf,
}

impl FileLock for SimFileLock {}

impl Drop for SimFileLock {
    fn drop(&mut self) {
        self.locked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.path);
    }
}

struct SimAppendFile(sim_fs::File, DiskFaults);

impl AppendFile for SimAppendFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.1.is_full() {
            io::Write::write_all(&mut self.0, &bytes[..bytes.len() / 2])?;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device (simulated)"));
        }
        io::Write::write_all(&mut self.0, bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl FileSystem for SimFileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        sim_fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in sim_fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        sim_fs::read(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = sim_fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Box::new(SimAppendFile(file, self.disk.clone())))
    }

    fn truncate(&self, path: &Path, size: u64) -> io::Result<()> {
        let file = sim_fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(size)?;
        file.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        sim_fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        sim_fs::rename(from, to)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        sim_fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        sim_fs::sync_dir(path)
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        // turmoil's shim implements the real FileExt, so positional reads go through its disk.
        std::os::unix::fs::FileExt::read_exact_at(&sim_fs::File::open(path)?, buf, offset)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn RandomAccessFile>> {
        Ok(Box::new(SimRandomAccessFile(sim_fs::File::open(path)?)))
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let mut locked = self.locked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !locked.insert(path.to_path_buf()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        sim_fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        Ok(Box::new(SimFileLock { locked: self.locked.clone(), path: path.to_path_buf() }))
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(sim_fs::metadata(path)?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positional reads and sizes through turmoil's simulated disk, as the head chunk reader
    /// uses them.
    #[test]
    fn sim_filesystem_reads_ranges() {
        let mut sim = turmoil::Builder::new().build();
        sim.client("disk", async {
            let fs = SimFileSystem::default();
            let dir = Path::new("/data");
            fs.create_dir_all(dir)?;
            let path = dir.join("file");
            let mut file = fs.open_append(&path)?;
            file.write_all(b"0123456789")?;
            file.sync()?;
            assert_eq!(fs.file_size(&path)?, 10);
            let mut buf = [0_u8; 4];
            fs.read_at(&path, 6, &mut buf)?;
            assert_eq!(&buf, b"6789");
            assert_eq!(fs.read_at(&path, 7, &mut buf).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(fs.file_size(&dir.join("missing")).unwrap_err().kind(), io::ErrorKind::NotFound);
            Ok(())
        });
        sim.run().unwrap();
    }
}
