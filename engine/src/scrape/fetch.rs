//! One HTTP GET of a target's exposition, over the network seam, with a body size limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::{ScrapeError, Target};
use crate::io::{Network, Spawner};

/// What the scraper accepts: text format 0.0.4 first (OpenMetrics is not parsed yet).
const ACCEPT_HEADER: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";
const USER_AGENT_HEADER: &str = concat!("engine/", env!("CARGO_PKG_VERSION"));

/// Fetches `target`'s metrics page. The caller bounds the time with the scrape timeout.
pub async fn fetch(
    net: &dyn Network,
    spawner: &dyn Spawner,
    target: &Target,
    timeout_ms: i64,
    body_size_max: usize,
) -> Result<Bytes, ScrapeError> {
    let connection = net
        .connect(target.address.clone())
        .await
        .map_err(|source| ScrapeError::Connect { address: target.address.clone(), source })?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .map_err(|error| ScrapeError::Http(error.to_string()))?;
    // The driver ends when `sender` is dropped (after this function returns or is cancelled).
    spawner.spawn(
        "scrape-connection",
        Box::pin(async move {
            let _ = driver.await;
        }),
    );
    let request = Request::get(target.metrics_path.as_str())
        .header(HOST, target.address.as_str())
        .header(ACCEPT, ACCEPT_HEADER)
        .header(USER_AGENT, USER_AGENT_HEADER)
        .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", timeout_ms as f64 / 1000.0))
        .body(Empty::<Bytes>::new())
        .map_err(|error| ScrapeError::Http(error.to_string()))?;
    let response = sender.send_request(request).await.map_err(|error| ScrapeError::Http(error.to_string()))?;
    if response.status() != StatusCode::OK {
        return Err(ScrapeError::Status(response.status().to_string()));
    }
    let collected = Limited::new(response.into_body(), body_size_max).collect().await.map_err(|error| {
        if error.is::<http_body_util::LengthLimitError>() {
            ScrapeError::BodyTooLarge { limit_size: body_size_max }
        } else {
            ScrapeError::Http(error.to_string())
        }
    })?;
    Ok(collected.to_bytes())
}
