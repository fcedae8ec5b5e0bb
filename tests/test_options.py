"""The one size grammar (--memory-budget, weights pull --max-size, INPAINT_MAX_DOWNLOAD); option bounds."""

from __future__ import annotations

import pytest

from inpaint_cli.errors import UsageError
from inpaint_cli.options import Spelling, describe_range, parse_size, states_range


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4_000_000_000),
        ("512MiB", 512 * 2**20),
        ("1.5g", 1_500_000_000),
        ("100", 100),
        (" 500 MB ", 500_000_000),
        ("2gib", 2 * 2**30),
        ("1Ti", 2**40),
        (".5k", 500),
        ("1e3", 1000),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lots", "cannot read size 'lots'"),
        ("-1GB", "size must be at least one byte"),
        ("4XB", "cannot read size"),
        ("4 G B", "cannot read size"),
        ("inf", "cannot read size 'inf'"),
        ("nan", "cannot read size 'nan'"),
        ("1e400", "size must be a finite number of bytes: '1e400'"),
        ("0.5B", "size must be at least one byte"),
        ("1e30", "larger than any machine's memory"),
    ],
)
def test_parse_size_rejects_nonsense(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_size(text)


def test_bounds_read_as_people_write_them() -> None:
    assert describe_range(Spelling("", minimum=16 * 2**20)) == "at least 16MiB"
    assert describe_range(Spelling("", minimum=0.0, maximum=1.0)) == "between 0 and 1"
    assert describe_range(Spelling("", maximum=0.5)) == "at most 0.5"
    assert states_range(Spelling("", metavar="1-100", minimum=1, maximum=100))
    assert not states_range(Spelling("", metavar="N", minimum=1, maximum=100))
