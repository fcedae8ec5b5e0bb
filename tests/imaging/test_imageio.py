"""Image I/O: modes, bit depth, EXIF orientation, metadata, errors, atomic writes (masks: test_masks.py).

Every input file is generated here, with Pillow, OpenCV or tifffile (independent writers), in tmp_path.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from inpaint_cli.errors import InputError, OutputError, UsageError
from inpaint_cli.imaging import headers, imageio
from inpaint_cli.imaging.masks import read_mask

ORIENTATION = 0x0112
MAKE, EXIF_IFD, DATE_TIME_ORIGINAL = 0x010F, 0x8769, 0x9003
# Pillow operation that stores an upright image under each EXIF orientation (inverse of displaying it).
STORING_TRANSPOSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.fixture(scope="module")
def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def samples(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """Random samples covering the dtype's whole range (extremes included)."""
    values = np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    values.flat[0], values.flat[-1] = 0, np.iinfo(dtype).max
    return values


def camera_exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[MAKE] = "TestCam"
    exif[ORIENTATION] = orientation
    exif[EXIF_IFD] = {DATE_TIME_ORIGINAL: "1962:07:14 10:00:00"}
    return exif.tobytes()


def save_bgr16(path: Path, rgb: np.ndarray) -> Path:
    """A 16-bit colour PNG/TIFF written by OpenCV (Pillow cannot write one)."""
    order = [2, 1, 0, 3][: rgb.shape[2]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., order]))
    return path


def assert_same_picture(a: imageio.Picture, b: imageio.Picture) -> None:
    assert a.pixels.dtype == b.pixels.dtype
    np.testing.assert_array_equal(a.pixels, b.pixels)
    if a.alpha is None:
        assert b.alpha is None
    else:
        np.testing.assert_array_equal(a.alpha, b.alpha)


# ------------------------------------------------------------------------------------ modes


PILLOW_MODES = [
    # (Pillow mode, array shape, dtype, channels read, has alpha)
    ("L", (12, 17), np.uint8, 1, False),
    ("LA", (12, 17, 2), np.uint8, 1, True),
    ("RGB", (12, 17, 3), np.uint8, 3, False),
    ("RGBA", (12, 17, 4), np.uint8, 3, True),
    ("I;16", (12, 17), np.uint16, 1, False),
]


@pytest.mark.parametrize("extension", [".png", ".tif"])
@pytest.mark.parametrize(("mode", "shape", "dtype", "channels", "has_alpha"), PILLOW_MODES)
def test_pillow_modes_read_exactly_and_round_trip(
    tmp_path, extension, mode, shape, dtype, channels, has_alpha
):
    values = samples(shape, dtype)
    source = tmp_path / f"in{extension}"
    Image.fromarray(values).save(source)
    assert Image.open(source).mode == mode

    picture = imageio.read_image(source)

    grid = values.reshape(12, 17, -1)
    assert picture.pixels.shape == (12, 17, channels)
    assert picture.pixels.dtype == dtype
    np.testing.assert_array_equal(picture.pixels, grid[..., :channels])
    if has_alpha:
        np.testing.assert_array_equal(picture.alpha, grid[..., -1])
    else:
        assert picture.alpha is None
    written = imageio.write_image(tmp_path / f"out{extension}", picture)
    assert Image.open(written).mode == mode  # grey stays grey, 16 bits stay 16
    assert_same_picture(imageio.read_image(written), picture)


@pytest.mark.parametrize("extension", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_reads_exactly_and_round_trips(tmp_path, extension, channels):
    values = samples((9, 14, channels), np.uint16, seed=channels)
    picture = imageio.read_image(save_bgr16(tmp_path / f"in{extension}", values))

    assert picture.pixels.dtype == np.uint16
    np.testing.assert_array_equal(picture.pixels, values[..., :3])
    if channels == 4:
        np.testing.assert_array_equal(picture.alpha, values[..., 3])
    assert picture.source_mode == ("RGB;16" if channels == 3 else "RGBA;16")

    written = imageio.write_image(tmp_path / f"out{extension}", picture)
    # Checked with OpenCV, which did not write this file.
    decoded = cv2.imread(str(written), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded[..., [2, 1, 0, 3][:channels]], values)
    assert_same_picture(imageio.read_image(written), picture)


def test_16bit_grey_with_alpha_png_round_trips(tmp_path):
    grey, alpha = samples((7, 5, 1), np.uint16, seed=1), samples((7, 5), np.uint16, seed=2)
    picture = imageio.Picture(grey, alpha, "PNG", None, None, tmp_path / "x.png")

    written = imageio.write_image(tmp_path / "la16.png", picture)

    with written.open("rb") as file:
        assert file.read(26)[24:] == bytes([16, 4])  # IHDR: 16 bits, grey + alpha
    decoded = cv2.imread(str(written), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[..., 0], grey[..., 0])
    np.testing.assert_array_equal(decoded[..., 3], alpha)
    again = imageio.read_image(written)
    assert again.source_mode == "LA;16"
    assert_same_picture(again, picture)


def test_palette_images_become_rgb_or_rgba(tmp_path):
    indices = samples((6, 8), np.uint8) % 4
    palette = [10, 20, 30, 200, 0, 0, 0, 250, 0, 7, 7, 255]
    image = Image.fromarray(indices, mode="L").convert("P")
    image.putpalette(palette)
    expected = np.array(palette, dtype=np.uint8).reshape(4, 3)[indices]

    image.save(tmp_path / "p.png")
    opaque = imageio.read_image(tmp_path / "p.png")
    image.save(tmp_path / "pt.png", transparency=2)
    keyed = imageio.read_image(tmp_path / "pt.png")

    np.testing.assert_array_equal(opaque.pixels, expected)
    assert opaque.alpha is None
    np.testing.assert_array_equal(keyed.pixels, expected)
    np.testing.assert_array_equal(keyed.alpha, np.where(indices == 2, 0, 255))
    assert_same_picture(imageio.read_image(imageio.write_image(tmp_path / "o.png", keyed)), keyed)


def test_colour_key_transparency_becomes_alpha(tmp_path):
    Image.fromarray(np.array([[0, 50, 100]], np.uint8)).save(tmp_path / "l.png", transparency=50)
    Image.fromarray(np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)).save(
        tmp_path / "c.png", transparency=(4, 5, 6)
    )

    grey, colour = imageio.read_image(tmp_path / "l.png"), imageio.read_image(tmp_path / "c.png")

    np.testing.assert_array_equal(grey.pixels[..., 0], [[0, 50, 100]])
    np.testing.assert_array_equal(grey.alpha, [[255, 0, 255]])
    np.testing.assert_array_equal(colour.pixels, [[[1, 2, 3], [4, 5, 6]]])
    np.testing.assert_array_equal(colour.alpha, [[255, 0]])


def test_one_bit_image_reads_as_8bit_grey(tmp_path):
    bits = samples((10, 16), np.uint8) > 127
    Image.fromarray(bits).save(tmp_path / "bits.png")
    assert Image.open(tmp_path / "bits.png").mode == "1"

    picture = imageio.read_image(tmp_path / "bits.png")

    np.testing.assert_array_equal(picture.pixels[..., 0], np.where(bits, 255, 0))


def test_float_and_32bit_integer_tiffs_become_16bit(tmp_path):
    unit = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    raw = np.array([[0, 1000], [40000, 65535]], dtype=np.float32)
    Image.fromarray(raw, mode="F").save(tmp_path / "raw.tif")
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32), mode="I").save(tmp_path / "wide.tif")
    Image.fromarray(np.array([[3, 65535]], dtype=np.int32), mode="I").save(tmp_path / "int.tif")

    np.testing.assert_array_equal(
        imageio.read_image(tmp_path / "unit.tif").pixels[..., 0], np.round(unit * 65535).astype(np.uint16)
    )
    np.testing.assert_array_equal(imageio.read_image(tmp_path / "raw.tif").pixels[..., 0], raw)
    np.testing.assert_array_equal(imageio.read_image(tmp_path / "int.tif").pixels[..., 0], [[3, 65535]])
    with pytest.raises(InputError, match=r"outside 0\.\.65535"):
        imageio.read_image(tmp_path / "wide.tif")


def test_big_endian_16bit_grey_tiff_reads_exactly(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    values = samples((5, 6), np.uint16, seed=7)
    tifffile.imwrite(tmp_path / "be.tif", values, byteorder=">")
    assert Image.open(tmp_path / "be.tif").mode == "I;16B"

    picture = imageio.read_image(tmp_path / "be.tif")

    assert picture.pixels.dtype == np.uint16
    np.testing.assert_array_equal(picture.pixels[..., 0], values)


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)

    picture = imageio.read_image(tmp_path / "cmyk.jpg")

    assert picture.source_mode == "CMYK"
    assert picture.pixels.shape == (16, 16, 3)
    np.testing.assert_allclose(picture.pixels.reshape(-1, 3).mean(axis=0), [0, 255, 255], atol=2)
    np.testing.assert_array_equal(picture.pixels, np.array(Image.open(tmp_path / "cmyk.jpg").convert("RGB")))


def test_lossless_webp_reads_exactly_and_keeps_alpha(tmp_path):
    values = samples((8, 9, 4), np.uint8)
    Image.fromarray(values).save(tmp_path / "in.webp", lossless=True, exact=True)

    picture = imageio.read_image(tmp_path / "in.webp")
    written = imageio.write_image(tmp_path / "out.webp", picture, quality=90)

    assert picture.source_format == "WEBP"
    np.testing.assert_array_equal(picture.pixels, values[..., :3])
    np.testing.assert_array_equal(picture.alpha, values[..., 3])
    reread = imageio.read_image(written)
    assert (reread.pixels != values[..., :3]).any()  # lossy below quality 100
    np.testing.assert_array_equal(reread.alpha, values[..., 3])  # WebP keeps alpha losslessly
    exact = imageio.read_image(imageio.write_image(tmp_path / "exact.webp", picture, quality=100))
    assert_same_picture(exact, picture)


# ------------------------------------------------------------------------------------ EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_the_same_upright_pixels(tmp_path, orientation):
    upright = samples((6, 10, 3), np.uint8, seed=3)
    alpha = samples((6, 10), np.uint8, seed=4)
    image = Image.fromarray(np.dstack([upright, alpha]))
    if STORING_TRANSPOSE[orientation] is not None:
        image = image.transpose(STORING_TRANSPOSE[orientation])
    image.save(tmp_path / "o.png", exif=camera_exif(orientation), dpi=(300, 150))

    picture = imageio.read_image(tmp_path / "o.png")

    np.testing.assert_array_equal(picture.pixels, upright)
    np.testing.assert_array_equal(picture.alpha, alpha)
    exif = Image.Exif()
    exif.load(picture.exif)
    assert exif[ORIENTATION] == 1
    assert exif[MAKE] == "TestCam"
    expected_dpi = (150, 300) if orientation >= 5 else (300, 150)
    np.testing.assert_allclose(picture.dpi, expected_dpi, atol=0.05)


@pytest.mark.parametrize("orientation", [3, 6, 7])
def test_16bit_tiff_orientation_is_applied(tmp_path, orientation):
    tifffile = pytest.importorskip("tifffile")
    upright = samples((5, 7, 3), np.uint16, seed=5)
    stored = np.array(Image.fromarray(upright[..., 0]).transpose(STORING_TRANSPOSE[orientation]))
    order = np.arange(upright[..., 0].size).reshape(upright.shape[:2])
    moved = np.array(Image.fromarray(order.astype(np.int32)).transpose(STORING_TRANSPOSE[orientation]))
    stored_rgb = upright.reshape(-1, 3)[moved]
    assert (stored_rgb[..., 0] == stored).all()
    tifffile.imwrite(
        tmp_path / "o.tif", stored_rgb, photometric="rgb", extratags=[(ORIENTATION, 3, 1, orientation, True)]
    )

    picture = imageio.read_image(tmp_path / "o.tif")

    np.testing.assert_array_equal(picture.pixels, upright)


def test_jpeg_orientation_matches_pillow_exif_transpose(tmp_path):
    stored = Image.fromarray(samples((16, 24, 3), np.uint8, seed=6))
    stored.save(tmp_path / "o.jpg", exif=camera_exif(6), quality=95)

    picture = imageio.read_image(tmp_path / "o.jpg")

    expected = np.array(ImageOps.exif_transpose(Image.open(tmp_path / "o.jpg")))
    assert picture.pixels.shape == (24, 16, 3)
    np.testing.assert_array_equal(picture.pixels, expected)


# ------------------------------------------------------------------------------------ metadata


@pytest.mark.parametrize("extension", [".png", ".jpg", ".tif", ".webp"])
def test_icc_profile_and_exif_are_carried_to_the_output(tmp_path, srgb_profile, extension):
    Image.fromarray(samples((8, 8, 3), np.uint8)).save(
        tmp_path / "in.jpg", icc_profile=srgb_profile, exif=camera_exif(8), dpi=(300, 300)
    )

    written = imageio.write_image(tmp_path / f"out{extension}", imageio.read_image(tmp_path / "in.jpg"))

    output = Image.open(written)
    assert output.info["icc_profile"] == srgb_profile
    exif = output.getexif()
    assert exif[MAKE] == "TestCam"
    assert exif.get(ORIENTATION, 1) == 1
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "1962:07:14 10:00:00"


@pytest.mark.parametrize("extension", [".png", ".tif"])
def test_16bit_colour_output_keeps_icc_exif_and_dpi(tmp_path, srgb_profile, extension):
    exif = camera_exif()
    picture = imageio.Picture(
        samples((6, 5, 3), np.uint16),
        None,
        "TIFF",
        srgb_profile,
        exif,
        tmp_path / "x.tif",
        dpi=(600.0, 600.0),
    )

    written = imageio.write_image(tmp_path / f"out{extension}", picture)

    output = Image.open(written)
    assert output.info["icc_profile"] == srgb_profile
    assert output.getexif()[MAKE] == "TestCam"
    assert output.getexif().get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "1962:07:14 10:00:00"
    np.testing.assert_allclose([float(v) for v in output.info["dpi"]], (600, 600), atol=0.05)
    reread = imageio.read_image(written)
    assert reread.icc_profile == srgb_profile
    np.testing.assert_array_equal(reread.pixels, picture.pixels)


def test_tiff_exif_keeps_descriptive_tags_only(tmp_path):
    Image.fromarray(samples((4, 4), np.uint8)).save(tmp_path / "in.tif", exif=camera_exif())

    picture = imageio.read_image(tmp_path / "in.tif")

    exif = Image.Exif()
    exif.load(picture.exif)
    assert exif[MAKE] == "TestCam"
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "1962:07:14 10:00:00"
    assert 273 not in exif and 256 not in exif  # strip offsets and width describe the TIFF, not the photo
    jpeg = Image.open(imageio.write_image(tmp_path / "out.jpg", picture))
    assert jpeg.getexif()[MAKE] == "TestCam"


def test_jpeg_output_uses_quality_95_by_default_and_keeps_grey(tmp_path):
    values = samples((32, 32), np.uint8)
    Image.fromarray(values).save(tmp_path / "in.jpg", quality=70)

    written = imageio.write_image(tmp_path / "out.jpg", imageio.read_image(tmp_path / "in.jpg"))

    reference = io.BytesIO()
    Image.open(tmp_path / "in.jpg").save(reference, format="JPEG", quality=95)
    output = Image.open(written)
    assert output.mode == "L"
    assert output.quantization == Image.open(reference).quantization


def test_16bit_to_8bit_formats_rounds_to_nearest(tmp_path):
    grey = np.full((16, 16, 1), 40000, dtype=np.uint16)  # 40000 / 257 = 155.6
    picture = imageio.Picture(grey, None, "PNG", None, None, tmp_path / "x.png")

    written = imageio.write_image(tmp_path / "out.jpg", picture)

    output = np.array(Image.open(written))
    assert output.dtype == np.uint8
    assert (output == 156).all()


def test_jpeg_refuses_transparency_but_drops_an_opaque_alpha(tmp_path):
    pixels = samples((4, 4, 3), np.uint8)
    opaque = imageio.Picture(pixels, np.full((4, 4), 255, np.uint8), "PNG", None, None, tmp_path / "x.png")
    see_through = imageio.Picture(pixels, np.zeros((4, 4), np.uint8), "PNG", None, None, tmp_path / "x.png")

    assert Image.open(imageio.write_image(tmp_path / "opaque.jpg", opaque)).mode == "RGB"
    with pytest.raises(OutputError, match="JPEG cannot store transparency") as caught:
        imageio.write_image(tmp_path / "clear.jpg", see_through)
    assert "--format png" in caught.value.hint
    assert not (tmp_path / "clear.jpg").exists()


# ------------------------------------------------------------------------------------ errors


def test_read_errors_name_the_file_and_the_problem(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(samples((64, 64, 3), np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cut_jpeg = tmp_path / "cut.jpg"
    Image.open(good).save(cut_jpeg)
    cut_jpeg.write_bytes(cut_jpeg.read_bytes()[:-400])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture\n")
    lab = tmp_path / "lab.tif"
    Image.new("LAB", (4, 4)).save(lab)

    cases = [
        (tmp_path / "missing.png", {}, "file not found"),
        (tmp_path, {}, "is a folder"),
        (empty, {}, "file is empty"),
        (truncated, {}, "truncated or corrupt"),
        (cut_jpeg, {}, "truncated or corrupt"),
        (text, {}, "not a PNG, JPEG, TIFF or WebP image"),
        (good, {"max_pixels": 4000}, "more than 4,000 pixels"),  # our check
        (good, {"max_pixels": 1000}, "more than 1,000 pixels"),  # Pillow's DecompressionBombError
        (lab, {}, "unsupported image mode LAB"),
    ]
    for path, options, problem in cases:
        with pytest.raises(InputError) as caught:
            imageio.read_image(path, **options)
        assert caught.value.path == path
        assert problem in caught.value.what
        assert str(path) in str(caught.value)
    assert imageio.read_image(good, max_pixels=64 * 64).size == (64, 64)


def test_pillow_pixel_limit_is_restored_after_reading(tmp_path):
    Image.fromarray(samples((4, 4), np.uint8)).save(tmp_path / "a.png")
    before = Image.MAX_IMAGE_PIXELS

    imageio.read_image(tmp_path / "a.png", max_pixels=123)

    assert before == Image.MAX_IMAGE_PIXELS


def test_headers_tell_size_frames_and_truncation_without_decoding(tmp_path, monkeypatch):
    picture = Image.fromarray(samples((12, 16, 3)))
    sideways = Image.fromarray(samples((16, 12, 3)))
    files = {
        "a.png": lambda path: sideways.save(path, exif=camera_exif(6)),
        "a.jpg": lambda path: sideways.save(path, exif=camera_exif(6)),
        "a.webp": lambda path: picture.save(path),
        "a.tif": lambda path: picture.save(path),
        "anim.png": lambda path: picture.save(path, save_all=True, append_images=[picture, picture]),
        "pages.tif": lambda path: picture.save(path, save_all=True, append_images=[picture]),
    }
    for name, save in files.items():
        save(tmp_path / name)
    big = Image.fromarray(samples((120, 160, 3)))  # pixel data, not headers, is what a cut loses
    for name in ["a.png", "a.jpg", "a.webp", "a.tif"]:
        big.save(tmp_path / f"big-{name}")
    monkeypatch.setattr(Image.Image, "load", lambda *args: pytest.fail("pixels were decoded"))

    for name in files:
        header = headers.read_header(tmp_path / name)
        assert (header.size, header.truncated) == ((12, 16), False), name
    assert (
        headers.read_header(tmp_path / "anim.png").frames_note
        == f"{tmp_path / 'anim.png'}: has 3 frames; only the first is used"
    )
    assert (
        headers.read_header(tmp_path / "pages.tif").frames_note
        == f"{tmp_path / 'pages.tif'}: has 2 pages; only the first is used"
    )
    assert headers.read_header(tmp_path / "a.png").frames_note is None
    for name in ["a.png", "a.jpg", "a.webp", "a.tif"]:
        whole = (tmp_path / f"big-{name}").read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(whole[: len(whole) * 3 // 4])
        assert not headers.read_header(tmp_path / f"big-{name}").truncated, name
        try:
            cut = headers.read_header(tmp_path / f"cut-{name}").truncated
        except InputError:  # Pillow cannot even open a cut WebP: refused all the same
            cut = name.endswith(".webp")
        assert cut, name


def test_only_the_first_frame_is_read_and_a_note_says_so(tmp_path):
    frames = [Image.fromarray(samples((6, 8, 3), seed=seed)) for seed in range(2)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    picture = imageio.read_image(tmp_path / "anim.png")
    np.testing.assert_array_equal(picture.pixels, np.asarray(frames[0]))
    assert picture.notes == (f"{tmp_path / 'anim.png'}: has 2 frames; only the first is used",)
    frames[0].save(tmp_path / "one.png")
    assert imageio.read_image(tmp_path / "one.png").notes == ()


# ------------------------------------------------------------------------------------ writing


def tiny_picture(tmp_path: Path) -> imageio.Picture:
    return imageio.Picture(samples((3, 4, 3), np.uint8), None, "PNG", None, None, tmp_path / "x.png")


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    picture = tiny_picture(tmp_path)
    target = imageio.write_image(tmp_path / "out.png", picture)

    with pytest.raises(OutputError, match="already exists") as caught:
        imageio.write_image(target, picture.with_pixels(255 - picture.pixels))
    assert "--overwrite" in caught.value.hint
    np.testing.assert_array_equal(imageio.read_image(target).pixels, picture.pixels)

    imageio.write_image(target, picture.with_pixels(255 - picture.pixels), overwrite=True)
    np.testing.assert_array_equal(imageio.read_image(target).pixels, 255 - picture.pixels)


def test_failed_write_leaves_no_temporary_file_and_the_old_file_intact(tmp_path, monkeypatch):
    picture = tiny_picture(tmp_path)
    folder = tmp_path / "out"
    old = imageio.write_image(folder / "a.png", picture)
    old_bytes = old.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    for target, overwrite in [(folder / "b.png", False), (old, True)]:
        with pytest.raises(OutputError, match="No space left on device"):
            imageio.write_image(target, picture, overwrite=overwrite)

    assert sorted(p.name for p in folder.iterdir()) == ["a.png"]
    assert old.read_bytes() == old_bytes


def test_outputs_get_ordinary_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        written = imageio.write_image(tmp_path / "out.png", tiny_picture(tmp_path))
    finally:
        os.umask(previous)

    assert stat.S_IMODE(written.stat().st_mode) == 0o644


def test_write_creates_folders_and_reports_unwritable_ones(tmp_path):
    picture = tiny_picture(tmp_path)
    nested = imageio.write_image(tmp_path / "a" / "b" / "out.tif", picture)
    assert imageio.read_image(nested).pixels.shape == (3, 4, 3)

    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="cannot write the image") as caught:
        imageio.write_image(blocker / "sub" / "out.png", picture)
    assert caught.value.path == blocker / "sub" / "out.png"


def test_output_format_from_extension_or_option(tmp_path):
    assert imageio.output_format(Path("a.JPG")) == "JPEG"
    assert imageio.output_format(Path("a.tiff")) == "TIFF"
    assert imageio.output_format(Path("a.out"), "webp") == "WEBP"
    assert [imageio.extension_for_format(name) for name in ("PNG", "jpeg", "tiff", "webp")] == [
        ".png",
        ".jpg",
        ".tif",
        ".webp",
    ]
    with pytest.raises(OutputError, match="cannot tell the image format"):
        imageio.output_format(Path("a.bmp"))
    with pytest.raises(OutputError, match="does not match"):
        imageio.output_format(Path("a.png"), "jpg")
    with pytest.raises(UsageError, match="unknown output format"):
        imageio.output_format(Path("a.png"), "gif")


def test_default_output_path(tmp_path):
    photo = tmp_path / "scan.TIF"
    photo.write_bytes(b"x")
    (tmp_path / "results").mkdir()

    assert imageio.default_output_path(photo) == tmp_path / "scan_inpainted.TIF"
    assert imageio.default_output_path(photo, format="jpeg") == tmp_path / "scan_inpainted.jpg"
    assert imageio.default_output_path(photo, tmp_path / "results") == tmp_path / "results/scan_inpainted.TIF"
    assert imageio.default_output_path(photo, tmp_path / "x.png") == tmp_path / "x.png"
    assert imageio.default_output_path(tmp_path / "a.gif") == tmp_path / "a_inpainted.png"
    with pytest.raises(OutputError, match="would replace the input"):
        imageio.default_output_path(photo, tmp_path / "." / "scan.TIF")


def test_with_pixels_keeps_metadata_and_checks_shape(tmp_path, srgb_profile):
    picture = imageio.Picture(
        samples((3, 4, 3), np.uint8),
        np.zeros((3, 4), np.uint8),
        "JPEG",
        srgb_profile,
        None,
        tmp_path / "x.jpg",
    )
    changed = picture.with_pixels(np.zeros((3, 4, 3), np.uint8))

    assert changed.icc_profile == srgb_profile and changed.alpha is picture.alpha and changed.size == (3, 4)
    with pytest.raises(ValueError, match="expected"):
        picture.with_pixels(np.zeros((3, 4, 3), np.uint16))


def test_is_image_file_skips_hidden_and_temporary_files(tmp_path):
    for name in ("a.JPG", "b.webp", ".a.part.png", "._c.jpg", "d.txt"):
        (tmp_path / name).write_bytes(b"x")

    assert sorted(p.name for p in tmp_path.iterdir() if imageio.is_image_file(p)) == ["a.JPG", "b.webp"]


def test_example_photo_differs_from_its_original_exactly_inside_its_mask():
    examples = Path(__file__).resolve().parents[2] / "examples"
    original = imageio.read_image(examples / "portrait_original.png")
    damaged = imageio.read_image(examples / "portrait_damaged.png")

    hole = read_mask(examples / "portrait_mask.png", size=damaged.size)

    assert damaged.size == original.size == (384, 384)
    np.testing.assert_array_equal((damaged.pixels != original.pixels).any(axis=2), hole)
    assert 0.05 < hole.mean() < 0.07
    assert all(path.stat().st_size < 300_000 for path in examples.glob("*.png"))
