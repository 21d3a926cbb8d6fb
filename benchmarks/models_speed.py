"""In-process prediction speed of every execution path of every catalogue model, side by side (no HTTP).

    .venv/bin/python -m benchmarks.models_speed [--threads 1] [--device cpu] [--out docs/benchmarks-models.md]

For each model: every candidate path of models/backends.py (torch fp32, channels_last, bf16 autocast where
bf16 is native, ONNX Runtime), each timed on the same real inputs in one run (radiographs from the
training folder; 72-hour sepsis records; the 48-hour PhysioNet 2012 records of the mortality models), with its
agreement with torch fp32 on those inputs (labels at the
model's threshold, largest probability difference), and the path ``auto`` chooses (freshly measured: the
cache is bypassed). Prints a Markdown table with the CPU model and flags and writes it to ``--out``.
Compare ratios within one run: the machine is shared and noisy.

``--device cuda`` measures the GPU's candidates (torch fp32 and bf16 autocast on the card, ONNX Runtime's
CUDA provider) with the model on the GPU; where ONNX Runtime has no CUDA provider, its CPU provider on the
host CPU is measured beside them (not a candidate there). ``--save-inputs FILE`` writes the real inputs (the
radiographs at the model's size as bytes, the raw records) to one ``.npz`` and ``--inputs FILE`` reads them
from it, for a machine without the data folder (docs/benchmarks-models-gpu.md).
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
    bf16_native,
    build_runner,
    candidates,
    device_name,
    onnxruntime_version,
    this_machine,
    time_runner,
)
from models.cards import SpeedRow, SpeedTable, read_card, write_card
from models.catalogue import CATALOGUE
from models.cnn import resize_gray, to_tensor
from models.config import data_paths
from models.inference import MortalityPredictor, Predictor, SepsisPredictor, XrayPredictor
from models.mortality_io import load_record_file
from models.sepsis_io import load_series_file
from models.sequence import engineer, pad_batch
from models.xray_io import labelled_images, load_xray_file

DEFAULT_OUT = Path("docs/benchmarks-models.md")
#: Environment that changes which kernels run; shown in the command line of the table when set.
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")

Row = tuple[str, str, dict[int, float], float, float, str]  # model, path, items/s per batch, label agr., diff, note
#: How many of each kind of input the agreement columns use (the timed batches are their first items).
N_RADIOGRAPHS, N_RECORDS, HOURS = 64, 32, 72


def _radiographs(size: int, saved: dict[str, np.ndarray] | None) -> list[np.ndarray]:
    """The radiographs of the training folder (every 97th), resized to ``size`` as the model reads them."""
    if saved is not None:
        pixels = saved["xray"]
        if pixels.shape[1:] != (size, size):
            raise SystemExit(f"--inputs holds {pixels.shape[1:]} radiographs; this CNN reads {size}x{size}")
        return [p.astype(np.float32) / 255.0 for p in pixels]  # resize_gray's own values: resizing is a no-op
    items = labelled_images(data_paths().xray_train)[::97][:N_RADIOGRAPHS]
    return [resize_gray(load_xray_file(p).pixels, size) for p, _ in items]


def _records(saved: dict[str, np.ndarray] | None) -> list[np.ndarray]:
    """The first sepsis stays of at least 72 hours: their first 72 hourly rows, raw."""
    if saved is not None:
        return list(saved["sepsis"])
    records = []
    for path in sorted(data_paths().sepsis_training.glob("*.psv")):
        record = load_series_file(path)
        if record.hours >= HOURS:
            records.append(record.values[:HOURS])
        if len(records) == N_RECORDS:
            break
    return records


def _stays(predictor: MortalityPredictor, saved: dict[str, np.ndarray] | None) -> list[np.ndarray]:
    """The first PhysioNet 2012 stays of set a (48 hourly rows each), as the mortality model reads them."""
    if saved is not None and "mortality" in saved:
        return list(saved["mortality"])
    files = sorted((data_paths().mortality / "set-a").glob("*.txt"))[:N_RECORDS]
    if not files:
        raise SystemExit(f"no PhysioNet 2012 records under {data_paths().mortality / 'set-a'}: set MEDLENS_DATA_DIR")
    return [predictor.model_values(load_record_file(path)) for path in files]


def _inputs(predictor: Predictor, batch: int, saved: dict[str, np.ndarray] | None) -> tuple[torch.Tensor, ...]:
    """Real inputs: radiographs of the training folder, 72-hour records of the sepsis stays, or 48-hour records of
    the mortality stays."""
    if isinstance(predictor, XrayPredictor):
        return (to_tensor(_radiographs(predictor.config.image_size, saved)[:batch], predictor.config),)
    if isinstance(predictor, MortalityPredictor):
        records = _stays(predictor, saved)[:batch]
    else:
        assert isinstance(predictor, SepsisPredictor)
        records = _records(saved)[:batch]
    return pad_batch([engineer(r, predictor.stats, predictor.schema) for r in records])


def save_inputs(target: Path) -> None:
    """The real inputs in one file, for a machine without the data folder (``--inputs``)."""
    size = CATALOGUE["cnn"].load(device="cpu", backend="torch-fp32").config.image_size
    pixels = np.stack([np.round(p * 255.0).astype(np.uint8) for p in _radiographs(size, None)])
    target.parent.mkdir(parents=True, exist_ok=True)
    sepsis = np.stack(_records(None)).astype(np.float32)
    mortality = next((e for e in CATALOGUE.values() if e.task.input_kind == "events"), None)
    if mortality is None:
        np.savez_compressed(target, xray=pixels, sepsis=sepsis)
        return
    # the raw 2012 records in the mortality models' column order (one schema for both)
    stays = np.stack(_stays(mortality.load(device="cpu", backend="torch-fp32"), None)).astype(np.float32)
    np.savez_compressed(target, xray=pixels, sepsis=sepsis, mortality=stays)


def bench_model(
    name: str,
    threads: int,
    budget_s: float,
    machine: Machine,
    device: torch.device,
    saved: dict[str, np.ndarray] | None = None,
    max_reps: int = 20,
    weights: Path | None = None,
) -> tuple[list[Row], str, int]:
    """The rows of one model, the path ``auto`` chooses and how many inputs the agreement columns used."""
    predictor = CATALOGUE[name].load(weights, device=str(device), backend="torch-fp32")
    label = name if weights is None else f"{name} ({weights})"
    spec = predictor.spec()
    batches = (1, 16, 32) if isinstance(predictor, SepsisPredictor) else (1, 16)
    agreement_inputs = _inputs(predictor, N_RADIOGRAPHS if isinstance(predictor, XrayPredictor) else N_RECORDS, saved)
    valid = spec.valid(agreement_inputs)
    rows: list[Row] = []
    reference: np.ndarray | None = None
    ort_version = onnxruntime_version()
    paths = [(path, "") for path in candidates(spec, device, machine, ort_version is not None)]
    if not bf16_native(device, machine):  # not a candidate here; measured to show what forcing it costs
        paths.append((ExecutionPath("torch-bf16", "channels_last" if spec.image else ""), "emulated bf16"))
    if device.type == "cuda" and ort_version is not None:
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            paths.append((ExecutionPath("onnxruntime", "CPUExecutionProvider"), "host CPU, no CUDA provider"))
    for path, note in paths:
        try:
            run = build_runner(spec, path, device, threads)
            out = run(*agreement_inputs)
        except Exception as exc:
            reason = str(exc).split(" (")[0].split(":")[0][:90].replace("|", "/")
            rows.append((label, path.name, {}, float("nan"), float("nan"), f"cannot run: {reason}"))
            continue
        probs = 1.0 / (1.0 + np.exp(-spec.logits(out)[valid].astype(np.float64)))
        if reference is None:
            reference = probs
        same = float(np.mean((probs >= spec.threshold) == (reference >= spec.threshold)))
        speed = {b: b / time_runner(run, _inputs(predictor, b, saved), budget_s, max_reps) for b in batches}
        rows.append((label, path.name, speed, same, float(np.max(np.abs(probs - reference))), note))
    with tempfile.TemporaryDirectory() as cache:  # `auto` as a fresh replica would choose it here
        os.environ["MEDLENS_CACHE_DIR"] = cache
        chosen = CATALOGUE[name].load(weights, device=str(device), backend="auto").execution
    return rows, ExecutionPath(chosen.backend, chosen.variant).name, agreement_inputs[0].shape[0]


def _gpu_lines(device: torch.device) -> list[str]:
    props = torch.cuda.get_device_properties(device)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    return [
        f"GPU: **{device_name(device)}** ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
        f"compute capability {props.major}.{props.minor}); CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version()}; bf16 native: {'yes' if bf16_native(device) else 'no'}; TF32 in fp32 "
        f"convolutions: {'on' if tf32[0] else 'off'}, in fp32 matmuls: {'on' if tf32[1] else 'off'}.",
        "",
    ]


def _ort_providers() -> str:
    try:
        import onnxruntime
    except ImportError:
        return ""
    return f" (providers: {', '.join(onnxruntime.get_available_providers())})"


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
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the models run (default cpu)")
    parser.add_argument("--max-reps", type=int, default=20, help="most timed calls per path and batch size")
    parser.add_argument("--inputs", type=Path, default=None, help="read the real inputs from this --save-inputs file")
    parser.add_argument(
        "--save-inputs", type=Path, default=None, help="write the real inputs (from the data folder) here and stop"
    )
    parser.add_argument("--models", nargs="+", default=list(CATALOGUE), choices=list(CATALOGUE), help="default: all")
    parser.add_argument(
        "--weights",
        nargs="+",
        default=[],
        metavar="NAME=DIR",
        help="measure these checkpoints of a model side by side (default: the committed one), e.g. a single CNN "
        "and an ensemble: cnn=runs/cnn_ens/m1 cnn=models/weights/cnn",
    )
    args = parser.parse_args()
    weights: dict[str, list[Path | None]] = {}
    for item in args.weights:
        name, _, directory = item.partition("=")
        if name not in CATALOGUE or not directory:
            parser.error(f"--weights {item}: expected NAME=DIR with NAME one of {', '.join(CATALOGUE)}")
        weights.setdefault(name, []).append(Path(directory))
    if args.cards and weights:
        parser.error("--cards writes the committed checkpoints' tables: leave out --weights")
    if args.save_inputs is not None:
        save_inputs(args.save_inputs)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU here")
    if args.cards and device.type != "cpu":
        parser.error("--cards: the model cards hold the CPU table; measure them with --device cpu")
    saved = dict(np.load(args.inputs)) if args.inputs is not None else None
    torch.set_num_threads(args.threads)
    machine = this_machine()
    options = "".join(
        f" {flag} {value}"
        for flag, value, default in (
            ("--device", args.device, "cpu"),
            ("--budget", args.budget, 1.0),
            ("--max-reps", args.max_reps, 20),
            ("--inputs", args.inputs, None),
            ("--out", args.out, DEFAULT_OUT),
            ("--models", " ".join(args.models), " ".join(CATALOGUE)),
            ("--weights", " ".join(args.weights), ""),
        )
        if value != default
    )
    lines = [
        "# Model prediction speed, every execution path (in-process)",
        "",
        f"Command: `{_env_prefix()}.venv/bin/python -m benchmarks.models_speed --threads {args.threads}{options}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        *(_gpu_lines(device) if device.type == "cuda" else []),
        f"{'Host CPU' if device.type == 'cuda' else 'Machine'}: **{machine.cpu}**; flags: "
        f"{', '.join(machine.flags) or 'none of the AVX2 / AVX-512 / AMX ones'}"
        + (f" (oneDNN limited to {machine.isa_limit} by ONEDNN_MAX_CPU_ISA)" if machine.isa_limit else "")
        + "; "
        f"bf16 native: {'yes' if machine.bf16_native else 'no'}; {args.threads} thread(s); torch {torch.__version__}, "
        f"ONNX Runtime {onnxruntime_version() or 'not installed'}"
        f"{_ort_providers() if device.type == 'cuda' else ''}.",
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
        "Agreement: share of real inputs ({counts}) whose label at the model's threshold equals torch fp32's, "
        "and the largest probability difference.",
        "",
        "| model | path | items/s by batch size | x torch fp32 (largest batch) | labels = fp32 | max prob diff "
        "| `auto` |",
        "|---|---|---|---|---|---|---|",
    ]
    counts: dict[str, int] = {}
    for name, directory in ((n, d) for n in args.models for d in weights.get(n, [None])):
        rows, chosen, counts[name] = bench_model(
            name, args.threads, args.budget, machine, device, saved, args.max_reps, directory
        )
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
    kinds = {
        "image": "{n} radiographs",
        "series": "every hour of {n} sepsis records",
        "events": "every hour of {n} 48-hour records",
    }
    items = [kinds[CATALOGUE[m].task.input_kind].format(n=n) for m, n in counts.items()]
    text = "\n".join(lines).replace("{counts}", "; ".join(dict.fromkeys(items))) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
