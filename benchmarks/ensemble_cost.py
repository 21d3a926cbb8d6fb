"""Served cost of the CNN deep ensemble: one network against the ensemble, side by side (issue 20).

    .venv/bin/python -m benchmarks.ensemble_cost --single runs/cnn_ens/m0 [--ensemble models/weights/cnn]
        [--rounds 2] [--clients 32] [--seconds 20] [--warmup 10]

Each checkpoint is served as ``serve run ray_config.yaml`` with serving/fast_path.env (HAProxy in front, the
committed deployment options, ``auto`` execution path) and everything on (calibration, conformal sets, OOD
score); the other models are the committed ones. wrk drives ``POST /v1/xray/predict`` in a closed loop with
``--clients`` keep-alive connections over the same 32 real radiographs. Rounds alternate single, ensemble,
single, ... so a machine that slows down slows both. Prints a table (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx

from benchmarks.serving_peers import Server, inputs, start, stop, wrk_closed_loop
from models.backends import this_machine
from models.catalogue import GENERATOR_NAMES, MODEL_NAMES
from models.config import REPO_ROOT
from serving._settings import WEIGHTS_DIR_ENV, fast_path_env

#: every checkpoint serving's config builds (its weights check refuses a folder without one of them)
MODELS = (*MODEL_NAMES, *GENERATOR_NAMES)


def weights_dir(name: str, cnn: Path) -> Path:
    """A weights directory (``$MEDLENS_WEIGHTS_DIR`` layout) with ``cnn`` and every other committed checkpoint."""
    root = REPO_ROOT / ".run" / f"bench-weights-{name}"
    root.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        link = root / model
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to((cnn if model == "cnn" else REPO_ROOT / "models" / "weights" / model).resolve())
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensemble_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=Path, required=True, help="a calibrated one-network CNN checkpoint")
    parser.add_argument("--ensemble", type=Path, default=REPO_ROOT / "models" / "weights" / "cnn")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    payloads = inputs(sepsis=False)
    servers = {
        name: Server(
            name,
            [str(Path(".venv/bin/serve")), "run", "ray_config.yaml"],
            8000,
            "/v1/xray/predict",
            {},
            {**fast_path_env(), WEIGHTS_DIR_ENV: str(weights_dir(name, path))},
        )
        for name, path in (("single", args.single), ("ensemble", args.ensemble))
    }
    results: dict[str, list[tuple[float, float, float, int, str]]] = {name: [] for name in servers}
    for r in range(args.rounds):
        for name, server in servers.items():
            proc, _ = start(server, "/healthz")
            try:
                info = httpx.get("http://127.0.0.1:8000/v1/models", timeout=10).json()
                cnn = next(m for m in info["models"] if m["name"] == "cnn")
                path = f"{cnn['backend']} ({cnn['precision']}), {cnn['version']}"
                res = wrk_closed_loop(
                    "http://127.0.0.1:8000/v1/xray/predict", {}, payloads, args.clients, args.seconds, args.warmup
                )
            finally:
                stop(proc)
            results[name].append((res.throughput, res.pct(50), res.pct(99), res.errors, path))
            print(
                f"round {r + 1} {name:8s} {res.throughput:7.1f} img/s  p50 {res.pct(50):6.0f} ms  "
                f"p99 {res.pct(99):6.0f} ms  errors {res.errors}  ({path})",
                flush=True,
            )
    single = statistics.median(x[0] for x in results["single"])
    lines = [
        f"Command: `.venv/bin/python -m benchmarks.ensemble_cost --single {args.single} --ensemble {args.ensemble} "
        f"--rounds {args.rounds} --clients {args.clients} --seconds {args.seconds:g} --warmup {args.warmup:g}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {this_machine().describe()}.",
        "",
        "| CNN served | images/s (each round) | median | x one network | p50 ms (median) | p99 ms (median) | errors "
        "| execution path |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        med = statistics.median(x[0] for x in rows)
        lines.append(
            f"| {name} | {', '.join(f'{x[0]:.1f}' for x in rows)} | **{med:.1f}** | {med / single:.2f} | "
            f"{statistics.median(x[1] for x in rows):.0f} | {statistics.median(x[2] for x in rows):.0f} | "
            f"{sum(x[3] for x in rows)} | {rows[0][4]} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
