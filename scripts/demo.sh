#!/usr/bin/env bash
# The demo: runs ingest, worker and api locally against a local Postgres (no Docker), replays
# the outbound call lifecycle from testdata/dialpad with real HS256 signatures, and prints what
# GET /api/calls returns. Stops the services on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/cti}"
export DIALPAD_WEBHOOK_SECRET="${DIALPAD_WEBHOOK_SECRET:-demo-only-dialpad-webhook-secret-not-for-production}"
export INTERNAL_API_SECRET="${INTERNAL_API_SECRET:-demo-only-internal-api-secret-not-for-production}"
export ENCRYPTION_KEY="${ENCRYPTION_KEY:-ZGVtby1vbmx5LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGU=}"
export RUST_LOG="${RUST_LOG:-warn}"
ingest_port="${DEMO_INGEST_PORT:-18081}"
api_port="${DEMO_API_PORT:-18080}"

cargo build --quiet --bin ingest --bin worker --bin api --bin simulate
bin=target/debug

scripts/ensure-database.sh
"$bin/worker" migrate

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
PORT="$ingest_port" "$bin/ingest" & pids+=($!)
PORT="$api_port" "$bin/api" & pids+=($!)
"$bin/worker" & pids+=($!)

for port in "$ingest_port" "$api_port"; do
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

"$bin/simulate" --ingest-url "http://127.0.0.1:$ingest_port" --api-url "http://127.0.0.1:$api_port" \
  --internal-secret "$INTERNAL_API_SECRET"
