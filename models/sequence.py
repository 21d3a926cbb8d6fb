"""Hourly sepsis risk from ICU time series: causal feature engineering, an LSTM and a Transformer.

Both models are causal: the risk at hour t is a function of rows 0..t only. Feature
engineering (forward fill, missingness mask, time since last measurement) looks backwards
only; the LSTM is unidirectional and the Transformer is a GPT-2 decoder (causal self-attention)
from ``transformers``, configured from scratch and fed engineered features as ``inputs_embeds``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from models.sepsis_io import FEATURES, MEASURED, VITALS

N_MEASURED = len(MEASURED)  # 34
N_VITALS = len(VITALS)  # 8, the first columns of MEASURED
TREND_WINDOW = 12
#: the window of the summaries' "change from the recent mean" channels
SUMMARY_WINDOW = 24
#: hours spanned by the log-signature channels (the path of rows t - SIGNATURE_WINDOW .. t)
SIGNATURE_WINDOW = 12
#: quantile bins per encoded feature. LSTM, one held-out fold, 8 epochs, hourly AUROC by seed: no encoding 0.804,
#: 8 bins 0.819 / 0.820, 16 bins 0.825 / 0.821, 32 bins 0.820 / 0.819
PLE_BINS = 16
SINCE_CAP_HOURS = 72.0
PROB_EPS = 1e-4  # probabilities are kept strictly inside (0, 1)
#: channels per measured variable in the summaries block: running min, max and mean of what was measured,
#: change from the first measurement, change from the mean of the last SUMMARY_WINDOW hours
N_SUMMARY = 5


@dataclass(frozen=True)
class FeatureSchema:
    """What a record's raw columns are and which engineered channels they get.

    A record is (hours, len(columns)): the measured (time-varying) variables first, then the static or
    administrative ones. ``derived`` ratios of two measured variables are computed from their forward-filled
    values at every hour where either was measured, and treated as further measured variables. The
    checkpoint names its schema (``preprocessing["schema"]``), so a model is always fed what it was trained on.
    """

    name: str
    columns: tuple[str, ...]
    n_measured: int
    #: the first ``n_trend`` measured variables also get 1 h / 6 h change and the TREND_WINDOW-hour std
    n_trend: int
    #: static columns that are 0/1 flags (kept as they are, unknown 0.5) instead of z-scores
    binary: tuple[str, ...]
    #: static columns that also get the piecewise-linear encoding (every measured variable gets it)
    ple_static: tuple[str, ...]
    derived: tuple[tuple[str, str, str], ...] = ()  # (name, numerator, denominator)
    summaries: bool = False
    #: measured variables whose path over the last SIGNATURE_WINDOW hours, with time as a further coordinate,
    #: gets its level-2 log-signature (increments and Levy areas, :func:`log_signature`)
    signature: tuple[str, ...] = ()
    #: the column that counts the stay's hours (ICULOS, Hour): explanations hold it at the record's own value, so
    #: they compare with an unremarkable patient at the same hour of the stay and never name the clock itself
    clock: str | None = None

    @property
    def measured(self) -> tuple[str, ...]:
        return self.columns[: self.n_measured]

    @property
    def static(self) -> tuple[str, ...]:
        return self.columns[self.n_measured :]

    @property
    def n_derived(self) -> int:
        return len(self.derived)

    @property
    def n_all_measured(self) -> int:
        """Measured variables including the derived ratios."""
        return self.n_measured + self.n_derived

    @property
    def stats_columns(self) -> tuple[str, ...]:
        """What :class:`NormStats` describe: measured, derived, static."""
        return (*self.measured, *(d[0] for d in self.derived), *self.static)

    @property
    def ple_columns(self) -> list[int]:
        """Indices into :attr:`stats_columns` that get the piecewise-linear encoding."""
        stats = self.stats_columns
        return list(range(self.n_measured)) + [stats.index(c) for c in self.ple_static]

    @property
    def n_ple(self) -> int:
        return len(self.ple_columns) * PLE_BINS

    @property
    def n_signature(self) -> int:
        """Log-signature channels: d increments and d(d-1)/2 Levy areas of the d = len(signature) + 1 paths."""
        d = len(self.signature) + 1 if self.signature else 0
        return d + d * (d - 1) // 2

    @property
    def n_input(self) -> int:
        m, n_static = self.n_all_measured, len(self.static)
        summaries = N_SUMMARY * m if self.summaries else 0
        return 4 * m + 3 * self.n_trend + n_static + summaries + self.n_signature + self.n_ple

    @property
    def n_dense(self) -> int:
        """Channels before the piecewise-linear block (what a tree teacher reads)."""
        return self.n_input - self.n_ple

    @property
    def explained_columns(self) -> tuple[str, ...]:
        """What an explanation attributes to, one value each: the measured variables, the derived ratios under
        their own names (so a ratio's share is never shown as its numerator's) and the static columns; the
        same as :attr:`stats_columns`, and as :attr:`columns` for a schema without ratios."""
        return self.stats_columns

    def feature_groups(self) -> list[int]:
        """For each engineered channel, the index into :attr:`explained_columns` of the variable it belongs to:
        a measured or static column, or a derived ratio (its own index, after the measured variables)."""
        owner = list(range(self.n_all_measured))
        static = list(range(self.n_all_measured, len(self.stats_columns)))
        stats_owner = owner + static
        groups = owner * 4 + owner[: self.n_trend] * 3 + static
        if self.summaries:
            groups += owner * N_SUMMARY
        if self.signature:
            # coordinate 0 is time: its increment and its areas belong to the first variable / the other variable
            path = [self.stats_columns.index(c) for c in self.signature]
            path = [path[0], *path]
            d = len(path)
            groups += path + [path[j] if i == 0 else path[i] for i in range(d) for j in range(i + 1, d)]
        return groups + [stats_owner[c] for c in self.ple_columns for _ in range(PLE_BINS)]

    def augment(self, values: np.ndarray) -> np.ndarray:
        """(hours, len(columns)) raw -> (hours, len(stats_columns)): the derived ratios inserted after the
        measured variables, NaN where neither operand was measured that hour or the ratio is undefined."""
        if not self.derived:
            return values
        measured = values[:, : self.n_measured]
        filled = forward_fill(measured)
        ratios = []
        for _, num, den in self.derived:
            i, j = self.columns.index(num), self.columns.index(den)
            fresh = ~np.isnan(measured[:, i]) | ~np.isnan(measured[:, j])
            with np.errstate(invalid="ignore", divide="ignore"):
                r = filled[:, i] / filled[:, j]
            ratios.append(np.where(fresh & np.isfinite(r), r, np.nan))
        derived = np.stack(ratios, axis=1).astype(values.dtype)  # (hours, n_derived)
        return np.concatenate([measured, derived, values[:, self.n_measured :]], axis=1)


#: the sepsis models' inputs (PhysioNet 2019 columns; the committed weights of issue 16)
SEPSIS_V1 = FeatureSchema(
    name="sepsis-v1",
    columns=tuple(FEATURES),
    n_measured=N_MEASURED,
    n_trend=N_VITALS,
    binary=("Gender", "Unit1", "Unit2"),
    ple_static=("Age", "HospAdmTime", "ICULOS"),
    clock="ICULOS",
)
#: sepsis-v1 and the signals the 2019 challenge's best entries used: running summaries of every variable,
#: change from the stay's own first value and from its last day, and derived ratios (shock index HR / SBP,
#: BUN / creatinine, SpO2 / FiO2)
SEPSIS_V2 = replace(
    SEPSIS_V1,
    name="sepsis-v2",
    derived=(("ShockIndex", "HR", "SBP"), ("BUN/Creatinine", "BUN", "Creatinine"), ("SpO2/FiO2", "O2Sat", "FiO2")),
    summaries=True,
)
#: sepsis-v1 and the level-2 log-signature of the last 12 hours' path of heart rate, SpO2, temperature, MAP and
#: respiratory rate against time: how far each moved and which moved before which (Levy areas)
SEPSIS_V3 = replace(SEPSIS_V1, name="sepsis-v3", signature=("HR", "O2Sat", "Temp", "MAP", "Resp"))
SCHEMAS: dict[str, FeatureSchema] = {s.name: s for s in (SEPSIS_V1, SEPSIS_V2, SEPSIS_V3)}


def register_schema(schema: FeatureSchema) -> FeatureSchema:
    """Make ``schema`` known to checkpoints by name (a task module registers its schemas on import)."""
    SCHEMAS[schema.name] = schema
    return schema


def known_schemas() -> dict[str, FeatureSchema]:
    """Every registered feature schema, the mortality task's included (their module registers them on import)."""
    import models.mortality_features  # noqa: F401

    return dict(SCHEMAS)


def schema_of(preprocessing: dict[str, object]) -> FeatureSchema:
    """The schema a checkpoint was trained with (checkpoints without one predate schemas: sepsis-v1)."""
    name = str(preprocessing.get("schema", SEPSIS_V1.name))
    schemas = SCHEMAS if name in SCHEMAS else known_schemas()  # a sepsis replica never imports the mortality code
    if name not in schemas:
        raise ValueError(f"unknown feature schema {name!r}: known {', '.join(schemas)}")
    return schemas[name]


#: the sepsis-v1 layout as module constants (what the committed sepsis weights and their tests use)
PLE_COLUMNS = SEPSIS_V1.ple_columns
N_PLE = SEPSIS_V1.n_ple
N_INPUT = SEPSIS_V1.n_input


class NormStats(BaseModel):
    """Per-column mean / std of a schema's raw (and derived) columns on the training split, and the quantile
    bin edges of the piecewise-linear encoding (stored in the checkpoint)."""

    model_config = ConfigDict(extra="forbid")

    mean: list[float]
    std: list[float]
    #: for each of the schema's ple_columns, PLE_BINS + 1 non-decreasing edges (training quantiles)
    edges: list[list[float]]

    @classmethod
    def fit(cls, values: np.ndarray, schema: FeatureSchema = SEPSIS_V1) -> NormStats:
        """``values``: (rows, len(schema.stats_columns)) with NaN: several records concatenated, each already
        :meth:`FeatureSchema.augment`-ed (see :meth:`fit_records`)."""
        with warnings.catch_warnings():  # a column never measured in the data: mean 0, std 1 below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
        edges = []
        for j in schema.ple_columns:
            seen = values[:, j][np.isfinite(values[:, j])]
            q = np.quantile(seen, np.linspace(0.0, 1.0, PLE_BINS + 1)) if seen.size else np.arange(PLE_BINS + 1.0)
            edges.append([float(x) for x in q])
        return cls(mean=[float(x) for x in mean], std=[float(x) for x in std], edges=edges)

    @classmethod
    def fit_records(cls, records: list[np.ndarray], schema: FeatureSchema = SEPSIS_V1) -> NormStats:
        """Fitted on raw records (hours_i, len(schema.columns)); derived ratios are computed per record."""
        return cls.fit(np.concatenate([schema.augment(r) for r in records]), schema)


def piecewise_linear(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Piecewise-linear encoding (Gorishniy et al., NeurIPS 2022) of forward-filled values.

    values: (hours, k) with NaN for never measured; edges: (k, bins + 1) -> (hours, k * bins):
    channel b of a feature is 0 below bin b, 1 above it and the fraction of the bin in between,
    so a network can place thresholds as a tree does. Never measured: all zeros (the mask says so).
    An empty bin (repeated edge) is a step at that edge."""
    lo = edges[None, :, :-1]  # (1, k, bins)
    hi = edges[None, :, 1:]
    x = values[:, :, None]  # (hours, k, 1)
    width = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        ramp = np.where(width > 0, (x - lo) / np.where(width > 0, width, 1.0), (x >= hi).astype(np.float64))
    ramp = np.nan_to_num(np.clip(ramp, 0.0, 1.0), nan=0.0)
    return ramp.reshape(values.shape[0], -1)


def last_observation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward fill. (hours, k) with NaN -> ``filled`` (hours, k): the last value observed at or before each
    hour (NaN before the first), and ``last`` (hours, k): the row it was observed in (-1 before the first)."""
    hours = values.shape[0]
    idx = np.where(~np.isnan(values), np.arange(hours)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)  # (hours, k)
    filled = np.take_along_axis(values, np.maximum(last, 0), axis=0)
    return np.where(last >= 0, filled, np.nan), last


def forward_fill(values: np.ndarray) -> np.ndarray:
    """(hours, k) with NaN -> (hours, k): each cell holds the last value observed at or before that hour."""
    return last_observation(values)[0]


def _window_mean(x: np.ndarray, window: int) -> np.ndarray:
    """(hours, k) -> (hours, k): the mean of rows max(0, t - window + 1)..t (causal)."""
    hours = x.shape[0]
    csum = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), x]), axis=0)
    lo = np.maximum(np.arange(hours) - window + 1, 0)
    hi = np.arange(hours) + 1
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def _summaries(z_observed: np.ndarray, z: np.ndarray, count: np.ndarray) -> list[np.ndarray]:
    """Running summaries of what was measured up to each hour. ``z_observed``: (hours, m) z-scores where
    measured this hour, NaN elsewhere; ``z``: (hours, m) forward-filled z (0 before the first measurement);
    ``count``: (hours, m) measurements so far -> N_SUMMARY arrays (hours, m), 0 before the first measurement."""
    seen = count > 0
    run_min = np.where(seen, np.fmin.accumulate(z_observed, axis=0), 0.0)
    run_max = np.where(seen, np.fmax.accumulate(z_observed, axis=0), 0.0)
    run_mean = np.where(seen, np.nancumsum(z_observed, axis=0) / np.maximum(count, 1), 0.0)
    first_row = np.argmax(~np.isnan(z_observed), axis=0)  # (m,) the first measured row (0 if never)
    first = z_observed[first_row, np.arange(z.shape[1])]
    from_first = np.where(seen, z - np.nan_to_num(first), 0.0)
    from_day = np.where(seen, z - _window_mean(z, SUMMARY_WINDOW), 0.0)
    return [np.nan_to_num(a) for a in (run_min, run_max, run_mean, from_first, from_day)]


def log_signature(path: np.ndarray, window: int) -> np.ndarray:
    """Level-2 log-signature of a piecewise-linear path over a sliding window, causal.

    path: (hours, d) -> (hours, d + d(d-1)/2). At hour t, of the path's rows a..t with a = max(0, t - window):
    the increments X_t - X_a, then the Levy areas A_ij = (S_ij - S_ji) / 2 for i < j, where S_ij is the
    iterated integral of dX_i dX_j. (The symmetric part of level 2 is S1 x S1 / 2, so these are all of it.)
    With D(t) = sum_{k <= t} X_{k-1} (x) dX_k, the window's S = D(t) - D(a) - X_a (x) (X_t - X_a) up to a
    symmetric term, so every hour costs the same, whatever the window."""
    hours, d = path.shape
    dx = np.diff(path, axis=0, prepend=path[:1])  # (hours, d), row 0 zero
    prev = np.vstack([path[:1], path[:-1]])  # (hours, d): X_{k-1}
    cum = np.cumsum(prev[:, :, None] * dx[:, None, :], axis=0)  # (hours, d, d): D(t)
    a = np.maximum(np.arange(hours) - window, 0)
    start = path[a]  # (hours, d): X_a
    increment = path - start
    s = cum - cum[a] - start[:, :, None] * increment[:, None, :]  # (hours, d, d), up to a symmetric term
    iu, ju = np.triu_indices(d, k=1)
    area = 0.5 * (s[:, iu, ju] - s[:, ju, iu])  # (hours, d(d-1)/2)
    return np.concatenate([increment, area], axis=1)


def engineer(values: np.ndarray, stats: NormStats, schema: FeatureSchema = SEPSIS_V1) -> np.ndarray:
    """(hours, len(schema.columns)) raw with NaN -> (hours, schema.n_input) float32, using rows <= t for hour t
    only. Channels: z-scored forward-filled values, measured-this-hour masks, hours since the last measurement,
    measurement counts (every measured and derived variable); trends of the first n_trend; static columns;
    the summaries (schema.summaries); the piecewise-linear encodings."""
    values = schema.augment(values)
    hours = values.shape[0]
    n_m = schema.n_all_measured
    mean = np.asarray(stats.mean, dtype=np.float32)
    std = np.asarray(stats.std, dtype=np.float32)
    measured = values[:, :n_m]  # (hours, m)
    observed = ~np.isnan(measured)
    filled, last = last_observation(measured)  # (hours, m) each
    z = np.where(last >= 0, (np.nan_to_num(filled) - mean[:n_m]) / std[:n_m], 0.0)
    z = np.clip(z, -8.0, 8.0)
    since = np.where(last >= 0, np.arange(hours)[:, None] - last, SINCE_CAP_HOURS)
    since = np.minimum(since, SINCE_CAP_HOURS) / SINCE_CAP_HOURS
    counted = np.cumsum(observed, axis=0)  # (hours, m)
    count = np.log1p(counted) / 4.0
    vit = z[:, : schema.n_trend]  # (hours, n_trend), forward-filled z-scores
    delta1 = vit - vit[np.maximum(np.arange(hours) - 1, 0)]
    delta6 = vit - vit[np.maximum(np.arange(hours) - 6, 0)]
    var = _window_mean(vit**2, TREND_WINDOW) - _window_mean(vit, TREND_WINDOW) ** 2
    vit_std = np.sqrt(np.clip(var, 0.0, None))
    static = values[:, n_m:].copy()  # (hours, n_static)
    static_z = (static - mean[n_m:]) / std[n_m:]
    flags = [schema.static.index(c) for c in schema.binary]
    static_z[:, flags] = np.nan_to_num(static[:, flags], nan=0.5)  # binary flags stay 0/1, unknown 0.5
    static_z = np.clip(np.nan_to_num(static_z, nan=0.0), -8.0, 8.0)
    raw_filled = np.concatenate([filled, static], axis=1)  # (hours, len(stats_columns))
    ple = piecewise_linear(raw_filled[:, schema.ple_columns], np.asarray(stats.edges, dtype=np.float64))
    parts = [z, observed.astype(np.float32), since, count, delta1, delta6, vit_std, static_z]
    if schema.summaries:
        with np.errstate(invalid="ignore"):
            z_observed = np.where(observed, np.clip((measured - mean[:n_m]) / std[:n_m], -8.0, 8.0), np.nan)
        parts += _summaries(z_observed, z, counted)
    if schema.signature:
        # time (in windows) and the forward-filled z-scores (0 before the first measurement); signed log scale
        cols = [schema.columns.index(c) for c in schema.signature]
        path = np.concatenate([np.arange(hours)[:, None] / SIGNATURE_WINDOW, z[:, cols]], axis=1)  # (hours, d)
        sig = log_signature(path.astype(np.float64), SIGNATURE_WINDOW)
        parts.append(np.sign(sig) * np.log1p(np.abs(sig)))
    parts.append(ple)
    return np.concatenate(parts, axis=1).astype(np.float32)


def feature_groups(schema: FeatureSchema = SEPSIS_V1) -> list[int]:
    """For each engineered channel, the index into ``schema.explained_columns`` of the variable it belongs to."""
    return schema.feature_groups()


def baseline_values(stats: NormStats, values: np.ndarray, schema: FeatureSchema = SEPSIS_V1) -> np.ndarray:
    """The reference stay of an explanation, raw: (hours, len(schema.columns)) -> the same shape. Nothing
    measured (every measured variable NaN at every hour), every static column at its training mean, and the
    schema's ``clock`` column the record's own (so an explanation never names the clock).

    The 0/1 flags (sex, ICU type, Unit1/Unit2) sit at their training prevalence rather than at 0: all flags 0
    is a patient who cannot exist (no ICU type at all), while the prevalence is the average patient, as the
    training mean is for age. A flag the record has then gets the share of the risk it adds over that average.
    The record's own flags would have been the other consistent choice, but then sex and ICU type could never
    be named as a reason."""
    base = np.full_like(values, np.nan)  # (hours, len(columns))
    mean = np.asarray(stats.mean, dtype=np.float64)  # (len(stats_columns),)
    for j, column in enumerate(schema.static):
        base[:, schema.n_measured + j] = mean[schema.stats_columns.index(column)]
    if schema.clock is not None:
        clock = schema.columns.index(schema.clock)
        base[:, clock] = values[:, clock]
    return base


def baseline_features(stats: NormStats, values: np.ndarray, schema: FeatureSchema = SEPSIS_V1) -> np.ndarray:
    """The engineered reference of an explanation: one record's raw values (hours, len(schema.columns)) ->
    (hours, n_input), :func:`engineer` of :func:`baseline_values`. Every measured variable reads as never
    measured (z 0, mask 0, hours since the last measurement at the cap, no count, no change, no summaries,
    piecewise-linear channels 0), so a variable the record never measured either gets no attribution; the
    static columns are at their training mean (z 0; flags at their prevalence) and the clock is the record's."""
    return engineer(baseline_values(stats, values, schema), stats, schema)


class SequenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: Literal["lstm", "transformer"]
    n_input: int = N_INPUT
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.1
    max_hours: int = 1024
    members: int = 1  # >1: an ensemble of independently seeded networks whose logits are averaged
    encoder: Literal["linear", "mlp"] | None = None  # per-hour input encoder; None: mlp (LSTM), linear (Transformer)
    #: per-hour output head; mlp: a hidden layer of 2 x d_model (GELU) first. Every checkpoint saves it; a config
    #: without it (checkpoints saved before the field, the committed sequence weights among them) has a linear head,
    #: which this default reads: a new default would rebuild those checkpoints wrongly
    head: Literal["linear", "mlp"] = "linear"


def _encoder(config: SequenceConfig, default: Literal["linear", "mlp"]) -> nn.Module:
    """Per-hour map from engineered features to the model width (no mixing across hours)."""
    if (config.encoder or default) == "linear":
        return nn.Linear(config.n_input, config.d_model)
    return nn.Sequential(
        nn.Linear(config.n_input, 2 * config.d_model),
        nn.GELU(),
        nn.Dropout(config.dropout),
        nn.Linear(2 * config.d_model, config.d_model),
        nn.GELU(),
    )


def _head(config: SequenceConfig, size: int, dropout_first: bool) -> nn.Module:
    """Per-hour map from the representation (size) to one logit: "linear", one layer (after dropout when
    ``dropout_first``); "mlp", a hidden layer of 2 x d_model with GELU and dropout before that layer."""
    first = [nn.Dropout(config.dropout)] if dropout_first else []
    if config.head == "linear":
        return nn.Sequential(*first, nn.Linear(size, 1)) if first else nn.Linear(size, 1)
    hidden = 2 * config.d_model
    return nn.Sequential(*first, nn.Linear(size, hidden), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(hidden, 1))


class SepsisLSTM(nn.Module):
    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = _encoder(config, "mlp")
        self.lstm = nn.LSTM(
            config.d_model,
            config.d_model,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.representation_size = 2 * config.d_model
        self.head = _head(config, self.representation_size, dropout_first=True)

    def representation(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (batch, hours, representation_size): what the head reads, the recurrent
        state and the current hour's encoding side by side. Padding sits after the real hours, so a
        unidirectional LSTM never sees it for real hours."""
        e = self.proj(x)  # (batch, hours, d_model)
        h, _ = self.lstm(e)  # (batch, hours, d_model)
        return torch.cat([h, e], dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input); mask: (batch, hours) 1 = real hour -> (batch, hours) logits."""
        return self.head(self.representation(x, mask)).squeeze(-1)


class SepsisTransformer(nn.Module):
    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = _encoder(config, "linear")
        # Imported here so that processes that never build a Transformer (the X-ray and LSTM serving
        # replicas) skip the ~1 s import of `transformers` at start-up.
        from transformers import GPT2Config, GPT2Model

        gpt = GPT2Config(
            vocab_size=1,
            n_positions=config.max_hours,
            n_embd=config.d_model,
            n_layer=config.n_layers,
            n_head=config.n_heads,
            n_inner=2 * config.d_model,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            bos_token_id=0,
            eos_token_id=0,
        )
        self.decoder = GPT2Model(gpt)
        self.representation_size = config.d_model
        self.head = _head(config, self.representation_size, dropout_first=False)

    def representation(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (batch, hours, d_model): the decoder's last hidden state (causal
        self-attention), what the head reads."""
        if x.shape[1] > self.config.max_hours:
            raise ValueError(f"records longer than {self.config.max_hours} hours are not supported")
        attention = None if mask is None else mask.long()
        return self.decoder(inputs_embeds=self.proj(x), attention_mask=attention).last_hidden_state

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (batch, hours) logits."""
        return self.head(self.representation(x, mask)).squeeze(-1)


class SequenceEnsemble(nn.Module):
    """Average of the logits of ``config.members`` networks of one architecture (still causal)."""

    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.config = config
        single = config.model_copy(update={"members": 1})
        self.members = nn.ModuleList(build_sequence_model(single) for _ in range(config.members))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (batch, hours) mean logit of the members."""
        return self.member_logits(x, mask).mean(dim=0)

    def member_logits(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (members, batch, hours): each member's logits."""
        return torch.stack([m(x, mask) for m in self.members])


SequenceModel = SepsisLSTM | SepsisTransformer | SequenceEnsemble


class MemberOutputs(nn.Module):
    """An ensemble's served form: the mean logit and every member's logit in one tensor, so each execution
    path (torch, bf16 autocast, an ONNX export of this module) returns the members' spread with the risk."""

    def __init__(self, ensemble: SequenceEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (batch, hours, 1 + members): mean logit, then each member's."""
        members = self.ensemble.member_logits(x, mask)  # (members, batch, hours)
        mean = members.mean(dim=0, keepdim=True)  # (1, batch, hours)
        return torch.cat([mean, members], dim=0).permute(1, 2, 0)


def build_sequence_model(config: SequenceConfig) -> SequenceModel:
    if config.members > 1:
        return SequenceEnsemble(config)
    return SepsisLSTM(config) if config.arch == "lstm" else SepsisTransformer(config)


def pad_batch(features: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (hours_i, F) -> padded (batch, max_hours, F) and mask (batch, max_hours)."""
    longest = max(f.shape[0] for f in features)
    x = torch.zeros(len(features), longest, features[0].shape[1])
    mask = torch.zeros(len(features), longest)
    for i, f in enumerate(features):
        x[i, : f.shape[0]] = torch.from_numpy(f)
        mask[i, : f.shape[0]] = 1.0
    return x, mask


def to_probability(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits.float()).clamp(PROB_EPS, 1.0 - PROB_EPS)
