//! One HTTP/1.1 request over the network seam, for the components that push to other servers
//! (the notifier to Alertmanager, the embedded alert manager to its receivers, remote write).
//!
//! A request opens its own connection and closes it: senders here post at most a few times a
//! second, so connection reuse is not worth a pool's state. The whole exchange (connect, send,
//! read the response) is bounded by `timeout_ms` through `tokio::time`, so the simulator runs it in
//! virtual time, and the response body is read up to [`RESPONSE_BODY_SIZE_MAX_BYTES`] only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::{Network, Spawner};

/// At most this much of a response body is kept (error messages of receivers); the rest is
/// read and dropped so the connection ends cleanly.
pub const RESPONSE_BODY_SIZE_MAX_BYTES: usize = 64 * 1024;

const USER_AGENT_HEADER: &str = concat!("engine/", env!("CARGO_PKG_VERSION"));

/// Where a request goes, split out of a URL such as `http://host:9093/prefix/api/v2/alerts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpEndpoint {
    /// `host:port` to connect to (port 80 when the URL has none).
    pub address: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl HttpEndpoint {
    /// Parses an `http://` URL. `https` is refused: the engine has no TLS client.
    pub fn parse(url: &str) -> Result<HttpEndpoint, HttpError> {
        let rest = match url.strip_prefix("http://") {
            Some(rest) => rest,
            None if url.starts_with("https://") => {
                return Err(HttpError::Url(format!("{url}: https is not supported (no TLS client)")))
            }
            None => return Err(HttpError::Url(format!("{url}: not an http:// URL"))),
        };
        let (authority, path) = match rest.find('/') {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(HttpError::Url(format!("{url}: missing host or user info in the URL")));
        }
        let address = if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpEndpoint { address, path_and_query: path.to_string() })
    }
}

/// A request to send.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// `POST`, `PUT`, `GET`, ...
    pub method: hyper::Method,
    /// Where to.
    pub endpoint: HttpEndpoint,
    /// Extra headers (`Content-Type` is set from `content_type`).
    pub headers: Vec<(String, String)>,
    /// `Content-Type` of `body`.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The first [`RESPONSE_BODY_SIZE_MAX_BYTES`] of the body ([`send`]), or all of it
    /// ([`send_with_body_limit`]).
    pub body: Bytes,
    /// The `Content-Type` header, empty without one.
    pub content_type: String,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    /// The URL cannot be used.
    #[error("bad URL: {0}")]
    Url(String),
    /// Connecting failed.
    #[error("connect {address}: {message}")]
    Connect {
        /// `host:port`.
        address: String,
        /// The OS or simulator's reason.
        message: String,
    },
    /// The exchange failed after connecting.
    #[error("http: {0}")]
    Protocol(String),
    /// No response within the timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
}

/// Sends `request` and reads its response, all within `timeout_ms`.
pub async fn send(
    net: &dyn Network,
    spawner: &dyn Spawner,
    request: HttpRequest,
    timeout_ms: u64,
) -> Result<HttpResponse, HttpError> {
    let exchange = exchange(net, spawner, request, BodyLimit::Truncate(RESPONSE_BODY_SIZE_MAX_BYTES));
    match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(timeout_ms)),
    }
}

/// [`send`] for answers that are the point of the request (remote read): the whole body, or a
/// `Protocol` error once it passes `body_size_max` bytes.
pub async fn send_with_body_limit(
    net: &dyn Network,
    spawner: &dyn Spawner,
    request: HttpRequest,
    timeout_ms: u64,
    body_size_max: usize,
) -> Result<HttpResponse, HttpError> {
    let exchange = exchange(net, spawner, request, BodyLimit::Refuse(body_size_max));
    match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(timeout_ms)),
    }
}

/// What to do with a response body past a size.
#[derive(Clone, Copy)]
enum BodyLimit {
    /// Keep the first bytes, drop the rest.
    Truncate(usize),
    /// Fail the request.
    Refuse(usize),
}

async fn exchange(
    net: &dyn Network,
    spawner: &dyn Spawner,
    request: HttpRequest,
    limit: BodyLimit,
) -> Result<HttpResponse, HttpError> {
    let address = request.endpoint.address.clone();
    let connection = net
        .connect(address.clone())
        .await
        .map_err(|error| HttpError::Connect { address: address.clone(), message: error.to_string() })?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .map_err(|error| HttpError::Protocol(error.to_string()))?;
    // The driver ends when `sender` is dropped (after this function returns or is cancelled).
    spawner.spawn(
        "http-client-connection",
        Box::pin(async move {
            let _ = driver.await;
        }),
    );
    let mut builder = Request::builder()
        .method(request.method)
        .uri(request.endpoint.path_and_query.as_str())
        .header(HOST, address.as_str())
        .header(USER_AGENT, USER_AGENT_HEADER)
        .header(CONTENT_TYPE, request.content_type.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let http_request = builder.body(Full::new(request.body)).map_err(|error| HttpError::Protocol(error.to_string()))?;
    let response = sender.send_request(http_request).await.map_err(|error| HttpError::Protocol(error.to_string()))?;
    let status = response.status().as_u16();
    let content_type =
        response.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string();
    let mut incoming = response.into_body();
    let mut body = Vec::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|error| HttpError::Protocol(error.to_string()))?;
        let Ok(data) = frame.into_data() else { continue }; // trailers
        match limit {
            BodyLimit::Truncate(size_max) => {
                let room = size_max.saturating_sub(body.len());
                body.extend_from_slice(&data[..data.len().min(room)]);
            }
            BodyLimit::Refuse(size_max) => {
                if body.len() + data.len() > size_max {
                    return Err(HttpError::Protocol(format!("response body exceeds {size_max} bytes")));
                }
                body.extend_from_slice(&data);
            }
        }
    }
    Ok(HttpResponse { status, body: Bytes::from(body), content_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_from_http_urls_only() {
        assert_eq!(
            HttpEndpoint::parse("http://am:9093/prefix/api/v2/alerts").unwrap(),
            HttpEndpoint { address: "am:9093".to_string(), path_and_query: "/prefix/api/v2/alerts".to_string() }
        );
        assert_eq!(
            HttpEndpoint::parse("http://hooks.example").unwrap(),
            HttpEndpoint { address: "hooks.example:80".to_string(), path_and_query: "/".to_string() }
        );
        assert!(matches!(HttpEndpoint::parse("https://x/"), Err(HttpError::Url(message)) if message.contains("TLS")));
        assert!(HttpEndpoint::parse("ftp://x/").is_err());
        assert!(HttpEndpoint::parse("http:///path").is_err());
    }
}
