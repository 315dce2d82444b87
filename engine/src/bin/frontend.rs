//! The query frontend: `frontend --frontend.downstream-url=URL [--web.listen-address=ADDR]
//! [--frontend.user-header=NAME] [--config.file=FILE]`. It serves the Prometheus query API in
//! front of `URL` (this engine, Prometheus, VictoriaMetrics) with a results cache, coalescing,
//! rate limits and a circuit breaker; the file holds TTLs, limits and metrics views.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use engine::frontend::config::FrontendConfig;
use engine::frontend::Frontend;
use engine::io::{clock::startup_seed, Env, FileSystem, RealFileSystem};

const USAGE: &str = "usage: frontend --frontend.downstream-url=URL [flags]

  --frontend.downstream-url=URL  base URL of the Prometheus-compatible API answered from
                                 (e.g. http://127.0.0.1:9090); the config file's downstream_url
                                 when the flag is absent
  --web.listen-address=ADDR      listen address (default: 0.0.0.0:9092)
  --frontend.redis-address=HOST:PORT
                                 Redis shared by frontend replicas: answers (L2, 15 s), rate-limit
                                 buckets and flight locks; without it all of these are per process
  --frontend.user-header=NAME    header naming the user for per-user limits (default: X-User-Id;
                                 basic auth's user name when the header is absent)
  --config.file=FILE             YAML: cache TTLs, limits, breaker, downstream client, views
                                 (default: the documents' settings, no views)
  --web.max-connections=N        client connections served at once (default: 4096)
  --log.level=LEVEL              error, warn, info, debug (default: info)
  -h, --help                     this text
  --version                      print the version";

/// Client connections served at once, by default.
const CONNECTIONS_MAX_DEFAULT: usize = 4_096;

#[derive(Debug)]
struct Flags {
    downstream_url: Option<String>,
    listen_address: String,
    user_header: Option<String>,
    redis_address: Option<String>,
    config_file: Option<String>,
    connections_max: usize,
    log_level: tracing::Level,
}

fn parse_flags(arguments: impl Iterator<Item = String>) -> anyhow::Result<Option<Flags>> {
    let mut flags = Flags {
        downstream_url: None,
        listen_address: "0.0.0.0:9092".to_string(),
        user_header: None,
        redis_address: None,
        config_file: None,
        connections_max: CONNECTIONS_MAX_DEFAULT,
        log_level: tracing::Level::INFO,
    };
    let mut arguments = arguments.peekable();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--version" => {
                println!("frontend {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => {}
        }
        let (name, inline_value) = match argument.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (argument.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match inline_value.clone().or_else(|| arguments.next()) {
                Some(value) => Ok(value),
                None => bail!("flag {name} needs a value\n\n{USAGE}"),
            }
        };
        match name.as_str() {
            "--frontend.downstream-url" => flags.downstream_url = Some(value()?),
            "--web.listen-address" => flags.listen_address = value()?,
            "--frontend.user-header" => flags.user_header = Some(value()?),
            "--frontend.redis-address" => flags.redis_address = Some(value()?),
            "--config.file" => flags.config_file = Some(value()?),
            "--web.max-connections" => {
                let text = value()?;
                flags.connections_max = text
                    .parse()
                    .ok()
                    .filter(|&count: &usize| count > 0)
                    .with_context(|| format!("{name}: not a positive count: {text:?}"))?;
            }
            "--log.level" => {
                let text = value()?;
                flags.log_level = text.parse().map_err(|_| anyhow::anyhow!("--log.level: unknown level {text:?}"))?;
            }
            _ => bail!("unknown flag {argument:?}\n\n{USAGE}"),
        }
    }
    Ok(Some(flags))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let Some(flags) = parse_flags(std::env::args().skip(1))? else {
        return Ok(());
    };
    tracing_subscriber::fmt().with_max_level(flags.log_level).with_target(false).with_writer(std::io::stderr).init();
    let mut config = FrontendConfig::new(String::new());
    if let Some(path) = &flags.config_file {
        let bytes = RealFileSystem.read(std::path::Path::new(path)).with_context(|| format!("read {path}"))?;
        let text = String::from_utf8(bytes).with_context(|| format!("{path}: not UTF-8"))?;
        config.apply_file(&text).map_err(|error| anyhow::anyhow!("{path}: {error}"))?;
    }
    if let Some(url) = flags.downstream_url {
        config.downstream_url = url;
    }
    if let Some(header) = flags.user_header {
        config.user_header = header;
    }
    if let Some(address) = flags.redis_address {
        config.redis_address = Some(address);
    }
    if config.downstream_url.is_empty() {
        bail!("--frontend.downstream-url is required\n\n{USAGE}");
    }
    // One worker per core the process may run on (its CPU affinity included): more workers than
    // cores only add preemption to the answer latency's tail.
    let worker_count = std::thread::available_parallelism().map_or(2, |count| count.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_count)
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    runtime.block_on(async move {
        let env = Env::real(startup_seed());
        tracing::info!(downstream = %config.downstream_url, views = config.views.len(), "query frontend");
        let frontend = Arc::new(Frontend::new(env.clone(), config).map_err(|error| anyhow::anyhow!(error))?);
        let listener = env
            .net
            .bind(flags.listen_address.clone())
            .await
            .with_context(|| format!("listen on {}", flags.listen_address))?;
        tracing::info!(address = %flags.listen_address, "listening");
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
            _ = terminate.recv() => tracing::info!("received SIGTERM, shutting down"),
            () = engine::frontend::serve(listener, frontend, flags.connections_max) => {}
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arguments: &[&str]) -> anyhow::Result<Option<Flags>> {
        parse_flags(arguments.iter().map(|argument| argument.to_string()))
    }

    #[test]
    fn flags() {
        let flags =
            parse(&["--frontend.downstream-url=http://a:1", "--web.listen-address", "127.0.0.1:1"]).unwrap().unwrap();
        assert_eq!(flags.downstream_url.as_deref(), Some("http://a:1"));
        assert_eq!(flags.listen_address, "127.0.0.1:1");
        assert_eq!(flags.connections_max, CONNECTIONS_MAX_DEFAULT);
        assert!(parse(&["--nope"]).unwrap_err().to_string().contains("unknown flag"));
        assert!(parse(&["--web.max-connections=0"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }
}
