"""inpaint: photo restoration by neural inpainting.

The public API (imported on first use, so `import inpaint_cli` loads neither torch nor OpenCV):

    import inpaint_cli

    inpaint_cli.available_models()                       # ['big-lama', ..., 'telea', 'ns']
    model = inpaint_cli.load_model("lama-tiny", device="cpu")
    picture = inpaint_cli.read_image("photo.png")        # pixels (H×W×C uint8/uint16) + metadata
    hole = inpaint_cli.read_mask("mask.png", size=picture.size)
    filled = model.inpaint(picture.pixels, hole, strategy="auto")
    inpaint_cli.write_image("restored.png", picture.with_pixels(filled))

    damage = inpaint_cli.find_damage(picture.pixels)      # .mask: H×W bool (scratch-tiny by default)
    request = inpaint_cli.DetectRequest(Path("scans"), recursive=True)   # `inpaint detect` on a folder
    run = inpaint_cli.run_detection(request, inpaint_cli.plan_detection(request))

    result = inpaint_cli.compare(picture.pixels, hole, ["telea", "ns"])   # `inpaint compare`
    inpaint_cli.make_grid(result).picture.save("grid.png")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
"""The one place the version is written: setuptools reads it into the distribution `inpaint-cli`."""

_EXPORTS = {
    "available_models": "inpaint_cli.api",
    "load_model": "inpaint_cli.api",
    "find_damage": "inpaint_cli.api",
    "DetectRequest": "inpaint_cli.batch.kinds.detect",
    "plan_detection": "inpaint_cli.batch.kinds.detect",
    "run_detection": "inpaint_cli.batch.kinds.detect",
    "Model": "inpaint_cli.api",
    "InpaintOptions": "inpaint_cli.engine.strategies",
    "read_image": "inpaint_cli.imaging.imageio",
    "read_mask": "inpaint_cli.imaging.masks",
    "write_image": "inpaint_cli.imaging.imageio",
    "Picture": "inpaint_cli.imaging.imageio",
    "InpaintError": "inpaint_cli.errors",
    "compare": "inpaint_cli.review.comparison",
    "compare_folder": "inpaint_cli.batch.kinds.compare",
    "make_grid": "inpaint_cli.review.comparison",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inpaint_cli' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
