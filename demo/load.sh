#!/usr/bin/env bash
# Bounded load for the compose demo: N requests (default 50) to the frontend sidecar's inbound.
set -euo pipefail
url=${URL:-http://localhost:10001/}
n=${1:-50}
ok=0
for i in $(seq 1 "$n"); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url?order=$i" || echo 000)
  [ "$code" = 200 ] && ok=$((ok + 1))
done
echo "$ok/$n requests answered 200; traces: http://localhost:16686 (Jaeger), http://localhost:9412/api/v2/traces (db-api)"
