"""Every dashboard page under ``streamlit.testing.v1.AppTest``, against a real MedLens serving.

AppTest cannot upload files, so the upload flows use the built-in demo inputs (the demo
radiograph button, a demo sepsis stay) which go through the same code path.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.charts.common import decode_gray_png, label_words, literal
from dashboard.charts.worklist import WITHHELD
from dashboard.charts.xray import NO_REGION, heatmap_is_empty
from dashboard.demo import (
    demo_radiograph,
    example_mortality_record,
    find_mortality_demo_cases,
    find_sepsis_demo_cases,
)
from models.cards import read_card
from models.catalogue import entry
from models.config import data_paths
from serving.client import MedLensClient
from serving.schemas import (
    ReviewIn,
    SepsisPrediction,
    WorklistQuery,
    XrayPrediction,
    case_id_for,
)
from tests.conftest import ServeServer
from tests.dashboard.helpers import sepsis_dir
from tests.http_stub import Answer, Request, front_door, http_stub, json_error, passed_on

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT = 240.0


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def _page(path: str) -> AppTest:
    at = _app()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def _decode(node: Any) -> Any:
    """Plotly's JSON with typed arrays (``{"dtype", "bdata", "shape"}``) decoded to lists."""
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:
            array = np.frombuffer(base64.b64decode(node["bdata"]), dtype=np.dtype(node["dtype"]))
            if "shape" in node:
                shape = node["shape"]
                array = array.reshape([int(n) for n in str(shape).split(",")] if isinstance(shape, str) else shape)
            return array.tolist()
        return {key: _decode(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_decode(value) for value in node]
    return node


def _figures(at: AppTest) -> list[dict[str, Any]]:
    """The figures drawn with st.plotly_chart, as plotly JSON dicts."""
    return [_decode(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]


def _trace_names(figure: dict[str, Any]) -> list[str]:
    return [t.get("name") or "" for t in figure["data"]]


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error] + [e.value for e in at.sidebar.error]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------------------
# without serving: errors are shown, never tracebacks
# ---------------------------------------------------------------------------------------------------------
def test_unreachable_serving_is_an_error_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLENS_SERVING_URL", f"http://127.0.0.1:{_free_port()}")
    at = _app()
    assert any("not reachable" in e for e in _errors(at))
    at.button(key="xray_demo_button").click().run()
    assert not at.exception
    assert any("not reachable" in e.value for e in at.error)
    assert not at.get("plotly_chart")
    for page in ("views/performance.py", "views/service.py", "views/sepsis.py", "views/mortality.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
    at.switch_page("views/performance.py").run()
    assert any("not reachable" in e.value for e in at.error)


def test_sepsis_page_says_when_the_data_directory_is_absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDLENS_SERVING_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path / "nowhere"))
    at = _page("views/sepsis.py")
    assert any("does not exist" in i.value and "nowhere" in i.value for i in at.info)
    assert at.selectbox(key="sepsis_demo_case").options == []


def test_the_reader_panel_is_on_every_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """Who reviews is set in the sidebar on any page, before any case (the X-ray page drew it only once a result
    was shown), and a name typed on one page signs reviews on the next."""
    monkeypatch.setenv("MEDLENS_SERVING_URL", f"http://127.0.0.1:{_free_port()}")
    at = _app()
    for page in ("views/performance.py", "views/service.py", "views/xray.py", "views/worklist.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert len(at.sidebar.text_input(key="reviewer_name").label) > 0, page
    at.switch_page("views/service.py").run()
    at.sidebar.text_input(key="reviewer_name").input("Dr Sidebar").run()
    at.switch_page("views/xray.py").run()
    assert at.sidebar.text_input(key="reviewer_name").value == "Dr Sidebar"
    assert at.session_state["reader_this_run"] == "Dr Sidebar"


def test_sidebar_url_field_is_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLENS_SERVING_URL", "http://127.0.0.1:1")
    at = _app()
    field = at.sidebar.text_input(key="serving_url")
    assert field.value == "http://127.0.0.1:1"
    field.set_value("ftp://nope").run()
    assert any("must start with http" in e for e in _errors(at))
    other = _app()  # a second session still starts from the environment
    assert other.sidebar.text_input(key="serving_url").value == "http://127.0.0.1:1"


def test_a_serving_url_typed_in_the_sidebar_is_sent_no_api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API token goes to the configured serving URL alone. A real HTTP server records what reaches it: as the
    configured URL it gets the token; typed into the sidebar of a dashboard configured elsewhere (anyone who can
    open the dashboard can type one), it gets none, and the sidebar says so."""
    seen: list[str | None] = []

    def record(request: Request) -> Answer:
        seen.append(request.headers.get("Authorization"))
        return json_error(503, "unavailable", "a recording server")

    with http_stub(record) as recorder:
        monkeypatch.setenv("MEDLENS_API_TOKEN", "s3cret-token")
        monkeypatch.setenv("MEDLENS_SERVING_URL", recorder)
        _app()
        assert seen and set(seen) == {"Bearer s3cret-token"}  # the configured serving: its token
        seen.clear()
        monkeypatch.setenv("MEDLENS_SERVING_URL", f"http://127.0.0.1:{_free_port()}")
        at = _app()
        at.sidebar.text_input(key="serving_url").set_value(recorder + "/").run()
        assert not at.exception, at.exception
        assert seen and set(seen) == {None}, seen
        assert any("sent none" in c.value for c in at.sidebar.caption)


def test_the_sidebar_waits_for_servings_own_health_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving's /healthz waits up to 5 s for each model before it answers 503 naming the one that did not: the
    sidebar waits longer, so it shows that answer, not a timeout of its own."""

    def slow_health(request: Request) -> Answer:
        time.sleep(5.5)  # serving's health_timeout_s (5 s) ran out for one model
        return json_error(503, "unavailable", "pneumonia-cnn did not answer its health check within 5 s")

    with http_stub(slow_health) as url:
        monkeypatch.setenv("MEDLENS_SERVING_URL", url)
        errors = _errors(_app())
    assert any("pneumonia-cnn did not answer its health check" in e for e in errors), errors


# ---------------------------------------------------------------------------------------------------------
# against a real serving
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.serve
def test_sidebar_reports_serving_health(serving_env: str) -> None:
    at = _app()
    assert not _errors(at)
    assert any("Serving up" in s.value for s in at.sidebar.success)


def _other_dicom(data: bytes) -> bytes:
    """The same radiograph as other bytes (a new series description): another file, another case."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SeriesDescription = "another series"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.serve
def test_xray_page_demo_radiograph(serving_env: str) -> None:
    threshold = MedLensClient(serving_env).models().models
    cnn_threshold = next(m.threshold for m in threshold if m.name == "cnn")
    at = _app()
    assert at.title[0].value == "Chest X-ray review"
    assert not at.get("plotly_chart")
    at.button(key="xray_demo_button").click().run()
    assert not at.exception, at.exception
    assert not _errors(at)

    served = MedLensClient(serving_env).predict_xray(demo_radiograph(), "upload.dcm", preview=True)
    withheld = served.in_distribution is False  # the demo is an adult radiograph from another scanner: flagged
    image = next(f for f in _figures(at) if f["data"][0]["type"] == "image")
    withheld_review = any("no label to agree or disagree with" in c.value for c in at.caption)
    assert withheld_review is withheld
    if withheld:  # the label is withheld; its probability, gauge and heatmap are drawn only when asked for
        assert any("LABEL WITHHELD" in m.value for m in at.markdown)
        assert any("Out of distribution" in w.value for w in at.warning)
        assert not any(f["data"][0]["type"] == "indicator" for f in _figures(at))
        assert not any("Score **" in m.value for m in at.markdown)
        assert [t["type"] for t in image["data"]] == ["image"]
        assert any("score and heatmap are hidden" in c.value for c in at.caption)
        shown = f"xray_output_{hashlib.sha256(demo_radiograph()).hexdigest()}"
        at.toggle(key=shown).set_value(True).run()
        assert not at.exception, at.exception
        assert any(f["data"][0]["type"] == "indicator" for f in _figures(at))
        # another out-of-distribution image: its output hidden again until the reader asks for it (the toggle
        # was one for every image, so the second image's score and heatmap appeared unasked)
        other = _other_dicom(demo_radiograph())
        at.file_uploader(key="xray_upload").set_value([("other.dcm", other, "application/dicom")]).run()
        assert not at.exception, at.exception
        assert not any(f["data"][0]["type"] == "indicator" for f in _figures(at))
        assert any("score and heatmap are hidden" in c.value for c in at.caption)
        at.button(key="xray_demo_button").click().run()  # the demo again, its output asked for again
        at.toggle(key=shown).set_value(True).run()
        image = next(f for f in _figures(at) if f["data"][0]["type"] == "image")
    figures = _figures(at)
    gauge = next(f for f in figures if f["data"][0]["type"] == "indicator")
    indicator = gauge["data"][0]
    probability = indicator["value"]
    assert 0.0 <= probability <= 1.0
    assert indicator["gauge"]["threshold"]["value"] == pytest.approx(cnn_threshold)
    # the score as its threshold is written, a decimal: it is not a probability (the calibrated one is)
    assert any(
        f"Score **{served.probability:.3f}** vs operating threshold **{served.threshold:.3f}**" in m.value
        for m in at.markdown
    )
    if withheld:
        assert "label withheld" in indicator["title"]["text"]
    else:
        label = "PNEUMONIA" if probability >= cnn_threshold else "NORMAL"
        assert any(label in m.value for m in at.markdown)
    # the conformal set holds only in distribution (and would name a withheld label)
    said = "prediction set not shown" if withheld else "prediction set **{"
    assert any(said in c.value for c in at.caption)
    heatmap = [t for t in image["data"] if t["type"] == "heatmap"]
    assert heatmap and heatmap[0]["opacity"] == pytest.approx(0.5)
    # the radiograph drawn is serving's preview of the image (the page decodes nothing itself)
    assert served.preview_png is not None and served.heatmap_png is None
    preview = decode_gray_png(served.preview_png)
    assert max(preview.shape) <= 1024
    assert image["layout"]["xaxis"]["range"] == [0, preview.shape[1]]
    assert image["layout"]["yaxis"]["range"] == [preview.shape[0], 0]
    assert preview.shape[1] / preview.shape[0] == pytest.approx(served.image_width / served.image_height, rel=0.01)
    assert max(heatmap[0]["x"]) < preview.shape[1] and max(heatmap[0]["y"]) < preview.shape[0]
    at.slider(key="heatmap_opacity").set_value(0.8).run()
    image = next(f for f in _figures(at) if f["data"][0]["type"] == "image")
    assert image["data"][1]["opacity"] == pytest.approx(0.8)

    # DICOM header fields only when asked for
    assert not at.table
    at.toggle(key="show_dicom_header").set_value(True).run()
    fields = at.table[0].value
    assert fields.loc["Modality", "value"] == "CR"
    assert "PatientName" not in fields.index and "PatientID" not in fields.index

    # the patient's identifiers: not without a reader's name (each view is recorded with it)
    case = hashlib.sha256(demo_radiograph()).hexdigest()
    assert at.toggle(key=f"show_dicom_identity_{case}").disabled

    # a review: needs a reader's name; saving makes the case (id: the SHA-256 of the bytes) in serving's
    # database, where every reader sees it; no file name anywhere, and none of the identifiers the reader saw
    assert not at.get("form") and "Enter your name in the sidebar to review." in [i.value for i in at.info]
    at.sidebar.text_input(key="reviewer_name").input("Dr Page Test").run()
    # a withheld label asks no verdict: the reader's own label is the review
    verdict = None if withheld else "disagree"
    radios = [r.key for r in at.radio if r.key == f"review_verdict_{case}"]
    assert radios == ([] if verdict is None else [f"review_verdict_{case}"])
    if verdict is not None:
        at.radio(key=f"review_verdict_{case}").set_value(verdict)
    at.selectbox(key=f"review_label_{case}").select("NORMAL")
    at.text_area(key=f"review_comment_{case}").input("consolidation right lower lobe?")
    at.button[-1].click().run()  # the form's submit button
    assert not at.exception, at.exception
    assert not _errors(at)
    stored = MedLensClient(serving_env).case(case)
    mine = [r for r in stored.history if r.reviewer == "Dr Page Test"]
    assert mine and mine[-1].verdict == verdict and mine[-1].label == "NORMAL"
    assert mine[-1].model_version == stored.model_version and stored.source_format == "dicom"
    assert "RG1_UNCR" not in stored.model_dump_json()  # the demo file's name
    assert not [i for i in ("9RG1", "CompressedSamples", "19400305", "1940-03-05") if i in stored.model_dump_json()]
    assert at.table[-1].value["reader"].tolist()[-1] == "Dr Page Test"  # the history, after the rerun

    # now with a name: the identifiers when asked, for this image; serving records who saw them
    tables = len(at.table)
    at.toggle(key=f"show_dicom_identity_{case}").set_value(True).run()
    assert len(at.table) == tables + 1
    identity = next(t.value for t in at.table if "PatientID" in t.value.index)
    assert identity.loc["PatientID", "value"] == "9RG1"  # pydicom-data's RG1 carries identifiers
    assert identity.loc["PatientName", "value"] == "CompressedSamples RG1"
    # written for Markdown to show as in the file (st.table renders Markdown): 1940\-03\-05 reads 1940-03-05
    assert identity.loc["PatientBirthDate", "value"] == literal("1940-03-05") == "1940\\-03\\-05"
    assert any("MedLens keeps none of them" in c.value and "Dr Page Test saw them" in c.value for c in at.caption)
    seen = MedLensClient(serving_env).identity_views(image_id=case).views
    assert seen and seen[0].reader == "Dr Page Test" and seen[0].image_id == case
    at.run()  # the page runs again with the identifiers on screen: the same view, not another one
    assert len(MedLensClient(serving_env).identity_views(image_id=case).views) == len(seen)
    at.toggle(key=f"show_dicom_identity_{case}").set_value(False).run()
    assert len(at.table) == tables
    assert not at.session_state["_medlens_store_xray_identity"]  # the page keeps no identifier once hidden
    # shown again: a new view, recorded (the page showed what it had kept, and serving never heard of it)
    at.toggle(key=f"show_dicom_identity_{case}").set_value(True).run()
    assert len(MedLensClient(serving_env).identity_views(image_id=case).views) == len(seen) + 1


@pytest.mark.serve
def test_worklist_page_lists_cases_and_takes_reviews(serving_env: str, xray_normal_path: Path) -> None:
    client = MedLensClient(serving_env)
    made = client.upload_cases([("n.jpeg", xray_normal_path.read_bytes())]).cases[0]
    at = _page("views/worklist.py")
    assert at.title[0].value == "Worklist"
    at.selectbox(key="worklist_status").select("all").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert made.id[:16] in table["case"].tolist()
    assert list(table.columns)[:7] == ["case", "kind", "flags", "risk", "score", "model says", "status"]
    row = table.set_index("case").loc[made.id[:16]]  # the calibrated risk beside the score, as serving stored them
    assert made.calibrated_risk is not None and row["risk"] == pytest.approx(100 * made.calibrated_risk)  # percent
    assert row["score"] == pytest.approx(made.risk)
    # scores and thresholds to three decimals (at two, 0.492 and 0.4946 both read 0.49 beside a threshold of
    # 0.4939), the risk in percent to one decimal as the pages write it, and help that says whose probability it is
    columns = {c.get("label", k): c for k, c in json.loads(at.dataframe[0].proto.columns).items()}
    formats = {name: columns[name]["type_config"]["format"] for name in ("risk", "score", "threshold")}
    assert formats == {"risk": "%.1f%%", "score": "%.3f", "threshold": "%.3f"}
    assert columns["risk"]["type_config"]["max_value"] == 100
    assert "positive class" in columns["risk"]["help"] and "model's finding" not in columns["risk"]["help"]
    said = WITHHELD if made.label_withheld else f"(score {made.risk:.3f})"
    assert [o for o in at.selectbox(key="worklist_open_case").options if o.startswith(made.id[:16]) and said in o]
    # open it, review it as a named reader: the review is in serving's database
    at.selectbox(key="worklist_open_case").select(made.id).run()
    assert not at.exception, at.exception
    assert any(made.id[:16] in h.value for h in at.subheader)
    assert any(f["data"][0]["type"] == "indicator" for f in _figures(at))  # the stored prediction, drawn
    # text the API refuses (a control character, as pasted from another program) is said on the page, naming
    # the field, and saves nothing
    at.sidebar.text_input(key="reviewer_name").input("Dr\x07Worklist").run()
    assert not at.exception, at.exception
    said = [e.value for e in at.sidebar.error if "cannot sign a review" in e.value]
    assert said and "U+0007" in said[0] and "Value error" not in said[0]
    assert any("Enter your name" in i.value for i in at.info)
    at.sidebar.text_input(key="reviewer_name").input("Dr Worklist").run()
    at.radio(key=f"review_verdict_{made.id}").set_value("agree")
    at.text_area(key=f"review_comment_{made.id}").input("pasted\x0bnote")
    before = client.case(made.id).history  # other tests of this session may have reviewed the same file
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert any("Review not saved: comment" in e.value and "U+000B" in e.value for e in at.error)
    assert client.case(made.id).history == before
    # what the reader typed stays, to correct and send again (the form was cleared on every submit)
    assert at.text_area(key=f"review_comment_{made.id}").value == "pasted\x0bnote"
    at.text_area(key=f"review_comment_{made.id}").input("pasted note")
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    assert [(r.reviewer, r.comment) for r in client.case(made.id).history][-1] == ("Dr Worklist", "pasted note")
    assert at.text_area(key=f"review_comment_{made.id}").value == ""  # a saved review empties the form
    assert any("Review saved: agree (by Dr Worklist)" in s.value for s in at.success)  # shown after the rerun
    assert "Dr Worklist" in at.table[-1].value["reader"].tolist()
    # a second reading: the cases this reader has not reviewed leave this one out, and serving agrees
    at.toggle(key="worklist_not_mine").set_value(True).run()
    assert not at.exception, at.exception
    listed = at.dataframe[0].value["case"].tolist() if at.dataframe else []
    assert made.id[:16] not in listed
    unread = client.worklist(WorklistQuery(status="all", not_reviewed_by="Dr Worklist"))
    assert listed == [c.id[:16] for c in unread.cases] and made.id not in [c.id for c in unread.cases]


@pytest.mark.serve
def test_previous_and_next_step_through_the_list(serving_env: str) -> None:
    """A reader working through the list without reviewing each case: the case above or below, in the list's
    order, without going back to the table or the picker."""
    client = MedLensClient(serving_env)
    stays = [
        f"HR,Temp,ICULOS\n{70 + i},36.{i},1\n{60 + int.from_bytes(os.urandom(2), 'big') % 90},36.5,2\n".encode()
        for i in range(3)
    ]
    client.upload_cases([(f"stay{i}.csv", stay) for i, stay in enumerate(stays)])
    at = _page("views/worklist.py")
    at.selectbox(key="worklist_status").select("all").run()
    listed = [c.id for c in client.worklist(WorklistQuery(status="all", limit=200)).cases]
    assert len(listed) >= 3

    def opened() -> str:
        assert not at.exception, at.exception
        (shown,) = [h.value for h in at.subheader if h.value.startswith("Case `")]
        return shown.split("`")[1]

    at.selectbox(key="worklist_open_case").select(listed[1]).run()
    assert opened() == listed[1][:16]
    at.button(key="worklist_previous").click().run()
    assert opened() == listed[0][:16] and at.button(key="worklist_previous").disabled
    at.button(key="worklist_next").click().run()
    at.button(key="worklist_next").click().run()
    assert opened() == listed[2][:16] and at.button(key="worklist_next").disabled == (len(listed) == 3)


@pytest.mark.serve
def test_a_worklist_longer_than_a_page_is_paged(serving_env: str) -> None:
    """The table showed the first 200 cases and said how many there were, with no way to the rest."""
    client = MedLensClient(serving_env)
    tag = int.from_bytes(os.urandom(3), "big")
    stays = [(f"s{i}.csv", f"HR,Temp,ICULOS\n{60 + i},{36 + (tag % 1000) / 1000:.3f},1\n".encode()) for i in range(26)]
    assert len(client.upload_cases(stays).cases) == 26
    at = _page("views/worklist.py")
    at.selectbox(key="worklist_status").select("all")
    at.selectbox(key="worklist_kind").select("sepsis")
    at.selectbox(key="worklist_page_size").select(25).run()
    assert not at.exception, at.exception
    total = client.worklist(WorklistQuery(status="all", kind="sepsis", limit=1)).total
    pages = -(-total // 25)
    assert total >= 26 and at.number_input(key="worklist_page").value == 1
    assert any(f"{total} case(s); showing 1-25." in c.value for c in at.caption)
    at.number_input(key="worklist_page").set_value(pages).run()
    assert not at.exception, at.exception
    last = client.worklist(WorklistQuery(status="all", kind="sepsis", limit=25, offset=(pages - 1) * 25)).cases
    assert at.dataframe[0].value["case"].tolist() == [c.id[:16] for c in last] and last
    assert any(f"showing {(pages - 1) * 25 + 1}-{total}." in c.value for c in at.caption)
    # a case of the last page opens from the picker, which lists that page
    at.selectbox(key="worklist_open_case").select(last[0].id).run()
    assert any(last[0].id[:16] in h.value for h in at.subheader)
    # another filter starts at its first page again
    at.selectbox(key="worklist_kind").select("all").run()
    assert not at.exception, at.exception
    assert at.number_input(key="worklist_page").value == 1


@pytest.mark.serve
def test_a_case_is_found_by_the_start_of_its_id(serving_env: str, xray_normal_path: Path) -> None:
    """A case as a colleague or an export quotes it; what is not a case id's start is said, not sent."""
    made = MedLensClient(serving_env).upload_cases([("n.jpeg", xray_normal_path.read_bytes())]).cases[0]
    at = _page("views/worklist.py")
    at.selectbox(key="worklist_status").select("all")
    at.text_input(key="worklist_id_prefix").input(f" {made.id[:8].upper()} ").run()
    assert not at.exception, at.exception
    listed = at.dataframe[0].value["case"].tolist()
    assert made.id[:16] in listed and all(c.startswith(made.id[:8]) for c in listed)
    assert not _errors(at) and not at.warning
    at.text_input(key="worklist_id_prefix").input("03a").run()
    assert any("at least 4" in w.value for w in at.warning)
    assert len(at.dataframe[0].value) >= len(listed)  # the filter is off, not empty


@pytest.mark.serve
def test_a_dicom_without_an_extension_becomes_a_case(serving_env: str, dicom_path: Path) -> None:
    """As a PACS exports them: no extension. The uploader accepted only a list of extensions, so such a file could
    not even be chosen; serving recognises a DICOM by its contents."""
    import pydicom

    ds = pydicom.dcmread(dicom_path)
    ds.SeriesDescription = os.urandom(8).hex()  # new bytes, a new case
    buffer = io.BytesIO()
    ds.save_as(buffer)
    at = _page("views/worklist.py")
    uploader = at.file_uploader(key="case_uploads")
    assert uploader.allowed_type == []
    uploader.set_value([("IM0001", buffer.getvalue(), "application/octet-stream")]).run()
    at.button[0].click().run()  # "Add 1 file(s) to the worklist", the first button on the page
    assert not at.exception, at.exception
    assert any("1 new case(s)" in s.value for s in at.success), [s.value for s in at.success]
    made = MedLensClient(serving_env).case(hashlib.sha256(buffer.getvalue()).hexdigest())
    assert made.source_format == "dicom"


@pytest.mark.serve
def test_refused_files_are_counted_within_the_readers_selection(serving_env: str) -> None:
    """The page sends a selection in requests of 20 files; serving counts within a request. A refusal in the first
    request (the others made cases) is a warning, a second request that made no case an error: each says which
    file of the selection, never its name."""
    stay = f"HR,Temp,ICULOS\n{60 + int.from_bytes(os.urandom(2), 'big') % 90},36.9,1\n".encode()
    bad = b"Time,Parameter,Value\n00:00,RecordID,1\n99:99,HR,80\n"
    selection = [("stay.csv", stay, "text/csv")] * 21
    selection[1] = selection[20] = ("Doe_Jane.txt", bad, "text/plain")
    at = _page("views/worklist.py")
    at.file_uploader(key="case_uploads").set_value(selection).run()
    at.button[0].click().run()  # "Add 21 file(s) to the worklist"
    assert not at.exception, at.exception
    assert [w.value for w in at.warning if "99:99" in w.value] == [
        "File 2: line 3: Time '99:99' is not HH:MM (hours and minutes since ICU admission, e.g. 07:45)."
    ]
    refused = [e.value for e in at.error if "99:99" in e.value]
    assert len(refused) == 1 and refused[0].startswith("File 21: line 3: Time '99:99'"), refused
    assert "Doe_Jane" not in " ".join(m.value for m in [*at.warning, *at.error, *at.success])


@pytest.mark.serve
def test_refresh_reads_what_another_reader_added(serving_env: str) -> None:
    # a heart rate of 60 to 150 with nine random decimals: a stay no other test (or run, on a kept server) uploaded
    heart_rate = 60 + 90 * int.from_bytes(os.urandom(4), "big") / 2**32
    stay = f"HR,Temp,ICULOS\n{heart_rate:.9f},37.5,1\n".encode()
    case_id = hashlib.sha256(stay).hexdigest()  # known before it exists: a case id is the file's SHA-256
    at = _page("views/worklist.py")
    at.selectbox(key="worklist_status").select("all")
    at.text_input(key="worklist_id_prefix").input(case_id[:16]).run()
    assert any("No cases match" in i.value for i in at.info), [i.value for i in at.info]
    assert not at.dataframe
    MedLensClient(serving_env).upload_cases([("stay.csv", stay)])  # another reader, elsewhere
    assert not at.dataframe
    at.button(key="worklist_refresh").click().run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["case"].tolist() == [case_id[:16]]


@pytest.mark.serve
def test_a_case_with_burned_in_text_says_why_it_has_no_image(serving_env: str, dicom_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(dicom_path)
    ds.BurnedInAnnotation = "YES"
    ds.SeriesDescription = os.urandom(8).hex()  # new bytes, a new case
    buffer = io.BytesIO()
    ds.save_as(buffer)
    made = MedLensClient(serving_env).upload_cases([("burned.dcm", buffer.getvalue())]).cases[0]
    at = _page("views/worklist.py")
    at.selectbox(key="worklist_status").select("all")
    at.text_input(key="worklist_id_prefix").input(made.id[:16]).run()
    at.selectbox(key="worklist_open_case").select(made.id).run()
    assert not at.exception, at.exception
    assert any("BurnedInAnnotation: YES" in i.value and "kept no copy" in i.value for i in at.info)
    assert not any("no stored image" in w.value for w in at.warning)


@pytest.mark.serve
def test_a_review_that_takes_a_case_off_the_list_opens_the_next(serving_env: str) -> None:
    """Working through "unreviewed": the reviewed case leaves the list, the page says its review was saved and
    opens the case that took its place (it used to close the case view and never say so)."""
    client = MedLensClient(serving_env)
    seeds = [int.from_bytes(os.urandom(3), "big") for _ in range(2)]  # new images: cases no test reviewed yet
    images = [client.synthetic_xray("NORMAL", seed).png for seed in seeds]
    made = client.upload_cases([(f"s{i}.png", png) for i, png in enumerate(images)]).cases
    at = _page("views/worklist.py")
    assert at.selectbox(key="worklist_status").value == "unreviewed"
    before = [c.id for c in client.worklist(WorklistQuery(status="unreviewed")).cases]
    first = min((c.id for c in made), key=before.index)
    at.selectbox(key="worklist_open_case").select(first).run()
    at.sidebar.text_input(key="reviewer_name").input("Dr Next").run()
    if next(c for c in made if c.id == first).label_withheld:  # a synthetic image may be out of distribution
        at.selectbox(key=f"review_label_{first}").select("NORMAL")
    else:
        at.radio(key=f"review_verdict_{first}").set_value("agree")
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    after = [c.id for c in client.worklist(WorklistQuery(status="unreviewed")).cases]
    assert first not in after
    following = after[min(before.index(first), len(after) - 1)]
    assert at.selectbox(key="worklist_open_case").value == following
    assert any(following[:16] in h.value for h in at.subheader)
    said = [s.value for s in at.success if "Review saved: " in s.value and "(by Dr Next)" in s.value]
    assert said and first[:16] in said[0] and "the next one is open" in said[0]


@pytest.mark.serve
def test_a_review_written_while_the_case_left_the_list_is_saved(serving_env: str) -> None:
    """A reader writes a review while another reader's review takes the case off "unreviewed": Save still saves
    it (the page drew no form for a case no longer listed, and the submit was dropped without a word), then
    the case that took its place opens. A save that fails keeps what was typed."""
    client = MedLensClient(serving_env)
    seeds = [int.from_bytes(os.urandom(3), "big") for _ in range(2)]
    made = client.upload_cases([(f"s{i}.png", client.synthetic_xray("NORMAL", s).png) for i, s in enumerate(seeds)])
    at = _page("views/worklist.py")
    before = [c.id for c in client.worklist(WorklistQuery(status="unreviewed")).cases]
    first = min((c.id for c in made.cases), key=before.index)
    withheld = next(c for c in made.cases if c.id == first).label_withheld
    at.selectbox(key="worklist_open_case").select(first).run()
    at.sidebar.text_input(key="reviewer_name").input("Dr Late").run()
    if withheld:  # a synthetic image may be out of distribution
        at.selectbox(key=f"review_label_{first}").select("NORMAL")
    else:
        at.radio(key=f"review_verdict_{first}").set_value("agree")
    at.text_area(key=f"review_comment_{first}").input("written while another reader read it")
    other = ReviewIn(reviewer="Dr Early", verdict=None if withheld else "agree", label="NORMAL" if withheld else None)
    client.review(first, other)  # the case leaves "unreviewed" before Dr Late saves
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    history = client.case(first).history
    assert [r.reviewer for r in history[-2:]] == ["Dr Early", "Dr Late"], [r.reviewer for r in history]
    assert history[-1].comment == "written while another reader read it"
    said = [s.value for s in at.success if "Review saved: " in s.value and "(by Dr Late)" in s.value]
    assert said and first[:16] in said[0] and "has left this list" in said[0]


@pytest.mark.serve
def test_a_review_whose_answer_was_lost_is_saved_once(serving_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving writes a review but its answer is lost (a 503 from the front door after the commit, as when the
    database connection drops at COMMIT). The page sends it again under the same ``Idempotency-Key`` and the trail
    keeps one review, where a reader pressing Save again after the error used to add a second."""
    client = MedLensClient(serving_env)
    made = client.upload_cases([("r.png", client.synthetic_xray("NORMAL", int.from_bytes(os.urandom(3), "big")).png)])
    case = made.cases[0]
    posted: list[str | None] = []

    def front_door(request: Request) -> Answer:
        """Passes every request to serving; answers the first review it passes with a 503 instead of serving's."""
        answer = passed_on(serving_env, request, TIMEOUT)
        if request.method == "POST" and request.path.endswith("/reviews"):
            posted.append(next((v for k, v in request.headers.items() if k.lower() == "idempotency-key"), None))
            if len(posted) == 1:
                return json_error(503, "database_unavailable", "the front door lost this answer on purpose")
        return answer

    with http_stub(front_door) as url:
        monkeypatch.setenv("MEDLENS_SERVING_URL", url)
        at = _page("views/worklist.py")
        at.selectbox(key="worklist_status").select("all").run()
        at.selectbox(key="worklist_open_case").select(case.id).run()
        at.sidebar.text_input(key="reviewer_name").input("Dr Once").run()
        if case.label_withheld:  # a synthetic image may be out of distribution
            at.selectbox(key=f"review_label_{case.id}").select("NORMAL")
        else:
            at.radio(key=f"review_verdict_{case.id}").set_value("agree")
        at.text_area(key=f"review_comment_{case.id}").input("sent once, answered twice")
        at.button[-1].click().run()
        assert not at.exception, at.exception
        if _errors(at):  # what a reader does after an error: Save again, the form still filled in
            at.button[-1].click().run()
            assert not at.exception, at.exception
    mine = [r for r in client.case(case.id).history if r.reviewer == "Dr Once"]
    assert [r.comment for r in mine] == ["sent once, answered twice"], mine
    assert len(posted) == 2 and posted[0] is not None and posted[0] == posted[1], posted
    assert any("Review saved: " in s.value and "(by Dr Once)" in s.value for s in at.success)


@pytest.mark.serve
def test_worklist_hides_the_output_of_a_withheld_label(serving_env: str, xray_normal_path: Path) -> None:
    """As on the X-ray page: a case whose label is withheld (a CT slice, out of distribution) opens without its
    risk, gauge or Grad-CAM and says why; "Show the model's output anyway" draws the gauge and offers the
    Grad-CAM toggle a radiograph has at once. The worklist table leaves its risk blank."""
    from pydicom.data import get_testdata_file

    ct = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    made = MedLensClient(serving_env).upload_cases([("ct.dcm", ct), ("n.jpeg", xray_normal_path.read_bytes())])
    by_kind = {c.in_distribution: c.id for c in made.cases}
    assert set(by_kind) == {True, False}
    at = _page("views/worklist.py")
    at.selectbox(key="worklist_status").select("all").run()
    table = at.dataframe[0].value.set_index("case")
    withheld_row, shown_row = table.loc[by_kind[False][:16]], table.loc[by_kind[True][:16]]
    assert withheld_row["model says"] == "label withheld" and shown_row["model says"] in ("NORMAL", "PNEUMONIA")
    assert pd.isna(withheld_row["score"]) and 0.0 <= shown_row["score"] <= 1.0
    assert pd.isna(withheld_row["risk"]) and 0.0 <= shown_row["risk"] <= 100.0  # percent: the CNN is calibrated
    assert 0.0 < withheld_row["threshold"] < 1.0  # the threshold is the model's, not the case's
    for in_distribution in (True, False):
        case = by_kind[in_distribution]
        at.selectbox(key="worklist_open_case").select(case).run()
        assert not at.exception, at.exception
        gauges = [f for f in _figures(at) if f["data"][0]["type"] == "indicator"]
        assert bool(gauges) is in_distribution  # a withheld label's gauge waits for the reader
        hidden = any("score and heatmap are hidden" in c.value for c in at.caption)
        assert hidden is (not in_distribution)
        # and its review form says there is no model label to agree with (reader agreement counts own labels)
        assert any("no label to agree or disagree with" in c.value for c in at.caption) is (not in_distribution)
        if not in_distribution:
            assert not [t for t in at.toggle if t.key == f"gc_{case}"]
            assert at.toggle(key=f"case_output_{case}").label == "Show the model's output anyway"
            at.toggle(key=f"case_output_{case}").set_value(True).run()
            assert not at.exception, at.exception
            gauge = next(f for f in _figures(at) if f["data"][0]["type"] == "indicator")
            assert "label withheld" in gauge["data"][0]["title"]["text"]
        assert at.toggle(key=f"gc_{case}").label == "Grad-CAM"
        image = next(f for f in _figures(at) if f["data"][0]["type"] == "image")
        assert [t["type"] for t in image["data"]] == ["image"]  # off until asked for
        at.toggle(key=f"gc_{case}").set_value(True).run()
        assert not at.exception, at.exception
        image = next(f for f in _figures(at) if f["data"][0]["type"] == "image")
        notes = [a.get("text") for a in image["layout"].get("annotations", [])]
        served = MedLensClient(serving_env).case_explanation(case).prediction
        assert isinstance(served, XrayPrediction) and served.heatmap_png is not None
        if heatmap_is_empty(decode_gray_png(served.heatmap_png)):  # no region raised the score: it says so
            assert [t["type"] for t in image["data"]] == ["image"] and notes == [NO_REGION], notes
        else:
            assert [t["type"] for t in image["data"]] == ["image", "heatmap"] and NO_REGION not in notes
    # A withheld label's review form asks no verdict: the reader's own label, which it requires, is the review.
    case = by_kind[False]
    at.sidebar.text_input(key="reviewer_name").input("Dr Withheld").run()
    assert not [r for r in at.radio if r.key == f"review_verdict_{case}"]
    assert list(at.selectbox(key=f"review_label_{case}").options) == ["NORMAL", "PNEUMONIA"]
    at.button[-1].click().run()  # the form's submit button, no label chosen
    assert any("Choose your label" in w.value for w in at.warning)
    assert MedLensClient(serving_env).case(case).history == []
    at.selectbox(key=f"review_label_{case}").select("NORMAL")
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    saved = MedLensClient(serving_env).case(case)
    assert [(r.reviewer, r.verdict, r.label) for r in saved.history] == [("Dr Withheld", None, "NORMAL")]
    assert any("Review saved: your label NORMAL (by Dr Withheld)" in s.value for s in at.success)
    assert saved.status == "reviewed" and saved.last_verdict is None


@pytest.mark.serve
def test_worklist_opens_a_mortality_case(serving_env: str) -> None:
    """A PhysioNet 2012 record added to the worklist opens with its 48-hour trajectory, its gauge, the stay's
    descriptors and what its parser tolerated, and takes the mortality labels."""
    late = example_mortality_record() + b"49:30,HR,80\n"  # a row after 48 h: read past, with a warning
    made = MedLensClient(serving_env).upload_cases([("record.txt", late)]).cases[0]
    assert made.kind == "mortality"
    at = _page("views/worklist.py")
    at.selectbox(key="worklist_status").select("all").run()
    at.selectbox(key="worklist_kind").select("mortality").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert made.id[:16] in table["case"].tolist() and set(table["kind"]) == {"ICU mortality"}
    at.selectbox(key="worklist_open_case").select(made.id).run()
    assert not at.exception, at.exception
    assert not _errors(at)
    assert any(made.id[:16] in h.value and "ICU mortality" in h.value for h in at.subheader)
    trajectory, gauge = _figures(at)
    assert len(next(t for t in trajectory["data"] if t.get("name") == "LSTM score")["x"]) == 48
    assert gauge["data"][0]["value"] == pytest.approx(made.risk)
    assert "age" in at.table[0].value.index
    assert any("after 48:00 ignored" in w.value for w in at.warning)
    at.sidebar.text_input(key="reviewer_name").input("Dr Worklist").run()
    assert "DEATH IN HOSPITAL" in at.selectbox(key=f"review_label_{made.id}").options  # the label, in words
    # what drove the risk, from the record the case keeps: the answer the mortality page gives the same file
    at.toggle(key=f"case_explain_{made.id}").set_value(True).run()
    assert not at.exception, at.exception
    assert not _errors(at)
    bars = [f for f in _figures(at) if f["data"][0]["type"] == "bar"]
    direct = MedLensClient(serving_env).predict_mortality(late, "record.txt", explain=True)
    assert len(bars) == 1 and set(bars[0]["data"][0]["y"]) == {f.name for f in direct.top_features or []}
    assert any("Attributions explain the model" in c.value for c in at.caption)


@pytest.mark.serve
def test_worklist_explains_a_sepsis_case_at_the_chosen_hour(serving_env: str, psv_path: Path) -> None:
    """A sepsis case's "what drove the risk" draws the attributions at the hour the slider chooses (at first its
    first alert, or its last hour), as the sepsis page does for the same file."""
    data = psv_path.read_bytes() + b"\n\n"  # new bytes: a case of this test's own
    made = MedLensClient(serving_env).upload_cases([("stay.psv", data)]).cases[0]
    at = _page("views/worklist.py")
    at.selectbox(key="worklist_status").select("all").run()
    at.text_input(key="worklist_id_prefix").input(made.id[:12]).run()
    at.selectbox(key="worklist_open_case").select(made.id).run()
    assert not at.exception, at.exception
    assert not [s for s in at.slider if s.key == f"case_hour_{made.id}"]  # the slider comes with the question
    at.toggle(key=f"case_explain_{made.id}").set_value(True).run()
    assert not at.exception, at.exception
    assert not _errors(at)
    served = MedLensClient(serving_env).case(made.id).prediction
    assert isinstance(served, SepsisPrediction)
    first = served.first_alert_hour if served.first_alert_hour is not None else served.n_hours - 1
    assert at.slider(key=f"case_hour_{made.id}").value == first
    at.slider(key=f"case_hour_{made.id}").set_value(0).run()
    assert not at.exception, at.exception
    direct = MedLensClient(serving_env).predict_sepsis(data, "stay.psv", "lstm", explain=True)
    bars = [f for f in _figures(at) if f["data"][0]["type"] == "bar"]
    assert len(bars) == 1 and "at hour 0 " in bars[0]["layout"]["title"]["text"]
    assert set(bars[0]["data"][0]["y"]) == {f.name for f in direct.hours[0].top_features or []}


@pytest.mark.serve
def test_xray_page_generates_a_synthetic_case_marked_as_such(serving_env: str) -> None:
    at = _app()
    at.selectbox(key="xray_synthetic_label").select("NORMAL")
    at.button(key="xray_synthetic_button").click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    notice = [i.value for i in at.info if "SYNTHETIC" in i.value]
    assert notice and "not a patient" in notice[0] and "label=NORMAL" in notice[0]
    assert any("synthetic NORMAL radiograph" in m.value for m in at.markdown)
    image = next(f for f in _figures(at) if f["data"][0]["type"] == "image")
    assert image["layout"]["xaxis"]["range"] == [0, 256]  # the generator's PNG, as serving read it


@pytest.mark.serve
def test_worklist_fills_with_synthetic_cases_in_one_click(serving_env: str) -> None:
    client = MedLensClient(serving_env)
    before = client.worklist(WorklistQuery(status="all", kind="xray", limit=5000))
    at = _page("views/worklist.py")
    at.number_input(key="synthetic_fill_n").set_value(2)
    at.button(key="synthetic_fill_button").click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    assert any("2 synthetic case(s) added" in s.value for s in at.success)
    after = client.worklist(WorklistQuery(status="all", kind="xray", limit=5000))
    new = [c for c in after.cases if c.id not in {b.id for b in before.cases}]
    assert len(new) == 2 and all(c.synthetic for c in new)
    table = at.dataframe[0].value
    flagged = table[table["case"].isin([c.id[:16] for c in new])]
    assert len(flagged) == 2 and all("synthetic" in f for f in flagged["flags"])
    # the reader leaves the generated images out of the list, or lists them alone; serving's count agrees
    at.selectbox(key="worklist_status").select("all")
    for choice, synthetic in (("exclude", False), ("only", True)):
        at.selectbox(key="worklist_synthetic").select(choice).run()
        assert not at.exception, at.exception
        listed = at.dataframe[0].value
        assert len(listed) and all(("synthetic" in f) is synthetic for f in listed["flags"]), choice
        total = client.worklist(WorklistQuery(status="all", synthetic=choice)).total
        assert any(s.startswith(f"{total} case(s)") for s in [c.value for c in at.caption]), choice


@pytest.mark.serve
def test_sepsis_page_says_once_why_a_stay_is_refused(
    serving_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A stay serving refuses (an unknown column) is refused by every series model in the same words: the page
    shows that error once, not once per model."""
    training = tmp_path / "sepsis" / "training"
    training.mkdir(parents=True)
    rows = "".join(f"{80 + h % 7}|{h}|0\n" for h in range(30))
    (training / "p000001.psv").write_text("HR|Foo|SepsisLabel\n" + rows)
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path))
    at = _page("views/sepsis.py")
    picker = at.selectbox(key="sepsis_demo_case")
    assert len(picker.options) == 1
    picker.select(picker.options[0]).run()
    assert not at.exception, at.exception
    errors = _errors(at)
    assert len(errors) == 1 and "Foo" in errors[0] and "HTTP 422" in errors[0], errors
    assert not _figures(at)


@pytest.mark.serve
def test_sepsis_page_demo_stay(serving_env: str) -> None:
    at = _page("views/sepsis.py")
    assert at.title[0].value == "Sepsis early warning"
    if not sepsis_dir().is_dir():
        assert any("does not exist" in i.value for i in at.info)
        pytest.skip(f"sepsis data directory {sepsis_dir()} absent: only the 'no demo' message was checked")
    picker = at.selectbox(key="sepsis_demo_case")
    demos = {d.title: d for d in find_sepsis_demo_cases(sepsis_dir())}
    assert list(picker.options) == list(demos)  # titles without the outcome, which would sway a review
    assert any(d.septic for d in demos.values()) and any(not d.septic for d in demos.values())
    septic = next(title for title, d in demos.items() if d.septic)
    picker.select(septic).run()
    assert not at.exception, at.exception
    assert not _errors(at)

    metrics = {m.label: m.value for m in at.metric}
    assert {"LSTM first alert", "Transformer first alert", "Hours in the record"} <= set(metrics)
    hours = int(metrics["Hours in the record"])
    figures = _figures(at)
    assert len(figures) == 2  # score chart + attribution bars
    risk, attribution = figures
    names = _trace_names(risk)
    assert "LSTM score" in names and "Transformer score" in names
    for title in ("LSTM", "Transformer"):  # the fold members' spread around each score curve, the calibrated risk
        assert f"{title} spread of 5 members" in names
        assert f"{title} calibrated risk" in names
    assert any(n.startswith("LSTM threshold") for n in names)
    assert any(n.startswith("HR (") for n in names)
    hr = next(t for t in risk["data"] if (t.get("name") or "").startswith("HR ("))
    assert hr["connectgaps"] is False
    assert len(hr["x"]) == hours

    # the vitals and the label drawn are the ones serving read from the file
    data = demos[septic].path.read_bytes()
    served = MedLensClient(serving_env).predict_sepsis(data, "upload.psv", "lstm", vitals=True)
    assert served.vitals is not None and served.n_hours == hours
    drawn = [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in hr["y"]]
    assert drawn == pytest.approx(served.vitals["HR"])
    assert served.sepsis_label is not None and 1 in served.sepsis_label
    assert not [s for s in risk["layout"].get("shapes", []) if s.get("type") == "rect"]  # until the reader asks
    at.toggle(key="sepsis_outcome").set_value(True).run()
    assert not at.exception, at.exception
    risk = _figures(at)[0]
    label_band = [s for s in risk["layout"].get("shapes", []) if s.get("type") == "rect"]
    assert len(label_band) == 1
    assert label_band[0]["x0"] == pytest.approx(served.sepsis_label.index(1) - 0.5)
    assert attribution["data"][0]["orientation"] == "h"

    slider = next(s for s in at.slider if s.label == "Hour to explain")
    slider.set_value(hours - 1).run()
    assert not at.exception, at.exception
    attribution = _figures(at)[1]
    assert f"hour {hours - 1}" in attribution["layout"]["title"]["text"]

    at.radio(key="sepsis_explain_model").set_value("transformer").run()
    assert not at.exception, at.exception
    assert _figures(at)[1]["layout"]["title"]["text"].startswith("Transformer")


@pytest.mark.serve
def test_mortality_page(serving_env: str) -> None:
    """A record from the demo list (the real 2012 data, when present) and the built-in made-up one: the 48th hour's
    risk and label as serving answers them, the trajectory with the members' band, the variables when asked for,
    each model in turn; no record identifier on the page."""
    at = _page("views/mortality.py")
    assert at.title[0].value == "ICU mortality"
    assert not _errors(at)
    assert any("Example record" in i.value for i in at.info)
    assert at.radio(key="mortality_model").value == "mortality-lstm"
    client = MedLensClient(serving_env)

    root = data_paths().mortality
    demos = find_mortality_demo_cases(root) if (root / "set-a").is_dir() else []
    picker = at.selectbox(key="mortality_demo_case")
    assert list(picker.options) == [d.title for d in demos]
    assert not [o for o in picker.options if "died" in o or "survived" in o]  # blind until the reader asks
    if demos:
        demo = demos[0]
        picker.select(demo.title).run()
        data, shown = demo.path.read_bytes(), demo.title
    else:  # without the data, the made-up record takes the same path
        at.button(key="mortality_example").click().run()
        data, shown = example_mortality_record(), "built-in example record"
    assert not at.exception, at.exception
    assert not _errors(at)
    served = client.predict_mortality(data, "upload.txt", "mortality-lstm")
    metrics = {m.label: m.value for m in at.metric}
    # the calibrated risk is the one percentage; the score that decides the label is a decimal, as its threshold
    assert served.calibrated_probability is not None  # the committed checkpoints are calibrated (Platt)
    assert next(iter(metrics)) == "Risk of death (calibrated)"
    assert metrics["Risk of death (calibrated)"] == f"{served.calibrated_probability:.1%}"
    assert metrics["Score after 48 h"] == f"{served.probability:.3f}"
    label = "death in hospital" if served.label == "DIED_IN_HOSPITAL" else "survival"
    assert metrics["Predicts, at the threshold"] == label
    assert served.member_min is not None and served.member_max is not None
    assert any(f"**{served.member_min:.3f} to {served.member_max:.3f}**" in c.value for c in at.caption)
    assert any(shown in m.value for m in at.markdown)
    figures = _figures(at)
    assert len(figures) == 2  # the trajectory and the gauge; no attributions until asked for
    trajectory, gauge = figures
    score = next(t for t in trajectory["data"] if t.get("name") == "LSTM score")
    assert score["x"] == list(range(1, 49))
    assert score["y"] == pytest.approx([h.probability for h in served.hours], abs=5e-3)
    calibrated = next(t for t in trajectory["data"] if t.get("name") == "LSTM calibrated risk")
    # the 48th hour's alone, the one hour serving calibrates (its calibration is fitted there)
    assert calibrated["x"] == [48]
    assert calibrated["y"] == pytest.approx([served.calibrated_probability], abs=5e-3)
    names = _trace_names(trajectory)
    assert f"spread of its {served.ensemble_members} fold members (lowest to highest)" in names
    assert f"threshold {served.threshold:.3f}" in names
    assert gauge["data"][0]["gauge"]["threshold"]["value"] == pytest.approx(served.threshold)
    if demos:  # a 2012 file is named after its RecordID: never shown
        page_text = " ".join([*(m.value for m in at.markdown), *(c.value for c in at.caption), str(at.table[0].value)])
        assert demo.path.stem not in page_text

    # the variables that drove the risk, when the reader asks
    at.toggle(key="mortality_explain").set_value(True).run()
    assert not at.exception, at.exception
    assert not _errors(at)
    figures = _figures(at)
    assert len(figures) == 3
    bars = figures[2]["data"][0]
    explained = client.predict_mortality(data, "upload.txt", "mortality-lstm", explain=True)
    assert explained.top_features
    assert set(bars["y"]) == {f.name for f in explained.top_features}  # serving's words for the inputs
    assert figures[2]["layout"]["title"]["text"].startswith("LSTM: what drove the score after 48 h")

    # the other model, from the catalogue
    at.radio(key="mortality_model").set_value("mortality-transformer").run()
    assert not at.exception, at.exception
    # the explain toggle is still on, so the page asked for an explanation: compare with that same request (its
    # risk is the chosen path's, as a plain request's: tests/serving/test_mortality.py)
    other = client.predict_mortality(data, "upload.txt", "mortality-transformer", explain=True)
    assert {m.label: m.value for m in at.metric}["Score after 48 h"] == f"{other.probability:.3f}"
    assert len(_figures(at)) == 3  # trajectory, gauge and the Transformer's attributions
    assert _figures(at)[0]["layout"]["title"]["text"].startswith("Transformer")

    # a review from the page makes the record a mortality case on the shared worklist, without its RecordID; the
    # case is serving's model's (the LSTM's), so beside the Transformer's answer no form is offered, and the page
    # says to choose the LSTM; beside the LSTM's answer the form names it and its label
    case = case_id_for("mortality", data)  # the SHA-256 of the record without its RecordID
    assert any(case[:16] in h.value for h in at.caption)
    # an earlier test may have made the case (tests/dashboard/test_browser.py uploads the same record): gone first;
    # its reviews and tombstone stay in the trail, which the new case's history shows
    trail = []
    if client.worklist(WorklistQuery(status="all", id_prefix=case)).cases:
        trail = [*client.case(case).history, client.delete_case(case, "Dr Test Cleanup")]
    assert not client.worklist(WorklistQuery(status="all", id_prefix=case)).cases
    at.sidebar.text_input(key="reviewer_name").input("Dr Mortality Page").run()
    assert not any(f"review_verdict_{case}" == r.key for r in at.radio)  # no form beside the Transformer
    said = [w.value for w in at.warning if "Choose the LSTM" in w.value]
    assert said and "not a case yet" in said[0]
    assert not client.worklist(WorklistQuery(status="all", id_prefix=case)).cases  # nothing was stored
    at.radio(key="mortality_model").set_value("mortality-lstm").run()
    assert any("the LSTM's label, **" in c.value for c in at.caption)
    assert list(at.selectbox(key=f"review_label_{case}").options) == ["(none)", "SURVIVAL", "DEATH IN HOSPITAL"]
    at.radio(key=f"review_verdict_{case}").set_value("agree")
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    stored = client.case(case)
    assert stored.kind == "mortality" and stored.model == "mortality-lstm"
    assert [r.id for r in stored.history][: len(trail)] == [r.id for r in trail]
    assert [r.reviewer for r in stored.history][-1] == "Dr Mortality Page"
    # the case made, the Transformer's answer still offers no form: the case names its model
    at.radio(key="mortality_model").set_value("mortality-transformer").run()
    assert any("Choose the LSTM" in w.value and "is scored by" in w.value for w in at.warning)
    assert not any(f"review_verdict_{case}" == r.key for r in at.radio)
    if demos:
        assert demo.path.stem not in stored.model_dump_json()


@pytest.mark.serve
def test_performance_page_every_model(serving_env: str) -> None:
    at = _page("views/performance.py")
    picker = at.selectbox(key="performance_model")
    client = MedLensClient(serving_env)
    listed = client.models().models
    assert list(picker.options) == [m.title for m in listed]  # serving's models, by their titles
    for index, _ in enumerate(picker.options):
        at.selectbox(key="performance_model").select_index(index).run()
        assert not at.exception, at.exception
        assert not _errors(at)
        name = str(at.selectbox(key="performance_model").value)
        served = client.metrics(name)
        assert name != "cnn" or served.trust is not None  # the committed CNN is calibrated
        figures = _figures(at)
        titles = [f["layout"]["title"]["text"] for f in figures]
        # the card's four; then, when the worklist has reviewed cases of this kind, the readers' agreement
        # and the card's trust report (calibration before and after), when it has one
        kind = {"cnn": "xray", "lstm": "sepsis", "transformer": "sepsis"}.get(name, entry(name).task.name)
        agreement = client.agreement(kind, name) if kind else None  # of the cases this model scored
        # the sequence models' held-out estimate comes next, from the card serving read
        assert (served.protocol is not None) == (name != "cnn")
        assert served.protocol == read_card(entry(name).default_weights).protocol
        extra = [f"Held-out estimate over {served.protocol.repeats} splits"] if served.protocol is not None else []
        extra += ["Calibration before and after"] if served.trust is not None else []
        extra += ["Model vs readers on reviewed cases"] if agreement and agreement.cases else []
        assert titles[4:] == extra, titles
        if served.protocol is not None:
            held_out = figures[4]["data"]
            assert held_out[0]["y"] == served.protocol.per_repeat["auroc"]
            assert served.protocol.procedure() in " ".join(c.value for c in at.caption)
            # a run scored at the checkpoint's threshold, which its held-out stays helped choose, is not called
            # "the figures to believe"; a reserve scored at more than one threshold says how often
            headings = [h.value for h in at.subheader]
            believe = "On stays it never saw: the figures to believe"
            assert (believe in headings) == (served.protocol.fixed_threshold is None), headings
            if served.protocol.reserve is not None and served.protocol.earlier_reserves:
                looks = 1 + len(served.protocol.earlier_reserves)
                assert any(f"scored {looks} times" in c.value for c in at.caption)
        if served.trust is not None and name == "cnn":
            assert any("coverage" in str(t.value.columns) for t in at.table)
        elif served.trust is not None:  # sepsis: the hourly calibration's ECE and Brier, the out-of-fold check
            assert any("ECE" in str(t.value.columns) for t in at.table)
            assert any("recomputed" in str(t.value.columns) for t in at.table)
        if agreement and agreement.cases:
            assert figures[-1]["data"][0]["z"] == agreement.confusion
            kappa = agreement.model_vs_reader.kappa
            shown = {m.label: m.value for m in at.metric}["Model vs readers (Cohen's kappa)"]
            assert shown == ("n/a" if kappa is None else f"{kappa:.2f}")
        assert titles[0].startswith("ROC") and f"{served.evaluation.auroc:.3f}" in titles[0]
        assert titles[1].startswith("Precision")
        assert titles[2].startswith("Confusion")
        assert titles[3].startswith("The score against what happened")
        # where the figures come from: in the page's header, and in each figure's own subtitle (kept on export)
        header = " ".join(m.value for m in at.markdown)
        assert served.dataset in header and served.created in header and served.version in header
        for figure in figures[:4]:
            subtitle = figure["layout"]["title"]["subtitle"]["text"].replace("<br>", " ")
            assert served.created in subtitle and served.version in subtitle, subtitle

        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Sensitivity"] == f"{served.evaluation.sensitivity:.3f}"
        assert metrics["Specificity"] == f"{served.evaluation.specificity:.3f}"
        confusion = figures[2]["data"][0]["z"]
        c = served.evaluation.confusion
        assert confusion == [[c.tn, c.fp], [c.fn, c.tp]]

        # moving the threshold moves the operating point and the confusion matrix
        slider = at.slider(key=f"threshold_{name}")
        new = 0.95 if served.threshold < 0.5 else 0.05
        slider.set_value(new).run()
        assert not at.exception, at.exception
        moved = _figures(at)
        assert moved[2]["data"][0]["z"] != confusion or served.evaluation.n_positive == 0
        marker = next(t for t in moved[0]["data"] if (t.get("name") or "").startswith("selected threshold"))
        assert f"{new:.3f}" in marker["name"]
        assert {m.label: m.value for m in at.metric}["Threshold"] == f"{new:.3f}"


@pytest.mark.serve
def test_service_page(serving_env: str) -> None:
    at = _page("views/service.py")
    assert not _errors(at)
    assert at.toggle(key="service_auto_refresh").value is True
    tables = {tuple(df.value.columns) for df in at.dataframe}
    assert ("deployment", "model", "status", "replicas", "starting", "stopping", "device") in tables
    assert any("device" in cols and "version" in cols for cols in tables)
    shown = next(df.value for df in at.dataframe if "deployment" in df.value.columns)
    served = MedLensClient(serving_env).service()  # right after the page's own call

    # the deployments are the ones serving reports (no names made up or left out) ...
    assert sorted(shown["deployment"]) == sorted(d.name for d in served.deployments)
    # ... and a deployment that is not scaling shows serving's counts
    now = {d.name: d for d in served.deployments}
    steady = [
        row
        for row in shown.to_dict("records")
        if row["status"] == "HEALTHY"
        and row["starting"] == 0
        and now[row["deployment"]].status == "HEALTHY"
        and now[row["deployment"]].starting == 0
    ]
    assert steady, shown
    for row in steady:
        assert (row["replicas"], row["starting"]) == (now[row["deployment"]].replicas, 0), row
    assert (shown["replicas"] >= 1).any()
    titles = [f["layout"]["title"]["text"] for f in _figures(at)]
    assert "Replicas now" in titles
    assert not [t for t in titles if t.startswith("Step load")]  # live data only

    # without auto-refresh, "Refresh now" re-runs the page and renews the figures
    assert not [b for b in at.button if b.key == "service_refresh"]
    at.toggle(key="service_auto_refresh").set_value(False).run()
    assert not at.exception
    refresh = at.button(key="service_refresh")
    assert refresh.label == "Refresh now"
    before = _updated(at)
    time.sleep(1.1)  # the caption has a resolution of one second
    refresh.click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    after = _updated(at)
    assert after != before, (before, after)
    assert any("deployment" in df.value.columns for df in at.dataframe)


@pytest.mark.serve
def test_service_page_models_follow_a_model_waking(serving_env: str, local_server: ServeServer | None) -> None:
    """The Models table is read anew with the replicas on every refresh: a model that scales to zero reads "scaled
    to zero" while it has no replica and "serving" once a prediction woke it (a cached list said "scaled to zero"
    for up to 30 s beside a deployment that was running)."""
    client, name = MedLensClient(serving_env), "mortality-transformer"  # scales to zero 15 s after its last request
    start, seen = time.monotonic(), []  # (s since start, status, running, starting) at each poll, for the messages

    def state() -> tuple[str, int, int]:
        d = next(d for d in client.service().deployments if d.name == name)
        seen.append((round(time.monotonic() - start, 1), d.status, d.replicas, d.starting))
        return d.status, d.replicas, d.starting

    def why() -> str:
        controller = local_server.controller_lines(name) if local_server else ["(an external server: no logs)"]
        return "polls (s, status, running, starting): " + repr(seen[-40:]) + "\ncontroller:\n" + "\n".join(controller)

    def models_row(at: AppTest) -> dict[str, Any]:
        table = next(df.value for df in at.dataframe if "backend" in df.value.columns)
        return dict(table[table["model"] == name].iloc[0])

    # At zero once the controller is done: DOWNSCALING with no replica running still has one draining (for
    # about 30 s), and a request sent then is answered by it without waking the deployment.
    deadline = time.monotonic() + 150
    while state() != ("HEALTHY", 0, 0):
        assert time.monotonic() < deadline, f"{name} did not scale to zero in 150 s\n{why()}"
        time.sleep(2)
    at = _page("views/service.py")
    assert models_row(at)["now"] == "scaled to zero"
    at.toggle(key="service_auto_refresh").set_value(False).run()
    sent = round(time.monotonic() - start, 1)
    client.predict_mortality(example_mortality_record(), "record.txt", name)  # waits for its replica to start
    answered = round(time.monotonic() - start, 1)
    deadline = time.monotonic() + 30
    while state()[1] < 1:
        assert time.monotonic() < deadline, (
            f"{name} did not report a running replica in 30 s (prediction sent at {sent} s, answered at {answered} s)"
            f"\n{why()}"
        )
        time.sleep(1)
    at.button(key="service_refresh").click().run()
    assert not at.exception, at.exception
    row = models_row(at)
    assert row["now"] == "serving" and row["device"] == "cpu", row


def _updated(at: AppTest) -> str:
    """The service panel's ``Updated HH:MM:SS UTC`` caption."""
    captions = [c.value for c in at.caption if c.value.startswith("Updated ")]
    assert len(captions) == 1, [c.value for c in at.caption]
    return str(captions[0])


@pytest.mark.serve
def test_sepsis_page_asks_a_failed_model_again(
    dashboard_serving_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One model failing (a replica's 500) leaves the other's answer on the page, and the failed model is asked
    again on the next run instead of the partial answer being kept for the session."""
    _one_stay(tmp_path)
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path))
    failing: list[str] = [entry("transformer").predict_route]  # the route answered with a replica's 500
    failed: list[str] = []

    def failing_route(request: Request) -> Answer | None:
        """The failing route's answer; every other request is passed through to serving."""
        if request.path.split("?", 1)[0] not in failing:
            return None
        failed.append(request.path)
        return json_error(500, "internal_error", "the front door failed this model on purpose")

    with http_stub(front_door(dashboard_serving_url, failing_route)) as url:
        monkeypatch.setenv("MEDLENS_SERVING_URL", url)
        at = _page("views/sepsis.py")
        picker = at.selectbox(key="sepsis_demo_case")
        picker.select(picker.options[0]).run()
        assert not at.exception, at.exception
        assert failed
        errors = _errors(at)
        assert len(errors) == 1 and "on purpose" in errors[0], errors
        metrics = {m.label for m in at.metric}
        assert "LSTM first alert" in metrics and "Transformer first alert" not in metrics, metrics

        failing.clear()  # the replica recovers; the reader moves the hour slider (any rerun)
        at.run()
        assert not at.exception, at.exception
        assert not _errors(at)
        metrics = {m.label for m in at.metric}
        assert {"LSTM first alert", "Transformer first alert"} <= metrics, metrics


# ---------------------------------------------------------------------------------------------------------
# through a front door to real serving that fails the explanations: what the ICU pages keep on the page
# ---------------------------------------------------------------------------------------------------------
def _explanations_fail(posted: list[str]) -> Callable[[Request], Answer | None]:
    """For ``front_door``: a 500 for every explanation request (a failing replica), serving's own answer to the
    rest; ``posted`` collects the paths of the POSTs that reached serving."""

    def instead(request: Request) -> Answer | None:
        path, _, query = request.path.partition("?")
        if "explain=true" in query.split("&") or "explain_hour=" in query:
            return json_error(500, "internal_error", "the front door failed this explanation on purpose")
        if request.method == "POST":
            posted.append(path)
        return None

    return instead


def _example_record(at: AppTest) -> AppTest:
    at.button(key="mortality_example").click().run()
    assert not at.exception, at.exception
    return at


def _one_stay(tmp_path: Path, septic_from: int | None = None) -> Path:
    """A data directory holding one made-up sepsis stay of 30 hours (HR, Temp), septic from ``septic_from``."""
    training = tmp_path / "sepsis" / "training"
    training.mkdir(parents=True)
    label = (lambda h: int(h >= septic_from)) if septic_from is not None else (lambda h: 0)
    rows = "".join(f"{80 + h % 7}|{36.5 + (h % 3) / 10}|{label(h)}\n" for h in range(30))
    (training / "p000001.psv").write_text("HR|Temp|SepsisLabel\n" + rows)
    return training / "p000001.psv"


@pytest.mark.serve
def test_a_failed_explanation_keeps_the_mortality_risk_and_its_review(
    dashboard_serving_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Asking what drove the risk, when serving fails the explanation, leaves the risk, the charts and the review
    form on the page, with the explanation's error alone (it wiped them all)."""
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path))
    with http_stub(front_door(dashboard_serving_url, _explanations_fail([]))) as url:
        monkeypatch.setenv("MEDLENS_SERVING_URL", url)
        at = _example_record(_page("views/mortality.py"))
        at.sidebar.text_input(key="reviewer_name").input("Dr Front Door").run()
        assert not _errors(at)
        at.toggle(key="mortality_explain").set_value(True).run()
        assert not at.exception, at.exception
    served = MedLensClient(dashboard_serving_url).predict_mortality(
        example_mortality_record(), "upload.txt", "mortality-lstm"
    )
    assert served.calibrated_probability is not None
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Score after 48 h"] == f"{served.probability:.3f}"
    assert metrics["Risk of death (calibrated)"] == f"{served.calibrated_probability:.1%}"
    assert len(_figures(at)) == 2  # the trajectory and the gauge; no attributions
    errors = _errors(at)
    assert len(errors) == 1 and "on purpose" in errors[0] and "Turn off" in errors[0], errors
    case = case_id_for("mortality", example_mortality_record())
    assert any(r.key == f"review_verdict_{case}" for r in at.radio)


@pytest.mark.serve
def test_a_review_that_contradicts_itself_is_not_sent(
    dashboard_serving_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The form starts at "agree" with an optional label: "agree" with a label other than the model's says two
    things, which serving refuses. The page says which, before anything is sent, and keeps the reader's choices."""
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path))
    posted: list[str] = []
    case = case_id_for("mortality", example_mortality_record())
    served = MedLensClient(dashboard_serving_url).predict_mortality(
        example_mortality_record(), "upload.txt", "mortality-lstm"
    )
    other = "SURVIVED" if served.label == "DIED_IN_HOSPITAL" else "DIED_IN_HOSPITAL"
    with http_stub(front_door(dashboard_serving_url, _explanations_fail(posted))) as url:
        monkeypatch.setenv("MEDLENS_SERVING_URL", url)
        at = _example_record(_page("views/mortality.py"))
        at.sidebar.text_input(key="reviewer_name").input("Dr Front Door").run()
        at.radio(key=f"review_verdict_{case}").set_value("agree")
        at.selectbox(key=f"review_label_{case}").select(other)
        at.button[-1].click().run()
        assert not at.exception, at.exception
    said = [w.value for w in at.warning if w.value.startswith("Review not saved")]
    expected = f"{label_words(other)} is not the model's {label_words(served.label)}: choose disagree"
    assert said and expected in said[0], said
    assert "/v1/cases" not in posted and not [p for p in posted if p.endswith("/reviews")], posted
    assert at.selectbox(key=f"review_label_{case}").value == other


@pytest.mark.serve
def test_the_sepsis_review_names_the_case_model_and_survives_a_failed_explanation(
    dashboard_serving_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The sepsis page shows two models' answers; a stay's case and its reviews are serving's sepsis case model's
    (the LSTM's): the review form names it and its label. An explanation that fails is an error above the review
    panel, which stays (it went with it)."""
    stay = _one_stay(tmp_path)
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path))
    with http_stub(front_door(dashboard_serving_url, _explanations_fail([]))) as url:
        monkeypatch.setenv("MEDLENS_SERVING_URL", url)
        at = _page("views/sepsis.py")
        at.sidebar.text_input(key="reviewer_name").input("Dr Front Door").run()
        picker = at.selectbox(key="sepsis_demo_case")
        picker.select(picker.options[0]).run()
        assert not at.exception, at.exception
    assert {"LSTM first alert", "Transformer first alert"} <= {m.label for m in at.metric}
    errors = _errors(at)
    assert len(errors) == 1 and "on purpose" in errors[0], errors
    assert any(s.value == "Reviews" for s in at.subheader)
    case = case_id_for("sepsis", stay.read_bytes())
    assert any(r.key == f"review_verdict_{case}" for r in at.radio)
    served = MedLensClient(dashboard_serving_url).predict_sepsis(stay.read_bytes(), stay.name, "lstm")
    said = f"the LSTM's label, **{label_words(served.stay_label)}**"
    assert any(said in c.value for c in at.caption), [c.value for c in at.caption]


@pytest.mark.serve
def test_a_stays_outcome_is_hidden_until_the_reader_asks(
    serving_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo picker names a stay without its outcome, and the chart leaves SepsisLabel unshaded, so that the
    outcome does not sway a review; "Show the recorded outcome" shows both."""
    _one_stay(tmp_path, septic_from=20)
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path))

    def shaded(at: AppTest) -> int:
        chart = next(f for f in _figures(at) if any(str(t.get("name", "")).startswith("HR (") for t in f["data"]))
        return len([s for s in chart["layout"].get("shapes", []) if s.get("type") == "rect"])

    at = _page("views/sepsis.py")
    picker = at.selectbox(key="sepsis_demo_case")
    assert list(picker.options) == ["p000001, 30 h"]
    picker.select(picker.options[0]).run()
    assert not at.exception, at.exception
    assert shaded(at) == 0
    assert not [c.value for c in at.caption if "Recorded outcome" in c.value]
    at.toggle(key="sepsis_outcome").set_value(True).run()
    assert not at.exception, at.exception
    assert shaded(at) == 1
    assert "Recorded outcome: septic: SepsisLabel from hour 20." in [c.value for c in at.caption]
