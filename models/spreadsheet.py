"""CSV cells a spreadsheet opens safely: text that would run as a formula is quoted (OWASP CSV injection).

A spreadsheet may split a file on another separator than the one it was written with (a European locale's ``;``,
a tab), so a cell is not only its first character: every piece of it after a comma, semicolon, tab or line break
is a cell to some reader. Each piece that starts as a formula, after any blank or invisible characters, gets a
``'`` before it.
"""

from __future__ import annotations

import re
from typing import Any

#: what makes Excel, LibreOffice and Google Sheets read a cell as a formula (and their full-width forms, which
#: some locales' input methods type)
_FORMULA_STARTS = "=+-@\uff1d\uff0b\uff0d\uff20"
#: the start of the text and each separator a spreadsheet may split a line or a file on, then any blank or
#: invisible (format) characters, then the formula's first character
_FORMULA = re.compile(rf"(^|[,;\t\r\n])([\s\u200b-\u200f\u2060-\u2064\ufeff\u00ad]*)([{re.escape(_FORMULA_STARTS)}])")


def safe_cell(value: Any) -> str:
    """``value`` as CSV text, with a ``'`` before each piece of it that would otherwise run as a formula in any
    reading of the file (see the module's docstring); None is empty."""
    text = "" if value is None else str(value)
    return _FORMULA.sub(r"\1\2'\3", text)
