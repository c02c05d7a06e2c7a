#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), builds the
# fixtures from Debian packages, then runs every test with node's runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash test/fixtures/build.sh
# Test files run one at a time by default: several start registries and
# runtimes, and the machine has 2 cores. TEST_CONCURRENCY raises it.
exec node --test --test-concurrency="${TEST_CONCURRENCY:-1}" dist/test/*.test.js
