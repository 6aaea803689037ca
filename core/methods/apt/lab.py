"""The lab's apt: package pockets and lists, installs that restart units unless blocked, and
the installed version, with the real tools' messages and exit codes."""

from __future__ import annotations

import functools
from typing import Any

from rollgate.core.lab import APT, Shell, World, package_version, systemctl
from rollgate.core.lab import LabHandler as Handler
from rollgate.core.releases import CATALOGUE, package_source
from rollgate.core.roles import ROLES


@functools.cache  # a few dozen packages, asked at each install and version read
def service_of(package: str) -> str:
    """The project a package belongs to (its version numbering)."""
    return next((ROLES[r].service for r in ROLES if APT.package(r) == package), package)


async def _apt_get(sh: Shell, argv: list[str]) -> int:
    node = sh.node
    if argv[1:2] == ["update"]:
        pocket = node.pocket or sh.world.source
        sh.say(
            "Hit:1 http://ubuntu-cloud.archive.canonical.com/ubuntu "
            f"{node.series}-updates/{pocket.name} InRelease"
        )
        await sh.pause("apt-update")
        node.lists = pocket  # the lists now know what the configured source carries
        sh.say("Reading package lists... Done")
        return 0
    if "dist-upgrade" in argv:
        return await _dist_upgrade(sh, argv)
    pinning = "install" in argv and any("=" in a and not a.startswith("-") for a in argv)
    if "install" not in argv or ("--only-upgrade" not in argv and not pinning):
        sh.err("E: the lab's apt-get supports update, install --only-upgrade -y PKG..., "
               "install -y [--allow-downgrades] PKG=VERSION..., [-s] dist-upgrade -y")  # fmt: skip
        return 100
    packages, words = [], iter(argv[argv.index("install") + 1 :])
    for word in words:
        if word == "-o":
            next(words, None)  # -o Dpkg::Options::=... takes a value
        elif not word.startswith("-"):
            packages.append(word)
    sh.say("Reading package lists...")
    sh.say("Building dependency tree...")
    known = node.lists or sh.world.source  # only what the last `apt-get update` saw
    held = [p for p in packages if sh.world.faults.is_held(node.name, p)]
    if held and "--allow-change-held-packages" not in argv:
        sh.say("The following held packages will be changed:")
        sh.say("  " + " ".join(held))
        sh.err(
            "E: Held packages were changed and -y was used without --allow-change-held-packages."
        )
        return 100
    pinned = [p for p in packages if "=" in p]
    if pinned:
        return await _pinned(sh, pinned, argv)
    for package in packages:
        if package not in node.packages:
            sh.say(f"Package {package} is not installed, so not upgraded.")
            continue
        old = node.packages[package]
        if known.index <= old.index:
            version = package_version(service_of(package), old)
            sh.say(f"{package} is already the newest version ({version}).")
            continue
        status = await _unpack(sh, package, known, argv, 1.0 / max(1, len(packages)))
        if status:
            return status
    return 0


async def _pinned(sh: Shell, pins: list[str], argv: list[str]) -> int:
    """`apt-get install -y [--allow-downgrades] PKG=VERSION...`: each package to that version,
    which the lists must know (only the pocket the last update saw, and the series' archive,
    carry it); a lower one needs --allow-downgrades."""
    node = sh.node
    known = node.lists or sh.world.source
    wanted = []
    for pin in pins:
        package, _, version = pin.partition("=")
        service = service_of(package)
        release = next((r for r in CATALOGUE if package_version(service, r) == version), None)
        if package not in node.packages:
            sh.err(f"E: Unable to locate package {package}")
            return 100
        if release is None or release != known:
            sh.err(f"E: Version '{version}' for '{package}' was not found")
            return 100
        wanted.append((package, release))
    down = [p for p, r in wanted if r.index < node.packages[p].index]
    if down and "--allow-downgrades" not in argv:
        sh.err("E: Packages were downgraded and -y was used without --allow-downgrades.")
        return 100
    for package, release in wanted:
        if node.packages[package] == release:
            continue
        status = await _unpack(sh, package, release, argv, 1.0 / max(1, len(wanted)))
        if status:
            return status
    return 0


def _upgradable(sh: Shell) -> list[str]:
    """The node's installed packages whose candidate (what the lists know) is newer."""
    known = sh.node.lists or sh.world.source
    return sorted(p for p, r in sh.node.packages.items() if r.index < known.index)


async def _dist_upgrade(sh: Shell, argv: list[str]) -> int:
    """`apt-get [-s] dist-upgrade -y`: every installed package to its candidate (held ones
    kept back); -s only says what it would do (an Inst line each)."""
    node = sh.node
    known = node.lists or sh.world.source
    sh.say("Reading package lists...")
    sh.say("Building dependency tree...")
    sh.say("Calculating upgrade...")
    moving = _upgradable(sh)
    held = [p for p in moving if sh.world.faults.is_held(node.name, p)]
    moving = [p for p in moving if p not in held]
    if held:
        sh.say("The following packages have been kept back:")
        sh.say("  " + " ".join(held))
    simulate = "-s" in argv or "--simulate" in argv
    for package in moving:
        service = service_of(package)
        if simulate:
            old, new = node.packages[package], known
            sh.say(f"Inst {package} [{package_version(service, old)}] "
                   f"({package_version(service, new)} Ubuntu:{node.series}-updates/"
                   f"{new.name})")  # fmt: skip
            continue
        status = await _unpack(sh, package, known, argv, 1.0 / max(1, len(moving)))
        if status:
            return status
    sh.say(f"{len(moving)} upgraded, 0 newly installed, 0 to remove and {len(held)} not "
           "upgraded.")  # fmt: skip
    return 0


async def _unpack(sh: Shell, package: str, known: Any, argv: list[str], share: float) -> int:
    """Install `known`'s version of one package: its conffiles, then its units restarted by
    its scripts unless policy-rc.d and needrestart's suspension forbid it (0, or apt's 100)."""
    node = sh.node
    old = node.packages[package]
    service = service_of(package)
    await sh.pause("apt-install", share)
    if sh.world.faults.edited_conffile(node.name, package) and not _keeps_conffiles(argv):
        return _conffile_prompt(sh, package, service)
    node.packages[package] = known
    node.installed_at[package] = sh.world.now()
    sh.say(
        f"Unpacking {package} ({package_version(service, known)}) over "
        f"({package_version(service, old)}) ..."
    )
    sh.say(f"Setting up {package} ({package_version(service, known)}) ...")
    # debhelper's postinst restarts the package's units unless policy-rc.d forbids it;
    # needrestart restarts them anyway unless suspended (it calls systemctl itself)
    if not node.restarts_blocked or sh.env.get("NEEDRESTART_SUSPEND") != "1":
        for unit in sorted(
            {APT.unit(r) for r in node.roles if r in ROLES and APT.package(r) == package}
        ):
            if await systemctl(sh, ["systemctl", "restart", unit]) != 0:
                sh.err(
                    f"dpkg: error processing package {package} (--configure): installed "
                    f"{package} package post-installation script subprocess returned "
                    "error exit status 1"
                )
                sh.err("E: Sub-process /usr/bin/dpkg returned an error code (1)")
                return 100
    return 0


async def _add_apt_repository(sh: Shell, argv: list[str]) -> int:
    """`add-apt-repository [-y] [--remove] cloud-archive:NAME`, as Ubuntu's, for the Ubuntu
    Cloud Archive: a pocket enables only on the one LTS series that carries it."""
    words = [a for a in argv[1:] if not a.startswith("-")]
    if len(words) != 1 or not words[0].startswith("cloud-archive:"):
        sh.err("add-apt-repository: the lab knows cloud-archive:NAME sources only")
        return 1
    name = words[0].split(":", 1)[1]
    release = next((r for r in CATALOGUE if r.name == name), None)
    if release is None or package_source(release, sh.node.series) != words[0]:
        sh.err(f"ERROR: 'cloud-archive:{name}' is not a valid cloud archive on {sh.node.series}")
        return 1
    await sh.pause("quick")
    if "--remove" in argv or "-r" in argv:
        if sh.node.pocket == release:
            sh.node.pocket = sh.world.source
        return 0
    sh.say(
        "Adding repository: deb http://ubuntu-cloud.archive.canonical.com/ubuntu "
        f"{sh.node.series}-updates/{name} main"
    )
    sh.node.pocket = release
    return 0


async def _dpkg_query(sh: Shell, argv: list[str]) -> int:
    package = argv[-1]
    if package not in sh.node.packages:
        sh.err(f"dpkg-query: no packages found matching {package}")
        return 1
    service = service_of(package)
    sh.say(package_version(service, sh.node.packages[package]))
    return 0


def _keeps_conffiles(argv: list[str]) -> bool:
    """dpkg answers the conffile question itself only when told to keep the old file."""
    return "Dpkg::Options::=--force-confold" in argv


def _conffile_prompt(sh: Shell, package: str, service: str) -> int:
    """dpkg's conffile question, read from a stdin that is not a terminal: end of file."""
    path = f"/etc/{service}/{service}.conf"
    sh.say(f"Setting up {package} ...")
    sh.say("")
    sh.say(f"Configuration file '{path}'")
    sh.say(" ==> Modified (by you or by a script) since installation.")
    sh.say(" ==> Package distributor has shipped an updated version.")
    sh.say("   What would you like to do about it ?  Your options are:")
    sh.say("    Y or I  : install the package maintainer's version")
    sh.say("    N or O  : keep your currently-installed version")
    sh.err(f"dpkg: error processing package {package} (--configure):")
    sh.err(" end of file on stdin at conffile prompt")
    sh.err("E: Sub-process /usr/bin/dpkg returned an error code (1)")
    return 100


async def _apt_mark(sh: Shell, argv: list[str]) -> int:
    """`apt-mark showhold`: the node's held packages, one per line."""
    if argv[1:2] != ["showhold"]:
        sh.err("apt-mark: the lab knows showhold only")
        return 100
    for package in sorted(sh.node.packages):
        if sh.world.faults.is_held(sh.node.name, package):
            sh.say(package)
    return 0


async def _running_version(sh: Shell, argv: list[str]) -> int:
    """recipe.yaml's running-version probe: for each UNIT PACKAGE, the installed version when
    the unit's process started after its install (runs the installed code), else why not."""
    status = 0
    await sh.pause("quick")
    now = sh.world.now()
    for unit_name, package in zip(argv[1::2], argv[2::2], strict=False):
        installed = sh.node.packages.get(package)
        unit = sh.node.units.get(unit_name)
        if installed is None:
            sh.say(f"{unit_name} {package} not-installed")
            status = 3
            continue
        version = package_version(service_of(package), installed)
        if unit is None or not unit.alive(now):
            sh.say(f"{unit_name} {package} not-running")
            status = 3
        elif unit.code.index < installed.index or unit.started_at < node_installed_at(
            sh, package
        ):  # it started before the install: it runs the old code
            sh.say(f"{unit_name} {package} stale {version}: pid {_pid(sh, unit_name)} started "
                   f"before {package} {version} was installed")  # fmt: skip
            status = 3
        else:
            sh.say(f"{unit_name} {package} {version} pid {_pid(sh, unit_name)}")
    return status


def node_installed_at(sh: Shell, package: str) -> float:
    return sh.node.installed_at.get(package, float("-inf"))


def _pid(sh: Shell, unit: str) -> int:
    """A stand-in for the unit's main process id: the same while its process runs."""
    started = sh.node.units[unit].started_at
    return 1000 + (sum(map(ord, f"{sh.node.name}/{unit}")) + int(started * 1000)) % 30000


COMMANDS: dict[str, Handler] = {
    "rollgate-running-version": _running_version,
    "apt-mark": _apt_mark,
    "add-apt-repository": _add_apt_repository,
    "apt-get": _apt_get,
    "dpkg-query": _dpkg_query,
}


# what an Ubuntu node that can take the Cloud Archive has: add-apt-repository
# (software-properties-common) and the archive's key (ubuntu-cloud-keyring)
ADD_APT_REPOSITORY = "/usr/bin/add-apt-repository"
CLOUD_KEYRING = "/usr/share/keyrings/ubuntu-cloud-keyring.gpg"


# Packages of the Cloud Archive's pocket a node carries beyond its services' own (what a
# list of named packages leaves behind): the oslo libraries every service imports, Open
# vSwitch where an L2 agent runs, libvirt on a hypervisor
POCKET_EXTRAS = {
    "": ("python3-oslo.messaging",),
    "neutron-l2-agent": ("openvswitch-switch",),
    "nova-compute": ("libvirt-daemon-system",),
}


def seed(world: World) -> None:
    for node in world.nodes.values():
        node.files.setdefault(ADD_APT_REPOSITORY, "#!/usr/bin/python3\n")
        node.files.setdefault(CLOUD_KEYRING, "(the Cloud Archive's public key)\n")
        if not any(r in ROLES for r in node.roles):
            continue  # a database or deploy host: no OpenStack packages
        for role in ("", *node.roles):
            for package in POCKET_EXTRAS.get(role, ()):
                node.packages.setdefault(package, world.source)
