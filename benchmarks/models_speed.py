"""In-process inference speed of the three models on one CPU thread (no HTTP).

    .venv/bin/python -m benchmarks.models_speed [--weights-root models/weights] [--repeat 20]

CNN: images/s at batch 1 and 16, fp32 vs bfloat16 autocast (channels_last), and the agreement of
the two precisions on real images. Sequence models: a 72-hour record, batch 1 and 32. Prints a
Markdown table and writes it to docs/benchmarks-models.md. Compare ratios within one run: the
machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from models.catalogue import models_for
from models.cnn import to_tensor
from models.config import data_paths
from models.inference import SepsisPredictor, XrayPredictor
from models.sepsis_io import load_series_file
from models.xray_io import labelled_images, load_xray_file


def _timeit(call: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls after two warm-up calls."""
    call()
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-root", type=Path, default=Path("models/weights"))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-models.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[tuple[str, str, float, str]] = []

    cnn = XrayPredictor(args.weights_root / "cnn", device="cpu")
    items = labelled_images(data_paths().xray_train)[::97][:32]
    images = [load_xray_file(p).pixels for p, _ in items]
    for bf16 in (False, True):
        cnn.bf16 = bf16
        name = "bf16 autocast" if bf16 else "fp32"
        for batch in (1, 16):
            x = to_tensor(images[:batch], cnn.config)
            sec = _timeit(partial(cnn.predict_tensor, x), args.repeat)
            rows.append(("cnn", f"{name}, batch {batch}", batch / sec, "images/s (forward only)"))
    cnn.bf16 = False
    p32 = cnn.predict(images)
    cnn.bf16 = True
    p16 = cnn.predict(images)
    sec = _timeit(partial(cnn.predict, images[:16]), max(3, args.repeat // 4))
    rows.append(("cnn", "bf16, batch 16 incl. resize/normalise", 16 / sec, "images/s"))
    agreement = float(np.mean((p32 >= cnn.threshold) == (p16 >= cnn.threshold)))
    max_diff = float(np.abs(p32 - p16).max())

    record = next(
        r for r in (load_series_file(p) for p in sorted(data_paths().sepsis_training.glob("*.psv"))) if r.hours >= 72
    )
    values = record.values[:72]
    for entry in models_for("series"):
        kind = entry.name
        seq = SepsisPredictor(entry, args.weights_root / kind, device="cpu")
        for batch in (1, 32):
            records = [values] * batch
            sec = _timeit(partial(seq.predict, records), args.repeat)
            rows.append((kind, f"72-hour record, batch {batch}", batch / sec, "records/s"))
        sec = _timeit(partial(seq.explain, values), max(3, args.repeat // 4))
        rows.append((kind, "explain (integrated gradients, 72 h)", 1 / sec, "records/s"))

    header = (
        f"# Model inference speed (in-process, 1 torch thread)\n\n"
        "Command: `.venv/bin/python -m benchmarks.models_speed`; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread, "
        f"torch {torch.__version__}.\n\n"
        "| model | setting | throughput | unit |\n|---|---|---|---|\n"
    )
    table = "".join(f"| {m} | {s} | {v:.1f} | {u} |\n" for m, s, v, u in rows)
    fp32_1 = next(v for m, s, v, _ in rows if m == "cnn" and s == "fp32, batch 16")
    bf16_1 = next(v for m, s, v, _ in rows if m == "cnn" and s == "bf16 autocast, batch 16")
    notes = (
        f"\nbf16/fp32 speed-up at batch 16: {bf16_1 / fp32_1:.2f}x. On {len(images)} real radiographs the "
        f"two precisions agree on {agreement:.0%} of labels (max probability difference {max_diff:.4f}); "
        "serving uses bf16.\n"
    )
    text = header + table + notes
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
