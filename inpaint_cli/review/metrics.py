"""Image quality scores of a filled image against its clean original: PSNR and SSIM, over a region.

SSIM is Wang et al. (2004): Gaussian window (sigma 1.5, 11 px), K1 = 0.01, K2 = 0.03, per channel,
its map averaged over the region (or the whole image); borders are reflected, not cropped, so holes
touching the edge are scored too. The peak is the dtype's maximum (255 for 8 bit, 65535 for 16 bit).
"""

from __future__ import annotations

import math

import numpy as np

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _peak(pixels: np.ndarray) -> float:
    return float(np.iinfo(pixels.dtype).max) if np.issubdtype(pixels.dtype, np.integer) else 1.0


def _channels(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _check_pair(result: np.ndarray, reference: np.ndarray, region: np.ndarray | None) -> None:
    if result.shape != reference.shape:
        raise ValueError(f"result {result.shape} and reference {reference.shape} differ in shape")
    if region is not None and region.shape != result.shape[:2]:
        raise ValueError(f"region {region.shape} does not match the image {result.shape[:2]}")


def psnr(result: np.ndarray, reference: np.ndarray, region: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB over `region` (H×W bool; default everywhere), all channels.

    The peak is the dtype's maximum (255, 65535); identical pixels give `inf`, an empty region `nan`.
    """
    _check_pair(result, reference, region)
    error = _channels(result).astype(np.float64) - _channels(reference).astype(np.float64)
    if region is not None:
        error = error[region]
    if error.size == 0:
        return math.nan
    mse = float(np.mean(error**2))
    return math.inf if mse == 0 else 10 * math.log10(_peak(reference) ** 2 / mse)


def ssim_map(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The H×W SSIM map (mean over channels) of two images of the same shape and dtype."""
    import cv2

    _check_pair(result, reference, None)
    peak = _peak(reference)
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
    window = (SSIM_WINDOW, SSIM_WINDOW)

    def blur(values: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(values, window, SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    maps = []
    for channel in range(_channels(reference).shape[2]):
        x = _channels(result)[..., channel].astype(np.float64)
        y = _channels(reference)[..., channel].astype(np.float64)
        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x**2
        var_y = blur(y * y) - mu_y**2
        cov = blur(x * y) - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        maps.append(numerator / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)))
    return np.mean(maps, axis=0)


def ssim(result: np.ndarray, reference: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean SSIM over `region` (H×W bool; default everywhere): 1.0 for identical images."""
    _check_pair(result, reference, region)
    values = ssim_map(result, reference)
    if region is not None:
        values = values[region]
    return float(values.mean()) if values.size else math.nan
