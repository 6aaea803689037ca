"""The kolla method's own pre-flight checks, read-only: on each deploy host, the kolla-ansible
the plan will use, the inventory kolla uses against Rollgate's, and whether mariadb-backup
can back anything up; on every other host, whether the target's images are pulled."""

from __future__ import annotations

import re

import yaml

from rollgate.core.executor import Executor
from rollgate.core.inventory import Inventory, Node
from rollgate.core.methods.kolla.ansible_inventory import parse_ini
from rollgate.core.methods.kolla.mapping import enabled_services, listed_services
from rollgate.core.methods.kolla.plan import DEPLOY, plan_values
from rollgate.core.plan import PlanContext
from rollgate.core.preflight import Finding, run_probe
from rollgate.core.recipes import load_recipe


def _variables(inv: Inventory, node: Node) -> dict[str, str]:
    ctx = PlanContext(inv, load_recipe(inv.method))
    recipe = ctx.recipe_for(inv.site(node.site))
    return {k: str(v) for k, v in recipe.variables.items()}


async def check_node(executor: Executor, inv: Inventory, node: Node) -> list[Finding]:
    variables = _variables(inv, node)
    if node.has(DEPLOY):
        return await _deploy_host(executor, inv, node, variables)
    engine = variables.get("container_engine", "docker")
    target = inv.upgrade.target.id
    result, lines = await run_probe(
        executor, node, f"{engine} images --format '{{{{.Repository}}}}:{{{{.Tag}}}}'", 30
    )
    if result.exit_status != 0:
        return [Finding(node.name, "images", False, f"`{engine} images` failed", blocking=False)]
    pulled = [line for line in lines if re.search(rf":{re.escape(target)}(-\S+)?$", line)]
    if pulled:
        return [Finding(node.name, "images", True, f"{len(pulled)} {target} images pulled")]
    return [
        Finding(
            node.name,
            "images",
            False,
            f"no {target} image pulled yet: the plan's preparation runs `kolla-ansible pull` "
            "(before the window, so the upgrade does not wait for downloads)",
            blocking=False,
        )
    ]


async def _deploy_host(
    executor: Executor, inv: Inventory, node: Node, variables: dict[str, str]
) -> list[Finding]:
    """The deploy host's findings, each shown ok or not: they say what the run will use."""
    found = await _deploy_host_findings(executor, inv, node, variables)
    for finding in found:
        finding.notable = True
    return found


async def _deploy_host_findings(
    executor: Executor, inv: Inventory, node: Node, variables: dict[str, str]
) -> list[Finding]:
    out: list[Finding] = []
    values = plan_values(inv, variables)
    config = variables.get("kolla_config_dir", "/etc/kolla")
    major = values["kolla_major"]
    venv = values["kolla_venv"]
    result, lines = await run_probe(executor, node, f"{venv}/bin/kolla-ansible --version", 30)
    printed = lines[-1].strip() if lines else ""
    if result.exit_status == 0 and re.fullmatch(rf"kolla-ansible {major}\.\S+", printed):
        out.append(Finding(node.name, "kolla-ansible", True, f"{printed} in {venv}"))
    else:
        out.append(
            Finding(
                node.name,
                "kolla-ansible",
                True,
                f"{values['kolla_venv']} has no kolla-ansible {major}.x yet: the plan's "
                f"preparation installs it ({values['kolla_pip_spec']})",
            )
        )
    out.append(await _inventory_match(executor, inv, node, variables["kolla_inventory"]))
    result, lines = await run_probe(executor, node, f"cat {config}/globals.yml", 30)
    if result.exit_status != 0:
        out.append(Finding(node.name, "globals.yml", False, f"cannot read {config}/globals.yml"))
        return out
    out += _settings_match(node, "\n".join(lines), variables, config)
    on = any(
        re.fullmatch(r"enable_mariabackup:\s*[\"']?(yes|true)[\"']?\s*", line, re.IGNORECASE)
        for line in lines
    )
    if variables.get("db_backup", "yes") == "no":
        out.append(Finding(node.name, "database backup", True, "off (recipe.variables.db_backup)"))
    elif on:
        out.append(Finding(node.name, "database backup", True, "enable_mariabackup is on"))
    else:
        out.append(
            Finding(
                node.name,
                "database backup",
                False,
                "enable_mariabackup is off in globals.yml, so `kolla-ansible mariadb-backup` "
                'backs nothing up: set it to "yes" and run `kolla-ansible reconfigure -i '
                f"{variables['kolla_inventory']} -t mariadb`, or set recipe.variables.db_backup: "
                '"no" to upgrade without one',
            )
        )
    return out


async def _inventory_match(executor: Executor, inv: Inventory, node: Node, path: str) -> Finding:
    """The hosts of the kolla inventory against Rollgate's site: the same hosts, and kolla's
    compute group exactly Rollgate's nova-compute nodes (the batches limit on it)."""
    result, lines = await run_probe(executor, node, f"cat {path}", 30)
    if result.exit_status != 0:
        return Finding(node.name, "kolla inventory", False, f"cannot read {path}")
    groups = parse_ini("\n".join(lines))
    site = inv.site(node.site)
    # a host the site declares unmanaged (kolla's monitoring hosts) is Rollgate's to know of
    ours = {n.name for n in site.nodes if not n.has(DEPLOY)} | {d.host for d in site.unmanaged}
    theirs = groups["all"] - {n.name for n in site.nodes if n.has(DEPLOY)}
    computes = {n.name for n in site.with_role("nova-compute")}
    problems = []
    if theirs - ours:
        problems.append(f"{path} has {', '.join(sorted(theirs - ours)[:5])}, which Rollgate's "
                        f"site {site.name} does not")  # fmt: skip
    if ours - theirs:
        problems.append(f"Rollgate's site {site.name} has {', '.join(sorted(ours - theirs)[:5])}, "
                        f"which {path} does not")  # fmt: skip
    if groups.get("compute", set()) != computes:
        problems.append("kolla's compute group is not Rollgate's nova-compute nodes (batches "
                        "limit on it)")  # fmt: skip
    if problems:
        return Finding(
            node.name,
            "kolla inventory",
            False,
            "; ".join(problems) + ": give Rollgate the same hosts kolla-ansible uses",
        )
    return Finding(node.name, "kolla inventory", True, f"{path}: the same {len(ours)} hosts")


# globals.yml setting -> (the recipe variable the plan was built with, kolla's default)
SETTINGS = {
    "neutron_plugin_agent": ("neutron_plugin_agent", "openvswitch"),
    "kolla_container_engine": ("container_engine", "docker"),
    "enable_container_healthchecks": ("container_healthchecks", "yes"),
}


def _word(value: object) -> str:
    text = str(value).strip().strip("\"'").lower()
    return {"true": "yes", "false": "no"}.get(text, text)


def services_differ(settings: dict[str, object], listed: str) -> str:
    """Where the inventory's kolla_services and globals.yml's enabled projects differ ("" when
    they agree): the plan upgrades the listed ones, kolla runs the enabled ones."""
    enabled = enabled_services(settings)
    ours = listed_services(listed)
    if ours == enabled:
        return ""
    extra, missing = sorted(set(ours) - set(enabled)), sorted(set(enabled) - set(ours))
    said = []
    if missing:
        said.append(f"it enables {', '.join(missing)}, which the inventory does not list")
    if extra:
        said.append(f"it does not enable {', '.join(extra)}, which the inventory lists")
    return (
        f'{" and ".join(said)} (recipe.variables.kolla_services: "{",".join(enabled)}" '
        "makes the plan upgrade every enabled service)"
    )


def _settings_match(node: Node, text: str, variables: dict[str, str], config: str) -> list[Finding]:
    """The plan is built offline from the inventory: what kolla will really do comes from
    globals.yml. The switch each compute moves, the container engine the checks call and
    whether containers have healthchecks must be the same in both, else the plan's steps
    and checks do not fit the cloud."""
    try:
        found = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return [Finding(node.name, "kolla settings", False, f"{config}/globals.yml is not YAML")]
    if not isinstance(found, dict):
        found = {}
    wrong = []
    for key, (variable, default) in SETTINGS.items():
        theirs = _word(found.get(key, default))
        ours = _word(variables.get(variable, default))
        if theirs != ours:
            wrong.append(f"{key} is {theirs} there, the plan has {ours} (recipe.variables."
                         f"{variable}: {theirs} in the inventory)")  # fmt: skip
    if services := services_differ(found, variables.get("kolla_services", "")):
        wrong.append(services)
    if wrong:
        differ = f"{config}/globals.yml and the plan differ: " + "; ".join(wrong)
        return [Finding(node.name, "kolla settings", False, differ)]
    said = f"neutron_plugin_agent {_word(found.get('neutron_plugin_agent', 'openvswitch'))}, " + (
        f"{_word(found.get('kolla_container_engine', 'docker'))}"
    )
    if _word(found.get("enable_container_healthchecks", "yes")) == "no":
        said += "; no healthchecks: the container checks compare running state and image only"
    return [Finding(node.name, "kolla settings", True, f"as globals.yml: {said}")]
