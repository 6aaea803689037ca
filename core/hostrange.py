"""Ansible-style host ranges: `cmp[001:120]`, `10.0.1.[10:129]`, `net[a:c]`, and back again."""

from __future__ import annotations

import re
from collections.abc import Sequence

_RANGE = re.compile(r"\[([^\[\]]*)\]")


class HostRangeError(ValueError):
    """A malformed range pattern."""


def expand(pattern: str, limit: int = 50_000) -> list[str]:
    """Expand the one `[start:end(:step)]` range in `pattern`; no range gives the pattern.
    A range of more than `limit` hosts is refused before anything is built."""
    matches = list(_RANGE.finditer(pattern))
    if not matches:
        return [pattern]
    if len(matches) > 1:
        raise HostRangeError(f"{pattern!r} has more than one [start:end] range; use one per entry")
    m = matches[0]
    parts = m.group(1).split(":")
    if len(parts) not in (2, 3):
        raise HostRangeError(f"{pattern!r}: a range is written [start:end] or [start:end:step]")
    start, end = parts[0].strip(), parts[1].strip()
    step_text = parts[2].strip() if len(parts) == 3 else "1"
    if not step_text.isdigit() or int(step_text) < 1:
        raise HostRangeError(f"{pattern!r}: the step must be a whole number of at least 1")
    step = int(step_text)
    head, tail = pattern[: m.start()], pattern[m.end() :]
    if start.isdigit() and end.isdigit():
        lo, hi = int(start), int(end)
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        if width and len(end) != len(start):
            raise HostRangeError(
                f"{pattern!r}: zero-padded bounds must have the same width ({start} vs {end})"
            )
        if hi < lo:
            raise HostRangeError(f"{pattern!r}: the range ends ({hi}) before it starts ({lo})")
        if (hi - lo) // step + 1 > limit:
            raise HostRangeError(
                f"{pattern!r} expands to {(hi - lo) // step + 1:,} hosts, more than {limit:,}; "
                "check the bounds, or raise policy.max_hosts"
            )
        return [f"{head}{str(i).zfill(width)}{tail}" for i in range(lo, hi + 1, step)]
    if len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
        if ord(end) < ord(start):
            raise HostRangeError(f"{pattern!r}: the range ends ({end}) before it starts ({start})")
        return [f"{head}{chr(c)}{tail}" for c in range(ord(start), ord(end) + 1, step)]
    raise HostRangeError(
        f"{pattern!r}: range bounds must be two numbers ([01:20]) or two letters ([a:f])"
    )


_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key under which `cmp2` comes before `cmp10`."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def compress(names: Sequence[str]) -> str:
    """Summarise names as ranges: ['cmp001', 'cmp002', 'cmp003'] -> 'cmp[001:003]'."""
    groups: list[list[tuple[str, str]]] = []
    for name in names:
        m = _TRAILING_NUMBER.match(name)
        prefix, num = (m.group(1), m.group(2)) if m else (name, "")
        if groups and num and groups[-1][-1][1]:
            last_prefix, last_num = groups[-1][-1]
            if (
                last_prefix == prefix
                and int(num) == int(last_num) + 1
                and (len(num) == len(last_num) or not last_num.startswith("0"))
            ):
                groups[-1].append((prefix, num))
                continue
        groups.append([(prefix, num)])
    out = []
    for group in groups:
        prefix, first = group[0]
        if len(group) == 1:
            out.append(prefix + first)
        else:
            out.append(f"{prefix}[{first}:{group[-1][1]}]")
    return ",".join(out)
