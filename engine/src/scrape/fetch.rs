//! One HTTP GET of a target's exposition, over the network seam, with a body size limit.
//!
//! The body is read frame by frame into the loop's reusable buffer and the read stops as soon as
//! the limit is reached, so a huge body costs at most the limit in memory, never its whole size
//! (Prometheus scrape/scrape.go `targetScraper.readResponse`: a body of `limit` bytes or more is
//! refused with "body size limit exceeded").
//!
//! Negotiation as Prometheus 2.42 (no `scrape_protocols` yet): the Accept header prefers
//! OpenMetrics 1.0.0, then 0.0.1, then text 0.0.4; the response's Content-Type picks the parser
//! (`Format::from_content_type`, upstream's `textparse.New`). `Accept-Encoding: gzip` is sent and a
//! `Content-Encoding: gzip` body is inflated while it streams in (flate2's pure-Rust backend);
//! the limit applies to the inflated size, so a gzip bomb is refused at the limit, having cost
//! at most the limit in memory.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::io::Write as _;

use hyper::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::{ScrapeError, Target};
use crate::io::{Network, Spawner};

/// What the scraper accepts: Prometheus 2.42's `acceptHeader`, byte for byte.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The exposition format of a response, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (and anything unrecognised: upstream's fallback).
    Text,
    /// `application/openmetrics-text`, any version.
    OpenMetrics,
}

impl Format {
    /// Upstream's `textparse.New`: the media type (case-insensitive, parameters ignored) selects
    /// OpenMetrics; everything else, a missing or malformed Content-Type included, is text.
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        let media_type = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}
const USER_AGENT_HEADER: &str = concat!("engine/", env!("CARGO_PKG_VERSION"));

/// Fetches `target`'s metrics page into `body` (cleared first; its capacity is reused across
/// scrapes), inflated when gzipped, and returns its format. Fails with
/// [`ScrapeError::BodyTooLarge`] once `body_size_limit` bytes or more (inflated) arrive, without
/// reading further. The caller bounds the time with the scrape timeout.
pub async fn fetch(
    net: &dyn Network,
    spawner: &dyn Spawner,
    target: &Target,
    timeout_ms: i64,
    body_size_limit: usize,
    body: &mut Vec<u8>,
) -> Result<Format, ScrapeError> {
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
        .header(ACCEPT_ENCODING, "gzip")
        .header(USER_AGENT, USER_AGENT_HEADER)
        .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", timeout_ms as f64 / 1000.0))
        .body(Empty::<Bytes>::new())
        .map_err(|error| ScrapeError::Http(error.to_string()))?;
    let response = sender.send_request(request).await.map_err(|error| ScrapeError::Http(error.to_string()))?;
    if response.status() != StatusCode::OK {
        return Err(ScrapeError::Status(response.status().to_string()));
    }
    let format = Format::from_content_type(response.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()));
    // Upstream compares the header with "gzip" exactly.
    let gzipped = response.headers().get(CONTENT_ENCODING).is_some_and(|value| value.as_bytes() == b"gzip");
    let announced_size = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<usize>().ok());
    let mut incoming = response.into_body();
    if gzipped {
        // The limit is on the inflated size; the announced size is the compressed one.
        let mut inflater = flate2::write::MultiGzDecoder::new(LimitedBody { body, size_limit: body_size_limit });
        let mut compressed_size = 0_usize;
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|error| ScrapeError::Http(error.to_string()))?;
            let Ok(data) = frame.into_data() else { continue }; // trailers
            compressed_size += data.len();
            inflater.write_all(&data).map_err(|error| inflate_error(error, body_size_limit))?;
        }
        if compressed_size == 0 {
            return Err(ScrapeError::Http("gzip: empty body".to_string()));
        }
        inflater.try_finish().map_err(|error| inflate_error(error, body_size_limit))?;
        return Ok(format);
    }
    if let Some(announced_size) = announced_size {
        if announced_size >= body_size_limit {
            return Err(ScrapeError::BodyTooLarge { limit_size: body_size_limit });
        }
        body.reserve(announced_size);
    }
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|error| ScrapeError::Http(error.to_string()))?;
        let Ok(data) = frame.into_data() else { continue }; // trailers
        if body.len() + data.len() >= body_size_limit {
            return Err(ScrapeError::BodyTooLarge { limit_size: body_size_limit });
        }
        body.extend_from_slice(&data);
    }
    Ok(format)
}

/// The inflated body, refusing to grow to `size_limit` bytes.
struct LimitedBody<'b> {
    body: &'b mut Vec<u8>,
    size_limit: usize,
}

/// The marker error [`LimitedBody`] returns at the limit.
#[derive(Debug, thiserror::Error)]
#[error("body size limit reached")]
struct LimitReached;

impl std::io::Write for LimitedBody<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.body.len() + data.len() >= self.size_limit {
            return Err(std::io::Error::other(LimitReached));
        }
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn inflate_error(error: std::io::Error, size_limit: usize) -> ScrapeError {
    if error.get_ref().is_some_and(|inner| inner.is::<LimitReached>()) {
        return ScrapeError::BodyTooLarge { limit_size: size_limit };
    }
    ScrapeError::Http(format!("gzip: {error}"))
}
