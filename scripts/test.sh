#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
set +e
rm -f test-artifacts/skip-summary.txt
.venv/bin/python -m pytest "$@"
status=$?
set -e
# Last lines of the run: how many tests were skipped and why (tests/conftest.py writes it).
[ -f test-artifacts/skip-summary.txt ] && cat test-artifacts/skip-summary.txt
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing, a run without tests proves nothing" >&2
  exit 1
fi
exit "$status"
