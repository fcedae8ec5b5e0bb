"""Reading a JSON file the tool did not just write (a report, a provenance record, a cache), and
checking the shape of what it holds.

Such a file is data from outside, so it is read only if it is a regular file (a FIFO would block
forever, /dev/zero would be read until memory runs out), only up to a size cap, and only if its
nesting stays shallow (JSON nested 100,000 deep makes the decoder, and any code that walks the
result, raise RecursionError). Every problem is one `InputError` naming the file; callers that can
do without the file (caches, a provenance record) catch it and carry on.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from inpaint_cli.errors import InputError
from inpaint_cli.files import storage

MAX_JSON_BYTES = 256 << 20
"""Largest JSON file read: a report of 100,000 images with provenance is about 130 MB."""
MAX_JSON_DEPTH = 64
"""Deepest nesting accepted; the tool's own files nest at most 6 levels."""
_TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(value: Any, **options: Any) -> str:
    """JSON text for a file the tool writes: readable UTF-8 (`ensure_ascii` off), with the lone
    surrogates that stand for undecodable bytes of a file name escaped (`\\udce9`), so the text
    stays valid UTF-8 and reads back to the same name. `options`: those of `json.dumps`."""
    text = json.dumps(value, ensure_ascii=False, **options)
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def read_json(path: str | os.PathLike[str] | storage.RemotePath, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The parsed content of the JSON file at `path` (a local path or an object in a store); an
    `InputError` naming it on any problem."""
    if storage.is_remote(path):
        data = _read_object(path, max_bytes)  # type: ignore[arg-type]
    else:
        path = Path(path)  # type: ignore[arg-type]
        data = _read_regular(path, max_bytes)
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", path=path
        ) from None
    except RecursionError:
        raise InputError(_TOO_DEEP, path=path) from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise InputError(_TOO_DEEP, path=path)
    return value


def _read_regular(path: Path, max_bytes: int) -> bytes:
    """At most `max_bytes` of a regular file; nothing else is opened for long or read at all."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot open it: {exc.strerror}", path=path) from None
    except ValueError:  # a NUL byte, or a lone surrogate the file system cannot encode
        raise InputError("not a usable file name", path=path) from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise InputError(f"not a regular file but {_kind(mode)}", path=path, hint="give a JSON file")
    with os.fdopen(descriptor, "rb") as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(f"cannot read it: {exc.strerror}", path=path) from None
    if len(data) > max_bytes:
        raise InputError(f"larger than the {max_bytes:,} bytes a JSON file may have", path=path)
    return data


def _read_object(path: storage.RemotePath, max_bytes: int) -> bytes:
    """An object of a store, refused from its listed size when over `max_bytes` (stores hold no FIFOs)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"larger than the {max_bytes:,} bytes a JSON file may have", path=path)
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror or exc}", path=path) from None


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a pipe",
        stat.S_ISCHR: "a device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True when containers nest deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# --- the shape of what was read --------------------------------------------------------------------------


class Kind(str, Enum):
    """Values JSON has no type for: any finite number, and a path a file system can take."""

    NUMBER = "a number"
    PATH = "a path"


@dataclass(frozen=True)
class Whole:
    """A whole number from `low` to `high`."""

    low: int
    high: int


Shape = type | Kind | Whole | list | tuple | Mapping | None
"""What a value must hold: `str`, `bool`, `dict`, a `Kind`, a `Whole` range, `[shape]` (a list of
them), `(shape, ...)` (any of them), `{field: shape}` (an object whose fields, when present, have
those shapes; others are free) or `None` (JSON null)."""

_NAMES = {str: "a string", int: "a whole number", dict: "an object", type(None): "null"}
_PLURALS = {str: "strings", dict: "objects", Kind.PATH: "paths", Kind.NUMBER: "numbers"}
_TRUTHS = ["true", "false"]
MAX_SHOWN = 40
"""Characters of a wrong value shown in a message."""


def shape_problem(value: Any, shape: Shape, where: str = "") -> str | None:
    """Why `value` (found at `where`, e.g. `inputs[3]`) does not have `shape`, naming the innermost
    field that does not (`inputs[3].masks[0] is 5; expected a path`); None if it has."""
    if isinstance(shape, tuple):
        if any(_fits(value, option) for option in shape):
            return None
        # A list or an object where one was allowed: say what inside it is wrong.
        inner = [
            option for option in shape if _container(option) is type(value) and type(value) in (dict, list)
        ]
        return shape_problem(value, inner[0], where) if inner else _mismatch(value, shape, where)
    if isinstance(shape, Mapping) and isinstance(value, dict):
        problems = (
            shape_problem(value.get(key), inner, f"{where}.{key}" if where else key)
            for key, inner in shape.items()
        )
        return next((problem for problem in problems if problem is not None), None)
    if isinstance(shape, list) and isinstance(value, list):
        problems = (shape_problem(item, shape[0], f"{where}[{index}]") for index, item in enumerate(value))
        return next((problem for problem in problems if problem is not None), None)
    return None if _fits(value, shape) else _mismatch(value, shape, where)


def _mismatch(value: Any, shape: Shape, where: str) -> str:
    shown = json.dumps(value, ensure_ascii=True)  # as the file has it; escapes NUL and surrogates
    shown = shown if len(shown) <= MAX_SHOWN else shown[: MAX_SHOWN - 3] + "..."
    return f"{where or 'the file'} is {shown}; expected {_described(shape)}"


def _container(shape: Shape) -> type | None:
    return dict if isinstance(shape, Mapping) or shape is dict else list if isinstance(shape, list) else None


def _fits(value: Any, shape: Shape) -> bool:
    if isinstance(shape, tuple):
        return any(_fits(value, option) for option in shape)
    if isinstance(shape, list):
        return isinstance(value, list) and all(_fits(item, shape[0]) for item in value)
    if isinstance(shape, Mapping):
        return isinstance(value, dict) and all(_fits(value.get(key), inner) for key, inner in shape.items())
    if isinstance(shape, Whole):
        return type(value) is int and shape.low <= value <= shape.high
    if shape is Kind.NUMBER:
        return type(value) in (int, float) and math.isfinite(value)
    if shape is Kind.PATH:
        return type(value) is str and usable_path(value)
    return value is None if shape is None else type(value) is shape


def usable_path(text: str) -> bool:
    """A name a file system can take: not empty, no NUL, no surrogate that stands for no byte."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return bool(text) and "\x00" not in text


def _described(shape: Shape) -> str:
    if isinstance(shape, tuple) or shape is bool:
        options = shape if isinstance(shape, tuple) else (bool,)
        names = [name for option in options for name in (_TRUTHS if option is bool else [_described(option)])]
        return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    if isinstance(shape, list):
        return f"a list of {_PLURALS.get(_container(shape[0]) or shape[0], 'values')}"
    if isinstance(shape, Whole):
        return f"a whole number from {shape.low} to {shape.high}"
    if isinstance(shape, Kind):
        return shape.value
    return _NAMES.get(_container(shape) or (type(None) if shape is None else shape), str(shape))
