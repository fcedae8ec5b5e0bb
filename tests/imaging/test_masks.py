"""Masks: the one rule from levels to a hole (files and arrays alike), several masks, dilation, sizes.

Every mask file is generated here with Pillow, in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inpaint_cli.errors import InputError, UsageError
from inpaint_cli.imaging import imageio
from inpaint_cli.imaging.masks import grow_hole, hole_from_array, read_mask, write_mask


def _orientation_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def save_mask(path: Path, values: np.ndarray, **options) -> Path:
    Image.fromarray(values).save(path, **options)
    return path


def test_mask_threshold_invert_and_16bit_scale(tmp_path):
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    eight = save_mask(tmp_path / "m8.png", ramp)
    sixteen = save_mask(tmp_path / "m16.png", ramp.astype(np.uint16) * 257)

    for threshold in (0, 1, 127, 200, 254, 255):
        expected = ramp > threshold
        hole = read_mask(eight, size=(16, 16), threshold=threshold)
        assert hole.dtype == bool
        np.testing.assert_array_equal(hole, expected)
        np.testing.assert_array_equal(read_mask(sixteen, size=(16, 16), threshold=threshold), expected)
        np.testing.assert_array_equal(
            read_mask(eight, size=(16, 16), threshold=threshold, invert=True), ~expected
        )
    assert read_mask(eight, size=(16, 16)).sum() == 128  # default 127: grey 128..255


def test_colour_mask_uses_luma(tmp_path):
    colours = np.array([[[255, 255, 255], [255, 0, 0], [0, 255, 0], [128, 128, 128], [0, 0, 0]]], np.uint8)
    mask = save_mask(tmp_path / "rgb.png", colours)

    hole = read_mask(mask, size=(1, 5))

    # Luma: 255, 76, 150, 128, 0.
    np.testing.assert_array_equal(hole, [[True, False, True, True, False]])


def test_rgba_mask_uses_alpha_when_colour_is_uniform_else_grey(tmp_path):
    alpha = np.array([[0, 100, 200, 255]], np.uint8)
    uniform = np.dstack([np.zeros((1, 4, 3), np.uint8), alpha])
    painted = uniform.copy()
    painted[0, 1, :3] = 255  # a white stroke on an otherwise black layer

    np.testing.assert_array_equal(
        read_mask(save_mask(tmp_path / "u.png", uniform), size=(1, 4)), [[False, False, True, True]]
    )
    np.testing.assert_array_equal(
        read_mask(save_mask(tmp_path / "p.png", painted), size=(1, 4)), [[False, True, False, False]]
    )


def test_several_masks_are_ored_and_dilated_by_a_disc(tmp_path):
    first, second = np.zeros((21, 21), np.uint8), np.zeros((21, 21), np.uint8)
    first[10, 10] = 255
    second[0, 20] = 255
    paths = [save_mask(tmp_path / "a.png", first), save_mask(tmp_path / "b.png", second)]

    hole = read_mask(paths, size=(21, 21))
    grown = read_mask(paths, size=(21, 21), dilate=3)

    assert hole.sum() == 2 and hole[10, 10] and hole[0, 20]
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)).astype(bool)
    np.testing.assert_array_equal(grown[7:14, 7:14], disc)
    assert not grown[10, 6] and not grown[6, 10] and not grown[7, 7]  # a disc: no corners
    assert grown.sum() == disc.sum() + disc[3:, :4].sum()  # the corner pixel's disc is cut by the border


def test_mask_orientation_and_size_mismatch(tmp_path):
    upright = np.zeros((20, 30), np.uint8)
    upright[2:5, 20:28] = 255
    rotated = save_mask(
        tmp_path / "r.png",
        np.array(Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)),
        exif=_orientation_exif(6),
    )

    np.testing.assert_array_equal(read_mask(rotated, size=(20, 30)), upright > 127)
    with pytest.raises(InputError) as caught:
        read_mask(rotated, size=(25, 40))
    assert caught.value.what == "mask is 30x20 but image is 40x25"
    assert caught.value.path == rotated
    with pytest.raises(InputError) as caught:  # filed under the image when the caller names it
        read_mask(rotated, size=(25, 40), image=tmp_path / "photo.jpg")
    assert caught.value.what == f"its mask {rotated} is 30x20 but the image is 40x25"
    assert caught.value.path == tmp_path / "photo.jpg"


def test_a_mask_is_checked_from_its_header_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    mask = save_mask(tmp_path / "big.png", np.zeros((300, 200), np.uint8))

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(imageio, "read_image", no_decoding)
    with pytest.raises(InputError, match="is 200x300 but image is 20x10"):
        read_mask(mask, size=(10, 20))
    with pytest.raises(InputError, match="more than 1,000 pixels"):
        read_mask(mask, size=(300, 200), max_pixels=1000)  # the pixel limit holds for masks


def test_mask_option_validation(tmp_path):
    mask = save_mask(tmp_path / "m.png", np.zeros((2, 2), np.uint8))
    for options, message in [
        ({"threshold": 256}, "outside 0..255"),
        ({"dilate": -1}, "negative"),
    ]:
        with pytest.raises(UsageError, match=message):
            read_mask(mask, size=(2, 2), **options)
    with pytest.raises(UsageError, match="no mask"):
        read_mask([], size=(2, 2))


def test_an_array_gives_the_hole_its_file_gives(tmp_path):
    """One rule for files and arrays: grey is integer luma rounded half up, so (128, 127, 127) has
    grey 127 (not a hole) and (128, 128, 127) grey 128 (a hole), 16-bit levels on the 8-bit scale,
    and alpha of a uniform colour."""
    rgb = np.array([[[128, 127, 127], [128, 128, 127], [255, 0, 0], [0, 255, 0]]], np.uint8)
    alpha = np.array([[0, 127, 128, 255]], np.uint8)
    uniform = np.dstack([np.zeros((1, 4, 3), np.uint8), alpha])
    grey16 = np.array([[127 * 257, 127 * 257 + 1, 128 * 257, 65535]], np.uint16)
    cases = {
        "rgb.png": (rgb, [[False, True, False, True]]),
        "rgba.png": (uniform, [[False, False, True, True]]),
        "grey16.png": (grey16, [[False, True, True, True]]),
    }
    for name, (levels, expected) in cases.items():
        from_file = read_mask(save_mask(tmp_path / name, levels), size=(1, 4))
        np.testing.assert_array_equal(from_file, expected, err_msg=name)
        np.testing.assert_array_equal(hole_from_array(levels), expected, err_msg=name)
        np.testing.assert_array_equal(hole_from_array(levels, invert=True), ~np.array(expected), err_msg=name)
    np.testing.assert_array_equal(hole_from_array(rgb, threshold=126), [[True, True, False, True]])


def test_an_array_mask_of_another_kind_is_refused():
    np.testing.assert_array_equal(hole_from_array(np.array([[True, False]])), [[True, False]])
    np.testing.assert_array_equal(hole_from_array(np.array([[[True], [False]]])), [[True, False]])
    with pytest.raises(ValueError, match="float32"):  # 0..1 or 0..255? no agreed scale
        hole_from_array(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="must be H×W"):
        hole_from_array(np.ones((2, 2, 3), bool))
    with pytest.raises(ValueError, match="H×W or H×W×C"):
        hole_from_array(np.ones((2, 2, 5), np.uint8))
    with pytest.raises(UsageError, match=r"outside 0\.\.255"):
        hole_from_array(np.ones((2, 2), np.uint8), threshold=300)


def test_holes_grow_by_a_disc_and_a_written_mask_reads_back(tmp_path):
    hole = np.zeros((50, 60), bool)
    hole[25, 30] = True
    for radius in (1, 5, 40):  # 40: beyond the kernel, by distance
        grown = grow_hole(hole, radius)
        ys, xs = np.nonzero(grown)
        distance = np.hypot(ys - 25, xs - 30)
        assert distance.max() <= radius + 0.5 and grown[25, 30 + min(radius, 29)]
    written = write_mask(tmp_path / "sub" / "m.png", grow_hole(hole, 5))
    assert Image.open(written).mode == "L" and set(np.unique(np.asarray(Image.open(written)))) == {0, 255}
    np.testing.assert_array_equal(read_mask(written, size=(50, 60)), grow_hole(hole, 5))


def test_a_jpeg_mask_is_said_to_be_lossy_with_the_advice_that_fits(tmp_path):
    """Issue 30: a mask saved as JPEG was thresholded silently, and `--mask-threshold 0` (advice for
    soft-edged masks) then grew the hole through the JPEG noise: 6.0 % of the example to 9.4 %."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    with Image.open(examples / "portrait_mask.png") as picture:
        clean = np.asarray(picture.convert("L"))
    jpeg = save_mask(tmp_path / "mask.jpg", clean, quality=90)
    size = clean.shape
    notes: list[str] = []
    hole = read_mask(jpeg, size=size, notes=notes)
    (note,) = notes
    assert note.startswith(
        f"{jpeg}: has the noise of lossy compression (JPEG?) around its edges (4.5% of it)"
    )
    assert note.endswith(
        f", left out at --mask-threshold 127 ({hole.mean():.1%} of the image is hole; --mask-threshold 0 "
        f"would make it {read_mask(jpeg, size=size, threshold=0).mean():.1%}): for a margin use --dilate, "
        "or save masks as PNG"
    )
    assert (
        f"{hole.mean():.1%}" == "6.0%" and f"{read_mask(jpeg, size=size, threshold=0).mean():.1%}" == "9.4%"
    )
    notes = []
    read_mask(jpeg, size=size, threshold=0, notes=notes)
    assert notes[0].endswith(
        ": at --mask-threshold 0 the noise joins the hole (9.4% of the image, 6.0% at the default 127); "
        "use the default, and --dilate for a margin, or save masks as PNG"
    )
    # Drawn masks with soft edges are not lossy: anti-aliased lines, a feathered brush, the PNG itself.
    lines = np.zeros(size, np.uint8)
    for start, end in [((10, 20), (300, 200)), ((50, 350), (370, 40)), ((0, 190), (383, 210))]:
        cv2.line(lines, start, end, 255, 3, cv2.LINE_AA)
    for name, values in [("png", clean), ("lines", lines), ("feathered", cv2.GaussianBlur(clean, (0, 0), 2))]:
        notes = []
        read_mask(save_mask(tmp_path / f"{name}.png", values), size=size, threshold=0, notes=notes)
        assert notes == [], name
