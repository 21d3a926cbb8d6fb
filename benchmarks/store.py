"""Speed of the case store on SQLite and PostgreSQL, side by side in one run:

* write throughput: reviews/s with 8 readers writing at once (threads sharing one store, as the serving
  ingress does with its worker threads), 8 cases, 1,600 reviews;
* worklist latency with 10,000 cases and 20,000 reviews in the database: each filter, page of 200.

    .venv/bin/python -m benchmarks.store [--cases 10000] [--out docs/benchmarks-store.md]

PostgreSQL is a throw-away server (tests/postgres.py: Debian's postgresql, fsync off, on this machine);
SQLite is a file under test-artifacts/ in WAL mode with synchronous=NORMAL, as serving runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy
from sqlalchemy import insert

from models.backends import this_machine
from models.config import REPO_ROOT
from serving.schemas import ReviewIn, WorklistQuery
from serving.store import CaseStore, NewCase
from serving.store.tables import CaseRow, ReviewRow
from tests.postgres import postgres_bin, temporary_postgres

WORK = REPO_ROOT / "test-artifacts" / "bench-store"


def _case(n: int) -> NewCase:
    return NewCase(
        id=f"{n:064x}", kind="xray", model="cnn", model_version="bench", source_format="png", risk=0.5,
        label="PNEUMONIA", prediction={"model": "cnn", "version": "bench", "probability": 0.5, "label": "PNEUMONIA",
        "threshold": 0.5, "image_width": 1, "image_height": 1, "source_format": "png"},
    )  # fmt: skip


def write_throughput(store: CaseStore, readers: int = 8, per_reader: int = 200) -> float:
    ids = [store.add(_case(n))[0].id for n in range(1, 9)]
    barrier = threading.Barrier(readers + 1)

    def reader(k: int) -> None:
        barrier.wait()
        for i in range(per_reader):
            store.add_review(ids[(i + k) % 8], ReviewIn(reviewer=f"r{k}", verdict="agree" if i % 2 else "disagree"))

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(readers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return readers * per_reader / (time.perf_counter() - start)


def fill(store: CaseStore, n_cases: int) -> None:
    """``n_cases`` cases and three reviews for each of two-thirds of them, inserted in bulk."""
    now = datetime.now(UTC)
    cases = [
        {
            "id": f"{n + 1000:064x}", "kind": "xray" if n % 3 else "sepsis", "model": "cnn", "model_version": "bench",
            "created_at": now - timedelta(seconds=n), "source_format": "png", "risk": (n * 7919 % 1000) / 1000,
            "label": "PNEUMONIA", "in_distribution": None if n % 50 else False, "uncertain": n % 17 == 0,
            "synthetic": False, "prediction": json.dumps(_case(n).prediction), "image_png": b"\x89PNG" + bytes(20_000),
        }
        for n in range(n_cases)
    ]  # fmt: skip
    reviews = [
        {
            "case_id": c["id"], "action": "review", "reviewer": f"r{k}", "created_at": now, "model": "cnn",
            "model_version": "bench", "verdict": "agree" if (i + k) % 4 else "disagree", "label": None, "comment": None,
        }
        for i, c in enumerate(cases) if i % 3 for k in range(3)
    ]  # fmt: skip
    with store.engine.begin() as conn:
        for start in range(0, len(cases), 1000):
            conn.execute(insert(CaseRow), cases[start : start + 1000])
        for start in range(0, len(reviews), 5000):
            conn.execute(insert(ReviewRow), reviews[start : start + 5000])


def latency_ms(call: Callable[[], object], repeat: int = 30) -> tuple[float, float]:
    call()  # warm
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]


def bench(url: str, n_cases: int) -> dict[str, object]:
    store = CaseStore(url)
    try:
        store.ready()
        result: dict[str, object] = {"writes_per_s": write_throughput(store)}
        fill(store, n_cases)
        some_case = f"{1000 + 3 * 7 + 1:064x}"
        result["worklist"] = {
            name: latency_ms(call)
            for name, call in {
                "worklist status=all, 200 of all": lambda: store.worklist(
                    WorklistQuery(status="all", limit=200, offset=0)
                ),
                "worklist status=unreviewed": lambda: store.worklist(
                    WorklistQuery(status="unreviewed", limit=200, offset=0)
                ),
                "worklist status=disagreed, kind=xray": lambda: store.worklist(
                    WorklistQuery(status="disagreed", kind="xray", limit=200, offset=0)
                ),
                "worklist status=all, page 40 (offset 8,000)": lambda: store.worklist(
                    WorklistQuery(status="all", limit=200, offset=8000)
                ),
                "one case with its history and image": lambda: store.get(some_case),
            }.items()
        }
        return result
    finally:
        store.close()


def _pg_version() -> str:
    bindir = postgres_bin()
    return bindir.parent.name if bindir is not None else "not installed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-store.md"))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, object]] = {}
    sqlite_file = WORK / f"bench-{uuid.uuid4().hex[:8]}.db"
    results["SQLite (WAL)"] = bench(f"sqlite:///{sqlite_file}", args.cases)
    for f in WORK.glob(sqlite_file.name + "*"):
        f.unlink()
    if postgres_bin() is not None:
        with temporary_postgres(WORK / "postgres") as url:
            results["PostgreSQL"] = bench(url, args.cases)
    names = list(results)
    lines = [
        "# Case store speed (SQLite and PostgreSQL, side by side)",
        "",
        f"Command: `.venv/bin/python -m benchmarks.store --cases {args.cases}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Machine: **{this_machine().describe()}**, {os.cpu_count()} logical CPUs; "
        f"SQLAlchemy {sqlalchemy.__version__}, PostgreSQL {_pg_version()}.",
        "",
        "Writes: 8 readers at once (threads sharing one store, as serving's ingress does), 1,600 reviews over 8 "
        "cases; each review is its own transaction. Reads: "
        f"{args.cases:,} cases (20 KB image each) and {2 * args.cases:,} reviews in the database; median and p95 "
        "of 30 calls after one warm-up, in the store (serving adds HTTP and JSON on top). SQLite: a file in WAL "
        "mode, synchronous=NORMAL, as serving runs it; PostgreSQL: a throw-away local server with fsync off "
        "(tests/postgres.py), so its writes are faster here than on a durable server.",
        "",
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| reviews written per second, 8 concurrent readers | "
        + " | ".join(f"{results[n]['writes_per_s']:.0f}" for n in names)
        + " |",
    ]
    first = results[names[0]]["worklist"]
    assert isinstance(first, dict)
    for what in first:
        cells = []
        for n in names:
            worklist = results[n]["worklist"]
            assert isinstance(worklist, dict)
            p50, p95 = worklist[what]
            cells.append(f"{p50:.1f} / {p95:.1f} ms")
        lines.append(f"| {what} (median / p95) | " + " | ".join(cells) + " |")
    if postgres_bin() is None:
        lines += ["", "PostgreSQL is not installed here (scripts/setup.sh test installs it): its column is missing."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
