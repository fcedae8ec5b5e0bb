"""Our networks against the official implementations on CPU: parity, then speed per precision.

For each family the official generator is built from the official code (a checkout the user has;
nothing of it is copied here) with the released architecture and random weights (below): big-lama
(advimman/lama `FFCResNetGenerator`, configs/training/big-lama.yaml), DeepFill v2 at cnum 48
(nipponjo/deepfillv2-pytorch `model/networks.py` `Generator`, the pt variant), the PConv U-Net at
depth 7 (naoto0804/pytorch-inpainting-with-partial-conv `net.py` `PConvUNet`). Its state dict is
written in the official checkpoint's container (LaMa `{'state_dict': {'generator.…'}}`, DeepFill
`{'G': …}`, PConv `{'n_iter', 'model': …}`) and loaded by our own loading path
(`Inpainter.from_checkpoint`) at fp32, bf16 and int8.

1. Parity: our fp32 output against the official one, max absolute difference in [0, 1]; the
   script stops if it exceeds `PARITY_TOLERANCE`.
2. Speed: one network pass each on the same input (the example photo resized to the side, a centred
   square hole of a quarter of the pixels): the official code's own tensor preprocessing and forward
   (as its predict/test script does it), and our `runner.predict` (padding, normalisation, the
   network). Timed interleaved round after round; the ratio is official CPU time / ours (> 1 = ours
   faster), median of per-round ratios. With one thread, CPU time is compute time, which other
   processes on a shared machine hardly inflate.
3. Difference inside the hole of ours at bf16 and int8 from the official output (0..255 levels,
   mean / max over the hole's pixels and channels, before rounding to 8 bits), and the peak RSS a
   first pass adds (VmHWM, Linux; the warm-up pass, in the same process after returning the heap's
   free memory to the system, so an approximation: weights already converted are not counted).

Random weights drawn as the official fixtures' were (SPEC: LaMa §7, DeepFill §8, PConv §7.1):
the official default initialisations give almost constant outputs, which would hide any difference.

Official dependencies the generators never use at inference (Lightning's `seed_everything`,
kornia's `rotate`, torchvision's VGG for the PConv loss) are replaced by inert stand-in modules
when they are not installed.

    git clone https://github.com/advimman/lama /tmp/official/lama   # and the two others
    nice -n 10 python benchmarks/bench_official.py --lama-repo /tmp/official/lama \\
        --deepfill-repo /tmp/official/deepfillv2-pytorch \\
        --pconv-repo /tmp/official/pytorch-inpainting-with-partial-conv [--sizes 512 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import math
import os
import statistics
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch
from bench_precision import PRECISIONS, centred_hole
from measure import interleaved, machine_summary, peak_rss_increase, pin_threads, ratio
from PIL import Image

from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.precision import quantize_int8
from inpaint_cli.models.base import IMAGENET

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "portrait_original.png"
ALL_INT8 = "int8 all"
PARITY_TOLERANCE = 1e-4
"""Max |ours fp32 - official| in [0, 1] (the LaMa SPEC's tolerance for float outputs)."""
OFFICIAL = "official fp32"
LEVELS = 255.0
MIB, GIB = 2**20, 2**30
MEMORY_SHARE = 0.7
"""A size is skipped when the official pass would need more than this share of the available RAM."""
DEEPFILL_BASE_BYTES = 0.3 * GIB
DEEPFILL_BYTES_PER_SCORE = 74
"""The pt port's contextual attention keeps about 74 bytes per element of its L×L score matrix, L
being the pixels at 1/8 of the side (measured: 1.5 GiB peak at 512², 18.7 GiB at 1024²)."""
BIG_LAMA_GENERATOR = {
    "input_nc": 4,
    "output_nc": 3,
    "ngf": 64,
    "n_downsampling": 3,
    "n_blocks": 18,
    "add_out_act": "sigmoid",
    "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
}
"""configs/training/big-lama.yaml's generator section with its interpolations resolved (SPEC §2)."""

Pass = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""(official network, N×3×H×W image in [0, 1], N×1×H×W hole) -> its prediction in [0, 1]."""


@dataclass(frozen=True)
class Family:
    """How to build, save and run one family's official generator."""

    name: str
    """Our family name (`--model` / `Inpainter.from_checkpoint`)."""
    url: str
    build: Callable[[], torch.nn.Module]
    """The official generator with random weights, eval mode (its repository on `sys.path`)."""
    container: Callable[[dict[str, torch.Tensor]], dict[str, object]]
    """The official checkpoint's container around the generator's state dict."""
    run: Pass
    official_bytes: Callable[[int], int] = lambda side: 0
    """About the memory the official pass needs at side×side (sizes it cannot run are skipped)."""


def _unavailable(*args: object, **kwargs: object) -> None:
    raise RuntimeError("a stand-in for a package that is not installed (bench_official.py)")


def _stand_in(name: str, **attributes: object) -> None:
    """An inert module `name` with `attributes` when the real one cannot be imported.

    The official packages import training-only dependencies at module level; their generators
    never call them, so the benchmark does not need Lightning, kornia or torchvision installed.
    """
    try:
        importlib.import_module(name)
        return
    except ImportError:
        pass
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        dotted = ".".join(parts[:depth])
        if dotted not in sys.modules:
            sys.modules[dotted] = types.ModuleType(dotted)
            if depth > 1:
                setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], sys.modules[dotted])
    for key, value in attributes.items():
        setattr(sys.modules[name], key, value)


@contextlib.contextmanager
def on_path(repo: Path) -> Iterator[None]:
    """The official checkout first on `sys.path` while its modules are imported."""
    sys.path.insert(0, str(repo))
    try:
        yield
    finally:
        sys.path.remove(str(repo))


CALIBRATION_SIDE = 128


@torch.no_grad()
def _calibrate_batch_norms(network: torch.nn.Module, run: Pass) -> None:
    """Random affine batch norms whose statistics are those of one pass on random data, then perturbed
    (how the LaMa fixtures were drawn, SPEC §7): with the default init and unit statistics big-lama's
    output is almost flat (0.49 ± 0.02 in the hole), which would leave little for a comparison to see."""
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None  # a cumulative average: one pass sets the statistics of that pass
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    network.train()
    run(network, torch.rand(1, 3, CALIBRATION_SIDE, CALIBRATION_SIDE), centred_hole(CALIBRATION_SIDE))
    network.eval()
    for norm in norms:
        norm.running_mean.add_(torch.randn_like(norm.running_mean) * 0.1)
        norm.running_var.mul_(torch.empty_like(norm.running_var).uniform_(0.6, 1.5))


# --- LaMa -------------------------------------------------------------------------------------------------


def _build_lama() -> torch.nn.Module:
    _stand_in("pytorch_lightning", seed_everything=_unavailable)
    _stand_in("kornia.geometry.transform", rotate=_unavailable)
    ffc = importlib.import_module("saicinpainting.training.modules.ffc")
    network = ffc.FFCResNetGenerator(**BIG_LAMA_GENERATOR)
    _calibrate_batch_norms(network, _run_lama)
    return network


def _run_lama(network: torch.nn.Module, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """`DefaultInpaintingTrainingModule.forward` under `torch.no_grad`, as bin/predict.py runs it."""
    with torch.no_grad():
        return network(torch.cat([image * (1 - hole), hole], dim=1))


# --- DeepFill v2 (pt) -------------------------------------------------------------------------------------


def _build_deepfill() -> torch.nn.Module:
    networks = importlib.import_module("model.networks")
    network = networks.Generator(cnum_in=5, cnum=48, return_flow=False)
    # How the DeepFill fixtures were drawn (SPEC §8): the default init leaves the output flat
    # (0.5 ± 1e-6); with these weights gates spread over (0, 1) and nothing saturates.
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 2 / module.weight[0].numel() ** 0.5)
                module.bias.normal_(0, 0.25)
    return network.eval()


def _run_deepfill(network: torch.nn.Module, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """test.py's preparation and forward: [-1, 1] image, masked, with a ones and a mask channel."""
    with torch.inference_mode():
        masked = (image * 2 - 1) * (1 - hole)
        ones = torch.ones_like(masked[:, :1])
        _, fine = network(torch.cat([masked, ones, ones * hole], dim=1), hole)
        return ((fine + 1) / 2).clamp(0, 1)


# --- PConv ------------------------------------------------------------------------------------------------


def _build_pconv() -> torch.nn.Module:
    _stand_in("torchvision.models", vgg16=_unavailable)
    net = importlib.import_module("net")
    network = net.PConvUNet(layer_size=7)
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        # Fixture-like weights (SPEC §7.1): the default init's 1/sum(M) renormalisation makes deep
        # activations vanish, which would leave little for the comparison to see.
        from pconv_reference import randomize_
    finally:
        sys.path.remove(str(ROOT / "tests"))
    randomize_(network, seed=0)
    network.eval()  # its `train` override returns nothing
    return network


def _run_pconv(network: torch.nn.Module, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """places2.py's input (normalised image × mask, 3-channel valid mask) and evaluation.py's forward."""
    with torch.no_grad():
        valid = (1 - hole).expand(-1, 3, -1, -1)
        raw, _ = network(IMAGENET.to_network(image) * valid, valid)
        return IMAGENET.from_network(raw).clamp(0, 1)


FAMILIES = {
    "lama": Family(
        "lama",
        "https://github.com/advimman/lama",
        _build_lama,
        lambda state: {"state_dict": {f"generator.{k}": v for k, v in state.items()}},
        _run_lama,
    ),
    "deepfill": Family(
        "gatedconv",
        "https://github.com/nipponjo/deepfillv2-pytorch",
        _build_deepfill,
        lambda state: {"G": state},
        _run_deepfill,
        lambda side: int(DEEPFILL_BASE_BYTES + DEEPFILL_BYTES_PER_SCORE * (side // 8) ** 4),
    ),
    "pconv": Family(
        "pconv",
        "https://github.com/naoto0804/pytorch-inpainting-with-partial-conv",
        _build_pconv,
        lambda state: {"n_iter": 0, "model": state},
        _run_pconv,
    ),
}


# --- measurement ------------------------------------------------------------------------------------------


def photo(side: int) -> torch.Tensor:
    """The example photo resized to side×side, 1×3×H×W in [0, 1] (multiples of 1/255)."""
    with Image.open(PHOTO) as picture:
        pixels = np.asarray(picture.convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / LEVELS


def load_ours(family: Family, official: torch.nn.Module, folder: Path) -> dict[str, Inpainter]:
    """Our inpainter per precision, from the official state dict saved in the official container."""
    path = folder / f"official_{family.name}.pth"
    state = {k: v.detach().clone() for k, v in official.state_dict().items()}
    torch.save(family.container(state), path)
    ours = {p: Inpainter.from_checkpoint(path, family.name, device="cpu", precision=p) for p in PRECISIONS}
    # Every eligible layer in int8, the guard switched off: what weights that pass it would run at.
    unguarded = Inpainter.from_checkpoint(path, family.name, device="cpu", precision="fp32")
    quantize_int8(unguarded.network, unguarded.runner.predict, max_hole_error=math.inf)
    return {**ours, ALL_INT8: unguarded}


def release_free_memory() -> None:
    """Hand the C heap's free memory back to the system (glibc), so that a pass reusing what an
    earlier candidate freed does not look as if it needed nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def in_hole(a: torch.Tensor, b: torch.Tensor, hole: torch.Tensor) -> str:
    """Mean / max absolute difference of two [0, 1] predictions inside the hole, in 0..255 levels."""
    difference = (a - b).abs()[hole.expand_as(a).bool()] * LEVELS
    return f"{difference.mean().item():.2f}/{difference.max().item():.1f}"


def measure(label: str, family: Family, repo: Path, sizes: list[int], rounds: int) -> list[str]:
    """Table rows of one family: parity check, interleaved speed, differences and peak RSS per size."""
    torch.manual_seed(0)
    with on_path(repo):
        official = family.build()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ["INPAINT_HOME"] = folder  # a first use: int8 calibrates (no kept plan)
        ours = load_ours(family, official, Path(folder))
    print(f"{label}: ours {ours['int8'].precision_summary}", flush=True)
    for side in sizes:
        image, hole = photo(side), centred_hole(side)
        needed, available = family.official_bytes(side), psutil.virtual_memory().available
        if needed > MEMORY_SHARE * available:
            rows.append(
                f"{label:<9} {side:>5}  skipped: the official pass needs about {needed / GIB:.1f} GiB, "
                f"{available / GIB:.1f} GiB available"
            )
            print(rows[-1], flush=True)
            continue
        passes: dict[str, Callable[[], torch.Tensor]] = {
            OFFICIAL: lambda x=image, h=hole: family.run(official, x, h)
        }
        for precision, inpainter in ours.items():
            passes[f"ours {precision}"] = lambda i=inpainter, x=image, h=hole: i.runner.predict(x, h)
        # The warm-up round: outputs for the comparison, and the peak RSS a first pass adds.
        outputs, peaks = {}, {}
        for name, action in passes.items():
            release_free_memory()
            outputs[name], peaks[name] = peak_rss_increase(action)
        parity = (outputs["ours fp32"] - outputs[OFFICIAL]).abs().max().item()
        print(f"{label} {side}²: ours fp32 vs official, max |difference| {parity:.2e}", flush=True)
        if not parity <= PARITY_TOLERANCE:
            raise SystemExit(
                f"{label}: ours and the official code disagree ({parity:.2e} > {PARITY_TOLERANCE})"
            )
        cpu: dict[str, list[float]] = {}
        interleaved(passes, rounds=rounds, warmup=0, cpu_seconds=cpu)
        speedups = "".join(f" {ratio(cpu, OFFICIAL, f'ours {p}'):>8.2f}x" for p in (*PRECISIONS, ALL_INT8))
        rss = "/".join(f"{peaks[name] / MIB:.0f}" for name in passes)
        rows.append(
            f"{label:<9} {side:>5} {statistics.median(cpu[OFFICIAL]):>10.2f}{speedups} {parity:>11.1e} "
            f"{in_hole(outputs['ours bf16'], outputs[OFFICIAL], hole):>10} "
            f"{in_hole(outputs['ours int8'], outputs[OFFICIAL], hole):>10} "
            f"{in_hole(outputs[f'ours {ALL_INT8}'], outputs[OFFICIAL], hole):>10}  {rss}"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lama-repo", type=Path, help="checkout of advimman/lama")
    parser.add_argument("--deepfill-repo", type=Path, help="checkout of nipponjo/deepfillv2-pytorch")
    parser.add_argument(
        "--pconv-repo", type=Path, help="checkout of naoto0804/pytorch-inpainting-with-partial-conv"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="1: CPU time is compute time")
    args = parser.parse_args()
    pin_threads(args.threads)
    repos = {"lama": args.lama_repo, "deepfill": args.deepfill_repo, "pconv": args.pconv_repo}
    for label, repo in repos.items():
        if repo is None:
            print(f"{label}: skipped; git clone {FAMILIES[label].url} and pass --{label}-repo PATH")
        elif not repo.is_dir():
            raise SystemExit(f"--{label}-repo {repo}: no such folder")
    print(machine_summary())
    print(
        "\n## One network pass: official CPU time, and official/ours CPU time (interleaved, median of "
        "per-round ratios; > 1 = ours faster)\n"
        "## fp32 max|Δ|: ours fp32 vs official in [0, 1]; bf16, int8: ours vs official inside the hole, "
        "mean/max in 0..255 levels\n"
        "## int8: with the accuracy guard (its plan is printed per family); int8 all: every eligible layer "
        "in int8 (the guard off), the speed of weights that pass the guard whole\n"
        "## peak MiB: RSS a first pass adds, official/fp32/bf16/int8/int8 all"
    )
    header = f"{'family':<9} {'side':>5} {'official s':>10}" + "".join(
        f" {p:>9}" for p in (*PRECISIONS, ALL_INT8)
    )
    print(header + f" {'fp32 max|Δ|':>9} {'bf16 Δ':>10} {'int8 Δ':>10} {'all Δ':>10}  peak MiB", flush=True)
    rows = []
    for label, repo in repos.items():
        if repo is not None:
            rows += measure(label, FAMILIES[label], repo.resolve(), args.sizes, args.rounds)
    print("\n" + header + f" {'fp32 max|Δ|':>9} {'bf16 Δ':>10} {'int8 Δ':>10} {'all Δ':>10}  peak MiB")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
