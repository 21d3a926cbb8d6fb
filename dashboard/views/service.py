"""Streamlit page file (see dashboard/app.py); the page itself is in dashboard/service_page.py."""

from dashboard.service_page import render

render()
