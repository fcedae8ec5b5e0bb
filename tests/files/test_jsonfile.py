"""The one reader of JSON files the tool did not write: regular files only, a size cap, shallow nesting."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from inpaint_cli.errors import InputError
from inpaint_cli.files.jsonfile import MAX_JSON_DEPTH, Kind, Whole, json_text, read_json, shape_problem

DEEP = "[" * 100_000 + "]" * 100_000
"""JSON nested 100,000 deep: RecursionError in the decoder (issue 27)."""


def _read_within(path: Path, seconds: float = 10.0) -> InputError:
    """The error `read_json` raises for `path`, failing the test if it takes longer than `seconds`."""
    caught: list[BaseException] = []

    def read() -> None:
        try:
            read_json(path)
        except BaseException as exc:  # handed to the test thread
            caught.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    assert not reader.is_alive(), f"reading {path} hangs"
    assert len(caught) == 1 and isinstance(caught[0], InputError), caught
    return caught[0]


def test_a_plain_json_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"inputs": [1, 2.5, "x", null, {"a": [true]}]}', encoding="utf-8")
    assert read_json(path) == {"inputs": [1, 2.5, "x", None, {"a": [True]}]}


def test_a_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text("[1]")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    assert read_json(tmp_path / "link.json") == [1]


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    os.mkfifo(path)
    error = _read_within(path)
    assert error.one_line() == f"{path}: not a regular file but a pipe (give a JSON file)"


def test_a_symlink_to_dev_zero_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.symlink_to("/dev/zero")
    error = _read_within(path)
    assert error.one_line() == f"{path}: not a regular file but a device (give a JSON file)"


def test_a_folder_is_refused(tmp_path: Path) -> None:
    error = _read_within(tmp_path)
    assert error.what == "not a regular file but a folder"


def test_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(InputError) as caught:
        read_json(path, max_bytes=1 << 10)
    assert caught.value.what == "larger than the 1,024 bytes a JSON file may have"
    assert read_json(path, max_bytes=1 << 20) == [0] * 601


@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH + 1])
def test_deep_nesting_is_one_error(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"a":' * depth + "1" + "}" * depth)
    with pytest.raises(InputError) as caught:
        read_json(path)
    assert caught.value.one_line() == f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels"


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    assert read_json(path) is not None


def test_a_deep_array_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    assert _read_within(path).what == f"JSON nested deeper than {MAX_JSON_DEPTH} levels"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"a": 1', "not valid JSON (line 1, column 8: Expecting ',' delimiter)"),
        (b'{"a": "\xff"}', "not UTF-8 text"),
    ],
)
def test_broken_content_is_one_error(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_json(path)
    assert caught.value.what == problem


@pytest.mark.parametrize("name", ["a\x00b.json", "a\ud800b.json"], ids=["nul", "surrogate"])
def test_unusable_names_are_one_error_that_prints(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError) as caught:
        read_json(tmp_path / name)
    assert caught.value.what == "not a usable file name"
    caught.value.one_line().encode("utf-8")  # printable: no NUL, no lone surrogate left
    assert "\x00" not in caught.value.one_line()


def test_a_missing_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_json(tmp_path / "nothing.json")
    assert caught.value.one_line() == f"{tmp_path / 'nothing.json'}: no such file"


def test_shapes_name_the_innermost_field_that_is_wrong() -> None:
    shape = {"inputs": [{"image": Kind.PATH, "masks": ([Kind.PATH], None)}], "n": (Whole(0, 9), None)}
    assert shape_problem({"inputs": [{"image": "a.png", "masks": None}], "n": 3}, shape) is None
    assert shape_problem({"inputs": [{"image": "a.png", "masks": ["m", 5]}]}, shape) == (
        "inputs[0].masks[1] is 5; expected a path"
    )
    assert shape_problem({"inputs": [{}]}, shape) == "inputs[0].image is null; expected a path"
    assert (
        shape_problem({"inputs": [], "n": True}, shape)
        == "n is true; expected a whole number from 0 to 9 or null"
    )
    assert shape_problem([], shape) == "the file is []; expected an object"
    assert (
        shape_problem({"inputs": [], "n": 1.5}, shape)
        == "n is 1.5; expected a whole number from 0 to 9 or null"
    )
    assert shape_problem(float("nan"), Kind.NUMBER, "x") == "x is NaN; expected a number"
    assert shape_problem("x" * 100, int, "x") == 'x is "' + "x" * 36 + "...; expected a whole number"


def test_json_text_keeps_undecodable_names_and_stays_utf8() -> None:
    name = os.fsdecode(b"caf\xe9 \xc3\xa9.png")  # a Latin-1 byte, then a UTF-8 'é'
    text = json_text({"image": name})
    assert text == '{"image": "caf\\udce9 é.png"}'
    assert json.loads(text.encode("utf-8").decode("utf-8"))["image"] == name
