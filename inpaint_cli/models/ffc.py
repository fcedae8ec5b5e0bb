"""Fast Fourier Convolutions, the building blocks of LaMa's generator.

L. Chi, B. Jiang, Y. Mu, "Fast Fourier Convolution", NeurIPS 2020, as used by R. Suvorov et al.,
"Resolution-robust Large Mask Inpainting with Fourier Convolutions", WACV 2022 (github.com/advimman/lama,
Apache-2.0). Channels are split into a local branch (ordinary convolutions) and a global branch
(a 1×1 convolution in the 2-D Fourier domain, whose receptive field is the whole image). Module
names follow the official `ffc.py`, so state-dict keys match the released checkpoints. Batch norms
can be folded into the convolutions before them for inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Branches = tuple[torch.Tensor, torch.Tensor | None]
"""(local, global) activations; a branch with no channels is None (the official code uses the integer 0)."""


def _conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
) -> nn.Conv2d | None:
    """A bias-free reflect-padded FFC path, or None when either side has no channels (no keys)."""
    if in_channels == 0 or out_channels == 0:
        return None
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        bias=False,
        padding_mode="reflect",
    )


def _batch_norm(channels: int) -> nn.BatchNorm2d | None:
    return nn.BatchNorm2d(channels) if channels else None


@torch.no_grad()
def fold_batch_norm(convs: Sequence[nn.Conv2d | nn.ConvTranspose2d], norm: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the convolutions whose summed outputs it normalises.

    BN(Σ conv_i(x)) = Σ (s·W_i) x + s·Σ b_i + (β − s·μ) with s = γ / sqrt(σ² + eps), so every
    weight and bias is scaled by s and the shift goes into the first convolution's bias.
    """
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    for conv in convs:
        out_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        shape = [1] * conv.weight.dim()
        shape[out_axis] = -1
        conv.weight.mul_(scale.view(shape))
        if conv.bias is not None:
            conv.bias.mul_(scale)
    first = convs[0]
    if first.bias is None:
        first.bias = nn.Parameter(torch.zeros_like(shift))
    first.bias.add_(shift)


class FourierUnit(nn.Module):
    """1×1 convolution + BN + ReLU on the real 2-D spectrum (real/imaginary parts as channels)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(2 * channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        # Half-precision FFTs only exist for power-of-two sizes (and lose accuracy), so the
        # transforms run in fp32 even under autocast; only the 1×1 convolution follows autocast.
        with torch.autocast(x.device.type, enabled=False):
            spectrum = torch.fft.rfftn(x.float(), dim=(-2, -1), norm="ortho")
        # Channel 2c is Re X[c] and 2c+1 is Im X[c] (official interleaving).
        stacked = torch.view_as_real(spectrum).permute(0, 1, 4, 2, 3).reshape(batch, 2 * channels, height, -1)
        stacked = self.relu(self.bn(self.conv_layer(stacked)))
        with torch.autocast(x.device.type, enabled=False):
            pairs = stacked.float().view(batch, channels, 2, height, -1).permute(0, 1, 3, 4, 2)
            # irfftn ignores the imaginary part of the self-conjugate columns, as the official code does.
            return torch.fft.irfftn(
                torch.view_as_complex(pairs.contiguous()), s=(height, width), dim=(-2, -1), norm="ortho"
            )

    def fold_batch_norm(self) -> None:
        if isinstance(self.bn, nn.BatchNorm2d):
            fold_batch_norm([self.conv_layer], self.bn)
            self.bn = nn.Identity()


class SpectralTransform(nn.Module):
    """The global-to-global path: 1×1 reduce, Fourier unit (+ optional local Fourier unit), 1×1 expand."""

    def __init__(self, in_channels: int, out_channels: int, enable_lfu: bool) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)
        )
        self.fu = FourierUnit(hidden)
        self.lfu = FourierUnit(hidden) if enable_lfu else None
        self.conv2 = nn.Conv2d(hidden, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(x)
        total = hidden + self.fu(hidden)
        if self.lfu is not None:
            total = total + self._local_fourier(hidden)
        return self.conv2(total)

    def _local_fourier(self, hidden: torch.Tensor) -> torch.Tensor:
        """LFU: a quarter of the channels cut into 2×2 spatial tiles, transformed, and tiled back.

        As in the official code both cuts use half the height, so it only fits square even maps.
        """
        quarter = hidden.shape[1] // 4
        chunk = hidden.shape[-2] // 2
        tiles = torch.cat(torch.split(hidden[:, :quarter], chunk, dim=-2), dim=1)
        tiles = torch.cat(torch.split(tiles, chunk, dim=-1), dim=1)
        return self.lfu(tiles).repeat(1, 1, 2, 2)

    def fold_batch_norm(self) -> None:
        if isinstance(self.conv1[1], nn.BatchNorm2d):
            fold_batch_norm([self.conv1[0]], self.conv1[1])
            self.conv1[1] = nn.Identity()
        self.fu.fold_batch_norm()
        if self.lfu is not None:
            self.lfu.fold_batch_norm()


class FFC(nn.Module):
    """Fast Fourier Convolution: four paths between the local and global channel groups."""

    def __init__(
        self,
        in_channels: tuple[int, int],
        out_channels: tuple[int, int],
        kernel_size: int,
        stride: int,
        padding: int,
        enable_lfu: bool,
    ) -> None:
        super().__init__()
        (in_local, in_global), (out_local, out_global) = in_channels, out_channels
        self.convl2l = _conv(in_local, out_local, kernel_size, stride, padding)
        self.convl2g = _conv(in_local, out_global, kernel_size, stride, padding)
        self.convg2l = _conv(in_global, out_local, kernel_size, stride, padding)
        self.convg2g = (
            SpectralTransform(in_global, out_global, enable_lfu) if in_global and out_global else None
        )

    def forward(self, x: Branches) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x_local, x_global = x
        return (
            _sum_paths((self.convl2l, x_local), (self.convg2l, x_global)),
            _sum_paths((self.convl2g, x_local), (self.convg2g, x_global)),
        )

    def local_paths(self) -> list[nn.Conv2d]:
        return [conv for conv in (self.convl2l, self.convg2l) if conv is not None]

    def global_paths(self) -> list[nn.Conv2d]:
        spectral = [self.convg2g.conv2] if self.convg2g is not None else []
        return [conv for conv in (self.convl2g, *spectral) if conv is not None]


def _sum_paths(*paths: tuple[nn.Module | None, torch.Tensor | None]) -> torch.Tensor | None:
    outputs = [path(x) for path, x in paths if path is not None and x is not None]
    if not outputs:
        return None
    return outputs[0] if len(outputs) == 1 else outputs[0] + outputs[1]


class FFCNormAct(nn.Module):
    """FFC, then BatchNorm + ReLU on each branch that has channels (official `FFC_BN_ACT`)."""

    def __init__(
        self,
        in_channels: tuple[int, int],
        out_channels: tuple[int, int],
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        enable_lfu: bool = False,
    ) -> None:
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, stride, padding, enable_lfu)
        self.bn_l: nn.Module | None = _batch_norm(out_channels[0])
        self.bn_g: nn.Module | None = _batch_norm(out_channels[1])
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Branches | torch.Tensor) -> Branches:
        y_local, y_global = self.ffc(x if isinstance(x, tuple) else (x, None))
        return (
            self.act(self.bn_l(y_local)) if y_local is not None else None,
            self.act(self.bn_g(y_global)) if y_global is not None else None,
        )

    def fold_batch_norm(self) -> None:
        if self.ffc.convg2g is not None:
            self.ffc.convg2g.fold_batch_norm()
        if isinstance(self.bn_l, nn.BatchNorm2d):
            fold_batch_norm(self.ffc.local_paths(), self.bn_l)
            self.bn_l = nn.Identity()
        if isinstance(self.bn_g, nn.BatchNorm2d):
            fold_batch_norm(self.ffc.global_paths(), self.bn_g)
            self.bn_g = nn.Identity()


class FFCResnetBlock(nn.Module):
    """Two FFC + BN + ReLU layers with a residual connection (no activation after the sum)."""

    def __init__(self, channels: tuple[int, int], enable_lfu: bool) -> None:
        super().__init__()
        self.conv1 = FFCNormAct(channels, channels, enable_lfu=enable_lfu)
        self.conv2 = FFCNormAct(channels, channels, enable_lfu=enable_lfu)

    def forward(self, x: Branches) -> Branches:
        y_local, y_global = self.conv2(self.conv1(x))
        x_local, x_global = x
        return x_local + y_local, (x_global + y_global) if x_global is not None else None

    def fold_batch_norm(self) -> None:
        self.conv1.fold_batch_norm()
        self.conv2.fold_batch_norm()


class ConcatBranches(nn.Module):
    """Local channels first, then global ones (official `ConcatTupleLayer`)."""

    def forward(self, x: Branches) -> torch.Tensor:
        x_local, x_global = x
        return x_local if x_global is None else torch.cat([x_local, x_global], dim=1)
