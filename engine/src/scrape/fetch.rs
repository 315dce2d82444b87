//! One HTTP GET of a target's exposition, over the network seam, with a body size limit.
//!
//! The body is read frame by frame into the loop's reusable buffer and the read stops as soon as
//! the limit is reached, so a huge body costs at most the limit in memory, never its whole size
//! (Prometheus scrape/scrape.go `targetScraper.readResponse`: a body of `limit` bytes or more is
//! refused with "body size limit exceeded").

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, CONTENT_LENGTH, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::{ScrapeError, Target};
use crate::io::{Network, Spawner};

/// What the scraper accepts: text format 0.0.4 first (OpenMetrics is not parsed yet).
const ACCEPT_HEADER: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";
const USER_AGENT_HEADER: &str = concat!("engine/", env!("CARGO_PKG_VERSION"));

/// Fetches `target`'s metrics page into `body` (cleared first; its capacity is reused across
/// scrapes). Fails with [`ScrapeError::BodyTooLarge`] once `body_size_limit` bytes or more
/// arrive, without reading further. The caller bounds the time with the scrape timeout.
pub async fn fetch(
    net: &dyn Network,
    spawner: &dyn Spawner,
    target: &Target,
    timeout_ms: i64,
    body_size_limit: usize,
    body: &mut Vec<u8>,
) -> Result<(), ScrapeError> {
    body.clear();
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
    let announced_size = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<usize>().ok());
    if let Some(announced_size) = announced_size {
        if announced_size >= body_size_limit {
            return Err(ScrapeError::BodyTooLarge { limit_size: body_size_limit });
        }
        body.reserve(announced_size);
    }
    let mut incoming = response.into_body();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|error| ScrapeError::Http(error.to_string()))?;
        let Ok(data) = frame.into_data() else { continue }; // trailers
        if body.len() + data.len() >= body_size_limit {
            return Err(ScrapeError::BodyTooLarge { limit_size: body_size_limit });
        }
        body.extend_from_slice(&data);
    }
    Ok(())
}
