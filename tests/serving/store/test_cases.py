"""The case store on SQLite and PostgreSQL alike: cases keyed by content, the worklist's order and
filters, reviews validated and append-only (enforced by the database), deletion with a tombstone,
concurrent readers losing nothing across a restart, exports, and a database that is down."""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from serving.schemas import ReviewIn, WorklistQuery
from serving.store import CaseNotFound, CaseStore, InvalidReview, NewCase, ReusedRequestKey, StoreUnavailable
from serving.store.agreement import agreement
from serving.store.db import write_transaction
from serving.store.export import reviews_csv, reviews_fhir
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
    export = reviews_fhir(list(store.trail()), "2026-12-04T00:00:00Z")["entry"][0]["resource"]
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
    rows = list(csv.DictReader(io.StringIO(reviews_csv(trail))))
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
        rows = list(csv.DictReader(io.StringIO(reviews_csv(trail))))
        assert len(rows) == 100 and len({r["review_id"] for r in rows}) == 100
        bundle = reviews_fhir(trail, "2026-12-04T00:00:00Z")
        assert len(bundle["entry"]) == 100
        statuses = {e["resource"]["status"] for e in bundle["entry"]}
        assert statuses == {"final", "preliminary"}  # agreements are final, bare disagreements preliminary
    finally:
        restarted.close()


def test_migrations_are_idempotent_and_build_the_tables_the_code_declares(db_url: str) -> None:
    """Migrating twice is a no-op; the schema the migrations build is the one serving/store/tables.py declares
    (Alembic's comparison finds nothing to change)."""
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
        drift = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    s.close()
    assert [
        d for d in drift if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")
    ] == []


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
    rows = list(csv.DictReader(io.StringIO(reviews_csv(list(store.trail())))))
    assert [r["model_calibrated_risk"] for r in rows] == ["0.970000", "0.180000", ""]
    reports = [e["resource"] for e in reviews_fhir(list(store.trail()), "2026-12-04T00:00:00Z")["entry"]]
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


def test_fhir_export_is_valid_r4b_with_the_model_as_device(store: CaseStore) -> None:
    case, _ = store.add(xray_case(1, 0.9))
    store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree", comment="=HYPERLINK(1)"))
    store.add_review(case.id, ReviewIn(reviewer="B", verdict="disagree"))
    store.add_review(case.id, ReviewIn(reviewer="C", verdict="disagree", label="NORMAL"))
    sepsis, _ = store.add(sepsis_case(2, 0.9))
    store.add_review(sepsis.id, ReviewIn(reviewer="A", verdict="agree"))
    bundle = reviews_fhir(list(store.trail()), "2026-12-04T00:00:00Z")
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
    rows = list(csv.reader(io.StringIO(reviews_csv(list(store.trail())))))
    assert rows[1][7] == "'=HYPERLINK(1)"  # a spreadsheet will not run it


def test_fhir_export_confirms_nothing_by_agreeing_with_a_withheld_label(store: CaseStore) -> None:
    """An out-of-distribution case's label is withheld from readers: an "agree" confirms no finding (status
    preliminary, no conclusion code); the reader's own label still does."""
    case, _ = store.add(xray_case(1, 0.9, in_distribution=False))
    store.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"))
    store.add_review(case.id, ReviewIn(reviewer="B", verdict="disagree", label="PNEUMONIA"))
    reports = [e["resource"] for e in reviews_fhir(list(store.trail()), "2026-12-04T00:00:00Z")["entry"]]
    assert [r["status"] for r in reports] == ["preliminary", "final"]
    assert "conclusionCode" not in reports[0] and "withheld" in reports[0]["conclusion"]
    # the AI finding carries no value: its risk and label were withheld from the readers too
    for report in reports:
        finding = next(r for r in report["contained"] if r["resourceType"] == "Observation")
        assert "valueQuantity" not in finding and finding["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
        assert "PNEUMONIA" not in str(finding)
    shown, _ = store.add(xray_case(2, 0.9))
    store.add_review(shown.id, ReviewIn(reviewer="A", verdict="agree"))
    report = reviews_fhir(list(store.trail()), "2026-12-04T00:00:00Z")["entry"][-1]["resource"]
    finding = next(r for r in report["contained"] if r["resourceType"] == "Observation")
    assert finding["valueQuantity"]["value"] == pytest.approx(0.9) and "dataAbsentReason" not in finding
    # the model's score, never exported as a probability: training weighs the classes (docs/trust.md)
    assert finding["valueQuantity"]["unit"] == "score" and "not a calibrated probability" in finding["code"]["text"]
    assert reports[1]["conclusionCode"][0]["coding"][0]["code"] == "233604007"


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
            for grant in (
                f"CREATE ROLE {role} LOGIN",
                f"GRANT SELECT, INSERT ON reviews, identity_views TO {role}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON cases TO {role}",
                f"GRANT SELECT ON alembic_version TO {role}",
                f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
            ):
                conn.execute(text(grant))
        owner.dispose()
        serving = CaseStore(owner_url.replace("//medlens@", f"//{role}@", 1))
        try:
            case, _ = serving.add(xray_case(1, 0.8))
            serving.add_review(case.id, ReviewIn(reviewer="A", verdict="agree"))
            serving.record_identity_view("a" * 64, "Dr A")
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
