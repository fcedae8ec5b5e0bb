"""CPU precisions: half-precision weights converted once, int8 convolutions, `--precision auto`'s choice."""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint_cli.engine import auto_precision, precision
from inpaint_cli.engine import inpainter as engine
from inpaint_cli.engine.auto_precision import Measurement, decide
from inpaint_cli.engine.device import select_precision
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.runner import Runner
from inpaint_cli.errors import UsageError
from inpaint_cli.models.base import KERNEL_ATTRIBUTE
from inpaint_cli.models.ffc import FourierUnit
from inpaint_cli.options import Precision

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FIXTURES = {
    "lama": ("lama/small.ckpt", "lama", "lama/case_b"),
    "gatedconv-pt": ("deepfill/pt_random.pth", "gatedconv", "deepfill/pt_case_c"),
    "gatedconv-tf": ("deepfill/tf_random.pth", "gatedconv", "deepfill/tf_case_c"),
    "pconv": ("pconv/small.pth", "pconv", "pconv/case_b"),
}
TARGET = 1.0
"""Issue 19: mean difference from fp32 inside the hole under 1/255 (0..255 levels), with the official
fixtures' weights and with the bundled models."""
PCONV_FIXTURE_LAYERS = 5
"""The PConv fixture's quantizable convolutions: its random weights (scaled up by √fan-in, SPEC §7.1)
saturate most output pixels, which flip between 0 and 255 under int8 rounding of any one of them."""


@pytest.fixture(scope="module", autouse=True)
def plans_in_a_temporary_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """int8 loads keep their plans in the cache folder: a temporary one, not the user's."""
    before = os.environ.get("INPAINT_HOME")
    os.environ["INPAINT_HOME"] = str(tmp_path_factory.mktemp("home"))
    yield
    if before is None:
        del os.environ["INPAINT_HOME"]
    else:
        os.environ["INPAINT_HOME"] = before


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _read(path: Path, grey: bool = False) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("L" if grey else "RGB"))


def _hole_difference(
    reference: Inpainter, other: Inpainter, pixels: np.ndarray, hole: np.ndarray
) -> np.ndarray:
    expected = reference.inpaint(pixels, hole).pixels.astype(np.int32)
    filled = other.inpaint(pixels, hole).pixels.astype(np.int32)
    assert np.array_equal(filled[~hole], pixels[~hole]), "pixels outside the hole changed"
    return np.abs(filled - expected)[hole]


def _fixture(name: str, precision_name: str) -> Inpainter:
    checkpoint, family, _ = FIXTURES[name]
    return Inpainter.from_checkpoint(DATA / checkpoint, family, device="cpu", precision=precision_name)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_int8_fill_meets_the_target_on_the_official_fixtures(name: str) -> None:
    case = DATA / FIXTURES[name][2]
    pixels, hole = _read(Path(f"{case}_image.png")), _read(Path(f"{case}_mask.png"), grey=True) > 127
    int8 = _fixture(name, "int8")
    assert int8.precision == "int8" and int8.dtype_label == "int8"
    difference = _hole_difference(_fixture(name, "fp32"), int8, pixels, hole)
    assert difference.mean() < TARGET, difference.mean()
    plan = int8.int8_plan
    assert plan is not None and plan.hole_error <= precision.INT8_HOLE_ERROR
    if name == "pconv":  # nothing of it can be int8 within the bound: all of it stays float, and says so
        assert plan.quantized == () and len(plan.kept_float) == PCONV_FIXTURE_LAYERS
        assert int8.precision_summary == "int8 (0 of 5 convolutions, 5 kept in float for accuracy)"
        assert difference.max() == 0
    else:
        assert plan.quantized and difference.mean() > 0


def _predict(network: torch.nn.Module) -> precision.Predict:
    return Runner(network, torch.device("cpu"), torch.float32, "x").predict


def _mean_error(output: torch.Tensor, reference: torch.Tensor, hole: torch.Tensor) -> float:
    return float((output - reference).abs()[hole.expand_as(output) > 0].mean())


def test_int8_keeps_the_most_sensitive_layers_float_as_few_as_the_bound_allows() -> None:
    network = _fixture("lama", "fp32").network
    unguarded = copy.deepcopy(network)
    everything = precision.quantize_int8(unguarded, _predict(unguarded), max_hole_error=math.inf)
    assert (
        everything.kept_float == () and len(everything.quantized) == 20 and math.isnan(everything.hole_error)
    )
    inputs = list(precision.calibration_inputs())
    unguarded_error = sum(
        _mean_error(_predict(unguarded)(x, h), _predict(network)(x, h), h) for x, h in inputs
    )
    assert (
        unguarded_error / len(inputs) > precision.INT8_HOLE_ERROR
    )  # the fixture's random weights need the guard
    guarded = copy.deepcopy(network)
    plan = precision.quantize_int8(guarded, _predict(guarded))
    assert 0 < len(plan.kept_float) < 20 and plan.hole_error <= precision.INT8_HOLE_ERROR
    assert sorted(plan.quantized + plan.kept_float) == sorted(everything.quantized)
    quantized = {name for name, module in guarded.named_modules() if KERNEL_ATTRIBUTE in module.__dict__}
    assert quantized == set(plan.quantized)
    # With the last layer the bisection kept in float back in int8, the calibration error grows.
    fewer = copy.deepcopy(network)
    smaller = precision.Int8Plan(plan.quantized + plan.kept_float[-1:], plan.kept_float[:-1], 0.0)
    precision.quantize_int8(fewer, _predict(fewer), known=smaller)
    errors = []
    for candidate in (guarded, fewer):
        outputs = [
            (_predict(candidate)(x, h), _predict(network)(x, h), h) for x, h in precision.calibration_inputs()
        ]
        errors.append(sum(_mean_error(*triple) for triple in outputs))
    assert errors[0] < errors[1]


def test_int8_plan_is_kept_and_the_next_load_does_not_calibrate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INPAINT_HOME", str(tmp_path))
    first = _fixture("lama", "int8")
    stored = json.loads((tmp_path / auto_precision.PLANS_NAME).read_text())
    (entry,) = stored.values()
    assert sorted(entry["quantized"]) == sorted(first.int8_plan.quantized)
    monkeypatch.setattr(precision, "calibration_inputs", lambda *a: pytest.fail("calibrated again"))
    second = _fixture("lama", "int8")
    assert second.int8_plan == first.int8_plan
    image = _read(EXAMPLES / "portrait_damaged.png")
    hole = _read(EXAMPLES / "portrait_mask.png", grey=True) > 127
    assert np.array_equal(first.inpaint(image, hole).pixels, second.inpaint(image, hole).pixels)
    # A plan made for the other weight range (a CPU whose kernel saturates, or one whose does not) is
    # no plan for this one: it is made again.
    path, (model,) = tmp_path / auto_precision.PLANS_NAME, stored
    assert auto_precision.known_int8_plan(path, model) == first.int8_plan
    other = {precision.INT8_LEVELS: precision.SATURATION_SAFE_LEVELS}.get(entry["weight_levels"], 127)
    path.write_text(json.dumps({model: {**entry, "weight_levels": other}}))
    assert auto_precision.known_int8_plan(path, model) is None


def test_int8_input_range_follows_each_call() -> None:
    """Activations of one photo say little about another's: inputs 10,000x apart are both resolved."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 16, 3, padding=1, bias=False).eval()
    kernel = precision.Int8Convolution(conv)
    for amplitude in (0.01, 1.0, 100.0):
        x = torch.randn(1, 32, 24, 24) * amplitude
        with torch.inference_mode():
            expected = conv(x)
            got = kernel(x, 1)
        assert float((got - expected).norm() / expected.norm()) < 0.02, amplitude


@pytest.mark.parametrize("name", ["lama-tiny", "gatedconv-tiny", "pconv-tiny"])
def test_int8_meets_the_target_with_the_bundled_models(name: str) -> None:
    pixels = _read(EXAMPLES / "portrait_damaged.png")
    hole = _read(EXAMPLES / "portrait_mask.png", grey=True) > 127
    fp32 = Inpainter.from_name(name, device="cpu", precision="fp32")
    int8 = Inpainter.from_name(name, device="cpu", precision="int8")
    difference = _hole_difference(fp32, int8, pixels, hole)
    assert 0 < difference.mean() < TARGET, difference.mean()


def test_int8_quantizes_the_blocks_and_keeps_encoder_fourier_units_and_output_in_float() -> None:
    network = _fixture("lama", "int8").network
    quantized = {name for name, module in network.named_modules() if KERNEL_ATTRIBUTE in module.__dict__}
    blocks = {f"model.{index}" for index in (5, 6)}  # the fixture's two FFC resnet blocks
    assert quantized and all(name.split(".conv")[0] in blocks for name in quantized), quantized
    fourier = [m.conv_layer for m in network.modules() if isinstance(m, FourierUnit)]
    assert fourier and not any(KERNEL_ATTRIBUTE in conv.__dict__ for conv in fourier)
    assert all(isinstance(k, precision.Int8Convolution) for k in _kernels(network))


def _kernels(network: torch.nn.Module) -> list[object]:
    return [m.__dict__[KERNEL_ATTRIBUTE] for m in network.modules() if KERNEL_ATTRIBUTE in m.__dict__]


def test_int8_padding_is_exact_at_the_border() -> None:
    """Zero and reflect padding happen in float, so a padded zero is exactly the zero point."""
    torch.manual_seed(0)
    for mode in ("zeros", "reflect"):
        conv = torch.nn.Conv2d(32, 16, 3, padding=1, padding_mode=mode).eval()
        x = torch.rand(1, 32, 20, 24) + 0.5  # all positive: zero lies outside the data, at code 0
        kernel = precision.Int8Convolution(conv)
        with torch.inference_mode():
            expected = conv(x)
            precision.attach(conv, kernel)
            got = conv(x)
            precision.attach(conv, None)
            assert torch.equal(conv(x), expected)  # detached again
        error = (got - expected).abs()
        # The border rows are no worse than the interior: padding adds no error of its own.
        assert float(error[..., 0, :].mean()) < 2 * float(error[..., 5:-5, 5:-5].mean())
        assert float(error.max()) < 0.02 * float(expected.abs().max())


def test_int8_largest_codes_are_exact() -> None:
    """Every input at the top of its range times every weight at the top of its: the case a kernel
    summing products in 16 bits (CPUs without VNNI) clips, which would halve this output."""
    conv = torch.nn.Conv2d(32, 16, 3, padding=1, bias=False).eval()
    torch.nn.init.constant_(conv.weight, 0.25)
    x = torch.ones(1, 32, 8, 8)
    with torch.inference_mode():
        expected, got = conv(x), precision.Int8Convolution(conv)(x, 1)
    assert float((got - expected).abs().max()) < 1e-4 * float(expected.max()), (got.max(), expected.max())


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="ONEDNN_MAX_CPU_ISA is an x86 setting"
)
def test_int8_holds_on_a_cpu_without_vnni() -> None:
    """The int8 kernel tests again with oneDNN limited to AVX2, as on CPUs without VNNI (issue 30: they
    failed there every time); the limit must be set before oneDNN's first call, hence new processes."""
    environment = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    probe = "from inpaint_cli.engine import precision; print(precision.weight_levels())"
    levels = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, timeout=120
    )
    assert levels.stdout.strip() == str(precision.SATURATION_SAFE_LEVELS), levels.stderr[-2000:]
    selected = "input_range_follows_each_call or padding_is_exact or largest_codes_are_exact"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", selected]
    tests = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout[-3000:]


def test_int8_needs_the_cpu() -> None:
    with pytest.raises(UsageError, match="CPU only"):
        select_precision("int8", torch.device("cuda"))
    with pytest.raises(UsageError) as caught:
        select_precision("int4", torch.device("cpu"))
    assert caught.value.hint == "use auto, fp32, fp16, bf16 or int8"
    assert Precision("int8") is Precision.INT8


# --- half precision ---------------------------------------------------------------------------------------


def test_bf16_converts_weights_once_and_matches_the_autocast_path_exactly() -> None:
    """Converted once, the weights are what autocast made of them on every pass: same output, bit for bit."""
    converted = _fixture("lama", "bf16")
    network = converted.network
    encoder = {id(p) for m in network.float_modules("bf16") for p in m.parameters()}
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            expected = torch.float32 if id(module.weight) in encoder else torch.bfloat16
            assert module.weight.dtype == expected, module
    assert encoder and any(p.dtype == torch.bfloat16 for p in network.parameters())
    float_weights = _fixture("lama", "fp32").network
    autocast = Runner(float_weights, torch.device("cpu"), torch.bfloat16, "autocast per pass")
    image, hole = next(iter(precision.calibration_inputs()))
    assert torch.equal(converted.runner.predict(image, hole), autocast.predict(image, hole))


def test_half_conversion_skips_nothing_autocast_would_cast_for_gatedconv_and_pconv() -> None:
    for name in ("gatedconv-pt", "pconv"):
        network = copy.deepcopy(_fixture(name, "fp32").network)
        convolutions = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
        assert precision.convert_half(network, "bf16") == sum(1 + (m.bias is not None) for m in convolutions)


# --- auto ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "errors", "expected"),
    [
        ({"fp32": 1.0, "bf16": 0.5, "int8": 0.4}, {"bf16": 0.001, "int8": 0.002}, "int8"),
        ({"fp32": 1.0, "bf16": 0.5, "int8": 0.4}, {"bf16": 0.001, "int8": 0.01}, "bf16"),  # int8 too far
        ({"fp32": 1.0, "bf16": 1.6, "int8": 0.95}, {"bf16": 0.001, "int8": 0.001}, "fp32"),  # within noise
        ({"fp32": 1.0, "bf16": 0.9, "int8": 2.0}, {"bf16": 0.001, "int8": 0.001}, "bf16"),
        ({"fp32": 1.0, "bf16": float("nan"), "int8": 0.5}, {"int8": 0.001}, "int8"),
        ({"fp32": 1.0, "bf16": 0.5}, {}, "fp32"),  # no error measured: not chosen
    ],
)
def test_auto_chooses_only_a_faster_path_within_the_error_bound(
    seconds: dict[str, float], errors: dict[str, float], expected: str
) -> None:
    measurement = Measurement(seconds, errors)
    choice = decide(measurement)
    assert choice == expected
    assert seconds[choice] <= seconds["fp32"]


def test_auto_never_picks_a_slower_path_over_many_injected_timings() -> None:
    generator = np.random.default_rng(0)
    for _ in range(500):
        seconds = {
            "fp32": 1.0,
            "bf16": float(generator.uniform(0.3, 2)),
            "int8": float(generator.uniform(0.3, 2)),
        }
        choice = decide(Measurement(seconds, {"bf16": 0.0, "int8": 0.0}))
        assert seconds[choice] * auto_precision.MIN_SPEEDUP <= 1.0 or choice == "fp32"
        assert seconds[choice] == min(s for s in seconds.values() if s * 1.1 <= 1.0 or s == 1.0)


def test_auto_measures_once_per_machine_and_model_and_caches_the_choice(tmp_path: Path, monkeypatch) -> None:
    network = _fixture("lama", "fp32").network
    calls = []

    def fake_measure(net, run, names):
        calls.append(names)
        return Measurement({"fp32": 1.0, "bf16": 0.6, "int8": 0.5}, {"bf16": 0.001}, {"a": 0.3, "b": 0.2})

    monkeypatch.setattr(auto_precision, "measure", fake_measure)
    monkeypatch.setattr(auto_precision, "MEASURE_ABOVE_GFLOP", 0.0)
    cache = tmp_path / "choices.json"
    plan = precision.Int8Plan(("a", "b"), (), 0.001)
    assert auto_precision.choose(network, "small", None, cache, int8_plan=lambda: plan) == "int8"
    unasked = auto_precision.choose(network, "small", None, cache, int8_plan=lambda: pytest.fail("asked"))
    assert unasked == "int8"
    assert len(calls) == 1
    stored = json.loads(cache.read_text())
    (machine,) = stored
    assert "threads=" in machine and f"torch={torch.__version__}" in machine
    (entry,) = stored[machine].values()
    assert entry["choice"] == "int8" and entry["seconds"]["fp32"] == 1.0
    other = copy.deepcopy(network)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)  # other weights: another model
    auto_precision.choose(other, "small", None, cache)
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("kept_float", "expected", "int8_seconds"),
    [
        ((), "int8", 0.5),
        (("a",), "bf16", 0.8),  # the guard keeps the costliest layer float: bf16 is faster then
        (("a", "b"), "bf16", 1.0),
    ],
)
def test_auto_counts_the_layers_the_int8_guard_keeps_float_at_fp32_time(
    kept_float: tuple[str, ...], expected: str, int8_seconds: float, monkeypatch
) -> None:
    measurement = Measurement({"fp32": 1.0, "bf16": 0.7, "int8": 0.5}, {"bf16": 0.001}, {"a": 0.3, "b": 0.2})
    monkeypatch.setattr(auto_precision, "measure", lambda *args: measurement)
    monkeypatch.setattr(auto_precision, "MEASURE_ABOVE_GFLOP", 0.0)
    plan = precision.Int8Plan(tuple(name for name in "ab" if name not in kept_float), kept_float, 0.001)
    assert measurement.with_int8_plan(plan).seconds["int8"] == pytest.approx(int8_seconds)
    network = _fixture("lama", "fp32").network
    assert auto_precision.choose(network, "small", None, None, int8_plan=lambda: plan) == expected
    # Without a plan (no guard), int8's fill is unchecked: never chosen.
    assert auto_precision.choose(network, "small", None, None) == "bf16"


def test_auto_asks_for_the_int8_plan_only_when_int8_would_win(monkeypatch) -> None:
    measurement = Measurement({"fp32": 1.0, "bf16": 0.4, "int8": 0.5}, {"bf16": 0.001}, {"a": 0.5})
    monkeypatch.setattr(auto_precision, "measure", lambda *args: measurement)
    monkeypatch.setattr(auto_precision, "MEASURE_ABOVE_GFLOP", 0.0)
    network = _fixture("lama", "fp32").network
    choice = auto_precision.choose(network, "small", None, None, int8_plan=lambda: pytest.fail("calibrated"))
    assert choice == "bf16"


def test_auto_leaves_small_networks_at_fp32_without_measuring(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INPAINT_HOME", str(tmp_path))
    monkeypatch.setattr(auto_precision, "measure", lambda *a, **k: pytest.fail("measured"))
    inpainter = Inpainter.from_name("lama-tiny", device="cpu", precision="auto")
    assert inpainter.precision == "fp32" and inpainter.dtype == torch.float32
    assert not (tmp_path / auto_precision.CHOICES_NAME).exists()


def _pass(network, image, hole, dtype):
    return Runner(network, torch.device("cpu"), dtype, "x").predict(image, hole)


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_probe_pass_records_every_convolution_with_its_input_and_output_shapes(fixture: str) -> None:
    network = _fixture(fixture, "fp32").network
    seen: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    layers = {name: m for name, m in network.named_modules() if isinstance(m, torch.nn.Conv2d)}

    class Watch:  # the real convolution, watched
        def __init__(self, name: str, conv: torch.nn.Conv2d) -> None:
            self.name, self.conv = name, conv

        def __call__(self, x, padding, bias=True):
            return self.run(x, padding, bias, "zeros")

        def run(self, x, padding, bias, mode):
            out = torch.nn.functional.conv2d(
                precision.pad(x, padding, mode), self.conv.weight, self.conv.bias if bias else None,
                self.conv.stride, 0, self.conv.dilation, self.conv.groups,
            )  # fmt: skip
            seen.append((self.name, tuple(x.shape), tuple(out.shape)))
            return out

    image, hole = auto_precision._inputs(auto_precision.PROBE_SIDE)
    expected = _pass(network, image, hole, torch.float32)
    for name, conv in layers.items():
        precision.attach(conv, Watch(name, conv))
    try:
        _pass(network, image, hole, torch.float32)
    finally:
        for conv in layers.values():
            precision.attach(conv, None)
    calls, rest = auto_precision.probe_calls(network, _pass)
    assert [(call.layer, call.shape) for call in calls] == [(name, shape) for name, shape, _ in seen]
    for call, (_, _, out_shape) in zip(calls, seen, strict=True):
        conv = layers[call.layer]
        assert auto_precision.output_size(conv, *call.shape[2:], call.padding) == out_shape[2:]
    assert rest > 0
    assert not any(KERNEL_ATTRIBUTE in conv.__dict__ for conv in layers.values())  # left as it was
    assert torch.equal(_pass(network, image, hole, torch.float32), expected)


def test_auto_measurement_estimates_every_candidate_and_compares_half_fills() -> None:
    network = _fixture("lama", "fp32").network
    measurement = auto_precision.measure(network, _pass, ["bf16", "int8"])
    seconds = measurement.seconds
    assert set(seconds) == {"fp32", "bf16", "int8"} and all(0 < s < 10 for s in seconds.values())
    assert 0 < measurement.hole_error["bf16"] < 0.05 and "int8" not in measurement.hole_error  # the guard's
    assert set(measurement.int8_savings) == {name for name, _ in precision.quantizable_convolutions(network)}
    assert seconds["int8"] == pytest.approx(seconds["fp32"] - sum(measurement.int8_savings.values()))
    assert all(p.dtype == torch.float32 for p in network.parameters())  # measured on the side
    assert not any(KERNEL_ATTRIBUTE in m.__dict__ for m in network.modules())


def test_auto_with_int8_winning_quantizes_with_the_guards_plan_made_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INPAINT_HOME", str(tmp_path))
    monkeypatch.setattr(auto_precision, "MEASURE_ABOVE_GFLOP", 0.0)
    plans = []
    real_quantize = precision.quantize_int8

    def counting_quantize(network, predict, *args, known=None, **kwargs):
        plan = real_quantize(network, predict, *args, known=known, **kwargs)
        plans.append(known is None)
        return plan

    def int8_fastest(network, run, names):
        savings = {name: 0.05 for name, _ in precision.quantizable_convolutions(network)}
        return Measurement({"fp32": 1.0, "bf16": 0.95, "int8": 0.0}, {"bf16": 0.001}, savings)

    monkeypatch.setattr(auto_precision, "measure", int8_fastest)
    monkeypatch.setattr(engine, "quantize_int8", counting_quantize)
    inpainter = _fixture("lama", "auto")
    plan = inpainter.int8_plan
    assert inpainter.precision == "int8" and plan is not None and 0 < len(plan.kept_float) < 20
    assert plans == [True, False]  # calibrated once (on a copy), then applied to the network
    quantized = {name for name, m in inpainter.network.named_modules() if KERNEL_ATTRIBUTE in m.__dict__}
    assert quantized == set(plan.quantized)


# --- issue 30: precisions slower than fp32, and auto's first use ------------------------------------------


@pytest.mark.parametrize(
    ("int8_seconds", "fp32_seconds", "planned", "asked"),
    [
        (0.87, 1.0, False, False),  # 1.15x: within what the guard's float layers give back
        (0.5, 1.0, False, True),  # 2x, and the guard takes seconds
        (0.5, 30.0, False, False),  # 2x, but the guard would take minutes (a 512² pass: 30 s)
        (0.25, 30.0, True, True),  # ...unless a plan for these weights is kept already
    ],
)
def test_auto_asks_the_int8_guard_only_with_a_clear_margin_and_a_short_calibration(
    int8_seconds: float, fp32_seconds: float, planned: bool, asked: bool, monkeypatch
) -> None:
    """Issue 30: big-lama's int8 estimate (1.00-1.15x) crossed the 1.1x threshold on an AVX2 CPU and the
    guard then spent 84 s to keep 179 of 180 layers in float: auto's first use must cost seconds."""
    seconds = {"fp32": fp32_seconds, "bf16": 2 * fp32_seconds, "int8": int8_seconds * fp32_seconds}
    measurement = Measurement(seconds, {"bf16": 0.001}, {"a": 0.3 * fp32_seconds})
    monkeypatch.setattr(auto_precision, "measure", lambda *args: measurement)
    monkeypatch.setattr(auto_precision, "MEASURE_ABOVE_GFLOP", 0.0)
    network = _fixture("lama", "fp32").network
    layers = len(dict(precision.quantizable_convolutions(network)))
    guard = auto_precision.guard_seconds(measurement, layers)
    assert (guard <= auto_precision.GUARD_BUDGET_SECONDS) is (fp32_seconds == 1.0)
    calls: list[int] = []
    plan = precision.Int8Plan(("a",), (), 0.001)

    def int8_plan() -> precision.Int8Plan:
        calls.append(1)
        return plan

    choice = auto_precision.choose(network, "small", None, None, int8_plan=int8_plan, int8_planned=planned)
    assert bool(calls) is asked
    assert choice == ("int8" if asked else "fp32")


def test_an_explicit_precision_slower_than_fp32_here_says_so_with_the_ratio(monkeypatch) -> None:
    """Issue 30: --precision bf16 on a CPU without native bf16 ran 6x slower without a word."""
    slow = Measurement({"fp32": 1.0, "bf16": 6.0, "int8": 1.02}, {"bf16": 0.001}, {})
    monkeypatch.setattr(auto_precision, "measure", lambda *args: slow)
    monkeypatch.setattr(auto_precision, "cpu_description", lambda: ("a CPU", ["avx2"]))
    bf16 = _fixture("pconv", "bf16")
    assert bf16.precision == "bf16" and bf16.precision_note == (
        "--precision bf16 runs small.pth 6.0x slower than fp32 on this CPU (estimated for a 512² pass; "
        "this CPU has no AVX512_BF16 or AMX); --precision fp32 or auto is faster"
    )
    assert auto_precision.slower_note("int8", 1.02, "x") == (
        "--precision int8 runs x no faster than (0.98x) fp32 on this CPU (estimated for a 512² pass; this "
        "CPU has no VNNI); --precision fp32 or auto is faster"
    )
    assert auto_precision.slower_note("bf16", 0.6, "x") is None  # faster: nothing to say
    assert _fixture("pconv", "fp32").precision_note is None


def test_the_precision_note_follows_this_cpus_own_measurement(tmp_path: Path, monkeypatch) -> None:
    """On whatever CPU runs this: bf16 is said to be slower exactly when this CPU's measurement (kept in
    the cache, reused by the next load) says it is not faster than fp32."""
    monkeypatch.setenv("INPAINT_HOME", str(tmp_path))
    loaded = Inpainter.from_name("pconv-tiny", device="cpu", precision="bf16")
    (entries,) = json.loads((tmp_path / auto_precision.CHOICES_NAME).read_text()).values()
    (measured,) = entries.values()
    ratio = measured["seconds"]["bf16"] / measured["seconds"]["fp32"]
    assert (loaded.precision_note is not None) is (ratio * auto_precision.MIN_SPEEDUP > 1)
    monkeypatch.setattr(auto_precision, "measure", lambda *args: pytest.fail("measured again"))
    again = Inpainter.from_name("pconv-tiny", device="cpu", precision="bf16")
    assert again.precision_note == loaded.precision_note
