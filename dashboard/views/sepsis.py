"""Streamlit page file (see dashboard/app.py); the page itself is in dashboard/sepsis_page.py."""

from dashboard.sepsis_page import render

render()
