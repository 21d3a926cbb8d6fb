"""Unit tests of the dashboard's non-chart helpers (no serving, no browser)."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import pkgutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import dashboard
from dashboard import backend, demo
from serving.client import ServingError

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
#: Modules the dashboard must not use: serving decodes uploads and computes what the pages show.
SIDE_DOORS = {"models.xray_io", "models.sepsis_io", "models.errors", "models.metrics", "models.inference"}


def test_case_id_is_a_hash_of_the_bytes() -> None:
    data = b"\x00DICM some pixels"
    assert backend.case_id(data) == hashlib.sha256(data).hexdigest()[:16]
    assert backend.case_id(data) != backend.case_id(data + b"!")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("DOE^JANE_19700101", "upload"),  # extension-less DICOM: nothing of the name survives
        ("Smith John CXR.DCM", "upload.dcm"),
        ("person12_virus_44.jpeg", "upload.jpeg"),
        ("p100013.psv", "upload.psv"),
        ("weird.name.with spaces!", "upload"),
        ("", "upload"),
        (None, "upload"),
    ],
)
def test_safe_name_keeps_only_the_extension(filename: str | None, expected: str) -> None:
    assert backend.safe_name(filename, "upload") == expected


def test_valid_url() -> None:
    assert backend.valid_url("http://127.0.0.1:8000")
    assert backend.valid_url("https://medlens.example")
    assert not backend.valid_url("ftp://x")
    assert not backend.valid_url("http://")
    assert not backend.valid_url("127.0.0.1:8000")


def test_remember_keeps_the_newest_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "MAX_STORED", 3)
    store: dict[str, object] = {}
    for key in "abcd":
        backend.remember(store, key, key.upper())
    assert list(store) == ["b", "c", "d"]
    backend.remember(store, "b", "B2")  # refreshed: now the newest
    backend.remember(store, "e", "E")
    assert list(store) == ["d", "b", "e"]


def test_session_cached_fetches_once_and_keeps_no_failure() -> None:
    """A kept answer is served again without asking serving; a failed fetch (None) is not kept: the next run asks.
    (Streamlit's session state, in bare mode outside a script run.)"""
    kind = f"test-{uuid.uuid4().hex}"
    answers = iter([None, "first", "second"])
    fetched: list[object] = []

    def fetch() -> object:
        fetched.append(answer := next(answers))
        return answer

    assert backend.session_cached(kind, "k", "asking", fetch) is None
    assert backend.session_cached(kind, "k", "asking", fetch) == "first"
    assert backend.session_cached(kind, "k", "asking", fetch) == "first"  # kept: not fetched again
    assert fetched == [None, "first"] and backend.session_store(kind) == {"k": "first"}


def test_call_retries_busy_answers_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "BUSY_WAIT_S", 0.0)
    shown: list[ServingError] = []
    monkeypatch.setattr(backend, "show_error", shown.append)
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) <= backend.BUSY_RETRIES:
            raise ServingError(503, "queue_full", "busy")
        return "ok"

    assert backend.call(flaky) == "ok"
    assert len(attempts) == backend.BUSY_RETRIES + 1
    assert not shown


@pytest.mark.parametrize(
    "error", [ServingError(503, "unavailable", "starting"), ServingError(503, "database_unavailable", "down")]
)
def test_call_leaves_the_clients_own_retries_alone(monkeypatch: pytest.MonkeyPatch, error: ServingError) -> None:
    """A 503 other than a full queue reaches the page after the client's own retries (up to ``retry_s``): the
    page does not retry it again (two layers of retries made a busy model cost a reader 66 s a run)."""
    monkeypatch.setattr(backend, "BUSY_WAIT_S", 0.0)
    shown: list[ServingError] = []
    monkeypatch.setattr(backend, "show_error", shown.append)
    attempts = []

    def unavailable() -> str:
        attempts.append(1)
        raise error

    assert backend.call(unavailable) is None
    assert len(attempts) == 1 and shown == [error]


def test_call_shows_other_errors_once(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[ServingError] = []
    monkeypatch.setattr(backend, "show_error", shown.append)
    attempts = []

    def invalid() -> str:
        attempts.append(1)
        raise ServingError(422, "invalid_image", "not an image")

    assert backend.call(invalid) is None
    assert len(attempts) == 1
    assert [e.detail for e in shown] == ["not an image"]


def _write_stay(path: Path, labels: list[int]) -> None:
    rows = ["HR|O2Sat|ICULOS|SepsisLabel"]
    rows += [f"{80 + i}|97|{i + 1}|{label}" for i, label in enumerate(labels)]
    path.write_text("\n".join(rows) + "\n")


def test_find_sepsis_demo_cases(tmp_path: Path) -> None:
    _write_stay(tmp_path / "p000001.psv", [0] * 30)
    _write_stay(tmp_path / "p000002.psv", [0] * 20 + [1] * 10)  # septic from hour 20
    _write_stay(tmp_path / "p000003.psv", [0] * 5 + [1] * 25)  # septic too early: no lead time
    _write_stay(tmp_path / "p000004.psv", [0] * 10)  # too short
    _write_stay(tmp_path / "p000005.psv", [0] * 40)
    cases = demo.find_sepsis_demo_cases(tmp_path, n_each=2)
    # by record, so that neither the titles nor their order tell the outcome
    assert [(c.record, c.septic, c.first_label_hour) for c in cases] == [
        ("p000001", False, None),
        ("p000002", True, 20),
        ("p000005", False, None),
    ]
    assert cases[1].title.endswith(", 30 h") and "sepsis" not in cases[1].title.lower()  # the picker is blind
    assert cases[1].outcome == "septic: SepsisLabel from hour 20"
    assert "no sepsis" in cases[0].outcome and "sepsis" not in cases[0].title.lower()
    with pytest.raises(FileNotFoundError):
        demo.find_sepsis_demo_cases(tmp_path / "absent")


def test_demo_radiograph_is_a_dicom() -> None:
    data = demo.demo_radiograph()
    assert data[128:132] == b"DICM"


#: The dashboard's scripts: they run at import (the entry point calls main(); each page draws itself), so they are
#: never imported by a test; what they import is.
SCRIPTS = [DASHBOARD / "app.py", *sorted((DASHBOARD / "views").glob("*.py"))]


def _import_statements(path: Path) -> list[str]:
    """Every import statement of ``path`` (``from __future__`` aside), as source."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.module != "__future__")
    ]


def test_dashboard_never_imports_ray_or_torch() -> None:
    """The dashboard talks to serving over HTTP only: no Ray (and no model runtime) in its process. A fresh
    interpreter imports every module of the dashboard package, and what the scripts import."""
    modules = [m.name for m in pkgutil.walk_packages(dashboard.__path__, "dashboard.") if m.name != "dashboard.app"]
    specs = [importlib.util.find_spec(name) for name in ["dashboard", *modules]]
    files = {Path(spec.origin) for spec in specs if spec is not None and spec.origin is not None}
    assert files | set(SCRIPTS) == set(DASHBOARD.rglob("*.py"))  # every file is a module or a script
    assert {"dashboard.case_review", "dashboard.charts.trust", "dashboard.navigation"} <= set(modules)
    statements = sorted({s for path in SCRIPTS for s in _import_statements(path)})
    assert "from models.catalogue import models_for" in statements and "import streamlit as st" in statements
    code = "\n".join(
        [
            "import importlib, sys",
            *(f"importlib.import_module({name!r})" for name in modules),
            *statements,
            "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120, cwd=DASHBOARD.parent
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_dashboard_has_no_side_doors() -> None:
    """Uploads are decoded and parsed by serving, metrics read from its answers: no page or chart reads
    files or computes metrics with the models' own code (page scripts included, which are not importable)."""
    files = sorted(DASHBOARD.rglob("*.py"))
    assert DASHBOARD / "views" / "xray.py" in files and DASHBOARD / "charts" / "common.py" in files
    for path in files:
        assert not _imports(path) & SIDE_DOORS, path
    assert not list(DASHBOARD.glob("*_page.py"))  # the page scripts in views/ are the pages


def test_the_api_token_goes_to_the_configured_serving_url_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL typed into the sidebar gets no token: otherwise anyone who can open the dashboard could send it to a
    host of their choosing (it went in the Authorization header of the health check)."""
    monkeypatch.setenv("MEDLENS_API_TOKEN", "s3cret")
    monkeypatch.setenv("MEDLENS_SERVING_URL", "http://serving.internal:8000/")
    assert backend.token_for("http://serving.internal:8000") == "s3cret"
    assert backend.token_for("http://serving.internal:8000/") == "s3cret"
    assert backend.token_for("https://attacker.example") is None
    assert backend.token_for("http://serving.internal:8001") is None
    monkeypatch.delenv("MEDLENS_API_TOKEN")
    assert backend.token_for("http://serving.internal:8000") is None


def test_a_signed_in_reader_is_named_with_the_account() -> None:
    """A display name is no identity (a reader can change it at the provider; two can share it): the account
    goes with it."""
    from dashboard.widgets import signed_in_reader

    ada = {"name": "Dr Ada Lovelace", "email": "ada@example.org", "sub": "1234"}
    assert signed_in_reader(ada) == "Dr Ada Lovelace (ada@example.org)"
    assert signed_in_reader({"name": "Dr Ada Lovelace", "sub": "1234"}) == "Dr Ada Lovelace (1234)"
    assert signed_in_reader({"email": "ada@example.org"}) == "ada@example.org"
    assert signed_in_reader({**ada, "name": "D" * 95}) == "ada@example.org"  # both would not fit a review
    assert signed_in_reader({"name": "Dr Ada Lovelace"}) == "Dr Ada Lovelace"


def test_free_text_is_shown_as_typed_not_as_markdown() -> None:
    """Streamlit renders st.table cells and captions as Markdown: a reader's comment or a DICOM value is escaped,
    so that an image link loads nothing and a link draws none, and reads back as typed."""
    from markdown_it import MarkdownIt

    from dashboard.charts.common import literal

    hostile = "![x](https://evil.example/p.png?c=1) [sign in](https://evil.example) :red[alarm] <b>bold</b> Dr. A_B"
    html = MarkdownIt("commonmark").render(literal(hostile))  # markdown-it-py: what rich, beside streamlit, uses
    assert "<img" not in html and "<a " not in html and "<b>" not in html
    assert html.strip() == "<p>" + hostile.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</p>"
    assert literal("line one\nline two") == "line one line two"


def test_uploads_are_batched_by_count_and_by_bytes() -> None:
    """Twenty 6 MiB DICOMs made one 120 MiB request, refused whole with 413: requests now stay under 64 MiB and
    20 files, each with the place of its first file (a refusal names "File 12" of the reader's selection)."""
    mib = 1024 * 1024
    big = [(f"f{i}.dcm", b"\0" * (6 * mib)) for i in range(20)]
    batches = backend.upload_batches(big)
    assert [start for start, _ in batches] == [0, 10]
    assert all(sum(len(d) for _, d in batch) <= backend.UPLOAD_BYTES_PER_REQUEST for _, batch in batches)
    small = [(f"s{i}.png", b"x") for i in range(45)]
    assert [(start, len(batch)) for start, batch in backend.upload_batches(small)] == [(0, 20), (20, 20), (40, 5)]
    huge = [("a.dcm", b"\0" * (70 * mib)), ("b.png", b"x")]
    assert [(start, len(batch)) for start, batch in backend.upload_batches(huge)] == [(0, 1), (1, 1)]
    assert backend.upload_batches([]) == []


def test_mortality_demo_stays_are_listed_by_record_not_by_outcome(tmp_path: Path) -> None:
    """The picker numbers the stays in RecordID order: alternating died / survived told each stay's outcome."""
    (tmp_path / "set-a").mkdir()
    deaths = {"132510": 1, "132511": 1, "132512": 0, "132513": 0}
    for record in deaths:
        (tmp_path / "set-a" / f"{record}.txt").write_text(f"Time,Parameter,Value\n00:00,RecordID,{record}\n")
    rows = "".join(f"{r},0,0,0,0,{d}\n" for r, d in deaths.items())
    (tmp_path / "Outcomes-a.txt").write_text("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n" + rows)
    listed = demo.find_mortality_demo_cases(tmp_path, n_each=2)
    assert [d.path.stem for d in listed] == sorted(deaths)
    assert [d.title for d in listed] == [f"demo stay {n}" for n in range(1, 5)]
    assert [d.died for d in listed] == [True, True, False, False]


def test_the_dashboard_sends_the_token_without_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    """dashboard/backend.py reads the token itself (for the configured serving URL alone)."""
    monkeypatch.setenv("MEDLENS_SERVING_URL", "http://serving.internal:8000")
    monkeypatch.setenv("MEDLENS_API_TOKEN", "s3cret\n")
    assert backend.token_for("http://serving.internal:8000") == "s3cret"
    monkeypatch.setenv("MEDLENS_API_TOKEN", " \n")
    assert backend.token_for("http://serving.internal:8000") is None
