#!/usr/bin/env bash
# Installs the reference peers the end-to-end tests compare against (Debian packages): Prometheus
# 2.42 for promtool, the node exporter, Alertmanager 0.25 with amtool, the Pushgateway 1.5, VictoriaMetrics 1.79 (a remote write receiver), HAProxy 2.6 (in front of an HA pair) and Redis (the query frontend's shared cache). Idempotent; needs root or sudo.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
[ -x /usr/bin/prometheus-pushgateway ] || need+=(prometheus-pushgateway)
[ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
if [ ${#need[@]} -eq 0 ]; then
  echo "peers already installed"
  exit 0
fi
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
# The packages may start services listening on 9090/9091/9093/9100/8428; the tests use their own ports, but the
# README's server uses 9090, so stop them where a service manager started them.
for service in prometheus prometheus-node-exporter prometheus-alertmanager prometheus-pushgateway victoria-metrics haproxy redis-server; do
  "${sudo_cmd[@]}" service "$service" stop >/dev/null 2>&1 || true
done
