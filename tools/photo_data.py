"""Freely licensed photographs from Debian's wallpaper packages, for the training scripts in tools/.

`fetch_package` runs `apt-get download` and `dpkg -x` into a data folder once (nothing is
installed); `list_wallpapers` lists a Plasma wallpaper folder with the licence each `metadata.json`
states; `photographs` gives the pictures that are photographs (not renderings), from Plasma's,
MATE's and Lomiri's (Ubuntu Touch's) packages, each with its licence. Used by `train_scratch_tiny.py`
and `train_demo_models.py`.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_DATA = Path.home() / ".cache" / "inpaint-train" / "wallpapers"
PLASMA = "plasma-workspace-wallpapers"
MATE = "mate-backgrounds"
PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
"""The Plasma wallpapers that are photographs (looked at one by one; the rest are renderings)."""
MATE_PHOTOS = {
    # nature/<name>.jpg: GPL-2+ as debian/copyright states for every file of nature/.
    name: "GPL-2+"
    for name in (
        "Aqua",
        "Blinds",
        "Dune",
        "FreshFlower",
        "Garden",
        "GreenMeadow",
        "LadyBird",
        "RainDrops",
        "Storm",
        "TwoWings",
        "Wood",
        "YellowFlower",
    )
}
LOMIRI_PHOTOS = {
    # usr/share/backgrounds/<name>.jpg, each with the licence debian/copyright states for its file. Left
    # out as renderings: umang (16.04); Fossa, Infinite-Sea, Painting-Colors (20.04).
    "lomiri-wallpapers-16.04": {
        "Bridge_by_Sander_Klootwijk": "CC-BY-SA-4.0",
        "Dragonfly_by_Bolly": "CC-BY-SA-4.0",
        "Picture_0B_by_freespace": "CC-BY-4.0",
        "Picture_1A_by_freespace": "CC-BY-4.0",
        "Wine_by_Jakkub_Mede": "CC-BY-4.0",
        "aitzgorri_by_Aitzol_Berasategi": "CC-BY-4.0",
        "analogpattern_by_Peter_Nerlich": "CC-BY-SA-4.0",
        "free_by_Peter_Nerlich": "CC-BY-SA-4.0",
        "friends_by_Aitzol_Berasategi": "CC-BY-4.0",
        "greentock_by_Peter_Nerlich": "CC-BY-SA-4.0",
        "life_by_Aitzol_Berasategi": "CC-BY-4.0",
        "picosdeeuropa_by_Aitzol_Berasategi": "CC-BY-4.0",
        "seeding_by_Clements_Engelhardt": "CC0-1.0",
        "sunset_by_Aitzol_Berasategi": "CC-BY-4.0",
    },
    "lomiri-wallpapers-20.04": {"Kleiber_by_Lukas_Baubkus": "CC-BY-SA-3.0"},
}
"""Lomiri's photographs by package (looked at one by one)."""


@dataclass(frozen=True)
class Photo:
    """One picture file and where it comes from."""

    name: str
    file: Path
    license: str
    package: str

    def record(self) -> dict[str, str]:
        """What a training record lists for the picture."""
        return {"name": self.name, "file": self.file.name, "license": self.license, "package": self.package}


def fetch_package(package: str, data: Path) -> Path:
    """`apt-get download` and `dpkg -x` a Debian package into `data` once; returns `data`."""
    data.mkdir(parents=True, exist_ok=True)
    marker = data / f".{package}.unpacked"
    if marker.is_file():
        return data
    debs = list(data.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", package], cwd=data, check=True, timeout=900)
        debs = list(data.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg", "-x", str(debs[0]), str(data)], check=True, timeout=900)
    marker.touch()
    return data


def fetch_wallpapers(data: Path) -> Path:
    """Plasma's wallpaper package unpacked into `data` (once); its wallpapers folder."""
    folder = data / "usr" / "share" / "wallpapers"
    if not folder.is_dir():
        fetch_package(PLASMA, data)
    return folder


def list_wallpapers(folder: Path) -> list[dict[str, str]]:
    """Each wallpaper's largest picture and the licence its metadata states (unstated ones are skipped)."""
    found = []
    for entry in sorted(folder.iterdir()):
        metadata = entry / "metadata.json"
        images = list((entry / "contents" / "images").glob("*x*.*"))
        if not metadata.is_file() or not images:
            continue
        licence = json.loads(metadata.read_text()).get("KPlugin", {}).get("License", "")
        if not licence:
            continue

        def pixels(path: Path) -> int:
            width, height = path.stem.split("x")
            return int(width) * int(height)

        largest = max(images, key=pixels)
        found.append({"name": entry.name, "file": str(largest), "license": licence})
    return found


def photographs(data: Path = DEFAULT_DATA) -> list[Photo]:
    """The photographs of Plasma's, MATE's and Lomiri's wallpaper packages (fetched into `data` if
    missing), sorted by name; each with the licence its package states."""
    photos = [
        Photo(entry["name"], Path(entry["file"]), entry["license"], PLASMA)
        for entry in list_wallpapers(fetch_wallpapers(data))
        if entry["name"] in PLASMA_PHOTOS
    ]
    nature = data / "usr" / "share" / "backgrounds" / "mate" / "nature"
    if not nature.is_dir():
        fetch_package(MATE, data)
    photos += [Photo(name, nature / f"{name}.jpg", licence, MATE) for name, licence in MATE_PHOTOS.items()]
    for package, licences in LOMIRI_PHOTOS.items():
        fetch_package(package, data)
        folder = data / "usr" / "share" / "backgrounds"
        photos += [Photo(name, folder / f"{name}.jpg", terms, package) for name, terms in licences.items()]
    expected = len(PLASMA_PHOTOS) + len(MATE_PHOTOS) + sum(map(len, LOMIRI_PHOTOS.values()))
    missing = [photo.name for photo in photos if not photo.file.is_file()]
    if missing or len(photos) != expected or len({photo.name for photo in photos}) != expected:
        raise FileNotFoundError(f"photographs missing from the packages in {data}: {missing}")
    return sorted(photos, key=lambda photo: photo.name)


def load_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """An H×W×3 uint8 RGB picture, shrunk (area averaging) to at most `max_side` on its long side."""
    picture = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if picture is None:
        raise OSError(f"cannot read {path}")
    picture = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
    if max_side and max(picture.shape[:2]) > max_side:
        scale = max_side / max(picture.shape[:2])
        size = (round(picture.shape[1] * scale), round(picture.shape[0] * scale))
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    return picture
