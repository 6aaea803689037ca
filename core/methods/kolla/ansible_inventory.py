"""Ansible's INI inventory and host patterns, as far as kolla's upgrade needs them: which hosts
a kolla inventory holds, by group, and which a `--limit` pattern selects."""

from __future__ import annotations

import re
import shlex
from typing import Any

from rollgate.core.hostrange import expand


def parse_ini(text: str) -> dict[str, set[str]]:
    """An Ansible INI inventory's groups (children resolved) -> host names."""
    return read_ini(text)[0]


def read_ini(text: str) -> tuple[dict[str, set[str]], dict[str, dict[str, str]]]:
    """An Ansible INI inventory's groups (children resolved) and each host's variables
    (`host ansible_host=10.0.0.5 ansible_user=kolla`; a `[g:vars]` section's for its hosts)."""
    hosts: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    host_vars: dict[str, dict[str, str]] = {}
    group_vars: dict[str, dict[str, str]] = {}
    section = ("ungrouped", "hosts")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith(";") else ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            name, _, kind = line[1:-1].partition(":")
            section = (name, kind or "hosts")
            hosts.setdefault(name, set())
            continue
        name, kind = section
        try:
            first, *rest = shlex.split(line)
        except ValueError:  # an unbalanced quote: the words as they are
            first, *rest = line.split()
        if kind == "hosts":
            for host in expand(first):
                hosts.setdefault(name, set()).add(host)
                host_vars.setdefault(host, {}).update(_pairs(rest))
        elif kind == "children":
            children.setdefault(name, set()).add(first)
        elif kind == "vars":
            group_vars.setdefault(name, {}).update(_pairs([line]))
    groups = _resolve(hosts, children)
    for group, values in group_vars.items():  # a host's own variables win
        for host in groups.get(group, ()):
            host_vars[host] = {**values, **host_vars.get(host, {})}
    return groups, host_vars


def read_yaml(data: dict[str, Any]) -> tuple[dict[str, set[str]], dict[str, dict[str, str]]]:
    """An Ansible YAML inventory (`all: {children: {control: {hosts: {ctl1: {...}}}}}`)."""
    hosts: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    host_vars: dict[str, dict[str, str]] = {}

    def walk(name: str, body: Any) -> None:
        body = body or {}
        hosts.setdefault(name, set())
        for pattern, values in (body.get("hosts") or {}).items():
            for host in expand(str(pattern)):
                hosts[name].add(host)
                host_vars.setdefault(host, {}).update(
                    {str(k): str(v) for k, v in (values or {}).items()}
                )
        for child, child_body in (body.get("children") or {}).items():
            children.setdefault(name, set()).add(str(child))
            walk(str(child), child_body)

    for name, body in data.items():
        walk(str(name), body)
    return _resolve(hosts, children), host_vars


def _pairs(words: list[str]) -> dict[str, str]:
    return dict(w.split("=", 1) for w in words if "=" in w)


def _resolve(hosts: dict[str, set[str]], children: dict[str, set[str]]) -> dict[str, set[str]]:
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
