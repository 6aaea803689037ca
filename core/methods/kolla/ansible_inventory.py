"""Ansible's INI inventory and host patterns, as far as kolla's upgrade needs them: which hosts
a kolla inventory holds, by group, and which a `--limit` pattern selects."""

from __future__ import annotations

import re


def parse_ini(text: str) -> dict[str, set[str]]:
    """An Ansible INI inventory's groups (children resolved) -> host names."""
    hosts: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    section = ("ungrouped", "hosts")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            name, _, kind = line[1:-1].partition(":")
            section = (name, kind or "hosts")
            hosts.setdefault(name, set())
            continue
        name, kind = section
        if kind == "hosts":
            hosts.setdefault(name, set()).add(line.split()[0])
        elif kind == "children":
            children.setdefault(name, set()).add(line.split()[0])

    def members(group: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out = set(hosts.get(group, set()))
        for child in children.get(group, set()) - seen:
            out |= members(child, seen | {group})
        return out

    groups = {g: members(g) for g in set(hosts) | set(children)}
    groups["all"] = set().union(*groups.values()) if groups else set()
    return groups


def match_hosts(pattern: str, groups: dict[str, set[str]]) -> tuple[set[str], list[str]]:
    """Ansible's host pattern (`a,b`, `all:!compute`, `&group`): the hosts, and the parts
    that matched nothing (Ansible warns and ignores them)."""
    union: set[str] = set()
    excluded: set[str] = set()
    intersections: list[set[str]] = []
    unmatched = []
    for part in (p for p in re.split(r"[,:]", pattern) if p):
        name = part.lstrip("!&")
        found = groups.get(name) or ({name} if name in groups["all"] else set())
        if name in ("all", "*"):
            found = groups["all"]
        if not found:
            unmatched.append(part)
        if part.startswith("!"):
            excluded |= found
        elif part.startswith("&"):
            intersections.append(found)
        else:
            union |= found
    for each in intersections:
        union &= each
    return union - excluded, unmatched
