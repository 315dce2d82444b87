//! An in-memory network for tests: `bind` registers an address, `connect` hands the far end of
//! a tokio duplex pipe to that address's listener, so a whole HTTP exchange (the engine's server
//! and its clients) runs in one process without sockets, under tokio's paused clock if the test
//! asks for it. Addresses are matched exactly (`host:port`); connecting to an unbound one is
//! refused, like a closed port.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::net::BoxFuture;
use super::{BoxConnection, Listener, Network};

/// Pipe buffer per direction.
const PIPE_CAPACITY_BYTES: usize = 1 << 16;
/// Connections waiting to be accepted per listener.
const ACCEPT_BACKLOG_COUNT: usize = 64;

type Backlog = mpsc::Sender<(BoxConnection, String)>;

/// The network; clones share the same address table.
#[derive(Clone, Default)]
pub struct MemNetwork {
    listeners: Arc<Mutex<BTreeMap<String, Backlog>>>,
}

impl MemNetwork {
    /// Forgets `address`: later connections to it are refused (the server went away).
    pub fn unbind(&self, address: &str) {
        self.listeners.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(address);
    }
}

struct MemListener {
    address: String,
    incoming: mpsc::Receiver<(BoxConnection, String)>,
}

impl Listener for MemListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, String)>> {
        Box::pin(
            async move { self.incoming.recv().await.ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionAborted)) },
        )
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.address.clone())
    }
}

impl Network for MemNetwork {
    fn bind(&self, address: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let listeners = self.listeners.clone();
        Box::pin(async move {
            let mut listeners = listeners.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if listeners.get(&address).is_some_and(|backlog| !backlog.is_closed()) {
                return Err(io::Error::from(io::ErrorKind::AddrInUse));
            }
            let (sender, incoming) = mpsc::channel(ACCEPT_BACKLOG_COUNT);
            listeners.insert(address.clone(), sender);
            Ok(Box::new(MemListener { address, incoming }) as Box<dyn Listener>)
        })
    }

    fn connect(&self, address: String) -> BoxFuture<'static, io::Result<BoxConnection>> {
        let backlog = self.listeners.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&address).cloned();
        Box::pin(async move {
            let backlog = backlog.ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let (client, server) = tokio::io::duplex(PIPE_CAPACITY_BYTES);
            backlog
                .send((Box::new(server) as BoxConnection, "mem-client:0".to_string()))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            Ok(Box::new(client) as BoxConnection)
        })
    }
}
