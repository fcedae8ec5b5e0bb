"""Reading and writing images: EXIF orientation, modes, bit depth, atomic writes (masks: `masks.py`).

Pillow decodes, encodes and carries the metadata of everything it can represent. Colour or alpha at
16 bits per sample is beyond Pillow's modes: such pixels are decoded by OpenCV and encoded by the two
small PNG and TIFF writers of `writers16`, while Pillow still reads their metadata.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, TiffImagePlugin

from inpaint_cli.errors import InputError, OutputError, UsageError
from inpaint_cli.files import storage
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.imaging import headers, writers16
from inpaint_cli.imaging.headers import AXES_SWAPPING_ORIENTATIONS, ORIENTATION_TAG, UPRIGHT
from inpaint_cli.imaging.pixels import to_8bit
from inpaint_cli.options import DEFAULT_MAX_PIXELS, DEFAULT_QUALITY

_LOSSLESS_WEBP_QUALITY = 100
"""WebP at this quality is written lossless (bit-exact); JPEG has no lossless mode."""

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"})
"""Extensions of the files `read_image` opens (lower case, with the dot)."""

_FORMAT_BY_NAME = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF", "tiff": "TIFF", "webp": "WEBP"}
_EXTENSION_BY_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp"}
_EIGHT_BIT_FORMATS = frozenset({"JPEG", "WEBP"})

_MAX_16BIT = 65535
"""ITU-R 601 luma weights × 1000, the formula of Pillow's convert("L")."""

# Array operation that turns a stored image upright, per EXIF orientation (as Pillow's exif_transpose).
_UPRIGHT_TRANSFORMS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}

_EXIF_HEADER = b"Exif\x00\x00"
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
# TIFF keeps EXIF facts in its own first directory, among the tags describing the pixel layout;
# only these describe the picture and may travel to another file.
_TIFF_DESCRIPTIVE_TAGS = (270, 271, 272, 305, 306, 315, 33432, _EXIF_IFD, _GPS_IFD)

# Pillow mode -> the mode whose samples we keep (None: handled as 16-bit or unsupported).
_PILLOW_TARGET_MODES = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "La": "LA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "PA": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
}
_SIXTEEN_BIT_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_CORRUPT_DATA_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


@dataclass(frozen=True)
class Picture:
    """A decoded image, upright, with what is needed to write it back faithfully."""

    pixels: np.ndarray
    """H×W×C, C = 1 (grey) or 3 (RGB), uint8 or uint16, EXIF orientation applied."""
    alpha: np.ndarray | None
    """H×W, same dtype as `pixels`; never touched by inpainting."""
    source_format: str
    """Pillow's format name: PNG, JPEG, TIFF or WEBP."""
    icc_profile: bytes | None
    exif: bytes | None
    """EXIF block (starting with `Exif\\0\\0`) with the orientation reset, as the pixels are upright."""
    path: Path
    dpi: tuple[float, float] | None = None
    source_mode: str = ""
    """Pillow's mode of the file (P, CMYK, I;16B, ...), or RGB;16, RGBA;16, LA;16 for 16-bit colour."""
    notes: tuple[str, ...] = ()
    """Warnings about the file: an APNG or a multi-page TIFF of which only the first frame is used."""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), the order `read_mask` takes."""
        return self.pixels.shape[0], self.pixels.shape[1]

    def with_pixels(self, pixels: np.ndarray) -> Picture:
        """The same picture (alpha, metadata, path) with new pixels of the same shape and dtype."""
        if pixels.shape != self.pixels.shape or pixels.dtype != self.pixels.dtype:
            expected = f"{self.pixels.shape} {self.pixels.dtype}"
            raise ValueError(f"new pixels are {pixels.shape} {pixels.dtype}, expected {expected}")
        return replace(self, pixels=pixels)


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image extension (skips `.name.part.png` and `._name.jpg`)."""
    path = path if storage.is_remote(path) else Path(path)  # an s3://... object (fsspec caches listings)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


# ----------------------------------------------------------------------------------------- reading


def read_image(
    path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: tuple[int, int] | None = None
) -> Picture:
    """Decode an image file completely (so truncation shows here), turned upright by its EXIF.

    Grey stays grey (C = 1), palette and CMYK become RGB, 1-bit becomes 8-bit grey, 16-bit stays
    16-bit; 32-bit integer and float grey become 16-bit (floats in [0, 1] are scaled to 0..65535,
    larger ones are taken as 16-bit values). Raises InputError naming the file and the problem.
    `at_least` (height, width) lets a JPEG decode at 1/2, 1/4 or 1/8 of its size (DCT scaling, several
    times faster) where that still has at least this size upright: a picture to show, not to fill.
    """
    path = Path(path)
    headers.require_nonempty_file(path)
    with headers.open_image(path, max_pixels) as image:
        frames = headers.frame_count(image)
        try:
            if at_least is not None and image.format in ("JPEG", "MPO"):
                _draft(image, at_least)
            image.load()
            orientation = headers.orientation(image)
            exif = _upright_exif(image, orientation)
            deep_layout = _sixteen_bit_colour_layout(image, path)
            if deep_layout is None:
                pixels, alpha = _pillow_samples(image, path)
                source_mode = image.mode
            else:
                pixels, alpha = _opencv_samples(path, deep_layout)
                source_mode = f"{deep_layout};16"
        except _CORRUPT_DATA_ERRORS as error:
            raise InputError(
                f"image data is truncated or corrupt ({error})", path=path, hint="re-export or re-scan it"
            ) from error
        # A CMYK profile does not describe the RGB pixels we keep.
        icc_profile = None if image.mode == "CMYK" else image.info.get("icc_profile") or None
        dpi = image.info.get("dpi")
        # MPO: Pillow's name for a phone JPEG that carries a second (depth or preview) picture.
        source_format = "JPEG" if image.format == "MPO" else image.format
    if dpi is not None and orientation in AXES_SWAPPING_ORIENTATIONS:
        dpi = (dpi[1], dpi[0])
    return Picture(
        pixels=_upright(pixels, orientation),
        alpha=None if alpha is None else _upright(alpha, orientation),
        source_format=source_format,
        icc_profile=icc_profile,
        exif=exif,
        path=path,
        dpi=None if dpi is None else (float(dpi[0]), float(dpi[1])),
        source_mode=source_mode,
        notes=_frames_note(path, source_format, frames),
    )


def _draft(image: Image.Image, at_least: tuple[int, int]) -> None:
    height, width = at_least
    if headers.orientation(image, decoded=False) in AXES_SWAPPING_ORIENTATIONS:
        height, width = width, height
    image.draft(image.mode, (width, height))


def _frames_note(path: Path, source_format: str, frames: int) -> tuple[str, ...]:
    header = headers.Header(path, source_format, "", (0, 0), frames, truncated=False)
    return () if header.frames_note is None else (header.frames_note,)


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    transform = _UPRIGHT_TRANSFORMS.get(orientation)
    return array if transform is None else np.ascontiguousarray(transform(array))


def _upright_exif(image: Image.Image, orientation: int) -> bytes | None:
    """The EXIF block to write back, with the orientation reset since the pixels are turned upright."""
    if image.format == "TIFF":
        return _exif_from_tiff_tags(image.getexif())
    raw = image.info.get("exif")
    if not raw:
        return None
    if orientation == UPRIGHT:
        # Untouched bytes keep maker notes exactly as the camera wrote them.
        return raw if raw.startswith(_EXIF_HEADER) else _EXIF_HEADER + raw
    exif = image.getexif()
    exif[ORIENTATION_TAG] = UPRIGHT
    return exif.tobytes()


def _exif_from_tiff_tags(tags: Image.Exif) -> bytes | None:
    exif = Image.Exif()
    for tag in _TIFF_DESCRIPTIVE_TAGS:
        if tag in tags:
            exif[tag] = tags.get_ifd(tag) if tag in (_EXIF_IFD, _GPS_IFD) else tags[tag]
    return exif.tobytes() if len(exif) else None


def _sixteen_bit_colour_layout(image: Image.Image, path: Path) -> str | None:
    """The layout (RGB, RGBA or LA) of 16-bit samples Pillow would cut to 8 bits; None otherwise."""
    if image.format == "PNG":
        with path.open("rb") as file:
            header = file.read(26)  # signature, IHDR length and type, width, height, depth, colour type
        bit_depth, colour_type = header[24], header[25]
        return {2: "RGB", 4: "LA", 6: "RGBA"}.get(colour_type) if bit_depth == 16 else None
    if image.format == "TIFF" and image.mode in ("RGB", "RGBA"):
        bits = image.tag_v2.get(TiffImagePlugin.BITSPERSAMPLE, 8)
        return image.mode if 16 in (bits if isinstance(bits, tuple) else (bits,)) else None
    return None


def _pillow_samples(image: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    mode = image.mode
    if mode in _SIXTEEN_BIT_GREY_MODES:
        return np.array(image).astype(np.uint16)[..., None], None
    if mode == "I":
        return _integers_to_16bit(np.array(image), path)[..., None], None
    if mode == "F":
        return _floats_to_16bit(np.array(image), path)[..., None], None
    keyed = "transparency" in image.info  # a palette entry or a colour key marks transparent pixels
    if mode == "P":
        target = "RGBA" if keyed else "RGB"
    elif mode in ("L", "RGB") and keyed:
        target = f"{mode}A"
    else:
        target = _PILLOW_TARGET_MODES.get(mode)
    if target is None:
        raise InputError(f"unsupported image mode {mode}", path=path, hint="convert it to RGB or grey first")
    samples = np.array(image if target == mode else image.convert(target))
    samples = samples.reshape(*samples.shape[:2], len(target))
    if target.endswith("A"):
        return samples[..., :-1], samples[..., -1]
    return samples, None


def _opencv_samples(path: Path, layout: str) -> tuple[np.ndarray, np.ndarray | None]:
    # IMREAD_UNCHANGED keeps 16 bits and alpha and ignores EXIF orientation (applied by us).
    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16 or decoded.ndim != 3:
        raise InputError("16-bit colour data cannot be decoded", path=path, hint="re-export it")
    rgb = decoded[..., 2::-1]  # OpenCV orders channels BGR(A)
    alpha = decoded[..., 3] if layout in ("RGBA", "LA") else None
    # OpenCV expands grey + alpha to BGRA with equal colour channels.
    pixels = rgb[..., :1] if layout == "LA" else rgb
    return np.ascontiguousarray(pixels), alpha


def _integers_to_16bit(values: np.ndarray, path: Path) -> np.ndarray:
    if values.size and (values.min() < 0 or values.max() > _MAX_16BIT):
        raise InputError(
            "32-bit integer samples outside 0..65535 are not supported",
            path=path,
            hint="convert it to 16-bit first",
        )
    return values.astype(np.uint16)


def _floats_to_16bit(values: np.ndarray, path: Path) -> np.ndarray:
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > _MAX_16BIT:
        raise InputError(
            "floating-point samples must lie in 0..1 or 0..65535",
            path=path,
            hint="convert it to 16-bit first",
        )
    scale = _MAX_16BIT if high <= 1.0 else 1
    return np.round(values.astype(np.float64) * scale).astype(np.uint16)


# ----------------------------------------------------------------------------------------- writing


def output_format(path: Path, format: str | None = None) -> str:
    """Pillow's format name for an output: `format` (png, jpg, jpeg, tif, tiff, webp) or the extension."""
    path = path if storage.is_remote(path) else Path(path)  # only its name is read
    from_extension = _FORMAT_BY_NAME.get(path.suffix.lower().lstrip("."))
    if format is None:
        if from_extension is None:
            raise OutputError(
                f"cannot tell the image format from the extension {path.suffix!r}",
                path=path,
                hint="use .png, .jpg, .tif or .webp, or --format",
            )
        return from_extension
    requested = _format_named(format)
    if from_extension not in (None, requested):
        raise OutputError(
            f"extension {path.suffix} does not match the format {format}",
            path=path,
            hint="change the extension or the format",
        )
    return requested


def _format_named(name: str) -> str:
    image_format = _FORMAT_BY_NAME.get(name.lower().lstrip("."))
    if image_format is None:
        raise UsageError(f"unknown output format {name!r}", hint="one of png, jpg, tiff, webp")
    return image_format


def extension_for_format(format: str) -> str:
    """The extension of an output in `format` (png, jpg, jpeg, tif, tiff, webp): .png, .jpg, .tif or .webp."""
    return _EXTENSION_BY_FORMAT[_format_named(format)]


def default_output_path(input_path: Path, output: Path | None = None, format: str | None = None) -> Path:
    """Where the result of `input_path` goes: `output` (a file, or a folder to put it in) or
    `<stem>_inpainted.<ext>` beside the input, `ext` from `format`, else the input's own. Never the input.
    """
    input_path = Path(input_path)
    if format is not None:
        extension = extension_for_format(format)
    elif input_path.suffix.lower() in IMAGE_EXTENSIONS:
        extension = input_path.suffix
    else:
        extension = _EXTENSION_BY_FORMAT["PNG"]
    name = f"{input_path.stem}_inpainted{extension}"
    if output is None:
        candidate = input_path.with_name(name)
    else:
        candidate = Path(output) / name if Path(output).is_dir() else Path(output)
    if _same_file(candidate, input_path):
        raise OutputError(
            "output would replace the input image", path=candidate, hint="choose another -o/--output"
        )
    return candidate


def write_image(
    path: Path,
    picture: Picture,
    *,
    format: str | None = None,
    quality: int = DEFAULT_QUALITY,
    overwrite: bool = False,
) -> Path:
    """Write `picture` atomically to `path` (parent folders are created) and return `path`.

    Grey stays grey (except WebP, which has no grey), 16 bits stay 16 in PNG and TIFF and are rounded
    to 8 in JPEG and WebP; alpha, ICC profile, EXIF and dpi are kept where the format holds them.
    `quality` applies to JPEG and WebP; WebP at quality 100 is lossless. JPEG has no alpha: a fully
    opaque alpha is dropped, any other refused with an OutputError.
    """
    path = Path(path)
    image_format = output_format(path, format)
    if not 1 <= quality <= 100:
        raise UsageError(f"quality {quality} is outside 1..100")
    if path.is_dir():
        raise OutputError("is a folder, not an output file", path=path)
    if path.exists() and not overwrite:
        raise OutputError("already exists", path=path, hint="pass --overwrite to replace it")
    samples = _samples_for_format(picture, image_format, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            if samples.dtype == np.uint16 and samples.shape[2] > 1:
                writer = writers16.write_png16 if image_format == "PNG" else writers16.write_tiff16
                with tmp.open("wb") as file:
                    writer(file, samples, picture.icc_profile, picture.exif, picture.dpi)
            else:
                image = Image.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples)
                image.save(tmp, format=image_format, **_save_options(picture, image_format, quality))
    except OSError as error:
        raise OutputError(
            f"cannot write the image ({error.strerror or error})",
            path=path,
            hint="check that the folder is writable and the disk not full",
        ) from error
    return path


def _samples_for_format(picture: Picture, image_format: str, path: Path) -> np.ndarray:
    """Pixels with alpha appended as the last channel, in a bit depth and layout the format holds."""
    pixels, alpha = picture.pixels, picture.alpha
    if image_format == "JPEG" and alpha is not None:
        if not (alpha == np.iinfo(alpha.dtype).max).all():
            raise OutputError(
                "JPEG cannot store transparency (the alpha channel)",
                path=path,
                hint="write PNG, TIFF or WebP instead, e.g. --format png",
            )
        alpha = None
    samples = pixels if alpha is None else np.concatenate([pixels, alpha[..., None]], axis=2)
    return to_8bit(samples) if image_format in _EIGHT_BIT_FORMATS else samples


def _save_options(picture: Picture, image_format: str, quality: int) -> dict[str, object]:
    options: dict[str, object] = {
        "icc_profile": picture.icc_profile,
        "exif": picture.exif,
        "dpi": picture.dpi,
    }
    if image_format in _EIGHT_BIT_FORMATS:
        options["quality"] = quality
    if image_format == "WEBP" and quality == _LOSSLESS_WEBP_QUALITY:
        # `exact` keeps the colour under fully transparent pixels, which lossless WebP would otherwise clear.
        options.update(lossless=True, exact=True)
    return {name: value for name, value in options.items() if value is not None}


def _same_file(first: Path, second: Path) -> bool:
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()
