"""What ``python -m models.protocol`` measured for a sequence model, as stored in its card (``card.json``'s
``protocol``): each repeated split's held-out figures, their mean and spread, and the reserve's, scored once.
Plain pydantic (no torch): serving returns it and the dashboard draws it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EarlierReserve(BaseModel):
    """The reserve's figures for this checkpoint's weights at an earlier operating threshold."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    figures: dict[str, float]
    measured: str
    command: str


class ProtocolSummary(BaseModel):
    """What ``python -m models.protocol`` measured on held-out stays for this model's recipe, one network or the
    checkpoint's K-fold procedure per split (docs/sepsis-protocol.md), and the reserve's figures, measured once on
    the shipped checkpoint."""

    model_config = ConfigDict(extra="forbid")

    command: str
    created: str
    schema_name: str
    repeats: int
    n_development: int
    mean: dict[str, float]
    std: dict[str, float]
    per_repeat: dict[str, list[float]]
    n_reserve: int
    reserve: dict[str, float] | None = None  # the shipped checkpoint on the reserve, at its own threshold
    reserve_measured: str | None = None
    reserve_command: str | None = None
    #: the same weights on the reserve at earlier operating thresholds (``python -m models.protocol set-threshold``)
    earlier_reserves: list[EarlierReserve] = []
    #: networks trained per split: 1, one member of the checkpoint's ensemble; K, the checkpoint's K-fold procedure
    folds: int = 1
    #: the threshold every split was scored at (the checkpoint's), or None: each split's chosen on the others
    fixed_threshold: float | None = None

    def procedure(self) -> str:
        """What was trained and scored on each split, in words (the card and the dashboard say it alike)."""
        trained = (
            "one network was trained as each member of this checkpoint was"
            if self.folds == 1
            else f"this checkpoint's own procedure was trained: {self.folds} fold networks on the 80 %, averaged by "
            "mean logit"
        )
        scored = (
            "a threshold chosen on the other splits' held-out stays"
            if self.fixed_threshold is None
            else f"this checkpoint's threshold {self.fixed_threshold:.4f}, which was chosen on its out-of-fold "
            "predictions of every development stay, these included"
        )
        return (
            f"{self.repeats} seeded 80/20 splits of the {self.n_development} development stays. In each split, "
            f"{trained}. It was scored on the held-out 20 % at {scored}."
        )
