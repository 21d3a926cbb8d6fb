"""Cases, the worklist and reviews through the real client against the session's real Ray Serve
application (its own SQLite database, tests/conftest.py): uploads of files and zips, deduplication by
content, reviews from concurrent readers surviving a restart of the replica that holds the database,
exports, hostile zips, bad reviews, and no patient identifier stored, answered or logged."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import socket
import sqlite3
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pydicom
import pytest

from models.mortality_io import deidentified
from models.xray_io import NOT_A_TERM, UNREADABLE
from serving.client import MedLensClient, ServingError
from serving.schemas import (
    MortalityPrediction,
    ReviewIn,
    SepsisPrediction,
    WorklistQuery,
    XrayPrediction,
    case_id_for,
)
from tests import hostile
from tests.conftest import TEST_CASE_DB, ServeServer
from tests.models.test_dicom_privacy import BODY_PART, MODALITY, swallowing

pytestmark = [pytest.mark.serve, pytest.mark.timeout(600)]

PATIENT = "Zyxwvutsr^Qponmlkj"
PATIENT_ID = "MRN-4711-XYZ"
INGRESS = "ServeReplica:medlens:MedLensIngress"  # the replica that holds the case database


@pytest.fixture(scope="module")
def client(serving_url: str) -> Iterator[MedLensClient]:
    with MedLensClient(serving_url, timeout=120.0) as c:
        yield c


@pytest.fixture(scope="module")
def dicom_with_identifiers(dicom_path: Path) -> bytes:
    ds = pydicom.dcmread(dicom_path)
    ds.PatientName = PATIENT
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _unique_png(path: Path) -> bytes:
    """The radiograph's pixels as a PNG whose bytes no other test made (a text chunk with a fresh uuid)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("test", uuid.uuid4().hex)
    buffer = io.BytesIO()
    Image.open(path).convert("L").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_files_and_zips_become_cases_once(
    client: MedLensClient, xray_pneumonia_path: Path, xray_normal_path: Path, psv_path: Path
) -> None:
    jpeg, psv = _unique_png(xray_pneumonia_path), psv_path.read_bytes()
    psv_is_new = not any(
        c.id == hashlib.sha256(psv).hexdigest() for c in client.worklist(WorklistQuery(status="all", limit=5000)).cases
    )
    first = client.upload_cases([("a.png", jpeg), ("stay.psv", psv)])
    assert first.created == 1 + int(psv_is_new) and not first.rejected
    kinds = {c.kind: c for c in first.cases}
    assert set(kinds) == {"xray", "sepsis"}
    assert kinds["xray"].model == "cnn" and kinds["xray"].label in ("PNEUMONIA", "NORMAL")
    assert kinds["sepsis"].model == "lstm" and 0.0 <= kinds["sepsis"].risk <= 1.0
    # the same bytes again, alone and inside a zip with a new file and junk: one new case
    normal = _unique_png(xray_normal_path)
    again = client.upload_cases(
        [("x.png", jpeg), ("batch.zip", _zip({"d/n.png": normal, "__MACOSX/._n.jpeg": b"junk", "d/": b""}))]
    )
    assert again.created == 1 and len(again.cases) == 2 and not again.rejected
    detail = client.case(kinds["xray"].id)
    assert detail.prediction.preview_png and detail.history == []  # type: ignore[union-attr]
    assert detail.source_format == "png" and again.cases[0].id == kinds["xray"].id
    sepsis = client.case(kinds["sepsis"].id)
    assert sepsis.prediction.vitals  # type: ignore[union-attr]
    # a case's risk and calibrated risk are its prediction's: a sepsis stay's at its highest-scoring hour
    assert detail.prediction.calibrated_probability is not None  # type: ignore[union-attr]
    assert kinds["xray"].calibrated_risk == detail.prediction.calibrated_probability  # type: ignore[union-attr]
    hours = sepsis.prediction.hours  # type: ignore[union-attr]
    top = max(hours, key=lambda h: h.probability)
    assert len({h.calibrated_probability for h in hours}) > 1  # the hour chosen matters
    assert (kinds["sepsis"].risk, kinds["sepsis"].calibrated_risk) == (top.probability, top.calibrated_probability)


@pytest.fixture(scope="module")
def mortality_record(data_dir: Path) -> bytes:
    """A real PhysioNet 2012 record of set a, its RecordID changed to one no other test uses (and that no
    number of an answer holds by chance)."""
    files = sorted((data_dir / "mortality2012" / "set-a").glob("*.txt"))
    if not files:
        pytest.skip(f"no PhysioNet 2012 records under {data_dir / 'mortality2012' / 'set-a'}")
    text = files[0].read_text()
    record_id = text.split("\n")[1].split(",")[2].strip()  # the first row: 00:00,RecordID,<id>
    return text.replace(f",RecordID,{record_id}", f",RecordID,{MORTALITY_RECORD_ID}", 1).encode()


MORTALITY_RECORD_ID = "987650321"  # nine digits: not found by chance inside the answer's numbers


def test_a_mortality_record_is_a_case_of_its_own_kind(client: MedLensClient, mortality_record: bytes) -> None:
    """A PhysioNet 2012 record (.txt, or the same long format as .csv) becomes a mortality case, scored by the
    configured mortality model exactly as its route scores it; readers review it with its own labels; neither
    the stored case nor its exports hold the RecordID."""
    # another record (a row past the 48 hours read, Windows lines): another case, of the same kind
    as_csv = (mortality_record + b"48:30,HR,80\n").replace(b"\n", b"\r\n")
    made = client.upload_cases([("stay.txt", mortality_record), ("stay.csv", as_csv)])
    assert not made.rejected and [c.kind for c in made.cases] == ["mortality", "mortality"]
    case = made.cases[0]
    direct = client.predict_mortality(mortality_record, "stay.txt")
    assert case.model == "mortality-lstm" and case.label == direct.label
    assert case.risk == pytest.approx(direct.probability, abs=1e-6) and case.source_format == "txt"
    assert direct.calibrated_probability is not None
    assert case.calibrated_risk == pytest.approx(direct.calibrated_probability, abs=1e-6)
    assert made.cases[1].source_format == "csv"
    detail = client.case(case.id)
    assert detail.prediction.model == "mortality-lstm" and len(detail.prediction.hours) == 48  # type: ignore[union-attr]
    assert MORTALITY_RECORD_ID not in detail.model_dump_json()
    assert case.id in {c.id for c in client.worklist(WorklistQuery(status="all", kind="mortality", limit=5000)).cases}
    assert case.id not in {c.id for c in client.worklist(WorklistQuery(status="all", kind="sepsis", limit=5000)).cases}

    with pytest.raises(ServingError) as wrong:  # a sepsis label is not a mortality case's
        client.review(case.id, ReviewIn(reviewer="Dr Mortality", verdict="disagree", label="SEPSIS"))
    assert wrong.value.status == 422 and "DIED_IN_HOSPITAL" in wrong.value.detail
    other = "SURVIVED" if case.label == "DIED_IN_HOSPITAL" else "DIED_IN_HOSPITAL"
    client.review(case.id, ReviewIn(reviewer="Dr Mortality", verdict="disagree", label=other))
    agreement = client.agreement("mortality")
    assert agreement.kind == "mortality" and agreement.cases >= 1
    assert set(agreement.labels) == {"SURVIVED", "DIED_IN_HOSPITAL"}
    fhir = client.export_reviews("fhir").decode()
    assert "score for death in hospital after 48 hours" in fhir and MORTALITY_RECORD_ID not in fhir
    assert MORTALITY_RECORD_ID not in client.export_reviews("csv").decode()


def test_a_mortality_case_id_cannot_give_its_record_id_back(client: MedLensClient, mortality_record: bytes) -> None:
    """The id is the SHA-256 of the record without its RecordID (as the case keeps it): the SHA-256 of the bytes
    as uploaded would give the RecordID back to anyone with the stored record, trying each six-digit number. The
    same record under another RecordID is the same case."""
    case = client.upload_cases([("stay.txt", mortality_record)]).cases[0]
    kept = deidentified(mortality_record)
    assert case.id == hashlib.sha256(kept).hexdigest() == case_id_for("mortality", mortality_record)
    assert case.id != hashlib.sha256(mortality_record).hexdigest()
    renamed = mortality_record.replace(f",RecordID,{MORTALITY_RECORD_ID}".encode(), b",RecordID,123456", 1)
    assert renamed != mortality_record
    again = client.upload_cases([("stay.txt", renamed)])
    assert again.created == 0 and [c.id for c in again.cases] == [case.id]


def test_a_file_its_model_refuses_is_named_by_its_place(client: MedLensClient, mortality_record: bytes) -> None:
    """The others still make cases; the refusal says which file as every refusal does, and what the model said."""
    bad = b"Time,Parameter,Value\n00:00,RecordID,1\n99:99,HR,80\n"
    made = client.upload_cases([("stay.txt", mortality_record), ("bad.txt", bad), ("again.txt", bad)])
    assert len(made.cases) == 1 and [(r.file, r.status, r.error) for r in made.rejected] == [
        ("file 2", 422, "invalid_series"),
        ("file 3", 422, "invalid_series"),
    ]
    assert made.rejected[0].detail.startswith("File 2: line 3: Time '99:99' is not HH:MM"), made.rejected[0].detail
    assert made.rejected[1].detail == "File 3 holds the same bytes as file 2, refused for the same reason."


def _stored_record(case_id: str) -> bytes:
    """A case's record as the session's database holds it, decompressed."""
    with sqlite3.connect(TEST_CASE_DB) as conn:
        (stored,) = conn.execute("SELECT record FROM cases WHERE id = ?", (case_id,)).fetchone()
    return zlib.decompress(stored)


def test_a_case_is_explained_again_from_what_it_keeps(
    client: MedLensClient, mortality_record: bytes, psv_path: Path, xray_normal_path: Path, dicom_path: Path
) -> None:
    """A worklist case is explained by its model from what the case keeps: the same answer its own route gives
    the file with explain, without the 2012 record's RecordID in the database; a case that keeps nothing is a
    409 that says why."""
    mortality_record = mortality_record.replace(b"\n", b"\n\n")  # new bytes: a case no other test made
    psv, png = psv_path.read_bytes() + b"\n", _unique_png(xray_normal_path)
    made = {c.kind: c for c in client.upload_cases([("r.txt", mortality_record), ("s.psv", psv), ("x.png", png)]).cases}
    assert all(client.case(c.id).explainable for c in made.values())

    mortality = client.case_explanation(made["mortality"].id).prediction
    direct = client.predict_mortality(mortality_record, "r.txt", explain=True)
    assert isinstance(mortality, MortalityPrediction) and mortality.top_features
    assert mortality.probability == pytest.approx(direct.probability, abs=1e-6)
    assert [f.name for f in mortality.top_features] == [f.name for f in direct.top_features or []]
    stored = _stored_record(made["mortality"].id)
    assert b"RecordID" not in stored and MORTALITY_RECORD_ID.encode() not in stored and b",HR," in stored

    sepsis = client.case_explanation(made["sepsis"].id).prediction
    assert isinstance(sepsis, SepsisPrediction) and all(h.top_features for h in sepsis.hours)
    assert [h.probability for h in sepsis.hours] == pytest.approx(
        [h.probability for h in client.case(made["sepsis"].id).prediction.hours]
    )  # type: ignore[union-attr]
    assert _stored_record(made["sepsis"].id) == psv
    one = client.case_explanation(made["sepsis"].id, hour=1).prediction  # what the worklist asks, hour by hour
    assert isinstance(one, SepsisPrediction) and [h.hour for h in one.hours if h.top_features] == [1]
    assert [f.feature for f in one.hours[1].top_features or []] == [
        f.feature for f in sepsis.hours[1].top_features or []
    ]
    with pytest.raises(ServingError) as not_sepsis:
        client.case_explanation(made["mortality"].id, hour=1)
    assert not_sepsis.value.status == 422 and "sepsis cases" in not_sepsis.value.detail

    xray = client.case_explanation(made["xray"].id).prediction
    assert isinstance(xray, XrayPrediction) and xray.heatmap_png and xray.model == "cnn"

    ds = pydicom.dcmread(dicom_path)
    ds.BurnedInAnnotation, ds.SeriesDescription = "YES", uuid.uuid4().hex
    buffer = io.BytesIO()
    ds.save_as(buffer)
    burned = client.upload_cases([("b.dcm", buffer.getvalue())]).cases[0]
    assert not client.case(burned.id).explainable
    with pytest.raises(ServingError) as refused:
        client.case_explanation(burned.id)
    assert refused.value.status == 409 and "text burned into the pixels" in refused.value.detail
    with pytest.raises(ServingError) as unknown:
        client.case_explanation("0" * 64)
    assert unknown.value.status == 404


def test_a_dicom_case_keeps_no_identifier(
    client: MedLensClient, dicom_with_identifiers: bytes, serve_server: ServeServer
) -> None:
    made = client.upload_cases([(f"{PATIENT}.dcm", dicom_with_identifiers)])
    case = client.case(made.cases[0].id)
    assert case.source_format == "dicom" and case.prediction.dicom  # type: ignore[union-attr]
    # lying headers: Modality's length runs it on over the identifiers, to BodyPartExamined (the image still reads)
    # or one byte past it (out of step: a DICOM without pixels); its value holds them, and the refusal quoted it
    lying = {
        until: swallowing(dicom_with_identifiers, MODALITY, BODY_PART, past)
        for until, past in (("body part", 0), ("pixels", 1))
    }
    # the transfer syntax UID, in the file meta, run on likewise: pydicom's warnings about it quoted the run
    lying["syntax"] = swallowing(dicom_with_identifiers, b"\x02\x00\x10\x00UI", BODY_PART)
    answers = [client.predict_xray(lying["body part"], "upload.dcm").model_dump_json().encode()]
    assert b"unreadable" in answers[0]
    with pytest.raises(ServingError) as refused:
        client.predict_xray(lying["pixels"], "upload.dcm")
    assert refused.value.status == 422 and "modality unknown" in refused.value.detail
    answers.append(refused.value.detail.encode())
    with pytest.raises(ServingError) as unreadable:
        client.predict_xray(lying["syntax"], "upload.dcm")
    assert unreadable.value.status == 415
    answers.append(unreadable.value.detail.encode())
    more = client.upload_cases([(f"{PATIENT}-{until}.dcm", data) for until, data in lying.items()])
    assert len(more.cases) == 1 and len(more.rejected) == 2
    answers += [more.model_dump_json().encode(), client.case(more.cases[0].id).model_dump_json().encode()]
    # a reader who asks sees them (the X-ray page's "Show patient identifiers"): answered, not stored or logged;
    # the view is recorded (who, when, which file), and only a view of a readable DICOM
    before = len(client.identity_views().views)
    identity = client.dicom_identity(dicom_with_identifiers, f"{PATIENT}.dcm", "Dr Audit")
    assert identity.fields["PatientName"] == "Zyxwvutsr Qponmlkj" and identity.fields["PatientID"] == PATIENT_ID
    assert identity.fields["PatientBirthDate"] == "1970-01-01"
    image_id = hashlib.sha256(dicom_with_identifiers).hexdigest()
    assert identity.view.reader == "Dr Audit" and identity.view.image_id == image_id == case.id
    with pytest.raises(ServingError) as not_dicom:
        client.dicom_identity(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image.png", "Dr Audit")
    assert not_dicom.value.status == 415 and not_dicom.value.error == "not_dicom"
    # a header past the bounds the ingress reads (here: more elements than any DICOM holds) is told so, at once
    with pytest.raises(ServingError) as bomb:
        client.dicom_identity(hostile.item_bomb(30_000), "bomb.dcm", "Dr Audit")
    assert bomb.value.status == 413 and "element" in bomb.value.detail, bomb.value
    with pytest.raises(ServingError) as nameless:
        client.dicom_identity(dicom_with_identifiers, "x.dcm", " ")
    assert nameless.value.status == 422 and "reader" in nameless.value.detail
    views = client.identity_views().views
    assert len(views) == before + 1 and views[0] == identity.view
    assert client.identity_views(image_id=image_id).views[0] == identity.view
    exports = client.export_reviews("csv") + client.export_reviews("fhir")
    worklist = client.worklist(WorklistQuery(status="all")).model_dump_json().encode()
    database = b"".join(p.read_bytes() for p in TEST_CASE_DB.parent.glob(TEST_CASE_DB.name + "*"))
    logs = b"".join(p.read_bytes() for p in serve_server.log_files())
    for where, blob in {
        "response": case.model_dump_json().encode() + worklist + b"".join(answers),
        "export": exports,
        "database": database,
        "logs": logs,
    }.items():
        for secret in ("Zyxwvutsr", "Qponmlkj", PATIENT_ID, "19700101"):
            assert secret.encode() not in blob, f"{secret!r} reached the {where}"


def test_a_dicom_with_burned_in_text_keeps_no_pixels(client: MedLensClient, dicom_path: Path) -> None:
    """BurnedInAnnotation YES: text that may identify the patient is in the pixels, so the case keeps none of
    them (the answer still says what the model read, and says why there is no image). Any other value but NO
    counts as YES: a lower-case "yes" (not a legible CS value) or a multi-valued one."""
    ds = pydicom.dcmread(dicom_path)
    for said, shown in (("YES", "YES"), ("yes", UNREADABLE), (["YES", "NO"], NOT_A_TERM)):
        ds.BurnedInAnnotation = said
        ds.SeriesDescription = uuid.uuid4().hex  # new bytes: a case no other test made
        buffer = io.BytesIO()
        ds.save_as(buffer)
        made = client.upload_cases([("burned.dcm", buffer.getvalue())]).cases[0]
        case = client.case(made.id)
        assert isinstance(case.prediction, XrayPrediction) and case.prediction.burned_in, said
        assert case.prediction.dicom and case.prediction.dicom["BurnedInAnnotation"] == shown
        assert case.prediction.preview_png is None, said
    ds.BurnedInAnnotation = "NO"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    kept = client.case(client.upload_cases([("clean.dcm", buffer.getvalue())]).cases[0].id).prediction
    assert isinstance(kept, XrayPrediction) and not kept.burned_in and kept.preview_png


def test_reviews_of_concurrent_readers_survive_a_restart(
    client: MedLensClient, serve_server: ServeServer, xray_fullres_path: Path, data_dir: Path
) -> None:
    """4 readers x 25 reviews over 8 cases, then the replica holding the database is killed and Serve
    starts a new one: all 100 reviews are in the cases' histories, the CSV and the FHIR bundle."""
    images = sorted((data_dir / "chest_xray_fullres").rglob("*.jpeg"))[:8]
    assert len(images) == 8
    made = client.upload_cases([(p.name, p.read_bytes()) for p in images])
    ids = sorted(c.id for c in made.cases)
    assert len(ids) == 8
    withheld = {c.id for c in made.cases if c.label_withheld}  # reviewed with the reader's own label alone
    before = len(list(csv.reader(io.StringIO(client.export_reviews("csv").decode("utf-8-sig"))))) - 1

    def review(reader: str, case: str, i: int) -> ReviewIn:
        if case in withheld:
            return ReviewIn(reviewer=reader, label="NORMAL" if i % 2 else "PNEUMONIA")
        return ReviewIn(reviewer=reader, verdict="agree" if i % 2 else "disagree")

    def reader(k: int) -> int:
        with MedLensClient(serve_server.url, timeout=60.0) as own:
            for i in range(25):
                case = ids[(i + k) % 8]
                own.review(case, review(f"reader-{k}", case, i))
        return 25

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(reader, range(4))) == 100
    for pid in serve_server.pids(INGRESS):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            client.worklist(WorklistQuery(status="all", limit=1))
            break
        except ServingError:
            time.sleep(1)
    histories = [client.case(i).history for i in ids]
    assert sum(len(h) for h in histories) == 100
    assert all(sum(r.reviewer == f"reader-{k}" for h in histories for r in h) == 25 for k in range(4))
    rows = list(csv.DictReader(io.StringIO(client.export_reviews("csv").decode("utf-8-sig"))))
    assert len(rows) - before == 100
    bundle = json.loads(client.export_reviews("fhir"))
    ours = [e for e in bundle["entry"] if e["resource"]["resultsInterpreter"][0]["display"].startswith("reader-")]
    assert len(ours) == 100
    assert (
        client.worklist(WorklistQuery(status="disagreed")).total
        + client.worklist(WorklistQuery(status="reviewed")).total
        >= 8
    )


def test_bad_reviews_and_unknown_cases(client: MedLensClient, serving_url: str, xray_normal_path: Path) -> None:
    case_id = client.upload_cases([("n.jpeg", xray_normal_path.read_bytes())]).cases[0].id
    url = f"{serving_url}/v1/cases/{case_id}/reviews"
    for body, field in [
        ({"verdict": "agree"}, "reviewer"),
        ({"reviewer": "A", "verdict": "maybe"}, "verdict"),
        ({"reviewer": "   ", "verdict": "agree"}, "reviewer"),
        ({"reviewer": "A", "verdict": "agree", "comment": "x" * 2001}, "comment"),
        ({"reviewer": "A", "verdict": "agree", "label": "SEPSIS"}, "label"),
    ]:
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code == 422 and field in response.json()["detail"], (body, response.text)
    for bad in (f"{0:064x}", "not-a-case"):
        with pytest.raises(ServingError) as err:
            client.case(bad)
        assert err.value.status == 404 and err.value.error == "unknown_case"
    tombstone = client.delete_case(case_id, "Dr Purge")
    assert tombstone.action == "delete"
    with pytest.raises(ServingError) as err:
        client.case(case_id)
    assert err.value.status == 404
    assert "Dr Purge" in client.export_reviews("csv").decode()


def test_a_review_sent_again_with_its_idempotency_key_is_written_once(
    client: MedLensClient, serving_url: str, xray_normal_path: Path
) -> None:
    """``Idempotency-Key``: the same review sent again is answered with the first one's row (201,
    ``Idempotent-Replayed: true``), the key with another review is a 422, a malformed key a 422 naming the
    header; without a key each request is a review."""
    case_id = client.upload_cases([("n.jpeg", xray_normal_path.read_bytes())]).cases[0].id
    url = f"{serving_url}/v1/cases/{case_id}/reviews"
    key = uuid.uuid4().hex
    body = {"reviewer": "Dr Key", "verdict": "agree", "comment": "once"}
    first = httpx.post(url, json=body, headers={"Idempotency-Key": key}, timeout=30)
    again = httpx.post(url, json=body, headers={"Idempotency-Key": key}, timeout=30)
    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert again.json() == first.json()
    assert "idempotent-replayed" not in first.headers and again.headers["idempotent-replayed"] == "true"
    reused = httpx.post(url, json={**body, "comment": "twice"}, headers={"Idempotency-Key": key}, timeout=30)
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused", reused.text
    for bad in ("short", "x" * 65, "has spaces in it!!"):
        response = httpx.post(url, json=body, headers={"Idempotency-Key": bad}, timeout=30)
        assert response.status_code == 422 and "Idempotency-Key" in response.json()["detail"], (bad, response.text)
    client.review(case_id, ReviewIn(reviewer="Dr Key", verdict="agree", comment="once"))
    mine = [r for r in client.case(case_id).history if r.reviewer == "Dr Key"]
    assert [r.comment for r in mine] == ["once", "once"], mine


def _declared_bomb() -> bytes:
    """One small member whose central directory claims 10 GB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.png", b"\0" * 1024)
        zf.filelist[0].file_size = 10 * 1024**3
    return buffer.getvalue()


def _many_members(n: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"{i}.png", b"")
    return buffer.getvalue()


def _lying_member() -> bytes:
    """A member that says 1 KiB and inflates to 64 MiB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.png", b"\0" * (64 * 1024 * 1024))
        zf.filelist[0].file_size = 1024
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "status", "error"),
    [
        ("100,000 members", lambda: _many_members(100_000), 413, "zip_too_large"),
        ("10 GB declared", _declared_bomb, 413, "zip_too_large"),
        ("a member that lies about its size", _lying_member, 422, None),
        ("a nested zip", lambda: _zip({"inner.zip": _zip({"a.png": b"x"})}), 422, "nested_zip"),
        ("a path out of the archive", lambda: _zip({"../../etc/x.png": b"x"}), 422, "unsafe_zip"),
        ("an empty zip", lambda: _zip({}), 422, "no_files"),
        ("not a zip at all", lambda: b"PK\x03\x04garbage", 422, "invalid_zip"),
        ("a text file", lambda: b"hello", 415, "unsupported_file_type"),
        # a 2012 record's header makes a .txt a mortality case: what follows still has to be one
        ("a 2012 header over binary junk", lambda: b"Time,Parameter,Value\n" + b"\xff\xfe\x00" * 4000, 422, None),
        ("a 2012 record of 6 MB", lambda: b"Time,Parameter,Value\n" + b"00:00,HR,80\n" * 520_000, 413, None),
    ],
)
def test_hostile_uploads_are_refused_quickly(
    client: MedLensClient, name: str, make: object, status: int, error: str | None
) -> None:
    data = make()  # type: ignore[operator]
    started = time.monotonic()
    with pytest.raises(ServingError) as err:
        client.upload_cases([("upload.zip" if data[:2] == b"PK" else "notes.txt", data)])
    assert err.value.status == status, (name, err.value)
    if error is not None:
        assert err.value.error == error, (name, err.value)
    if err.value.error != "no_files":  # (that one is about the upload: no file in it)
        # the refused file is named once, by its place in the upload (not by the name its model read it under)
        assert err.value.detail.startswith("File 1") and "File 1" not in err.value.detail[6:], err.value.detail
        assert "upload." not in err.value.detail, err.value.detail
    assert time.monotonic() - started < 30, name
    assert client.health().status == "ok"


@pytest.mark.parametrize(
    ("path", "content_type", "mib", "limit"),
    [
        ("/v1/cases", "multipart/form-data; boundary=b", 101, "100 MiB"),  # several files at once
        ("/v1/dicom/identity?reader=A", "multipart/form-data; boundary=b", 26, "25 MiB"),  # one file
        # a review is a few hundred bytes: a large JSON body was read and parsed whole, on the ingress's event
        # loop, before the token was checked
        (f"/v1/cases/{'a' * 64}/reviews", "application/json", 2, "1 MiB"),
    ],
)
def test_a_request_over_the_body_limit_is_refused_before_it_is_read(
    serving_url: str, path: str, content_type: str, mib: int, limit: str
) -> None:
    """A Content-Length over the route's limit is answered 413 after 1 KiB was sent."""
    host, port = serving_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n".encode()
            + f"Content-Length: {mib * 1024 * 1024}\r\n\r\n".encode()
            + b"x" * 1024
        )
        answer = ""
        while "payload_too_large" not in answer:  # headers and body may come in separate packets
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk.decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413") and "payload_too_large" in answer, answer[:300]
    assert f"the limit is {limit}" in answer, answer[-400:]


def test_out_of_distribution_and_uncertain_cases_come_first(client: MedLensClient, xray_normal_path: Path) -> None:
    from pydicom.data import get_testdata_file

    ct = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    made = client.upload_cases([("ct.dcm", ct), ("n.jpeg", xray_normal_path.read_bytes())])
    by_kind = {c.in_distribution: c for c in made.cases}
    assert set(by_kind) == {True, False}  # the CT slice is flagged, the radiograph is not
    stored = client.case(by_kind[False].id).prediction
    assert stored.in_distribution is False and stored.ood_reason  # type: ignore[union-attr]
    cases = client.worklist(WorklistQuery(status="all", kind="xray", limit=5000)).cases
    rank = [0 if c.in_distribution is False else 1 if c.uncertain else 2 for c in cases]
    assert rank == sorted(rank) and rank[0] == 0
    within = [c.risk for c, r in zip(cases, rank, strict=True) if r == 2]
    assert within == sorted(within, reverse=True)


def test_hostile_zips_leave_the_replica_s_memory_where_it_was(client: MedLensClient, serve_server: ServeServer) -> None:
    """Three rounds of the worst archives: the ingress's resident memory after them stays within 64 MB of
    where it was after the first round (its allocator's high-water mark), so nothing accumulates."""
    bombs = [_many_members(100_000), _declared_bomb(), _lying_member()]
    rss: list[float] = []
    for _ in range(3):
        for data in bombs:
            with pytest.raises(ServingError) as err:
                client.upload_cases([("upload.zip", data)])
            assert err.value.status in (413, 422)
        rss.append(serve_server.rss_mb(INGRESS))
    assert rss[0] > 0, "no ingress replica found"
    assert rss[-1] - rss[0] < 64, f"ingress RSS after each round: {rss} MB"


def test_an_age_over_89_reaches_neither_the_store_nor_the_id(
    client: MedLensClient, mortality_record: bytes, psv_path: Path
) -> None:
    """An ICU file's age over 89 is kept, answered and hashed as its challenge's code for 90 or older (HIPAA's
    Safe Harbor): the same stay at 96 or 97 is the same case, and its id cannot give the exact age back."""
    record = mortality_record.replace(b"\n\n", b"\n").replace(b"\n", b"\n\n\n")  # new bytes: no other test's case
    lines = record.decode().split("\n")
    at = next(i for i, line in enumerate(lines) if line.split(",")[1:2] == ["Age"])
    lines[at] = "00:00,Age,97"
    older = "\n".join(lines).encode()
    psv = psv_path.read_text().splitlines()
    column = psv[0].split("|").index("Age")

    def stay(age: int) -> bytes:
        rows = [r.split("|") for r in psv[1:]]
        return "\n".join(
            [psv[0], *("|".join([*r[:column], str(age), *r[column + 1 :]]) for r in rows), "", ""]
        ).encode()

    made = {c.kind: c for c in client.upload_cases([("r.txt", older), ("s.psv", stay(96))]).cases}

    mortality = client.case(made["mortality"].id).prediction
    assert isinstance(mortality, MortalityPrediction) and mortality.age == 90
    kept = _stored_record(made["mortality"].id)
    assert b"00:00,Age,90" in kept and b"Age,97" not in kept
    sepsis = _stored_record(made["sepsis"].id).decode().splitlines()
    assert {r.split("|")[column] for r in sepsis[1:] if r} == {"100"}
    for kind, data in (("mortality", older), ("sepsis", stay(96))):
        assert made[kind].id == case_id_for(kind, data) == hashlib.sha256(_stored_record(made[kind].id)).hexdigest()

    younger = older.replace(b"00:00,Age,97", b"00:00,Age,96")
    again = client.upload_cases([("r.txt", younger), ("s.psv", stay(93))])
    assert again.created == 0 and {c.id for c in again.cases} == {made["mortality"].id, made["sepsis"].id}
