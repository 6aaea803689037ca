"""The lab's schema tools: keystone-manage, glance-manage, placement-manage, nova-manage,
neutron-db-manage and cinder-manage, their migrations and what each prints as the database's
revision (the upstream heads of core/upstream.py for the release its schema is at)."""

from __future__ import annotations

from rollgate.core.lab.shell import Shell
from rollgate.core.lab.world import APT, Database, added_table
from rollgate.core.releases import CATALOGUE, Release
from rollgate.core.upstream import DEPENDENT_CONTRACT, facts


def heads(release: Release, database: str) -> dict[str, str]:
    """`database`'s heads at `release` (branch -> revision): upstream's, or for a release
    Rollgate has no facts of, names of the lab's own (which no check can confirm)."""
    known = facts(release.id)
    if known is not None and database in known.schema_heads:
        return known.schema_heads[database]
    latest = facts("2026.1")
    assert latest is not None
    return {branch: f"lab_{release.name}_{branch}" for branch in latest.schema_heads[database]}


def revisions(db: Database, database: str) -> list[str]:
    """The revisions `database` is at: the heads of the release its schema is at, the expand
    branch's of the release it is expanded for while an expansion is in progress."""
    at = heads(db.schema, database)
    if "expand" in at:
        expand = heads(db.supports, database)["expand"]
        if database in DEPENDENT_CONTRACT and expand == at["expand"]:
            return [at["contract"]]  # alembic keeps one row: the contract depends on it
        return [expand, at["contract"]]
    return [at["head"]]


def _duration(argv: list[str]) -> str:
    """Reading the revision is quick; a migration takes a schema migration's time."""
    return "quick" if {"version", "current", "db_version"} & set(argv) else "db"


# expansions that create triggers to keep both schemas in sync while old and new code run
# (keystone's upgrade guide: "create triggers to facilitate the live migration process";
# glance's zero-downtime guide: "new columns, tables, indexes, or triggers are added")
TRIGGERS = ("keystone", "glance")


def _tables_clash(sh: Shell, db: Database, code: Release) -> bool:
    """A migration to `code` creates its releases' tables: one a restore left in place
    already exists, and the migration fails as MySQL fails it."""
    made = {added_table(db.service, r) for r in CATALOGUE[db.supports.index + 1 : code.index + 1]}
    clash = sorted(made & set(db.stale))
    if clash:
        sh.err(f"ERROR 1050 (42S01) at line 1: Table '{clash[0]}' already exists")
    return bool(clash)


def _moves(sh: Shell, service: str) -> bool:
    """False under the lab fault schema-noop: the tool says it migrated and moved nothing."""
    return sh.world.faults.schema_moves(service)


def _expand(sh: Shell, service: str) -> int:
    code = sh.code(service)
    db = sh.db(service)
    if code is None:
        sh.err(f"{service} is not installed on this node")
        return 1
    if code.index > db.schema.index and not _moves(sh, service):
        sh.say(f"Database expanded for {code.id}")
    elif code.index > db.schema.index:
        if _tables_clash(sh, db, code):
            return 1
        if service in TRIGGERS and sh.world.refuses_triggers(sh.node.site):
            sh.err(
                "ERROR 1419 (HY000) at line 1: You do not have the SUPER privilege and binary "
                "logging is enabled (you *might* want to use the less safe "
                "log_bin_trust_function_creators variable)"
            )
            return 1
        db.expanded = code
        db.migrated = False
        sh.say(f"Database expanded for {code.id}")
    else:
        sh.say("Database is up to date")
    return 0


def _contract(sh: Shell, service: str) -> int:
    db = sh.db(service)
    if db.expanded is None:
        sh.say("Nothing to contract")
        return 0
    if service == "neutron":  # neutron's upgrade guide: "requires all neutron-server
        # instances to be shut down"
        running = [
            n.name
            for n in sh.world.service_nodes(sh.node.site, "neutron")
            if "neutron-server" in n.roles and sh.world.unit_up(n, APT.unit("neutron-server"))
        ]
        if running:
            sh.err(
                f"ERROR: contract migrations need every neutron-server stopped; still running "
                f"on {', '.join(running[:5])}"
            )
            return 1
    old = [(n, r) for n, r in sh.running_code(service) if r.index < db.expanded.index]
    if service == "neutron":  # agents reach the database only through the servers
        old = []
    if old:
        names = ", ".join(n for n, _ in old[:5])
        sh.err(
            f"ERROR: cannot contract: {len(old)} {service} service(s) still run "
            f"{old[0][1].id} code ({names}); upgrade and restart every node first"
        )
        return 1
    if service == "glance" and not db.migrated:
        sh.err("ERROR: data migration is not complete; run `glance-manage db migrate` first")
        return 1
    if not _moves(sh, service):
        sh.say(f"Database contracted; schema is at {db.expanded.id}")
        return 0
    db.schema, db.expanded = db.expanded, None
    sh.say(f"Database contracted; schema is at {db.schema.id}")
    return 0


def _sync(sh: Shell, service: str, online: int) -> int:
    code = sh.code(service)
    db = sh.db(service)
    if code is None:
        sh.err(f"{service} is not installed on this node")
        return 1
    if code.index > db.schema.index and not _moves(sh, service):
        sh.say(f"Running upgrade to {code.id} ... done")
    elif code.index > db.schema.index:
        if _tables_clash(sh, db, code):
            return 1
        db.schema, db.expanded = code, None
        db.online_pending = online
        sh.say(f"Running upgrade to {code.id} ... done")
    else:
        sh.say("Database is already at the latest version")
    return 0


def _online(sh: Shell, service: str, attr: str = "online_pending") -> int:
    db = sh.db(service)
    left = getattr(db, attr)
    sh.say("+---------------------------+--------------+-----------+")
    sh.say("|         Migration         | Total Needed | Completed |")
    if left > 0:
        setattr(db, attr, left - 1)
        sh.say(f"| populate_batches          | {left:>12} | {1:>9} |")
        sh.say("+---------------------------+--------------+-----------+")
        return 1  # some migrations ran; run again until it exits 0
    sh.say("+---------------------------+--------------+-----------+")
    return 0


async def keystone_manage(sh: Shell, argv: list[str]) -> int:
    args = argv[1:]
    await sh.pause("db" if "db_sync" in args else "check" if "doctor" in args else "quick")
    if args[:1] == ["doctor"]:
        return 0
    if args[:1] == ["db_version"]:  # the expand branch's revision only, as keystone prints it
        sh.say(revisions(sh.db("keystone"), "keystone")[0])
        return 0
    if args[:1] != ["db_sync"]:
        sh.err("keystone-manage: the lab knows doctor, db_version and db_sync")
        return 2
    if "--expand" in args:
        return _expand(sh, "keystone")
    if "--contract" in args:
        return _contract(sh, "keystone")
    if "--check" in args:
        db = sh.db("keystone")
        code = sh.code("keystone")
        if db.expanded is not None:
            sh.say("Database expanded; contract is needed")
            return 4
        if code is not None and code.index > db.schema.index:
            sh.say("Database needs expanding")
            return 2
        sh.say("Database is up to date")
        return 0
    return _sync(sh, "keystone", 0)


async def glance_manage(sh: Shell, argv: list[str]) -> int:
    args = argv[1:]
    await sh.pause(_duration(argv))
    db = sh.db("glance")
    match args:
        case ["db", "version"]:
            for revision in sorted(revisions(db, "glance")):
                sh.say(revision)
            return 0
        case ["db", "check"]:
            code = sh.code("glance")
            if db.expanded is not None:
                return 5 if db.migrated else 4
            return 3 if code is not None and code.index > db.schema.index else 0
        case ["db", "sync"]:  # the offline path: expand, migrate and contract at once
            return _sync(sh, "glance", 0)
        case ["db", "expand"]:
            return _expand(sh, "glance")
        case ["db", "migrate"]:
            if db.expanded is None:
                sh.say("Database is up to date. No migrations needed.")
                return 0
            db.migrated = True
            sh.say("Database migrated")
            return 0
        case ["db", "contract"]:
            return _contract(sh, "glance")
    sh.err(f"glance-manage: unknown command {' '.join(args)!r}")
    return 2


async def placement_manage(sh: Shell, argv: list[str]) -> int:
    await sh.pause(_duration(argv))
    if argv[1:3] == ["db", "sync"]:
        return _sync(sh, "placement", 2)
    if argv[1:3] == ["db", "version"]:
        sh.say(revisions(sh.db("placement"), "placement")[0])
        return 0
    if argv[1:3] == ["db", "online_data_migrations"]:
        return _online(sh, "placement")
    sh.err("placement-manage: unknown command")
    return 2


async def nova_manage(sh: Shell, argv: list[str]) -> int:
    await sh.pause(_duration(argv))
    if argv[1:3] == ["api_db", "sync"]:
        sh.say("api_db is at the latest version")
        return 0
    if argv[1:3] == ["db", "sync"]:
        return _sync(sh, "nova", 3)
    if argv[1:3] in (["db", "version"], ["api_db", "version"]):
        database = "nova" if argv[1] == "db" else "nova_api"
        sh.say(revisions(sh.db("nova"), database)[0])
        return 0
    if argv[1:3] == ["db", "online_data_migrations"]:
        return _online(sh, "nova")
    sh.err("nova-manage: unknown command")
    return 2


async def neutron_db_manage(sh: Shell, argv: list[str]) -> int:
    await sh.pause(_duration(argv))
    if argv[1:3] == ["upgrade", "--expand"]:
        return _expand(sh, "neutron")
    if argv[1:3] == ["upgrade", "--contract"]:
        return _contract(sh, "neutron")
    if argv[1:2] == ["current"]:
        sh.say("  Running current for neutron ...")
        for revision in sorted(revisions(sh.db("neutron"), "neutron")):
            sh.say(f"{revision} (head)")
        sh.say("  OK")
        return 0
    if argv[1:2] == ["has_offline_migrations"]:
        db = sh.db("neutron")
        if db.expanded is not None:
            sh.say("Need to apply contract migrations")
            return 1
        sh.say("No offline migrations pending.")
        return 0
    sh.err("neutron-db-manage: unknown command")
    return 2


async def cinder_manage(sh: Shell, argv: list[str]) -> int:
    await sh.pause(_duration(argv))
    db = sh.db("cinder")
    if argv[1:3] == ["db", "sync"]:
        if db.previous_pending:
            sh.err(
                "ERROR: There are still untyped volumes / incomplete online data migrations "
                "of the previous release; run `cinder-manage db online_data_migrations` "
                "until it exits 0"
            )
            return 1
        return _sync(sh, "cinder", 2)
    if argv[1:3] == ["db", "version"]:
        sh.say(revisions(db, "cinder")[0])
        return 0
    if argv[1:3] == ["db", "online_data_migrations"]:
        if db.previous_pending:
            return _online(sh, "cinder", "previous_pending")
        return _online(sh, "cinder")
    sh.err("cinder-manage: unknown command")
    return 2
