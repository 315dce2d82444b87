//! A minimal HTTP/1 client and server plumbing over turmoil sockets, for the simulator's own
//! hosts (the generator and the query client). The engine uses its own code paths.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// GETs `path_and_query` from `address` on a fresh connection, within `timeout`.
pub async fn get(address: &str, path_and_query: &str, timeout: Duration) -> anyhow::Result<(StatusCode, Bytes)> {
    tokio::time::timeout(timeout, async {
        let stream = turmoil::net::TcpStream::connect(address).await?;
        let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        let request = Request::get(path_and_query).header(hyper::header::HOST, address).body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out after {} ms", timeout.as_millis()))?
}
