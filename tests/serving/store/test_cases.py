"""The case store on SQLite and PostgreSQL alike: cases keyed by content, the worklist's order and
filters, reviews validated and append-only (enforced by the database), deletion with a tombstone,
concurrent readers losing nothing across a restart, exports, and a database that is down."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import serving._cases_api as cases_api
from models.config import REPO_ROOT
from serving._http import install_error_handlers
from serving._protocol import Upload
from serving._settings import CaseArgs
from serving.schemas import ReviewIn, WorklistQuery
from serving.store import CaseNotFound, CaseStore, InvalidReview, NewCase, ReusedRequestKey, StoreUnavailable
from serving.store.agreement import agreement
from serving.store.db import write_transaction
from serving.store.export import BOM, reviews_csv, reviews_fhir
from serving.store.tables import CaseRow, ReviewRow


def xray_case(n: int, risk: float = 0.5, image_png: bytes | None = b"\x89PNG\r\n\x1a\nfake", **extra: Any) -> NewCase:
    return NewCase(
        id=f"{n:064x}",
        kind="xray",
        model="cnn",
        model_version="cnn-test",
        source_format="png",
        risk=risk,
        label="PNEUMONIA" if risk >= 0.5 else "NORMAL",
        prediction={
            "model": "cnn",
            "version": "cnn-test",
            "probability": risk,
            "label": "PNEUMONIA" if risk >= 0.5 else "NORMAL",
            "threshold": 0.5,
            "image_width": 4,
            "image_height": 4,
            "source_format": "png",
        },
        image_png=image_png,
        **extra,
    )


def sepsis_case(n: int, risk: float, **extra: Any) -> NewCase:
    hours = [{"hour": 0, "iculos": 1.0, "probability": risk, "label": int(risk >= 0.3)}]
    return NewCase(
        id=f"{n:064x}",
        kind="sepsis",
        model="lstm",
        model_version="lstm-test",
        source_format="psv",
        risk=risk,
        label="SEPSIS_ALERT" if risk >= 0.3 else "NO_ALERT",
        prediction={
            "model": "lstm",
            "version": "lstm-test",
            "threshold": 0.3,
            "n_hours": 1,
            "first_alert_hour": 0 if risk >= 0.3 else None,
            "hours": hours,
        },
        **extra,
    )


def fhir(store: CaseStore) -> dict[str, Any]:
    """The store's trail as the FHIR export gives it."""
    return reviews_fhir(list(store.trail()), "2026-12-04T00:00:00Z", store.installation())


def csv_rows(text: str) -> list[dict[str, str]]:
    """The CSV export's rows by column name; the file starts with a UTF-8 byte order mark, for Excel."""
    assert text.startswith(BOM)
    return list(csv.DictReader(io.StringIO(text.removeprefix(BOM))))


@contextmanager
def case_routes(store: CaseStore) -> Iterator[TestClient]:
    """The case routes in-process (FastAPI's TestClient, no Ray) on ``store``; they predict nothing."""

    async def predict(model: str, upload: Upload, explain: bool) -> Any:
        raise AssertionError("these routes read the store alone")

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(cases_api.router)
    cases_api.CASES.service = cases_api.CaseService(store, predict, CaseArgs(), 1024 * 1024)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        cases_api.CASES.service = None


def test_the_same_file_is_the_same_case(store: CaseStore) -> None:
    first, created = store.add(xray_case(1, 0.9))
    again, created_again = store.add(xray_case(1, 0.1))  # same id: the first prediction stands
    assert created and not created_again
    assert again.risk == first.risk == 0.9 and again.status == "unreviewed"
    detail = store.get(first.id)
    assert detail.prediction.model_dump()["probability"] == 0.9
    assert detail.prediction.preview_png is not None  # type: ignore[union-attr]


def test_worklist_order_and_filters(store: CaseStore) -> None:
    store.add(xray_case(1, 0.95))
    store.add(xray_case(2, 0.20, in_distribution=False))  # out of distribution: first, whatever its risk
    store.add(xray_case(3, 0.40, uncertain=True))  # uncertain: next
    store.add(xray_case(4, 0.60))
    store.add(sepsis_case(5, 0.70))
    store.add(xray_case(6, 0.45))  # NORMAL: below its threshold
    store.add(sepsis_case(7, 0.35))  # an alert: above its own threshold, so before 6 whatever the risks
    store.add(sepsis_case(8, 0.55))  # further past its threshold (0.3) than 4 is past its own (0.5): before 4
    order = [c.id[-1] for c in store.worklist(WorklistQuery(status="all")).cases]
    assert order == ["2", "3", "1", "5", "8", "4", "7", "6"]
    assert [c.id[-1] for c in store.worklist(WorklistQuery(status="all", kind="sepsis")).cases] == ["5", "8", "7"]
    eight = store.get(f"{8:064x}")
    assert eight.threshold == 0.3
    assert eight.threshold_margin == pytest.approx(math.log(0.55 / 0.45) - math.log(0.3 / 0.7))
    store.add_review(f"{1:064x}", ReviewIn(reviewer="A", verdict="agree"))
    store.add_review(f"{4:064x}", ReviewIn(reviewer="A", verdict="agree"))
    store.add_review(f"{4:064x}", ReviewIn(reviewer="B", verdict="disagree", label="NORMAL"))
    assert {c.id[-1] for c in store.worklist(WorklistQuery(status="reviewed")).cases} == {"1"}
    assert {c.id[-1] for c in store.worklist(WorklistQuery(status="disagreed")).cases} == {"4"}
    unreviewed = store.worklist(WorklistQuery(status="unreviewed"))
    assert {c.id[-1] for c in unreviewed.cases} == {"2", "3", "5", "6", "7", "8"} and unreviewed.total == 6
    page = store.worklist(WorklistQuery(status="all", limit=2, offset=1))
    assert [c.id[-1] for c in page.cases] == ["3", "1"] and page.total == 8
    four = store.get(f"{4:064x}")
    assert four.reviews == 2 and four.last_verdict == "disagree" and four.status == "disagreed"


def test_worklist_of_cases_a_reader_has_not_reviewed(store: CaseStore) -> None:
    """A second reading: the cases this reader has not reviewed, whoever else has; the filter combines with the
    status one, matches the name as reviews store it (stripped) and ignores a deletion's tombstone."""
    ids = [store.add(xray_case(n, 0.9 - n / 10))[0].id for n in range(1, 5)]
    store.add_review(ids[0], ReviewIn(reviewer="Dr A", verdict="agree"))
    store.add_review(ids[1], ReviewIn(reviewer="Dr B", verdict="disagree", label="NORMAL"))
    store.add_review(ids[2], ReviewIn(reviewer="Dr B", verdict="agree"))
    store.add_review(ids[2], ReviewIn(reviewer="Dr A", verdict="agree"))

    def listed(status: str, reader: str | None) -> list[str]:
        return [c.id for c in store.worklist(WorklistQuery(status=status, not_reviewed_by=reader)).cases]

    assert listed("all", "Dr A") == [ids[1], ids[3]]
    assert listed("all", "  Dr A ") == [ids[1], ids[3]]
    assert listed("all", "Dr B") == [ids[0], ids[3]]
    assert listed("all", "Dr C") == listed("all", None) == ids
    assert listed("disagreed", "Dr A") == [ids[1]] and listed("disagreed", "Dr B") == []
    assert store.worklist(WorklistQuery(status="all", not_reviewed_by="Dr A")).total == 2
    # a tombstone is not a reading: the same file uploaded again after Dr A deleted it is Dr A's to read
    store.delete(ids[3], "Dr A")
    assert listed("all", "Dr A") == [ids[1]]
    store.add(xray_case(4, 0.5))
    assert listed("all", "Dr A") == [ids[1], ids[3]]


def test_worklist_of_cases_whose_id_starts_with_a_prefix(store: CaseStore) -> None:
    """A case as a reader quotes it: the worklist's 16 digits, or fewer; the filter combines with the others."""
    ids = [store.add(xray_case(n, 0.9 - n / 100))[0].id for n in (0xAB1, 0xAB2, 0xAC1)]
    store.add(sepsis_case(0xAB3, 0.5))

    def listed(prefix: str, **filters: Any) -> list[str]:
        return [c.id[-3:] for c in store.worklist(WorklistQuery(status="all", id_prefix=prefix, **filters)).cases]

    assert listed("0" * 61 + "ab") == ["ab3", "ab1", "ab2"]  # in the worklist's order: the alert is furthest past
    assert listed("0" * 61 + "ab", kind="xray") == ["ab1", "ab2"]
    assert listed(ids[2]) == ["ac1"] and listed("0" * 61 + "ad") == []
    assert listed("0" * 61 + "AB", kind="xray") == ["ab1", "ab2"]  # as quoted in capitals
    assert store.worklist(WorklistQuery(status="all", id_prefix="0" * 61 + "a")).total == 4
    store.add_review(ids[0], ReviewIn(reviewer="Dr A", verdict="agree"))
    assert listed("0" * 61 + "ab", not_reviewed_by="Dr A") == ["ab3", "ab2"]


def test_worklist_includes_excludes_or_lists_only_the_synthetic_cases(store: CaseStore) -> None:
    """Generated images (the demo's) share the worklist with real cases, and many land at its top (out of
    distribution): a reader leaves them out, or lists them alone; by default they are listed, as before. The total
    counts what the filter leaves, and the filter combines with the others."""
    store.add(xray_case(1, 0.9))
    store.add(xray_case(2, 0.9, in_distribution=False, synthetic=True))  # first, whatever its risk
    store.add(xray_case(3, 0.2, synthetic=True))
    store.add(sepsis_case(4, 0.9))

    def listed(**filters: Any) -> tuple[list[str], int]:
        found = store.worklist(WorklistQuery(status="all", **filters))
        return [c.id[-1] for c in found.cases], found.total

    assert listed() == listed(synthetic="include") == (["2", "4", "1", "3"], 4)  # the alert: furthest past its own
    assert listed(synthetic="exclude") == (["4", "1"], 2)
    assert listed(synthetic="only") == (["2", "3"], 2)
    assert listed(synthetic="exclude", kind="xray") == (["1"], 1)
    assert listed(synthetic="only", limit=1, offset=1) == (["3"], 2)
    store.add_review(f"{1:064x}", ReviewIn(reviewer="Dr A", verdict="agree"))
    store.add_review(f"{3:064x}", ReviewIn(reviewer="Dr A", verdict="agree"))
    assert store.worklist(WorklistQuery(status="reviewed", synthetic="exclude")).total == 1
    assert [c.id[-1] for c in store.worklist(WorklistQuery(synthetic="exclude")).cases] == ["4"]  # unreviewed
    assert [c.id[-1] for c in store.worklist(WorklistQuery(synthetic="only", not_reviewed_by="Dr A")).cases] == ["2"]
    assert all(c.synthetic for c in store.worklist(WorklistQuery(status="all", synthetic="only")).cases)


def test_the_worklist_route_takes_the_synthetic_filter(store: CaseStore) -> None:
    store.add(xray_case(1, 0.9))
    store.add(xray_case(2, 0.9, synthetic=True))
    with case_routes(store) as client:

        def listed(**params: str) -> list[str]:
            response = client.get("/v1/worklist", params={"status": "all", **params})
            assert response.status_code == 200, response.text
            return [c["id"][-1] for c in response.json()["cases"]]

        assert listed() == listed(synthetic="include") == ["1", "2"]
        assert listed(synthetic="exclude") == ["1"] and listed(synthetic="only") == ["2"]
        refused = client.get("/v1/worklist", params={"synthetic": "no"})
        assert refused.status_code == 422 and "`synthetic`" in refused.json()["detail"], refused.text


def test_reviews_are_validated_and_kept_with_the_model_version(store: CaseStore) -> None:
    case, _ = store.add(xray_case(1, 0.8))
    with pytest.raises(InvalidReview, match="label"):
        store.add_review(case.id, ReviewIn(reviewer="A", verdict="disagree", label="SEPSIS"))
    with pytest.raises(CaseNotFound):
        store.add_review(f"{99:064x}", ReviewIn(reviewer="A", verdict="agree"))
    review, _ = store.add_review(
        case.id, ReviewIn(reviewer="  Dr Ada  ", verdict="disagree", label="NORMAL", comment="c")
    )
    assert (review.reviewer, review.model, review.model_version) == ("Dr Ada", "cnn", "cnn-test")
    assert review.created_at.endswith("Z")


def test_a_withheld_label_is_reviewed_with_the_readers_own_label_and_no_verdict(store: CaseStore) -> None:
    """Without a verdict a review is the reader's own label, allowed only where the model's label is withheld
    (out of distribution); the case then counts as reviewed, in SQL as in the summary."""
    shown, _ = store.add(xray_case(1, 0.8))
    withheld, _ = store.add(xray_case(2, 0.8, in_distribution=False))
    with pytest.raises(InvalidReview, match="`verdict` is required"):
        store.add_review(shown.id, ReviewIn(reviewer="A", label="NORMAL"))
    with pytest.raises(InvalidReview, match="`label` is required without `verdict`"):
        store.add_review(withheld.id, ReviewIn(reviewer="A", comment="no label"))
    assert store.get(withheld.id).reviews == 0
    review, _ = store.add_review(withheld.id, ReviewIn(reviewer="A", label="NORMAL"))
    assert (review.verdict, review.label) == (None, "NORMAL")
    case = store.get(withheld.id)
    assert (case.status, case.last_verdict, case.reviews) == ("reviewed", None, 1)
    assert [c.id for c in store.worklist(WorklistQuery(status="reviewed")).cases] == [withheld.id]
    assert [c.id for c in store.worklist(WorklistQuery(status="unreviewed")).cases] == [shown.id]
    export = fhir(store)["entry"][0]["resource"]
    assert export["status"] == "final" and "withheld" in export["conclusion"]
    assert "reader's label: NORMAL" in export["conclusion"]


KEY = "k" * 16


def test_a_review_sent_again_with_its_key_is_written_once(store: CaseStore) -> None:
    """A review sent again under its ``Idempotency-Key`` is answered with the review written the first time, even
    after its case was deleted; the key with another review, or another case, is refused. Without a key every
    request is a new review."""
    case, _ = store.add(xray_case(1, 0.8))
    other, _ = store.add(xray_case(2, 0.8))
    sent = ReviewIn(reviewer="Dr Ada", verdict="agree", comment="first")
    first, replayed = store.add_review(case.id, sent, KEY)
    assert not replayed
    again, replayed = store.add_review(case.id, ReviewIn(reviewer=" Dr Ada ", verdict="agree", comment="first"), KEY)
    assert replayed and again == first
    for changed in (sent.model_copy(update={"comment": "second"}), sent.model_copy(update={"verdict": "disagree"})):
        with pytest.raises(ReusedRequestKey, match="Idempotency-Key"):
            store.add_review(case.id, changed, KEY)
    with pytest.raises(ReusedRequestKey):
        store.add_review(other.id, sent, KEY)
    assert [r.comment for r in store.get(case.id).history if r.action == "review"] == ["first"]
    store.add_review(case.id, sent)
    store.add_review(case.id, sent)
    assert [r.comment for r in store.get(case.id).history if r.action == "review"] == ["first"] * 3
    store.delete(case.id, "Dr B")
    assert store.add_review(case.id, sent, KEY) == (first, True)


def test_a_key_taken_by_another_cases_review_in_flight_is_refused(store: CaseStore) -> None:
    """Two requests with one key for two cases at once: the second waits for the first's transaction and is
    refused, instead of failing as a database error (PostgreSQL: the unique index; SQLite: its write lock)."""
    case, _ = store.add(xray_case(1, 0.8))
    other, _ = store.add(xray_case(2, 0.8))
    outcome: list[object] = []

    def review() -> None:
        try:
            outcome.append(store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"), KEY))
        except Exception as exc:  # the test reads which
            outcome.append(exc)

    with write_transaction(store.engine) as conn, Session(bind=conn) as session:
        session.add(
            ReviewRow(
                case_id=other.id, action="review", reviewer="B", created_at=datetime.now(UTC), verdict="agree",
                label=None, comment=None, model="cnn", model_version="cnn-test", request_key=KEY,
            )
        )  # fmt: skip
        session.flush()
        waiting = threading.Thread(target=review)
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive(), f"the review did not wait for the other transaction: {outcome}"
    waiting.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], ReusedRequestKey), outcome
    assert store.get(case.id).reviews == 0


def test_the_trail_is_append_only_in_the_database_itself(store: CaseStore) -> None:
    case, _ = store.add(xray_case(1, 0.8))
    store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"))
    for statement in ("UPDATE reviews SET verdict = 'disagree'", "DELETE FROM reviews", *_truncate("reviews", store)):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert [r.verdict for r in store.get(case.id).history] == ["agree"]


def _truncate(table: str, store: CaseStore) -> list[str]:
    """PostgreSQL's TRUNCATE, which fires no row trigger (migration 0007 refuses it); SQLite has none."""
    return [f"TRUNCATE {table}"] if store.engine.dialect.name == "postgresql" else []


def test_identity_views_are_an_append_only_trail(store: CaseStore) -> None:
    """Who saw a DICOM file's patient identifiers: recorded, listed newest first (all, or one file's), and
    never changed or deleted, in the database itself (migration 0005's triggers)."""
    first = store.record_identity_view("a" * 64, "  Dr A  ")
    second = store.record_identity_view("b" * 64, "Dr B")
    third = store.record_identity_view("a" * 64, "Dr B")
    assert first.reader == "Dr A" and first.image_id == "a" * 64 and first.viewed_at.endswith("Z")
    assert store.identity_views() == [third, second, first]
    assert store.identity_views("a" * 64) == [third, first]
    assert store.identity_views(limit=1) == [third]
    for statement in (
        "UPDATE identity_views SET reader = 'nobody'",
        "DELETE FROM identity_views",
        *_truncate("identity_views", store),
    ):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert [v.reader for v in store.identity_views()] == ["Dr B", "Dr B", "Dr A"]
    with store.engine.connect() as conn:  # the trail holds no more than this: who, when, which file
        columns = [c["name"] for c in inspect(conn).get_columns("identity_views")]
    assert columns == ["id", "image_id", "reader", "viewed_at"]


def test_delete_removes_the_case_and_leaves_a_tombstone(store: CaseStore) -> None:
    case, _ = store.add(xray_case(1, 0.8))
    store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"))
    tombstone = store.delete(case.id, "B")
    assert tombstone.action == "delete" and tombstone.reviewer == "B"
    with pytest.raises(CaseNotFound):
        store.get(case.id)
    with pytest.raises(CaseNotFound):
        store.delete(case.id, "B")
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM cases")).scalar_one() == 0
    trail = list(store.trail())
    assert [(r.action, c) for r, c in trail] == [("review", None), ("delete", None)]
    # uploaded again: a new case, unreviewed (the latest trail row is the tombstone) and with no reviews
    again, created = store.add(xray_case(1, 0.8))
    assert created and again.status == "unreviewed" and again.reviews == 0


def test_a_review_waits_for_a_delete_in_flight_and_finds_the_case_gone(store: CaseStore) -> None:
    """A deletion holds the case's row until it commits; a review that arrives meanwhile waits for it and is
    refused (404), never stored after the tombstone. On PostgreSQL (READ COMMITTED) the review read the row as
    it was and was stored; SQLite's exclusive write transaction made it wait already."""
    case, _ = store.add(xray_case(1, 0.8))
    outcome: list[object] = []

    def review() -> None:
        try:
            outcome.append(store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree")))
        except CaseNotFound as exc:
            outcome.append(exc)

    with write_transaction(store.engine) as conn, Session(bind=conn) as session:
        row = session.get(CaseRow, case.id, with_for_update=True)  # as CaseStore.delete takes it
        waiting = threading.Thread(target=review)
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive(), f"the review did not wait for the delete: {outcome}"
        session.delete(row)
        session.flush()
    waiting.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], CaseNotFound), outcome
    assert [r.action for r, _ in store.trail()] == []


def test_a_case_deleted_and_uploaded_again_starts_without_the_deleted_ones_reviews(store: CaseStore) -> None:
    """Its reviews stay in the trail, of the case deleted: the new case is on A's list of cases to read, A's old
    "agree" is no read of it in the agreement, and the exports give it no case."""
    case, _ = store.add(xray_case(1, 0.8))  # PNEUMONIA
    store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"))
    store.delete(case.id, "B")
    again, _ = store.add(xray_case(1, 0.2))  # the same file, predicted again: NORMAL
    assert again.reviews == 0 and again.status == "unreviewed"
    assert [c.id for c in store.worklist(WorklistQuery(not_reviewed_by="A")).cases] == [case.id]
    assert agreement("xray", store.trail()).cases == 0
    trail = list(store.trail())
    assert [(r.action, c) for r, c in trail] == [("review", None), ("delete", None)]
    rows = csv_rows(reviews_csv(trail))
    assert [r["model_label"] for r in rows] == ["", ""]  # not the new prediction's NORMAL
    assert [r.action for r in store.get(case.id).history] == ["review", "delete"]  # the case's history keeps them
    # read again: one review, A's new one, which the agreement pairs with the new label
    store.add_review(case.id, ReviewIn(reviewer="A", verdict="disagree"))
    assert store.worklist(WorklistQuery(status="all")).cases[0].reviews == 1
    assert store.worklist(WorklistQuery(not_reviewed_by="A")).cases == []
    result = agreement("xray", store.trail())
    assert result.cases == 1 and result.confusion == [[0, 1], [0, 0]]  # model NORMAL, reader PNEUMONIA
    assert [c is None for _, c in store.trail()] == [True, True, False]


def test_concurrent_readers_lose_nothing_across_a_restart(db_url: str) -> None:
    """4 readers x 25 reviews over 8 cases, each reader with its own connection pool (as separate
    processes would be), then every pool closed and a new store opened: all 100 reviews are there, in
    the case histories, the CSV and the FHIR bundle."""
    setup = CaseStore(db_url)
    ids = [setup.add(xray_case(n, 0.1 * n))[0].id for n in range(1, 9)]
    setup.close()
    errors: list[BaseException] = []

    def reader(name: str) -> None:
        own = CaseStore(db_url)
        try:
            for i in range(25):
                own.add_review(ids[i % 8], ReviewIn(reviewer=name, verdict="agree" if i % 3 else "disagree"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=reader, args=(f"reader-{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    restarted = CaseStore(db_url)
    try:
        histories = [restarted.get(i).history for i in ids]
        assert sum(len(h) for h in histories) == 100
        assert sorted(r.reviewer for h in histories for r in h).count("reader-2") == 25
        trail = list(restarted.trail())
        rows = csv_rows(reviews_csv(trail))
        assert len(rows) == 100 and len({r["review_id"] for r in rows}) == 100
        bundle = reviews_fhir(trail, "2026-12-04T00:00:00Z", restarted.installation())
        assert len(bundle["entry"]) == 100
        statuses = {e["resource"]["status"] for e in bundle["entry"]}
        assert statuses == {"final", "preliminary"}  # agreements are final, bare disagreements preliminary
    finally:
        restarted.close()


def test_migrations_are_idempotent_and_build_the_tables_the_code_declares(db_url: str) -> None:
    """Migrating twice is a no-op; the schema the migrations build is the one serving/store/tables.py declares
    (Alembic's comparison, of types and server defaults too, finds nothing to change), with the trails' append-only
    triggers, which tables.py cannot declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from serving.store.db import MIGRATIONS
    from serving.store.tables import Base

    for _ in range(2):
        s = CaseStore(db_url)
        s.ready()
        s.close()
    s = CaseStore(db_url)
    newest = max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("0*.py"))
    with s.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == newest
        opts = {"compare_type": True, "compare_server_default": True}
        drift = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
        if conn.dialect.name == "sqlite":
            triggers = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
        else:
            triggers = set(conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars())
    s.close()
    assert [
        d for d in drift if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")
    ] == []
    if s.url.startswith("sqlite"):  # one trigger per statement it refuses
        expected = {
            f"{t}_append_only_{e}" for t in ("reviews", "identity_views") for e in ("update", "delete", "insert")
        }
    else:  # UPDATE and DELETE (an upsert's update among them) in one; TRUNCATE fires no row trigger
        expected = {f"{t}_{k}" for t in ("reviews", "identity_views") for k in ("append_only", "no_truncate")}
    assert triggers == expected


def _stored_at_revision(db_url: str, revision: str, cases: list[NewCase]) -> None:
    """A database migrated to ``revision`` alone, holding ``cases`` as that revision stored them (the columns that
    every revision has: a later one's are left empty, for the upgrade to fill)."""
    from serving.store.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine, revision)
    with engine.connect() as conn:
        for case in cases:
            conn.execute(
                text(
                    "INSERT INTO cases (id, kind, model, model_version, created_at, source_format, risk, label, "
                    "synthetic, prediction) VALUES (:id, :kind, :model, :v, :t, :f, :risk, :label, :s, :p)"
                ),
                {
                    "id": case.id, "kind": case.kind, "model": case.model, "v": case.model_version,
                    "t": datetime.now(UTC), "f": case.source_format, "risk": case.risk, "label": case.label,
                    "s": False, "p": json.dumps(case.prediction),
                },
            )  # fmt: skip
        conn.commit()
    engine.dispose()


def test_migration_0002_fills_the_margin_of_the_cases_stored_before(db_url: str) -> None:
    """A database made by migration 0001 with cases in it: upgrading fills each case's threshold margin from
    its stored prediction, and the worklist orders them by it."""

    _stored_at_revision(db_url, "0001", [xray_case(1, 0.60), sepsis_case(2, 0.55), sepsis_case(3, 0.10)])
    store = CaseStore(db_url)
    cases = store.worklist(WorklistQuery(status="all")).cases
    margins = {c.id[-1]: c.threshold_margin for c in cases}
    assert [c.threshold for c in cases] == [0.3, 0.5, 0.3]
    assert list(margins) == ["2", "1", "3"]  # the sepsis alert is further past its threshold than the pneumonia
    assert margins["1"] == pytest.approx(math.log(0.6 / 0.4))
    assert margins["3"] == pytest.approx(math.log(0.1 / 0.9) - math.log(0.3 / 0.7))
    store.close()


def test_migration_0003_keeps_only_the_year_of_a_stored_study_date(db_url: str) -> None:
    """Cases stored while the DICOM fields held ``StudyDate`` (a date of service) keep its year alone."""
    dated = xray_case(1, 0.6)
    dated.prediction["source_format"] = "dicom"
    dated.prediction["dicom"] = {"Modality": "CR", "StudyDate": "20240102", "Rows": "2048"}
    undated = xray_case(2, 0.4)
    undated.prediction["dicom"] = {"Modality": "DX", "StudyDate": "unknown"}
    _stored_at_revision(db_url, "0002", [dated, undated, xray_case(3, 0.7), sepsis_case(4, 0.5)])
    store = CaseStore(db_url)
    one, two, three = (store.get(f"{n:064x}").prediction.model_dump() for n in (1, 2, 3))
    assert one["dicom"] == {"Modality": "CR", "StudyYear": "2024", "Rows": "2048"}
    assert two["dicom"] == {"Modality": "DX"} and three["dicom"] is None
    assert store.get(f"{4:064x}").prediction.model_dump()["hours"][0]["probability"] == 0.5
    with store.engine.connect() as conn:
        stored = " ".join(conn.execute(text("SELECT prediction FROM cases")).scalars())
    assert "StudyDate" not in stored and "20240102" not in stored
    store.close()


def _calibrated(case: NewCase, *values: float) -> NewCase:
    """``case`` as stored before migration 0006: its prediction carries calibrated probabilities (the X-ray's one,
    or one per sepsis hour) and its row none."""
    if case.kind == "sepsis":
        scores = [0.2, case.risk, 0.1][: len(values)]
        case.prediction["hours"] = [
            {"hour": i, "iculos": i + 1.0, "probability": p, "label": int(p >= 0.3), "calibrated_probability": c}
            for i, (p, c) in enumerate(zip(scores, values, strict=True))
        ]
    else:
        case.prediction["calibrated_probability"] = values[0]
    return case


def test_a_case_keeps_its_calibrated_risk_beside_its_score(store: CaseStore) -> None:
    """The worklist row carries the calibrated probability serving gives beside the score (which hour's it is, is
    serving's: tests/serving/test_cases_api.py); none from an uncalibrated checkpoint. The exports carry it."""
    xray, _ = store.add(xray_case(1, 0.9, calibrated_risk=0.97))
    sepsis, _ = store.add(sepsis_case(2, 0.6, calibrated_risk=0.18))
    plain, _ = store.add(sepsis_case(3, 0.4))
    assert (xray.calibrated_risk, sepsis.calibrated_risk, plain.calibrated_risk) == (0.97, 0.18, None)
    listed = {c.id: c.calibrated_risk for c in store.worklist(WorklistQuery(status="all")).cases}
    assert listed == {xray.id: 0.97, sepsis.id: 0.18, plain.id: None}
    for case in (xray, sepsis, plain):
        store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"))
    rows = csv_rows(reviews_csv(list(store.trail())))
    assert [r["model_calibrated_risk"] for r in rows] == ["0.970000", "0.180000", ""]
    reports = [e["resource"] for e in fhir(store)["entry"]]
    findings = [next(r for r in rep["contained"] if r["resourceType"] == "Observation") for rep in reports]
    assert [f["component"][0]["valueQuantity"]["value"] for f in findings[:2]] == [0.97, 0.18]
    assert findings[0]["component"][0]["valueQuantity"]["unit"] == "probability" and "component" not in findings[2]


def test_migration_0006_fills_the_calibrated_risk_of_the_cases_stored_before(db_url: str) -> None:
    """Cases stored before 0006: the upgrade reads each one's calibrated probability from its stored prediction."""
    _stored_at_revision(
        db_url,
        "0005",
        [_calibrated(xray_case(1, 0.9), 0.97), _calibrated(sepsis_case(2, 0.6), 0.05, 0.18), xray_case(3)],
    )
    store = CaseStore(db_url)
    listed = {c.id[-1]: c.calibrated_risk for c in store.worklist(WorklistQuery(status="all")).cases}
    assert listed == {"1": 0.97, "2": 0.18, "3": None}
    store.close()


def test_migration_0004_leaves_the_cases_stored_before_without_a_record(db_url: str) -> None:
    """Cases stored before cases kept their records: an ICU stay's cannot be explained (and says so), an X-ray's
    still can, from its image."""
    _stored_at_revision(db_url, "0003", [sepsis_case(1, 0.5), xray_case(2, 0.6)])
    store = CaseStore(db_url)
    assert not store.get(f"{1:064x}").explainable and store.source(f"{1:064x}").data is None
    store.add(sepsis_case(3, 0.5, record=b"HR|ICULOS\n80|1\n"))
    assert store.get(f"{3:064x}").explainable
    store.close()


def test_a_case_keeps_what_its_model_read_to_explain_it_again(store: CaseStore) -> None:
    """An ICU stay's record (compressed in the database, as it was given back), an X-ray's image; an X-ray
    without one (burned-in text) cannot be explained; the record goes with the case when it is deleted."""
    record = b"HR|O2Sat|ICULOS\n" + b"".join(b"%d|97|%d\n" % (80 + h % 7, h + 1) for h in range(300))
    case, _ = store.add(sepsis_case(1, 0.5, record=record))
    store.add(xray_case(2, 0.6))
    store.add(xray_case(3, 0.6, image_png=None))
    assert [store.get(f"{n:064x}").explainable for n in (1, 2, 3)] == [True, True, False]
    source = store.source(case.id)
    assert (source.kind, source.model, source.upload_name, source.data) == ("sepsis", "lstm", "upload.psv", record)
    assert store.source(f"{2:064x}").data == b"\x89PNG\r\n\x1a\nfake" and store.source(f"{3:064x}").data is None
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT record FROM cases WHERE kind = 'sepsis'")).scalar_one()
    assert len(stored) < len(record) / 3  # compressed
    store.delete(case.id, "Dr A")
    with pytest.raises(CaseNotFound):
        store.source(case.id)


def test_a_database_that_is_down_is_a_503_that_names_it_in_the_log_alone(caplog: pytest.LogCaptureFixture) -> None:
    """The answer (which a reader may see) says the database is down, not where it is; the operators' log says
    where, without its password."""
    store = CaseStore("postgresql+psycopg://medlens:s3cret@127.0.0.1:1/medlens")
    with caplog.at_level("WARNING", logger="serving.store.cases"), pytest.raises(StoreUnavailable) as err:
        store.worklist()
    assert err.value.status_code == 503 and "127.0.0.1" not in err.value.message and "s3cret" not in err.value.message
    assert "127.0.0.1:1" in caplog.text and "s3cret" not in caplog.text
    with pytest.raises(StoreUnavailable):  # and again: no engine was kept half-made
        store.ready()


#: database URLs no engine can be made of: malformed, a port that is not a number (its text is the password's end),
#: a driver that is not installed (psycopg2, MySQLdb), a dialect SQLAlchemy does not know
UNUSABLE_URLS = [
    "medlens:s3cret@db.internal/medlens",
    "postgresql://medlens:p@ss:cret@db.internal:5432/medlens",
    "postgresql+psycopg2://medlens:s3cret@db.internal/medlens",
    "mysql://medlens:s3cret@db.internal/medlens",
    "postgres+psycopg://medlens:s3cret@db.internal/medlens",
]


@pytest.mark.parametrize("url", UNUSABLE_URLS)
def test_a_database_url_no_engine_can_be_made_of_is_a_503_that_says_to_check_it(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed MEDLENS_DB_URL, or one whose driver is missing, was a 500 internal error on every case route
    (the URL was not SQLAlchemy's to parse, or the driver import failed outside the errors mapped): it is the
    store's 503, which tells operators to check the setting; neither the answer nor the log gives the password."""
    store = CaseStore(url)
    try:
        for call in (store.worklist, store.ready, lambda: list(store.trail())):
            with caplog.at_level("WARNING", logger="serving.store.cases"), pytest.raises(StoreUnavailable) as err:
                call()
            assert err.value.status_code == 503 and err.value.kind == "database_unavailable"
            assert "MEDLENS_DB_URL" in err.value.message and "predictions still work" in err.value.message
            assert "db.internal" not in err.value.message and "cret" not in err.value.message
        assert "MEDLENS_DB_URL" in caplog.text and "cret" not in caplog.text
        # the log names the database where SQLAlchemy can parse its URL, and says it cannot where it cannot
        assert ("db.internal" in caplog.text) != ("unparseable" in caplog.text), caplog.text
        with case_routes(store) as client:
            response = client.get("/v1/worklist")
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "database_unavailable" and "MEDLENS_DB_URL" in response.json()["detail"]
        assert "cret" not in response.text
    finally:
        store.close()


def test_fhir_export_is_valid_r4b_with_the_model_as_device(store: CaseStore) -> None:
    case, _ = store.add(xray_case(1, 0.9))
    store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree", comment="=HYPERLINK(1)"))
    store.add_review(case.id, ReviewIn(reviewer="B", verdict="disagree"))
    store.add_review(case.id, ReviewIn(reviewer="C", verdict="disagree", label="NORMAL"))
    sepsis, _ = store.add(sepsis_case(2, 0.9))
    store.add_review(sepsis.id, ReviewIn(reviewer="A", verdict="agree"))
    bundle = fhir(store)
    reports = [e["resource"] for e in bundle["entry"]]
    assert [r["status"] for r in reports] == ["final", "preliminary", "final", "final"]
    assert reports[0]["conclusionCode"][0]["coding"][0]["code"] == "233604007"  # agreed: pneumonia
    assert "conclusionCode" not in reports[1] and "conclusionCode" not in reports[2]  # relabelled NORMAL
    assert reports[3]["conclusionCode"][0]["coding"][0]["code"] == "91302008"  # sepsis confirmed
    device, observation = reports[0]["contained"]
    assert device["version"][0]["value"] == "cnn-test" and observation["device"]["reference"] == "#model"
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate_json(json.dumps(bundle))  # round-trips through the validating model
    rows = list(csv.reader(io.StringIO(reviews_csv(list(store.trail())).removeprefix(BOM))))
    assert rows[1][7] == "'=HYPERLINK(1)"  # a spreadsheet will not run it


def test_fhir_export_confirms_nothing_by_agreeing_with_a_withheld_label(store: CaseStore) -> None:
    """An out-of-distribution case's label is withheld from readers: an "agree" confirms no finding (status
    preliminary, no conclusion code); the reader's own label still does. The store refuses a verdict on such a case
    now; the trail keeps those written before, which the export reads so."""
    case, _ = store.add(xray_case(1, 0.9, in_distribution=False))
    _append(store, case.id, "A", "agree", None)
    _append(store, case.id, "B", "disagree", "PNEUMONIA")
    reports = [e["resource"] for e in fhir(store)["entry"]]
    assert [r["status"] for r in reports] == ["preliminary", "final"]
    assert "conclusionCode" not in reports[0] and "withheld" in reports[0]["conclusion"]
    # the AI finding carries no value: its risk and label were withheld from the readers too
    for report in reports:
        finding = next(r for r in report["contained"] if r["resourceType"] == "Observation")
        assert "valueQuantity" not in finding and finding["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
        assert "PNEUMONIA" not in str(finding)
    shown, _ = store.add(xray_case(2, 0.9))
    store.add_review(shown.id, ReviewIn(reviewer="A", verdict="agree"))
    report = fhir(store)["entry"][-1]["resource"]
    finding = next(r for r in report["contained"] if r["resourceType"] == "Observation")
    assert finding["valueQuantity"]["value"] == pytest.approx(0.9) and "dataAbsentReason" not in finding
    # the model's score, never exported as a probability: training weighs the classes (docs/trust.md)
    assert finding["valueQuantity"]["unit"] == "score" and "not a calibrated probability" in finding["code"]["text"]
    assert reports[1]["conclusionCode"][0]["coding"][0]["code"] == "233604007"


def _append(store: CaseStore, case_id: str, reader: str, verdict: str | None, label: str | None) -> None:
    """A review as the trail may hold it from before the store refused it (add_review checks what it writes)."""
    with write_transaction(store.engine) as conn, Session(bind=conn) as session:
        session.add(
            ReviewRow(
                case_id=case_id, action="review", reviewer=reader, created_at=datetime.now(UTC), verdict=verdict,
                label=label, comment=None, model="cnn", model_version="cnn-test",
            )
        )  # fmt: skip
        session.flush()


def _deploy_recipe_grants(role: str) -> list[str]:
    """docs/deploy.md's SQL for the serving role, as written there, for ``role`` (its password left out)."""
    text_ = (REPO_ROOT / "docs" / "deploy.md").read_text()
    block = text_.split("psql medlens <<'SQL'\n", 1)[1].split("\nSQL\n", 1)[0]
    statements = [s.strip() for s in block.replace("\n", " ").split(";") if s.strip()]
    statements = [re.sub(r" PASSWORD '[^']*'", "", s).replace("medlens_serving", role) for s in statements]
    assert statements and statements[0].startswith(f"CREATE ROLE {role}"), statements
    return statements


def test_a_serving_role_that_does_not_own_the_trails_cannot_rewrite_them(postgres_url: str) -> None:
    """docs/deploy.md's recipe: the owner migrates, serving connects as a role with SELECT and INSERT on the
    trails. That role works the worklist (cases, reviews, deletions, identity views) and can neither rewrite
    the trails nor drop or disable their triggers (the owner could)."""
    import uuid

    from sqlalchemy import create_engine

    name, role = f"t{uuid.uuid4().hex[:12]}", f"r{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    owner_url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrated = CaseStore(owner_url)
        migrated.ready()  # migrated by the owner
        migrated.close()
        owner = create_engine(owner_url, isolation_level="AUTOCOMMIT")
        with owner.connect() as conn:
            for grant in _deploy_recipe_grants(role):
                conn.execute(text(grant))
        owner.dispose()
        serving = CaseStore(owner_url.replace("//medlens@", f"//{role}@", 1))
        try:
            case, _ = serving.add(xray_case(1, 0.8))
            serving.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"))
            serving.record_identity_view("a" * 64, "Dr A")
            reviews_fhir(list(serving.trail()), "2026-12-07T00:00:00Z", serving.installation())  # the export
            serving.delete(case.id, "Dr A")
            for statement in (
                "DELETE FROM reviews",
                "TRUNCATE reviews",
                "TRUNCATE identity_views",
                "ALTER TABLE reviews DISABLE TRIGGER ALL",
                "DROP TRIGGER reviews_append_only ON reviews",
            ):
                with pytest.raises(DBAPIError), serving.engine.begin() as conn:
                    conn.execute(text(statement))
            with serving.engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM reviews")).scalar() == 2  # the review, the tombstone
                assert conn.execute(text("SELECT count(*) FROM identity_views")).scalar() == 1
        finally:
            serving.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def test_a_stalled_postgresql_statement_ends_instead_of_holding_a_thread(postgres_url: str) -> None:
    """PostgreSQL sessions carry a statement timeout (30 s) and a lock timeout (10 s), so that a stalled
    database ends a request with a 503 rather than holding one of the ingress's threads for minutes; migrating
    lifted both for its own transaction only (a migration of many rows, or one waiting for another replica's,
    may take longer). SQLite's waits are bounded by its busy timeout (30 s)."""
    import uuid

    from sqlalchemy import create_engine

    name = f"t{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    store = CaseStore(postgres_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        store.ready()  # migrated on a pooled connection, which later requests reuse
        with store.engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "30s"
            assert conn.execute(text("SHOW lock_timeout")).scalar_one() == "10s"
            with pytest.raises(DBAPIError, match="statement timeout"):
                conn.execute(text("SET statement_timeout = 200"))
                conn.execute(text("SELECT pg_sleep(2)"))
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_replacing_a_row_cannot_rewrite_the_trails(store: CaseStore) -> None:
    """SQLite's REPLACE deletes the row in its way without firing a delete trigger: migration 0009's insert trigger
    refuses it, by id and (a review) by request key. PostgreSQL's upsert fires the update trigger."""
    case, _ = store.add(xray_case(1, 0.8))
    review, _ = store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree", comment="original"), KEY)
    view = store.record_identity_view("a" * 64, "Dr A")
    columns = "(id, case_id, action, reviewer, created_at, verdict, comment, model, model_version, request_key)"
    values = "(:id, :case, 'review', 'B', :t, 'disagree', 'forged', 'cnn', 'cnn-test', :key)"
    if store.engine.dialect.name == "sqlite":
        statements = [
            f"INSERT OR REPLACE INTO reviews {columns} VALUES {values}",
            f"REPLACE INTO reviews {columns} VALUES {values.replace(':id', ':other')}",  # over its request key
            f"INSERT INTO reviews {columns} VALUES {values} ON CONFLICT (id) DO UPDATE SET comment = 'forged'",
            "REPLACE INTO identity_views (id, image_id, reader, viewed_at) VALUES (:view, :image, 'B', :t)",
        ]
    else:
        statements = [
            f"INSERT INTO reviews {columns} VALUES {values} ON CONFLICT (id) DO UPDATE SET comment = 'forged'",
            "INSERT INTO identity_views (id, image_id, reader, viewed_at) VALUES (:view, :image, 'B', :t) "
            "ON CONFLICT (id) DO UPDATE SET reader = 'B'",
        ]
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(
                text(statement),
                {"id": review.id, "other": review.id + 100, "case": case.id, "t": datetime.now(UTC), "key": KEY}
                | {"view": view.id, "image": "b" * 64},
            )
    assert store.get(case.id).history == [review]
    assert store.identity_views() == [view]
    # a new row, its id left to the database, is still an ordinary insert
    assert store.add_review(case.id, ReviewIn(reviewer="B", verdict="disagree"))[0].id > review.id


def test_a_review_that_contradicts_itself_is_refused(store: CaseStore) -> None:
    """ "agree" is with the model's label (as a reader says it: a sepsis model's SEPSIS_ALERT is SEPSIS), so its
    `label`, if any, is that label; "disagree" gives another label or none; a case whose label is withheld is
    reviewed with a label alone. Nothing refused reaches the trail."""
    xray, _ = store.add(xray_case(1, 0.9))  # PNEUMONIA
    sepsis, _ = store.add(sepsis_case(2, 0.9))  # SEPSIS_ALERT
    withheld, _ = store.add(xray_case(3, 0.9, in_distribution=False))
    refused = [
        (xray.id, "agree", "NORMAL", "`agree` is with the model's label, PNEUMONIA"),
        (xray.id, "disagree", "PNEUMONIA", "`disagree` is with the model's label, PNEUMONIA"),
        (sepsis.id, "agree", "NO_SEPSIS", "model's label, SEPSIS,"),
        (sepsis.id, "disagree", "SEPSIS", "`disagree` is with the model's label, SEPSIS"),
        (withheld.id, "agree", None, "withheld"),
        (withheld.id, "disagree", "NORMAL", "Leave `verdict` out and send your own `label`"),
    ]
    for case_id, verdict, label, said in refused:
        with pytest.raises(InvalidReview, match=said) as err:
            store.add_review(case_id, ReviewIn(reviewer="A", verdict=verdict, label=label))  # type: ignore[arg-type]
        assert err.value.status_code == 422
    assert list(store.trail()) == []
    for case_id, verdict, label in [
        (xray.id, "agree", "PNEUMONIA"),
        (xray.id, "disagree", "NORMAL"),
        (xray.id, "disagree", None),
        (sepsis.id, "agree", "SEPSIS"),
        (sepsis.id, "disagree", "NO_SEPSIS"),
        (withheld.id, None, "PNEUMONIA"),
    ]:
        store.add_review(case_id, ReviewIn(reviewer="A", verdict=verdict, label=label))  # type: ignore[arg-type]
    assert len(list(store.trail())) == 6


def _bulk_reviewed_cases(store: CaseStore, n: int) -> None:
    """``n`` X-ray cases, each with one review, made in the database itself (seconds, not minutes)."""
    postgres = store.engine.dialect.name == "postgresql"
    series = (
        "SELECT i FROM generate_series(1, :n) AS i"
        if postgres
        else "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) SELECT i FROM s"
    )
    hex_id = "lpad(to_hex(i), 64, '0')" if postgres else "printf('%064x', i)"
    with write_transaction(store.engine) as conn:
        conn.execute(
            text(
                "INSERT INTO cases (id, kind, model, model_version, created_at, source_format, risk, label, synthetic, "
                f"prediction) SELECT {hex_id}, 'xray', 'cnn', 'cnn-test', :t, 'png', 0.9, 'PNEUMONIA', false, '{{}}' "
                f"FROM ({series}) AS n"
            ),
            {"n": n, "t": datetime.now(UTC)},
        )
        conn.execute(
            text(
                "INSERT INTO reviews (case_id, action, reviewer, created_at, verdict, model, model_version) "
                f"SELECT {hex_id}, 'review', 'A', :t, 'agree', 'cnn', 'cnn-test' FROM ({series}) AS n"
            ),
            {"n": n, "t": datetime.now(UTC)},
        )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite as Python builds it takes 250,000
def test_the_trail_of_more_cases_than_a_statement_takes_parameters(store: CaseStore) -> None:
    """The exports and the agreement read the whole trail with its cases: more distinct cases than one PostgreSQL
    statement takes bound parameters (65,535, its protocol's limit) are read, every one with its case."""
    n = 65_536
    _bulk_reviewed_cases(store, n)
    trail = list(store.trail())
    assert len(trail) == n and all(case is not None and case.id == review.case_id for review, case in trail)
    assert agreement("xray", trail).cases == n


def test_a_failed_migration_raises_its_own_error_keeps_nothing_and_releases_its_lock(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A revision that fails (here a column that exists already) raises the database's own error, named in the
    log; the revisions before it in the same upgrade are rolled back with it, and PostgreSQL's migration lock is
    released (it was held on the pooled connection, after an unlock refused in the aborted transaction)."""
    from sqlalchemy import create_engine

    from serving.store.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE cases ADD COLUMN margin FLOAT"))  # 0002 adds threshold, then margin
    with caplog.at_level("ERROR", logger="ray.serve"), pytest.raises(DBAPIError, match="margin") as err:
        migrate(engine)
    driver_error = type(err.value.orig).__name__  # psycopg's DuplicateColumn, sqlite3's OperationalError
    assert "InFailedSqlTransaction" not in driver_error and "InternalError" not in type(err.value).__name__
    assert f"{type(err.value).__name__} ({driver_error})" in caplog.text and "to head failed" in caplog.text
    other = create_engine(db_url)  # another connection: not the one that migrated
    with other.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0001"
        assert "threshold" not in {c["name"] for c in inspect(conn).get_columns("cases")}  # 0002's first step
        if engine.dialect.name == "postgresql":
            held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            assert conn.execute(text(held)).scalar_one() == 0
    other.dispose()
    engine.dispose()


def test_two_sqlite_processes_never_migrate_at_once(tmp_path: Path) -> None:
    """Every revision of an upgrade runs in one transaction, which holds SQLite's write lock (BEGIN IMMEDIATE):
    another replica starting meanwhile waits and then finds nothing to do. Were there a transaction per revision
    (Alembic's own way on SQLite), the other replica would migrate between two of them, and this one then fail on
    what it added (`duplicate column name`). PostgreSQL: the advisory lock (held across the upgrade already)."""
    db_url = f"sqlite:///{tmp_path / 'medlens.db'}"
    import subprocess
    import sys

    from sqlalchemy import Connection, event

    from models.config import REPO_ROOT
    from serving.store.db import make_engine, migrate

    engine = make_engine(db_url)
    begun: list[str] = []
    replicas: list[subprocess.CompletedProcess[str]] = []

    def other_replica() -> None:
        code = "import sys; from serving.store.db import make_engine, migrate; migrate(make_engine(sys.argv[1]))"
        replicas.append(
            subprocess.run(
                [sys.executable, "-c", code, db_url], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
            )
        )

    @event.listens_for(engine, "begin", insert=True)  # before make_engine's own (SQLite's BEGIN IMMEDIATE)
    def between_revisions(conn: Connection) -> None:
        begun.append("begin")
        if len(begun) == 2:  # this process holds no lock here: the other replica migrates now, to the end
            other_replica()

    migrate(engine)
    other_replica()  # and once this one is done
    engine.dispose()
    assert begun == ["begin"]
    assert all(r.returncode == 0 for r in replicas), [r.stderr[-2000:] for r in replicas]


def test_a_readers_name_has_one_spelling(store: CaseStore) -> None:
    """A name composed (NFC) or not (NFD), with blanks doubled or around it, is one reader: in the trail, the
    agreement and the worklist's filter. An invisible formatting character is refused; case is kept."""
    import unicodedata

    from pydantic import ValidationError

    case, _ = store.add(xray_case(1, 0.9))
    composed = "José Ruiz"
    for name in (composed, unicodedata.normalize("NFD", composed), " José  Ruiz ", "José\u00a0Ruiz"):
        store.add_review(case.id, ReviewIn(reviewer=name, verdict="agree"))
    assert {r.reviewer for r in store.get(case.id).history} == {composed}
    assert agreement("xray", store.trail()).readers == 1
    query = WorklistQuery(status="all", not_reviewed_by=unicodedata.normalize("NFD", composed))
    assert store.worklist(query).cases == []
    other, _ = store.add(xray_case(2, 0.9))
    with write_transaction(store.engine) as conn:  # a review stored before API 1.15, its name decomposed
        conn.execute(
            text(
                "INSERT INTO reviews (case_id, action, reviewer, created_at, verdict, model, model_version) "
                "VALUES (:c, 'review', :r, :t, 'agree', 'cnn', 'cnn-test')"
            ),
            {"c": other.id, "r": unicodedata.normalize("NFD", composed), "t": datetime.now(UTC)},
        )
    assert store.worklist(WorklistQuery(status="all", not_reviewed_by=composed)).cases == []
    assert ReviewIn(reviewer="josé ruiz", verdict="agree").reviewer == "josé ruiz"
    persian = "می‌رضا"  # a zero-width non-joiner is part of its spelling
    assert ReviewIn(reviewer=persian, verdict="agree").reviewer == persian
    for hidden in ("José\u200b Ruiz", "\u202eJosé Ruiz", "José\u2060Ruiz"):
        with pytest.raises(ValidationError, match=r"invisible formatting character U\+"):
            ReviewIn(reviewer=hidden, verdict="agree")
        with pytest.raises(ValidationError, match="invisible"):
            WorklistQuery(not_reviewed_by=hidden)
