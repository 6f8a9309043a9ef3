#!/usr/bin/env bash
# Benchmarks: runs the release binary on the shared histories and a generated 100k-txn
# list-append history, printing each run's elapsed_ms (from the JSON last line; the time
# includes parsing). Usage: bash jepsen-checker/bench.sh   (from the workspace root)
set -euo pipefail
cd "$(dirname "$0")/.."
T=target/checker
cargo build -q -j2 --release -p jepsen-checker --target-dir "$T" --examples --bins
B="$T/release/jepsen-checker"
H=../shared/histories
ms() { "$@" | tail -1 | sed -E 's/.*"elapsed_ms":([0-9]+).*"valid":([a-z"]+).*/\1 ms  valid=\2/'; }
echo "== etcd (cas-register), worst 5 =="
for f in "$H"/etcd/*.log; do echo "$(ms "$B" "$f" --model cas-register) $(basename "$f")"; done | sort -n | tail -5
echo "== porcupine-kv, partitioned =="
for f in "$H"/porcupine-kv/*.txt; do echo "$(basename "$f"): $(ms "$B" "$f" --model kv)"; done
echo "== porcupine-kv, one whole map (--no-partition) =="
for f in c10-ok c10-bad c50-ok c50-bad; do
  echo "$f: $(ms "$B" "$H/porcupine-kv/$f.txt" --model kv --no-partition --time-limit 60)"
done
echo "== list-append, 100k generated transactions =="
G=$(mktemp -d)
"$T/release/examples/gen" "$G/la100k.edn" 100000 edn 1 2>/dev/null
echo "la100k.edn: $(ms "$B" "$G/la100k.edn" --model list-append)"
rm -rf "$G"
