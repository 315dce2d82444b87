#!/usr/bin/env bash
# Simulator gates: every scenario in scenarios/ replays its default seed and its pinned seeds
# (`pinned_seeds`), each twice in separate processes. A seed fails the gate when a threshold is
# missed (its report, with the thresholds table, is printed) or when the two runs print
# different report hashes (the simulation is not deterministic).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin sim
sim=target/release/sim
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then sim="$CARGO_TARGET_DIR/release/sim"; fi
failed=0
run_count=0
for scenario in scenarios/*.toml; do
  default_seed=$(sed -n 's/^seed = \([0-9]*\)$/\1/p' "$scenario")
  pinned=$(sed -n 's/^pinned_seeds = \[\(.*\)\]$/\1/p' "$scenario" | tr -d ' ' | tr ',' ' ')
  for seed in $default_seed $pinned; do
    first=$("$sim" "$scenario" --seed "$seed" 2>&1) && first_ok=1 || first_ok=0
    second=$("$sim" "$scenario" --seed "$seed" 2>&1) && second_ok=1 || second_ok=0
    run_count=$((run_count + 2))
    first_hash=$(printf '%s\n' "$first" | tail -n 1)
    second_hash=$(printf '%s\n' "$second" | tail -n 1)
    if [[ $first_ok -ne 1 || $second_ok -ne 1 ]]; then
      echo "FAIL $scenario seed $seed: thresholds missed"
      printf '%s\n' "$first"
      failed=1
    elif [[ "$first_hash" != "$second_hash" || "$first_hash" != report-hash:* ]]; then
      echo "FAIL $scenario seed $seed: two runs differ ($first_hash vs $second_hash)"
      failed=1
    else
      echo "ok   $scenario seed $seed $first_hash"
    fi
  done
done
echo "sim gates: $run_count runs"
exit $failed
