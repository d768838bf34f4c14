#!/usr/bin/env bash
# Installs the pinned schemathesis (the OpenAPI fuzzer the e2e suite runs) into
# target/tools/schemathesis, a virtualenv of its own. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/schemathesis
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5 hypothesis==6.170.17
fi
