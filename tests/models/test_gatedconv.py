"""GatedConv (DeepFill v2): gated layer, port variants, contextual attention, fixtures, engine and CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from inpaint_cli.checkpoints.containers import read_checkpoint, save_converted
from inpaint_cli.checkpoints.loading import load_strict, network_from_checkpoint
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.errors import CheckpointError
from inpaint_cli.models import FAMILIES
from inpaint_cli.models import contextual_attention as ca
from inpaint_cli.models import gatedconv as gc
from inpaint_cli.models.base import SIGNED_UNIT_RANGE
from inpaint_cli.review import visualize

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "deepfill"
"""The compact fixtures (FIXTURES.md there): the port's generators at cnum 8, smaller images."""
FIXTURE_CNUM = 8
FULL_CNUM = 48
"""The released weights' width, which the key tables describe."""
VARIANTS = ("pt", "tf")
FLOAT_TOLERANCE = 1e-4
"""SPEC §8: float tensors in [−1, 1] / [0, 1]."""
CHUNK_TOLERANCE = 1e-5
"""For the small synthetic attention inputs below; a real layer's tolerance is derived from its magnitudes."""
PIXEL_TOLERANCE = 1
GATED_LAYERS = 40


PEAK_OF_ONE_PASS = """
import json, sys
from pathlib import Path
import psutil, torch
from inpaint_cli.models.gatedconv import DeepFillV2
torch.set_num_threads(1)
side = int(sys.argv[1])
model = DeepFillV2({"variant": "pt", "cnum": 48}).eval()
model.attention_module.chunk_bytes = 256 * 2**20
image, mask = torch.rand(1, 3, side, side) * 2 - 1, torch.zeros(1, 1, side, side)
mask[..., side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1
with torch.inference_mode():
    model(image[..., :64, :64], mask[..., :64, :64])  # warm-up
    before = psutil.Process().memory_info().rss
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts afresh
    model(image, mask)
peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"peak_bytes": peak - before, "estimate_bytes": model.memory_estimate(side, side)}))
"""
"""One pass's peak resident bytes in a fresh process (benchmarks/bench_gatedconv_attention.py measures
the same way at more sizes; tests do not import benchmark scripts)."""


def _checkpoint(variant: str) -> Path:
    return REFERENCE / f"{variant}_random.pth"


def _key_table(variant: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = (line.split("\t") for line in (REFERENCE / f"keys_{variant}.tsv").read_text().splitlines())
    return [(key, tuple(int(n) for n in shape.split("x"))) for key, shape, _dtype in rows]


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are small: on a busy 2-core machine OpenMP hand-offs would dominate."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=VARIANTS)
def network(request) -> gc.DeepFillV2:
    return network_from_checkpoint(read_checkpoint(_checkpoint(request.param)))


def _run(network: gc.DeepFillV2, fixture: dict[str, torch.Tensor], capture: bool = True):
    intermediates = {} if capture else None
    with torch.inference_mode():
        fine = network(SIGNED_UNIT_RANGE.to_network(fixture["image"]), fixture["mask"], intermediates)
    return fine, intermediates


# --- gated convolution and padding ----------------------------------------------------------------


def test_gated_layer_takes_features_from_the_first_half_and_gates_from_the_second() -> None:
    torch.manual_seed(0)
    layer = gc.Layer(("block.conv2", "conv3"), quarters=4)
    gated = gc.GatedConv(5, 6, layer, "pt", "block.conv2")
    x = torch.randn(1, 5, 8, 12)
    captured: dict[str, torch.Tensor] = {}
    output = gated(x, captured)

    both = F.conv2d(x, gated.conv.weight, gated.conv.bias, padding=1)
    assert gated.conv.weight.shape == (12, 5, 3, 3)
    torch.testing.assert_close(captured["gate.block.conv2"], torch.sigmoid(both[:, 6:]))
    torch.testing.assert_close(output, F.elu(both[:, :6]) * torch.sigmoid(both[:, 6:]))
    assert list(captured) == ["gate.block.conv2"]
    assert torch.equal(gated(x), output)  # capturing changes nothing


def test_attention_layer_uses_relu_features() -> None:
    torch.manual_seed(0)
    layer = gc.ATTENTION_BRANCH[-1]
    assert layer.names == ("stage2.ca_conv_bn1", "pmconv6") and layer.activation == "relu"
    gated = gc.GatedConv(4, 3, layer, "tf", "pmconv6")
    x = torch.randn(1, 4, 8, 8)
    both = F.conv2d(x, gated.conv.weight, gated.conv.bias, padding=1)
    torch.testing.assert_close(gated(x), F.relu(both[:, :3]) * torch.sigmoid(both[:, 3:]))


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation", "expected"),
    [
        (8, 3, 2, 1, (0, 1)),
        (7, 3, 2, 1, (1, 1)),
        (26, 3, 2, 1, (0, 1)),
        (18, 3, 1, 16, (16, 16)),
        (9, 5, 1, 1, (2, 2)),
    ],
)
def test_tf_same_padding(
    size: int, kernel: int, stride: int, dilation: int, expected: tuple[int, int]
) -> None:
    assert gc.same_padding(size, kernel, stride, dilation) == expected


def test_stride_two_padding_differs_between_variants() -> None:
    torch.manual_seed(0)
    layer = gc.STAGE1[1]
    assert layer.stride == 2
    tf_layer = gc.GatedConv(4, 2, layer, "tf", "conv2_downsample")
    pt_layer = gc.GatedConv(4, 2, layer, "pt", "stage1.down_block1.conv1_downsample")
    pt_layer.load_state_dict(tf_layer.state_dict())
    x = torch.randn(1, 4, 10, 14)
    tf_conv = F.conv2d(F.pad(x, (0, 1, 0, 1)), tf_layer.conv.weight, tf_layer.conv.bias, stride=2)
    pt_conv = F.conv2d(x, tf_layer.conv.weight, tf_layer.conv.bias, stride=2, padding=1)
    assert tf_conv.shape == pt_conv.shape == (1, 4, 5, 7)
    torch.testing.assert_close(tf_layer(x), F.elu(tf_conv[:, :2]) * torch.sigmoid(tf_conv[:, 2:]))
    torch.testing.assert_close(pt_layer(x), F.elu(pt_conv[:, :2]) * torch.sigmoid(pt_conv[:, 2:]))
    assert (tf_layer(x) - pt_layer(x)).abs().max() > 0.1


# --- checkpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_key_table_builds_and_loads_strictly(variant: str) -> None:
    """Shapes only: the released layout's tensors and network live on the `meta` device."""
    table = _key_table(variant)
    state_dict = {key: torch.empty(shape, device="meta") for key, shape in table}
    if variant == "pt":
        state_dict[gc.FUSE_WEIGHT_KEY] = torch.eye(3).view(1, 1, 3, 3)  # checked by value on conversion
    assert FAMILIES["gatedconv"].recognizes(state_dict)
    converted = gc.DeepFillV2.convert_state_dict(state_dict)
    config = gc.DeepFillV2.config_from_state_dict(converted)
    assert config == gc.GatedConvConfig(variant, FULL_CNUM)
    with torch.device("meta"):
        network = gc.DeepFillV2(config)
    converted.pop(gc.FUSE_WEIGHT_KEY, None)  # a real tensor, checked above; the network holds it as a buffer
    load_strict(
        network, {**converted, **{k: v for k, v in network.state_dict().items() if k == gc.FUSE_WEIGHT_KEY}}
    )
    ours = network.state_dict()
    assert [(key, tuple(value.shape)) for key, value in ours.items()] == table
    assert sum(p.numel() for p in network.parameters()) == 4_052_478


@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_file_round_trips(variant: str, tmp_path: Path) -> None:
    official = read_checkpoint(_checkpoint(variant)).state_dict
    network = network_from_checkpoint(read_checkpoint(_checkpoint(variant)))
    assert network.config == gc.GatedConvConfig(variant, FIXTURE_CNUM)
    ours = network.state_dict()
    path = save_converted(
        tmp_path / "g.safetensors", ours, family="gatedconv", variant=variant, config=network.config
    )
    reloaded = network_from_checkpoint(read_checkpoint(path))
    assert reloaded.variant == variant and list(reloaded.state_dict()) == [
        key for key, _ in _key_table(variant)
    ]
    assert all(torch.equal(reloaded.state_dict()[key], official[key]) for key in ours)


def test_official_container_is_unwrapped_and_the_discriminator_ignored() -> None:
    checkpoint = read_checkpoint(_checkpoint("tf"))
    assert len(checkpoint.state_dict) == 84 and "conv1.conv.weight" in checkpoint.state_dict
    assert not any(key.startswith("conv1.conv_sn") for key in checkpoint.state_dict)


@pytest.mark.parametrize("variant", VARIANTS)
def test_wrong_or_missing_keys_are_named(variant: str) -> None:
    state_dict = dict(read_checkpoint(_checkpoint(variant)).state_dict)
    table = [key for key, _ in _key_table(variant)]
    missing, renamed = table[5], table[40]
    del state_dict[missing]
    state_dict[renamed.replace(".conv.", ".conf.")] = state_dict.pop(renamed)
    with pytest.raises(CheckpointError) as error:
        load_strict(
            gc.DeepFillV2(gc.DeepFillV2.config_from_state_dict(state_dict)),
            gc.DeepFillV2.convert_state_dict(state_dict),
        )
    assert f"missing {missing}, {renamed}" in error.value.what
    assert f"unexpected {renamed.replace('.conv.', '.conf.')}" in error.value.what


def test_foreign_layouts_and_odd_fuse_kernels_are_refused() -> None:
    with pytest.raises(CheckpointError, match="not a DeepFill v2 generator"):
        gc.DeepFillV2.config_from_state_dict({"conv1.conv.weight": torch.zeros(48, 5, 5, 5)})
    assert not gc.DeepFillV2.recognizes({"conv1.conv.weight": torch.zeros(48, 5, 5, 5)})
    state_dict = dict(read_checkpoint(_checkpoint("pt")).state_dict)
    state_dict[gc.FUSE_WEIGHT_KEY] = torch.ones(1, 1, 3, 3)
    with pytest.raises(CheckpointError, match=re.escape(gc.FUSE_WEIGHT_KEY)):
        gc.DeepFillV2.convert_state_dict(state_dict)


def test_family_geometry(network: gc.DeepFillV2) -> None:
    assert network.family == "gatedconv" and network.normalization == SIGNED_UNIT_RANGE
    assert network.hole_value == 1.0 and network.pad_multiple == 8 and network.min_size == 8
    assert network.training_size == 256 and network.pad_mode == "symmetric"


# --- parity with the port ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_network_matches_the_fixtures(network: gc.DeepFillV2, case: str) -> None:
    fixture = load_file(REFERENCE / f"{network.variant}_case_{case}.safetensors")
    first_input = []
    hook = network.coarse_layers[0].register_forward_pre_hook(
        lambda module, args: first_input.append(args[0])
    )
    try:
        fine, captured = _run(network, fixture)
    finally:
        hook.remove()
    assert torch.equal(first_input[0], fixture["net_input"])
    tolerance = {"atol": FLOAT_TOLERANCE, "rtol": 0}
    torch.testing.assert_close(fine, fixture["fine"], **tolerance)
    torch.testing.assert_close(captured["coarse"], fixture["coarse"], **tolerance)
    image, mask = fixture["image"], fixture["mask"]
    inpainted = SIGNED_UNIT_RANGE.from_network(SIGNED_UNIT_RANGE.to_network(image) * (1 - mask) + fine * mask)
    torch.testing.assert_close(inpainted, fixture["inpainted"], **tolerance)

    gate_means = {
        name.removeprefix("gate_mean."): v for name, v in fixture.items() if name.startswith("gate_mean.")
    }
    assert len(gate_means) == GATED_LAYERS
    assert set(captured) == {"coarse"} | {f"gate.{layer}" for layer in gate_means}
    for layer, mean in gate_means.items():
        torch.testing.assert_close(captured[f"gate.{layer}"].mean(dim=(0, 2, 3)), mean, **tolerance)
    for name in (name for name in fixture if name.startswith("gate.")):
        torch.testing.assert_close(captured[name], fixture[name], **tolerance)
    with torch.inference_mode():
        attended = network.attention_module(fixture["ca.in"], mask)
    torch.testing.assert_close(attended, fixture["ca.out"], **tolerance)


def test_capture_is_off_by_default_and_changes_nothing(network: gc.DeepFillV2) -> None:
    fixture = load_file(REFERENCE / f"{network.variant}_case_a.safetensors")
    plain, nothing = _run(network, fixture, capture=False)
    captured, _ = _run(network, fixture)
    assert nothing is None and torch.equal(plain, captured)
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in network.modules())


def test_variants_give_different_results_from_the_same_weights() -> None:
    fixture = load_file(REFERENCE / "tf_case_a.safetensors")
    tf_network = network_from_checkpoint(read_checkpoint(_checkpoint("tf")))
    by_tf, _ = _run(tf_network, fixture, capture=False)
    as_pt = dict(
        zip(
            [k for k, _ in _key_table("pt") if k != gc.FUSE_WEIGHT_KEY],
            tf_network.state_dict().values(),
            strict=True,
        )
    )
    pt_network = gc.DeepFillV2({"variant": "pt", "cnum": tf_network.cnum}).eval()
    pt_network.load_state_dict(as_pt | {gc.FUSE_WEIGHT_KEY: torch.eye(3).view(1, 1, 3, 3)})
    by_pt, _ = _run(pt_network, fixture, capture=False)
    # Far beyond the fixtures' tolerance: 0.06 at the compact width (measured), 0.27 at 48 (SPEC §7).
    assert (by_tf - by_pt).abs().max() > 100 * FLOAT_TOLERANCE


# --- contextual attention ---------------------------------------------------------------------------


def reference_attention(feature: torch.Tensor, mask: torch.Tensor, variant: str) -> torch.Tensor:
    """SPEC §4 step by step with the port's own operations (batch 1): convolutions with the patches
    as kernels, the fuse as 3×3 identity convolutions over the viewed and permuted L×L array."""

    def downscale(tensor: torch.Tensor, factor: int) -> torch.Tensor:
        if variant == "pt":
            return F.interpolate(
                tensor, scale_factor=1 / factor, mode="nearest", recompute_scale_factor=False
            )
        size_h, size_w = tensor.shape[-2:]
        rows = torch.floor(torch.linspace(0, size_h - 1, size_h // factor) + 0.5).long()
        cols = torch.floor(torch.linspace(0, size_w - 1, size_w // factor) + 0.5).long()
        return tensor[..., rows, :][..., cols]

    channels = feature.shape[1]
    paste = F.unfold(feature, 4, padding=1, stride=2)[0].T.reshape(-1, channels, 4, 4)
    small = downscale(feature, 2)
    height, width = small.shape[-2:]
    length = height * width
    kernels = F.unfold(small, 3, padding=1)[0].T.reshape(-1, channels, 3, 3)
    norms = kernels.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt()
    kernels = kernels / torch.maximum(norms, torch.tensor(1e-4))
    windows = F.unfold(downscale(mask, 8), 3, padding=1)[0]
    valid = (windows.mean(dim=0) == 0).float().view(1, length, 1, 1)
    scores = F.conv2d(small, kernels, padding=1)
    if variant == "pt":
        identity = torch.eye(3).view(1, 1, 3, 3)
        scores = F.conv2d(scores.view(1, 1, length, length), identity, padding=1)
        scores = (
            scores.view(1, height, width, height, width).permute(0, 2, 1, 4, 3).reshape(1, 1, length, length)
        )
        scores = F.conv2d(scores, identity, padding=1)
        scores = scores.view(1, width, height, width, height).permute(0, 2, 1, 4, 3)
        scores = scores.reshape(1, length, height, width)
    weights = F.softmax(scores * valid * 10, dim=1) * valid
    return F.conv_transpose2d(weights, paste, stride=2, padding=1) / 4


def _holed_mask(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, 1, height, width)
    for _ in range(3):
        top = int(torch.randint(0, height, (1,), generator=generator))
        left = int(torch.randint(0, width, (1,), generator=generator))
        mask[..., top : top + height // 3, left : left + width // 4] = 1
    return mask


@pytest.mark.parametrize(
    ("variant", "height", "width"),
    [
        ("pt", 72, 104),  # h' and w' odd
        ("tf", 72, 104),
        ("pt", 48, 232),  # non-square, wide
        ("tf", 48, 232),  # width 232: float32 linspace indices differ from exact rounding
        ("tf", 408, 40),  # height 408: the mask's linspace indices differ likewise
        ("pt", 8, 16),  # a single row of patches
        ("pt", 40, 8),  # a single column
    ],
)
def test_attention_matches_the_reference_operations_in_any_chunking(
    variant: str, height: int, width: int
) -> None:
    torch.manual_seed(0)
    feature = torch.randn(1, 4, height // 4, width // 4)
    mask = _holed_mask(height, width, seed=height + width)
    expected = reference_attention(feature, mask, variant)
    attention = ca.ContextualAttention(variant)
    grid = (height // 8, width // 8)
    length = grid[0] * grid[1]
    for chunk in sorted({min(c, length) for c in (1, 3, grid[1], 2 * grid[1] + 1, length)}):
        attention.chunk_bytes = attention.chunk_memory(chunk, *grid)
        assert attention.chunk_size(*grid) == chunk
        torch.testing.assert_close(attention(feature, mask), expected, atol=CHUNK_TOLERANCE, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_chunks_of_a_real_layer_agree_with_one_chunk(variant: str) -> None:
    torch.manual_seed(1)
    feature = torch.relu(torch.randn(1, 96, 40, 52))
    mask = _holed_mask(160, 208, seed=3)
    attention = ca.ContextualAttention(variant)
    attention.chunk_bytes = 1 << 40
    whole = attention(feature, mask)
    attention.chunk_bytes = attention.chunk_memory(37, 20, 26)
    assert attention.chunk_size(20, 26) == 37
    # fp32 sums of C·9 products in another order (CPUs differ) shift each score by about
    # eps·sqrt(C·9) relative to the output's scale; the softmax multiplies shifts by its scale.
    terms = feature.shape[1] * ca.ATTENTION_MATCH_KERNEL**2
    eps = torch.finfo(torch.float32).eps
    tolerance = eps * ca.ATTENTION_SOFTMAX_SCALE * terms**0.5 * whole.abs().max().item()
    assert tolerance < 1e-3  # far below what a wrong chunk boundary gives (differences of order 1)
    torch.testing.assert_close(attention(feature, mask), whole, atol=tolerance, rtol=0)


def test_linspace_indices_are_the_float32_ones() -> None:
    indices = ca.align_corners_indices(58, 29)
    exact = [int(Fraction(57 * i, 28) + Fraction(1, 2)) for i in range(29)]
    assert indices.tolist() != exact  # SPEC §4: the float32 rounding is part of the result
    assert sum(a != b for a, b in zip(indices.tolist(), exact, strict=True)) == 1
    assert ca.align_corners_indices(64, 32).tolist() == [
        int(Fraction(63 * i, 31) + Fraction(1, 2)) for i in range(32)
    ]


def test_every_sample_uses_the_first_samples_mask() -> None:
    torch.manual_seed(2)
    features = torch.randn(2, 4, 16, 16)
    masks = torch.stack([_holed_mask(64, 64, seed=1)[0], _holed_mask(64, 64, seed=2)[0]])
    attention = ca.ContextualAttention("pt")
    both = attention(features, masks)
    torch.testing.assert_close(both[1:], attention(features[1:], masks[:1]))
    assert (both[1:] - attention(features[1:], masks[1:])).abs().max() > 1e-3


def test_chunk_size_keeps_the_score_arrays_within_budget() -> None:
    attention = ca.ContextualAttention("pt", chunk_bytes=64 * 2**20)
    for grid in ((32, 32), (64, 96), (128, 128), (256, 256)):
        chunk = attention.chunk_size(*grid)
        assert attention.chunk_memory(chunk, *grid) <= attention.chunk_bytes
        assert chunk == grid[0] * grid[1] or attention.chunk_memory(chunk + 1, *grid) > attention.chunk_bytes
    no_fuse = ca.ContextualAttention("tf", chunk_bytes=64 * 2**20)
    assert no_fuse.chunk_size(128, 128) == 64 * 2**20 // (4 * 128 * 128 * ca.SOFTMAX_ARRAYS)


def test_memory_estimate_is_linear_plus_bounded_attention() -> None:
    network = gc.DeepFillV2({"variant": "pt", "cnum": 48})
    linear = network.activation_bytes_per_pixel
    small, large = network.memory_estimate(256, 256), network.memory_estimate(4096, 4096)
    length = 32 * 32
    assert small == linear * 256 * 256 + 4 * length * ca.FUSE_ARRAYS * (length + 2 * 32 + ca.FUSE_EXTRA_ROWS)
    assert linear * 4096 * 4096 < large <= linear * 4096 * 4096 + ca.ATTENTION_CHUNK_BYTES


class PeakTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the context and still alive (exact on CPU
    for code made of plain tensor operations)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.owners: dict[int, int] = {}

    def _free(self, key: int, size: int) -> None:
        self.owners.pop(key, None)
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(output):
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in self.owners:
                key, size = tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes()
                self.owners[key] = size
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._free, key, size)
        return output


@pytest.mark.parametrize("variant", VARIANTS)
def test_chunks_bound_the_attention_memory(variant: str) -> None:
    torch.manual_seed(0)
    feature, mask = torch.randn(1, 96, 96, 96), _holed_mask(384, 384, seed=4)
    attention = ca.ContextualAttention(variant)
    small, large, unbounded = 4 * 2**20, 16 * 2**20, 1 << 40
    peaks = {}
    for budget in (small, large, unbounded):
        attention.chunk_bytes = budget
        with torch.inference_mode(), PeakTensorBytes() as measured:
            attention(feature, mask)
        peaks[budget] = measured.peak
    # The rest (patches, windows, output) does not depend on the chunk: differences are score arrays.
    assert peaks[large] - peaks[small] <= large
    assert large < peaks[unbounded] - peaks[small] <= attention.chunk_memory(48 * 48, 48, 48)


@pytest.mark.slow
def test_memory_estimate_is_within_a_factor_two_of_the_measured_peak() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's resettable high-water mark")
    # A fixed glibc mmap threshold: freed big buffers are unmapped, so RSS follows live allocations.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    completed = subprocess.run(
        [sys.executable, "-c", PEAK_OF_ONE_PASS, "384"], capture_output=True, text=True, env=environment
    )
    assert completed.returncode == 0, completed.stderr
    run = json.loads(completed.stdout)
    assert 0.5 < run["estimate_bytes"] / run["peak_bytes"] < 2, run


# --- engine, CLI and pictures -----------------------------------------------------------------------


def _case(tmp_path: Path, variant: str, case: str) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    """Image and mask files cropped to the multiple of 8 the reference ran at, as arrays too."""
    image = _read_png(REFERENCE / f"{variant}_{case}_image.png")
    mask = _read_png(REFERENCE / f"{variant}_{case}_mask.png")
    expected = _read_png(REFERENCE / f"{variant}_{case}_result.png")
    height, width = expected.shape[:2]
    image, mask = image[:height, :width], mask[:height, :width]
    image_path, mask_path = tmp_path / f"{case}.png", tmp_path / f"{case}_mask.png"
    Image.fromarray(image).save(image_path)
    Image.fromarray(mask).save(mask_path)
    return image_path, mask_path, image, mask > 127, expected


def _assert_reference_result(
    result: np.ndarray, image: np.ndarray, hole: np.ndarray, expected: np.ndarray
) -> None:
    assert result.shape == expected.shape
    assert np.array_equal(result[~hole], image[~hole])
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= PIXEL_TOLERANCE


@pytest.mark.parametrize("case", ["case_b", "case_c"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_cli_reproduces_the_reference_png(tmp_path: Path, variant: str, case: str) -> None:
    from inpaint_cli.cli.app import app

    image_path, mask_path, image, hole, expected = _case(tmp_path, variant, case)
    output = tmp_path / "out.png"
    arguments = [
        image_path,
        "--mask",
        mask_path,
        "--model",
        "gatedconv",
        "--checkpoint",
        _checkpoint(variant),
    ]
    result = CliRunner().invoke(app, ["run", *map(str, arguments), "--device", "cpu", "-o", str(output)])
    assert result.exit_code == 0, result.output
    _assert_reference_result(_read_png(output), image, hole, expected)


def test_cli_saves_every_gate_and_their_pictures(tmp_path: Path) -> None:
    from inpaint_cli.cli.app import app

    image_path, mask_path, _, hole, _ = _case(tmp_path, "tf", "case_c")
    folder = tmp_path / "inter"
    arguments = [image_path, "--mask", mask_path, "--model", "gatedconv", "--checkpoint", _checkpoint("tf")]
    arguments += ["--device", "cpu", "-o", tmp_path / "out.png", "--save-intermediates", folder]
    arguments += ["--save-tensors", "fp32"]
    result = CliRunner().invoke(app, ["run", *map(str, arguments)])
    assert result.exit_code == 0, result.output
    written = folder / image_path.stem
    tensors = load_file(written / "intermediates.safetensors")
    fixture = load_file(REFERENCE / "tf_case_c.safetensors")
    gates = {name for name in tensors if name.startswith("gate.")}
    assert gates == {name.replace("gate_mean.", "gate.") for name in fixture if name.startswith("gate_mean.")}
    torch.testing.assert_close(
        tensors["gate.conv9_atrous"], fixture["gate.conv9_atrous"], atol=FLOAT_TOLERANCE, rtol=0
    )
    torch.testing.assert_close(tensors["coarse"], fixture["coarse"], atol=FLOAT_TOLERANCE, rtol=0)
    stats = json.loads((written / "stats.json").read_text())["layers"]
    expected_means = visualize.masked_means(tensors["gate.conv1"], torch.from_numpy(hole)[None, None])
    assert stats["gate.conv1"] == pytest.approx(expected_means)
    pictures = sorted(path.name for path in written.glob("gates_*.png"))
    assert pictures == sorted(f"gates_{name.removeprefix('gate.')}.png" for name in gates)


def test_inpainter_loads_official_and_converted_files_alike(tmp_path: Path) -> None:
    _, _, image, hole, expected = _case(tmp_path, "pt", "case_b")
    official = Inpainter.from_checkpoint(_checkpoint("pt"), device="cpu", precision="fp32")
    network = official.network
    converted = save_converted(
        tmp_path / "pt.safetensors",
        network.state_dict(),
        family="gatedconv",
        variant=network.variant,
        config=network.config,
    )
    ours = Inpainter.from_checkpoint(converted, device="cpu", precision="fp32")
    assert ours.network.variant == "pt"
    result = official.inpaint(image, hole).pixels
    _assert_reference_result(result, image, hole, expected)
    assert np.array_equal(ours.inpaint(image, hole).pixels, result)


def test_sizes_off_the_multiple_come_back_whole(tmp_path: Path) -> None:
    image = _read_png(REFERENCE / "tf_case_c_image.png")
    hole = _read_png(REFERENCE / "tf_case_c_mask.png") > 127
    inpainter = Inpainter.from_checkpoint(_checkpoint("tf"), device="cpu", precision="fp32")
    result = inpainter.inpaint(image, hole).pixels
    assert image.shape == result.shape == (45, 61, 3)  # FIXTURES.md: case C is not a multiple of 8
    assert np.array_equal(result[~hole], image[~hole])
    assert (result[hole] != image[hole]).any()


def test_gate_pictures_rank_channels_by_hole_selectivity(tmp_path: Path) -> None:
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., 4:12, 4:12] = 1
    gates = torch.full((1, 4, 8, 8), 0.5)
    cells = visualize.hole_at(hole, (8, 8))[0, 0]
    gates[0, 1] = 1 - cells  # closes in the hole
    gates[0, 3] = 0.5 + 0.25 * cells  # opens a little
    ranked = visualize.selective_channels(gates, hole, 3)
    assert [(c, round(i, 3), round(o, 3)) for c, i, o in ranked] == [
        (1, 0.0, 1.0),
        (3, 0.75, 0.5),
        (0, 0.5, 0.5),
    ]
    assert visualize.selective_channels(gates, torch.ones(1, 1, 16, 16), 3) == []

    written = visualize.render_gates({"gate.stage1.conv1": gates}, hole, tmp_path)
    assert [path.name for path in written] == ["gates_stage1.conv1.png"]
    with Image.open(written[0]) as picture:
        assert picture.width == 3 * visualize.ENERGY_TILE_SIDE + 2 * 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_stays_close_to_the_reference(tmp_path: Path, variant: str) -> None:
    _, _, image, hole, expected = _case(tmp_path, variant, "case_b")
    inpainter = Inpainter.from_checkpoint(_checkpoint(variant), device="cpu", precision="bf16")
    result = inpainter.inpaint(image, hole).pixels
    assert np.array_equal(result[~hole], image[~hole])
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 4 * PIXEL_TOLERANCE


def test_declared_cost_counts_what_torch_counts_including_attention(network: gc.DeepFillV2) -> None:
    """Convolutions and contextual attention's two L×L products, as torch's FLOP counter counts them;
    the attention makes the cost of a 4× larger side grow far more than 16×."""
    height, width = 96, 128
    image = torch.rand(1, 3, height, width)
    mask = torch.zeros(1, 1, height, width)
    mask[..., 32:64, 40:88] = 1
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(image, mask)
    # The fuse step's additions are not multiply-accumulates: torch does not count them.
    assert network.cost_estimate(height, width) == pytest.approx(counter.get_total_flops() / 1e9, rel=0.02)
    assert network.cost_estimate(2048, 2048) > 50 * network.cost_estimate(512, 512)
    assert network.native_side == 1024


# --- the full-size fixtures, where present --------------------------------------------------------------

FULL_SIZE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "deepfill"
"""cnum 48 and larger images (SPEC §8); not part of a clone of this repository."""


@pytest.mark.skipif(
    not (FULL_SIZE / "pt_random.pth").is_file(), reason="full-size DeepFill fixtures not present"
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_full_size_fixture_matches_the_port(variant: str) -> None:
    network = network_from_checkpoint(read_checkpoint(FULL_SIZE / f"{variant}_random.pth"))
    assert network.config == gc.GatedConvConfig(variant, FULL_CNUM)
    fixture = load_file(FULL_SIZE / f"{variant}_case_a.safetensors")
    fine, _ = _run(network, fixture, capture=False)
    torch.testing.assert_close(fine, fixture["fine"], atol=FLOAT_TOLERANCE, rtol=0)
