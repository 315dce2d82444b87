//! The generator host: serves scrape targets on several ports of one host (one host per target
//! would slow turmoil down; see SIMULATION.md). Values come from a seeded stream keyed by job
//! and scrape number, so they do not depend on the order in which ports are scraped.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{TargetKind, TargetSection};

/// Runs every target's server until the host is stopped.
/// `condition_at_ms` is when `step` targets turn their condition on (virtual ms since the start).
pub async fn run(targets: Vec<TargetSection>, seed: u64, condition_at_ms: u64) -> turmoil::Result {
    let mut tasks = Vec::new();
    for target in targets {
        tasks.push(tokio::spawn(serve(target, seed, condition_at_ms)));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn serve(target: TargetSection, seed: u64, condition_at_ms: u64) -> std::io::Result<()> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", target.port)).await?;
    let target = Arc::new(target);
    let scrape_count = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let target = target.clone();
        let scrape_count = scrape_count.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let scrape_index = scrape_count.fetch_add(1, Ordering::Relaxed);
                let elapsed_ms = turmoil::sim_elapsed().map_or(0, |elapsed| elapsed.as_millis() as u64);
                let body = match target.kind {
                    TargetKind::Step => step_body(elapsed_ms >= condition_at_ms),
                    _ => body(&target, seed, scrape_index),
                };
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The exposition served for scrape number `scrape_index` of `target`.
pub fn body(target: &TargetSection, seed: u64, scrape_index: u64) -> String {
    match target.kind {
        TargetKind::Malformed => {
            // Line 2 misses the closing brace: the engine must report line 2 and set up = 0.
            "# TYPE sim_value gauge\nsim_value{series=\"0\" 1\n".to_string()
        }
        TargetKind::Step => step_body(false),
        TargetKind::Generated => {
            let stream_seed = seed ^ engine::io::rng::fnv1a_64(target.job.as_bytes()) ^ scrape_index.rotate_left(32);
            let mut rng = ChaCha8Rng::seed_from_u64(stream_seed);
            let mut out = String::with_capacity(64 * target.series_count + 128);
            out.push_str("# HELP sim_value Seeded random gauge.\n# TYPE sim_value gauge\n");
            for series_index in 0..target.series_count {
                let value: f64 = rng.random_range(-1e6..1e6);
                let _ = writeln!(out, "sim_value{{series=\"{series_index}\"}} {value}");
            }
            let _ = writeln!(out, "# TYPE sim_scrapes_total counter\nsim_scrapes_total {}", scrape_index + 1);
            out
        }
    }
}

/// The exposition of a `step` target: the condition gauge, 0 or 1.
pub fn step_body(condition: bool) -> String {
    format!(
        "# HELP sim_condition 1 once the scenario's condition holds.\n# TYPE sim_condition gauge\nsim_condition {}\n",
        u8::from(condition)
    )
}
