"""Streamlit page file (see dashboard/app.py); the page itself is in dashboard/xray_page.py."""

from dashboard.xray_page import render

render()
