#!/usr/bin/env bash
# The whole CI gate: peers, formatting, lints (clippy's disallowed-methods enforce the
# determinism seams), then the README's test command with the peer tests required.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

echo "== install peers"
ci/install-peers.sh

echo "== toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests: the README's test command, with the peer tests required"
# Release mode: the simulator tests step tens of thousands of virtual milliseconds.
ENGINE_PEER_TESTS=1 cargo test --workspace --release --locked

echo "== simulator gates: every scenario's pinned seeds pass and repeat their report hash"
ci/sim-gates.sh
