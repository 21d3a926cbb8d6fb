#!/usr/bin/env bash
# Refresh the README's screenshots (docs/screenshots/<page>.png): run the browser test, which writes
# them to test-artifacts/screenshots/ (a real serving, Streamlit and Chromium; needs the real data and
# the test tools of `make setup`), then copy the pages' screenshots into docs/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
PAGES=(xray sepsis mortality worklist performance service performance-held-out)
for page in "${PAGES[@]}"; do
  rm -f "test-artifacts/screenshots/$page.png"  # never copy a previous run's picture
done
.venv/bin/python -m pytest tests/dashboard/test_browser.py "$@"
missing=()
for page in "${PAGES[@]}"; do
  [ -f "test-artifacts/screenshots/$page.png" ] || missing+=("$page")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "no screenshot of: ${missing[*]} (was the browser test skipped? see its skip reasons above);" \
    "docs/screenshots/ left as it was" >&2
  exit 1
fi
mkdir -p docs/screenshots
for page in "${PAGES[@]}"; do
  cp "test-artifacts/screenshots/$page.png" "docs/screenshots/$page.png"
done
echo "docs/screenshots/: ${PAGES[*]} refreshed from test-artifacts/screenshots/"
