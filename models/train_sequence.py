"""Train the sepsis LSTM or Transformer on PhysioNet 2019 ``.psv`` stays."""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoint import CheckpointMeta, save_checkpoint
from models.config import data_paths
from models.sepsis_io import FEATURES, SepsisRecord, load_labelled_dir
from models.sequence import (
    NormStats,
    SequenceConfig,
    SequenceEnsemble,
    SequenceModel,
    build_sequence_model,
    engineer,
    pad_batch,
    to_probability,
)
from models.train_cnn import seed_everything

POS_WEIGHT = 4.0


@dataclass
class SequenceTrainResult:
    meta: CheckpointMeta
    val_labels: list[np.ndarray]
    val_probs: list[np.ndarray]
    n_train: int
    n_val: int
    best_epoch: int
    history: list[dict[str, float]]
    seconds: float


def stay_split(records: list[SepsisRecord], val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation stays, stratified by whether the stay becomes septic."""
    rng = np.random.default_rng(seed)
    septic = np.array([bool(r.labels is not None and r.labels.any()) for r in records])
    val = np.zeros(len(records), dtype=bool)
    for flag in (False, True):
        idx = np.flatnonzero(septic == flag)
        rng.shuffle(idx)
        val[idx[: round(len(idx) * val_fraction)]] = True
    return val


@torch.no_grad()
def predict_features(model: SequenceModel, features: list[np.ndarray], batch_size: int = 64) -> list[np.ndarray]:
    """Hourly probabilities for engineered records, batched by similar length."""
    model.eval()
    order = np.argsort([f.shape[0] for f in features])
    out: list[np.ndarray] = [np.empty(0)] * len(features)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        x, mask = pad_batch([features[i] for i in chunk])
        prob = to_probability(model(x, mask)).numpy()
        for j, i in enumerate(chunk):
            out[i] = prob[j, : features[i].shape[0]]
    return out


def _fit_member(
    config: SequenceConfig,
    x_train: list[np.ndarray],
    y_train: list[np.ndarray],
    x_val: list[np.ndarray],
    y_val: list[np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    label: str,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]], int]:
    """Train one network; keep the epoch with the best validation AUROC (less noisy than utility)."""
    from sklearn.metrics import roc_auc_score

    from models.metrics import best_utility_threshold

    seed_everything(seed)
    model = build_sequence_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    order_by_len = np.argsort([len(y) for y in y_train])
    batches = [order_by_len[i : i + batch_size] for i in range(0, len(order_by_len), batch_size)]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * len(batches), pct_start=0.1
    )
    rng = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for b in tqdm(rng.permutation(len(batches)), desc=f"{label} epoch {epoch + 1}/{epochs}", unit="batch"):
            idx = batches[b]
            x, mask = pad_batch([x_train[i] for i in idx])  # (batch, hours, F), (batch, hours)
            y, _ = pad_batch([y_train[i][:, None] for i in idx])  # (batch, hours, 1)
            logits = model(x, mask)  # (batch, hours)
            loss_h = F.binary_cross_entropy_with_logits(
                logits, y.squeeze(-1), pos_weight=torch.tensor(POS_WEIGHT), reduction="none"
            )
            loss = (loss_h * mask).sum() / mask.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total += loss.item() * float(mask.sum())
            count += int(mask.sum())
        probs = predict_features(model, x_val)
        auroc = float(roc_auc_score(np.concatenate(y_val), np.concatenate(probs)))
        _, utility = best_utility_threshold(y_val, probs)
        entry = {"epoch": epoch + 1, "train_loss": total / count, "val_auroc": auroc, "val_utility": utility}
        history.append(entry)
        tqdm.write(f"{label}: {entry}")
        if best is None or auroc > best[0]:
            best = (auroc, epoch + 1, copy.deepcopy(model.state_dict()))
    assert best is not None
    return best[2], history, best[1]


def train_sequence(
    arch: str,
    data: Path,
    out: Path,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    val_fraction: float,
    members: int = 1,
    limit: int | None = None,
) -> SequenceTrainResult:
    from models.metrics import best_utility_threshold, normalized_utility

    seed_everything(seed)
    started = time.time()
    records = load_labelled_dir(data, limit=limit)
    val_mask = stay_split(records, val_fraction, seed)
    train_recs = [r for r, v in zip(records, val_mask, strict=True) if not v]
    val_recs = [r for r, v in zip(records, val_mask, strict=True) if v]
    stats = NormStats.fit(np.concatenate([r.values for r in train_recs]))
    x_train = [engineer(r.values, stats) for r in tqdm(train_recs, desc="features", unit="stay")]
    y_train = [r.labels.astype(np.float32) for r in train_recs if r.labels is not None]
    x_val = [engineer(r.values, stats) for r in val_recs]
    y_val = [r.labels for r in val_recs if r.labels is not None]

    config = SequenceConfig(arch=arch, members=members)
    single = config.model_copy(update={"members": 1})
    states: list[dict[str, torch.Tensor]] = []
    history: list[dict[str, float]] = []
    best_epochs: list[int] = []
    for member in range(members):
        state, member_history, best_epoch = _fit_member(
            single, x_train, y_train, x_val, y_val, epochs=epochs, batch_size=batch_size, lr=lr,
            seed=seed + member, label=f"{arch} {member + 1}/{members}",
        )  # fmt: skip
        states.append(state)
        history.extend({"member": member + 1, **h} for h in member_history)
        best_epochs.append(best_epoch)
    model = build_sequence_model(config)
    if members > 1:
        assert isinstance(model, SequenceEnsemble)
        for sub, state in zip(model.members, states, strict=True):
            sub.load_state_dict(state)
    else:
        model.load_state_dict(states[0])
    probs = predict_features(model, x_val)
    threshold, _ = best_utility_threshold(y_val, probs)
    best_epoch = max(best_epochs)
    meta = CheckpointMeta(
        kind=arch,
        version=time.strftime(f"{arch}-%Y%m%d"),
        task="hourly sepsis risk (PhysioNet 2019 SepsisLabel: sepsis within the next 6 hours or ongoing)",
        labels=["NO_ALERT", "SEPSIS_ALERT"],
        threshold=float(threshold),
        config=config.model_dump(mode="json"),
        preprocessing={
            "features": FEATURES,
            "engineering": "forward fill; z-score with training mean/std; measured-this-hour masks; "
            "hours since last measurement (capped at 72, /72); demographics z-scored",
            "norm_stats": stats.model_dump(mode="json"),
            "threshold_rule": "maximises the challenge's normalised utility on the validation stays",
            "check": normalized_utility(y_val, [p >= threshold for p in probs]),
        },
    )
    save_checkpoint(out, meta, model.state_dict())
    return SequenceTrainResult(
        meta=meta,
        val_labels=y_val,
        val_probs=probs,
        n_train=len(train_recs),
        n_val=len(val_recs),
        best_epoch=best_epoch,
        history=history,
        seconds=time.time() - started,
    )


def train_sequence_cli(args: argparse.Namespace, command: str) -> int:
    from models.cards import SEPSIS_SOURCE, ModelCard, write_card
    from models.metrics import binary_evaluation

    data = args.data or data_paths().sepsis_training
    epochs, batch_size, lr = args.epochs or 12, args.batch_size or 32, args.lr or 2e-3
    result = train_sequence(
        args.model,
        data,
        args.out,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=args.seed,
        val_fraction=args.val_fraction,
        members=args.members,
        limit=args.limit,
    )
    meta = result.meta
    evaluation = binary_evaluation(np.concatenate(result.val_labels), np.concatenate(result.val_probs), meta.threshold)
    from models.metrics import normalized_utility

    evaluation.utility = normalized_utility(result.val_labels, [p >= meta.threshold for p in result.val_probs])
    n_septic = sum(int(y.any()) for y in result.val_labels)
    card = ModelCard(
        name=args.model,
        version=meta.version,
        task="Hourly risk that a patient in the ICU has or will develop sepsis within 6 hours "
        "(PhysioNet 2019 shifted SepsisLabel), from the record up to that hour",
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        data=SEPSIS_SOURCE,
        data_path=str(data),
        split=(
            f"stay-level split stratified by sepsis: {result.n_train} training stays, {result.n_val} "
            f"validation stays ({n_septic} septic), seed {args.seed}"
        ),
        command=command,
        seed=args.seed,
        training_seconds=result.seconds,
        hyperparameters={
            "epochs": epochs,
            "members (ensemble of seeds)": args.members,
            "epoch kept per member": "best validation AUROC",
            "batch_size": batch_size,
            "max_lr": lr,
            "optimizer": "AdamW (wd 0.01), one-cycle schedule, grad-norm clip 1.0",
            "loss": f"hourly BCE, positive weight {POS_WEIGHT}",
            **meta.config,
        },
        threshold=meta.threshold,
        threshold_rule=str(meta.preprocessing["threshold_rule"]),
        evaluation_dataset="held-out validation stays (hourly; also used to pick the epoch and threshold)",
        evaluation=evaluation,
        intended_use=(
            "Research and demonstration of early-warning scores: an hourly sepsis risk for adult ICU "
            "patients, reviewed by a clinician. Not for clinical use."
        ),
        limitations=[
            "Trained on one hospital system (challenge set B); other hospitals differ in case mix, "
            "measurement frequency and sepsis definition (Sepsis-3 as computed by the challenge).",
            "The label is already shifted 6 hours earlier than clinical onset.",
            "Missingness patterns carry signal (what clinicians chose to measure): workflow changes shift the model.",
            "Validation stays also chose the epoch and threshold: the figures are optimistic.",
            "Not for clinical use.",
        ],
    )
    write_card(args.out, card)
    print(f"wrote {args.out}: val AUROC {evaluation.auroc:.4f}, utility {evaluation.utility:.4f}")
    return 0
