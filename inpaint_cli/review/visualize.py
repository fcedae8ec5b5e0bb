"""Intermediates -> statistics, pictures people can read, and raw tensors on request.

`save_intermediates` writes, for one input, `stats.json` (per tensor: mean value inside and
outside the hole, hole fraction), the family's pictures and `panel.png`; `intermediates.safetensors`
(raw tensors named `mask.<layer>`, `gate.<layer>`, `feature.<layer>`) only when asked for, in fp32
or fp16 (the raw tensors of gatedconv-tiny on a 640×427 photo are 146 MB in fp32). A model without
intermediates (the classical methods) gets nothing written. Each family's picture renderer lives in
its own section below and is picked by the prefix of the tensor names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from safetensors.torch import save_file

from inpaint_cli.engine.regions import Box
from inpaint_cli.imaging.imageio import atomic_path
from inpaint_cli.imaging.pixels import to_rgb8

HOLE_THRESHOLD = 0.5
"""A downsampled hole mask counts a cell as hole when at least half of it is hole."""


# --- shared helpers -------------------------------------------------------------------------------


def hole_at(hole: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The N×1×H×W {0,1} hole mask resampled (area average) to `size`, as a {0,1} float tensor."""
    if tuple(hole.shape[-2:]) == tuple(size):
        return hole.float()
    return (F.adaptive_avg_pool2d(hole.float(), size) >= HOLE_THRESHOLD).float()


def masked_means(values: torch.Tensor, hole: torch.Tensor) -> dict[str, float | None]:
    """Mean of an N×C×h×w tensor inside and outside the (resampled) hole, and the hole fraction."""
    cells = hole_at(hole, tuple(values.shape[-2:]))
    per_pixel = values.float().mean(dim=1, keepdim=True)
    inside = cells.sum().item()
    outside = cells.numel() - inside
    return {
        "mean_inside_hole": (per_pixel * cells).sum().item() / inside if inside else None,
        "mean_outside_hole": (per_pixel * (1 - cells)).sum().item() / outside if outside else None,
        "hole_fraction": inside / cells.numel(),
    }


def font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def label(picture: Image.Image, text: str, size: int = 14) -> Image.Image:
    """A copy of `picture` with a caption bar above it."""
    bar = size + 8
    canvas = Image.new("RGB", (picture.width, picture.height + bar), "white")
    canvas.paste(picture.convert("RGB"), (0, bar))
    ImageDraw.Draw(canvas).text((4, 3), text, fill="black", font=font(size))
    return canvas


def hstack(pictures: list[Image.Image], gap: int = 4) -> Image.Image:
    height = max(p.height for p in pictures)
    width = sum(p.width for p in pictures) + gap * (len(pictures) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for picture in pictures:
        canvas.paste(picture.convert("RGB"), (x, 0))
        x += picture.width + gap
    return canvas


def save_png(path: Path, picture: Image.Image) -> Path:
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def to_display(pixels: np.ndarray) -> Image.Image:
    """An 8-bit RGB picture of an H×W×C uint8/uint16 array (grey is replicated)."""
    return Image.fromarray(to_rgb8(pixels), "RGB")


# --- comparison panel ------------------------------------------------------------------------------

HOLE_OVERLAY_COLOUR = np.array([255, 40, 40], dtype=np.float32)
HOLE_OVERLAY_ALPHA = 0.55


def make_panel(
    before: np.ndarray, hole: np.ndarray, after: np.ndarray, coarse: np.ndarray | None = None
) -> Image.Image:
    """`input | mask overlay | [coarse |] result`, labelled, for a quick look at one result."""
    shown = to_display(before)
    overlay = np.asarray(shown, dtype=np.float32).copy()
    overlay[hole] = overlay[hole] * (1 - HOLE_OVERLAY_ALPHA) + HOLE_OVERLAY_COLOUR * HOLE_OVERLAY_ALPHA
    tiles = [
        label(shown, "input"),
        label(Image.fromarray(overlay.round().astype(np.uint8), "RGB"), f"mask ({hole.mean():.1%} hole)"),
    ]
    if coarse is not None:
        tiles.append(label(to_display(coarse), "coarse"))
    tiles.append(label(to_display(after), "result"))
    return hstack(tiles)


# --- intermediates ----------------------------------------------------------------------------------

Renderer = Callable[[dict[str, torch.Tensor], torch.Tensor, Path], list[Path]]
"""(intermediates of one kind, N×1×H×W hole mask, output folder) -> PNG files written."""

RENDERERS: dict[str, Renderer] = {}
"""Tensor-name prefix (`mask`, `gate`, `feature`) -> the family picture renderer."""


def layer_stats(intermediates: dict[str, torch.Tensor], hole: torch.Tensor) -> dict[str, dict]:
    return {name: masked_means(values, hole) for name, values in intermediates.items() if values.dim() == 4}


TENSOR_FORMATS = ("none", "fp16", "fp32")
"""How raw tensors are kept: not at all (the default), or in `intermediates.safetensors` at half or
full precision (fp16 halves the file; gates and masks in [0, 1] keep about 3 significant digits)."""
_TENSOR_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def save_intermediates(
    folder: Path,
    intermediates: dict[str, torch.Tensor],
    hole: torch.Tensor,
    panel: Image.Image | None = None,
    *,
    tensors: str = "none",
    box: Box | None = None,
) -> list[Path]:
    """Write `stats.json`, the family pictures, `panel.png` and (with `tensors` fp16 or fp32) the raw
    tensors into `folder`; return the files written. Nothing at all without intermediates. `box`:
    the part of the image the pass filled, recorded in `stats.json` (a plan may fill several)."""
    if tensors not in TENSOR_FORMATS:
        raise ValueError(f"tensors must be one of {', '.join(TENSOR_FORMATS)}, not {tensors!r}")
    if not intermediates:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    values = {name: value.detach().float().contiguous().cpu() for name, value in intermediates.items()}
    written = [folder / "stats.json"]
    stats: dict[str, object] = {
        "layers": layer_stats(values, hole),
        "hole_fraction": float(hole.float().mean()),
    }
    if box is not None:
        edges = {"top": box.top, "left": box.left, "bottom": box.bottom, "right": box.right}
        stats["box"] = {**edges, "scale": box.scale}
    with atomic_path(written[0]) as tmp:
        tmp.write_text(json.dumps(stats, indent=2) + "\n")
    if tensors != "none":
        dtype = _TENSOR_DTYPES[tensors]
        written.append(folder / "intermediates.safetensors")
        with atomic_path(written[-1]) as tmp:
            save_file({name: value.to(dtype) for name, value in values.items()}, str(tmp))
    for prefix, render in RENDERERS.items():
        selected = {k: v for k, v in values.items() if k.startswith(prefix + ".")}
        if selected:
            written += render(selected, hole, folder)
    if panel is not None:
        written.append(save_png(folder / "panel.png", panel))
    return written


# --- PConv: mask updates --------------------------------------------------------------------------

MASK_TILE_SIDE = 192
"""Longer side, in pixels, of one tile of `mask_updates.png`."""
STILL_HOLE_COLOUR = (255, 255, 255)
FILLED_COLOUR = (240, 150, 40)
"""Input-hole pixels that a layer's mask already counts as valid."""
KNOWN_COLOUR = (40, 40, 40)


def _hole_tile(remaining: torch.Tensor, input_hole: torch.Tensor) -> Image.Image:
    """Tile of a layer: its remaining hole, the part of the input hole it filled, and the known pixels."""
    colours = torch.tensor([KNOWN_COLOUR, FILLED_COLOUR, STILL_HOLE_COLOUR], dtype=torch.uint8)
    kind = torch.where(remaining > 0, 2, input_hole.long())
    return Image.fromarray(colours[kind].numpy(), "RGB")


def render_mask_updates(masks: dict[str, torch.Tensor], hole: torch.Tensor, folder: Path) -> list[Path]:
    """`mask_updates.png`: the hole left after each partial convolution, one labelled tile per layer,
    each layer's mask (1 = valid) upsampled (nearest) to the input's shape; `mask_stats.json`: the
    fraction of each layer's positions that is still hole, at the layer's own resolution."""
    height, width = hole.shape[-2:]
    scale = MASK_TILE_SIDE / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    input_hole = F.interpolate(hole[:1].float(), size=size, mode="nearest")[0, 0] > 0
    input_fraction = float(hole[:1].float().mean())
    tiles = [label(_hole_tile(input_hole, input_hole), f"input: {input_fraction:.1%} hole")]
    layers = {}
    for name, mask in masks.items():
        layer = name.removeprefix("mask.")
        remaining = (mask[:1, :1] == 0).float()
        fraction = float(remaining.mean())
        layers[layer] = {
            "height": mask.shape[-2],
            "width": mask.shape[-1],
            "remaining_hole_fraction": fraction,
        }
        shown = F.interpolate(remaining, size=size, mode="nearest")[0, 0]
        tiles.append(label(_hole_tile(shown, input_hole), f"{layer}: {fraction:.1%} hole"))
    stats_path = folder / "mask_stats.json"
    with atomic_path(stats_path) as tmp:
        tmp.write_text(json.dumps({"input_hole_fraction": input_fraction, "layers": layers}, indent=2) + "\n")
    return [save_png(folder / "mask_updates.png", hstack(tiles)), stats_path]


RENDERERS["mask"] = render_mask_updates


# --- LaMa: feature energy -------------------------------------------------------------------------

ENERGY_TILE_SIDE = 256
"""Longer side, in pixels, of one energy map in `feature_<layer>.png`."""
ENERGY_RAMP = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)
"""Colours from zero to the stage's top energy (an inferno-like ramp)."""
ENERGY_TOP_QUANTILE = 0.99
"""The colour scale of a stage ends at this quantile of its energies, so a few hot pixels do not
darken the rest."""
HOLE_OUTLINE_COLOUR = (0, 255, 255)


def feature_energy(values: torch.Tensor) -> torch.Tensor:
    """Mean squared activation over the channels of the first batch item: an h×w map."""
    return values[0].float().pow(2).mean(dim=0)


def _energy_tile(energy: torch.Tensor, top: float, hole: torch.Tensor) -> Image.Image:
    """An energy map in colour, upsampled (nearest) to the tile size, with the hole outlined."""
    scale = ENERGY_TILE_SIDE / max(energy.shape)
    size = (max(1, round(energy.shape[0] * scale)), max(1, round(energy.shape[1] * scale)))
    shown = F.interpolate(energy[None, None], size=size, mode="nearest")[0, 0]
    levels = (shown / top).clamp(0, 1).numpy() * (len(ENERGY_RAMP) - 1)
    stops = np.arange(len(ENERGY_RAMP))
    rgb = np.stack([np.interp(levels, stops, ENERGY_RAMP[:, c]) for c in range(3)], axis=-1)
    cells = F.interpolate(hole_at(hole[:1], tuple(energy.shape)), size=size, mode="nearest")
    near_known = F.max_pool2d(1 - cells, 3, stride=1, padding=1)
    rgb[((cells > 0) & (near_known > 0))[0, 0].numpy()] = HOLE_OUTLINE_COLOUR
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def render_feature_energy(features: dict[str, torch.Tensor], hole: torch.Tensor, folder: Path) -> list[Path]:
    """`feature_<layer>.png` per LaMa stage: the energy (mean squared activation) of its local and
    global (spectral) branches side by side on one colour scale, the hole outlined, each labelled with
    its mean energy inside and outside the hole. Decoder stages have a single map."""
    stages: dict[str, dict[str, torch.Tensor]] = {}
    for name, values in features.items():
        layer = name.removeprefix("feature.")
        stage, _, branch = layer.rpartition(".")
        if branch not in ("local", "global"):
            stage, branch = layer, "decoder"
        stages.setdefault(stage, {})[branch] = feature_energy(values)
    written = []
    for stage, energies in stages.items():
        top = torch.quantile(torch.cat([e.flatten() for e in energies.values()]), ENERGY_TOP_QUANTILE).item()
        top = top if top > 0 else 1.0
        tiles = []
        for branch, energy in energies.items():
            means = masked_means(energy[None, None], hole)
            inside, outside = (_short(means[key]) for key in ("mean_inside_hole", "mean_outside_hole"))
            text = f"{branch}: hole {inside}, known {outside}"
            tiles.append(label(_energy_tile(energy, top, hole), text, size=12))
        title = f"{stage} energy, scale 0 to {top:.3g}"
        written.append(save_png(folder / f"feature_{stage}.png", label(hstack(tiles), title)))
    return written


RENDERERS["feature"] = render_feature_energy


# --- GatedConv: gates -----------------------------------------------------------------------------

GATE_CHANNELS_SHOWN = 8
"""Channels shown per layer beside the mean: those whose gates differ most between hole and known."""
GATE_GRID_COLUMNS = 3


def selective_channels(gates: torch.Tensor, hole: torch.Tensor, count: int) -> list[tuple[int, float, float]]:
    """The `count` channels of an N×C×h×w gate tensor (first item) whose mean gate differs most
    between hole and known cells, most selective first, as (channel, mean in hole, mean outside).
    Empty when the layer has no hole or no known cell to compare."""
    cells = hole_at(hole[:1], tuple(gates.shape[-2:]))[0, 0].bool()
    if cells.all() or not cells.any():
        return []
    values = gates[0].float()
    inside, outside = values[:, cells].mean(dim=1), values[:, ~cells].mean(dim=1)
    order = (inside - outside).abs().argsort(descending=True, stable=True)[:count]
    return [(int(c), inside[c].item(), outside[c].item()) for c in order]


def _stack_rows(rows: list[Image.Image], gap: int = 4) -> Image.Image:
    height = sum(row.height for row in rows) + gap * (len(rows) - 1)
    canvas = Image.new("RGB", (max(row.width for row in rows), height), "white")
    y = 0
    for row in rows:
        canvas.paste(row, (0, y))
        y += row.height + gap
    return canvas


def render_gates(gates: dict[str, torch.Tensor], hole: torch.Tensor, folder: Path) -> list[Path]:
    """`gates_<layer>.png` per gated layer: the mean gate over channels, then the channels most
    selective for the hole (the learned soft mask), on the fixed scale 0 (suppress) to 1 (pass), the
    hole outlined, each labelled with its mean gate inside and outside the hole."""
    written = []
    for name, values in gates.items():
        layer = name.removeprefix("gate.")
        means = masked_means(values[:1], hole)
        inside, outside = (_short(means[key]) for key in ("mean_inside_hole", "mean_outside_hole"))
        mean_text = f"mean of {values.shape[1]}: hole {inside}, known {outside}"
        tiles = [label(_energy_tile(values[0].float().mean(dim=0), 1.0, hole), mean_text, size=12)]
        for channel, inside_mean, outside_mean in selective_channels(values, hole, GATE_CHANNELS_SHOWN):
            text = f"ch {channel}: hole {inside_mean:.2f}, known {outside_mean:.2f}"
            tiles.append(label(_energy_tile(values[0, channel].float(), 1.0, hole), text, size=12))
        rows = [hstack(tiles[i : i + GATE_GRID_COLUMNS]) for i in range(0, len(tiles), GATE_GRID_COLUMNS)]
        title = f"{layer} gates, 0 (suppress) to 1 (pass)"
        written.append(save_png(folder / f"gates_{layer}.png", label(_stack_rows(rows), title)))
    return written


RENDERERS["gate"] = render_gates
