"""Ansible-style host ranges expand as operators expect and summarise back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollgate.core.hostrange import HostRangeError, compress, expand, natural_key


def test_zero_padded_numeric_range() -> None:
    assert expand("cmp[001:003]") == ["cmp001", "cmp002", "cmp003"]


def test_address_range_and_step() -> None:
    assert expand("10.0.0.[10:14:2]") == ["10.0.0.10", "10.0.0.12", "10.0.0.14"]


def test_letter_range_and_plain_name() -> None:
    assert expand("net-[a:c]") == ["net-a", "net-b", "net-c"]
    assert expand("ctl1") == ["ctl1"]


@pytest.mark.parametrize(
    "bad", ["c[1:2][3:4]", "c[1]", "c[5:1]", "c[01:100]", "c[1:x]", "c[1:3:0]"]
)
def test_malformed_ranges_are_refused(bad: str) -> None:
    with pytest.raises(HostRangeError):
        expand(bad)


def test_natural_sort() -> None:
    assert sorted(["cmp10", "cmp2", "cmp1"], key=natural_key) == ["cmp1", "cmp2", "cmp10"]


@given(st.integers(0, 500), st.integers(1, 60), st.sampled_from([0, 3]))
def test_compress_inverts_expand(start: int, count: int, width: int) -> None:
    end = start + count - 1
    if width and end >= 1000:
        return
    pattern = (
        f"cmp[{str(start).zfill(width)}:{str(end).zfill(width)}]"
        if count > 1
        else (f"cmp{str(start).zfill(width)}")
    )
    names = expand(pattern)
    assert expand(compress(names)) == names
