"""Streamlit page file (see dashboard/app.py); the page itself is in dashboard/performance_page.py."""

from dashboard.performance_page import render

render()
