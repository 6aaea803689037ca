"""`python -m tests.acceptance`: build a real 2025.2 cloud, upgrade it to 2026.1 with Rollgate
(detached, every approval gate auto-approved), with an API probe running throughout and one
failure drill answered at its gate, then check what an operator would check and print the
figures. Needs root and Debian's mariadb-server, rabbitmq-server, openssh-server, supervisor
and crudini (README, "The acceptance cloud")."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.acceptance import checks, deploy, layout
from tests.acceptance.cloud import (
    Cloud,
    SetupError,
    build_venv,
    cloud_rss_mb,
    copy_constraints,
    stop_leftovers,
)
from tests.acceptance.layout import (
    COMPUTES_OF,
    CONTROLLERS,
    HERE,
    NODES,
    SITES,
    SKIP_LEVEL_SOURCE,
    STATE,
    TARGET,
    VENVS,
)
from tests.acceptance.probe import Probe

TOOLS = {
    "mariadbd": "mariadb-server",
    "rabbitmq-server": "rabbitmq-server",
    "sshd": "openssh-server",
    "supervisord": "supervisor",
    "crudini": "crudini",
    "memcached": "memcached",
    "unshare": "util-linux",
    "nsenter": "util-linux",
}
INVENTORY = HERE / "inventory.yaml"
REPO = HERE.parent.parent
# the words `rollgate status` begins with for a run that is over (or whose engine is gone)
ENDED = ("complete", "failed", "aborted", "stopped", "engine lost")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def preconditions() -> None:
    if os.geteuid() != 0:
        raise SetupError("the acceptance cloud needs root (mount namespaces, sshd as root)")
    missing = sorted(
        {
            pkg
            for tool, pkg in TOOLS.items()
            if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()
        }
    )
    if missing:
        raise SetupError(f"missing Debian packages: apt-get install {' '.join(missing)}")


def rollgate(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["rollgate", *args], capture_output=True, text=True, cwd=REPO)
    if check and done.returncode != 0:
        raise SetupError(
            f"rollgate {' '.join(args)} exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()[-1500:]}"
        )
    return done


def status(run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(rollgate("status", run_id, "--json", check=False).stdout)
    return found


def journal_events(run_id: str) -> list[dict[str, Any]]:
    from rollgate.core.runs import resolve_journal

    out = []
    for line in resolve_journal(run_id).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


# the compute whose target code cannot start (the start-failure drill): region two's last
BROKEN = "cmp08"
BROKEN_DRIVER = "fake.NoSuchDriver"  # what its nova.conf names once its batch begins


def drive(
    cloud: Cloud,
    run_id: str,
    drills: set[str],
    limit: float,
    figures: dict[str, Any],
    abort_when: Any = None,
) -> dict[str, Any]:
    """Follow the detached run to its end, with the drills asked for. The outage: once the
    image phase has ended, glance-api is stopped; the watch sees the image API stop answering
    and opens an outage gate, where the operator starts it again and goes on (the run can then
    not end `complete`). The conductor: once the canary compute is back, nova-conductor is
    killed (as the OOM killer would); the next compute's heartbeat check fails, and the
    operator starts the conductor again and retries at the failure gate. The start failure:
    once BROKEN's batch begins, its nova.conf names a virt driver that does not exist (its
    running 2025.2 process never reads it again: only the target's start fails, as with an
    option the new release rejects); each failure gate of BROKEN is skipped, with the gate's
    words kept in `figures`. `abort_when()` true: the run is aborted (the rollback drill)."""
    deadline = time.monotonic() + limit
    killed = stopped = resumed = broken = aborted = False
    answered: set[str] = set()  # failure gates answered (a status read a moment late)
    last_line = ""
    looked = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - looked > 5:  # at each stage: no new code before its restart
            early = checks.new_code_before_its_restart(cloud, lambda: journal_events(run_id))
            if early:
                raise SetupError("new code under an old process: " + "; ".join(early[:4]))
            looked = time.monotonic()
            figures["cloud peak RSS MiB"] = max(figures.get("cloud peak RSS MiB", 0.0),
                                                cloud_rss_mb())  # fmt: skip
        now = status(run_id)
        line = f"{now.get('state')} {now.get('progress')}"
        if line != last_line:
            say(f"run: {line}")
            last_line = line
        if str(now.get("state")).startswith(ENDED):
            return now
        if now.get("state") == "paused":  # nothing here pauses it: say so, do not wait an hour
            raise SetupError(f"the run paused unexpectedly; see rollgate report {run_id}")
        if abort_when is not None and not aborted and abort_when():
            rollgate("abort", run_id, "--comment", "rollback drill: region two goes back")
            say("rollback drill: the run aborted (region two's canary is back on 2026.1)")
            aborted = True
        gate = now.get("gate")
        if "outage" in drills and not stopped and _phase_ended(run_id, "dc1/image"):
            cloud.on("ctl01", "supervisorctl stop glance-api")
            say("drill: glance-api stopped on ctl01 after the image phase")
            stopped = True
        if "start-failure" in drills and not broken and _begun_on(run_id, BROKEN):
            cloud.on(BROKEN, "crudini --set /etc/nova/nova.conf DEFAULT compute_driver "
                     + BROKEN_DRIVER)  # fmt: skip
            say(f"drill: {BROKEN}'s nova.conf names {BROKEN_DRIVER} (its batch began)")
            broken = True
        if gate and gate.get("kind") == "outage":
            if not (stopped and not resumed):
                raise SetupError(f"unexpected outage gate: {gate.get('title')}")
            say(f"drill: outage gate: {gate.get('title')}")
            cloud.on("ctl01", "supervisorctl start glance-api")
            rollgate(
                "approve", run_id, "--comment", "glance-api was stopped (drill); started again"
            )
            say("drill: glance-api started again; went on at the outage gate")
            resumed = True
        if "conductor" in drills and not killed and _canary_back(run_id, "cmp01"):
            pid = cloud.on("ctl01", "supervisorctl pid nova-conductor").stdout.strip()
            cloud.on("ctl01", f"kill -9 {pid}")
            say(f"drill: nova-conductor (pid {pid}) killed on ctl01 after the canary")
            killed = True
        if gate and gate.get("kind") == "failure" and gate.get("id") not in answered:
            answered.add(str(gate.get("id")))
            # what this gate asks about (its own failed steps, as status --json gives them),
            # not every problem of the run: a skipped one elsewhere is no longer a question
            asked = gate.get("failures") or []
            nodes = {str(p.get("node")) for p in asked}
            if broken and nodes == {BROKEN}:
                _skip_broken(run_id, gate, asked, figures)
            elif killed and nodes and nodes <= set(COMPUTES_OF["dc1"]):
                _restart_conductor(cloud, run_id, gate, asked)
            else:
                raise SetupError(f"unexpected failure gate: {gate.get('title')} ({nodes})")
        time.sleep(0.5)
    raise SetupError(f"the run did not end within {limit:g}s")


def _skip_broken(
    run_id: str, gate: dict[str, Any], problems: list[dict[str, Any]], figures: dict[str, Any]
) -> None:
    """The start-failure drill's gate: what it said is kept, then the step is skipped."""
    mine = next(p for p in problems if p.get("node") == BROKEN)
    said = {"gate": gate.get("title"), "step": mine.get("title"),
            "error": mine.get("error"), "last_output": mine.get("last_output")}  # fmt: skip
    figures.setdefault("start-failure gates", []).append(said)
    say(f"drill: failure gate: {gate.get('title')}")
    for line in (mine.get("last_output") or [])[-4:]:
        say(f"drill:   | {line}")
    rollgate("skip", run_id, "--reason", f"{BROKEN}'s nova-compute cannot start on 2026.1 "
             "(drill); left on 2025.2's node for a later fix")  # fmt: skip
    say(f"drill: skipped at {BROKEN}'s gate")


def _restart_conductor(
    cloud: Cloud, run_id: str, gate: dict[str, Any], problems: list[dict[str, Any]]
) -> None:
    """The conductor drill's gate: the dead conductor fails the batch's computes (two at a
    time: a gate each, or one for both): each is answered the same way."""
    say(f"drill: failure gate: {gate.get('title')}")
    cloud.on("ctl01", "supervisorctl start nova-conductor", check=False)
    # a compute restarted while the conductor was dead gives up waiting for it (nova's
    # MessagingTimeout at start) and exits: the operator starts it again too
    for problem in problems:
        node = str(problem.get("node", ""))
        if node in COMPUTES_OF["dc1"]:
            started = cloud.on(node, "supervisorctl start nova-compute", check=False)
            say(f"drill: nova-compute on {node}: {started.stdout.strip()[:80]}")
    rollgate("retry", run_id, "--comment", "nova-conductor was killed; started it again (drill)")
    say("drill: nova-conductor started again; retried at the gate")


def _begun_on(run_id: str, node: str) -> bool:
    """A step of the compute phase began on `node` (its batch is under way)."""
    return any(
        e.get("type") == "step-started" and f"/{node}/" in e.get("step", "")
        and "/compute/" in e.get("step", "")
        for e in journal_events(run_id)
    )  # fmt: skip


def _phase_ended(run_id: str, phase: str) -> bool:
    return any(
        e.get("type") == "phase-finished" and e.get("phase") == phase
        for e in journal_events(run_id)
    )


def _canary_back(run_id: str, canary: str) -> bool:
    return any(
        e.get("type") == "step-finished"
        and f"/{canary}/" in e.get("step", "")
        and e.get("step", "").endswith("wait-compute-up")
        and e.get("outcome") == "ok"
        for e in journal_events(run_id)
    )


def inventory_for(args: argparse.Namespace) -> Path:
    """The inventory this run uses: the committed one, or (skip-level, rollback drill) a copy
    with the one difference, written beside the cloud's state."""
    text = INVENTORY.read_text()
    changes: list[tuple[str, str]] = []
    if args.skip_level:
        changes.append(
            ("  from: flamingo     # 2025.2", f"  from: epoxy        # {SKIP_LEVEL_SOURCE}")
        )
    if args.rollback_drill:  # region one's compute phase whole before region two's begins
        changes.append(("  site_concurrency: 2 ", "  site_concurrency: 1 "))
    if not changes:
        return INVENTORY
    for old, new in changes:
        if old not in text:
            raise SetupError(f"{INVENTORY} has no line {old.strip()!r} to change")
        text = text.replace(old, new)
    out = STATE / "inventory.yaml"
    out.write_text(text)
    return out


def expected_after(args: argparse.Namespace) -> checks.Expected:
    """The releases the cloud runs once the runs are over."""
    left = frozenset({BROKEN}) if drills_of(args) and "start-failure" in drills_of(args) else (
        frozenset())  # fmt: skip
    if not args.rollback_drill:
        return checks.Expected(TARGET, left=left)
    # region two went back whole; the aborted run never reached either region's cinder
    back = {("dc2", s): layout.SOURCE for s in ("glance", "placement", "nova", "neutron", "cinder")}
    return checks.Expected(TARGET, {**back, ("dc1", "cinder"): layout.SOURCE}, left)


def drills_of(args: argparse.Namespace) -> set[str]:
    """The drills of this run: the upgrade's three, none with --no-drill; the skip-level run
    and the rollback drill measure their own path and run none."""
    if args.no_drill or args.skip_level or args.rollback_drill:
        return set()
    return {"outage", "conductor", "start-failure"}


def newest_rollback(of_run: str) -> str:
    """The id of the newest rollback run of `of_run` (rollgate runs' directories)."""
    from rollgate.core.journal import read_header
    from rollgate.core.runs import list_runs

    found = [r for r in list_runs() if (read_header(r.path).get("rollback") or {})
             .get("run") == of_run]  # fmt: skip
    if not found:
        raise SetupError(f"no rollback run of {of_run} in `rollgate runs`")
    return found[-1].run_id


def roll_region_two_back(run_id: str, figures: dict[str, Any]) -> str:
    """`rollgate rollback RUN --site dc2`: its plan printed (--dry-run), then run headless with
    its gate auto-approved; returns the rollback's run id."""
    shown = rollgate("rollback", run_id, "--site", "dc2", "--dry-run")
    lines = shown.stdout.splitlines()
    say(f"rollback plan: {lines[0] if lines else '?'}")
    counted = re.search(r"(\d+) steps", lines[0] if lines else "")
    figures["rollback planned steps"] = int(counted.group(1)) if counted else None
    from rollgate.core.runs import driver_alive

    deadline = time.monotonic() + 60
    while driver_alive("acceptance") and time.monotonic() < deadline:  # the aborted engine exits
        time.sleep(0.5)
    started = time.monotonic()
    done = subprocess.run(
        ["rollgate", "rollback", run_id, "--site", "dc2", "--headless", "--auto-approve",
         "--operator", "acceptance"],
        capture_output=True, text=True, cwd=REPO, timeout=3600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    figures["rollback s"] = round(time.monotonic() - started, 1)
    back = newest_rollback(run_id)
    say(f"rollback {back} exited {done.returncode}")
    if done.returncode != 0:
        raise SetupError(
            f"rollgate rollback exited {done.returncode}: {(done.stderr or done.stdout)[-1500:]}"
            f"; see rollgate report {back}"
        )
    return back


def rollback_checks(run_id: str, back: str) -> list[checks.Check]:
    """The upgrade run ended aborted; the rollback's report has its steps, its gate decided,
    the run it undid, and ends complete."""
    out: list[checks.Check] = []
    up = status(run_id)
    out.append(("the upgrade run ended aborted (the drill)", up.get("state") == "aborted",
                str(up.get("state"))))  # fmt: skip
    report = json.loads(rollgate("report", back, "--format", "json", check=False).stdout or "{}")
    gates = [g for g in report.get("gates", []) if g.get("decision")]
    out.append(
        (
            "the rollback's report: it undid region two of the run, its gate decided, complete",
            (report.get("rollback") or {}).get("run") == run_id
            and (report.get("rollback") or {}).get("site") == "dc2"
            and bool(gates) and report.get("outcome") == "complete",
            f"rollback {report.get('rollback')}, {len(gates)} gate(s) decided, "
            f"{report.get('outcome')}, {len(report.get('steps', []))} steps",
        )
    )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.acceptance", description=__doc__)
    parser.add_argument(
        "--fresh",
        action="store_true",
        help=f"remove the cached {TARGET} virtualenv first, so that Rollgate's "
        "preparation installs it",
    )
    parser.add_argument("--no-drill", action="store_true", help="skip the failure drills")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--skip-level",
        action="store_true",
        help=f"build the cloud on {SKIP_LEVEL_SOURCE} and upgrade it to {TARGET} in one "
        "skip-level (SLURP) run, its downtime gates auto-approved",
    )
    mode.add_argument(
        "--rollback-drill",
        action="store_true",
        help="abort the upgrade once region two's canary compute is back on the target, "
        "roll region two back with `rollgate rollback`, and check both regions",
    )
    parser.add_argument(
        "--record",
        metavar="DIR",
        help="copy the run's journal to DIR/journal.jsonl (the shipped run; with "
        "--rollback-drill the rollback's too, DIR/rollback.jsonl)",
    )
    args = parser.parse_args(argv)
    if args.skip_level:
        layout.use_source(SKIP_LEVEL_SOURCE)
    started = time.monotonic()
    figures: dict[str, Any] = {"mode": "skip-level" if args.skip_level else
                               "rollback drill" if args.rollback_drill else "upgrade",
                               "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    try:
        preconditions()
    except SetupError as exc:
        print(f"acceptance: {exc}", file=sys.stderr)
        return 2
    if stop_leftovers():
        say("stopped what a previous, interrupted run had left")
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    copy_constraints()
    from rollgate.core.methods.venv.plan import requirements
    from rollgate.core.releases import CATALOGUE

    source = layout.SOURCE
    release = {r.id: r for r in CATALOGUE}
    services = {"keystone", "glance", "placement", "nova", "neutron", "cinder"}
    say(f"the {source} virtualenv (cached in {VENVS})")
    figures["source venv build s"] = round(
        build_venv(source, requirements(services, release[source]), STATE / "venv.log"), 1
    )
    if args.fresh:
        shutil.rmtree(VENVS / TARGET, ignore_errors=True)
    figures["target venv cached"] = (VENVS / TARGET / ".rollgate-ready").is_file()
    drills = drills_of(args)
    cloud = Cloud()
    run_id = back = ""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop everything on the way out
    probes: dict[str, Probe] = {}
    ok = False
    try:
        inventory = inventory_for(args)
        say("MariaDB, RabbitMQ and memcached")
        cloud.start_mariadb()
        cloud.start_memcached()
        cloud.start_rabbitmq()
        cloud.make_ssh_keys()
        for node in NODES:
            cloud.write_node(node)
            cloud.start_node(node)
            deploy.link(cloud, node, source)
        say(f"{source}: schemas (keystone's, each region's), keystone bootstrap")
        deploy.sync_schemas(cloud)
        deploy.start(cloud, "key01")
        clouds = {"clouds": {"rollgate-acceptance": deploy.admin_cloud(cloud.secrets)}}
        clouds_yaml = STATE / "clouds.yaml"
        clouds_yaml.write_text(yaml.safe_dump(clouds))
        clouds_yaml.chmod(0o600)
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds_yaml)
        deploy.register_catalog(checks.connect(), cloud.secrets)
        # new tokens: their catalogs have the services, one connection per region
        conns = {site: checks.connect(region) for site, region in SITES.items()}
        say(f"{source}: every service of both regions")
        for site in SITES:
            deploy.start(cloud, CONTROLLERS[site][0])
            for node in COMPUTES_OF[site]:
                deploy.start(cloud, node)
        deploy.discover_computes(cloud, conns)
        say("resources: a project, a user and its token; per region an image, three servers, "
            "a volume")  # fmt: skip
        before = checks.create_resources(conns)
        figures["cloud built s"] = round(time.monotonic() - started, 1)
        say("rollgate check (it must find the cloud ready: nothing blocks)")
        checked = rollgate("check", str(inventory), check=False)
        figures["check exit"] = checked.returncode
        if checked.returncode != 0:
            raise SetupError(f"rollgate check exited {checked.returncode}:\n{checked.stdout}")
        say(checked.stdout.strip().splitlines()[-1])
        probes = {
            site: Probe(lambda region=region: checks.connect(region)).start()
            for site, region in SITES.items()
        }
        say(f"rollgate run {source} -> {TARGET} (detached, --auto-approve)")
        run_started = time.monotonic()
        run_id = rollgate("run", str(inventory), "--detach", "--auto-approve").stdout.strip()
        say(f"run {run_id}")
        figures["cloud RSS MiB before the run"] = cloud_rss_mb()
        abort_when = (lambda: _canary_back(run_id, "cmp05")) if args.rollback_drill else None
        final = drive(cloud, run_id, drills, 3600, figures, abort_when)
        figures["rollgate run s"] = round(time.monotonic() - run_started, 1)
        say(f"run ended: {final.get('state')}")
        results: list[checks.Check] = []
        if args.rollback_drill:
            back = roll_region_two_back(run_id, figures)
            results += rollback_checks(run_id, back)
        for probe in probes.values():
            probe.stop()
        expected = expected_after(args)
        results += checks.after_run(cloud, conns, before, [r for r in (run_id, back) if r],
                                    run_started, expected)  # fmt: skip
        figures["unavailable s"] = {
            SITES[site]: probe.unavailable_seconds() for site, probe in probes.items()
        }
        figures["probe ticks"] = {SITES[site]: probe.ticks for site, probe in probes.items()}
        if "outage" in drills:  # the outage drill: the image API's time down, in the report
            results.append(checks.outage_reported(run_id))
        if "start-failure" in drills:
            # nova says the class it could not find: "Class NoSuchDriver cannot be found"
            results += checks.start_failure_named(
                run_id, BROKEN, BROKEN_DRIVER.rsplit(".", 1)[-1], figures
            )
        if not args.rollback_drill:
            # with the drills, an outage happened: `complete` would claim what was not so
            want = "complete with deviations" if drills else "complete"
            results.append((f"the run ends {want}", final.get("state") == want,
                            str(final.get("state"))))  # fmt: skip
        for name, passed, detail in results:
            say(f"{'✔' if passed else '✘'} {name}: {detail}")
        ok = all(p for _, p, _ in results)
        if args.record:
            out = Path(args.record)
            out.mkdir(parents=True, exist_ok=True)
            from rollgate.core.runs import resolve_journal

            shutil.copy(resolve_journal(run_id), out / "journal.jsonl")
            if back:
                shutil.copy(resolve_journal(back), out / "rollback.jsonl")
            say(f"journal(s) recorded in {out}")
    except SetupError as exc:
        say(f"acceptance: {exc}")
    finally:
        for probe in probes.values():
            probe.stop()
        if run_id and status(run_id).get("state") in ("running", "paused"):
            rollgate("abort", run_id, "--comment", "the acceptance harness stopped", check=False)
            say(f"run {run_id} aborted: the harness stopped before it ended")
        say("stopping everything this run started")
        killed = cloud.stop()
        left = cloud.leftovers()
        figures["needed SIGKILL"] = killed
        figures["left listening"] = left
        ok = ok and not left
        figures["total s"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures, indent=2))
    for site, probe in probes.items():
        for api, failures in sorted(probe.failures.items()):
            print(f"{SITES[site]} {api}: {len(failures)} failed calls; first: {failures[0][1]}")
    print("acceptance:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
