#!/usr/bin/env bash
# Creates the database named in $DATABASE_URL if it does not exist yet (needs psql).
set -euo pipefail
url="${DATABASE_URL:?DATABASE_URL is required}"
name="${url##*/}"
name="${name%%\?*}"
server="${url%/*}/postgres"
if ! psql "$server" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
  psql "$server" -qc "CREATE DATABASE \"$name\""
  echo "Created database $name."
fi
