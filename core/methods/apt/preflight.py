"""The apt method's own pre-flight checks: packages the upgrade needs must not be held."""

from __future__ import annotations

from rollgate.core.executor import Executor
from rollgate.core.inventory import Inventory, Node
from rollgate.core.methods.apt.mapping import PACKAGES
from rollgate.core.plan import render_action, site_variables
from rollgate.core.preflight import Finding, run_probe
from rollgate.core.roles import ROLES


async def check_node(executor: Executor, inv: Inventory, node: Node) -> list[Finding]:
    return [
        *await _held(executor, inv, node),
        *await _rpc_pin(executor, inv, node),
        *await _archive_tools(executor, inv, node),
    ]


async def _archive_tools(executor: Executor, inv: Inventory, node: Node) -> list[Finding]:
    """The pocket switch runs `add-apt-repository` (software-properties-common); apt trusts
    the Cloud Archive with ubuntu-cloud-keyring's key. Read before the window, where the
    plan's own package-source step uses them."""
    role = next((r for r in node.roles if r in ROLES), None)
    probe = render_action(inv, node, role, "package-source") if role else None
    if probe is None or "add-apt-repository" not in probe[0]:
        return []
    out = []
    result, _ = await run_probe(executor, node, "test -e /usr/bin/add-apt-repository", 30)
    if result.exit_status != 0:
        out.append(Finding(node.name, "add-apt-repository", False, "not installed: the plan "
                           "switches the package source with it; apt-get install "
                           "software-properties-common"))  # fmt: skip
    keyring = "/usr/share/keyrings/ubuntu-cloud-keyring.gpg"
    result, _ = await run_probe(executor, node, f"test -e {keyring}", 30)
    if result.exit_status != 0:
        out.append(Finding(node.name, "cloud archive keyring", False, f"{keyring} is not there: "
                           "apt will not trust the Cloud Archive without its key; apt-get "
                           "install ubuntu-cloud-keyring before the window",
                           blocking=False))  # fmt: skip
    return out


async def _rpc_pin(executor: Executor, inv: Inventory, node: Node) -> list[Finding]:
    """A nova node's [upgrade_levels] compute, read as the plan reads it, before the window:
    with rpc_pin "check" the compute phase stops at a node without compute=auto (after
    keystone and glance moved); with "set" the plan writes it with crudini, which must be
    there."""
    role = next((r for r in node.roles if r in ROLES and ROLES[r].service == "nova"), None)
    if role is None:
        return []
    probe = render_action(inv, node, role, "rpc-pin")
    if probe is None:
        return []
    result, lines = await run_probe(executor, node, probe[0], 30, local=probe[1])
    said = " ".join(lines).strip()
    if result.exit_status == 127 or "crudini: not found" in said or "command not found" in said:
        return [Finding(node.name, "crudini", False, "crudini is not installed: the plan reads "
                        "and sets nova's RPC pin with it; apt-get install crudini")]  # fmt: skip
    value = lines[-1].strip() if result.exit_status == 0 and lines else ""
    mode = str(site_variables(inv, node.site).get("rpc_pin", "check"))
    if value == "auto":
        return [Finding(node.name, "nova RPC pin", True, "[upgrade_levels] compute = auto")]
    if mode == "set":
        return [Finding(node.name, "nova RPC pin", True, f"{value or 'not set'}: the plan sets "
                        "compute = auto before nova restarts", notable=True)]  # fmt: skip
    return [
        Finding(
            node.name,
            "nova RPC pin",
            False,
            f"[upgrade_levels] compute is {value or 'not set'}, not auto: the compute phase "
            "would stop at its check inside the window (after keystone and glance moved); set "
            "compute = auto in /etc/nova/nova.conf, or recipe.variables.rpc_pin: set",
        )
    ]


async def _held(executor: Executor, inv: Inventory, node: Node) -> list[Finding]:
    """`apt-mark showhold` on the node; a held package the upgrade installs fails the check
    (apt-get -y stops: "Held packages were changed and -y was used without
    --allow-change-held-packages")."""
    needed = {PACKAGES.get(r, r) for r in node.roles if r in ROLES}
    result, lines = await run_probe(executor, node, "apt-mark showhold", 30)
    if result.exit_status != 0:
        return [
            Finding(node.name, "held packages", False, "apt-mark showhold failed", blocking=False)
        ]
    held = sorted(needed & {line.strip() for line in lines})
    if not held:
        return [Finding(node.name, "held packages", True, "none the upgrade needs")]
    return [
        Finding(
            node.name,
            "held packages",
            False,
            f"{', '.join(held)} held (apt-mark hold): the upgrade cannot install them; "
            f"apt-mark unhold {' '.join(held)}, or take the node out of the inventory",
        )
    ]
