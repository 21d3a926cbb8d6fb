"""Serving benchmark against the peers: one run, one machine, one model, one pre-processing.

    .venv/bin/python -m benchmarks.serving_peers            # chest X-ray CNN, 1/8/32 clients
    .venv/bin/python -m benchmarks.serving_peers --sepsis   # sepsis LSTM, 32 clients

Measures, for the same real inputs and the same models.* pre-processing and model code:
  ceiling   in-process, no HTTP: decode + pre-process + batched forward at each batch size
            (the best one is the ceiling), with the same total torch threads as the servers
  plain     FastAPI + uvicorn, one model call per request (what a user writes by hand)
  litserve  LitServe with dynamic batching
  medlens   MedLens's Ray Serve applications (`serve run ray_config.yaml` with serving/fast_path.env,
            as `make run` starts it: HAProxy in front, each model application its own ingress)
with N closed-loop clients (each sends, waits for the answer, sends again) for a fixed time,
and appends a table (throughput, p50/p99, errors, ratio to the ceiling, memory, start-up) to
docs/benchmarks.md. Targets 127.0.0.1 only.

This machine's speed drifts within minutes by more than the margins measured, so besides the ceiling
of the batch-size sweep each server gets ``--rounds`` paired rounds at the most clients: the thawed
server under load between two measurements of the ceiling with the server's whole process session
frozen (SIGSTOP: its idle processes take no CPU), each for the same time. The ratio of each round
divides the server's throughput by the mean of the ceilings just before and just after it.

The clients are wrk (Debian package `wrk`, C, one keep-alive connection per client, installed by
`scripts/setup.sh test`) when it is on PATH, else Python httpx (`--client httpx`). They share the
server's cores: httpx spends ~1.9 ms of CPU per request (35 % of a core at 186 req/s), wrk ~0.05 ms,
so with httpx every server's throughput is capped well below the ceiling by the client itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
import torch
import yaml

from benchmarks.processes import ProcessGroup, memory_table, process_count, process_memory
from models.backends import this_machine
from models.config import data_paths
from serving._settings import fast_path_env

ROOT = Path(__file__).resolve().parents[1]
PY = str(Path(sys.executable))
BIN = Path(sys.executable).parent


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    path: str
    params: dict[str, str]
    env: dict[str, str]


@dataclass
class LoadResult:
    clients: int
    requests: int  # completed in the measured window, errors included
    errors: int
    seconds: float
    latencies_ms: list[float]
    percentiles_ms: dict[float, float] = field(default_factory=dict)  # from wrk, which keeps no raw latencies

    @property
    def throughput(self) -> float:
        """Successful responses (HTTP 200) per second: errors are not throughput."""
        return (self.requests - self.errors) / self.seconds

    def pct(self, q: float) -> float:
        if q in self.percentiles_ms:
            return self.percentiles_ms[q]
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def inputs(sepsis: bool, n: int = 32) -> list[tuple[str, bytes]]:
    if sepsis:
        files = sorted(data_paths().sepsis_training.glob("*.psv"))
        picked = [p for p in files if 40 <= p.read_bytes().count(b"\n") - 1 <= 80][:n]
        return [(p.name, p.read_bytes()) for p in picked]
    out = []
    for cls in ("NORMAL", "PNEUMONIA"):
        out += [(p.name, p.read_bytes()) for p in sorted((data_paths().xray_train / cls).iterdir())[: n // 2]]
    return out


def bench_backend(sepsis: bool, threads: int) -> str:
    """The execution path ``auto`` chooses on this machine for the benchmarked model at ``threads`` threads:
    the ceiling and every server then run that same path, so the comparison is between servers."""
    from models.inference import load_predictor

    torch.set_num_threads(threads)
    return load_predictor("lstm" if sepsis else "cnn", device="cpu").execution.backend


def medlens_config(config: str, model: str, backend: str) -> Path:
    """``config`` with ``args.backends`` set to ``backend`` for ``model`` in every application."""
    data = yaml.safe_load((ROOT / config).read_text())
    for app in data["applications"]:
        app.setdefault("args", {})["backends"] = {model: backend}
    out = ROOT / ".run" / "bench_config.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def ceiling(
    sepsis: bool,
    payloads: list[tuple[str, bytes]],
    threads: int,
    seconds: float,
    sizes: tuple[int, ...] = (1, 4, 8, 16, 32),
    backend: str = "auto",
) -> dict[int, float]:
    """Requests/s in-process at each batch size: decode + pre-process + forward, no HTTP."""
    from models.inference import SepsisPredictor, XrayPredictor
    from models.sepsis_io import parse_series_bytes
    from models.xray_io import load_xray_bytes

    torch.set_num_threads(threads)
    results: dict[int, float] = {}
    if sepsis:
        seq = SepsisPredictor("lstm", device="cpu", backend=backend)  # type: ignore[arg-type]

        def run(batch: list[bytes]) -> None:
            seq.predict([parse_series_bytes(b, "x.psv").values for b in batch])
    else:
        cnn = XrayPredictor(device="cpu", backend=backend)  # type: ignore[arg-type]

        def run(batch: list[bytes]) -> None:
            cnn.predict([load_xray_bytes(b, "x").pixels for b in batch])

    data = [b for _, b in payloads]
    for bs in sizes:
        batch = [data[i % len(data)] for i in range(bs)]
        warm = time.perf_counter()  # time-based warm-up: one call per shape was not enough
        while time.perf_counter() - warm < 1.0:
            run(batch)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            run(batch)
            done += bs
        results[bs] = done / (time.perf_counter() - start)
    return results


async def closed_loop(
    url: str, params: dict[str, str], payloads: list[tuple[str, bytes]], clients: int, seconds: float, warmup: float
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    count = 0
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        t_start = time.perf_counter()
        t_measure = t_start + warmup
        t_end = t_measure + seconds

        async def worker(i: int) -> None:
            nonlocal errors, count
            k = i
            while True:
                now = time.perf_counter()
                if now >= t_end:
                    return
                name, data = payloads[k % len(payloads)]
                k += clients
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, params=params, files={"file": (name, data)})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= t_measure and t1 <= t_end:
                    count += 1
                    latencies.append((t1 - t0) * 1000)
                    errors += 0 if ok else 1

        await asyncio.gather(*(worker(i) for i in range(clients)))
    return LoadResult(clients, count, errors, seconds, latencies)


CLIENT_NOTE = {"wrk": "C, one keep-alive connection per client", "httpx": "Python asyncio"}

_WRK_LUA = """
local bodies = {}
for i, path in ipairs({%(files)s}) do local f = io.open(path, "rb"); bodies[i] = f:read("*all"); f:close() end
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=%(boundary)s"
request = function() n = n + 1; return wrk.format(nil, nil, nil, bodies[(n %% #bodies) + 1]) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %%d %%d %%d %%.3f %%.3f\\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk_closed_loop(
    url: str, params: dict[str, str], payloads: list[tuple[str, bytes]], clients: int, seconds: float, warmup: float
) -> LoadResult:
    """The same closed loop with wrk: ``clients`` keep-alive connections, each sending the next multipart
    upload (the same payloads, in turn) when the previous answer arrives. Non-2xx answers, timeouts and
    socket errors are errors."""
    boundary = "medlens-bench-boundary"
    full = f"{url}?{urlencode(params)}" if params else url
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (name, data) in enumerate(payloads):
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'
            path = Path(tmp) / f"body{i}.bin"
            path.write_bytes(head.encode() + data + f"\r\n--{boundary}--\r\n".encode())
            files.append(f'"{path}"')
        script = Path(tmp) / "post.lua"
        script.write_text(_WRK_LUA % {"files": ", ".join(files), "boundary": boundary})
        base = ["wrk", "-t1", f"-c{clients}", "--timeout", "60s", "-s", str(script)]
        if warmup > 0:
            subprocess.run([*base, f"-d{max(1, round(warmup))}s", full], capture_output=True, check=True)
        out = subprocess.run([*base, f"-d{max(1, round(seconds))}s", full], capture_output=True, text=True, check=True)
    m = re.search(r"WRK (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out.stdout)
    if m is None:
        raise SystemExit(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    requests, errors, duration_us = int(m[1]), int(m[2]), int(m[3])
    return LoadResult(clients, requests, errors, duration_us / 1e6, [], {50: float(m[4]), 99: float(m[5])})


def port_free(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
        return False
    except httpx.HTTPError:
        return True


def start(server: Server, health: str, timeout: float = 240.0) -> tuple[subprocess.Popen[bytes], float]:
    if not port_free(server.port):
        raise SystemExit(f"port {server.port} is busy: stop whatever listens there first")
    log = open(ROOT / ".run" / f"bench-{server.name}.log", "wb")  # noqa: SIM115
    env = {**os.environ, **server.env}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        server.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{server.name} exited; see .run/bench-{server.name}.log")
        try:
            if httpx.get(f"http://127.0.0.1:{server.port}{health}", timeout=2.0).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise SystemExit(f"{server.name} did not become healthy in {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server's whole process session (it was started with setsid): Ray workers and the
    HAProxy they spawn sit in other process groups of that session, so killpg would orphan them."""
    for sig in ("TERM", "KILL"):
        subprocess.run(["pkill", f"-{sig}", "-s", str(proc.pid)], check=False)
        deadline = time.monotonic() + 20
        while process_count(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not process_count(proc.pid):
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    time.sleep(1)


def _median(xs: list[float]) -> float:
    """The middle value (the upper one of an even count): paired rounds are odd in number by default."""
    return sorted(xs)[len(xs) // 2]


def signal_session(session: int, sig: str) -> None:
    """Send ``sig`` (STOP / CONT) to every process of a server's session (Ray workers, HAProxy included)."""
    subprocess.run(["pkill", f"-{sig}", "-s", str(session)], check=False)


@dataclass
class PairedRound:
    before: float  # in-process req/s at the best batch size, the server's processes frozen, right before
    server: LoadResult  # the server, thawed, at the most clients
    after: float  # the same ceiling right after (the next round's ``before``)

    @property
    def ceiling(self) -> float:
        """The ceiling bracketing the server's window: a drift that is steady over one round cancels."""
        return (self.before + self.after) / 2

    @property
    def ratio(self) -> float:
        return self.server.throughput / self.ceiling


def paired_rounds(
    proc: subprocess.Popen[bytes], measure_ceiling: Callable[[], float], load: Callable[[], LoadResult], rounds: int
) -> list[PairedRound]:
    """Ceiling and server alternate, ``rounds`` server windows each bracketed by a ceiling before and after
    (rounds + 1 ceilings in all), so that the machine's drift (a 10 s ceiling ranged 207-343 img/s within
    minutes here) is shared by the figures of each round. While a ceiling runs, the server's whole process
    session is frozen (SIGSTOP): its idle processes take no CPU from the ceiling, and it answers no request.
    It is thawed (SIGCONT) and warmed up again before its load."""

    def frozen_ceiling() -> float:
        signal_session(proc.pid, "STOP")
        try:
            return measure_ceiling()
        finally:
            signal_session(proc.pid, "CONT")

    out: list[PairedRound] = []
    before = frozen_ceiling()
    for _ in range(rounds):
        result = load()
        after = frozen_ceiling()
        out.append(PairedRound(before, result, after))
        before = after
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sepsis", action="store_true", help="sepsis LSTM instead of the chest X-ray CNN")
    parser.add_argument("--clients", type=int, nargs="+", default=None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in total per server")
    parser.add_argument("--servers", nargs="+", default=["plain", "litserve", "medlens"])
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="paired rounds per server at the most clients: each server window between two ceilings measured "
        "with the server frozen (0: none)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator (default: wrk when installed; httpx costs the server ~35%% of a core)",
    )
    parser.add_argument(
        "--config", default="ray_config.yaml", help="MedLens Serve config (the headline uses the default)"
    )
    args = parser.parse_args()
    clients = args.clients or ([32] if args.sepsis else [1, 8, 32])
    (ROOT / ".run").mkdir(exist_ok=True)
    payloads = inputs(args.sepsis)
    backend = bench_backend(args.sepsis, args.threads)
    machine = this_machine()
    print(f"every server and the ceiling run {backend} ({machine.describe()})", flush=True)
    thr = {"MEDLENS_BENCH_THREADS": str(args.threads), "MEDLENS_BENCH_BACKEND": backend}
    config = medlens_config(args.config, "lstm" if args.sepsis else "cnn", backend)
    path = "/predict_sepsis" if args.sepsis else "/predict"
    servers = {
        "plain": Server(
            "plain",
            [str(BIN / "uvicorn"), "benchmarks.peers.plain_fastapi:app", "--port", "8101", "--log-level", "warning"],
            8101, path, {"model": "lstm"} if args.sepsis else {}, thr,
        ),
        "litserve": Server(
            "litserve",
            [PY, "-m", "benchmarks.peers.litserve_server", "--port", "8102", *(["--sepsis"] if args.sepsis else [])],
            8102, path, {}, thr,
        ),
        "medlens": Server(
            "medlens", [str(BIN / "serve"), "run", str(config)], 8000,
            "/v1/sepsis/lstm/predict" if args.sepsis else "/v1/xray/predict", {}, fast_path_env(),
        ),
    }  # fmt: skip

    print("ceiling (in-process) ...", flush=True)
    ceil = ceiling(args.sepsis, payloads, args.threads, seconds=max(3.0, args.seconds / 4), backend=backend)
    best_bs = max(ceil, key=lambda k: ceil[k])
    best = ceil[best_bs]
    print(f"  ceiling {best:.1f} req/s at batch {best_bs} ({ceil})", flush=True)
    rows: list[tuple[str, LoadResult, float, float, int]] = []
    # This machine's speed drifts by more than the margins measured (a 10 s ceiling ranged 220-296 img/s
    # over 150 s): the ceiling at the best batch size is measured again right before each server starts
    # and right after it stops, and each server's ratio is also given against the mean of those two.
    # Paired rounds (--rounds) go further: ceiling and server alternate while the server runs, frozen.
    adjacent: dict[str, tuple[float, float]] = {}
    paired: dict[str, list[PairedRound]] = {}
    memory: dict[str, list[ProcessGroup]] = {}  # per process kind, right after the step at the most clients

    def again() -> float:
        return ceiling(args.sepsis, payloads, args.threads, args.seconds / 2, (best_bs,), backend)[best_bs]

    def load(url: str, server: Server, n: int, seconds: float, warmup: float) -> LoadResult:
        if args.client == "wrk":
            return wrk_closed_loop(url, server.params, payloads, n, seconds, warmup)
        return asyncio.run(closed_loop(url, server.params, payloads, n, seconds, warmup))

    for name in args.servers:
        server = servers[name]
        before = again()
        proc, startup = start(server, "/healthz")
        try:
            url = f"http://127.0.0.1:{server.port}{server.path}"
            for n in clients:
                result = load(url, server, n, args.seconds, args.warmup)
                groups = process_memory(proc.pid)  # one `ps`: the totals and, at the most clients, the table
                if n == max(clients):
                    memory[name] = groups
                mem = sum(g.rss_mb for g in groups)
                rows.append((name, result, startup, mem, sum(g.count for g in groups)))
                print(
                    f"  {name:9s} {n:3d} clients: {result.throughput:7.1f} req/s  p50 {result.pct(50):7.1f} ms  "
                    f"p99 {result.pct(99):7.1f} ms  errors {result.errors}  rss {mem:.0f} MB",
                    flush=True,
                )
            if args.rounds > 0:
                n = max(clients)
                paired[name] = paired_rounds(
                    proc,
                    again,
                    functools.partial(load, url, server, n, args.seconds / 2, 3.0),
                    args.rounds,
                )
                for pr in paired[name]:
                    print(
                        f"  paired {name}: ceiling {pr.before:.1f} / {pr.after:.1f}, {pr.server.throughput:.1f} req/s "
                        f"(ratio {pr.ratio:.2f}), p99 {pr.server.pct(99):.1f} ms, errors {pr.server.errors}",
                        flush=True,
                    )
        finally:
            stop(proc)
        adjacent[name] = (before, again())
        print(f"  ceiling before / after {name}: {adjacent[name][0]:.1f} / {adjacent[name][1]:.1f} req/s", flush=True)

    what = "sepsis LSTM, PhysioNet records of 40-80 hours" if args.sepsis else "chest X-ray CNN, real 224x224 JPEGs"
    lines = [
        f"\n## {what} — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n",
        f"Command: `{' '.join(['.venv/bin/python -m benchmarks.serving_peers', *sys.argv[1:]])}`; "
        f"MedLens config `{args.config}`; "
        f"machine: {machine.describe()}, {os.cpu_count()} cores, torch threads per server {args.threads}; "
        f"every server and the ceiling predict on **{backend}** (what `auto` chooses here, models/backends.py); "
        f"{args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up per step; "
        f"load generator {args.client} ({CLIENT_NOTE[args.client]}, on the same cores).\n",
        "In-process ceiling (decode + pre-process + forward, no HTTP): "
        + ", ".join(f"batch {k}: {v:.1f}/s" for k, v in ceil.items())
        + f" -> **{best:.1f} req/s** (batch {best_bs}).\n",
        "Ceiling at that batch size measured again right before each server started and right after it "
        "stopped: "
        + "; ".join(f"{name} {b:.1f} / {a:.1f}" for name, (b, a) in adjacent.items())
        + " req/s. `/ adjacent` divides by the mean of that server's two.\n",
        "req/s counts successful (HTTP 200) responses only; p50/p99 are over all completed requests.\n",
        "| server | clients | req/s | p50 ms | p99 ms | errors | / ceiling | / adjacent | memory MB (all processes) "
        "| processes | start-up s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def near(name: str) -> float:
        return sum(adjacent[name]) / 2

    for name, r, startup, mem, procs in rows:
        lines.append(
            f"| {name} | {r.clients} | {r.throughput:.1f} | {r.pct(50):.1f} | {r.pct(99):.1f} | {r.errors} | "
            f"{r.throughput / best:.2f} | {r.throughput / near(name):.2f} | {mem:.0f} | {procs} | {startup:.1f} |"
        )
    if memory:
        lines += memory_table(memory, max(clients))
    if paired:
        lines += [
            f"\nPaired rounds at {max(clients)} clients ({args.rounds} per server): the server, thawed, after 3 s "
            f"of warm-up, between two measurements of the ceiling at batch {best_bs} with the server's processes "
            "frozen (SIGSTOP) for the same time; each ratio divides the server's throughput by the mean of the "
            "ceilings before and after it (the after of one round is the before of the next).\n",
            "| server | round | ceiling before / after req/s | server req/s | ratio | p99 ms | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, rounds in paired.items():
            for i, pr in enumerate(rounds, 1):
                lines.append(
                    f"| {name} | {i} | {pr.before:.1f} / {pr.after:.1f} | {pr.server.throughput:.1f} | "
                    f"{pr.ratio:.2f} | {pr.server.pct(99):.1f} | {pr.server.errors} |"
                )
            lines.append(f"| {name} | **median** | | | **{_median([pr.ratio for pr in rounds]):.2f}** | | |")
    by = {(name, r.clients): r for name, r, *_ in rows}
    n = max(clients)
    if ("medlens", n) in by:
        peers = [by[(p, n)] for p in ("plain", "litserve") if (p, n) in by]
        med = by[("medlens", n)]
        if peers:
            better = max(peers, key=lambda r: r.throughput)
            lines.append(
                f"\nAt {n} clients MedLens reaches {med.throughput / best:.2f} of the ceiling "
                f"({med.throughput / near('medlens'):.2f} of the ceiling measured beside it), "
                f"{med.throughput / better.throughput:.2f} of the better peer's throughput, and its p99 is "
                f"{med.pct(99) / better.pct(99):.2f}x the better peer's.\n"
            )
    if "medlens" in paired:
        med_rounds = paired["medlens"]
        ratios = sorted(pr.ratio for pr in med_rounds)
        errors = sum(pr.server.errors for pr in med_rounds)
        lines.append(
            f"In the paired rounds MedLens reaches {', '.join(f'{x:.2f}' for x in ratios)} of the ceiling "
            f"(median {_median(ratios):.2f}) with {errors} errors."
        )
        peers_paired = {p: rounds for p, rounds in paired.items() if p != "medlens"}
        if peers_paired:
            # Servers run one after another, minutes apart: their throughputs are compared through their
            # ratios to the ceiling measured beside them, which carry no drift between servers.
            best_peer = max(peers_paired, key=lambda p: _median([pr.ratio for pr in peers_paired[p]]))
            peer_ratio = _median([pr.ratio for pr in peers_paired[best_peer]])
            p99_med = _median([pr.server.pct(99) for pr in med_rounds])
            p99_peer = _median([pr.server.pct(99) for pr in peers_paired[best_peer]])
            lines.append(
                f"Against the better peer in the same rounds ({best_peer}, median {peer_ratio:.2f} of its ceiling): "
                f"{_median(ratios) / peer_ratio:.2f}x its throughput, drift removed through the ratios; "
                f"median p99 {p99_med:.1f} ms against {p99_peer:.1f} ms ({p99_med / p99_peer:.2f}x).\n"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.out.exists():
        args.out.write_text("# Serving benchmarks\n\nEach section is one run of `benchmarks/serving_peers.py`.\n")
    with args.out.open("a") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
