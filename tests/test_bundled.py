"""The bundled demo models: shipped in the package, checksummed in the manifest, loaded by name
without network, and good enough that a broken one can never ship.

The quality floor is measured on the shipped example (`examples/portrait_*`), a photo that
`tools/train_demo_models.py` holds out from training (`astronaut`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint_cli import weights
from inpaint_cli.checkpoints import read_checkpoint
from inpaint_cli.engine import Inpainter
from inpaint_cli.models import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEMO_MODELS = {"lama-tiny": "lama", "gatedconv-tiny": "gatedconv", "pconv-tiny": "pconv"}
MAX_FILE_BYTES = 5_000_000
MEAN_FILL_MARGIN_DB = 2.0
"""Hole PSNR a demo model must gain over filling the hole with the mean known colour (measured
gains on the example are 3.1-4.0 dB; see the README's demo-models section)."""


def hole_psnr(filled: np.ndarray, original: np.ndarray, hole: np.ndarray) -> float:
    error = filled[hole].astype(np.float64) - original[hole].astype(np.float64)
    return 10 * math.log10(255**2 / float(np.mean(error**2)))


def passes_quality_floor(
    filled: np.ndarray, damaged: np.ndarray, hole: np.ndarray, original: np.ndarray
) -> bool:
    """Better than the mean known colour in the hole by `MEAN_FILL_MARGIN_DB`."""
    mean_fill = damaged.copy()
    mean_fill[hole] = damaged[~hole].mean(axis=0).round().astype(np.uint8)
    return hole_psnr(filled, original, hole) > hole_psnr(mean_fill, original, hole) + MEAN_FILL_MARGIN_DB


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty model cache, with downloads forbidden."""
    home = tmp_path_factory.mktemp("inpaint-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INPAINT_OFFLINE", "1")
        patch.setenv("INPAINT_HOME", str(home))
        patch.delenv("INPAINT_MANIFEST", raising=False)
        yield home


@pytest.fixture(scope="module")
def example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    damaged = np.asarray(Image.open(EXAMPLES / "portrait_damaged.png").convert("RGB"))
    hole = np.asarray(Image.open(EXAMPLES / "portrait_mask.png").convert("L")) > 127
    original = np.asarray(Image.open(EXAMPLES / "portrait_original.png").convert("RGB"))
    return damaged, hole, original


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_bundled_file_is_in_the_package_with_the_manifest_checksum(name: str) -> None:
    entry = weights.get_entry(name)
    assert (entry.family, entry.variant, entry.license) == (DEMO_MODELS[name], "demo", "Apache-2.0")
    (source,) = entry.sources
    assert source.url == f"bundled:{name}.safetensors"
    assert entry.bundled == weights.BUNDLED_DIR / f"{name}.safetensors"
    data = entry.bundled.read_bytes()
    assert len(data) == source.size < MAX_FILE_BYTES
    assert hashlib.sha256(data).hexdigest() == source.sha256

    checkpoint = read_checkpoint(entry.bundled)
    assert checkpoint.is_converted
    assert checkpoint.metadata["family"] == DEMO_MODELS[name]
    assert checkpoint.metadata["variant"] == "demo"
    assert checkpoint.metadata["license"] == "Apache-2.0"
    # The architecture in the metadata is also what the tensors say (PConv: its narrow base width).
    family = FAMILIES[DEMO_MODELS[name]]
    assert family.config_from_state_dict(checkpoint.state_dict) == family.Config.from_json(checkpoint.config)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_loads_by_name_offline_and_beats_mean_fill_on_held_out_example(
    name: str, offline_cache: Path, example: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    inpainter = Inpainter.from_name(name, device="cpu", precision="fp32")
    # Resolved through the cache like any named model: the bundled file was verified and converted.
    cached = weights.converted_path(name)
    assert cached.parent == offline_cache and cached.is_file()
    assert weights.cached_path(name) == cached

    damaged, hole, original = example
    result = inpainter.inpaint(damaged, hole).pixels
    np.testing.assert_array_equal(result[~hole], damaged[~hole])
    assert passes_quality_floor(result, damaged, hole, original)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_quality_floor_rejects_the_same_network_untrained(
    name: str, example: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    torch.manual_seed(0)
    config = read_checkpoint(weights.get_entry(name).bundled).config
    network = FAMILIES[DEMO_MODELS[name]].build(config).eval()
    damaged, hole, original = example
    result = Inpainter(network, device="cpu", precision="fp32").inpaint(damaged, hole).pixels
    assert not passes_quality_floor(result, damaged, hole, original)
