//! Accept loop: serves [`Api`] over any [`Listener`] (tokio sockets in the server, turmoil's in
//! the simulator) with hyper's HTTP/1 connection builder. The `Date` header is off because it
//! reads the OS clock, which would make simulated runs differ.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use super::Api;
use crate::io::{Listener, Spawner};

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// Serves connections until the task is cancelled; at most `connections_max` at once.
pub async fn serve(listener: Box<dyn Listener>, api: Arc<Api>, spawner: Arc<dyn Spawner>, connections_max: usize) {
    serve_with(listener, spawner, connections_max, move |request| {
        let api = api.clone();
        async move { api.handle(request).await }
    })
    .await;
}

/// [`serve`] for any handler (the engine's API, the query frontend).
pub async fn serve_with<H, F>(
    mut listener: Box<dyn Listener>,
    spawner: Arc<dyn Spawner>,
    connections_max: usize,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(connections_max));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return; // The semaphore is never closed; nothing left to do if it were.
        };
        let (connection, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept connection");
                tokio::time::sleep(std::time::Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                continue;
            }
        };
        let handler = handler.clone();
        spawner.spawn(
            "http-connection",
            Box::pin(async move {
                let service = service_fn(move |request| {
                    let answer = handler(request);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let result = hyper::server::conn::http1::Builder::new()
                    .auto_date_header(false)
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(connection), service)
                    .await;
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "http connection ended");
                }
                drop(permit);
            }),
        );
    }
}
