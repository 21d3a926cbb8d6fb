"""Page 4 — service: replicas per deployment (now and recent history), endpoint load, model devices."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import backend, charts, widgets
from serving.schemas import ModelList, ServiceStatus

REFRESH_SECONDS = 5
#: Written by `benchmarks/locust_step.py` (a recorded step-load run); shown when present.
STEP_TIMELINE = Path(__file__).resolve().parents[1] / "docs" / "load" / "step_timeline.csv"


def deployments_table(status: ServiceStatus) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "deployment": d.name,
                "model": d.model or "—",
                "status": d.status,
                "replicas": d.replicas,
                "starting": d.starting,
                "device": d.device or "—",
            }
            for d in status.deployments
        ]
    )


def endpoints_table(status: ServiceStatus) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "endpoint": e.endpoint,
                "requests": e.requests,
                "5xx": e.errors,
                "4xx": e.rejected,
                "req/s": round(e.rate_per_s, 3),
                "p50 ms": None if e.p50_ms is None else round(e.p50_ms, 1),
                "p95 ms": None if e.p95_ms is None else round(e.p95_ms, 1),
                "p99 ms": None if e.p99_ms is None else round(e.p99_ms, 1),
            }
            for e in status.endpoints
        ]
    )


def models_table(listing: ModelList) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": m.name,
                "version": m.version,
                "device": m.device,
                "threshold": round(m.threshold, 4),
                "task": m.task,
            }
            for m in listing.models
        ]
    )


def _status_panel() -> None:
    status = backend.call(backend.service)
    if status is None:
        return
    st.caption(
        f"Updated {datetime.now(UTC).strftime('%H:%M:%S')} UTC · request statistics over the last {status.window_s:g} s"
    )
    now_col, history_col = st.columns([1, 1])
    with now_col:
        st.plotly_chart(charts.replicas_now_figure(status), key="service_replicas_now", config={"displaylogo": False})
        st.dataframe(deployments_table(status), hide_index=True, key="service_deployments")
    with history_col:
        if status.history:
            st.plotly_chart(charts.replica_history_figure(status), key="service_history", config={"displaylogo": False})
        else:
            st.info("No replica history yet.")
    st.subheader("Endpoints")
    if status.endpoints:
        st.dataframe(endpoints_table(status), hide_index=True, key="service_endpoints")
        st.plotly_chart(charts.endpoint_figure(status), key="service_endpoint_chart", config={"displaylogo": False})
    else:
        st.info("No requests in the window yet.")
    st.subheader("Models")
    listing = backend.call(backend.models)
    if listing is not None:
        st.dataframe(models_table(listing), hide_index=True, key="service_models")


def step_load_caption(path: Path) -> str:
    when = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Recorded step load (1 → 16 → 64 → 0 users, `benchmarks/locust_step.py`) from "
        f"`docs/load/{path.name}`, written {when}. Not live: a past run against the default ray_config.yaml."
    )


def _step_load_panel(path: Path = STEP_TIMELINE) -> None:
    if not path.is_file():
        return
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        st.warning(f"Could not read {path.name}: {exc}")
        return
    if frame.empty:
        return
    st.subheader("Recorded step load")
    st.caption(step_load_caption(path))
    st.plotly_chart(
        charts.step_load_figure(frame, subtitle=f"docs/load/{path.name}"),
        key="service_step_load",
        config={"displaylogo": False},
    )


def render() -> None:
    st.title("Service")
    st.caption(f"MedLens serving at `{backend.serving_url()}`")
    auto = widgets.auto_refresh_toggle()
    panel = st.fragment(_status_panel, run_every=REFRESH_SECONDS if auto else None)
    panel()
    if not auto:
        st.button("Refresh now", icon=":material/refresh:", key="service_refresh")
    _step_load_panel()


__all__ = ["deployments_table", "endpoints_table", "models_table", "render", "step_load_caption"]
