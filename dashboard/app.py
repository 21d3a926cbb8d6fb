"""MedLens dashboard — entry point: ``streamlit run dashboard/app.py``.

Talks to MedLens serving over HTTP only (``serving.client``); the URL comes from
``$MEDLENS_SERVING_URL`` or the sidebar field (per browser session). Each page is a script in
``dashboard/views/`` that ``st.navigation`` runs; its charts and tables are pure functions in
``dashboard/charts/<page>.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `streamlit run` puts dashboard/ on sys.path, not the repository root
    sys.path.insert(0, str(HERE.parent))

import streamlit as st  # noqa: E402

from dashboard import backend, widgets  # noqa: E402

PAGES = {
    "worklist": ("views/worklist.py", "Worklist", ":material/checklist:"),
    "xray": ("views/xray.py", "Chest X-ray review", ":material/radiology:"),
    "sepsis": ("views/sepsis.py", "Sepsis early warning", ":material/monitor_heart:"),
    "mortality": ("views/mortality.py", "ICU mortality", ":material/ecg_heart:"),
    "performance": ("views/performance.py", "Model performance", ":material/query_stats:"),
    "service": ("views/service.py", "Service", ":material/dns:"),
}


def sidebar() -> None:
    st.sidebar.markdown("### MedLens")
    url = widgets.serving_url_input()
    if backend.valid_url(url):
        try:
            health = backend.health()
        except backend.ServingError as exc:
            st.sidebar.error(f"Serving not available: {exc.detail}", icon=":material/cloud_off:")
        else:
            st.sidebar.success(f"Serving up · models: {', '.join(health.models)}", icon=":material/check_circle:")
    st.sidebar.caption("Research and demonstration software. **Not for clinical use.**")


def main() -> None:
    st.set_page_config(page_title="MedLens", page_icon=":material/radiology:", layout="wide")
    pages = [
        st.Page(str(HERE / path), title=title, icon=icon, url_path=key, default=(key == "xray"))
        for key, (path, title, icon) in PAGES.items()
    ]
    page = st.navigation(pages)
    sidebar()
    page.run()


main()
