"""CSV cells a spreadsheet opens safely: text that starts as a formula is quoted (OWASP CSV injection)."""

from __future__ import annotations

from typing import Any

#: what makes Excel, LibreOffice and Google Sheets read a cell as a formula
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """``value`` as CSV text, with a leading ``'`` where it would otherwise run as a formula; None is empty."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
