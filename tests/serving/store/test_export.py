"""The exports: CSV that a spreadsheet opens safely and reads as UTF-8 whichever separator it splits on, FHIR
identifiers unique across installations, and the export route building both off the ingress's event loop."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from models.spreadsheet import safe_cell
from serving.schemas import ReviewIn
from serving.store import CaseStore
from serving.store.export import BOM, CSV_COLUMNS, reviews_csv, reviews_fhir
from tests.serving.store.test_cases import xray_case

#: comments that a spreadsheet would run as formulas, in a comma-, semicolon- or tab-separated reading of the file
FORMULAS = [
    "=1+1",
    "x;=1+1;",
    "x\t=2+2\t",
    "ok\n=3+3",
    "ok\r\n@SUM(1)",
    "a,-2+3",
    " =1+1",
    "\t=1+1",
    "\u200b=1+1",
    "\xa0+1+1",
    "\uff1d1+1",
    'ok;=HYPERLINK("http://x","y")',
]


def _runs_as_formula(cell: str) -> bool:
    """Whether a spreadsheet could read ``cell`` as a formula: its first character that is neither blank nor
    invisible starts one (a spreadsheet may trim blanks)."""
    shown = cell.lstrip(" \t\r\n\xa0\u200b\ufeff")
    return shown[:1] in ("=", "+", "-", "@", "\uff1d")


def test_a_cell_never_runs_as_a_formula_whichever_separator_a_spreadsheet_reads() -> None:
    for text in FORMULAS:
        for separator in (",", ";", "\t", "\n"):
            assert not any(_runs_as_formula(piece) for piece in safe_cell(text).split(separator)), (text, separator)
    assert safe_cell("x;=1+1;") == "x;'=1+1;" and safe_cell("x\t=2+2") == "x\t'=2+2"
    assert [safe_cell(v) for v in ("José", "0.970000", "a-b", "mail@x", 12, None)] == [
        "José", "0.970000", "a-b", "mail@x", "12", "",
    ]  # fmt: skip


def test_the_csv_is_safe_in_every_reading_and_starts_with_a_byte_order_mark(store: CaseStore) -> None:
    case, _ = store.add(xray_case(1, 0.9))
    for comment in FORMULAS:
        store.add_review(case.id, ReviewIn(reviewer="José Ruiz", verdict="agree", comment=comment))
    text = reviews_csv(list(store.trail()))
    assert text.startswith(BOM) and not text.startswith(BOM * 2)
    assert "José Ruiz" in text.encode("utf-8").decode("utf-8-sig")  # as Excel reads a file with the mark
    body = text.removeprefix(BOM)
    assert body.splitlines()[0] == ",".join(f'"{column}"' for column in CSV_COLUMNS)  # every field quoted
    for separator in (",", ";", "\t"):
        cells = [c for row in csv.reader(io.StringIO(body), delimiter=separator) for c in row]
        assert not [c for c in cells if _runs_as_formula(c)], separator
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["comment"] for r in rows][:2] == ["'=1+1", "x;'=1+1;"]


def test_fhir_identifiers_are_the_installations_and_name_the_case(store: CaseStore, tmp_path: Path) -> None:
    """Two databases (two installations, or one made again) give their first review the same id: the reports'
    fullUrl and identifier differ, under each database's installation id, which stays what it is; each report
    names its case. The bundle is valid R4B."""
    from fhir.resources.R4B.bundle import Bundle

    other = CaseStore(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        entries = []
        for db in (store, other):
            case, _ = db.add(xray_case(1, 0.9))
            db.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"))
            bundle = reviews_fhir(list(db.trail()), "2026-12-04T00:00:00Z", db.installation())
            Bundle.model_validate_json(json.dumps(bundle))
            entries.append(bundle["entry"][0])
        assert uuid.UUID(store.installation()) != uuid.UUID(other.installation())
        again = CaseStore(store.url)
        assert again.installation() == store.installation()  # the database's, not the process's
        again.close()
    finally:
        other.close()
    (first, second) = entries
    assert first["fullUrl"] != second["fullUrl"] and first["fullUrl"].startswith("urn:uuid:")
    assert first["resource"]["identifier"] != second["resource"]["identifier"]
    review_id, case_id = first["resource"]["identifier"]
    assert review_id["system"] == f"urn:medlens:{store.installation()}:review" and review_id["value"] == "1"
    assert case_id["system"] == f"urn:medlens:{store.installation()}:case" and case_id["value"] == f"{1:064x}"
    with pytest.raises(ValueError, match="installation must be a UUID"):
        reviews_fhir([], "2026-12-04T00:00:00Z", "medlens")


def test_the_export_route_builds_off_the_event_loop(store: CaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long trail takes seconds to build and validate: the route does it on a worker thread, never on the
    ingress's event loop, which every other route shares."""
    import serving._cases_api as api

    case, _ = store.add(xray_case(1, 0.9))
    store.add_review(case.id, ReviewIn(reviewer="José", verdict="agree"))
    built_on: list[threading.Thread] = []

    def spy(build: Any) -> Any:
        def on_its_thread(*args: Any) -> Any:
            built_on.append(threading.current_thread())
            return build(*args)

        return on_its_thread

    monkeypatch.setattr(api, "reviews_csv", spy(api.reviews_csv))
    monkeypatch.setattr(api, "reviews_fhir", spy(api.reviews_fhir))
    monkeypatch.setattr(api.CASES, "service", api.CaseService(store, None, None, 0))  # type: ignore[arg-type]

    async def export(fmt: str) -> tuple[threading.Thread, bytes]:
        response = await api.export_reviews(fmt)  # type: ignore[arg-type]
        return threading.current_thread(), bytes(response.body)

    loop_thread, csv_body = asyncio.run(export("csv"))
    assert csv_body.startswith(b"\xef\xbb\xbf") and "José".encode() in csv_body
    _, fhir_body = asyncio.run(export("fhir"))
    assert store.installation() in fhir_body.decode()
    assert len(built_on) == 2 and loop_thread not in built_on
