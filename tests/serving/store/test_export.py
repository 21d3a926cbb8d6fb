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


def test_the_csv_says_which_cases_are_synthetic(store: CaseStore) -> None:
    """The CSV, an audit export, keeps every row, and says of each whether its case is a generated image (empty:
    the case was deleted, and what it was is gone with it)."""
    real, _ = store.add(xray_case(1, 0.9))
    made, _ = store.add(xray_case(2, 0.9, synthetic=True))
    gone, _ = store.add(xray_case(3, 0.9, synthetic=True))
    for case in (real, made, gone):
        store.add_review(case.id, ReviewIn(reviewer="Dr A", verdict="agree"))
    store.delete(gone.id, "Dr A")
    assert CSV_COLUMNS[-1] == "synthetic"  # after the columns before it: a reader by position reads them as before
    rows = list(csv.DictReader(io.StringIO(reviews_csv(list(store.trail())).removeprefix(BOM))))
    assert [(r["case_id"][-1], r["action"], r["synthetic"]) for r in rows] == [
        ("1", "review", "false"), ("2", "review", "true"), ("3", "review", ""), ("3", "delete", ""),
    ]  # fmt: skip


HTEST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}


def test_the_fhir_export_leaves_synthetic_cases_out_unless_asked_and_then_marks_them(store: CaseStore) -> None:
    """A generated image agreed with was a final report of pneumonia (LOINC chest X-ray, SNOMED CT Pneumonia)
    that nothing told from a patient's. Left out by default; asked for, it is labelled test data (HTEST), its
    conclusion says it is no patient, and it codes no finding."""
    from fhir.resources.R4B.bundle import Bundle

    real, _ = store.add(xray_case(1, 0.9))
    made, _ = store.add(xray_case(2, 0.9, synthetic=True))
    relabelled, _ = store.add(xray_case(3, 0.2, synthetic=True))
    store.add_review(real.id, ReviewIn(reviewer="Dr A", verdict="agree"))
    store.add_review(made.id, ReviewIn(reviewer="Dr A", verdict="agree", comment="clear consolidation"))
    store.add_review(relabelled.id, ReviewIn(reviewer="Dr A", verdict="disagree", label="PNEUMONIA"))
    trail = list(store.trail())
    stamp, installation = "2026-12-08T00:00:00Z", store.installation()
    default = reviews_fhir(trail, stamp, installation)
    assert [e["resource"]["identifier"][1]["value"][-1] for e in default["entry"]] == ["1"]
    assert "synthetic" not in json.dumps(default).lower() and "HTEST" not in json.dumps(default)
    assert reviews_fhir(trail, stamp, installation, include_synthetic=False) == default
    asked = reviews_fhir(trail, stamp, installation, include_synthetic=True)
    Bundle.model_validate_json(json.dumps(asked))
    first, *synthetic = [e["resource"] for e in asked["entry"]]
    assert first == default["entry"][0]["resource"] and "meta" not in first  # a real case's report as before
    assert first["conclusionCode"][0]["coding"][0]["code"] == "233604007"
    assert len(synthetic) == 2
    for report in synthetic:
        assert report["meta"]["security"] == [HTEST]
        assert report["conclusion"].startswith("SYNTHETIC image, not a patient")
        assert "conclusionCode" not in report
    assert synthetic[0]["conclusion"].endswith("clear consolidation")
    assert "reader's label: PNEUMONIA" in synthetic[1]["conclusion"]


def test_the_export_route_adds_synthetic_cases_to_the_fhir_export_when_asked(store: CaseStore) -> None:
    from tests.serving.store.test_cases import case_routes

    real, _ = store.add(xray_case(1, 0.9))
    made, _ = store.add(xray_case(2, 0.9, synthetic=True))
    for case in (real, made):
        store.add_review(case.id, ReviewIn(reviewer="Dr A", verdict="agree"))
    with case_routes(store) as client:

        def reports(**params: str) -> list[dict[str, Any]]:
            response = client.get("/v1/reviews/export", params={"format": "fhir", **params})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("application/fhir+json")
            return [e["resource"] for e in response.json()["entry"]]

        assert [("meta" in r) for r in reports()] == [False]
        assert [("meta" in r) for r in reports(include_synthetic="false")] == [False]
        assert [("meta" in r) for r in reports(include_synthetic="true")] == [False, True]
        text = client.get("/v1/reviews/export", params={"format": "csv"}).text
        rows = list(csv.DictReader(io.StringIO(text.removeprefix(BOM))))
        assert [r["synthetic"] for r in rows] == ["false", "true"]
        refused = client.get("/v1/reviews/export", params={"format": "fhir", "include_synthetic": "maybe"})
        assert refused.status_code == 422 and "include_synthetic" in refused.json()["detail"], refused.text
