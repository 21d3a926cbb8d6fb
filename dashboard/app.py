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
from dashboard.navigation import PAGES, START_PAGE  # noqa: E402


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
    widgets.reader_panel()  # on every page: who reviews, and signing in or out


def main() -> None:
    st.set_page_config(page_title="MedLens", page_icon=":material/radiology:", layout="wide")
    pages = {
        key: st.Page(str(HERE / path), title=title, icon=icon, url_path=key)
        for key, (path, title, icon) in PAGES.items()
    }

    def start() -> None:
        st.switch_page(pages[START_PAGE])

    # Streamlit serves its default page at "/" only ("/xray" would be "page not found"): a hidden default page
    # forwards to the start page, so every page has its own address to bookmark or share
    landing = st.Page(start, title="MedLens", url_path="start", default=True, visibility="hidden")
    page = st.navigation([landing, *pages.values()])
    sidebar()
    if widgets.sign_in_configured() and not widgets.signed_in():
        # a deployment with sign-in shows its cases, predictions and exports to signed-in readers alone
        st.title("Sign in to MedLens")
        st.info("Sign in (sidebar) to use MedLens: this deployment shows its cases to signed-in readers only.")
        return
    page.run()


main()
