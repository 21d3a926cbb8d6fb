"""In-process prediction speed of every execution path of every catalogue model, side by side (no HTTP).

    .venv/bin/python -m benchmarks.models_speed [--threads 1] [--repeat 10] [--out docs/benchmarks-models.md]

For each model: every candidate path of models/backends.py (torch fp32, channels_last, bf16 autocast where
bf16 is native, ONNX Runtime), each timed on the same real inputs in one run (radiographs from the
training folder; 72-hour ICU records), with its agreement with torch fp32 on those inputs (labels at the
model's threshold, largest probability difference), and the path ``auto`` chooses (freshly measured: the
cache is bypassed). Prints a Markdown table with the CPU model and flags and writes it to ``--out``.
Compare ratios within one run: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.backends import (
    ExecutionPath,
    Machine,
    build_runner,
    candidates,
    onnxruntime_version,
    this_machine,
    time_runner,
)
from models.cards import SpeedRow, SpeedTable, read_card, write_card
from models.catalogue import CATALOGUE
from models.cnn import to_tensor
from models.config import data_paths
from models.inference import Predictor, SepsisPredictor, XrayPredictor
from models.sepsis_io import load_series_file
from models.sequence import engineer, pad_batch
from models.xray_io import labelled_images, load_xray_file

DEFAULT_OUT = Path("docs/benchmarks-models.md")
#: Environment that changes which kernels run; shown in the command line of the table when set.
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")

Row = tuple[str, str, dict[int, float], float, float, str]  # model, path, items/s per batch, label agr., diff, note


def _inputs(predictor: Predictor, batch: int) -> tuple[torch.Tensor, ...]:
    """Real inputs: radiographs of the training folder, or 72-hour records of the sepsis stays."""
    if isinstance(predictor, XrayPredictor):
        items = labelled_images(data_paths().xray_train)[::97][:batch]
        return (to_tensor([load_xray_file(p).pixels for p, _ in items], predictor.config),)
    assert isinstance(predictor, SepsisPredictor)
    records = []
    for path in sorted(data_paths().sepsis_training.glob("*.psv")):
        record = load_series_file(path)
        if record.hours >= 72:
            records.append(engineer(record.values[:72], predictor.stats))
        if len(records) == batch:
            break
    return pad_batch(records)


def bench_model(name: str, threads: int, budget_s: float, machine: Machine) -> tuple[list[Row], str]:
    predictor = CATALOGUE[name].load(device="cpu", backend="torch-fp32")
    spec = predictor.spec()
    device = torch.device("cpu")
    batches = (1, 16, 32) if isinstance(predictor, SepsisPredictor) else (1, 16)
    agreement_inputs = _inputs(predictor, 64 if isinstance(predictor, XrayPredictor) else 32)
    valid = spec.valid(agreement_inputs)
    rows: list[Row] = []
    reference: np.ndarray | None = None
    paths = [(path, "") for path in candidates(spec, device, machine, onnxruntime_version() is not None)]
    if not machine.bf16_native:  # not a candidate here; measured to show what forcing it costs
        paths.append((ExecutionPath("torch-bf16", "channels_last" if spec.image else ""), "emulated bf16"))
    for path, label in paths:
        try:
            run = build_runner(spec, path, device, threads)
        except Exception as exc:
            rows.append((name, path.name, {}, float("nan"), float("nan"), f"cannot run: {type(exc).__name__}"))
            continue
        probs = 1.0 / (1.0 + np.exp(-spec.logits(run(*agreement_inputs))[valid].astype(np.float64)))
        if reference is None:
            reference = probs
        same = float(np.mean((probs >= spec.threshold) == (reference >= spec.threshold)))
        speed = {b: b / time_runner(run, _inputs(predictor, b), budget_s) for b in batches}
        rows.append((name, path.name, speed, same, float(np.max(np.abs(probs - reference))), label))
    with tempfile.TemporaryDirectory() as cache:  # `auto` as a fresh replica would choose it here
        os.environ["MEDLENS_CACHE_DIR"] = cache
        chosen = CATALOGUE[name].load(device="cpu", backend="auto").execution
    return rows, ExecutionPath(chosen.backend, chosen.variant).name


def _env_prefix() -> str:
    return "".join(f"{k}={os.environ[k]} " for k in KERNEL_ENV if os.environ.get(k))


def _write_card(name: str, rows: list[Row], chosen: str, machine: Machine, threads: int) -> None:
    directory = CATALOGUE[name].default_weights
    card = read_card(directory)
    card.speed = SpeedTable(
        machine=machine.describe(),
        threads=threads,
        measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        command=f"python -m benchmarks.models_speed --threads {threads} --cards",
        rows=[
            SpeedRow(path=path, items_per_s=speed, labels_equal_fp32=same, max_prob_diff=diff, chosen=path == chosen)
            for _, path, speed, same, diff, note in rows
            if speed and not note
        ],
    )
    write_card(directory, card)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads (a replica uses 1)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per path and batch size")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--cards", action="store_true", help="also write each model's table into its committed card (card.json/md)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = this_machine()
    lines = [
        "# Model prediction speed, every execution path (in-process)",
        "",
        f"Command: `{_env_prefix()}.venv/bin/python -m benchmarks.models_speed --threads {args.threads}"
        f"{'' if args.out == DEFAULT_OUT else f' --out {args.out}'}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Machine: **{machine.cpu}**; flags: {', '.join(machine.flags) or 'none of the AVX2 / AVX-512 / AMX ones'}"
        + (f" (oneDNN limited to {machine.isa_limit} by ONEDNN_MAX_CPU_ISA)" if machine.isa_limit else "")
        + "; "
        f"bf16 native: {'yes' if machine.bf16_native else 'no'}; {args.threads} thread(s); torch {torch.__version__}, "
        f"ONNX Runtime {onnxruntime_version() or 'not installed'}.",
        "",
        *(
            [
                f"{machine.isa_limit} is a stand-in for a CPU that lacks the newer instructions: torch's oneDNN "
                "kernels (convolutions, matmuls, bf16) are limited to it, and ATen's own by ATEN_CPU_CAPABILITY "
                "where set; ONNX Runtime's kernels choose by CPUID and still use every instruction the CPU has, so "
                "its rows are faster here than on a real CPU of that kind.",
                "",
            ]
            if machine.isa_limit
            else []
        ),
        "Agreement: share of real inputs (64 radiographs; every hour of 32 records) whose label at the model's "
        "threshold equals torch fp32's, and the largest probability difference.",
        "",
        "| model | path | items/s by batch size | x torch fp32 (largest batch) | labels = fp32 | max prob diff "
        "| `auto` |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in CATALOGUE:
        rows, chosen = bench_model(name, args.threads, args.budget, machine)
        if args.cards:
            _write_card(name, rows, chosen, machine, args.threads)
        base = rows[0][2]
        for model, path, speed, same, diff, note in rows:
            top = max(speed) if speed else None
            ratio = f"{speed[top] / base[top]:.2f}" if top and base.get(top) else "-"
            cells = ", ".join(f"{b}: {v:.0f}" for b, v in speed.items()) or note
            mark = (
                "**chosen**" if path == chosen and not note else (f"not a candidate: {note}" if note and speed else "")
            )
            lines.append(f"| {model} | {path} | {cells} | {ratio} | {same:.3f} | {diff:.2g} | {mark} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
