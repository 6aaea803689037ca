"""The virtualenv method's own pre-flight checks: what its preparation will find on a node.

The preparation builds the target's virtualenv beside the old one (`install-venv`): it needs
an interpreter that can make one, room on the disk, the release's upper-constraints, and a
target directory that is absent or was built with the same requirements (one built otherwise
is refused, never deleted). Each is asked here with the recipe's own probe, read-only.
"""

from __future__ import annotations

from rollgate.core.executor import Executor
from rollgate.core.inventory import Inventory, Node
from rollgate.core.methods.venv.mapping import DISTRIBUTIONS
from rollgate.core.plan import render_action
from rollgate.core.preflight import Finding, run_probe

# A controller's virtualenv (keystone, glance, placement, nova, neutron, cinder, 2026.1) took
# 780 MB in the acceptance cloud; pip needs room for its downloads besides.
NEEDED_KB = 1 << 20  # 1 GiB: less and the build cannot finish
COMFORTABLE_KB = 2 << 20  # 2 GiB: less is said, not refused


async def _probe(executor: Executor, inv: Inventory, node: Node, role: str, action: str) -> tuple[
    int | None, list[str]
]:
    rendered = render_action(inv, node, role, action)
    if rendered is None:  # an inventory's recipe override took the probe away
        return None, []
    result, lines = await run_probe(executor, node, rendered[0], 60)
    return result.exit_status, lines


async def check_node(executor: Executor, inv: Inventory, node: Node) -> list[Finding]:
    """The target virtualenv's state; if the preparation is to build it: the interpreter's
    venv module, free space and the constraints file."""
    roles = [r for r in node.roles if r in DISTRIBUTIONS]
    if not roles:
        return []
    role, target = roles[0], inv.upgrade.target.id
    check = f"{target} virtualenv"
    status, lines = await _probe(executor, inv, node, role, "check-venv-target")
    state = lines[-1].strip() if status == 0 and lines else ""
    if state == "ready":
        return [Finding(node.name, check, True, "built with the plan's requirements: kept",
                        notable=True)]  # fmt: skip
    if state == "other":
        return [
            Finding(
                node.name,
                check,
                False,
                "built with other requirements: the preparation refuses it and deletes "
                "nothing (services may run from it); remove it, or set another venv_root",
            )
        ]
    out = [
        Finding(
            node.name,
            check,
            bool(state),
            {"partial": "half built (no marker): the preparation builds it again",
             "absent": "the preparation installs it (before the window)"}.get(
                state, f"could not be read: {' '.join(lines)[-120:] or 'no answer'}"),
            blocking=False,
            notable=bool(state),
        )
    ]  # fmt: skip
    status, lines = await _probe(executor, inv, node, role, "check-venv-python")
    if status is not None:
        out.append(
            Finding(
                node.name,
                "venv module",
                status == 0,
                "the interpreter can make a virtualenv"
                if status == 0
                else "the interpreter cannot make a virtualenv (no venv or ensurepip: on "
                "Debian and Ubuntu, apt-get install python3-venv)",
            )
        )
    status, lines = await _probe(executor, inv, node, role, "check-venv-disk")
    fields = lines[-1].split() if status == 0 and lines else []
    if len(fields) >= 6 and fields[3].isdigit():
        free, where = int(fields[3]), fields[5]
        gib = f"{free / (1 << 20):.1f} GiB free on {where}"
        out.append(
            Finding(
                node.name,
                "disk for the virtualenv",
                free >= COMFORTABLE_KB,
                gib
                if free >= COMFORTABLE_KB
                else f"{gib}: a controller's virtualenv takes about 800 MB, and pip downloads "
                "besides",
                blocking=free < NEEDED_KB,
            )
        )
    status, lines = await _probe(executor, inv, node, role, "check-constraints")
    if status is not None and not (lines and lines[-1].strip() == "url"):
        out.append(
            Finding(
                node.name,
                f"{target} upper-constraints",
                status == 0,
                "readable"
                if status == 0
                else "not readable on the node: the preparation's pip install -c needs it; "
                "copy the release's upper-constraints.txt there, or set recipe.variables."
                "constraints",
            )
        )
    return out
