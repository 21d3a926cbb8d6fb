"""The dashboard in a real Chromium (Debian's /usr/bin/chromium driven by playwright), against a real
MedLens serving: real uploads, upload-to-result times, screenshots, two sessions in parallel.

Writes only under ``test-artifacts/``: ``timings.json`` and the screenshots ``screenshots/<page>.png``.
The README's ``docs/screenshots/`` are refreshed from those by ``make screenshots``
(``scripts/screenshots.sh``), never by a test run.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard.charts.mortality import label_text
from dashboard.demo import demo_radiograph
from dashboard.navigation import PAGES, START_PAGE
from models.config import data_paths
from models.mortality_io import load_outcomes
from serving.client import MedLensClient
from serving.schemas import WorklistQuery
from serving.store.export import CSV_COLUMNS
from tests.dashboard.helpers import pneumonia_images, septic_stays, sha16
from tests.dashboard.live import (
    ARTIFACTS,
    RESULT_TIMEOUT_MS,
    idle,
    main_text,
    open_page,
    running_dashboard,
    score_line,
    upload_xray,
)

pytestmark = [pytest.mark.browser, pytest.mark.serve, pytest.mark.data]

playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
PlaywrightTimeout = playwright_sync.TimeoutError

SCREENSHOTS = ARTIFACTS / "screenshots"
TIMINGS = ARTIFACTS / "timings.json"
WIDTH = 1440


# ---------------------------------------------------------------------------------------------------------
# fixtures: streamlit server (the browser is conftest.py's)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard_url(dashboard_serving_url: str) -> Iterator[str]:
    with running_dashboard(dashboard_serving_url) as url:
        yield url


@pytest.fixture(scope="module")
def xray_files() -> list[Path]:
    files = pneumonia_images(limit=6)
    if len(files) < 2:
        pytest.skip("no chest X-rays under <data>/chest_xray/train/PNEUMONIA (set MEDLENS_DATA_DIR)")
    return files


@pytest.fixture(scope="module")
def septic_file() -> Path:
    stays = septic_stays(limit=1)
    if not stays:
        pytest.skip("no septic stay under <data>/sepsis/training (set MEDLENS_DATA_DIR)")
    return stays[0]


@pytest.fixture(scope="module")
def mortality_file() -> Path:
    """A real PhysioNet 2012 record of a patient who died in hospital, named by its RecordID (set a's first)."""
    root = data_paths().mortality
    if not (root / "Outcomes-a.txt").is_file():
        pytest.skip(f"no PhysioNet 2012 set a under {root} (set MEDLENS_DATA_DIR)")
    died = sorted(name for name, death in load_outcomes(root / "Outcomes-a.txt").items() if death)
    return root / "set-a" / f"{died[0]}.txt"


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def _record_timing(key: str, value: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    data = json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}
    data[key] = value
    data["recorded_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    TIMINGS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"[timing] {key}: {value}")


def _shown_score(page: Any) -> float:
    """The score as the X-ray answer writes it: a decimal, never a percentage (it is not a probability)."""
    text = score_line(page).inner_text()
    match = re.search(r"Score\s+(\d\.\d{3})\s+vs operating threshold\s+(\d\.\d{3})", text)
    assert match and "%" not in text, text
    return float(match.group(1))


def _screenshot(page: Any, name: str) -> None:
    """Screenshot the whole page into ``test-artifacts/screenshots/<name>.png`` (Streamlit scrolls inside
    stMain, so grow the viewport to fit)."""
    page.wait_for_timeout(600)  # let plotly finish its transitions
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stMainBlockContainer]')]"
        ".map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": WIDTH, "height": int(min(max(height + 40, 900), 4000))})
    page.wait_for_timeout(400)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size({"width": WIDTH, "height": 1000})


# ---------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------
def test_every_page_has_its_own_address(dashboard_url: str, browser: Any) -> None:
    """A page's address opens it, to bookmark or share (Streamlit serves its default page at "/" alone: "/xray"
    was "Page not found"); "/" opens the start page at its own address. The start page and one other: every page
    gets its address the same way (dashboard/app.py)."""
    context = browser.new_context(viewport={"width": WIDTH, "height": 1000})
    page = context.new_page()
    try:
        for key in (START_PAGE, "service"):
            title = PAGES[key][1]
            open_page(page, f"{dashboard_url}/{key}", title)
            assert page.url.rstrip("/").endswith(f"/{key}"), page.url
            assert page.get_by_text("Page not found").count() == 0, key
        open_page(page, dashboard_url + "/", PAGES[START_PAGE][1])
        assert page.url.endswith(f"/{START_PAGE}") and page.get_by_text("Page not found").count() == 0, page.url
    finally:
        context.close()


def test_review_flow_in_a_real_browser(
    dashboard_url: str,
    browser: Any,
    xray_files: list[Path],
    septic_file: Path,
    mortality_file: Path,
    dashboard_serving_url: str,
) -> None:
    context = browser.new_context(viewport={"width": WIDTH, "height": 1000})
    page = context.new_page()
    try:
        # 1. chest X-ray: a real pediatric radiograph from the PNEUMONIA folder
        open_page(page, dashboard_url + "/", "Chest X-ray review")
        image = xray_files[0]
        start = time.perf_counter()
        upload_xray(page, image)
        score_line(page).wait_for(timeout=RESULT_TIMEOUT_MS)
        page.locator('[data-testid="stPlotlyChart"]', has_text="Pneumonia score").wait_for(timeout=RESULT_TIMEOUT_MS)
        elapsed = time.perf_counter() - start
        _record_timing("xray_upload_to_probability_s", round(elapsed, 3))
        idle(page)
        shown = _shown_score(page)
        expected = MedLensClient(dashboard_serving_url).predict_xray(image.read_bytes(), image.name)
        assert shown == pytest.approx(expected.probability, abs=0.002)
        text = main_text(page)
        assert expected.label in text
        assert sha16(image.read_bytes()) in text  # the case id is the hash of the bytes
        assert image.stem not in text  # the file name is never shown
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 2  # radiograph + gauge
        _screenshot(page, "xray")

        # 2. an extension-less DICOM whose name looks like a patient's: accepted, name never shown
        dicom_name = "DOE^JANE_19700101"
        upload_xray(page, {"name": dicom_name, "mimeType": "application/octet-stream", "buffer": demo_radiograph()})
        page.get_by_text("DICOM header fields are hidden").wait_for(timeout=RESULT_TIMEOUT_MS)
        idle(page)
        text = main_text(page)
        assert "dicom" in text and "DOE" not in text and "JANE" not in text
        assert "Modality" not in text
        assert "9RG1" not in text and "CompressedSamples" not in text  # the file's PatientID and PatientName
        page.get_by_text("Show header fields").click()
        page.get_by_text("De-identified header fields").wait_for(timeout=RESULT_TIMEOUT_MS)
        idle(page)
        assert "9RG1" not in main_text(page)
        _screenshot(page, "xray_dicom_fields")
        # only when a reader who has given their name asks (the view is recorded with it)
        page.get_by_label("Your name (for reviews)").fill("Dr Browser")
        page.get_by_label("Your name (for reviews)").press("Enter")
        idle(page)
        page.get_by_text("Show patient identifiers").click()
        page.get_by_text("MedLens keeps none of them").wait_for(timeout=RESULT_TIMEOUT_MS)
        idle(page)
        assert "9RG1" in main_text(page) and "CompressedSamples RG1" in main_text(page)
        assert "Dr Browser saw them" in main_text(page)

        # 3. sepsis: a real septic ICU stay
        open_page(page, dashboard_url + "/sepsis", "Sepsis early warning")
        start = time.perf_counter()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(septic_file)
        page.locator('[data-testid="stPlotlyChart"]', has_text="Sepsis alert score per hour").wait_for(
            timeout=RESULT_TIMEOUT_MS
        )
        risk_elapsed = time.perf_counter() - start
        page.locator('[data-testid="stPlotlyChart"]', has_text="what drove the score").wait_for(
            timeout=RESULT_TIMEOUT_MS
        )
        explain_elapsed = time.perf_counter() - start
        _record_timing("sepsis_upload_to_risk_chart_s", round(risk_elapsed, 3))
        _record_timing("sepsis_upload_to_attributions_s", round(explain_elapsed, 3))
        idle(page)
        text = main_text(page)
        assert "LSTM first alert" in text and "Transformer first alert" in text
        assert septic_file.stem not in text
        chart = page.locator('[data-testid="stPlotlyChart"]', has_text="Sepsis alert score per hour")
        legend = chart.inner_text()
        assert "LSTM score" in legend and "Transformer score" in legend and "threshold" in legend
        assert "LSTM calibrated risk" in legend and "Transformer calibrated risk" in legend
        _screenshot(page, "sepsis")

        # 4. ICU mortality: a real PhysioNet 2012 record, whose file name and first row are its RecordID
        open_page(page, dashboard_url + "/mortality", "ICU mortality")
        start = time.perf_counter()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(mortality_file)
        page.locator('[data-testid="stPlotlyChart"]', has_text="as the first 48 hours unfold").wait_for(
            timeout=RESULT_TIMEOUT_MS
        )
        _record_timing("mortality_upload_to_risk_chart_s", round(time.perf_counter() - start, 3))
        idle(page)
        served = MedLensClient(dashboard_serving_url).predict_mortality(
            mortality_file.read_bytes(), mortality_file.name, "mortality-lstm"
        )
        assert served.calibrated_probability is not None
        shown = f"{served.calibrated_probability:.1%}"  # the risk; the score is a decimal beside it
        text = main_text(page)
        assert "Risk of death (calibrated)" in text and shown in text and label_text(served) in text
        assert "Score after 48 h" in text and f"{served.probability:.3f}" in text
        assert mortality_file.stem not in text  # the RecordID is never shown
        page.get_by_text("Show what drove the risk").click()
        page.locator('[data-testid="stPlotlyChart"]', has_text="what drove the score after 48 h").wait_for(
            timeout=RESULT_TIMEOUT_MS
        )
        idle(page)
        text = main_text(page)
        assert shown in text  # asking why does not move the risk shown
        assert mortality_file.stem not in text
        _screenshot(page, "mortality")

        # 5. model performance
        open_page(page, dashboard_url + "/performance", "Model performance")
        page.locator('[data-testid="stPlotlyChart"]').nth(3).wait_for(timeout=RESULT_TIMEOUT_MS)
        assert "AUC" in main_text(page)
        _screenshot(page, "performance")
        # a sequence model adds its held-out estimate (the protocol's splits and the reserve) below the curves
        page.locator('[data-testid="stSelectbox"]').first.click()
        page.get_by_role("option", name="Sepsis early warning · Transformer").click()
        page.get_by_role("heading", name="On stays it never saw: the figures to believe").wait_for(
            timeout=RESULT_TIMEOUT_MS
        )
        idle(page)
        text = main_text(page)
        assert "Held-out estimate over 8 splits" in text and "reserve" in text
        held_out = page.locator('[data-testid="stPlotlyChart"]').nth(4)  # after the card's four
        held_out.scroll_into_view_if_needed()
        page.wait_for_timeout(600)  # let plotly finish its transitions
        held_out.screenshot(path=str(SCREENSHOTS / "performance-held-out.png"))

        # 6. service
        open_page(page, dashboard_url + "/service", "Service")
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=RESULT_TIMEOUT_MS)
        idle(page)
        _screenshot(page, "service")
    finally:
        context.close()


def test_two_sessions_get_their_own_results(
    dashboard_url: str, browser: Any, xray_files: list[Path], dashboard_serving_url: str
) -> None:
    client = MedLensClient(dashboard_serving_url)
    # two radiographs whose probabilities differ clearly, so a mix-up would be visible
    scored = [(path, client.predict_xray(path.read_bytes(), path.name).probability) for path in xray_files]
    (first, p_first), (second, p_second) = min(scored, key=lambda s: s[1]), max(scored, key=lambda s: s[1])
    assert p_second - p_first > 0.005, f"the test images score too alike: {scored}"

    contexts = [browser.new_context(viewport={"width": WIDTH, "height": 1000}) for _ in range(2)]
    try:
        pages = [c.new_page() for c in contexts]
        for page in pages:
            open_page(page, dashboard_url + "/", "Chest X-ray review")
        starts = []
        for page, image in zip(pages, (first, second), strict=True):  # both uploads in flight together
            starts.append(time.perf_counter())
            upload_xray(page, image)
        elapsed = []
        for page, start in zip(pages, starts, strict=True):
            score_line(page).wait_for(timeout=RESULT_TIMEOUT_MS)
            elapsed.append(round(time.perf_counter() - start, 3))
        _record_timing("xray_parallel_two_sessions_upload_to_probability_s", elapsed)
        for page, image, probability in zip(pages, (first, second), (p_first, p_second), strict=True):
            idle(page)
            assert _shown_score(page) == pytest.approx(probability, abs=0.002)
            text = main_text(page)
            assert sha16(image.read_bytes()) in text
            other = second if image == first else first
            assert sha16(other.read_bytes()) not in text
    finally:
        for context in contexts:
            context.close()


def _review_as(page: Any, url: str, reader: str, image: Path, verdict: str) -> str:
    """Open the X-ray page as ``reader``, read ``image`` and save a review; returns the history's text."""
    open_page(page, url + "/", "Chest X-ray review")
    upload_xray(page, image)
    score_line(page).wait_for(timeout=RESULT_TIMEOUT_MS)
    idle(page)
    page.get_by_label("Your name (for reviews)").fill(reader)
    page.get_by_label("Your name (for reviews)").press("Enter")
    page.get_by_role("button", name="Save review").wait_for(timeout=RESULT_TIMEOUT_MS)
    idle(page)
    history_before = main_text(page)
    page.get_by_text(verdict, exact=True).click()
    page.get_by_role("button", name="Save review").click()
    page.locator('[data-testid="stTable"]', has_text=reader).wait_for(timeout=RESULT_TIMEOUT_MS)
    idle(page)
    return history_before


def test_two_readers_see_each_others_reviews(
    dashboard_url: str, browser: Any, xray_files: list[Path], dashboard_serving_url: str
) -> None:
    """Two browser sessions review the same radiograph: each sees the other's review (stored by serving)
    once it reloads the case; the file's name is never shown."""
    image = xray_files[-1]
    contexts = [browser.new_context(viewport={"width": WIDTH, "height": 1000}) for _ in range(2)]
    try:
        first, second = (c.new_page() for c in contexts)
        _review_as(first, dashboard_url, "Reader One", image, "agree")
        before = _review_as(second, dashboard_url, "Reader Two", image, "disagree")
        assert "Reader One" in before  # the second reader saw the first one's review before writing theirs
        open_page(first, dashboard_url + "/", "Chest X-ray review")  # the first reader reloads the case
        upload_xray(first, image)
        first.locator('[data-testid="stTable"]', has_text="Reader Two").wait_for(timeout=RESULT_TIMEOUT_MS)
        idle(first)
        text = main_text(first)
        assert "Reader One" in text and "Reader Two" in text and image.stem not in text
        _screenshot(first, "xray_reviews")
        history = MedLensClient(dashboard_serving_url).case(hashlib.sha256(image.read_bytes()).hexdigest()).history
        mine = [(r.reviewer, r.verdict) for r in history if r.reviewer in ("Reader One", "Reader Two")]
        assert mine[-2:] == [("Reader One", "agree"), ("Reader Two", "disagree")]
    finally:
        for context in contexts:
            context.close()


def _csv_header(data: bytes) -> tuple[str, ...]:
    return tuple(next(csv.reader(io.StringIO(data.decode("utf-8-sig")))))


def test_worklist_lists_the_shared_cases(
    dashboard_url: str,
    browser: Any,
    xray_files: list[Path],
    septic_file: Path,
    mortality_file: Path,
    dashboard_serving_url: str,
) -> None:
    """Studies added through serving (radiographs, a sepsis record and a 2012 mortality record) appear on every
    reader's worklist, most urgent first; opening the first shows the model's answer; no file name is shown."""
    client = MedLensClient(dashboard_serving_url)
    added = [*xray_files[:4], septic_file, mortality_file]
    made = client.upload_cases([(p.name, p.read_bytes()) for p in added])
    assert not made.rejected and len(made.cases) == len(added)
    most_urgent = client.worklist(WorklistQuery(status="unreviewed")).cases[0]
    context = browser.new_context(viewport={"width": WIDTH, "height": 1000})
    try:
        page = context.new_page()
        open_page(page, dashboard_url + "/worklist", "Worklist")
        page.get_by_text("case(s); showing").wait_for(timeout=RESULT_TIMEOUT_MS)
        page.locator('[data-testid="stDataFrame"]').wait_for(timeout=RESULT_TIMEOUT_MS)  # the worklist table
        page.locator('[data-testid="stSelectbox"]', has_text="Open case").click()
        # typed, as a reader finds a case: the dropdown renders only the options near the selected one, and a
        # worklist that earlier tests filled has more of them than it draws
        page.keyboard.type(most_urgent.id[:16])
        page.get_by_role("option", name=most_urgent.id[:16]).click()
        page.locator("h3", has_text=f"Case {most_urgent.id[:16]}").wait_for(timeout=RESULT_TIMEOUT_MS)
        idle(page)
        text = main_text(page)
        # the opened case's answer (an out-of-distribution radiograph's only when asked for)
        assert any(said in text for said in ("vs operating threshold", "first alert", "LABEL WITHHELD"))
        assert all(p.stem not in text for p in added), "a file name reached the page"
        _screenshot(page, "worklist")
        # J and K step down and up the list from the keyboard, as Next and Previous do
        second = client.worklist(WorklistQuery(status="unreviewed")).cases[1]
        for key, case in (("j", second), ("k", most_urgent)):
            page.locator("h3", has_text="Case").first.click()  # the keys go to the page, not to a field
            page.keyboard.press(key)
            page.locator("h3", has_text=f"Case {case.id[:16]}").wait_for(timeout=RESULT_TIMEOUT_MS)
            idle(page)
        # every review, as a file the reader's browser saves: fetched from serving when clicked
        page.get_by_text("Export every review").click()
        for button, check in (
            # a byte-order mark first (Excel then reads UTF-8), every field quoted
            ("Reviews as CSV", lambda data: data.startswith(codecs.BOM_UTF8) and _csv_header(data) == CSV_COLUMNS),
            ("Reviews as FHIR (JSON)", lambda data: json.loads(data)["resourceType"] == "Bundle"),
        ):
            # no run in flight: a deferred download belongs to the run that drew its button (once, in CI, a click
            # right after the case opened brought no file)
            page.wait_for_timeout(500)
            idle(page)
            page.get_by_role("button", name=button).wait_for(timeout=RESULT_TIMEOUT_MS)
            try:
                with page.expect_download(timeout=60_000) as download:
                    page.get_by_role("button", name=button).click()
            except PlaywrightTimeout:
                raise AssertionError(f"{button}: no file in 60 s; the page says: {main_text(page)[-600:]}") from None
            saved = Path(download.value.path()).read_bytes()
            assert check(saved), saved[:200]
            assert download.value.suggested_filename.startswith("medlens-reviews-")
    finally:
        context.close()


def test_the_case_open_from_a_row_stays_open_when_the_list_changes(
    dashboard_url: str, browser: Any, xray_files: list[Path], dashboard_serving_url: str
) -> None:
    """A row of the table is a place in the list: when another reader's upload lands above it, the case the
    reader opened from it stays open (it used to become whichever case now stood in that row)."""
    import pydicom
    from pydicom.data import get_testdata_file

    client = MedLensClient(dashboard_serving_url)
    client.upload_cases([(p.name, p.read_bytes()) for p in xray_files[:3]])
    listed = client.worklist(WorklistQuery(status="unreviewed")).cases[:15]  # the rows in view
    row = next(i for i, c in enumerate(listed) if i > 0 and c.in_distribution is not False)
    opened = listed[row]
    context = browser.new_context(viewport={"width": WIDTH, "height": 1000})
    try:
        page = context.new_page()
        open_page(page, dashboard_url + "/worklist", "Worklist")
        table = page.locator('[data-testid="stDataFrame"]')
        table.wait_for(timeout=RESULT_TIMEOUT_MS)
        box = table.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 16, box["y"] + 38 + 35 * row + 17)  # the row's selection box
        page.locator("h3", has_text=f"Case {opened.id[:16]}").wait_for(timeout=RESULT_TIMEOUT_MS)
        idle(page)
        # another reader adds a CT: out of distribution, so it is listed above every in-distribution case
        ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
        ds.SeriesDescription = hashlib.sha256(opened.id.encode()).hexdigest()[:16]  # new bytes, a new case
        buffer = io.BytesIO()
        ds.save_as(buffer)
        new = client.upload_cases([("ct.dcm", buffer.getvalue())]).cases[0]
        assert new.in_distribution is False
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(500)
        idle(page)
        heading = page.locator("h3", has_text="Case").first.inner_text()
        assert opened.id[:16] in heading, f"opened {opened.id[:16]}, now showing {heading!r}"
    finally:
        context.close()
