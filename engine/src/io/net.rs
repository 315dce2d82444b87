//! Network seam: a listener for the HTTP server and a connector for the scraper. The real
//! implementation uses tokio sockets; the simulator's uses turmoil's, which speak the same
//! `AsyncRead`/`AsyncWrite` traits, so hyper runs unchanged over both.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // The sanctioned entry to OS sockets.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A future boxed for use behind a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bidirectional byte stream (a TCP connection, real or simulated).
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection for T {}

/// A boxed connection.
pub type BoxConnection = Box<dyn Connection>;

/// Accepts incoming connections.
pub trait Listener: Send {
    /// Waits for the next connection; returns it and the peer address as text.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, String)>>;
    /// The bound address, e.g. `0.0.0.0:9090`.
    fn local_addr(&self) -> io::Result<String>;
}

/// Binds listeners and opens connections.
pub trait Network: Send + Sync {
    /// Listens on `address` (`host:port`).
    fn bind(&self, address: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
    /// Connects to `address` (`host:port`, resolved by the implementation).
    fn connect(&self, address: String) -> BoxFuture<'static, io::Result<BoxConnection>>;
}

/// Tokio sockets on the operating system's network.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealNetwork;

struct RealListener(tokio::net::TcpListener);

impl Listener for RealListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, String)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as BoxConnection, peer.to_string()))
        })
    }

    fn local_addr(&self) -> io::Result<String> {
        self.0.local_addr().map(|address| address.to_string())
    }
}

impl Network for RealNetwork {
    fn bind(&self, address: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(address).await?;
            Ok(Box::new(RealListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect(&self, address: String) -> BoxFuture<'static, io::Result<BoxConnection>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxConnection)
        })
    }
}
