"""The manifest of named models: parsed and validated once, merged with the bundled entries.

`weights_manifest.json` is the single source of truth: every named model lists its family,
licence and an ordered list of sources, each with what its publisher (or a third party) says about
size and checksum. `resolve_model` is the one place a model name becomes an entry, so every command
refuses an unknown name with the same exit code and the same list.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inpaint_cli.errors import InputError, UsageError, WeightsError
from inpaint_cli.files.jsonfile import read_json
from inpaint_cli.options import CLASSICAL_METHODS, DETECTOR_FAMILIES, MODEL_FAMILIES

MANIFEST_PATH = Path(__file__).resolve().parents[1] / "weights_manifest.json"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled"
BUNDLED_SCHEME = "bundled:"
SOURCE_FORMATS = ("lightning-ckpt", "torch-pth", "torchscript", "safetensors")
CHECKSUM_ORIGINS = ("publisher", "third-party")
ENTRY_FAMILIES = (*MODEL_FAMILIES, *DETECTOR_FAMILIES)

_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
_HEX_LENGTHS = {"sha256": 64, "md5": 32, "member_sha256": 64}
_SIZE_FIELDS = ("size", "approx_size", "member_size", "member_approx_size")


@dataclass(frozen=True)
class Source:
    """One place to get a model's official file, with what is known about it."""

    url: str
    format: str
    member: str | None = None
    """Path of the checkpoint inside a zip archive, when the source is one."""
    size: int | None = None
    """Exact size of the downloaded file (checked)."""
    approx_size: int | None = None
    """Approximate size where none is published (shown with `~`; bounds the download with slack)."""
    sha256: str | None = None
    md5: str | None = None
    member_size: int | None = None
    member_approx_size: int | None = None
    member_sha256: str | None = None
    """SHA-256 of the zip member itself: what is checked when only the member is fetched."""
    checksum_origin: str = "publisher"
    """`third-party`: the checksum is not the publisher's but one other projects pin."""
    filename: str | None = None
    """File name of the download where the URL does not show it (Google Drive)."""
    manual: str | None = None
    """How to get the file by hand, for sources no program can download (a Drive folder)."""

    @property
    def is_bundled(self) -> bool:
        return self.url.startswith(BUNDLED_SCHEME)

    @property
    def scheme(self) -> str:
        return "bundled" if self.is_bundled else urllib.parse.urlparse(self.url).scheme

    @property
    def file_name(self) -> str:
        if self.filename:
            return self.filename
        if self.is_bundled:
            return self.url[len(BUNDLED_SCHEME) :]
        return Path(urllib.parse.urlparse(self.url).path).name or "download"

    @property
    def host(self) -> str:
        return "package" if self.is_bundled else urllib.parse.urlparse(self.url).netloc or self.url

    @property
    def pin_key(self) -> str:
        """Key of the checksum recorded at first download: the URL, plus `#member` for a zip member."""
        return f"{self.url}#{self.member}" if self.member else self.url

    def published_checksum(self) -> tuple[str, str] | None:
        """(algorithm, hex digest) of the downloaded file given by the publisher, SHA-256 preferred."""
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        return None

    @property
    def fetches_member_only(self) -> bool:
        """Whether only the zip member is fetched (HTTP ranges): true unless only the zip has a checksum."""
        return (
            bool(self.member)
            and self.scheme in ("http", "https")
            and not (self.published_checksum() and not self.member_sha256)
        )

    def download_size(self) -> tuple[int, bool] | None:
        """(bytes transferred, whether approximate) of an automatic download, if known."""
        if self.fetches_member_only and (self.member_size or self.member_approx_size):
            return (self.member_size, False) if self.member_size else (self.member_approx_size or 0, True)
        if self.size:
            return self.size, False
        return (self.approx_size, True) if self.approx_size else None


@dataclass(frozen=True)
class ModelEntry:
    """A named model of the manifest."""

    name: str
    family: str
    variant: str
    license: str
    paper: str
    homepage: str
    sources: tuple[Source, ...]
    parameters: int | None = None
    """Tensor values of the converted network; a converted file must have about this many."""

    @property
    def bundled(self) -> Path | None:
        """The file shipped inside the package, if one of the sources is `bundled:<file>`."""
        for source in self.sources:
            if source.is_bundled:
                return BUNDLED_DIR / source.file_name
        return None

    @property
    def is_detector(self) -> bool:
        return self.family in DETECTOR_FAMILIES

    def download_size(self) -> tuple[int, bool] | None:
        """(bytes, approximate) of the first automatic source that states a size."""
        automatic = (s for s in self.sources if not s.manual and not s.is_bundled)
        return next((size for s in automatic if (size := s.download_size())), None)


_ENTRY_TEXT_FIELDS = ("family", "variant", "license", "paper", "homepage")
_SOURCE_FIELDS = (
    "url",
    "format",
    "member",
    *_SIZE_FIELDS,
    "sha256",
    "md5",
    "member_sha256",
    "checksum_origin",
    "filename",
    "manual",
)
_loaded: dict[tuple[str, ...], dict[str, ModelEntry]] = {}


def _user_manifest() -> Path | None:
    override = os.environ.get("INPAINT_MANIFEST")
    return Path(override).expanduser() if override else None


def _stamp(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def load_manifest(path: Path | None = None) -> dict[str, ModelEntry]:
    """The named models: the shipped manifest, or `INPAINT_MANIFEST` plus the shipped bundled entries.

    Parsed once per process (again only if a file changes); the result must not be modified.
    """
    user = Path(path) if path is not None else _user_manifest()
    key = (_stamp(MANIFEST_PATH), _stamp(user) if user else "")
    if key not in _loaded:
        shipped = _read(MANIFEST_PATH)
        if user is None:
            _loaded[key] = shipped
        else:
            # A private list replaces the shipped one, but the models inside the package stay usable.
            own = _read(user)
            bundled = {n: e for n, e in shipped.items() if e.bundled is not None and n not in own}
            _loaded[key] = {**own, **bundled}
    return _loaded[key]


def _read(path: Path) -> dict[str, ModelEntry]:
    try:
        raw = read_json(path)
    except InputError as exc:
        raise WeightsError(f"cannot read the model manifest: {exc.what}", path=path) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise WeightsError("the model manifest must be an object with a 'models' object", path=path)
    return {name: _parse_entry(name, fields, path) for name, fields in raw["models"].items()}


def _invalid(path: Path, name: str, field: str, problem: str) -> WeightsError:
    return WeightsError(f"manifest entry '{name}': field '{field}' {problem}", path=path)


def _parse_entry(name: str, raw: Any, path: Path) -> ModelEntry:
    if not _NAME_PATTERN.fullmatch(name) or name in CLASSICAL_METHODS:
        raise WeightsError(
            f"manifest entry '{name}': names are lower-case letters, digits, '.', '_' and '-', "
            f"other than the classical methods {', '.join(CLASSICAL_METHODS)}",
            path=path,
        )
    if not isinstance(raw, dict):
        raise _invalid(path, name, name, "must be an object")
    unknown = sorted(set(raw) - {*_ENTRY_TEXT_FIELDS, "sources", "parameters"})
    if unknown:
        raise _invalid(path, name, unknown[0], "is not a known field")
    for field in _ENTRY_TEXT_FIELDS:
        if not isinstance(raw.get(field), str) or not raw[field]:
            raise _invalid(path, name, field, "must be a non-empty string")
    if raw["family"] not in ENTRY_FAMILIES:
        raise _invalid(path, name, "family", f"must be one of {', '.join(ENTRY_FAMILIES)}")
    if not _is_count(raw.get("parameters"), allow_none=True):
        raise _invalid(path, name, "parameters", "must be a positive number of tensor values or null")
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise _invalid(path, name, "sources", "must be a non-empty list")
    return ModelEntry(
        name=name,
        **{field: raw[field] for field in _ENTRY_TEXT_FIELDS},
        sources=tuple(_parse_source(name, i, s, path) for i, s in enumerate(sources)),
        parameters=raw.get("parameters"),
    )


def _is_count(value: Any, *, allow_none: bool) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _parse_source(name: str, index: int, raw: Any, path: Path) -> Source:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise _invalid(path, name, where, "must be an object")
    unknown = sorted(set(raw) - set(_SOURCE_FIELDS))
    if unknown:
        raise _invalid(path, name, f"{where}.{unknown[0]}", "is not a known field")
    url = raw.get("url")
    if not isinstance(url, str) or not (
        url.startswith(BUNDLED_SCHEME) or urllib.parse.urlparse(url).scheme in ("http", "https", "file")
    ):
        raise _invalid(path, name, f"{where}.url", "must be an http(s), file or bundled: URL")
    if raw.get("format") not in SOURCE_FORMATS:
        raise _invalid(path, name, f"{where}.format", f"must be one of {', '.join(SOURCE_FORMATS)}")
    for field in ("member", "filename", "manual"):
        if raw.get(field) is not None and (not isinstance(raw[field], str) or not raw[field]):
            raise _invalid(path, name, f"{where}.{field}", "must be a non-empty string or null")
    for field in _SIZE_FIELDS:
        if not _is_count(raw.get(field), allow_none=True):
            raise _invalid(path, name, f"{where}.{field}", "must be a positive number of bytes or null")
    for algorithm, length in _HEX_LENGTHS.items():
        digest = raw.get(algorithm)
        if digest is not None and not (
            isinstance(digest, str) and re.fullmatch(f"[0-9a-f]{{{length}}}", digest)
        ):
            raise _invalid(
                path, name, f"{where}.{algorithm}", f"must be {length} lower-case hex digits or null"
            )
    if raw.get("checksum_origin", "publisher") not in CHECKSUM_ORIGINS:
        raise _invalid(
            path, name, f"{where}.checksum_origin", f"must be one of {', '.join(CHECKSUM_ORIGINS)}"
        )
    if not raw.get("member") and any(
        raw.get(f) for f in ("member_size", "member_approx_size", "member_sha256")
    ):
        raise _invalid(path, name, f"{where}.member", "is required with member_size or member_sha256")
    if url.startswith(BUNDLED_SCHEME) and not raw.get("sha256"):
        raise _invalid(path, name, f"{where}.sha256", "is required for a bundled file")
    return Source(**{field: raw[field] for field in _SOURCE_FIELDS if raw.get(field) is not None})


def known_model_names() -> list[str]:
    """Every name `--model` and `inpaint weights` accept: the manifest's, then the classical methods."""
    return [*load_manifest(), *CLASSICAL_METHODS]


def resolve_model(name: str) -> ModelEntry | None:
    """The manifest entry of a model name, None for a weight-free classical method.

    An unknown name is a usage error (exit 2) listing every known name, whichever command asked.
    """
    if name in CLASSICAL_METHODS:
        return None
    manifest = load_manifest()
    if name not in manifest:
        raise UsageError(
            f"unknown model '{name}'",
            hint=f"known models: {', '.join(known_model_names())}; see `inpaint models`",
        )
    return manifest[name]


def get_entry(name: str) -> ModelEntry:
    """The manifest entry of a model that has weights (a usage error for unknown or classical names)."""
    entry = resolve_model(name)
    if entry is None:
        raise UsageError(
            f"'{name}' is a weight-free classical method: there are no weights to fetch or manage",
            hint=f"use it directly: `inpaint run IMAGE --mask MASK --model {name}`",
        )
    return entry


def bundled_names() -> list[str]:
    """Named models shipped inside the package (they work offline on a fresh install)."""
    return [name for name, entry in load_manifest().items() if entry.bundled is not None]
