#!/usr/bin/env bash
# Cached answers of the query frontend, side by side with the downstream answering the same
# request itself. One range query (Prometheus' HTTP request counters over the last hour at a 15 s
# step, fixed start and end) is sent by wrk (pinned to core 1) for DURATION, with 32 connections
# (throughput at saturation) and with 4 (latency below saturation), to:
#   1. Prometheus 2.42 directly (the reference: what every request costs without a frontend);
#   2. the frontend with a 1 h L1 TTL: every request an L1 hit;
#   3. the frontend with no L1 (TTL 0) and Redis with a 1 h L2 TTL: every request an L2 hit.
# The frontend is pinned to core 0 (one core), as are Prometheus and Redis in their runs.
# Needs prometheus, redis-server and wrk (Debian packages) and a release build of the frontend.
# Usage: bench/frontend-cached.sh [DURATION (default 20s)] [OUT (default reports/frontend-cached.md)]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20s}
out=${2:-reports/frontend-cached.md}
frontend_bin=${FRONTEND_BIN:-${CARGO_TARGET_DIR:-target}/release/frontend}
for tool in prometheus redis-server wrk taskset "$frontend_bin"; do
  command -v "$tool" >/dev/null 2>&1 || [[ -x "$tool" ]] || { echo "missing: $tool" >&2; exit 1; }
done
dir=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
prom_port=19390; redis_port=19391; l1_port=19392; l2_port=19393
cat > "$dir/prometheus.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:$prom_port']}]
YAML
taskset -c 0 prometheus --config.file="$dir/prometheus.yml" --web.listen-address=127.0.0.1:$prom_port \
  --storage.tsdb.path="$dir/prometheus-data" 2>"$dir/prometheus.log" &
pids+=($!)
taskset -c 0 redis-server --port $redis_port --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/redis.log" &
pids+=($!)
printf 'cache: {l1_ttl: 1h}\nlimits: {user_requests_per_minute: 0, key_requests_per_minute: 0}\n' >"$dir/l1.yml"
printf 'cache: {l1_ttl: 0s, l2_ttl: 1h}\nlimits: {user_requests_per_minute: 0, key_requests_per_minute: 0}\n' >"$dir/l2.yml"
taskset -c 0 "$frontend_bin" --web.listen-address=127.0.0.1:$l1_port --frontend.downstream-url=http://127.0.0.1:$prom_port \
  --config.file="$dir/l1.yml" --log.level=warn 2>"$dir/l1.log" &
pids+=($!)
taskset -c 0 "$frontend_bin" --web.listen-address=127.0.0.1:$l2_port --frontend.downstream-url=http://127.0.0.1:$prom_port \
  --frontend.redis-address=127.0.0.1:$redis_port --config.file="$dir/l2.yml" --log.level=warn 2>"$dir/l2.log" &
pids+=($!)
echo "waiting 30 s for Prometheus to scrape itself" >&2
sleep 30
end=$(( $(date +%s) - 5 ))
start=$(( end - 3600 ))
path="/api/v1/query_range?query=prometheus_http_requests_total&start=$start&end=$end&step=15"
for port in $prom_port $l1_port $l2_port; do
  curl -sf "http://127.0.0.1:$port$path" >/dev/null  # fills the caches
done
run() { # name port connections
  taskset -c 1 wrk -t1 -c"$3" -d"$duration" --latency "http://127.0.0.1:$2$path" >"$dir/run.wrk"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$dir/run.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$dir/run.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$dir/run.wrk")
  echo "| $1 | $3 | $rps | $p50 | $p99 |"
}
bytes=$(curl -sf "http://127.0.0.1:$l1_port$path" | wc -c)
{
  echo "# Query frontend: cached answers"
  echo
  echo "\`bench/frontend-cached.sh $duration\` on $(nproc) cores, $(date -u +%Y-%m-%d). One range query"
  echo "(\`prometheus_http_requests_total\`, 1 h at 15 s, answer $bytes bytes), wrk on core 1 for $duration"
  echo "per row; the server under test on core 0."
  echo
  echo "| answered by | connections | requests/s | p50 | p99 |"
  echo "|---|---|---|---|---|"
  for connections in 32 4; do
    run "Prometheus 2.42 directly" $prom_port $connections
    run "frontend, L1 hit" $l1_port $connections
    run "frontend, L2 hit (local Redis)" $l2_port $connections
  done
  echo
  curl -sf "http://127.0.0.1:$l1_port/api/v1/metrics/cache-stats" | sed 's/^/L1 frontend cache-stats: /'
  echo
  curl -sf "http://127.0.0.1:$l2_port/api/v1/metrics/cache-stats" | sed 's/^/L2 frontend cache-stats: /'
} | tee "$out"
