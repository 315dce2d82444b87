//! The frontend's client to its downstream: keep-alive connections over the network seam, at
//! most `connections_max` open (idle or busy) and `idle_connections_max` idle, each exchange
//! bounded by `timeout_ms`, idempotent requests retried a bounded number of times after a
//! connection failure or a 502/503/504.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::DownstreamSettings;
use crate::io::http_client::HttpEndpoint;
use crate::io::Env;

/// Largest downstream answer read (a big range query); larger ones fail the request.
pub const ANSWER_SIZE_BYTES_MAX: usize = 256 << 20;

/// First pause before a retry; doubled for each further one.
const RETRY_BACKOFF_MS_FIRST: u64 = 50;

const USER_AGENT_HEADER: &str = concat!("engine-frontend/", env!("CARGO_PKG_VERSION"));

/// One request to the downstream.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// GET or POST.
    pub method: Method,
    /// Path and query, e.g. `/api/v1/query_range?query=up&...`.
    pub path_and_query: String,
    /// Headers passed on (tenant, authorization).
    pub headers: Vec<(String, String)>,
    /// `Content-Type` of the body, empty without one.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

/// The downstream's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// `Cache-Control`, empty without one.
    pub cache_control: String,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// Whether the downstream itself is failing (the breaker counts these), as opposed to
    /// refusing a bad request (4xx), which is the client's fault.
    pub fn is_server_failure(&self) -> bool {
        self.status >= 500
    }
}

/// Why there is no answer.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DownstreamError {
    /// Could not connect.
    #[error("connect to downstream {address}: {message}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why.
        message: String,
    },
    /// The exchange failed.
    #[error("downstream: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("downstream did not answer within {0} ms")]
    Timeout(u64),
}

type Connection = (SendRequest<Full<Bytes>>, OwnedSemaphorePermit);

/// The pooled client.
pub struct Downstream {
    env: Env,
    endpoint: HttpEndpoint,
    settings: DownstreamSettings,
    idle: Mutex<Vec<Connection>>,
    connection_slots: Arc<Semaphore>,
    /// Requests sent, retries included.
    pub requests_total: AtomicU64,
    /// Connections opened.
    pub connections_opened_total: AtomicU64,
    /// Retries made.
    pub retries_total: AtomicU64,
}

impl Downstream {
    /// A client for the API at `base_url` (`http://host:port[/prefix]`).
    pub fn new(env: Env, base_url: &str, settings: DownstreamSettings) -> Result<Downstream, String> {
        let endpoint = HttpEndpoint::parse(base_url.trim_end_matches('/')).map_err(|error| error.to_string())?;
        Ok(Downstream {
            env,
            endpoint,
            connection_slots: Arc::new(Semaphore::new(settings.connections_max)),
            settings,
            idle: Mutex::new(Vec::new()),
            requests_total: AtomicU64::new(0),
            connections_opened_total: AtomicU64::new(0),
            retries_total: AtomicU64::new(0),
        })
    }

    /// Sends `request`, retrying idempotent ones; all attempts within the timeout.
    pub async fn send(&self, request: Outgoing) -> Result<Answer, DownstreamError> {
        let timeout_ms = self.settings.timeout_ms.max(1) as u64;
        let attempts = async {
            let idempotent = request.method == Method::GET || is_read_only_post(&request.path_and_query);
            let mut attempt = 0;
            loop {
                let result = self.send_once(&request).await;
                let retriable = match &result {
                    Ok(answer) => matches!(answer.status, 502..=504),
                    Err(DownstreamError::Timeout(_)) => false,
                    Err(_) => true,
                };
                if !retriable || !idempotent || attempt >= self.settings.retries_max {
                    return result;
                }
                attempt += 1;
                self.retries_total.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS_FIRST << (attempt - 1).min(6))).await;
            }
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms), attempts).await {
            Ok(result) => result,
            Err(_) => Err(DownstreamError::Timeout(timeout_ms)),
        }
    }

    async fn send_once(&self, request: &Outgoing) -> Result<Answer, DownstreamError> {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        let (mut sender, permit) = self.connection().await?;
        let prefix = self.endpoint.path_and_query.trim_end_matches('/');
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(format!("{prefix}{}", request.path_and_query))
            .header(HOST, self.endpoint.address.as_str())
            .header(USER_AGENT, USER_AGENT_HEADER);
        if !request.content_type.is_empty() {
            builder = builder.header(CONTENT_TYPE, request.content_type.as_str());
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let http_request = builder
            .body(Full::new(request.body.clone()))
            .map_err(|error| DownstreamError::Protocol(error.to_string()))?;
        let response =
            sender.send_request(http_request).await.map_err(|error| DownstreamError::Protocol(error.to_string()))?;
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &hyper::header::HeaderValue| value.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let content_type = header(CONTENT_TYPE);
        let cache_control = header(hyper::header::CACHE_CONTROL);
        let keep_alive = !header(hyper::header::CONNECTION).eq_ignore_ascii_case("close");
        let body = Limited::new(response.into_body(), ANSWER_SIZE_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| DownstreamError::Protocol(format!("read answer: {error}")))?
            .to_bytes();
        if keep_alive {
            self.put_back((sender, permit));
        }
        Ok(Answer { status, content_type, cache_control, body })
    }

    /// An idle connection that still works, or a new one once a slot is free.
    async fn connection(&self) -> Result<Connection, DownstreamError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
            match idle {
                Some((mut sender, permit)) => {
                    if sender.is_closed() {
                        continue;
                    }
                    if sender.ready().await.is_ok() {
                        return Ok((sender, permit));
                    }
                }
                None => break,
            }
        }
        let permit = self
            .connection_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DownstreamError::Protocol("client closed".to_string()))?;
        let address = self.endpoint.address.clone();
        let stream = self
            .env
            .net
            .connect(address.clone())
            .await
            .map_err(|error| DownstreamError::Connect { address: address.clone(), message: error.to_string() })?;
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| DownstreamError::Protocol(error.to_string()))?;
        self.connections_opened_total.fetch_add(1, Ordering::Relaxed);
        self.env.spawner.spawn(
            "frontend-downstream-connection",
            Box::pin(async move {
                let _ = driver.await;
            }),
        );
        Ok((sender, permit))
    }

    fn put_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < self.settings.idle_connections_max {
            idle.push(connection);
        }
    }

    /// Idle connections now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

/// POSTs of the query API read only, so retrying them is safe.
fn is_read_only_post(path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or_default();
    matches!(
        path,
        "/api/v1/query" | "/api/v1/query_range" | "/api/v1/series" | "/api/v1/labels" | "/api/v1/query_exemplars"
    )
}
