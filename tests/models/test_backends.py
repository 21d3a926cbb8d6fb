"""The execution path of each model, chosen by measurement: the choice logic on fake timings, a candidate
that changes labels is refused, the cache key, explicit backends, and real choices on the committed weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import backends
from models.backends import (
    BackendError,
    ExecutionPath,
    Machine,
    Measurement,
    ModelSpec,
    agreement,
    build_runner,
    cache_key,
    candidates,
    choose,
    measure,
    pick,
    this_machine,
)
from models.catalogue import entry

CPU = torch.device("cpu")
PLAIN = Machine(cpu="Test CPU", flags=("avx2", "fma"))
BF16 = Machine(cpu="Test CPU", flags=("avx2", "fma", "avx512f", "avx512_bf16"))


@pytest.fixture(scope="module")
def cnn_spec() -> ModelSpec:
    return entry("cnn").load(device="cpu", backend="torch-fp32").spec()


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path / "cache"))


# -- the choice logic, on fake timings -------------------------------------------------------------------------
def test_the_fastest_agreeing_path_wins() -> None:
    measured = [
        Measurement("torch-fp32", {1: 100.0, 16: 200.0}, 0.0, 1.0, True),
        Measurement("torch-bf16", {1: 150.0, 16: 600.0}, 0.004, 1.0, True),
        Measurement("onnxruntime", {1: 400.0, 16: 250.0}, 1e-6, 1.0, True),
    ]
    # the most items/s at the largest served batch (capacity under load) wins, whatever batch 1 says
    assert pick(measured).path == "torch-bf16"
    measured[2].items_per_s = {1: 300.0, 16: 600.0}  # a tie at batch 16: the faster batch 1 decides
    assert pick(measured).path == "onnxruntime"


def test_fast_but_disagreeing_or_failed_paths_never_win() -> None:
    measured = [
        Measurement("torch-fp32", {1: 100.0, 16: 200.0}, 0.0, 1.0, True),
        Measurement("torch-bf16", {1: 9000.0, 16: 9000.0}, 0.3, 0.9, False),
        Measurement("onnxruntime", {}, None, None, False, "RuntimeError: no provider"),
    ]
    assert pick(measured).path == "torch-fp32"


def test_agreement_needs_close_probabilities_and_the_same_decisive_labels() -> None:
    ref = np.array([0.10, 0.371, 0.90])
    # within tolerance everywhere; the item at the threshold may flip
    assert agreement(ref, np.array([0.11, 0.369, 0.89]), 0.371)[2]
    # a decisive label flips
    assert not agreement(ref, np.array([0.10, 0.371, 0.30]), 0.371)[2]
    # probabilities drift beyond the tolerance without a label change
    assert not agreement(ref, np.array([0.05, 0.371, 0.90]), 0.371)[2]


def test_candidates_follow_the_hardware() -> None:
    spec_image = ModelSpec("x", torch.nn.Identity, ("x",), {}, lambda b: (), lambda i: np.ones(0), 0.5, (1,), True,
                           Path("/nonexistent"))  # fmt: skip
    names = [p.name for p in candidates(spec_image, CPU, PLAIN, ort_available=True)]
    assert names == ["torch-fp32", "torch-fp32 (channels_last)", "onnxruntime (CPUExecutionProvider)"]
    names = [p.name for p in candidates(spec_image, CPU, BF16, ort_available=False)]
    assert names == ["torch-fp32", "torch-fp32 (channels_last)", "torch-bf16 (channels_last)"]


# -- a deliberately wrong candidate is refused ------------------------------------------------------------------
def test_a_candidate_that_changes_labels_is_rejected(cnn_spec: ModelSpec) -> None:
    def build(spec: ModelSpec, path: ExecutionPath, device: torch.device, threads: int) -> backends.Runner:
        right = build_runner(spec, ExecutionPath("torch-fp32"), device, threads)
        if path.backend == "onnxruntime":  # "fast" and wrong: the logits' sign flipped
            return lambda *inputs: -right(*inputs)
        return right

    paths = [ExecutionPath("torch-fp32"), ExecutionPath("onnxruntime", "CPUExecutionProvider")]
    measured, runners = measure(cnn_spec, paths, CPU, 1, budget_s=0.05, build=build)
    assert measured[0].agrees and not measured[1].agrees
    assert measured[1].label_agreement is not None and measured[1].label_agreement < 0.5
    assert "onnxruntime (CPUExecutionProvider)" not in runners
    assert pick(measured).path == "torch-fp32"


def test_a_candidate_that_changes_the_ood_score_is_rejected(cnn_spec: ModelSpec) -> None:
    """Same logits, an OOD score 10 % off: the path would move in-distribution decisions, so it is refused."""
    if len(cnn_spec.outputs) < 2:
        pytest.skip("the committed CNN checkpoint is not calibrated (python -m models.calibrate cnn)")

    scale = np.ones(len(cnn_spec.outputs), dtype=np.float32)  # logit, ood_score[, each ensemble member's logit]
    scale[cnn_spec.outputs.index("ood_score")] = 1.1

    def build(spec: ModelSpec, path: ExecutionPath, device: torch.device, threads: int) -> backends.Runner:
        right = build_runner(spec, ExecutionPath("torch-fp32"), device, threads)
        if path.backend == "onnxruntime":
            return lambda *inputs: right(*inputs) * scale
        return right

    paths = [ExecutionPath("torch-fp32"), ExecutionPath("onnxruntime", "CPUExecutionProvider")]
    measured, runners = measure(cnn_spec, paths, CPU, 1, budget_s=0.05, build=build)
    assert measured[0].agrees and measured[0].max_extra_diff == 0.0
    assert measured[1].label_agreement == 1.0 and measured[1].max_prob_diff == 0.0  # the logits agree
    assert measured[1].max_extra_diff == pytest.approx(0.1, rel=1e-3) and not measured[1].agrees
    assert "onnxruntime (CPUExecutionProvider)" not in runners


# -- the cache --------------------------------------------------------------------------------------------------
def test_cache_key_changes_with_the_machine_and_the_libraries(
    cnn_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = cache_key(cnn_spec, CPU, 1, PLAIN, "1.32.0")
    assert key == cache_key(cnn_spec, CPU, 1, PLAIN, "1.32.0")
    assert key != cache_key(cnn_spec, CPU, 1, BF16, "1.32.0")  # CPU flags
    assert key != cache_key(cnn_spec, CPU, 1, Machine("Other CPU", PLAIN.flags), "1.32.0")  # CPU model
    assert key != cache_key(cnn_spec, CPU, 1, PLAIN, "1.33.0")  # ONNX Runtime
    assert key != cache_key(cnn_spec, CPU, 1, PLAIN, None)
    assert key != cache_key(cnn_spec, CPU, 2, PLAIN, "1.32.0")  # threads
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert key != cache_key(cnn_spec, CPU, 1, PLAIN, "1.32.0")  # torch


def test_cache_key_and_onnx_file_change_with_the_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A choice or an exported graph made for one output layout (the mean logit alone) is never reused for
    another (the mean and every fold member): both are keyed by the outputs."""
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path))
    spec = entry("lstm").load(device="cpu", backend="torch-fp32").spec()
    assert spec.outputs == ("logit", *(f"member_{k}" for k in range(5)))
    mean_only = ModelSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "outputs": ("logit",)})
    assert cache_key(spec, CPU, 1, PLAIN, "1.32.0") != cache_key(mean_only, CPU, 1, PLAIN, "1.32.0")
    backends.onnx_export(spec)
    (graph,) = (tmp_path / "onnx").iterdir()
    assert f"-{len(spec.outputs)}out-" in graph.name and f"-v{backends.CACHE_VERSION}.onnx" in graph.name
    assert backends._outputs_tag(spec.outputs) != backends._outputs_tag(spec.outputs[:-1])


@pytest.mark.parametrize(
    ("limit", "bf16"),
    [
        ("AVX2", False),
        ("avx512_core_vnni", False),
        ("AVX512_CORE_BF16", True),
        ("AVX512_CORE_FP16", True),
        ("ALL", True),
        ("", True),
    ],
)
def test_a_onednn_isa_limit_removes_the_flags_it_forbids(
    limit: str, bf16: bool, cnn_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test EPYC\nflags\t\t: fpu avx2 fma avx512f avx512_vnni avx512_bf16\n")
    real_path = backends.Path
    monkeypatch.setattr(backends, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    machine = this_machine()
    assert machine.cpu == "Test EPYC"
    assert machine.bf16_native is bf16
    assert ("avx2" in machine.flags) and (machine.isa_limit != "") is (not bf16)
    assert ("avx512_vnni" in machine.flags) is (limit.upper() not in ("AVX2",))  # VNNI's own level keeps VNNI
    if not bf16:  # the limit is part of the cache key, and said wherever the machine is described
        assert limit.upper() in machine.describe()
        unlimited = Machine(machine.cpu, ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"))
        assert "torch-bf16" not in {p.backend for p in candidates(cnn_spec, CPU, machine, True)}
        assert "torch-bf16" in {p.backend for p in candidates(cnn_spec, CPU, unlimited, True)}
        limited_flags_only = Machine(machine.cpu, machine.flags)
        assert cache_key(cnn_spec, CPU, 1, machine, None) != cache_key(cnn_spec, CPU, 1, limited_flags_only, None)


def test_the_choice_is_measured_once_then_read_from_the_cache(cnn_spec: ModelSpec) -> None:
    first, run = choose(cnn_spec, "auto", CPU, 1)
    assert not first.cached and len(first.measured) >= 2
    assert first.measured[0].path == "torch-fp32" and first.measured[0].agrees
    assert first.backend in {"torch-fp32", "torch-bf16", "onnxruntime"}
    assert all(v > 0 for v in first.items_per_s.values())
    second, _ = choose(cnn_spec, "auto", CPU, 1)
    assert second.cached and (second.backend, second.variant) == (first.backend, first.variant)
    probe = cnn_spec.probe(4)
    reference = build_runner(cnn_spec, ExecutionPath("torch-fp32"), CPU, 1)(*probe)
    got = run(*probe)
    np.testing.assert_allclose(
        1 / (1 + np.exp(-cnn_spec.logits(got))), 1 / (1 + np.exp(-cnn_spec.logits(reference))), atol=0.02
    )
    for name in cnn_spec.outputs[1:]:  # the OOD score travels on the chosen path too
        ref = cnn_spec.output(reference, name)
        np.testing.assert_allclose(cnn_spec.output(got, name), ref, atol=0.02 * float(np.abs(ref).max()))


# -- explicit backends --------------------------------------------------------------------------------------
def test_explicit_bf16_without_native_support_warns_and_still_runs(
    cnn_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "this_machine", lambda: PLAIN)
    with pytest.warns(RuntimeWarning, match="emulated"):
        choice, run = choose(cnn_spec, "torch-bf16", CPU, 1)
    assert choice.backend == "torch-bf16" and "emulated" in choice.note
    assert run(*cnn_spec.probe(2)).shape == ((2,) if len(cnn_spec.outputs) == 1 else (2, len(cnn_spec.outputs)))


def test_a_backend_the_machine_cannot_run_is_an_error(cnn_spec: ModelSpec) -> None:
    with pytest.raises(BackendError, match="CUDAExecutionProvider"):
        build_runner(cnn_spec, ExecutionPath("onnxruntime", "CUDAExecutionProvider"), CPU, 1)
    with pytest.raises(BackendError, match="unknown backend"):
        choose(cnn_spec, "tensorrt", CPU, 1)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_sequence_models_agree_on_every_path_they_keep(name: str) -> None:
    """Variable-length records through every candidate (ONNX export with dynamic batch and hour axes)."""
    predictor = entry(name).load(device="cpu", backend="auto")
    choice = predictor.execution
    measured = {m.path: m for m in choice.measured}
    assert measured["torch-fp32"].agrees
    ort = measured.get("onnxruntime (CPUExecutionProvider)")
    assert ort is not None and ort.error is None and ort.agrees, ort
    assert ort.max_prob_diff is not None and ort.max_prob_diff < 1e-4  # fp32 either way
    fp32 = entry(name).load(device="cpu", backend="torch-fp32")
    raw = [np.random.default_rng(i).normal(80, 10, size=(h, 40)).astype(np.float32) for i, h in enumerate((3, 30))]
    for r in raw:
        r[:, 2:] = np.nan
    for got, want in zip(predictor.predict(raw), fp32.predict(raw), strict=True):
        np.testing.assert_allclose(got, want, atol=0.02)


def test_cuda_candidates_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CUDA device: bf16 when the card has it, ONNX Runtime through the CUDA provider (no GPU needed to
    check the list; running it is checked where a GPU is)."""
    spec = entry("lstm").load(device="cpu", backend="torch-fp32").spec()
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    names = [p.name for p in candidates(spec, cuda, PLAIN, ort_available=True)]
    assert names == ["torch-fp32", "torch-bf16", "onnxruntime (CUDAExecutionProvider)"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    names = [p.name for p in candidates(spec, cuda, BF16, ort_available=False)]
    assert names == ["torch-fp32"]  # the CPU's bf16 says nothing about the card's


def test_auto_on_a_gpu_chooses_among_the_cuda_candidates_once_per_card(monkeypatch: pytest.MonkeyPatch) -> None:
    """The choice logic on a CUDA device, on fake timings (no GPU needed): the card's candidates are measured,
    the fastest agreeing one wins, the choice names the card and is cached under its name (another card
    measures again)."""
    spec = entry("lstm").load(device="cpu", backend="torch-fp32").spec()
    cuda = torch.device("cuda", 0)
    card = ["NVIDIA H200"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: card[0])
    monkeypatch.setattr(backends, "onnxruntime_version", lambda: "1.30.0")
    monkeypatch.setattr(backends, "this_machine", lambda: PLAIN)
    measured_paths: list[list[str]] = []
    speed = {"torch-fp32": 1000.0, "torch-bf16": 3000.0, "onnxruntime (CUDAExecutionProvider)": 5000.0}

    def fake_measure(
        spec: ModelSpec, paths: list[ExecutionPath], device: torch.device, threads: int
    ) -> tuple[list[Measurement], dict[str, backends.Runner]]:
        assert device == cuda
        measured_paths.append([p.name for p in paths])
        measured = [Measurement(p.name, {1: speed[p.name] / 10, 16: speed[p.name]}, 0.0, 1.0, True) for p in paths]
        measured[2].agrees = len(measured_paths) == 1  # the ORT path disagrees on the second card
        return measured, {p.name: (lambda *inputs: np.zeros(1, np.float32)) for p in paths}

    built: list[tuple[str, torch.device]] = []

    def fake_build(spec: ModelSpec, path: ExecutionPath, device: torch.device, threads: int) -> backends.Runner:
        built.append((path.name, device))
        return lambda *inputs: np.zeros(1, np.float32)

    monkeypatch.setattr(backends, "measure", fake_measure)
    monkeypatch.setattr(backends, "build_runner", fake_build)
    first, _ = choose(spec, "auto", cuda, 1)
    assert measured_paths == [["torch-fp32", "torch-bf16", "onnxruntime (CUDAExecutionProvider)"]]
    assert (first.backend, first.variant, first.cached) == ("onnxruntime", "CUDAExecutionProvider", False)
    assert first.machine.startswith("NVIDIA H200 (cuda:0) on Test CPU")
    again, _ = choose(spec, "auto", cuda, 1)  # a second replica on the same card: read from the cache
    assert again.cached and again.path == first.path and len(measured_paths) == 1
    assert built == [("onnxruntime (CUDAExecutionProvider)", cuda)]
    card[0] = "NVIDIA A100-SXM4-80GB"  # another card: measured again
    other, _ = choose(spec, "auto", cuda, 1)
    assert len(measured_paths) == 2 and not other.cached
    assert (other.backend, other.precision) == ("torch-bf16", "bf16")  # ORT disagreed there
    assert cache_key(spec, cuda, 1, PLAIN, "1.30.0") != cache_key(spec, CPU, 1, PLAIN, "1.30.0")


def test_an_onnx_session_that_fell_back_to_the_cpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime quietly runs on its CPU provider when the CUDA one cannot load (missing CUDA / cuDNN
    libraries): such a session is not the CUDA path it was asked for."""
    ort = pytest.importorskip("onnxruntime")
    spec = entry("lstm").load(device="cpu", backend="torch-fp32").spec()

    class FellBack:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FellBack)
    monkeypatch.setattr(backends, "onnx_export", lambda spec: b"")
    with pytest.raises(BackendError, match="could not start its CUDAExecutionProvider"):
        build_runner(spec, ExecutionPath("onnxruntime", "CUDAExecutionProvider"), torch.device("cuda", 0), 1)


def test_a_cached_onnx_path_never_builds_the_torch_module() -> None:
    """A replica whose predictions run on a cached ONNX Runtime path skips building the torch module (and the
    import of `transformers` it needs): it is built only for explanations."""
    first = entry("transformer").load(device="cpu", backend="onnxruntime")
    first.predict([np.full((3, 40), np.nan, dtype=np.float32)])  # exports the graph once (cached on disk)
    again = entry("transformer").load(device="cpu", backend="onnxruntime")
    (risk,) = again.predict([np.full((3, 40), np.nan, dtype=np.float32)])
    assert risk.shape == (3,)
    assert again._model is None  # the predictions never needed it
    assert again.model is not None and again._model is not None  # built on demand (explanations)


def test_another_path_must_beat_fp32_by_the_margin() -> None:
    """Timings on a shared machine move by a few percent: a path 2 % faster than torch fp32 is noise, 10 % is not."""
    fp32 = Measurement("torch-fp32", {1: 100.0, 16: 200.0}, 0.0, 1.0, True)
    close = Measurement("onnxruntime", {1: 100.0, 16: 204.0}, 1e-6, 1.0, True)
    assert pick([fp32, close]).path == "torch-fp32"
    close.items_per_s = {1: 100.0, 16: 220.0}
    assert pick([fp32, close]).path == "onnxruntime"


def test_the_paths_are_timed_in_turn_call_by_call() -> None:
    """Every agreeing path is timed in rounds (A B A B ...), each after one warm-up, so that a slow minute of a
    shared machine falls on every path alike; a path whose answers disagree is never timed."""
    spec = entry("lstm").load(device="cpu", backend="torch-fp32").spec()
    real = backends.build_runner(spec, ExecutionPath("torch-fp32"), CPU, 1)
    calls: list[str] = []

    def build(spec: ModelSpec, path: ExecutionPath, device: torch.device, threads: int) -> backends.Runner:
        def run(*inputs: torch.Tensor) -> np.ndarray:
            calls.append(path.name)
            out = real(*inputs)
            return -out if path.backend == "onnxruntime" else out  # the ONNX stand-in disagrees

        return run

    paths = [ExecutionPath("torch-fp32"), ExecutionPath("torch-bf16"), ExecutionPath("onnxruntime")]
    measured, runners = backends.measure(spec, paths, CPU, 1, budget_s=0.0, build=build)
    assert set(runners) == {"torch-fp32", "torch-bf16"} and not measured[2].agrees
    timed = calls[3:]  # after the three probe calls
    per_batch = len(spec.batch_sizes)
    assert len(timed) == per_batch * 2 * (1 + 3)  # a warm-up and three rounds of both, at each batch size
    assert timed[:8] == ["torch-fp32", "torch-bf16"] * 4
    assert all(m.items_per_s.keys() == set(spec.batch_sizes) for m in measured[:2])
