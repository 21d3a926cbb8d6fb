"""The command-line options that change a sequence task's recipe (models/sequence_tasks.py), shared by
``python -m models.train`` and ``python -m models.protocol run``. Importing it imports neither torch nor the
feature code (models/sequence_tasks.py reads its types); :func:`add_task_options` reads the registered feature
schemas, and so imports both."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from models.sequence_tasks import SequenceTask

Weighting = Literal["uniform", "utility"]  # SequenceTask.weighting
Target = Literal["label", "window"]  # SequenceTask.target
TeacherHours = Literal["uniform", "task"]  # SequenceTask.teacher_hours
Auxiliary = Literal["none", "horizons"]  # SequenceTask.auxiliary
TeacherKind = Literal["hourly", "hourly+stay"]  # SequenceTask.teacher
WeightAverage = Literal["none", "ema"]  # SequenceTask.weight_average
Batching = Literal["fixed", "shuffled"]  # SequenceTask.batching
Head = Literal["linear", "mlp"]  # SequenceTask.head, the networks' SequenceConfig.head


def _groups(value: str) -> int:
    """``--teacher-groups``: an integer of at least 2 (the teacher cross-fits between groups)."""
    groups = int(value)
    if groups < 2:
        raise argparse.ArgumentTypeError(f"{groups}: the teacher needs at least 2 groups to cross-fit")
    return groups


def width(value: str) -> int:
    """``--d-model``: a network width of at least 8, a multiple of the Transformer's 4 attention heads."""
    d_model = int(value)
    if d_model < 8 or d_model % 4:
        raise argparse.ArgumentTypeError(f"{d_model}: the width must be at least 8 and a multiple of 4 (the heads)")
    return d_model


def _copies(value: str) -> int:
    """``--thinned-copies``: 0 or more."""
    copies = int(value)
    if copies < 0:
        raise argparse.ArgumentTypeError(f"{copies}: give 0 (no copies) or more")
    return copies


def _temperature(value: str) -> float:
    """``--teacher-temperature``: a finite number of at least 1 (1: the teacher's probabilities as they are)."""
    temperature = float(value)
    if not 1 <= temperature < float("inf"):
        raise argparse.ArgumentTypeError(f"{value}: the temperature must be a finite number of at least 1")
    return temperature


def add_task_options(parser: argparse.ArgumentParser) -> None:
    """The options that change a sequence task's recipe, shared by ``models.train`` and ``models.protocol run``
    (read back by :func:`task_from_options`)."""
    from models.sequence import known_schemas

    parser.add_argument(
        "--schema",
        choices=sorted(known_schemas()),
        default=None,
        help="sequence models: feature schema (default: the task's; a schema belongs to its task, sepsis-* or "
        "mortality-*)",
    )
    parser.add_argument(
        "--weighting",
        choices=get_args(Weighting),
        default=None,
        help="sepsis models: hour weights of the loss (default utility: septic stays' hours weighted by the utility's "
        "stake; uniform: every hour alike, the recipe before 2026-12-05)",
    )
    parser.add_argument(
        "--target",
        choices=get_args(Target),
        default=None,
        help="sepsis models: training target (label: SepsisLabel; window: also the utility's rewarded alarm hours "
        "from 12 h before onset; scoring always uses SepsisLabel)",
    )
    parser.add_argument(
        "--teacher-hours",
        choices=get_args(TeacherHours),
        default=None,
        help="sequence models: row weights of the tree teacher (task: the loss's hour weights; mortality: half on "
        "the 48th hour)",
    )

    parser.add_argument(
        "--teacher-groups",
        type=_groups,
        default=None,
        metavar="G",
        help="sequence models: cross-fit the tree teacher in G groups of stays, each stay's trees fitted on "
        "(G - 1)/G of the member's training stays (default: by the training folds, 3/5 of the stays)",
    )
    parser.add_argument(
        "--teacher",
        choices=get_args(TeacherKind),
        default=None,
        help="mortality models: the tree teacher (hourly: trees on the hourly channels; hourly+stay: at the 48th "
        "hour, the mean logit of those and of trees on the stay's 48-hour aggregates, cross-fitted alike)",
    )
    parser.add_argument(
        "--auxiliary",
        choices=get_args(Auxiliary),
        default=None,
        help="sepsis models: a second head trained beside the served one and discarded after training (horizons: "
        "onset within 12 h, within 24 h, the stay becomes septic; default none)",
    )
    parser.add_argument(
        "--thinned-copies",
        type=_copies,
        default=None,
        metavar="K",
        help="sequence models: train each network also on K copies of each training stay with a fifth of its "
        "measured values left out, each copy with its own tree-teacher targets (consistent teaching; default 0)",
    )
    parser.add_argument(
        "--weight-average",
        choices=get_args(WeightAverage),
        default=None,
        help="sequence models: keep what each network ends with (none, the default) or an exponential moving "
        "average of its weights over the training steps, with a horizon of one epoch (ema)",
    )
    parser.add_argument(
        "--teacher-temperature",
        type=_temperature,
        default=None,
        metavar="T",
        help="sequence models: 1 (the default) blends label and teacher into one BCE target; T > 1 gives the "
        "teacher's share its own BCE on logits and targets divided by T (times T^2), which weighs the teacher's "
        "log-odds rather than its probabilities, so low-risk hours are ranked too",
    )
    parser.add_argument(
        "--batching",
        choices=get_args(Batching),
        default=None,
        help="sequence models: which stays share a training step (fixed, the default: stays of alike length, the "
        "same batches every epoch; shuffled: drawn afresh every epoch, each batch from alike lengths within a "
        "random pool of stays)",
    )
    parser.add_argument(
        "--head",
        choices=get_args(Head),
        default=None,
        help="sequence models: the networks' per-hour output head (linear, the default: one layer on the "
        "representation; mlp: a hidden layer of twice the width, GELU, first)",
    )
    parser.add_argument(
        "--d-model",
        type=width,
        default=None,
        help="sequence models: the networks' width, the LSTM's hidden state or the Transformer's model width "
        "(default 64; the checkpoint's config records it). Read as args.d_model, not part of the task",
    )


def task_from_options(task: str, args: argparse.Namespace) -> SequenceTask:
    """The task named ``task`` with the options :func:`add_task_options` added to ``args``."""
    from models.sequence_tasks import sequence_task

    return sequence_task(
        task,
        args.schema,
        args.weighting,
        args.target,
        args.teacher_hours,
        args.teacher_groups,
        args.auxiliary,
        teacher=args.teacher,
        thinned_copies=args.thinned_copies,
        weight_average=args.weight_average,
        teacher_temperature=args.teacher_temperature,
        batching=args.batching,
        head=args.head,
    )
