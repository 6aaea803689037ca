"""`rollgate check`'s look at the backups before the window: the dump's credentials work on
each node that takes one, and its backup directory has room for the databases it dumps."""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from rollgate.core.executor import Executor, TransportError
from rollgate.core.inventory import Inventory, Node
from rollgate.core.plan import render_action, site_variables
from rollgate.core.preflight import Finding, run_probe
from rollgate.core.recipes import RecipeError, load_recipe
from rollgate.core.roles import ROLES

MARGIN = 1.2  # a dump is about the size of the data; a fifth more for safety


def backup_dir(inv: Inventory, site: str) -> str:
    return str(site_variables(inv, site).get("backup_dir") or "/var/backups/rollgate")


async def check_backups(executor: Executor, inv: Inventory) -> list[Finding]:
    """Per node that takes a dump (the first node of each service that has a database): the
    credentials (`mysqldump --no-data` of its databases) and the room (the databases' size
    as information_schema says, against `df` of the backup directory or its nearest
    existing parent)."""
    takers: dict[str, tuple[Node, list[str]]] = {}  # node -> (node, roles it dumps for)
    for site in inv.sites:
        seen: set[str] = set()
        for node in site.nodes:
            for role in node.roles:
                spec = ROLES.get(role)
                if spec is None or spec.data_plane or spec.service in seen:
                    continue
                seen.add(spec.service)
                takers.setdefault(node.name, (node, []))[1].append(role)
    out: list[Finding] = []
    for node, roles in takers.values():
        out += await _check_node(executor, inv, node, roles)
    return out


async def _check_node(
    executor: Executor, inv: Inventory, node: Node, roles: list[str]
) -> list[Finding]:
    databases: list[str] = []
    out: list[Finding] = []
    for role in roles:
        try:
            probe = render_action(inv, node, role, "backup-credentials")
        except RecipeError:
            return []  # the method backs up its own way (kolla)
        if probe is None:
            continue
        try:
            result, lines = await run_probe(executor, node, probe[0], 60, local=probe[1])
        except TransportError:
            return []  # reported as unreachable
        service = ROLES[role].service
        if result.exit_status != 0:
            said = " ".join(lines)[-160:] or "no output"
            out.append(
                Finding(
                    node.name,
                    f"{service} backup",
                    False,
                    f"mysqldump --no-data failed: the backup would fail in the window ({said}); "
                    "check db_host and the credentials mysqldump reads (~/.my.cnf)",
                )
            )
            continue
        out.append(Finding(node.name, f"{service} backup", True, "credentials work"))
        databases += load_recipe(inv.method).databases.get(service, [service])
    if not databases:
        return out
    out.append(await _room(executor, inv, node, roles[0], set(databases)))
    return out


async def _room(
    executor: Executor, inv: Inventory, node: Node, role: str, databases: set[str]
) -> Finding:
    check = "backup room"
    probe = render_action(inv, node, role, "database-sizes")
    if probe is None:
        return Finding(node.name, check, False, "not checked: no database-sizes action",
                       blocking=False)  # fmt: skip
    result, lines = await run_probe(executor, node, probe[0], 60, local=probe[1])
    sizes = dict(line.split("\t", 1) for line in lines if line.count("\t") == 1)
    if result.exit_status != 0 or not sizes:
        return Finding(node.name, check, False, "not checked: the database's sizes could not "
                       "be read", blocking=False)  # fmt: skip
    needed = int(sum(int(sizes.get(d, "0") or 0) for d in databases) * MARGIN)
    where = PurePosixPath(backup_dir(inv, node.site))
    for place in (where, *where.parents):
        result, lines = await run_probe(executor, node, f"df -P -B1 {shlex.quote(str(place))}", 30)
        fields = lines[-1].split() if lines else []
        if result.exit_status == 0 and len(fields) >= 4 and fields[3].isdigit():
            free = int(fields[3])
            text = f"{_size(needed)} needed in {where} ({_size(free)} free on {place}'s disk)"
            if free < needed:
                return Finding(node.name, check, False, f"too little room: {text}; free "
                               "space there or set backup_dir elsewhere")  # fmt: skip
            return Finding(node.name, check, True, text)
    return Finding(node.name, check, False, f"not checked: df of {where} said nothing",
                   blocking=False)  # fmt: skip


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:g} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count:.1f} TiB"
