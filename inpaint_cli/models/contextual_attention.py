"""DeepFill v2's contextual attention: fill each position with a blend of background patches.

Split out of `gatedconv` (J. Yu et al., "Generative Image Inpainting with Contextual Attention",
CVPR 2018; "Free-Form Image Inpainting with Gated Convolution", ICCV 2019) because it is the one
part whose cost is quadratic in the pixel count: its L×L score array is computed in chunks of
query positions so that memory stays bounded. The two variants of the port differ here: `pt`
applies the fuse step, `tf` downscales with TensorFlow's align-corners indices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Variant = Literal["pt", "tf"]

# Hyper-parameters (identical in both variants).
ATTENTION_RATE = 2
"""Features are downscaled by this before matching; pasted patches are 2·rate wide."""
ATTENTION_MATCH_KERNEL = 3
ATTENTION_SOFTMAX_SCALE = 10.0
ATTENTION_NORM_FLOOR = 1e-4
FEATURE_STRIDE = 4
"""Contextual attention runs at 1/4 of the input resolution."""
MASK_STRIDE = FEATURE_STRIDE * ATTENTION_RATE
"""The hole mask is sampled once per matching position, i.e. every 8 input pixels."""
ATTENTION_CHUNK_BYTES = 256 * 2**20
"""Memory one chunk of query positions may take in contextual attention (its L×L part)."""
FLOAT_BYTES = 4
SOFTMAX_ARRAYS = 2
"""chunk×L arrays alive at once without fuse: the scores and their softmax."""
FUSE_ARRAYS = 3
"""Score-row arrays alive at once in a fuse pass: a block, the running sum and one shifted term."""
FUSE_EXTRA_ROWS = 10
"""A chunk's neighbour rows form at most 5 runs, each one longer at both ends for the second pass."""


def align_corners_indices(size: int, steps: int) -> torch.Tensor:
    """TensorFlow's align-corners nearest resize as the port computes it: float32 linspace, floor(x+0.5).

    The float32 rounding of `linspace` is part of the result (it differs from exact rounding for
    some sizes), so it is computed literally, on the CPU.
    """
    positions = torch.linspace(0, size - 1, steps=steps, dtype=torch.float32, device="cpu")
    return torch.floor(positions + 0.5).long()


class ContextualAttention(nn.Module):
    """Fill every position with a blend of 4×4 background patches that look like its surroundings.

    Matching runs at half the feature resolution on 3×3 patches (background patches are
    L2-normalised, queries are not); only patches whose whole 3×3 window lies outside the hole
    get weight. The score array is L×L for L = h/2·w/2, so it is computed in chunks of query
    positions of at most about `chunk_bytes` each; the result does not depend on the chunk size.
    """

    def __init__(self, variant: Variant, chunk_bytes: int = ATTENTION_CHUNK_BYTES) -> None:
        super().__init__()
        self.fuse = variant == "pt"
        self.tf_resize = variant == "tf"
        self.chunk_bytes = chunk_bytes
        if self.fuse:
            # Stored by the official pt layout; always the 3×3 identity (checked on conversion),
            # which `_Fuse` applies as sums along the diagonals.
            self.register_buffer("fuse_weight", torch.eye(3).view(1, 1, 3, 3))

    def _downscale(self, tensor: torch.Tensor, factor: int) -> torch.Tensor:
        """Nearest downscaling by selection of rows and columns (N×C×H×W)."""
        height, width = tensor.shape[-2:]
        if not self.tf_resize:
            return tensor[..., ::factor, ::factor]
        rows = align_corners_indices(height, height // factor).to(tensor.device)
        cols = align_corners_indices(width, width // factor).to(tensor.device)
        return tensor.index_select(-2, rows).index_select(-1, cols)

    def valid_patches(self, mask: torch.Tensor) -> torch.Tensor:
        """1 for background patches whose zero-padded 3×3 window at 1/8 scale is entirely known (L)."""
        small = self._downscale(mask[:1].float(), MASK_STRIDE)  # the port uses batch item 0 for all
        known = F.max_pool2d(small, ATTENTION_MATCH_KERNEL, stride=1, padding=1) == 0
        return known.flatten().to(mask.dtype)

    def chunk_memory(self, chunk: int, height: int, width: int) -> int:
        """Peak bytes of the score arrays for a chunk of `chunk` queries on an h'×w' grid (fp32).

        Without fuse: the scores and their softmax, chunk×L each. With fuse: a score block, the
        running sum and one shifted term, over the chunk's rows plus those of its neighbours.
        """
        length = height * width
        if not self.fuse:
            return FLOAT_BYTES * length * SOFTMAX_ARRAYS * chunk
        rows = chunk + min(2 * chunk, 2 * width) + FUSE_EXTRA_ROWS
        return FLOAT_BYTES * length * FUSE_ARRAYS * rows

    def chunk_size(self, height: int, width: int) -> int:
        """The most query positions per chunk that stay within `chunk_bytes` (at least 1)."""
        low, high = 1, height * width
        while low < high:
            middle = (low + high + 1) // 2
            if self.chunk_memory(middle, height, width) <= self.chunk_bytes:
                low = middle
            else:
                high = middle - 1
        return low

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: N×C×h×w features (foreground = background), mask: N×1×H×W hole mask with H = 4h."""
        valid = self.valid_patches(mask)
        return torch.stack([self._attend(sample, valid) for sample in x])

    def _attend(self, feature: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        paste_kernel = 2 * ATTENTION_RATE
        # Background patches to paste: 4×4 windows, stride 2, zero padding 1; L×(C·16).
        patches = F.unfold(feature[None], paste_kernel, padding=1, stride=ATTENTION_RATE)[0].T.contiguous()
        small = self._downscale(feature, ATTENTION_RATE)
        # Zero-padded 3×3 windows of the downscaled map: the queries (rows, L×C·9) and, normalised,
        # the background filters (columns, C·9×L). Scores are kept query-major: chunk × L.
        windows = F.unfold(small[None], ATTENTION_MATCH_KERNEL, padding=1)[0]
        filters = windows / windows.square().sum(dim=0).sqrt().clamp_min(ATTENTION_NORM_FLOOR)
        queries = windows.T.contiguous()
        del windows
        length = queries.shape[0]
        fuse = _Fuse(*small.shape[-2:], feature.device) if self.fuse else None
        pasted = feature.new_empty(length, patches.shape[1])
        step = self.chunk_size(*small.shape[-2:])
        for start in range(0, length, step):
            stop = min(start + step, length)
            pasted[start:stop] = (
                self._weights(queries, filters, start, stop, fuse, valid).to(patches.dtype) @ patches
            )
        folded = F.fold(
            pasted.T[None], tuple(feature.shape[-2:]), paste_kernel, padding=1, stride=ATTENTION_RATE
        )
        return folded[0] / paste_kernel

    @staticmethod
    def _weights(
        queries: torch.Tensor,
        filters: torch.Tensor,
        start: int,
        stop: int,
        fuse: _Fuse | None,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Attention of the queries start..stop−1 over all background patches, chunk×L. A function
        of its own so that no chunk×L array outlives it."""
        if fuse is None:
            scores = queries[start:stop] @ filters
        else:
            scores = fuse.fused_scores(queries, filters, torch.arange(start, stop, device=queries.device))
        # Invalid patches score 0 (not −inf): they still count in the softmax, then get weight 0.
        scores.mul_(valid * ATTENTION_SOFTMAX_SCALE)
        weights = F.softmax(scores, dim=1)
        del scores  # SOFTMAX_ARRAYS
        # In place for inference; training (tools/train_demo_models.py) needs the softmax output intact.
        return weights * valid if weights.requires_grad else weights.mul_(valid)


class _Fuse:
    """The fuse step (pt): two diagonal 3-term sums over the L×L score array, for a chunk of queries.

    With S[p, l] (query p, background l, both flattened row-major over the h'×w' grid), the first
    pass is T[p, l] = S[p−1, l−1] + S[p, l] + S[p+1, l+1] in row-major order, the second the same
    sum in column-major order. Neighbours wrap across row (column) ends and out-of-range terms are
    0, exactly as the reference's 3×3 identity convolution over the flattened array. A chunk needs
    the score rows of its queries' neighbours and of their neighbours, nothing else. In the index
    tables, L stands for "no neighbour".
    """

    def __init__(self, height: int, width: int, device: torch.device) -> None:
        self.height, self.width = height, width
        self.length = length = height * width
        index = torch.arange(length, device=device)
        none = torch.tensor([length], device=device)
        self.row_prev = torch.cat([none, index[:-1]])
        self.row_next = torch.cat([index[1:], none])
        by_column = (index % height) * width + index // height  # row-major position of column-major rank
        self.col_prev = torch.full_like(index, length)
        self.col_next = torch.full_like(index, length)
        self.col_prev[by_column[1:]] = by_column[:-1]
        self.col_next[by_column[:-1]] = by_column[1:]

    def fused_scores(self, queries: torch.Tensor, filters: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        """Fused scores U[chunk, :] from the query windows (L×C·9) and the filters (C·9×L)."""
        first = torch.cat([chunk, self.col_prev[chunk], self.col_next[chunk]])
        first, first_lookup = self._distinct(first)
        scored = torch.cat([first, self.row_prev[first], self.row_next[first]])
        scored, score_lookup = self._distinct(scored)
        fused = self._diagonal_sum(
            queries[scored] @ filters, score_lookup, first, self.row_prev, self.row_next, self._shift_row
        )
        return self._diagonal_sum(
            fused, first_lookup, chunk, self.col_prev, self.col_next, self._shift_column
        )

    def _distinct(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted distinct real positions, and a lookup position -> its row (others -> one past the end)."""
        distinct = torch.unique(positions[positions < self.length])
        lookup = torch.full((self.length + 1,), len(distinct), device=positions.device)
        lookup[distinct] = torch.arange(len(distinct), device=positions.device)
        return distinct, lookup

    @staticmethod
    def _diagonal_sum(
        block: torch.Tensor,
        lookup: torch.Tensor,
        targets: torch.Tensor,
        prev: torch.Tensor,
        nxt: torch.Tensor,
        shift: Callable[[torch.Tensor, torch.Tensor, int], None],
    ) -> torch.Tensor:
        """B[t−1, l−1] + B[t, l] + B[t+1, l+1] for every target t and every l, neighbours per `prev`/`nxt`.

        `block` holds the rows of B that `lookup` points to.
        """
        total = block[lookup[targets]]
        for neighbours, offset in ((prev, -1), (nxt, 1)):
            shift(total, _Fuse._rows(block, lookup[neighbours[targets]]), offset)
        return total

    @staticmethod
    def _rows(block: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """block[rows], with zeros for the rows one past the end ("no neighbour")."""
        selected = block[rows.clamp(max=len(block) - 1)]
        selected[rows == len(block)] = 0
        return selected

    @staticmethod
    def _shift_row(total: torch.Tensor, term: torch.Tensor, offset: int) -> None:
        """total[:, l] += term[:, l + offset] in row-major order (0 beyond the ends)."""
        if offset < 0:
            total[:, 1:] += term[:, :-1]
        else:
            total[:, :-1] += term[:, 1:]

    def _shift_column(self, total: torch.Tensor, term: torch.Tensor, offset: int) -> None:
        """total[:, l] += term[:, l + offset] in column-major order, on the h'×w' grid of l."""
        total = total.view(-1, self.height, self.width)
        term = term.view(-1, self.height, self.width)
        if offset < 0:  # the previous row; the top row takes the bottom of the previous column
            total[:, 1:] += term[:, :-1]
            total[:, 0, 1:] += term[:, -1, :-1]
        else:
            total[:, :-1] += term[:, 1:]
            total[:, -1, :-1] += term[:, 0, 1:]
