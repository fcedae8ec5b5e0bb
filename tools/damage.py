"""Synthetic old-print damage with exact truth masks, and the old-photo look that is not damage.

Used by `train_scratch_tiny.py` (training) and `benchmarks/eval_detectors.py` (held-out evaluation,
other seeds and other photographs). Everything works on H×W×3 float32 pixels in [0, 1].

A print is made in the order a real one ages: the photograph is first given its look (`age`: grey,
sepia or cyanotype tones, fading, soft focus, halftone screens, film grain, vignetting, paper
texture), then damaged (`add_damage`: what is lost shows paper, scanner background or dirt, never
the photograph), then scanned (`scan`: sensor noise, slight blur, JPEG). Only the damage is in the
truth mask; the look and the scan are what the detector must leave alone, and so are the lines
of the photograph itself (`scene_lines`: ropes, rigging, wires, striped cloth; training's hard negatives).

Kinds (`KINDS`): thin light and dark scratches (1-5 px, straight and curved), crack networks
(branching walks and Voronoi edges, light paper or dark dirt, some with a shadowed rim), folds
(a crease line with the emulsion broken along it, a shaded ridge beside it), tears and missing
corners (paper or scanner background with a torn fibrous rim), dust and hair, spots, foxing
(brown stains), emulsion loss (flaked-off patches showing paper).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

SHARE = {
    "scratch_light": 2.0,
    "scratch_dark": 1.5,
    "crack": 2.5,
    "fold": 1.0,
    "tear": 0.6,
    "corner": 0.6,
    "dust": 1.5,
    "spots": 1.0,
    "foxing": 0.6,
    "emulsion": 0.6,
}
"""How often training draws each kind: thin damage most. Large light patches (tears, corners, lost
emulsion) drawn as often taught the network that every light region of a print (a face, a collar)
is damage."""
KINDS = (
    "scratch_light",
    "scratch_dark",
    "crack",
    "fold",
    "tear",
    "corner",
    "dust",
    "spots",
    "foxing",
    "emulsion",
)
RIMS = 0.35
"""Share of `scene_lines` drawn as rims along the photograph's own edges (`_rims`): 0 in run r5,
0.35 in run r6 (r5 marked the rims of cups and shells; r6 marked them less but found fewer light
scratches: see the model card)."""
TRUTH_ALPHA = 0.3
"""A pixel is damage in the truth where the damage layer covers at least this much of it."""
Rng = np.random.Generator


# --- shapes -----------------------------------------------------------------------------------------


def curve(
    rng: Rng, h: int, w: int, length: float, bend: float, start: np.ndarray | None = None
) -> np.ndarray:
    """A random polyline of about `length` px in 2-px steps; `bend`: turning per step (radians)."""
    steps = max(2, int(length / 2))
    angle = rng.uniform(0, 2 * math.pi)
    turns = angle + np.cumsum(rng.normal(0, bend, steps))
    origin = np.array([rng.uniform(0, w), rng.uniform(0, h)]) if start is None else start
    moves = np.stack([np.cos(turns), np.sin(turns)], axis=1) * 2
    return (origin + np.vstack([[0, 0], np.cumsum(moves, axis=0)])).astype(np.float32)


def draw(layer: np.ndarray, points: np.ndarray, thickness: int, value: float = 1.0) -> None:
    """Anti-aliased polyline at 1/16 px precision (thin lines get fractional coverage)."""
    pts = np.round(points * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(layer, [pts], False, value, max(1, thickness), cv2.LINE_AA, 4)


def smooth_noise(rng: Rng, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise in about [-1, 1] varying over `cell` px."""
    small = rng.normal(0, 1, (max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / 1.5


def warp(layer: np.ndarray, rng: Rng, amount: float, cell: float) -> np.ndarray:
    """`layer` displaced by a smooth random field (irregular edges, wandering lines)."""
    h, w = layer.shape
    grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = grid_x + amount * smooth_noise(rng, h, w, cell)
    map_y = grid_y + amount * smooth_noise(rng, h, w, cell)
    return cv2.remap(layer, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def scratch_layer(rng: Rng, h: int, w: int) -> np.ndarray:
    """1-4 long scratches, straight or gently curved, 1-5 px wide (mostly 1-2)."""
    layer = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 5)):
        length = rng.uniform(0.4, 1.6) * max(h, w)
        bend = rng.choice([0.0, 0.005, 0.02, 0.05])
        width = int(rng.choice([1, 1, 1, 2, 2, 3, 4, 5]))
        line = np.zeros_like(layer)
        draw(line, curve(rng, h, w, length, bend), width, float(rng.uniform(0.6, 1.0)))
        if rng.random() < 0.4:  # broken scratches: the stylus skipped
            line *= smooth_noise(rng, h, w, rng.uniform(15, 60)) > -0.3
        np.maximum(layer, line, out=layer)
    return layer


def _branches(rng: Rng, layer: np.ndarray, start: np.ndarray, length: float, width: int, depth: int) -> None:
    h, w = layer.shape
    points = curve(rng, h, w, length, rng.uniform(0.1, 0.35), start)
    draw(layer, points, width)
    if depth == 0:
        return
    for _ in range(rng.integers(1, 4)):
        fork = points[rng.integers(len(points))]
        _branches(rng, layer, fork, length * rng.uniform(0.3, 0.7), max(1, width - 1), depth - 1)


def voronoi_edges(rng: Rng, h: int, w: int, cell: float) -> np.ndarray:
    """Cell boundaries of random seeds about `cell` px apart, 1 px wide, as 0/1 float32."""
    seeds = np.ones((h, w), np.uint8)
    count = max(3, int(h * w / cell**2))
    ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
    seeds[ys, xs] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    edges = np.zeros((h, w), bool)
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[1:, :] |= labels[1:, :] != labels[:-1, :]
    return edges.astype(np.float32)


def crack_layer(rng: Rng, h: int, w: int) -> np.ndarray:
    """A crack network: branching walks, or the edges of irregular cells (craquelure), over a part
    of the picture or all of it, 1-3 px wide."""
    if rng.random() < 0.5:
        layer = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(1, 4)):
            start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
            _branches(rng, layer, start, rng.uniform(0.3, 0.9) * max(h, w), int(rng.integers(1, 4)), 2)
        return layer
    cell = rng.uniform(0.08, 0.35) * max(h, w)
    layer = warp(voronoi_edges(rng, h, w, cell), rng, rng.uniform(2, 8), rng.uniform(8, 30))
    layer = (layer > 0.35).astype(np.float32)
    width = int(rng.choice([1, 1, 2, 3]))
    if width > 1:
        layer = cv2.dilate(layer, np.ones((width, width), np.uint8))
    # Only some cells' edges crack, and a region of the print may be spared.
    layer *= smooth_noise(rng, h, w, rng.uniform(10, 40)) > rng.uniform(-0.8, 0.2)
    if rng.random() < 0.5:
        layer *= smooth_noise(rng, h, w, max(h, w) / 2) > rng.uniform(-0.5, 0.3)
    return cv2.GaussianBlur(layer, (0, 0), 0.5)


def fold_line(rng: Rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A fold across the print: (broken-emulsion line 1-4 px wide, signed shading of the ridge)."""
    points = curve(rng, h, w, 2.5 * max(h, w), rng.uniform(0.0, 0.01))
    points -= points.mean(axis=0) - np.array([rng.uniform(0, w), rng.uniform(0, h)])
    line = np.zeros((h, w), np.float32)
    draw(line, points, int(rng.integers(1, 5)))
    line *= smooth_noise(rng, h, w, rng.uniform(10, 40)) > rng.uniform(-0.9, -0.2)
    side = np.zeros((h, w), np.float32)
    draw(side, points + rng.normal(0, 1, 2).astype(np.float32) * 3, int(rng.integers(4, 12)))
    shading = cv2.GaussianBlur(side, (0, 0), rng.uniform(2, 6)) * rng.choice([-1.0, 1.0])
    return line, shading


def _torn_polygon_layer(rng: Rng, h: int, w: int, polygon: np.ndarray) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    cv2.fillPoly(layer, [np.round(polygon * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    # Torn paper is ragged at several scales.
    return np.clip(warp(layer, rng, rng.uniform(1, 5), rng.uniform(4, 20)), 0, 1)


def tear_layer(rng: Rng, h: int, w: int) -> np.ndarray:
    """A strip torn off along one edge (wavy, ragged)."""
    depth = rng.uniform(0.03, 0.15)
    a, b = sorted(rng.uniform(-0.2, 1.2, 2))
    b = max(b, a + 0.3)
    xs = np.linspace(a, b, 24)
    inward = depth * (0.3 + 0.7 * np.sin(np.linspace(0, math.pi, 24)) ** rng.uniform(0.3, 1.5))
    edge = np.stack([xs, inward + rng.normal(0, 0.01, 24)], axis=1)
    polygon = np.vstack([[a, 0], edge, [b, 0]])
    side = rng.integers(4)
    if side in (1, 3):  # left or right: swap the axes
        polygon = polygon[:, ::-1]
    if side in (2, 3):  # bottom or right: mirror
        polygon = 1 - polygon
    return _torn_polygon_layer(rng, h, w, polygon * np.array([w, h]))


def corner_layer(rng: Rng, h: int, w: int) -> np.ndarray:
    """A missing corner, cut straight or torn in a curve."""
    reach = rng.uniform(0.08, 0.3, 2)
    t = np.linspace(0, 1, 16)
    bulge = rng.uniform(-0.3, 0.3)
    edge = np.stack([reach[0] * (1 - t), reach[1] * t], axis=1)
    edge += bulge * np.outer(np.sin(math.pi * t), reach[::-1])
    polygon = np.vstack([[0, 0], edge])
    if rng.random() < 0.5:
        polygon[:, 0] = 1 - polygon[:, 0]
    if rng.random() < 0.5:
        polygon[:, 1] = 1 - polygon[:, 1]
    return _torn_polygon_layer(rng, h, w, polygon * np.array([w, h]))


def dust_layer(rng: Rng, h: int, w: int) -> np.ndarray:
    """Specks (1-4 px) and a few hairs (short thin curls)."""
    layer = np.zeros((h, w), np.float32)
    count = int(rng.integers(5, 60) * max(1.0, h * w / 512**2))
    for _ in range(count):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        cv2.ellipse(
            layer, centre, axes, rng.uniform(0, 180), 0, 360, float(rng.uniform(0.6, 1)), -1, cv2.LINE_AA
        )
    for _ in range(rng.integers(0, 4)):
        draw(
            layer,
            curve(rng, h, w, rng.uniform(20, 120), rng.uniform(0.1, 0.4)),
            1,
            float(rng.uniform(0.6, 1)),
        )
    return layer


def spot_layer(rng: Rng, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 8)):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.integers(2, 12)), int(rng.integers(2, 12)))
        cv2.ellipse(layer, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    return np.clip(warp(layer, rng, 2, 6), 0, 1)


def foxing_layer(rng: Rng, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 8)):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(layer, centre, int(rng.integers(3, 16)), float(rng.uniform(0.6, 1.0)), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(warp(layer, rng, 3, 8), (0, 0), rng.uniform(1.0, 3.0))


def emulsion_layer(rng: Rng, h: int, w: int) -> np.ndarray:
    """Flaked-off emulsion: irregular patches with sharp, ragged rims."""
    blobs = smooth_noise(rng, h, w, rng.uniform(8, 30))
    blobs += 0.5 * smooth_noise(rng, h, w, rng.uniform(2, 6))
    layer = (blobs > rng.uniform(1.3, 1.9)).astype(np.float32)
    return cv2.GaussianBlur(layer, (0, 0), 0.6)


LAYERS: dict[str, Callable[[Rng, int, int], np.ndarray]] = {
    "scratch_light": scratch_layer,
    "scratch_dark": scratch_layer,
    "crack": crack_layer,
    "tear": tear_layer,
    "corner": corner_layer,
    "dust": dust_layer,
    "spots": spot_layer,
    "foxing": foxing_layer,
    "emulsion": emulsion_layer,
}


# --- what shows where the print is damaged -------------------------------------------------------------


def paper(rng: Rng, h: int, w: int, textures: list[np.ndarray] | None) -> np.ndarray:
    """Paper (cream to white, with texture) or scanner background (white, black or grey), H×W×3."""
    if rng.random() < 0.25:
        level = float(rng.choice([rng.uniform(0.0, 0.12), rng.uniform(0.9, 1.0), rng.uniform(0.4, 0.7)]))
        return np.full((h, w, 3), level, np.float32)
    base = rng.uniform(0.78, 1.0)
    tone = np.array([base, base * rng.uniform(0.93, 1.0), base * rng.uniform(0.8, 1.0)], np.float32)
    surface = np.ones((h, w), np.float32)
    if textures and rng.random() < 0.7:
        texture = textures[rng.integers(len(textures))]
        reps = (h // texture.shape[0] + 1, w // texture.shape[1] + 1)
        tiled = np.tile(texture, reps)[:h, :w]
        surface = 1 + (tiled - tiled.mean()) * rng.uniform(0.3, 1.0)
    surface += rng.normal(0, rng.uniform(0, 0.03), (h, w)).astype(np.float32)
    return np.clip(surface[..., None] * tone, 0, 1)


def dirt(rng: Rng) -> np.ndarray:
    """Dark damage colour: black to brown dirt."""
    level = rng.uniform(0.02, 0.3)
    return np.array([level * rng.uniform(1.0, 1.4), level * rng.uniform(0.9, 1.1), level], np.float32)


def add_damage(
    image: np.ndarray, kind: str, rng: Rng, textures: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Paint one kind of damage over H×W×3 float32 pixels; returns (pixels, truth mask)."""
    h, w = image.shape[:2]
    if kind == "fold":
        line, shading = fold_line(rng, h, w)
        image = np.clip(image * (1 + rng.uniform(0.08, 0.25) * shading[..., None]), 0, 1)
        layer = line * rng.uniform(0.6, 1.0)
        colour = paper(rng, h, w, textures) if rng.random() < 0.8 else np.broadcast_to(dirt(rng), (h, w, 3))
    else:
        layer = LAYERS[kind](rng, h, w)
        if kind in ("scratch_light", "scratch_dark", "crack", "dust", "spots"):
            layer = layer * rng.uniform(0.55, 1.0)
        light = kind in ("scratch_light", "tear", "corner", "emulsion") or (
            kind in ("crack", "dust", "spots") and rng.random() < 0.6
        )
        if kind == "foxing":
            brown = np.array([0.6, 0.38, 0.18], np.float32) * rng.uniform(0.7, 1.2)
            colour = np.broadcast_to(brown, (h, w, 3))
            layer = layer * rng.uniform(0.35, 0.75)
        elif light:
            colour = paper(rng, h, w, textures)
        else:
            colour = np.broadcast_to(dirt(rng), (h, w, 3))
        if kind == "crack" and rng.random() < 0.4:
            # A shadowed rim: the lifted emulsion casts a dark edge beside a light crack (or the reverse).
            rim = cv2.dilate(layer, np.ones((3, 3), np.uint8)) - layer
            shift = np.roll(rim, int(rng.integers(-1, 2)), axis=int(rng.integers(2)))
            image = image * (1 - 0.5 * np.clip(shift, 0, 1)[..., None])
    alpha = np.clip(layer, 0, 1)[..., None]
    painted = image * (1 - alpha) + colour * alpha
    return painted.astype(np.float32), layer >= TRUTH_ALPHA


# --- what is not damage ---------------------------------------------------------------------------------


def _sagging(start: np.ndarray, end: np.ndarray, sag: float) -> np.ndarray:
    """Points of a line from `start` to `end` that sags by `sag` px in the middle (a hanging rope)."""
    t = np.linspace(0, 1, max(2, int(np.linalg.norm(end - start) / 2)), dtype=np.float32)[:, None]
    direction = (end - start) / max(float(np.linalg.norm(end - start)), 1e-6)
    normal = np.array([-direction[1], direction[0]], np.float32)
    return start + t * (end - start) + normal * sag * 4 * t * (1 - t)


def _line_groups(rng: Rng, h: int, w: int) -> np.ndarray:
    """Coverage of ropes, rigging, stays and wires: lines in groups (fanning from one point, or
    parallel), straight or sagging, 1-4 px wide, some twisted (coverage varying along them)."""
    layer = np.zeros((h, w), np.float32)
    size = max(h, w)
    anchor = np.array([rng.uniform(0, w), rng.uniform(-0.3 * h, h)], np.float32)
    fan = rng.random() < 0.5
    offset = rng.normal(0, 1, 2).astype(np.float32)
    offset *= rng.uniform(4, 30) / max(float(np.linalg.norm(offset)), 1e-6)
    target = np.array([rng.uniform(0, w), rng.uniform(0, h)], np.float32)
    for index in range(int(rng.integers(1, 7))):
        start = anchor if fan else anchor + index * offset
        end = target + rng.normal(0, 0.3 * size, 2).astype(np.float32) if fan else target + index * offset
        end = start + (end - start) * 2  # lines run off the picture
        sag = rng.choice([0.0, rng.uniform(-0.08, 0.08) * size])
        line = np.zeros_like(layer)
        draw(line, _sagging(start, end, sag), int(rng.choice([1, 1, 2, 2, 3, 4])), rng.uniform(0.5, 1.0))
        if rng.random() < 0.5:  # a twisted rope: strands catch the light every few px
            line *= 0.6 + 0.4 * (smooth_noise(rng, h, w, rng.uniform(2, 5)) > 0)
        np.maximum(layer, line, out=layer)
    return layer


def _stripes(rng: Rng, h: int, w: int) -> np.ndarray:
    """Coverage of striped or checked cloth over a soft region: threads 1-3 px wide, 4-14 px apart,
    following the folds of the cloth."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(4, 14)
    u = xs * math.cos(angle) + ys * math.sin(angle) + rng.uniform(5, 25) * smooth_noise(rng, h, w, 60)
    duty = rng.uniform(0.12, 0.35)
    pattern = (np.mod(u, period) < duty * period).astype(np.float32)
    if rng.random() < 0.4:
        v = -xs * math.sin(angle) + ys * math.cos(angle)
        pattern = np.maximum(pattern, (np.mod(v, period) < duty * period).astype(np.float32))
    region = smooth_noise(rng, h, w, rng.uniform(0.15, 0.4) * max(h, w)) > rng.uniform(0.3, 0.8)
    return pattern * cv2.GaussianBlur(region.astype(np.float32), (0, 0), 3) * rng.uniform(0.3, 0.8)


def _rims(image: np.ndarray, rng: Rng) -> np.ndarray | None:
    """Coverage of the light rims and highlights of objects: some of the photograph's own longest
    edges (a cup's lip, a saucer's edge, a spoon), 1-3 px wide; None if it has no long edge."""
    grey = np.round(np.clip(image.mean(axis=2), 0, 1) * 255).astype(np.uint8)
    edges = cv2.Canny(cv2.GaussianBlur(grey, (0, 0), 1.5), 40, 120)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(edges, connectivity=8)
    long = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= 40) + 1
    if not len(long):
        return None
    chosen = rng.choice(long, size=min(len(long), int(rng.integers(1, 8))), replace=False)
    layer = np.isin(labels, chosen).astype(np.float32)
    width = int(rng.choice([1, 1, 2, 3]))
    if width > 1:
        layer = cv2.dilate(layer, np.ones((width, width), np.uint8))
    return layer * rng.uniform(0.6, 1.0)


def scene_lines(image: np.ndarray, rng: Rng) -> np.ndarray:
    """Thin lines that belong to the photograph, never damage: ropes, rigging, wires, striped cloth,
    and (a RIMS share) light rims along the photograph's own edges.
    The hard negatives to scratches and cracks. Drawn on the clean picture before `age`, so they carry
    the print's tone, focus and grain, and coloured from the picture's own light or dark tones (a
    scratch shows paper or dirt); light ones often with a shadow beside them."""
    h, w = image.shape[:2]
    choice = rng.random()
    layer = _rims(image, rng) if choice < RIMS else None
    if layer is None:
        layer = _line_groups(rng, h, w) if choice < 0.7 else _stripes(rng, h, w)
    layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(0.3, 1.0))
    luminance = image.mean(axis=2)
    light = rng.random() < 0.6
    level = np.quantile(luminance, rng.uniform(0.9, 0.99) if light else rng.uniform(0.01, 0.1))
    colour = image.reshape(-1, 3)[rng.integers(h * w)]  # a tint of the picture's own
    colour = level * (0.7 + 0.3 * colour / max(float(colour.mean()), 1e-3))
    if light and rng.random() < 0.5:
        shadow = np.roll(layer, (int(rng.integers(1, 3)), int(rng.integers(-1, 2))), axis=(0, 1))
        image = image * (1 - 0.4 * np.clip(shadow - layer, 0, 1))[..., None]
    alpha = np.clip(layer, 0, 1)[..., None]
    return np.clip(image * (1 - alpha) + colour * alpha, 0, 1).astype(np.float32)


def tone(image: np.ndarray, rng: Rng) -> np.ndarray:
    """Grey, sepia, cyanotype or faded colour."""
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    choice = rng.random()
    if choice < 0.25:
        image = np.repeat(grey[..., None], 3, axis=2)
    elif choice < 0.55:
        tint = np.array([1.0, rng.uniform(0.78, 0.92), rng.uniform(0.55, 0.75)], np.float32)
        image = grey[..., None] * tint
    elif choice < 0.6:
        image = grey[..., None] * np.array([0.45, 0.65, 0.95], np.float32)
    elif choice < 0.8:  # colour print whose dyes faded unevenly (magenta/yellow cast)
        cast = np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.6, 0.95)], np.float32)
        image = (0.5 * image + 0.5 * grey[..., None]) * cast
    return image


def halftone(image: np.ndarray, rng: Rng) -> np.ndarray:
    """A printed halftone screen (dots 3-6 px apart at an angle), as in newspaper and book prints."""
    h, w = image.shape[:2]
    period = rng.uniform(3, 6)
    angle = rng.uniform(0, math.pi / 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period
    v = (-xs * math.sin(angle) + ys * math.cos(angle)) * 2 * math.pi / period
    screen = (np.cos(u) * np.cos(v) + 1) / 2
    luminance = image.mean(axis=2, keepdims=True)
    dots = np.clip((luminance - screen[..., None]) * 4 + 0.5, 0, 1)
    mix = rng.uniform(0.3, 0.8)
    return image * (1 - mix) + dots * (image / np.maximum(luminance, 1e-3)) * mix


def age(
    image: np.ndarray, rng: Rng, textures: list[np.ndarray] | None = None, heavy: bool = False
) -> np.ndarray:
    """The old-photo look (never damage): tone, fading, soft focus, halftone, grain, paper texture,
    vignetting. `heavy`: more of everything (hard negatives)."""
    h, w = image.shape[:2]
    boost = 2.0 if heavy else 1.0
    if rng.random() < 0.75:
        image = tone(image, rng)
    if rng.random() < 0.5:  # fading: less contrast, lifted blacks, a yellowed white
        lift = rng.uniform(0.0, 0.3)
        image = lift + image * rng.uniform(0.55, 1.0) * (1 - lift)
    if rng.random() < 0.35:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < 0.08 * boost:
        image = halftone(image, rng)
    if rng.random() < 0.5:
        low = smooth_noise(rng, h, w, rng.uniform(20, 80))
        image = image * (1 + rng.uniform(0, 0.06 * boost) * low[..., None])
    if textures and rng.random() < 0.3 * boost:
        texture = textures[rng.integers(len(textures))]
        reps = (h // texture.shape[0] + 1, w // texture.shape[1] + 1)
        tiled = np.tile(texture, reps)[:h, :w]
        image = image * (1 + (tiled - tiled.mean())[..., None] * rng.uniform(0.1, 0.5))
    if rng.random() < 0.7:  # film grain, some of it clumped
        sigma = rng.uniform(0.005, 0.04 * boost)
        grain = rng.normal(0, sigma, (h, w)).astype(np.float32)
        grain = cv2.GaussianBlur(grain, (0, 0), rng.uniform(0.3, 1.2)) * (1.5 if sigma > 0.02 else 1.0)
        image = image + grain[..., None]
    if rng.random() < 0.3:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx = h * rng.uniform(0.3, 0.7), w * rng.uniform(0.3, 0.7)
        radius = ((ys - cy) ** 2 + (xs - cx) ** 2) / (max(h, w) ** 2)
        image = image * (1 - rng.uniform(0.2, 0.9) * radius)[..., None]
    return np.clip(image, 0, 1).astype(np.float32)


def scan(image: np.ndarray, rng: Rng, heavy: bool = False) -> np.ndarray:
    """A scan of the print: slight blur, sensor noise, 8 bits, JPEG half of the time."""
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 0.8))
    if rng.random() < 0.5:
        image = image + rng.normal(0, rng.uniform(0.002, 0.015), image.shape).astype(np.float32)
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    if rng.random() < 0.5:
        quality = int(rng.integers(15 if heavy else 35, 95))
        ok, encoded = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            pixels = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(pixels)


def synthesize(
    clean_u8: np.ndarray,
    kinds: list[str],
    rng: Rng,
    textures: list[np.ndarray] | None = None,
    heavy: bool = False,
    lines: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An aged, damaged and scanned print of a clean uint8 RGB picture: (uint8 RGB, truth per kind);
    `lines`: with `scene_lines` in the photograph."""
    image = clean_u8.astype(np.float32) / 255
    image = age(scene_lines(image, rng) if lines else image, rng, textures, heavy)
    truths = {}
    for kind in kinds:
        image, truths[kind] = add_damage(image, kind, rng, textures)
    return scan(image, rng, heavy), truths


def load_textures(files: list) -> list[np.ndarray]:
    """Grey paper textures in [0, 1] (mean about 1 after `paper` scales them), from image files."""
    found = []
    for file in files:
        grey = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
        if grey is not None:
            found.append(grey.astype(np.float32) / 255)
    return found
