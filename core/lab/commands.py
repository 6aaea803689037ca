"""The lab's shell: the commands the recipes run, with their real exit codes (each deployment
method adds its own: core/methods/<method>/lab.py).

Commands are parsed with shlex and interpreted against the World; nothing is ever executed
on the host. Anything else exits 127 with `command not found`, as a shell would.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import functools
import hashlib
import io
import json
import re
import shlex

from rollgate.core.lab import schemas
from rollgate.core.lab.jobs import LabJobs
from rollgate.core.lab.shell import Handler, Out, Shell
from rollgate.core.lab.world import APT, LabNode, World
from rollgate.core.methods import lab_commands
from rollgate.core.releases import find_release
from rollgate.core.roles import ROLES
from rollgate.core.transports.become import MARK as BECOME_MARK

MANAGE_PY = "/usr/share/openstack-dashboard/manage.py"


# a word shlex reads as written (no quote, escape, comment or operator in it), or a word made
# of single-quoted pieces and "'" (what shlex.quote writes), each followed by whitespace
_PLAIN_WORD = re.compile(r"(?:([\w./=%+:,@-]+)|((?:'[^']*'|\"'\")+))(?:[ \t\r\n]+|\Z)")
_QUOTED_PIECE = re.compile("'([^']*)'|\"'\"")


@functools.lru_cache(maxsize=4096)
def _tokens(command: str) -> tuple[str, ...]:
    """The words of `command` as sh splits them (a thousand computes send the same few
    commands: each is parsed once). The leading words that are plain or single-quoted are
    read by a regular expression (the remote-job wrapper, a 3 kB quoted script sent three
    times a step, took shlex a quarter of the lab's time, character by character); shlex
    reads the rest. Both read alike: tests/lab/test_lab_shell_words.py."""
    words: list[str] = []
    at = 0
    while at < len(command) and (word := _PLAIN_WORD.match(command, at)) is not None:
        plain, quoted = word.groups()
        words.append(plain if plain is not None else _unquoted(quoted))
        at = word.end()
    if at < len(command):
        words.extend(_shlex_words(command[at:]))
    return tuple(words)


def _unquoted(word: str) -> str:
    return "".join(
        "'" if piece.group(1) is None else piece.group(1) for piece in _QUOTED_PIECE.finditer(word)
    )


def _shlex_words(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    return list(lexer)


async def run_command(world: World, node: LabNode, command: str, out: Out) -> int:
    """Interpret `command` on `node` as sh would a list of simple commands joined by `;`,
    `&&` and `||`; returns the exit status."""
    try:
        tokens = list(_tokens(command))
    except ValueError as exc:
        out("stderr", f"sh: syntax error: {exc}")
        return 2
    status, joiner = 0, ";"
    while tokens:
        cut = next((i for i, t in enumerate(tokens) if t in (";", "&&", "||")), len(tokens))
        argv, after = tokens[:cut], tokens[cut] if cut < len(tokens) else ";"
        tokens = tokens[cut + 1 :]
        if joiner == ";" or (joiner == "&&") == (status == 0):
            status = await _simple_command(world, node, argv, out)
        joiner = after
    return status


async def _simple_command(world: World, node: LabNode, argv: list[str], out: Out) -> int:
    if argv[:1] == ["!"]:  # `! COMMAND`: its status negated
        return 0 if await _simple_command(world, node, argv[1:], out) else 1
    while argv and argv[0] == "sudo":  # the lab's logins may run anything as root
        argv = argv[1:]
        while argv and argv[0].startswith("-"):
            flag, argv = argv[0], argv[1:]
            if flag == "--":
                break
            if flag in ("-p", "-u", "-g") and argv:  # a flag with its argument
                argv = argv[1:]
    if argv[:2] == ["sh", "-c"] and argv[3:4] == ["rollgate-become"] and len(argv) == 5:
        out("stderr", BECOME_MARK)  # sudo's shell runs (core/transports/become.py)
        return await run_command(world, node, argv[4], out)
    env: dict[str, str] = {}
    if argv and argv[0] == "env":  # env VAR=value ... COMMAND
        argv = argv[1:]
        while argv and "=" in argv[0] and not argv[0].startswith("-"):
            name, _, value = argv[0].partition("=")
            env[name] = value
            argv = argv[1:]
    if ">" in argv[:-1]:  # COMMAND > FILE: what it prints becomes the file
        at = argv.index(">")
        path, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
        written: list[str] = []
        status = await _simple_command(
            world,
            node,
            argv,
            lambda stream, line: written.append(line) if stream == "stdout" else out(stream, line),
        )
        node.files[path] = "\n".join(written) + "\n"
        world.save(node)
        return status
    stdin = ""
    if "<" in argv[:-1]:  # COMMAND < FILE: the file is its standard input
        at = argv.index("<")
        path, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
        if path not in node.files:
            out("stderr", f"sh: 1: cannot open {path}: No such file")
            return 2
        stdin = node.files[path]
    if not argv:
        return 0
    if argv[:2] == ["sh", "-c"] and argv[3:4] == ["rollgate-job"]:  # the remote-job wrapper
        jobs = world.jobs.setdefault(node.name, LabJobs())
        return await jobs.handle(
            argv[3:], out, lambda command, sink: run_command(world, node, command, sink)
        )
    if argv[:2] == ["sh", "-c"] and argv[3:4] and argv[3].startswith("rollgate-"):
        # a recipe's probe script (`sh -c SCRIPT NAME ARGS...`): the lab answers it by its
        # name, as its method's lab says the script behaves
        argv = argv[3:]
    world.running += 1
    world.peak_running = max(world.peak_running, world.running)
    try:
        return await _interpret(world, node, argv, out, env, stdin)
    finally:
        world.running -= 1
        world.save(node)  # a real cloud remembers what a command did, whatever the console does


async def _interpret(
    world: World,
    node: LabNode,
    argv: list[str],
    out: Out,
    env: dict[str, str] | None = None,
    stdin: str = "",
) -> int:
    text = " ".join(argv)
    fault = world.faults.for_command(node.name, text)
    shell = Shell(world, node, out, env, stdin)
    if fault is not None:
        if fault.kind == "hang":
            out("stdout", f"{argv[0]}: waiting for a lock held by another process ...")
            await asyncio.Event().wait()  # until terminated
        await shell.pause("quick")
        if fault.kind == "warn":
            out("stdout", "+--------------------------------------+")
            out("stdout", "| Check: injected condition             |")
            out("stdout", "| Result: Warning                       |")
            out("stdout", "| Details: a lab fault asked for a warning |")
            out("stdout", "+--------------------------------------+")
            return 1
        out("stderr", f"{argv[0]}: injected failure (lab fault), exit {fault.exit}")
        return fault.exit
    handler = dispatch(argv)
    if handler is None:
        out("stderr", f"sh: 1: {argv[0]}: command not found")
        return 127
    return await handler(shell, argv)


def dispatch(argv: list[str]) -> Handler | None:
    """The handler of a simple command: the shell's own, or a deployment method's."""
    name = argv[0]
    if name.endswith("-status") and argv[1:3] == ["upgrade", "check"]:
        return _status_check
    if name == MANAGE_PY:
        return _horizon_manage
    found = _COMMANDS.get(name) or lab_commands().get(name)
    if found is None and "/" in name:  # a program by its path (a virtualenv's): its handler
        found = lab_commands().get(name.rsplit("/", 1)[-1])  # checks the file is there
    return found


# ---------------------------------------------------------------- packages and units


async def _printf(sh: Shell, argv: list[str]) -> int:
    """`printf FORMAT [ARG...]`: `%s` takes the next argument; the format is used again while
    arguments remain (as POSIX printf)."""
    fmt = (argv[1] if len(argv) > 1 else "").replace("\\n", "\n")
    args = argv[2:]
    text = fmt
    if "%s" in fmt and args:
        each = fmt.count("%s")
        text = ""
        for i in range(0, len(args), each):
            chunk = args[i : i + each] + [""] * (each - len(args[i : i + each]))
            piece = fmt
            for value in chunk:
                piece = piece.replace("%s", value, 1)
            text += piece
    for line in text.rstrip("\n").split("\n"):
        sh.say(line)
    return 0


async def _rm(sh: Shell, argv: list[str]) -> int:
    for path in (a for a in argv[1:] if not a.startswith("-")):
        sh.node.files.pop(path, None)
    return 0


def roles_of_unit(node: LabNode, unit: str) -> list[str]:
    return [r for r in node.roles if r in ROLES and APT.unit(r) == unit]


async def systemctl(sh: Shell, argv: list[str]) -> int:
    if len(argv) < 3:
        sh.err("systemctl: usage: systemctl stop|start|restart|reload|is-active UNIT")
        return 1
    verb, unit_name = argv[1], argv[2]
    unit = sh.node.units.get(unit_name)
    if unit is None:
        sh.err(f"Failed to {verb} {unit_name}.service: Unit {unit_name}.service not found.")
        return 5 if verb != "is-active" else 4
    if verb == "is-active":
        up = sh.world.unit_up(sh.node, unit_name)
        if unit.active and not up:  # just restarted: give it the moment it needs
            await asyncio.sleep(max(0.0, unit.down_until - sh.world.now()))
            up = sh.world.unit_up(sh.node, unit_name)
        sh.say("active" if up else "failed")
        return 0 if up else 3
    if verb == "stop":
        sh.world.stop_unit(sh.node, unit_name)
        return 0
    if verb not in ("start", "restart", "reload"):
        sh.err(f"systemctl: unknown command {verb!r}")
        return 1
    if verb == "start" and sh.world.unit_up(sh.node, unit_name):
        return 0  # already running: systemd starts nothing
    await sh.pause("restart")
    now = sh.world.now()
    if (
        verb == "restart"
        and unit.alive(now)
        and sh.world.faults.stale_restart(sh.node.name, unit_name)
    ):
        return 0  # a lab fault: the old process ignored the stop and runs on, on its old code
    if unit.active and verb != "reload":
        sh.world.stop_unit(sh.node, unit_name)  # the old process ends
    unit.crashes = sh.world.faults.crashes(sh.node.name, unit_name)
    unit.dies_at = None
    for role in roles_of_unit(sh.node, unit_name):
        spec = ROLES[role]
        code = sh.node.packages[APT.package(role)]
        # under schema-noop the service starts on the old schema, as neutron-server did on
        # the acceptance cloud: the schema's revision is what tells
        if spec.service != "horizon" and sh.world.faults.schema_moves(spec.service):
            db = sh.world.database(sh.node, spec.service)
            if code.index > db.supports.index:
                unit.active = False
                sh.err(
                    f"Job for {unit_name}.service failed because the control process exited "
                    "with error code."
                )
                sh.err(
                    f"{role}: database schema is at {db.supports.id} but the code is "
                    f"{code.id}: run the schema migrations first"
                )
                return 1
        if spec.service not in ("nova", "horizon") and code.index - sh.world.code_floor >= 2:
            # only nova runs two releases apart side by side (the TC's SLURP resolution;
            # cinder: "live upgrade can be performed only between subsequent releases")
            behind = [
                (name, release)
                for name, release in sh.running_code(spec.service)
                if name != sh.node.name
                and code.index - release.index >= 2
                # neutron's skip-level multinode grenade jobs run the computes' agents two
                # releases behind the servers (grenade upgrades the controller only)
                and not (spec.service == "neutron" and "nova-compute" in sh.world.nodes[name].roles)
            ]
            if behind:
                unit.active = False
                sh.err(f"Job for {unit_name}.service failed.")
                sh.err(
                    f"{role}: {behind[0][0]} still runs {spec.service} {behind[0][1].id}, two "
                    f"releases behind {code.id}: stop every {spec.service} service for a "
                    "skip-level jump"
                )
                return 1
        if role == "nova-conductor":
            oldest = sh.world.oldest_compute(sh.node.site)
            if oldest is not None and code.index - oldest.index > 2:
                unit.active = False
                sh.err(f"Job for {unit_name}.service failed.")
                sh.err(
                    f"nova-conductor: Current Nova version does not support computes older "
                    f"than {code.id} minus two releases but the minimum compute service "
                    f"level in this site is {oldest.id}; upgrade the computes first"
                )
                return 1
    if verb != "reload":
        unit.started_at = sh.world.now()
        unit.down_until = unit.started_at + sh.world.time_scale * 4.0
        dies = sh.world.faults.dies_after(sh.node.name, unit_name)
        if dies is not None:  # a lab fault: it starts and reports, then dies
            unit.dies_at = unit.down_until + dies * sh.world.time_scale
    sh.world.runs(
        unit,
        max(
            (sh.node.packages[APT.package(r)] for r in roles_of_unit(sh.node, unit_name)),
            key=lambda r: r.index,
            default=unit.code,
        ),
    )
    unit.active = True
    return 0


# ---------------------------------------------------------------- status checks


def _check_table(sh: Shell, checks: list[tuple[str, str, str]]) -> None:
    sh.say("+" + "-" * 58 + "+")
    sh.say("| Upgrade Check Results" + " " * 36 + "|")
    for name, result, details in checks:
        sh.say("+" + "-" * 58 + "+")
        sh.say(f"| Check: {name:<50}|")
        sh.say(f"| Result: {result:<49}|")
        sh.say(f"| Details: {details[:48]:<48}|")
    sh.say("+" + "-" * 58 + "+")


async def _status_check(sh: Shell, argv: list[str]) -> int:
    service = argv[0].removesuffix("-status")
    await sh.pause("check")
    checks: list[tuple[str, str, str]] = [("Policy File JSON to YAML Migration", "Success", "None")]
    worst = 0
    world = sh.world
    code = sh.code(service)
    if code is not None and code == world.target and world.faults.target_blocker(service):
        checks.append(
            (
                f"{code.name.title()} readiness",
                "Failure",
                f"a blocker only {code.id}'s own checks know (lab fault)",
            )
        )
        worst = 2
    if service == "nova":
        oldest = world.oldest_compute(sh.node.site)
        target = code or world.target
        if oldest is not None and target.index - oldest.index > 2:
            checks.append(
                (
                    "Older than N-2 computes",
                    "Failure",
                    f"computes at {oldest.id} are too old for {target.id}",
                )
            )
            worst = 2
        down = [
            r.host
            for r in world.services
            if r.site == sh.node.site
            and r.binary == "nova-compute"
            and world.record_state(r) == "down"
        ]
        if down and worst < 1:
            checks.append(("Compute services", "Warning", f"down: {', '.join(down[:3])}"))
            worst = 1
    if service == "cinder":
        db = sh.db("cinder")
        if db.previous_pending:
            checks.append(
                (
                    "Online data migrations",
                    "Failure",
                    f"{db.previous_pending} batches of the previous release pending",
                )
            )
            worst = 2
    if service == "placement" and sh.db("placement").online_pending:
        checks.append(("Incomplete Consumers", "Warning", "run online_data_migrations"))
        worst = max(worst, 1)
    if service not in ("keystone", "glance", "placement", "nova", "neutron", "cinder"):
        sh.err(f"sh: 1: {argv[0]}: command not found")
        return 127
    checks.append(("Upgrade readiness", "Success" if worst == 0 else "See above", "None"))
    _check_table(sh, checks)
    return worst


async def _horizon_manage(sh: Shell, argv: list[str]) -> int:
    await sh.pause("quick")
    if argv[1:2] == ["collectstatic"]:
        sh.say("1286 static files copied to '/var/lib/openstack-dashboard/static'.")
        return 0
    if argv[1:2] == ["compress"]:
        sh.say("Compressing... done")
        sh.say("Compressed 12 block(s) from 1 template(s) for 2 context(s).")
        return 0
    sh.err(f"Unknown command: {argv[1:2]}")
    return 1


async def _mysqldump(sh: Shell, argv: list[str]) -> int:
    await sh.pause("backup")
    target = next((a.split("=", 1)[1] for a in argv if a.startswith("--result-file=")), None)
    names = argv[argv.index("--databases") + 1 :] if "--databases" in argv else ["all"]
    if target == "/dev/null":  # --no-data to nowhere: the credentials were good
        sh.err(f"-- dump of {' '.join(names)} discarded")
        return 0
    if target is not None:
        folder = target.rsplit("/", 1)[0]
        if folder not in sh.node.files:
            sh.err(f"mysqldump: Can't create/write to file '{target}' (Errcode: 2 - No such file)")
            return 2
        sh.node.files[target] = _dump_text(sh, names, "--add-drop-database" in argv)
    sh.err(f"-- dump of {' '.join(names)} written to {target or 'stdout'}")
    return 0


LAB_DUMP = "-- MySQL dump (rollgate lab)"


def _dump_text(sh: Shell, names: list[str], drop: bool) -> str:
    """A dump the lab's mysql can restore: each dumped service's database state, its tables,
    and whether it drops each database before recreating it (--add-drop-database)."""
    services = sorted({name.split("_")[0] for name in names})
    state = {}
    for service in services:
        db = sh.db(service)
        state[service] = [
            db.schema.id,
            db.expanded.id if db.expanded else None,
            db.migrated,
            db.online_pending,
            db.previous_pending,
            sorted(db.tables() | set(db.stale)),
            drop,
        ]
    return f"{LAB_DUMP} of {' '.join(names)}\n{json.dumps(state)}\n"


async def _mysql(sh: Shell, argv: list[str]) -> int:
    """`mysql [--host=H] < DUMP`: a lab dump puts its databases back as they were;
    `mysql [--host=H] -N -B -e QUERY`: the queries Rollgate's checks make."""
    if "-e" in argv[:-1]:
        return await _query(sh, argv[argv.index("-e") + 1])
    await sh.pause("backup")
    lines = sh.stdin.splitlines()
    if len(lines) < 2 or not lines[0].startswith(LAB_DUMP):
        sh.err("ERROR 1064 (42000) at line 1: You have an error in your SQL syntax")
        return 1
    for service, row in json.loads(lines[1]).items():
        schema, expanded, migrated, online, previous, *rest = row
        dumped, drop = (set(rest[0]), bool(rest[1])) if rest else (set(), False)
        db = sh.db(service)
        present = db.tables() | set(db.stale)
        db.schema, db.expanded = find_release(schema), find_release(expanded) if expanded else None
        db.migrated, db.online_pending, db.previous_pending = migrated, online, previous
        # MySQL: with --databases a dump says CREATE DATABASE IF NOT EXISTS and drops only the
        # tables it holds; only --add-drop-database drops the database first
        db.stale = () if drop else tuple(sorted(present - dumped))
    return 0


async def _query(sh: Shell, query: str) -> int:
    """nova's services table (host, binary, version; the cell database): each service's
    version is what the code its process last started on writes (core/upstream.py)."""
    from rollgate.core.upstream import facts

    await sh.pause("quick")
    settings = "SELECT @@log_bin, @@log_bin_trust_function_creators"
    if query.strip().rstrip(";") == settings:
        logging = sh.world.faults.binary_logging(sh.node.site)
        trusted = sh.node.site in sh.world.trusts_function_creators
        sh.say(f"{int(logging)}\t{int(trusted)}")
        return 0
    if query.startswith("SELECT table_schema, COALESCE(SUM(data_length + index_length), 0)"):
        for (site, service), _db in sorted(sh.world.databases.items()):
            if site == sh.node.site:
                for name in sh.world.inventory_databases(service):
                    sh.say(f"{name}\t{DATABASE_BYTES}")
        return 0
    if query.replace(" ", "").rstrip(";") == "SETGLOBALlog_bin_trust_function_creators=1":
        sh.world.trusts_function_creators.add(sh.node.site)
        return 0
    if "FROM nova.services" not in query:
        sh.err("ERROR 1064 (42000) at line 1: the lab's database answers nova.services only")
        return 1
    for record in sh.world.services:
        if record.site != sh.node.site or not record.binary.startswith("nova-"):
            continue
        known = facts(sh.world.record_version(record).id)
        version = known.nova_service_version if known else 0
        sh.say(f"{record.host}\t{record.binary}\t{version}")
    return 0


DATABASE_BYTES = 50 * 1024 * 1024  # each lab database's data and indexes
DISK_BYTES = 200 * 1024**3  # each lab node's disk


async def _df(sh: Shell, argv: list[str]) -> int:
    """`df -P -B1 PATH`: the node's disk, DISK_BYTES less what its files hold (a directory
    that was never made does not exist, as df says)."""
    path = next((a for a in argv[1:] if not a.startswith("-")), "/")
    made = path in ("/", "/var", "/var/backups", "/var/tmp") or any(
        f.startswith(path.rstrip("/") + "/") for f in sh.node.files
    )
    if not made:
        sh.err(f"df: {path}: No such file or directory")
        return 1
    used = sum(len(text) for text in sh.node.files.values())
    free = sh.world.faults.disk_free(sh.node.name)
    free = DISK_BYTES - used if free is None else free
    sh.say("Filesystem     1-blocks      Used   Available Capacity Mounted on")
    sh.say(f"/dev/vda1 {DISK_BYTES} {DISK_BYTES - free} {free} 1% /")
    return 0


async def _tar(sh: Shell, argv: list[str]) -> int:
    """`tar -czf ARCHIVE PATH...` keeps the node's files under the paths; `tar -xzf ARCHIVE
    [-C /]` writes them back."""
    await sh.pause("quick")
    archive = next(
        (argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("-") and a.endswith("f")),
        None,
    )
    if archive is None:
        sh.err("tar: the lab knows -czf ARCHIVE PATH... and -xzf ARCHIVE")
        return 2
    flags = next((a for a in argv[1:] if a.startswith("-") and a.endswith("f")), "")
    if "x" in flags:
        if archive not in sh.node.files:
            sh.err(f"tar: {archive}: Cannot open: No such file or directory")
            return 2
        try:
            kept = json.loads(sh.node.files[archive])
        except ValueError:
            sh.err("gzip: stdin: not in gzip format")
            return 2
        sh.node.files.update(kept)
        return 0
    skip = {archive, "-C"}
    paths = [a for a in argv[argv.index(archive) + 1 :] if a not in skip and not a.startswith("-")]
    kept = {
        path: text
        for path, text in sh.node.files.items()
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths)
    }
    sh.node.files[archive] = json.dumps(kept)
    return 0


async def _sha256sum(sh: Shell, argv: list[str]) -> int:
    if argv[1:2] == ["-c"]:
        return _sha256_check(sh, argv[2:])
    status = 0
    for path in (a for a in argv[1:] if a != "--"):
        if path not in sh.node.files:
            sh.err(f"sha256sum: {path}: No such file or directory")
            status = 1
            continue
        digest = hashlib.sha256(sh.node.files[path].encode()).hexdigest()
        sh.say(f"{digest}  {path}")
    return status


def _sha256_check(sh: Shell, lists: list[str]) -> int:
    """`sha256sum -c LIST`: each "HASH  PATH" line of LIST checked, as coreutils says it."""
    failed = 0
    for listing in lists:
        if listing not in sh.node.files:
            sh.err(f"sha256sum: {listing}: No such file or directory")
            return 1
        for line in sh.node.files[listing].splitlines():
            if not line.strip():
                continue
            digest, _, path = line.partition("  ")
            if path not in sh.node.files:
                sh.err(f"sha256sum: {path}: No such file or directory")
                sh.say(f"{path}: FAILED open or read")
                failed += 1
                continue
            ok = hashlib.sha256(sh.node.files[path].encode()).hexdigest() == digest.strip()
            sh.say(f"{path}: {'OK' if ok else 'FAILED'}")
            failed += not ok
    if failed:
        sh.err(f"sha256sum: WARNING: {failed} computed checksum did NOT match")
    return 1 if failed else 0


async def _base64(sh: Shell, argv: list[str]) -> int:
    """`base64 FILE`: the file's bytes, 76 characters a line, as GNU coreutils writes them."""
    path = next((a for a in argv[1:] if a != "--"), "")
    if path not in sh.node.files:
        sh.err(f"base64: {path}: No such file or directory")
        return 1
    text = base64.b64encode(sh.node.files[path].encode()).decode()
    for at in range(0, len(text), 76):
        sh.say(text[at : at + 76])
    return 0


async def _install(sh: Shell, argv: list[str]) -> int:
    """`install -d [-m MODE] DIR...`: the directories exist afterwards."""
    if "-d" not in argv:
        sh.err("install: the lab knows install -d only")
        return 1
    words = iter(argv[1:])
    for word in words:
        if word == "-m":
            next(words, None)
        elif not word.startswith("-"):
            sh.node.files[word] = ""  # a directory
    return 0


async def _test(sh: Shell, argv: list[str]) -> int:
    """`test -s FILE` (exists, not empty), `test -e FILE` (exists), `test ! -e FILE`."""
    if argv[1:2] == ["-s"] and len(argv) == 3:
        return 0 if sh.node.files.get(argv[2]) else 1
    if argv[1:2] == ["-e"] and len(argv) == 3:
        return 0 if argv[2] in sh.node.files else 1
    if argv[1:3] == ["!", "-e"] and len(argv) == 4:
        return 1 if argv[3] in sh.node.files else 0
    sh.err("test: the lab knows test -s FILE, test -e FILE and test ! -e FILE")
    return 2


async def _mv(sh: Shell, argv: list[str]) -> int:
    """`mv [-f] SRC DST`: DST holds what SRC held; SRC is gone."""
    return _copy(sh, argv, keep=False)


async def _crudini(sh: Shell, argv: list[str]) -> int:
    """`crudini --get FILE SECTION KEY` and `crudini --set FILE SECTION KEY VALUE` on the
    node's files, with crudini's messages and exit status 1 for what is not there."""
    if len(argv) < 5 or argv[1] not in ("--get", "--set"):
        sh.err("crudini: the lab knows --get FILE SECTION KEY and --set FILE SECTION KEY VALUE")
        return 1
    path, section, key = argv[2], argv[3], argv[4]
    config = configparser.ConfigParser(interpolation=None)
    if path not in sh.node.files:
        sh.err(f"crudini: {path}: No such file or directory")
        return 1
    config.read_string(sh.node.files[path])
    if argv[1] == "--get":
        if section != "DEFAULT" and not config.has_section(section):
            sh.err(f"Section not found: {section}")
            return 1
        if not config.has_option(section, key):
            sh.err(f"Parameter not found: {key}")
            return 1
        sh.say(config.get(section, key))
        return 0
    if section != "DEFAULT" and not config.has_section(section):
        config.add_section(section)
    config.set(section, key, argv[5] if len(argv) > 5 else "")
    text = io.StringIO()
    config.write(text)
    sh.node.files[path] = text.getvalue()
    return 0


async def _cp(sh: Shell, argv: list[str]) -> int:
    """`cp SRC DST`: DST holds what SRC holds."""
    return _copy(sh, argv, keep=True)


def _copy(sh: Shell, argv: list[str], *, keep: bool) -> int:
    """cp (`keep`) or mv of one file to another, with their messages."""
    tool = argv[0]
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if len(paths) != 2:
        sh.err(f"{tool}: the lab knows {tool} SRC DST")
        return 1
    if paths[0] not in sh.node.files:
        sh.err(f"{tool}: cannot stat '{paths[0]}': No such file or directory")
        return 1
    files = sh.node.files
    files[paths[1]] = files[paths[0]] if keep else files.pop(paths[0])
    return 0


async def _cat(sh: Shell, argv: list[str]) -> int:
    status = 0
    for path in argv[1:]:
        if path not in sh.node.files:
            sh.err(f"cat: {path}: No such file or directory")
            status = 1
            continue
        for line in sh.node.files[path].splitlines():
            sh.say(line)
    return status


async def _grep(sh: Shell, argv: list[str]) -> int:
    """`grep [-x] [-q] [-E] [-i] PATTERN FILE`: the lines matching; exit 1 when none, 2 on
    error."""
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-") and len(a) > 1)
    words = [a for a in argv[1:] if not (a.startswith("-") and len(a) > 1)]
    if len(words) != 2:
        sh.err("grep: the lab knows grep [-x] [-q] [-E] [-i] PATTERN FILE")
        return 2
    pattern, path = words
    if path not in sh.node.files:
        if "s" not in flags:  # -s: no message for a missing file
            sh.err(f"grep: {path}: No such file or directory")
        return 2
    try:
        regex = re.compile(
            pattern if "E" in flags else _basic_regex(pattern), re.IGNORECASE if "i" in flags else 0
        )
    except re.error:
        sh.err(f"grep: Invalid regular expression: {pattern}")
        return 2
    match = regex.fullmatch if "x" in flags else regex.search
    found = [line for line in sh.node.files[path].splitlines() if match(line)]
    if "q" not in flags:
        for line in found:
            sh.say(line)
    return 0 if found else 1


def _basic_regex(pattern: str) -> str:
    """A POSIX basic regular expression as Python's: `+ ? | ( ) { }` are literal there."""
    return re.sub(r"(?<!\\)([+?|(){}])", r"\\\1", pattern)


async def _sed(sh: Shell, argv: list[str]) -> int:
    """`sed -i [-E] 's/REGEX/REPLACEMENT/[g]' FILE`: the file edited in place."""
    words = [a for a in argv[1:] if a not in ("-i", "-E", "-r")]
    if "-i" not in argv or len(words) != 2 or not words[0].startswith("s"):
        sh.err("sed: the lab knows sed -i [-E] 's/REGEX/REPLACEMENT/[g]' FILE")
        return 1
    script, path = words
    delimiter = script[1:2]
    parts = script[2:].split(delimiter)
    if len(parts) != 3:
        sh.err(f"sed: -e expression #1, char {len(script)}: unterminated `s' command")
        return 1
    pattern, replacement, flags = parts
    if not ("-E" in argv or "-r" in argv):
        pattern = _basic_regex(pattern)
    if path not in sh.node.files:
        sh.err(f"sed: can't read {path}: No such file or directory")
        return 2
    regex = re.compile(pattern)
    lines = [
        regex.sub(replacement.replace("&", r"\g<0>"), line, count=0 if "g" in flags else 1)
        for line in sh.node.files[path].split("\n")
    ]
    sh.node.files[path] = "\n".join(lines)
    return 0


_COMMANDS: dict[str, Handler] = {
    "printf": _printf,
    "cp": _cp,
    "mv": _mv,
    "df": _df,
    "cat": _cat,
    "grep": _grep,
    "sed": _sed,
    "install": _install,
    "test": _test,
    "rm": _rm,
    "chmod": lambda sh, argv: _zero(),
    "systemctl": systemctl,
    "crudini": _crudini,
    "mysql": _mysql,
    "sha256sum": _sha256sum,
    "base64": _base64,
    "keystone-manage": schemas.keystone_manage,
    "glance-manage": schemas.glance_manage,
    "placement-manage": schemas.placement_manage,
    "nova-manage": schemas.nova_manage,
    "neutron-db-manage": schemas.neutron_db_manage,
    "cinder-manage": schemas.cinder_manage,
    "mysqldump": _mysqldump,
    "tar": _tar,
    "true": lambda sh, argv: _zero(),
    "hostname": lambda sh, argv: _say(sh, sh.node.name),
    "echo": lambda sh, argv: _say(sh, " ".join(argv[1:])),
}


async def _zero() -> int:
    return 0


async def _say(sh: Shell, text: str) -> int:
    sh.say(text)
    return 0
