"""Pre-flight checks behind `rollgate check`: reach every node and API, change nothing."""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from typing import Any

from rollgate.core.executor import BecomeFailed, CommandResult, Executor, TransportError
from rollgate.core.inventory import Inventory, Node
from rollgate.core.methods import method
from rollgate.core.plan import render_action, site_variables
from rollgate.core.recipes import RecipeError, load_recipe
from rollgate.core.releases import release_for_major
from rollgate.core.roles import ROLES
from rollgate.core.transports.remote_job import DEFAULT_JOB_ROOT, wrapper_command

STATUS_SERVICES = ("keystone", "glance", "placement", "nova", "neutron", "cinder")
# A probe's exit status for "cannot answer yet": what it runs is installed later (the
# virtualenv method's target status check, before the preparation built the virtualenv).
NOT_YET = 100


@dataclass
class Finding:
    target: str  # node or site
    check: str
    ok: bool
    detail: str
    blocking: bool = True
    notable: bool = False  # shown even when ok (what the plan will do about it)


async def run_probe(
    executor: Executor, node: Node, command: str, timeout: float, *, local: bool = False
) -> tuple[CommandResult, list[str]]:
    """Run a read-only command on the node: its result and every line it printed."""
    lines: list[str] = []
    result = await executor.run(
        node, command, on_output=lambda s, line: lines.append(line), timeout=timeout, local=local
    )
    return result, lines


def job_root(inv: Inventory) -> str:
    """Where steps' job directories live on the nodes (the recipe variable job_dir)."""
    variables = {
        **load_recipe(inv.method).variables,
        **(inv.spec.recipe.variables if inv.spec.recipe else {}),
    }
    return str(variables.get("job_dir") or DEFAULT_JOB_ROOT)


async def check_job_dir(executor: Executor, inv: Inventory, node: Node) -> Finding:
    """The node's job directory is the login's own and nobody else may write to it (or it is
    not there yet, and the first step makes it so)."""
    root = job_root(inv)
    try:
        result, lines = await run_probe(executor, node, wrapper_command("check", root), 30)
    except TransportError as exc:
        return Finding(node.name, "job directory", False, str(exc).split(": ", 1)[-1])
    said = lines[-1].strip() if lines else ""
    if result.exit_status == 0 and said in ("ok", "absent"):
        where = root.replace("%u", "<uid>")
        text = f"{where}: the login's own" if said == "ok" else f"{where}: made by the first step"
        return Finding(node.name, "job directory", True, text)
    return Finding(
        node.name, "job directory", False, said.removeprefix("rollgate-job: ") or "unusable"
    )


def _reached(executor: Executor, node: Node) -> tuple[str, bool]:
    """How the node was reached (login, jump hosts, key, ssh config), where the executor
    can say it, and whether that went beyond what the inventory names (then `check` shows
    it for every such node)."""
    ssh = getattr(executor, "ssh", None)
    how = getattr(ssh, "logins", {}).get(node.name)
    return (f" ({how})" if how else "", node.name in getattr(ssh, "beyond_inventory", ()))


async def check_node(executor: Executor, inv: Inventory, node: Node) -> list[Finding]:
    out: list[Finding] = []
    try:
        await run_probe(executor, node, "true", 30)
    except BecomeFailed as exc:  # reached, but nothing can run as root: said once
        return [
            Finding(node.name, "reachable", True, "ssh ok" + _reached(executor, node)[0]),
            Finding(node.name, "sudo", False, str(exc).split(": ", 1)[-1]),
        ]
    except TransportError as exc:
        return [Finding(node.name, "reachable", False, str(exc).split(": ", 1)[-1])]
    how, beyond = _reached(executor, node)
    out.append(
        Finding(
            node.name,
            "reachable",
            True,
            ("ssh ok, host key verified" if node.ssh.verify_host_keys else "ssh ok")
            + (", sudo ok" if node.ssh.become else "")
            + how,
            notable=beyond,
        )
    )
    out.append(await check_job_dir(executor, inv, node))
    unprobed = []
    mapping = method(inv.method)
    for role in node.roles:
        spec = ROLES.get(role)
        if spec is None:
            continue
        # what runs now, as the plan records it before anything moves (the check after an
        # install reads the new code instead: the virtualenv method's target virtualenv)
        try:
            probe = render_action(inv, node, role, "record-version")
        except RecipeError:
            probe = None
        if probe is None:
            probe = render_action(inv, node, role, "verify-version")
        if probe is None:
            unprobed.append(role)
            continue
        command, on_deploy_host = probe
        result, lines = await run_probe(executor, node, command, 30, local=on_deploy_host)
        version = lines[-1] if lines else ""
        major = re.match(r"^(?:\d+:)?(\d+)\.", version)
        release = release_for_major(spec.service, int(major.group(1))) if major else None
        if result.exit_status != 0:
            out.append(
                Finding(
                    node.name,
                    f"{mapping.package(role)} installed",
                    False,
                    f"not installed ({' '.join(lines)[:80]})",
                )
            )
        elif spec.service != "horizon" and release != inv.upgrade.source:
            out.append(
                Finding(
                    node.name,
                    f"{mapping.package(role)} version",
                    False,
                    f"{version} is {release.id if release else 'unknown'}, not "
                    f"{inv.upgrade.source.id} as the inventory says",
                )
            )
    out += await mapping.preflight(executor, inv, node)
    if unprobed:
        out.append(
            Finding(
                node.name,
                "versions",
                False,
                f"not checked for {', '.join(unprobed)}: the {inv.method} recipe has no "
                "verify-version action",
                blocking=False,
            )
        )
    return out


async def check_site_api(executor: Executor, inv: Inventory) -> list[Finding]:
    out = []
    for site in inv.sites:
        computes = site.with_role("nova-compute")
        if not computes:
            continue
        try:
            result = await executor.cloud(
                site,
                "list-computes",
                {"host": computes[0].name},
                on_output=lambda *a: None,
                timeout=60,
            )
        except TransportError as exc:
            out.append(Finding(site.name, "API", False, str(exc).split(": ", 1)[-1]))
            continue
        out.append(
            Finding(
                site.name,
                "API",
                result.exit_status == 0,
                "compute services listed" if result.exit_status == 0 else result.error or "failed",
            )
        )
    return out


async def check_status(executor: Executor, inv: Inventory) -> list[Finding]:
    out = []
    seen: set[tuple[str, str]] = set()
    for site in inv.sites:
        for node in site.nodes:
            for role in node.roles:
                spec = ROLES.get(role)
                if spec is None or spec.service not in STATUS_SERVICES or spec.data_plane:
                    continue
                key = (site.name, spec.service)
                if key in seen:
                    continue
                seen.add(key)
                # a method whose status check is installed later says how to ask it now
                try:
                    probe = render_action(inv, node, role, "preflight-status-check")
                except RecipeError:  # the others ask the plan's own check
                    probe = render_action(inv, node, role, "status-check")
                if probe is None:
                    continue  # the recipe does not check this service's status
                try:
                    result, lines = await run_probe(executor, node, probe[0], 120, local=probe[1])
                except TransportError:
                    continue  # already reported as unreachable
                status = result.exit_status
                if status == NOT_YET:
                    said = lines[-1] if lines else "its check is installed later"
                    out.append(Finding(f"{site.name}/{node.name}", f"{spec.service}-status",
                                       False, f"not checked: {said}", blocking=False))  # fmt: skip
                    continue
                detail = (
                    {0: "success", 1: "warning: an operator must acknowledge it"}.get(
                        status, f"failure (exit {status})"
                    )
                    if status is not None
                    else "timed out"
                )
                failing = [ln for ln in lines if "Failure" in ln or "Details" in ln]
                if status not in (0, None) and failing:
                    detail += ": " + " ".join(ln.strip("| ") for ln in failing[-2:])[:120]
                out.append(
                    Finding(
                        f"{site.name}/{node.name}",
                        f"{spec.service}-status",
                        status == 0,
                        detail,
                        blocking=status not in (0, 1),
                    )
                )
    return out


async def check_trigger_privilege(executor: Executor, inv: Inventory) -> list[Finding]:
    """Where the plan expands a schema with triggers (keystone; glance on its rolling path),
    the database must let the service's user create them: with binary logging on, MySQL asks
    for SUPER unless log_bin_trust_function_creators is on (keystone's upgrade guide: "either
    grant your keystone user SUPER privileges, or run set global
    log_bin_trust_function_creators=1"). Without it the expand fails inside the window."""
    out = []
    for site in inv.sites:
        roles = ["keystone"]
        if str(site_variables(inv, site.name).get("glance_rolling", "no")) == "yes":
            roles.append("glance-api")
        for role in roles:
            nodes = site.with_role(role)
            if not nodes:
                continue
            try:
                probe = render_action(inv, nodes[0], role, "binlog-settings")
            except RecipeError:
                continue  # the method has no such probe (kolla runs its own migrations)
            if probe is None:
                continue
            try:
                result, lines = await run_probe(executor, nodes[0], probe[0], 30, local=probe[1])
            except TransportError:
                continue  # already reported as unreachable
            said = (lines[-1] if lines else "").split()
            target = f"{site.name}/{nodes[0].name}"
            service = ROLES[role].service
            if result.exit_status != 0 or len(said) != 2:
                out.append(Finding(target, f"{service} triggers", False,
                                   "could not read the database's binary logging settings",
                                   blocking=False))  # fmt: skip
            elif said == ["1", "0"]:
                out.append(
                    Finding(
                        target,
                        f"{service} triggers",
                        False,
                        "binary logging is on and log_bin_trust_function_creators is off: the "
                        f"{service} expand creates triggers and fails (ERROR 1419) unless its "
                        "database user has SUPER; run SET GLOBAL "
                        "log_bin_trust_function_creators=1 before the window",
                    )
                )
            else:
                why = "binary logging off" if said[0] == "0" else "trusts function creators"
                out.append(Finding(target, f"{service} triggers", True, f"allowed ({why})"))
    return out


def _keep(lines: list[str], stream: str, line: str) -> None:
    lines.append(line)


async def check_scope(executor: Executor, inv: Inventory) -> list[Finding]:
    """Every service and agent each region's APIs list is on a node of the inventory with a
    role the plan upgrades, or declared under the site's `unmanaged:` (core/cloud_scope.py)."""
    from rollgate.core.cloud_scope import DECLARED
    from rollgate.core.plan_checks import SCOPED_ROLES, scope_args

    out = []
    marker = DECLARED.split("{", 1)[0]
    for site in inv.sites:
        if not any(r in SCOPED_ROLES for n in site.nodes for r in n.roles):
            continue  # as the plan: an identity or dashboard site lists nothing by host
        lines: list[str] = []
        try:
            result = await executor.cloud(
                site,
                "verify-scope",
                scope_args(site),
                on_output=functools.partial(_keep, lines),
                timeout=60,
            )
        except TransportError as exc:
            out.append(Finding(site.name, "scope", False, str(exc).split(": ", 1)[-1]))
            continue
        for line in lines:
            if marker in line:
                out.append(Finding(site.name, "unmanaged", True, line, notable=True))
        ok = result.exit_status == 0
        said = (lines[-1] if lines else "") if ok else (result.error or "failed")
        out.append(Finding(site.name, "scope", ok, said, notable=True))
    return out


async def preflight(executor: Executor, inv: Inventory) -> list[Finding]:
    per_node = await asyncio.gather(*(check_node(executor, inv, n) for n in inv.nodes))
    findings = [f for group in per_node for f in group]
    findings += await check_site_api(executor, inv)
    findings += await check_scope(executor, inv)
    findings += await check_status(executor, inv)
    findings += await check_trigger_privilege(executor, inv)
    from rollgate.core.backup_check import check_backups

    findings += await check_backups(executor, inv)
    return findings


def summary(findings: list[Finding]) -> dict[str, Any]:
    blocking = [f for f in findings if not f.ok and f.blocking]
    return {
        "checks": len(findings),
        "blocking": len(blocking),
        "warnings": sum(1 for f in findings if not f.ok and not f.blocking),
    }
