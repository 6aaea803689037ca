"""The lab's kolla: a deploy host with kolla-ansible (its CLI shape since 19, its playbooks'
rules) and a container engine on every host, over the same world as the apt lab.

What kolla-ansible enforces or does, modelled from its source and docs (docs/kolla-method.md):
- `kolla-ansible <action> <arguments>`: the pre-19 `kolla-ansible -i INV upgrade` is not a
  command; `mariadb_backup` became `mariadb-backup`.
- a kolla-ansible deploys its own release; with globals.yml pinning another it fails, and
  with the old one installed an "upgrade" redeploys the old release and exits 0;
- its plays need `install-deps` (the Ansible collections of that kolla-ansible) and every
  password of its release in passwords.yml (`kolla-genpwd`, `kolla-mergepwd`);
- `mariadb-backup` with enable_mariabackup off matches no host and exits 0, backing nothing up.
And the lab's rules, which fail a rehearsal where production would go wrong quietly:
- a control-plane service's run whose --limit leaves some of its hosts out (kolla's docs
  advise against --limit: its run-once schema steps and reloads then see part of the service);
- nova moving on a compute without that compute's network (openvswitch or ovn-controller)
  and neutron in the same run (site.yml applies all three to computes);
- nova's online data migrations while a compute still runs the older nova (kolla nova.yml:
  "once all hosts in the cell have been upgraded").
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Iterable
from typing import Any

import yaml

from rollgate.core.lab import APT, LabNode, Shell, World, dispatch, systemctl
from rollgate.core.lab import LabHandler as Handler
from rollgate.core.methods.kolla.ansible_inventory import match_hosts, parse_ini
from rollgate.core.methods.kolla.mapping import (
    CONTAINER_TAGS,
    EXTRA_CONTAINERS,
    INFRA_TAGS,
    NETWORK_TAG,
    ON_BY_DEFAULT,
    OVN_DB_CONTAINERS,
    SITE_ORDER,
    enabled_services,
    host_containers,
)
from rollgate.core.releases import CATALOGUE, Release, kolla_ansible_major
from rollgate.core.roles import AGENT_ORDER, ROLES

CONFIG = "/etc/kolla"
VENV_ROOT = "/opt/kolla-ansible"
COLLECTION = "/root/.ansible/collections/ansible_collections/openstack/kolla/MANIFEST.json"
PULLED = "/var/lib/kolla-lab/pulled"  # on each host: the releases whose images it holds
BACKUPS = "/var/lib/docker/volumes/mariadb_backup/_data"
BASE_PASSWORDS = ("database_password", "rabbitmq_password", "keystone_admin_password",
                  "nova_database_password", "neutron_database_password")  # fmt: skip
# the projects outside Rollgate's roles a lab cloud runs (on its control hosts)
LAB_EXTRAS = ("heat", "octavia")
CONTROL_ROLES = frozenset(
    {"keystone", "glance-api", "placement-api", "nova-conductor", "nova-scheduler", "nova-api",
     "neutron-server", "cinder-scheduler", "cinder-api", "horizon"}
)  # fmt: skip
ACTIONS = ("install-deps", "pull", "prechecks", "mariadb-backup", "upgrade")
KNOWN_ACTIONS = (*ACTIONS, "deploy", "reconfigure", "stop", "destroy", "bootstrap-servers",
                 "post-deploy", "gather-facts", "genconfig", "mariadb-recovery",
                 "validate-config", "prune-images", "certificates")  # fmt: skip


def kolla_version(release: Release) -> str:
    return f"{kolla_ansible_major(release)}.1.0"


def release_of(version: str) -> Release | None:
    major = int(version.split(".")[0])
    index = major - kolla_ansible_major(CATALOGUE[0])
    return CATALOGUE[index] if 0 <= index < len(CATALOGUE) else None


def password_keys(release: Release) -> list[str]:
    """The passwords a release's kolla-ansible needs: each release adds its own."""
    return [*BASE_PASSWORDS, *(f"{r.name}_lab_password" for r in CATALOGUE[: release.index + 1])]


# ---------------------------------------------------------------- the hosts before any run


def seed(world: World) -> None:
    """Each deploy host as the previous upgrade left it: the source's kolla-ansible in its
    virtualenv with its collections, /etc/kolla with globals pinning the source release, its
    merged passwords and the site's inventory."""
    source = world.source
    # globals.yml enables the projects the world runs, and octavia, which no role models (and
    # heat, kolla's default): their containers are on the control hosts
    projects = {ROLES[r].service for n in world.nodes.values() for r in n.roles if r in ROLES}
    enables = "".join(f'enable_{p}: "yes"\n' for p in sorted(projects & {"cinder"}))
    enables += "".join(f'enable_{p}: "yes"\n' for p in LAB_EXTRAS if p not in ON_BY_DEFAULT)
    for node in world.nodes.values():
        if "deployment" not in node.roles:
            continue
        venv = f"{VENV_ROOT}/{source.id}"
        node.files[f"{venv}/bin/python3"] = ""
        node.files[f"{venv}/bin/pip"] = ""
        _install_kolla(node, venv, kolla_version(source))
        node.files[COLLECTION] = str(kolla_ansible_major(source))
        node.files[f"{CONFIG}/globals.yml"] = (
            "---\n"
            'kolla_base_distro: "ubuntu"\n'
            f'openstack_release: "{source.id}"\n'
            f'kolla_internal_vip_address: "{node.address}"\n'
            'neutron_plugin_agent: "openvswitch"\n'
            'enable_mariabackup: "yes"\n' + enables
        )
        node.files[f"{CONFIG}/passwords.yml"] = "".join(
            f"{key}: {world.rng.getrandbits(64):016x}\n" for key in password_keys(source)
        )
        node.files[f"{CONFIG}/multinode"] = inventory_ini(world, node.site)


def inventory_ini(world: World, site: str) -> str:
    """The site's kolla inventory, as kolla's multinode sample groups hosts."""
    groups: dict[str, list[LabNode]] = {
        "control": [], "network": [], "compute": [], "storage": [], "deployment": []
    }  # fmt: skip
    for node in world.nodes.values():
        if node.site != site:
            continue
        roles = set(node.roles)
        if "deployment" in roles:
            groups["deployment"].append(node)
        if "nova-compute" in roles:
            groups["compute"].append(node)
        elif roles & CONTROL_ROLES:
            groups["control"].append(node)
        elif roles & set(AGENT_ORDER):
            groups["network"].append(node)
        if roles & {"cinder-volume", "cinder-backup"}:
            groups["storage"].append(node)
    lines = []
    for name, members in groups.items():
        lines.append(f"[{name}]")
        lines += [f"{n.name} ansible_host={n.address}" for n in members]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- virtualenv, pip, passwords


def _install_kolla(node: LabNode, venv: str, version: str) -> None:
    release = release_of(version)
    assert release is not None
    for program in ("kolla-ansible", "kolla-genpwd", "kolla-mergepwd"):
        node.files[f"{venv}/bin/{program}"] = version
    node.files[f"{venv}/share/kolla-ansible/etc_examples/kolla/passwords.yml"] = "".join(
        f"{key}:\n" for key in password_keys(release)
    )


def _program(sh: Shell, argv: list[str], fallback: str) -> str | None:
    """The file of the program argv[0] names (a path, or `fallback` for a bare name)."""
    path = argv[0] if "/" in argv[0] else fallback
    if path not in sh.node.files:
        sh.err(f"sh: 1: {argv[0]}: not found")
        return None
    return path


async def _python3(sh: Shell, argv: list[str]) -> int:
    if argv[1:3] != ["-m", "venv"] or len(argv) != 4:
        sh.err("python3: the lab knows python3 -m venv DIR")
        return 2
    await sh.pause("quick")
    for program in ("python3", "pip"):
        sh.node.files.setdefault(f"{argv[3]}/bin/{program}", "")
    return 0


async def _pip(sh: Shell, argv: list[str]) -> int:
    """`VENV/bin/pip install [--upgrade] kolla-ansible<SPEC>`: the newest matching release."""
    if _program(sh, argv, "/usr/bin/pip") is None:
        return 127
    venv = argv[0].rsplit("/bin/", 1)[0]
    specs = [a for a in argv[2:] if not a.startswith("-")]
    if argv[1:2] != ["install"] or not specs:
        sh.err("pip: the lab knows pip install [--upgrade] SPEC")
        return 2
    await sh.pause("apt-install")
    for spec in specs:
        name = re.match(r"[A-Za-z0-9_.-]+", spec)
        if name is None or name.group(0).lower().replace("_", "-") != "kolla-ansible":
            sh.err(f"ERROR: Could not find a version that satisfies the requirement {spec}")
            return 1
        constraints = re.findall(r"(>=|<=|==|!=|<|>)\s*([0-9.]+)", spec)
        found = [v for v in (kolla_version(r) for r in CATALOGUE) if _satisfies(v, constraints)]
        if not found:
            sh.err(f"ERROR: No matching distribution found for {spec}")
            return 1
        version = max(found, key=_version_key)
        _install_kolla(sh.node, venv, version)
        sh.say(f"Successfully installed kolla-ansible-{version}")
    return 0


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _satisfies(version: str, constraints: Iterable[tuple[str, str]]) -> bool:
    have = _version_key(version)
    tests = {
        ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    }  # fmt: skip
    for op, bound in constraints:
        want = _version_key(bound)
        if not tests[op](have[: len(want)] if op in ("==", "!=") else have, want):
            return False
    return True


def _passwords(text: str | None) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text or "") or {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _write_passwords(node: LabNode, path: str, data: dict[str, Any]) -> None:
    node.files[path] = "".join(f"{k}: {'' if v is None else v}\n" for k, v in data.items())


async def _genpwd(sh: Shell, argv: list[str]) -> int:
    """`kolla-genpwd -p FILE`: every empty password filled."""
    if _program(sh, argv, "/usr/local/bin/kolla-genpwd") is None:
        return 127
    path = argv[argv.index("-p") + 1] if "-p" in argv[:-1] else f"{CONFIG}/passwords.yml"
    if path not in sh.node.files:
        sh.err(f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'")
        return 1
    data = _passwords(sh.node.files[path])
    for key, value in data.items():
        if value in (None, ""):
            data[key] = f"{sh.world.rng.getrandbits(64):016x}"
    _write_passwords(sh.node, path, data)
    return 0


async def _mergepwd(sh: Shell, argv: list[str]) -> int:
    """`kolla-mergepwd --old OLD --new NEW --final FINAL [--clean]`: the new release's keys
    with the old values kept; the old keys kept too unless --clean."""
    if _program(sh, argv, "/usr/local/bin/kolla-mergepwd") is None:
        return 127
    given = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--old", "--new", "--final")}
    if set(given) != {"--old", "--new", "--final"}:
        sh.err("usage: kolla-mergepwd [-h] [--old OLD] [--new NEW] [--final FINAL] [--clean]")
        return 2
    for key in ("--old", "--new"):
        if given[key] not in sh.node.files:
            sh.err(f"FileNotFoundError: [Errno 2] No such file or directory: '{given[key]}'")
            return 1
    old, new = _passwords(sh.node.files[given["--old"]]), _passwords(sh.node.files[given["--new"]])
    final = {} if "--clean" in argv else dict(old)
    for key, value in new.items():
        final[key] = old.get(key, value)
    _write_passwords(sh.node, given["--final"], final)
    return 0


# ---------------------------------------------------------------- kolla-ansible


class _Lines:
    """An output sink that keeps what a command printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, stream: str, line: str) -> None:
        self.lines.append(line)


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _Usage(message)


def _parser(action: str) -> _Parser:
    """kolla-ansible's per-command options (kolla_ansible/ansible.py add_ansible_args)."""
    p = _Parser(prog=f"kolla-ansible {action}", add_help=False)
    p.add_argument("-i", "--inventory", action="append")
    p.add_argument("-t", "--tags")
    p.add_argument("-l", "--limit")
    p.add_argument("--skip-tags")
    p.add_argument("-e", "--extra-vars", action="append")
    p.add_argument("--configdir", default=CONFIG)
    p.add_argument("--passwords")
    for flag in ("-b", "--become", "-C", "--check", "-D", "--diff", "-v", "--verbose"):
        p.add_argument(flag, action="store_true")
    if action == "mariadb-backup":
        p.add_argument("--full", action="store_true")
        p.add_argument("--incremental", action="store_true")
    return p


async def _kolla_ansible(sh: Shell, argv: list[str]) -> int:
    path = _program(sh, argv, "/usr/local/bin/kolla-ansible")
    if path is None:
        return 127
    version = sh.node.files[path]
    if argv[1:] in (["--version"], ["-v", "--version"]):
        sh.say(f"kolla-ansible {version}")
        return 0
    if len(argv) < 2 or argv[1] not in KNOWN_ACTIONS:
        words = " ".join(argv[1:]) or "(nothing)"
        sh.err(f"kolla-ansible: '{words}' is not a kolla-ansible command. See 'kolla-ansible "
               "--help'.")  # fmt: skip
        return 2
    action = argv[1]
    try:
        args = _parser(action).parse_args(argv[2:])
    except _Usage as exc:
        sh.err(f"usage: kolla-ansible {action} [-h] [-i INVENTORY] [-t TAGS] [-l SUBSET] ...")
        sh.err(f"kolla-ansible {action}: error: {exc}")
        return 2
    if action not in ACTIONS:
        sh.err(f"kolla-ansible {action}: the lab's kolla-ansible models {', '.join(ACTIONS)}")
        return 2
    run = _Run(sh, args, version)
    if action == "install-deps":
        await sh.pause("check")
        sh.say("Installing Ansible Galaxy dependencies")
        sh.node.files[COLLECTION] = version.split(".")[0]
        return 0
    status = run.setup()
    if status:
        return status
    await sh.pause("check")
    if action == "pull":
        return await run.pull()
    if action == "prechecks":
        return run.recap(run.scope, "ok")
    if action == "mariadb-backup":
        return await run.backup()
    return await run.upgrade()


class _Run:
    """One kolla-ansible playbook run on a deploy host."""

    def __init__(self, sh: Shell, args: argparse.Namespace, version: str):
        self.sh, self.args, self.version = sh, args, version
        self.world = sh.world
        self.release = release_of(version) or sh.world.source
        self.groups: dict[str, set[str]] = {}
        self.scope: set[str] = set()
        self.globals: dict[str, Any] = {}

    def fail(self, message: str, status: int = 2) -> int:
        self.sh.err(message)
        return status

    def setup(self) -> int:
        """What every play of kolla-ansible needs, checked as its run would find it."""
        files, args = self.sh.node.files, self.args
        inventory = (args.inventory or [f"{args.configdir}/ansible/inventory/all-in-one"])[-1]
        if inventory not in files:
            return self.fail(f"Kolla inventory {inventory} is invalid: Path does not exist", 1)
        self.globals = _passwords(files.get(f"{args.configdir}/globals.yml"))
        major = self.version.split(".")[0]
        if files.get(COLLECTION) != major:
            return self.fail(
                "ERROR! couldn't resolve module/action 'kolla_container'. This often "
                "indicates a misspelling, missing collection, or incorrect module path. "
                f"(lab: the Ansible collections of kolla-ansible {major} are not installed; "
                "run kolla-ansible install-deps)",
                1,
            )
        wanted = str(self.globals.get("openstack_release") or self.release.id)
        if wanted != self.release.id:
            return self.fail(
                f"kolla-ansible {self.version} deploys {self.release.id}, but globals.yml sets "
                f"openstack_release {wanted}: install the kolla-ansible of {wanted} first "
                "(kolla's upgrade procedure)"
            )
        passwords = _passwords(files.get(args.passwords or f"{args.configdir}/passwords.yml"))
        missing = [k for k in password_keys(self.release) if not passwords.get(k)]
        if missing:
            return self.fail(
                f'fatal: [localhost]: FAILED! => {{"msg": "\'{missing[0]}\' is undefined"}} '
                "(lab: passwords.yml lacks the new release's passwords; kolla-genpwd a new "
                "passwords.yml and kolla-mergepwd the old one into it)"
            )
        self.groups = parse_ini(files[inventory])
        if args.limit:
            self.scope, unmatched = match_hosts(args.limit, self.groups)
            for part in unmatched:
                self.sh.say(f"[WARNING]: Could not match supplied host pattern, ignoring: {part}")
            if not self.scope:
                return self.fail("ERROR! Specified inputs do not match any hosts", 1)
        else:
            self.scope = set(self.groups["all"])
        unknown = sorted(h for h in self.scope if h not in self.world.nodes)
        if unknown:
            self.sh.say(f"fatal: [{unknown[0]}]: UNREACHABLE! => {{\"msg\": \"Failed to connect "
                        "to the host via ssh\"}}")  # fmt: skip
            return self.recap(self.scope, "unreachable", 4)
        return 0

    def recap(self, hosts: Iterable[str], word: str, status: int = 0) -> int:
        self.sh.say("PLAY RECAP " + "*" * 60)
        for host in sorted(hosts):
            failed = 1 if status else 0
            self.sh.say(f"{host:<24}: ok=12   changed=0    unreachable={int(word == 'unreachable')}"
                        f"    failed={failed}")  # fmt: skip
        return status

    # -------------------------------------------------------------- actions

    async def pull(self) -> int:
        for host in sorted(self.scope):
            node = self.world.nodes[host]
            pulled = set(node.files.get(PULLED, "").split())
            node.files[PULLED] = " ".join(sorted(pulled | {self.release.id}))
            self.world.save(node)
        return self.recap(self.scope, "ok")

    async def backup(self) -> int:
        enabled = str(self.globals.get("enable_mariabackup", "no")).lower() in ("yes", "true")
        databases = sorted(
            h for h in self.scope if "database" in self.world.nodes[h].roles
        ) or sorted(h for h in self.scope if "deployment" in self.world.nodes[h].roles)
        self.sh.say("PLAY [Backup MariaDB] " + "*" * 50)
        if not enabled:  # kolla's play targets "&enable_mariabackup_True": no host at all
            self.sh.say("skipping: no hosts matched")
            return self.recap([], "ok")
        await self.sh.pause("backup")
        host = self.world.nodes[databases[0]]
        stamp = f"{len([p for p in host.files if p.startswith(BACKUPS)]) + 1:04d}"
        host.files[f"{BACKUPS}/mysqlbackup-{stamp}.qp.xbc.xbs.gz"] = "full"
        self.world.save(host)
        self.sh.say(f"changed: [{host.name}]")
        return self.recap([host.name], "ok")

    def _selected(self, tags: set[str]) -> bool:
        wanted = set(self.args.tags.split(",")) if self.args.tags else None
        skipped = set(self.args.skip_tags.split(",")) if self.args.skip_tags else set()
        return (wanted is None or bool(tags & wanted)) and not (tags & skipped)

    def _site_nodes(self) -> list[LabNode]:
        return [self.world.nodes[h] for h in sorted(self.groups["all"]) if h in self.world.nodes]

    def _with(self, roles: Iterable[str], *, computes: bool | None = None) -> list[LabNode]:
        wanted = set(roles)
        out = [n for n in self._site_nodes() if wanted & set(n.roles)]
        if computes is not None:
            out = [n for n in out if ("nova-compute" in n.roles) == computes]
        return out

    def _plays(self) -> list[tuple[str, set[str], list[LabNode], list[str]]]:
        """(name, tags, hosts, roles) of site.yml's plays, in its order, before the limit."""
        svc = {s: [r for r in ROLES if ROLES[r].service == s] for s in
               ("keystone", "glance", "cinder", "placement", "neutron", "horizon")}  # fmt: skip
        nova_ctl = ["nova-api", "nova-scheduler", "nova-conductor"]
        agents = list(AGENT_ORDER)
        plays: list[tuple[str, set[str], list[LabNode], list[str]]] = [
            (tag, {tag}, self._site_nodes(), []) for tag in INFRA_TAGS
        ]
        for service in ("keystone", "glance", "cinder", "placement"):
            plays.append((service, {service}, self._with(svc[service]), svc[service]))
        plays.append(("openvswitch", {"openvswitch"}, self._with(agents), []))
        plays.append(("ovn-controller", {"ovn", "ovn-controller"}, self._with(agents), []))
        plays += [
            ("nova-bootstrap", {"nova", "nova-bootstrap", "nova-api", "nova-cell"},
             self._with(["nova-api", "nova-conductor"]), []),
            ("nova-api", {"nova", "nova-api", "nova-api-upgrade"},
             self._with(["nova-api", "nova-scheduler"]), ["nova-api", "nova-scheduler"]),
            ("nova-cell", {"nova", "nova-cell", "nova-cell-upgrade"},
             self._with(["nova-conductor", "nova-compute"]), ["nova-conductor", "nova-compute"]),
            ("nova-reload", {"nova", "nova-reload", "nova-api", "nova-cell"},
             self._with([*nova_ctl, "nova-compute"]), [*nova_ctl, "nova-compute"]),
            ("nova-online-data-migrations",
             {"nova", "nova-api", "nova-cell", "nova-online-data-migrations"},
             self._with(["nova-api", "nova-conductor"]), []),
            ("neutron", {"neutron"}, self._with(svc["neutron"]), svc["neutron"]),
            ("horizon", {"horizon"}, self._with(svc["horizon"]), svc["horizon"]),
        ]  # fmt: skip
        ovn = next(i for i, p in enumerate(plays) if p[0] == "ovn-controller")
        plays.insert(ovn + 1, ("ovn-db", {"ovn", "ovn-db"}, self._with(["ovsdb"]), []))
        enabled = enabled_services(self.globals)
        plays += [(p, {p}, self._with(CONTROL_ROLES), []) for p in SITE_ORDER
                  if p in enabled and p in EXTRA_CONTAINERS]  # fmt: skip
        return plays

    def _switch(self) -> str:
        return NETWORK_TAG.get(str(self.globals.get("neutron_plugin_agent", "openvswitch")),
                               "openvswitch")  # fmt: skip

    def _rules(self, plays: list[tuple[str, set[str], list[LabNode], list[str]]]) -> str:
        """The lab's rules on the shape of this run ("" when it may go on)."""
        ran = {name: [n for n in hosts if n.name in self.scope]
               for name, tags, hosts, _ in plays if self._selected(tags)}  # fmt: skip
        for name, _tags, hosts, _ in plays:
            if name not in ran or name in INFRA_TAGS:
                continue
            control = [n for n in hosts if "nova-compute" not in n.roles]
            inside = [n.name for n in control if n.name in self.scope]
            left = [n.name for n in control if n.name not in self.scope]
            if inside and left:
                return (
                    f"lab rule (kolla-ansible docs: --limit is not recommended; {name}'s "
                    "schema steps and reloads run once per invocation, for the hosts it sees): "
                    f"--limit {self.args.limit} runs {name} on {', '.join(inside)} but not on "
                    f"{', '.join(left)}; run the control plane with no host limit"
                )
        switch = self._switch()
        for node in ran.get("nova-cell", []):
            if "nova-compute" not in node.roles:
                continue
            missing = [
                tag
                for tag in (switch, "neutron")
                if node not in ran.get(tag, []) and not self._moved(node, tag)
            ]
            if missing:
                return (
                    "lab rule (kolla's site.yml applies the network, nova and neutron plays to "
                    f"computes; neutron's agents follow its servers): nova moves on "
                    f"{node.name} without {' and '.join(missing)}; run computes with --tags "
                    f"{switch},nova,neutron"
                )
        return ""

    def _moved(self, node: LabNode, tag: str) -> bool:
        """Whether the node's containers of `tag` already run this release."""
        if tag == "neutron":
            return all(
                node.packages[APT.package(r)] == self.release
                for r in node.roles if r in ROLES and ROLES[r].service == "neutron"
            )  # fmt: skip
        return node.kolla.get(tag) == self.release.id

    async def upgrade(self) -> int:
        plays = self._plays()
        broken = self._rules(plays)
        if broken:
            return self.fail(broken)
        touched: set[str] = set()
        for name, tags, hosts, roles in plays:
            if not self._selected(tags):
                continue
            here = [n for n in hosts if n.name in self.scope]
            if not here:
                continue
            self.sh.say(f"PLAY [Apply role {name}] " + "*" * 40)
            touched |= {n.name for n in here}
            failed = await self._play(name, here, roles)
            if failed:
                self.sh.say(f'fatal: [{failed[0]}]: FAILED! => {{"msg": "{failed[1]}"}}')
                return self.recap(touched, "failed", 2)
        return self.recap(touched, "ok")

    async def _play(
        self, name: str, hosts: list[LabNode], roles: list[str]
    ) -> tuple[str, str] | None:
        """Run one play on `hosts`; (host, message) when it fails."""
        world, release = self.world, self.release
        await self.sh.pause("restart", 0.5)
        if name in (*INFRA_TAGS, "openvswitch", "ovn-controller", "ovn-db", *EXTRA_CONTAINERS):
            for node in hosts:
                node.kolla[name] = release.id
                world.save(node)
            return None
        if name == "nova-bootstrap":
            db = world.database(hosts[0], "nova")
            if db.schema.index < release.index:
                db.schema, db.expanded, db.online_pending = release, None, 3
            return None
        if name == "nova-online-data-migrations":
            old = [
                n.name for n in self._with(["nova-compute"])
                if n.units["nova-compute"].code.index < release.index
            ]  # fmt: skip
            if old:
                return (hosts[0].name, "lab rule (kolla nova.yml: online data migrations "
                        "'should be done once all hosts in the cell have been upgraded'): "
                        f"{', '.join(old)} still run an older nova-compute")  # fmt: skip
            world.database(hosts[0], "nova").online_pending = 0
            return None
        if name == "nova-reload":
            return await self._restart(hosts, roles)
        service = ROLES[roles[0]].service
        for node in hosts:
            for role in roles:
                if role in node.roles:
                    node.packages[APT.package(role)] = release
        if service != "horizon":
            db = world.database(hosts[0], service)
            if db.schema.index < release.index:
                db.schema, db.expanded, db.migrated = release, None, True
            if service == "cinder":
                db.online_pending = 0  # kolla runs cinder's online migrations at the end
        await self._stop(hosts, roles)
        return await self._restart(hosts, roles)

    async def _stop(self, hosts: list[LabNode], roles: list[str]) -> None:
        for node in hosts:
            for unit in {APT.unit(r) for r in roles if r in node.roles}:
                if node.units[unit].active:
                    self.world.stop_unit(node, unit)

    async def _restart(self, hosts: list[LabNode], roles: list[str]) -> tuple[str, str] | None:
        for node in hosts:
            for unit in sorted({APT.unit(r) for r in roles if r in node.roles}):
                said = _Lines()
                if await systemctl(Shell(self.world, node, said), ["systemctl", "restart", unit]):
                    return node.name, (said.lines[-1] if said.lines else f"{unit} did not start")
                self.sh.say(f"changed: [{node.name}] => {unit}")
            self.world.save(node)
        return None


# ---------------------------------------------------------------- the container engine


def _site_globals(sh: Shell) -> str | None:
    """The site's globals.yml (its deploy host's)."""
    for node in sh.world.nodes.values():
        if node.site == sh.node.site and "deployment" in node.roles:
            return node.files.get(f"{CONFIG}/globals.yml")
    return None


def _site_global(sh: Shell, key: str, default: str) -> str:
    """A setting of the site's globals.yml (its deploy host's), or kolla's default."""
    return str(_passwords(_site_globals(sh)).get(key, default))


def _plugin(sh: Shell) -> str:
    """The site's neutron_plugin_agent, as its deploy host's globals.yml sets it."""
    return _site_global(sh, "neutron_plugin_agent", "openvswitch")


def _containers(sh: Shell) -> dict[str, str]:
    """The node's kolla containers -> the role they belong to."""
    plugin = _plugin(sh)
    out: dict[str, str] = {}
    for role in sh.node.roles:
        if role in ROLES:
            for container in host_containers(role, plugin):
                out.setdefault(container, role)
    return out


def _other_containers(sh: Shell) -> dict[str, str]:
    """The node's containers of no Rollgate role -> the play that deploys them: the enabled
    projects outside the model on a control host, OVN's databases on an ovsdb host."""
    out: dict[str, str] = {}
    if set(sh.node.roles) & CONTROL_ROLES:
        settings = _passwords(_site_globals(sh))
        for project in enabled_services(settings):
            for container in EXTRA_CONTAINERS.get(project, ()):
                out[container] = project
    if "ovsdb" in sh.node.roles and _plugin(sh) == "ovn":
        out.update(dict.fromkeys(OVN_DB_CONTAINERS, "ovn-db"))
    return out


async def _ps(sh: Shell, argv: list[str]) -> int:
    """`docker ps --format '{{.Names}} {{.Image}}'`: every running container of the node."""
    fmt = argv[argv.index("--format") + 1] if "--format" in argv[:-1] else None
    rows = []
    for name, role in _containers(sh).items():
        tag = CONTAINER_TAGS.get(name)
        if tag is not None:
            rows.append((name, sh.node.kolla.get(tag, sh.world.source.id)))
        elif sh.world.unit_up(sh.node, APT.unit(role)):
            rows.append((name, sh.node.packages[APT.package(role)].id))
    for name, play in _other_containers(sh).items():
        rows.append((name, sh.node.kolla.get(play, sh.world.source.id)))
    for name, release in sorted(rows):
        image = _image(name, release)
        if fmt is None:
            sh.say(f"{image}   {name}")
        else:
            sh.say(fmt.replace("{{.Names}}", name).replace("{{.Image}}", image))
    return 0


async def _engine(sh: Shell, argv: list[str]) -> int:
    """`docker|podman exec|inspect|images`: kolla's containers, from the node's world."""
    verb = argv[1] if len(argv) > 1 else ""
    if verb == "exec":
        return await _exec(sh, argv)
    if verb == "inspect":
        return await _inspect(sh, argv)
    if verb == "images":
        return _images(sh, argv)
    if verb == "ps":
        return await _ps(sh, argv)
    sh.err(f"{argv[0]}: the lab's engine supports exec, inspect, images and ps")
    return 125


async def _exec(sh: Shell, argv: list[str]) -> int:
    rest = argv[2:]
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] in ("-u", "--user", "-w", "--workdir", "-e") else rest[1:]
    if len(rest) < 2:
        sh.err('"docker exec" requires at least 2 arguments.')
        return 1
    container, command = rest[0], rest[1:]
    if container not in _containers(sh):
        sh.err(f"Error response from daemon: No such container: {container}")
        return 1
    handler = dispatch(command)
    if handler is None:
        sh.err(f"OCI runtime exec failed: exec failed: {command[0]}: executable file not found")
        return 126
    return await handler(sh, command)


def _image(container: str, release: str) -> str:
    return f"quay.io/openstack.kolla/{container.replace('_', '-')}:{release}-ubuntu-noble"


async def _inspect(sh: Shell, argv: list[str]) -> int:
    """`docker inspect -f FORMAT NAME`: the fields kolla's checks read, filled from the world
    (a just-restarted container is waited for, as its healthcheck would be)."""
    words = argv[2:]
    fmt = None
    if words[:1] in (["-f"], ["--format"]) and len(words) > 1:
        fmt, words = words[1], words[2:]
    containers = _containers(sh)
    status = 0
    for name in words:
        role = containers.get(name)
        if role is None:
            sh.err(f"Error: No such object: {name}")
            status = 1
            continue
        unit = APT.unit(role)
        u = sh.node.units.get(unit)
        if u is not None and u.active and not sh.world.unit_up(sh.node, unit):
            await asyncio.sleep(max(0.0, u.down_until - sh.world.now()))
        up = u is not None and sh.world.unit_up(sh.node, unit)
        tag = CONTAINER_TAGS.get(name)
        if tag is not None:
            release, up = sh.node.kolla.get(tag, sh.world.source.id), True
        else:
            release = sh.node.packages[APT.package(role)].id
        fields = {
            ".State.Status": "running" if up or (u and u.alive(sh.world.now())) else "exited",
            ".State.Running": "true" if up else "false",
            ".State.Health.Status": "healthy" if up else "unhealthy",
            ".Config.Image": _image(name, release),
            ".Name": f"/{name}",
        }
        # kolla ties each container's healthcheck to enable_container_healthchecks: without
        # one, docker keeps no .State.Health and a template that reads it fails
        if _site_global(sh, "enable_container_healthchecks", "yes").lower() in ("no", "false"):
            del fields[".State.Health.Status"]
        if fmt is None:
            sh.say(f'[{{"Name": "/{name}", "Config": {{"Image": "{fields[".Config.Image"]}"}}}}]')
            continue
        unknown = [f for f in re.findall(r"\{\{\s*([^}\s]+)\s*\}\}", fmt) if f not in fields]
        if unknown:
            sh.err(f'template: :1: executing "" at <{unknown[0]}>: map has no entry for key')
            return 1
        filled = fmt
        for name_, value in fields.items():
            filled = re.sub(r"\{\{\s*" + re.escape(name_) + r"\s*\}\}", value, filled)
        sh.say(filled)
    return status


def _images(sh: Shell, argv: list[str]) -> int:
    fmt = argv[argv.index("--format") + 1] if "--format" in argv[:-1] else None
    releases = set(sh.node.files.get(PULLED, "").split())
    rows = []
    for container, role in _containers(sh).items():
        tag = CONTAINER_TAGS.get(container)
        running = sh.node.kolla.get(tag, sh.world.source.id) if tag else (
            sh.node.packages[APT.package(role)].id)  # fmt: skip
        for release in sorted(releases | {running}):
            repository, _, image_tag = _image(container, release).rpartition(":")
            rows.append((repository, image_tag))
    for repository, image_tag in rows:
        if fmt is None:
            sh.say(f"{repository}   {image_tag}")
        else:
            sh.say(fmt.replace("{{.Repository}}", repository).replace("{{.Tag}}", image_tag))
    return 0


async def _settings_check(sh: Shell, argv: list[str]) -> int:
    """The recipe's settings-check script (`rollgate-kolla-settings GLOBALS AGENT ENGINE
    HEALTHCHECKS`), as the shell runs it: each setting of globals.yml (kolla's default when
    absent) against the plan's."""
    await sh.pause("quick")
    path, *wanted = argv[1:5]
    want = argv[5] if len(argv) > 5 else ""
    found = _passwords(sh.node.files.get(path))
    status = 0
    for (key, default), wanted_value in zip(
        (("neutron_plugin_agent", "openvswitch"), ("kolla_container_engine", "docker"),
         ("enable_container_healthchecks", "yes")), wanted, strict=True,
    ):  # fmt: skip
        have = str(found.get(key, default))
        have = {"true": "yes", "false": "no"}.get(have.lower(), have)
        if have != wanted_value:
            sh.say(f"{key} is {have} in {path}, the plan has {wanted_value}")
            status = 1
    on = ",".join(enabled_services(found))
    if on != want:
        sh.say(f"the enabled services are {on or 'none'} in {path}, the plan has "
               f"{want or 'none'} (recipe.variables.kolla_services)")  # fmt: skip
        status = 1
    return status


COMMANDS: dict[str, Handler] = {
    "rollgate-kolla-settings": _settings_check,
    "docker": _engine,
    "podman": _engine,
    "python3": _python3,
    "pip": _pip,
    "kolla-ansible": _kolla_ansible,
    "kolla-genpwd": _genpwd,
    "kolla-mergepwd": _mergepwd,
}
