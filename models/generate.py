"""Write synthetic chest radiographs, marked as synthetic (band in the pixels, PNG text chunk).

python -m models.generate --label PNEUMONIA --n 8 --seed 0 --out runs/synthetic
    -> runs/synthetic/synthetic-PNEUMONIA-seed0.png ... seed7.png (image i uses seed S + i)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.cli_args import output_folder, positive_int
from models.errors import MedLensInputError, WeightsError
from models.synthetic import MAX_SEED, SyntheticXrayGenerator

MAX_N = 10_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="NORMAL or PNEUMONIA (the generator's classes)")
    parser.add_argument("--n", type=int, default=1, help=f"how many images (1 to {MAX_N})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed + i")
    parser.add_argument(
        "--out", type=output_folder, required=True, help="folder for the PNGs (created; must be writable)"
    )
    parser.add_argument("--weights", type=Path, default=None, help="generator checkpoint (default: committed)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images generated at once (1 or more)")
    args = parser.parse_args(argv)
    if not 1 <= args.n <= MAX_N:
        parser.error(f"--n must be between 1 and {MAX_N}")
    if not 0 <= args.seed <= MAX_SEED - args.n:
        parser.error(f"--seed must be between 0 and {MAX_SEED - args.n} (seed + n stays a 63-bit integer)")
    try:
        generator = SyntheticXrayGenerator(args.weights)
        generator.label_index(args.label)
    except (WeightsError, MedLensInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seed, args.seed + args.n))
    written = 0
    for start in range(0, len(seeds), args.batch_size):
        batch = seeds[start : start + args.batch_size]
        for seed, png in zip(batch, generator.pngs([args.label] * len(batch), batch), strict=True):
            (args.out / f"synthetic-{args.label}-seed{seed}.png").write_bytes(png)
            written += 1
    print(f"wrote {written} synthetic {args.label} radiograph(s) to {args.out} ({generator.version}, marked)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
