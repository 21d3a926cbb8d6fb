"""Pure figure and table builders of the dashboard, one module per page.

``common`` holds the palette, the layout helper, the source line and the PNG decode / resize helpers;
``xray``, ``sepsis``, ``performance`` and ``service`` turn serving's response schemas
(``serving.schemas``) into plotly figures and pandas tables for their page. Nothing here calls
Streamlit, so every chart can be unit-tested and reused in notebooks or reports.
"""
