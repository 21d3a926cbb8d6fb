#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
# setup.sh installs without bytecode: let Python cache what it compiles on first import (a shell that sets
# PYTHONDONTWRITEBYTECODE would make every process, each Ray worker included, compile torch again).
unset PYTHONDONTWRITEBYTECODE
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# mypy (over a minute from a clean clone, single-threaded) runs beside pytest at the lowest CPU priority: it
# takes the cores while the tests wait on servers, and yields them while the tests compute. Its verdict is
# printed, and counts, after pytest's.
mkdir -p test-artifacts
rm -f test-artifacts/skip-summary.txt test-artifacts/mypy.txt
echo "==> mypy (beside pytest, output in test-artifacts/mypy.txt)"
nice -n 19 .venv/bin/mypy > test-artifacts/mypy.txt 2>&1 &
mypy_pid=$!
echo "==> pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
wait "$mypy_pid"
mypy_status=$?
set -e
# Last lines of the run: how many tests were skipped and why (tests/conftest.py writes it), then mypy's verdict.
[ -f test-artifacts/skip-summary.txt ] && cat test-artifacts/skip-summary.txt
echo "==> mypy: $(tail -n 1 test-artifacts/mypy.txt)"
if [ "$mypy_status" -ne 0 ]; then
  cat test-artifacts/mypy.txt >&2
  echo "mypy failed (exit $mypy_status)" >&2
fi
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing, a run without tests proves nothing" >&2
  exit 1
fi
[ "$status" -ne 0 ] && exit "$status"
exit "$mypy_status"
