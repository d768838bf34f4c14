# CTI server tasks. `just` lists them. Install just with `cargo install just --locked`.

# Local Postgres for `migrate`, `run-*` and `demo` (override with DATABASE_URL).
export DATABASE_URL := env_var_or_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cti")

default:
    @just --list

# Build and run the whole stack (Postgres, migrate, ingest, worker, api) with Docker Compose.
dev:
    docker compose up --build

# Run every test (needs Postgres on 127.0.0.1:5432, user postgres; see README).
test:
    cargo test --workspace

# Format the code.
fmt:
    cargo fmt --all

# Formatting check and clippy with warnings as errors, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Rewrite docs/openapi.json from the code (a test fails when the committed copy is stale).
openapi:
    cargo run --quiet -p api -- openapi > docs/openapi.json

# Apply pending migrations to $DATABASE_URL (creating the database if it is missing).
migrate:
    scripts/ensure-database.sh
    cargo run --quiet --bin worker -- migrate

# Run the stack locally without Docker, replay a Dialpad call lifecycle, print GET /api/calls.
demo:
    scripts/demo.sh

# Replay the call lifecycle against the Compose stack started by `just dev`.
demo-compose:
    docker compose run --rm migrate simulate --ingest-url http://ingest:8081 --api-url http://api:8080 --internal-secret "${INTERNAL_API_SECRET:-dev-only-internal-api-secret-not-for-production}"

# Every benchmark in one bounded run (about 35 minutes): ingest beside the pgbench ceiling
# (wrk, 16 and 64 connections, into an event log of 3M events), ingest in process, worker drain at 0 and 100k calls of
# history with latency and fairness after a 100k backlog, push, api on 100k calls. Prints one
# table and writes target/bench/report.json. Installs wrk and pgbench if missing (Debian).
bench: bench-tools
    cargo run --release --quiet -p e2e --bin bench -- ceiling 5 16,64 3000000 ingest 20000 32 worker 100000 0,100000 300 latency 100000 500 10 100000 300 fairness 100000 20 30 100000 push 20000 200 10 api 100000 100 2000 100

# Ingest beside the database's own ceiling for the same row: wrk vs pgbench (release build),
# into an event log already holding `history` events (0: a fresh database per run).
bench-ceiling seconds="5" connections="16,64" history="0": bench-tools
    cargo run --release --quiet -p e2e --bin bench -- ceiling {{seconds}} {{connections}} {{history}}

# The external load generator and pgbench the ceiling benchmark runs.
bench-tools:
    command -v wrk >/dev/null || apt-get install -y wrk
    command -v pgbench >/dev/null || apt-get install -y postgresql-client

# Ingest throughput and latency: distinct signed webhooks from 32 clients (release build).
bench-ingest events="20000" concurrency="32":
    cargo run --release --quiet -p e2e --bin bench -- ingest {{events}} {{concurrency}}

# Ingest under attack: 500 valid webhooks/s alone, then alongside 2,000 forged requests/s (release build).
bench-forged valid="500" forged="2000" seconds="20":
    cargo run --release --quiet -p e2e --bin bench -- forged {{valid}} {{forged}} {{seconds}}

# Traffic of the real shape: one large tenant with a long history, each call's events minutes
# apart (a batch of 500 touches ~490 legs). Drain rate of 100k queued events against 0, 100k and
# 1M calls of history; end-to-end latency (ingest 200 -> done) of 500 webhooks/s for 20 s right
# after a 200k-event backlog drains; a quiet tenant's latency at 20 webhooks/s while another's
# 200k-event backlog drains (at most 60 s). Latency and fairness run against `history` calls; a
# drain is cut after `max_drain` s. Seeds up to ~12 GB of history, once per size.
# Worker: drain rate vs history size, latency after a backlog, fairness (release build).
bench-worker events="100000" histories="0,100000,1000000" history="1000000" backlog="200000" rate="500" seconds="20" quiet_rate="20" max_drain="600":
    cargo run --release --quiet -p e2e --bin bench -- worker {{events}} {{histories}} {{max_drain}} latency {{backlog}} {{rate}} {{seconds}} {{history}} {{max_drain}} fairness {{backlog}} {{quiet_rate}} 60 {{history}}

# Api throughput and latency: 1M calls over 100 apps, 32 clients, first/filtered/deep-keyset pages
# and active calls, then the first page at a steady 1,000 requests/s (release build).
bench-api calls="1000000" apps="100" requests="5000" changes="100":
    cargo run --release --quiet -p e2e --bin bench -- api {{calls}} {{apps}} {{requests}} {{changes}}

# Push to client apps (release build, medians of 3): deliveries/s; ingest -> receiver and
# ingest -> SSE latency at a steady webhook rate; a fast receiver beside a hanging one.
bench-push deliveries="20000" rate="200" seconds="20":
    cargo run --release --quiet -p e2e --bin bench -- push {{deliveries}} {{rate}} {{seconds}}
