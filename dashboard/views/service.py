"""Page script (run by ``st.Page`` from dashboard/app.py, url ``/service``): the live service.

Replicas per deployment (now and the recent history), request rate and latency per endpoint, and the
models with their devices, all from ``GET /v1/service`` and ``GET /v1/models``: deployment names are
whatever serving reports. Live data only (a recorded load test is in docs/load/, drawn by benchmarks/).
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dashboard import backend, widgets
from dashboard.charts.service import (
    deployments_table,
    endpoint_figure,
    endpoints_table,
    models_table,
    replica_history_figure,
    replicas_now_figure,
)

REFRESH_SECONDS = 5


def _status_panel() -> None:
    status = backend.call(backend.service)
    if status is None:
        return
    st.caption(
        f"Updated {datetime.now(UTC).strftime('%H:%M:%S')} UTC · request statistics over the last {status.window_s:g} s"
    )
    now_col, history_col = st.columns([1, 1])
    with now_col:
        st.plotly_chart(replicas_now_figure(status), key="service_replicas_now", config={"displaylogo": False})
    with history_col:
        if status.history:
            st.plotly_chart(replica_history_figure(status), key="service_history", config={"displaylogo": False})
        else:
            st.info("No replica history yet.")
    st.dataframe(deployments_table(status), hide_index=True, key="service_deployments")
    st.subheader("Endpoints")
    if status.endpoints:
        st.dataframe(endpoints_table(status), hide_index=True, key="service_endpoints")
        st.plotly_chart(endpoint_figure(status), key="service_endpoint_chart", config={"displaylogo": False})
    else:
        st.info("No requests in the window yet.")
    st.subheader("Models")
    listing = backend.call(backend.models_now)
    if listing is not None:
        st.dataframe(models_table(listing, status), hide_index=True, key="service_models")


def render() -> None:
    st.title("Service")
    st.caption(f"MedLens serving at `{backend.serving_url()}`")
    auto = widgets.auto_refresh_toggle()
    panel = st.fragment(_status_panel, run_every=REFRESH_SECONDS if auto else None)
    panel()
    if not auto:
        st.button("Refresh now", icon=":material/refresh:", key="service_refresh")


render()
