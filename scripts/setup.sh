#!/usr/bin/env bash
# Install MedLens into .venv/ (idempotent). Usage: scripts/setup.sh [run|test]
#   run  - the app's Python packages (torch, Ray Serve, Streamlit, ...)
#   test - also the test tools (pytest, playwright, locust, ruff, mypy), Debian's chromium, wrk and PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-run}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
# What pip installs torch from: a requirement, then any pip options, split on spaces (e.g.
# "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"). The default takes the build pip finds
# first: the CPU wheel where a pip config points at a local wheel folder (this kind of machine: find-links
# /opt/wheels), PyPI's default (CUDA) wheel on plain Linux. See README ("GPU").
TORCH_SPEC="${MEDLENS_TORCH_SPEC:-torch==2.13.0}"
read -ra TORCH_ARGS <<<"$TORCH_SPEC"

# Debian packages, first: what `make run` itself uses (curl for its health checks, pkill to stop what it
# started, the venv module, which Debian ships apart); for the tests, chromium (browser tests), wrk (the
# benchmarks' load generator) and PostgreSQL (the case store runs against a throw-away server as well as
# SQLite: tests/postgres.py).
debs=()
command -v curl >/dev/null 2>&1 || debs+=(curl)
command -v pkill >/dev/null 2>&1 || debs+=(procps)
[ -x .venv/bin/python ] || "$PYTHON" -c "import ensurepip" >/dev/null 2>&1 || debs+=("$(basename "$PYTHON")-venv")
[ "$MODE" = "test" ] && [ ! -x /usr/bin/chromium ] && debs+=(chromium)
[ "$MODE" = "test" ] && ! command -v wrk >/dev/null 2>&1 && debs+=(wrk)
[ "$MODE" = "test" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && debs+=(postgresql)
if [ "${#debs[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${debs[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${debs[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

extras="."
[ "$MODE" = "test" ] && extras=".[test]"
stamp=".venv/.medlens-$MODE.stamp"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "==> Python packages up to date ($MODE)"
else
  echo "==> installing Python packages ($MODE)"
  "${PIP[@]}" install --upgrade pip >/dev/null
  # --no-compile: pip would write bytecode for every module of torch, Ray, transformers... (about half of a
  # fresh install's time on 2 cores); Python compiles only what is imported, once, on first import
  # (scripts/run.sh and scripts/test.sh let it write that cache, under .venv/ and __pycache__/).
  # torch first, so the project's torch range is already satisfied by the build TORCH_SPEC gives (pip
  # leaves a torch that already satisfies it as it is).
  "${PIP[@]}" install --no-compile "${TORCH_ARGS[@]}"
  "${PIP[@]}" install --no-compile -e "$extras"
  echo "$want" > "$stamp"
fi

echo "==> setup done ($MODE)"
