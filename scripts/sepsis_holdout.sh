#!/usr/bin/env bash
# Estimate how the shipped sepsis training procedure does on stays it never saw: train each model with
# `models.train` (4 folds) on the 80 % of the development stays outside outer fold 0 (seed 0, stratified by
# sepsis), then score the 20 % with `models.evaluate` at the model's own threshold. The protocol's reserve
# (models.protocol.is_reserved) is in neither: it is scored once, for the shipped models alone. Writes under runs/holdout/ (~20 min
# on 2 cores). Data: $MEDLENS_DATA_DIR/sepsis/training (default ../shared/data/sepsis/training).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/holdout
rm -rf "$OUT" && mkdir -p "$OUT/train" "$OUT/test"
.venv/bin/python - "$OUT" <<'PY'
import sys
from pathlib import Path

from models.config import data_paths
from models.protocol import is_reserved
from models.sepsis_io import load_labelled_dir
from models.train_sequence import stay_folds

src = data_paths().sepsis_training.resolve()
records = [r for r in load_labelled_dir(src) if not is_reserved(r.name)]
for record, fold in zip(records, stay_folds(records, 5, 0), strict=True):
    (Path(sys.argv[1]) / ("test" if fold == 0 else "train") / record.name).symlink_to(src / record.name)
PY
for model in lstm transformer; do
  .venv/bin/python -m models.train "$model" --data "$OUT/train" --out "$OUT/$model" --epochs 12 --folds 4 \
    --threads 2 --seed 0 2>"$OUT/train_$model.log"
  .venv/bin/python -m models.evaluate "$model" --data "$OUT/test" --weights "$OUT/$model" \
    --output "$OUT/eval_$model.json" 2>>"$OUT/train_$model.log"
done
