#!/usr/bin/env bash
# Installs the pinned Standard Webhooks Python library (the reference verifier the e2e suite
# checks our deliveries with: crates/e2e/tests/it/push/standard_library.rs) into
# target/tools/standardwebhooks, a virtualenv of its own. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/standardwebhooks
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import standardwebhooks" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check standardwebhooks==1.3.0
fi
