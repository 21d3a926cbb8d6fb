"""The dashboard's pages: each one's address (``/<key>``), script under ``dashboard/``, title and icon."""

from __future__ import annotations

PAGES = {
    "worklist": ("views/worklist.py", "Worklist", ":material/checklist:"),
    "xray": ("views/xray.py", "Chest X-ray review", ":material/radiology:"),
    "sepsis": ("views/sepsis.py", "Sepsis early warning", ":material/monitor_heart:"),
    "mortality": ("views/mortality.py", "ICU mortality", ":material/ecg_heart:"),
    "performance": ("views/performance.py", "Model performance", ":material/query_stats:"),
    "service": ("views/service.py", "Service", ":material/dns:"),
}
#: the page that "/" opens
START_PAGE = "xray"
