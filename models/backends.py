"""Each model's execution path, chosen by measuring it on the machine where it runs.

Candidates (:func:`candidates`): torch fp32 (for images also in channels_last), torch bf16 autocast
(only where bf16 is native: AVX512-BF16 or AMX on the CPU, a CUDA device with bf16) and ONNX Runtime
(CPU execution provider; the CUDA provider on a GPU) on an ONNX export of the checkpoint made at load.

A candidate counts only if it agrees with torch fp32 on a fixed probe batch: every probability within
:data:`PROB_TOLERANCE` of fp32's, and the same label at the model's threshold for every probe item whose
fp32 probability is farther than that tolerance from the threshold; a model with further outputs (the
CNN's out-of-distribution score, ``ModelSpec.outputs``) also needs each of them within
:data:`EXTRA_TOLERANCE` of fp32's, relative to fp32's largest magnitude. The agreeing candidates are timed in turn,
call by call, at each of the predictor's probe batch sizes (``Predictor.batch_sizes``, (1, 16): the CPU
profile's largest batch; a GPU deployment batching more is measured at 16 too), and the one with the most
items/s at the largest wins (its capacity under load; the smallest batch size breaks ties), where it beats
torch fp32 by :data:`MARGIN`. The choice and every
measurement are cached per machine (CPU model and flags, device, threads, library versions, checkpoint
hash) in ``$MEDLENS_CACHE_DIR`` (default ``~/.cache/medlens``), so a second replica or a restart does not
probe again. Explanations (Grad-CAM, integrated gradients) always use the torch fp32 module: they need
gradients; only predictions take the chosen path.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.catalogue import BACKENDS, BackendName

logger = logging.getLogger(__name__)

#: Largest difference in probability from torch fp32 that a candidate may show on the probe batch.
PROB_TOLERANCE = 0.02
#: Largest difference of a further output (``ModelSpec.outputs[1:]``) from torch fp32's, relative to the
#: largest magnitude of fp32's values on the probe batch.
EXTRA_TOLERANCE = 0.02
CACHE_ENV = "MEDLENS_CACHE_DIR"
CACHE_VERSION = 4  # 4: the key holds the model's outputs (sepsis ensembles return their members)
#: CPU flags that decide which kernels run (recorded in the cache key and in benchmark tables).
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

#: (*model inputs as tensors) -> float32 numpy: the logits, or with further outputs (batch, ..., n_outputs)
Runner = Callable[..., np.ndarray]


class BackendError(RuntimeError):
    """An explicitly requested backend cannot run here; the message says what to do."""


# ----------------------------------------------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------------------------------------------
#: oneDNN's ISA limit (``ONEDNN_MAX_CPU_ISA``, oneDNN's names) -> the RELEVANT_FLAGS whose kernels it still
#: allows. torch's bf16 convolutions and matmuls are oneDNN's: under ``AVX2`` they fall back to reference
#: code, as on a CPU that lacks AVX512-BF16 (one way to try an AVX2-only machine's behaviour on a newer one).
_ISA_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SSE41", ()),
    ("AVX", ()),
    ("AVX2", ("avx2", "fma")),
    ("AVX512_CORE", ("avx2", "fma", "avx512f")),
    ("AVX512_CORE_VNNI", ("avx2", "fma", "avx512f", "avx512_vnni")),
    ("AVX512_CORE_BF16", ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")),
)
ISA_ENV = "ONEDNN_MAX_CPU_ISA"


@dataclass(frozen=True)
class Machine:
    cpu: str
    flags: tuple[str, ...]  # the RELEVANT_FLAGS this CPU has that oneDNN may use
    isa_limit: str = ""  # ONEDNN_MAX_CPU_ISA where it removes some of the CPU's flags

    @property
    def bf16_native(self) -> bool:
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    def describe(self) -> str:
        limit = f"; oneDNN limited to {self.isa_limit} by {ISA_ENV}" if self.isa_limit else ""
        return f"{self.cpu} ({', '.join(self.flags) or 'no AVX2'}{limit})"


def isa_allowed(limit: str) -> tuple[str, ...] | None:
    """The flags oneDNN may use under ``limit`` (an ``ONEDNN_MAX_CPU_ISA`` value); None: no limit."""
    wanted = limit.strip().upper()
    if not wanted or wanted in ("ALL", "DEFAULT"):
        return None
    levels = dict(_ISA_LEVELS)
    if wanted in levels:
        return levels[wanted]
    if wanted.startswith("AVX2_"):
        return levels["AVX2"]  # AVX2_VNNI, AVX2_VNNI_2: no AVX-512
    if "AMX" in wanted:
        return RELEVANT_FLAGS
    return levels["AVX512_CORE_BF16"]  # AVX512_CORE_FP16, AVX10_*: everything but AMX


def this_machine() -> Machine:
    """CPU model and the flags of :data:`RELEVANT_FLAGS` it has (from /proc/cpuinfo on Linux), less those an
    ``ONEDNN_MAX_CPU_ISA`` limit in the environment forbids."""
    cpu, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("", platform.machine(), platform.processor()):
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    have = tuple(f for f in RELEVANT_FLAGS if f in flags)
    limit = os.environ.get(ISA_ENV, os.environ.get("DNNL_MAX_CPU_ISA", ""))
    allowed = isa_allowed(limit)
    if allowed is None or set(have) <= set(allowed):
        return Machine(cpu=cpu, flags=have)
    return Machine(cpu=cpu, flags=tuple(f for f in have if f in allowed), isa_limit=limit.strip().upper())


def bf16_native(device: torch.device, machine: Machine | None = None) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return (machine or this_machine()).bf16_native


def where(device: torch.device, machine: Machine) -> str:
    """The CPU, or the GPU (by name) and the host CPU: what a choice was measured on."""
    if device.type == "cpu":
        return machine.describe()
    return f"{device_name(device)} ({device}) on {machine.describe()}"


def device_name(device: torch.device) -> str:
    """``cpu``, or the GPU's name (``NVIDIA H200``): part of the cache key, so a choice made on one card is not
    reused on another."""
    return str(device) if device.type == "cpu" else str(torch.cuda.get_device_name(device))


def onnxruntime_version() -> str | None:
    try:
        import onnxruntime

        return str(onnxruntime.__version__)
    except ImportError:
        return None


# ----------------------------------------------------------------------------------------------------------
# what a model says about itself
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ModelSpec:
    """How to run one model: its fp32 module, how its inputs are named and shaped, a probe batch."""

    name: str
    build: Callable[[], nn.Module]  # the fp32 module in eval mode; called only when a path needs it
    input_names: tuple[str, ...]  # ("x",) or ("x", "mask")
    dynamic_axes: dict[str, dict[int, str]]
    probe: Callable[[int], tuple[torch.Tensor, ...]]  # batch size -> model inputs (deterministic)
    valid: Callable[[tuple[torch.Tensor, ...]], np.ndarray]  # inputs -> boolean mask of real outputs
    threshold: float
    batch_sizes: tuple[int, ...]  # the batch sizes the model serves
    image: bool  # channels_last applies
    checkpoint: Path  # model.pt: its hash keys the cache
    #: what the module returns: ("logit",) -> the logits; more names -> a last axis of that size, logit first
    outputs: tuple[str, ...] = ("logit",)

    def logits(self, out: np.ndarray) -> np.ndarray:
        """The logits of a runner's output."""
        return out if len(self.outputs) == 1 else out[..., 0]

    def output(self, out: np.ndarray, name: str) -> np.ndarray:
        """One named output of a runner's output."""
        return out if len(self.outputs) == 1 else out[..., self.outputs.index(name)]

    @functools.cached_property
    def module(self) -> nn.Module:
        """Built on first use: an ONNX Runtime path read from the cache never builds the torch module."""
        return self.build()


@dataclass(frozen=True)
class ExecutionPath:
    backend: str  # torch-fp32 | torch-bf16 | onnxruntime
    variant: str = ""  # channels_last | CPUExecutionProvider | CUDAExecutionProvider | ""

    @property
    def name(self) -> str:
        return f"{self.backend} ({self.variant})" if self.variant else self.backend

    @property
    def precision(self) -> str:
        return "bf16" if self.backend == "torch-bf16" else "fp32"


@dataclass
class Measurement:
    path: str
    items_per_s: dict[int, float] = field(default_factory=dict)  # batch size -> items/s
    max_prob_diff: float | None = None
    label_agreement: float | None = None
    agrees: bool = False
    error: str | None = None
    max_extra_diff: float | None = None  # further outputs: largest difference relative to fp32's scale

    def score(self) -> tuple[float, float]:
        """(items/s at the largest batch size, at the smallest): capacity under load decides, latency when
        idle breaks ties; (0, 0) if it was not measured."""
        if not self.items_per_s:
            return (0.0, 0.0)
        return (self.items_per_s[max(self.items_per_s)], self.items_per_s[min(self.items_per_s)])


@dataclass
class Choice:
    backend: str
    variant: str
    precision: str
    items_per_s: dict[int, float]
    measured: list[Measurement]
    requested: str
    cached: bool
    machine: str
    note: str = ""

    @property
    def path(self) -> ExecutionPath:
        return ExecutionPath(self.backend, self.variant)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Choice:
        measured = [
            Measurement(**{**m, "items_per_s": {int(k): v for k, v in m["items_per_s"].items()}})
            for m in data["measured"]
        ]
        return cls(**{**data, "measured": measured, "items_per_s": {int(k): v for k, v in data["items_per_s"].items()}})


# ----------------------------------------------------------------------------------------------------------
# candidates
# ----------------------------------------------------------------------------------------------------------
def candidates(spec: ModelSpec, device: torch.device, machine: Machine, ort_available: bool) -> list[ExecutionPath]:
    """The paths worth measuring for ``spec`` on ``device`` (torch fp32 always first: the reference)."""
    paths = [ExecutionPath("torch-fp32")]
    if spec.image:
        paths.append(ExecutionPath("torch-fp32", "channels_last"))
    if bf16_native(device, machine):
        paths.append(ExecutionPath("torch-bf16", "channels_last" if spec.image else ""))
    if ort_available:
        provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
        paths.append(ExecutionPath("onnxruntime", provider))
    return paths


def build_runner(spec: ModelSpec, path: ExecutionPath, device: torch.device, threads: int) -> Runner:
    """A callable for ``path``; raises :class:`BackendError` when it cannot run here."""
    if path.backend in ("torch-fp32", "torch-bf16"):
        module = spec.module
        if path.variant == "channels_last":
            module = copy.deepcopy(spec.module).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        autocast = path.backend == "torch-bf16"

        @torch.inference_mode()
        def run(*inputs: torch.Tensor) -> np.ndarray:
            moved = [t.to(device) for t in inputs]
            if path.variant == "channels_last":
                moved[0] = moved[0].contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = module(*moved)
            return out.float().cpu().numpy()

        return run
    if path.backend == "onnxruntime":
        return _onnx_runner(spec, path.variant, threads)
    raise BackendError(f"unknown backend {path.backend!r}: choose one of {', '.join(BACKENDS)}")


def _onnx_runner(spec: ModelSpec, provider: str, threads: int) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendError(
            "ONNX Runtime is not installed: `pip install onnxruntime` (or choose --backend torch-fp32)."
        ) from exc
    if provider not in ort.get_available_providers():
        raise BackendError(
            f"ONNX Runtime here has no {provider} (available: {', '.join(ort.get_available_providers())}): "
            "install onnxruntime-gpu for CUDA, or choose another backend."
        )
    model = onnx_export(spec)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=[provider])
    if provider not in session.get_providers():  # ORT falls back to the CPU when a provider fails to load
        raise BackendError(
            f"ONNX Runtime could not start its {provider} here (the session runs on "
            f"{', '.join(session.get_providers())}): "
            "check the CUDA / cuDNN libraries onnxruntime-gpu needs, or choose another backend."
        )
    wanted = [i.name for i in session.get_inputs()]  # an unused input (the LSTM's mask) is dropped

    def run(*inputs: torch.Tensor) -> np.ndarray:
        feed = {n: t.cpu().numpy() for n, t in zip(spec.input_names, inputs, strict=True) if n in wanted}
        out: np.ndarray = session.run(None, feed)[0]
        return out.astype(np.float32, copy=False)

    return run


def onnx_export(spec: ModelSpec) -> bytes:
    """The ONNX graph of ``spec.module`` with dynamic batch (and hour) axes; cached beside the choices, keyed
    by the checkpoint's hash, the module's outputs (their names, as a hash when they are many), torch's
    version and this module's cache format, so a graph of another checkpoint or output layout is never read."""
    outputs = "" if spec.outputs == ("logit",) else "-" + _outputs_tag(spec.outputs)
    cached = (
        cache_dir()
        / "onnx"
        / f"{spec.name}-{checkpoint_hash(spec.checkpoint)[:16]}{outputs}-{torch.__version__}-v{CACHE_VERSION}.onnx"
    )
    if cached.is_file():
        return cached.read_bytes()
    example = spec.probe(2)
    output_name = "logit" if spec.outputs == ("logit",) else "outputs"  # one tensor either way
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on shape checks, which the probe then verifies
        target = Path(tmp) / "model.onnx"
        torch.onnx.export(
            copy.deepcopy(spec.module).cpu(),
            example,
            str(target),
            input_names=list(spec.input_names),
            output_names=[output_name],
            dynamic_axes={**spec.dynamic_axes, output_name: spec.dynamic_axes[spec.input_names[0]]},
            dynamo=False,
            opset_version=17,
        )
        data = target.read_bytes()
    with contextlib.suppress(OSError):
        _atomic_write(cached, data)
    return data


# ----------------------------------------------------------------------------------------------------------
# measuring and choosing
# ----------------------------------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def agreement(reference: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[float, float, bool]:
    """(max |probability difference|, share of equal labels, agrees): equal labels are required for every
    item whose reference probability lies farther than PROB_TOLERANCE from the threshold."""
    diff = float(np.max(np.abs(probs - reference))) if reference.size else 0.0
    same = (probs >= threshold) == (reference >= threshold)
    decisive = np.abs(reference - threshold) > PROB_TOLERANCE
    share = float(np.mean(same)) if same.size else 1.0
    return diff, share, diff <= PROB_TOLERANCE and bool(np.all(same[decisive]))


def extra_difference(spec: ModelSpec, reference: np.ndarray, out: np.ndarray, valid: np.ndarray) -> float:
    """Largest difference of the further outputs from the reference's, relative to the reference's largest
    magnitude (per output)."""
    worst = 0.0
    for name in spec.outputs[1:]:
        ref, got = spec.output(reference, name)[valid], spec.output(out, name)[valid]
        scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-6)
        worst = max(worst, float(np.max(np.abs(got - ref))) / scale if ref.size else 0.0)
    return worst


def training_precision(
    step: Callable[[bool], torch.Tensor], requested: str = "auto", trained: Sequence[nn.Module] = ()
) -> tuple[bool, dict[str, float]]:
    """Whether to train under bfloat16 autocast, and the seconds per step measured ({} where none was). ``requested``
    "fp32" or "bf16" is taken as it is; "auto" times one training step on this machine in float32 and under
    bfloat16 autocast, each twice (the first of each warms up): ``step(bf16)`` runs the forward pass under
    autocast when ``bf16`` and returns the loss, whose backward pass is timed with it, and ``trained``'s gradients
    are cleared after. bf16 autocast is 2-3x faster on CPUs with AMX or AVX512-BF16 and several times slower on
    AVX2 alone: never assumed."""
    if requested != "auto":
        return requested == "bf16", {}
    times: dict[str, float] = {}
    for name, bf16 in (("fp32", False), ("bf16", True), ("fp32 again", False), ("bf16 again", True)):
        started = time.perf_counter()
        step(bf16).backward()
        times[name] = time.perf_counter() - started
    for module in trained:
        module.zero_grad(set_to_none=True)
    measured = {"fp32": times["fp32 again"], "bf16": times["bf16 again"]}
    return measured["bf16"] < measured["fp32"], measured


def time_runner(run: Runner, inputs: tuple[torch.Tensor, ...], budget_s: float, max_reps: int = 20) -> float:
    """Median seconds per call: one warm-up, then calls until ``budget_s`` is spent (at least 3)."""
    run(*inputs)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - started < budget_s and len(times) < max_reps):
        t0 = time.perf_counter()
        run(*inputs)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


#: How much faster (items/s at the largest batch) another path must measure to replace torch fp32: timings on a
#: shared machine move by a few percent from one measurement to the next, and a change of path for less is noise.
MARGIN = 1.05


def pick(measured: Sequence[Measurement]) -> Measurement:
    """The agreeing measurement with the best score, where it beats torch fp32 (the first) by :data:`MARGIN`;
    else torch fp32."""
    valid = [m for m in measured if m.agrees and m.error is None and m.score()[0] > 0]
    if not valid:
        return measured[0]
    best = max(valid, key=lambda m: m.score())
    baseline = measured[0]
    if best is not baseline and baseline in valid and best.score()[0] < MARGIN * baseline.score()[0]:
        return baseline
    return best


def measure(
    spec: ModelSpec,
    paths: Sequence[ExecutionPath],
    device: torch.device,
    threads: int,
    budget_s: float = 0.25,
    build: Callable[[ModelSpec, ExecutionPath, torch.device, int], Runner] = build_runner,
) -> tuple[list[Measurement], dict[str, Runner]]:
    """Probe every path (built by ``build``): agreement with the first (torch fp32) on the probe batch, then
    speed at each of the model's batch sizes, the agreeing paths timed in turn, call by call (A B C A B C ...:
    a slower minute of a shared machine falls on every path alike), each path's median kept."""
    probe = spec.probe(max(spec.batch_sizes))
    valid = spec.valid(probe)
    measured: list[Measurement] = []
    runners: dict[str, Runner] = {}
    reference: np.ndarray | None = None
    reference_out: np.ndarray | None = None
    for path in paths:
        m = Measurement(path=path.name)
        measured.append(m)
        try:
            run = build(spec, path, device, threads)
            out = run(*probe)
            probs = _sigmoid(spec.logits(out))[valid]
            if reference is None:
                reference, reference_out = probs, out
            m.max_prob_diff, m.label_agreement, m.agrees = agreement(reference, probs, spec.threshold)
            if len(spec.outputs) > 1:
                assert reference_out is not None
                m.max_extra_diff = extra_difference(spec, reference_out, out, valid)
                m.agrees = m.agrees and m.max_extra_diff <= EXTRA_TOLERANCE
            if m.agrees:
                runners[path.name] = run
        except Exception as exc:  # a path that fails here is simply not a candidate
            _not_a_candidate(spec, m, exc)
    for batch in spec.batch_sizes:
        _time_in_turn(spec, [m for m in measured if m.path in runners], runners, batch, budget_s)
    return measured, runners


def _not_a_candidate(spec: ModelSpec, m: Measurement, exc: Exception) -> None:
    m.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    logger.info("%s: %s is not a candidate (%s)", spec.name, m.path, m.error)


def _time_in_turn(
    spec: ModelSpec, timed: list[Measurement], runners: dict[str, Runner], batch: int, budget_s: float
) -> None:
    """Each of ``timed``'s runners called once in turn per round (one warm-up call first), for at least 3 rounds
    and until ``budget_s`` per path is spent (at most 20); its median seconds per call become items/s. A runner
    that fails is dropped from ``runners`` with its error."""
    inputs = spec.probe(batch)
    times: dict[str, list[float]] = {m.path: [] for m in timed}
    live = list(timed)

    def called(m: Measurement) -> bool:
        """``m``'s runner called once; False, and ``m`` dropped with its error, when it fails."""
        try:
            runners[m.path](*inputs)
        except Exception as exc:
            _not_a_candidate(spec, m, exc)
            live.remove(m)
            del runners[m.path]
            return False
        return True

    for m in list(live):
        called(m)  # the warm-up
    started, rounds = time.perf_counter(), 0
    while live and (rounds < 3 or (time.perf_counter() - started < budget_s * len(live) and rounds < 20)):
        for m in list(live):
            t0 = time.perf_counter()
            if called(m):
                times[m.path].append(time.perf_counter() - t0)
        rounds += 1
    for m in live:
        m.items_per_s[batch] = batch / float(np.median(times[m.path]))


def choose(
    spec: ModelSpec, requested: str = "auto", device: torch.device | None = None, threads: int | None = None
) -> tuple[Choice, Runner]:
    """The execution path of ``spec``: the fastest agreeing one (``auto``, cached per machine) or the one
    asked for (checked: :class:`BackendError` when it cannot run here)."""
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    device = device or torch.device("cpu")
    threads = threads or torch.get_num_threads()
    machine = this_machine()
    ort_version = onnxruntime_version()
    if requested != "auto":
        return _explicit(spec, requested, device, threads, machine)
    key = cache_key(spec, device, threads, machine, ort_version)
    cached = read_cache().get(key)
    if cached is not None:
        choice = Choice.from_json(cached)
        with contextlib.suppress(Exception):
            run = build_runner(spec, choice.path, device, threads)
            choice.cached = True
            return choice, run
    paths = candidates(spec, device, machine, ort_version is not None)
    measured, runners = measure(spec, paths, device, threads)
    best = pick(measured)
    path = next(p for p in paths if p.name == best.path)
    run = runners.get(path.name) or build_runner(spec, paths[0], device, threads)
    choice = Choice(
        backend=path.backend,
        variant=path.variant,
        precision=path.precision,
        items_per_s=dict(best.items_per_s),
        measured=measured,
        requested=requested,
        cached=False,
        machine=where(device, machine),
    )
    write_cache(key, choice)
    logger.info("%s runs on %s (%s)", spec.name, path.name, _summary(measured))
    return choice, run


def _explicit(
    spec: ModelSpec, requested: str, device: torch.device, threads: int, machine: Machine
) -> tuple[Choice, Runner]:
    note = ""
    if requested == "torch-bf16":
        path = ExecutionPath("torch-bf16", "channels_last" if spec.image else "")
        if not bf16_native(device, machine):
            note = (
                f"bf16 is not native on {machine.describe() if device.type == 'cpu' else device}: it runs "
                "emulated, usually several times slower than torch-fp32"
            )
            warnings.warn(f"{spec.name}: {note}", RuntimeWarning, stacklevel=3)
    elif requested == "onnxruntime":
        path = ExecutionPath(
            "onnxruntime", "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
        )
    else:
        path = ExecutionPath("torch-fp32", "channels_last" if spec.image else "")
    run = build_runner(spec, path, device, threads)
    choice = Choice(
        backend=path.backend,
        variant=path.variant,
        precision=path.precision,
        items_per_s={},
        measured=[],
        requested=requested,
        cached=False,
        machine=where(device, machine),
        note=note,
    )
    return choice, run


def _summary(measured: Sequence[Measurement]) -> str:
    parts = []
    for m in measured:
        if m.error:
            parts.append(f"{m.path}: failed")
        elif not m.agrees:
            extra = f", further outputs {m.max_extra_diff:.3g}" if m.max_extra_diff is not None else ""
            parts.append(f"{m.path}: disagrees (max diff {m.max_prob_diff:.3g}{extra})")
        else:
            parts.append(f"{m.path}: {m.score()[0]:.0f}/s")
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------------------
# the per-machine cache
# ----------------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medlens"


def _outputs_tag(outputs: tuple[str, ...]) -> str:
    """File-name part for a module's outputs: their names joined, or a hash of them when that is long."""
    joined = "+".join(outputs)
    return joined if len(joined) <= 40 else f"{len(outputs)}out-{hashlib.sha256(joined.encode()).hexdigest()[:12]}"


def checkpoint_hash(path: Path) -> str:
    """SHA-256 of the checkpoint file, read once per file version (the cache key and the ONNX export's file
    name both need it at every load)."""
    try:
        stat = path.stat()
    except OSError:
        return _file_hash(str(path), 0, -1)
    return _file_hash(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(spec: ModelSpec, device: torch.device, threads: int, machine: Machine, ort_version: str | None) -> str:
    """Changes with the CPU (model, flags), the device, threads, torch / ONNX Runtime / numpy versions,
    the checkpoint, the model's outputs, the batch sizes and this module's cache format."""
    parts = {
        "v": CACHE_VERSION,
        "model": spec.name,
        "checkpoint": checkpoint_hash(spec.checkpoint)[:16],
        "cpu": machine.cpu,
        "flags": list(machine.flags),
        "isa_limit": machine.isa_limit,
        "device": device_name(device),
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "numpy": np.__version__,
        "batches": list(spec.batch_sizes),
        "outputs": list(spec.outputs),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def read_cache() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / "backends.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(key: str, choice: Choice) -> None:
    """Add one entry (read, update, atomic replace: concurrent replicas at worst probe twice)."""
    data = read_cache()
    data[key] = choice.to_json()
    with contextlib.suppress(OSError):
        _atomic_write(cache_dir() / "backends.json", json.dumps(data, indent=1).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


__all__ = [
    "BACKENDS",
    "EXTRA_TOLERANCE",
    "PROB_TOLERANCE",
    "BackendError",
    "BackendName",
    "Choice",
    "ExecutionPath",
    "Machine",
    "Measurement",
    "ModelSpec",
    "agreement",
    "cache_key",
    "candidates",
    "choose",
    "pick",
    "this_machine",
]
