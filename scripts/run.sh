#!/usr/bin/env bash
# Install (if needed) and start MedLens: Ray Serve (ray_config.yaml, committed weights, CPU) and the
# Streamlit dashboard. Ctrl-C (or the end of this script) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
# setup.sh installs without bytecode: let Python cache what it compiles on first import (a shell that sets
# PYTHONDONTWRITEBYTECODE would make every process, each Ray worker included, compile torch again).
unset PYTHONDONTWRITEBYTECODE
# serving's port is the one ray_config.yaml gives Serve (http_options.port): one source
SERVE_PORT="$(.venv/bin/python -c 'import yaml; print(yaml.safe_load(open("ray_config.yaml"))["http_options"]["port"])')"
UI_PORT="${MEDLENS_UI_PORT:-8501}"
port_busy() { (echo >"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
for port in "$SERVE_PORT" "$UI_PORT"; do
  if port_busy "$port"; then
    echo "port $port is already in use (an earlier MedLens or another server?): stop it first" >&2
    exit 1
  fi
done
RAY_PORT="${MEDLENS_RAY_PORT:-6390}"
if port_busy "$RAY_PORT"; then
  echo "port $RAY_PORT (MedLens's Ray) is already in use: stop that Ray first, or set MEDLENS_RAY_PORT" >&2
  exit 1
fi
mkdir -p .run
echo "==> starting Ray Serve (log: .run/serve.log)"
set -a; . serving/fast_path.env; set +a   # HAProxy front door, direct ingress (see the file)
export RAY_USAGE_STATS_ENABLED=0
# A private Ray temp dir: `ray start` records its address there (ray/ray_current_cluster), where a later
# plain `serve run` or `ray.init()` elsewhere on the machine would otherwise find it and try to join it.
export RAY_TMPDIR="${TMPDIR:-/tmp}/medlens-ray-$(id -u)"
mkdir -p "$RAY_TMPDIR"
# MedLens's own single-machine Ray, in its own process session, without what one machine does not use:
# Ray's web dashboard (about 1 GB of processes on a 2-core machine; the dashboard's Service page shows
# replicas and requests), the Ray Client server (serving/_ray_start.py), the autoscaler monitor (no nodes
# to add) and the log monitor (it copies replica logs to a driver; they stay in files, linked as
# .run/ray-logs): `python -m serving.launch --start-head` validates ray_config.yaml first (a bad file starts
# nothing), then runs that `ray start` (serving/launch.py) while it builds the applications in its own
# process (not in a fresh Ray worker per application, as `serve run` would), then deploys them and exits;
# the applications live in that Ray until its process session is stopped.
setsid bash -c ".venv/bin/python -m serving.launch ray_config.yaml --start-head $RAY_PORT --ray-log .run/ray.log \
  && exec sleep infinity" >.run/serve.log 2>&1 </dev/null &
SERVE_PID=$!
ln -sfn "$RAY_TMPDIR/ray/session_latest/logs" .run/ray-logs
stop() {
  # once: a signal's trap would otherwise be followed by the EXIT trap's second stop; and not cut short by a
  # second signal: make forwards the TERM it gets to this script, which may arrive after the first one's trap has
  # begun (it did in 3 of 10 tries), and a reader may press Ctrl-C twice. Either left Ray or the dashboard running.
  trap - EXIT
  trap '' INT TERM
  echo "==> stopping MedLens"
  pkill -TERM -s "$SERVE_PID" 2>/dev/null || true
  [ -n "${UI_PID:-}" ] && pkill -TERM -s "$UI_PID" 2>/dev/null || true
  sleep 3
  pkill -KILL -s "$SERVE_PID" 2>/dev/null || true
  [ -n "${UI_PID:-}" ] && pkill -KILL -s "$UI_PID" 2>/dev/null || true
  rm -f "$RAY_TMPDIR/ray/ray_current_cluster"   # that Ray is gone: nothing may try to join it
}
# a signal stops MedLens and ends the script (the start-up loops below would otherwise go on polling)
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
for _ in $(seq 1 900); do   # every 0.2 s, up to 180 s
  if curl -fsS "http://127.0.0.1:$SERVE_PORT/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVE_PID" 2>/dev/null; then echo "Ray or serve run failed:" >&2; tail -30 .run/serve.log >&2; exit 1; fi
  sleep 0.2
done
if ! curl -fsS "http://127.0.0.1:$SERVE_PORT/healthz" >/dev/null; then
  echo "serving did not become healthy in 180 s; errors in the Serve logs (.run/ray-logs/serve/):" >&2
  grep -h -A3 "ERROR" .run/ray-logs/serve/*.log 2>/dev/null | tail -40 >&2
  exit 1
fi
echo "==> serving healthy on http://127.0.0.1:$SERVE_PORT (API docs: /docs)"
export MEDLENS_SERVING_URL="http://127.0.0.1:$SERVE_PORT"
setsid .venv/bin/streamlit run dashboard/app.py --server.port "$UI_PORT" --server.address 127.0.0.1 \
  --server.headless true >.run/dashboard.log 2>&1 </dev/null &
UI_PID=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$UI_PORT/_stcore/health" >/dev/null 2>&1 && break
  if ! kill -0 "$UI_PID" 2>/dev/null; then echo "the dashboard failed:" >&2; tail -30 .run/dashboard.log >&2; exit 1; fi
  sleep 1
done
if ! curl -fsS "http://127.0.0.1:$UI_PORT/_stcore/health" >/dev/null 2>&1; then
  echo "the dashboard did not answer in 60 s (log: .run/dashboard.log):" >&2
  tail -30 .run/dashboard.log >&2
  exit 1
fi
echo
echo "MedLens is running: open http://127.0.0.1:$UI_PORT"
echo "(serving API: http://127.0.0.1:$SERVE_PORT/docs; logs in .run/; Ctrl-C to stop)"
wait "$UI_PID"
