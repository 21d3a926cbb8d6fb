#!/usr/bin/env bash
# Install (if needed) and start MedLens: Ray Serve (ray_config.yaml, committed weights, CPU) and the
# Streamlit dashboard. Ctrl-C (or the end of this script) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
SERVE_PORT="${MEDLENS_SERVE_PORT:-8000}"
UI_PORT="${MEDLENS_UI_PORT:-8501}"
port_busy() { (echo >"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
for port in "$SERVE_PORT" "$UI_PORT"; do
  if port_busy "$port"; then
    echo "port $port is already in use (an earlier MedLens or another server?): stop it first" >&2
    exit 1
  fi
done
mkdir -p .run
echo "==> starting Ray Serve (log: .run/serve.log)"
set -a; . serving/fast_path.env; set +a   # HAProxy front door, direct ingress (see the file)
setsid .venv/bin/serve run ray_config.yaml >.run/serve.log 2>&1 </dev/null &
SERVE_PID=$!
stop() {
  echo "==> stopping MedLens"
  pkill -TERM -s "$SERVE_PID" 2>/dev/null || true
  [ -n "${UI_PID:-}" ] && pkill -TERM -s "$UI_PID" 2>/dev/null || true
  sleep 3
  pkill -KILL -s "$SERVE_PID" 2>/dev/null || true
  [ -n "${UI_PID:-}" ] && pkill -KILL -s "$UI_PID" 2>/dev/null || true
}
trap stop EXIT INT TERM
for _ in $(seq 1 180); do
  if curl -fsS "http://127.0.0.1:$SERVE_PORT/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVE_PID" 2>/dev/null; then echo "serve run exited:" >&2; tail -30 .run/serve.log >&2; exit 1; fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$SERVE_PORT/healthz" >/dev/null || { echo "serving did not become healthy" >&2; tail -30 .run/serve.log >&2; exit 1; }
echo "==> serving healthy on http://127.0.0.1:$SERVE_PORT (API docs: /docs)"
export MEDLENS_SERVING_URL="http://127.0.0.1:$SERVE_PORT"
setsid .venv/bin/streamlit run dashboard/app.py --server.port "$UI_PORT" --server.address 127.0.0.1 \
  --server.headless true --browser.gatherUsageStats false >.run/dashboard.log 2>&1 </dev/null &
UI_PID=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$UI_PORT/_stcore/health" >/dev/null 2>&1 && break
  sleep 1
done
echo
echo "MedLens is running: open http://127.0.0.1:$UI_PORT"
echo "(serving API: http://127.0.0.1:$SERVE_PORT/docs; logs in .run/; Ctrl-C to stop)"
wait "$UI_PID"
