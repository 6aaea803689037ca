"""`python -m tests.acceptance`: build a real 2025.2 cloud, upgrade it to 2026.1 with Rollgate
(detached, every approval gate auto-approved), with an API probe running throughout and one
failure drill answered at its gate, then check what an operator would check and print the
figures. Needs root and Debian's mariadb-server, rabbitmq-server, openssh-server, supervisor
and crudini (README, "The acceptance cloud")."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.acceptance import checks, deploy
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
    SOURCE,
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


def drive(
    cloud: Cloud, run_id: str, drill: bool, limit: float, figures: dict[str, Any]
) -> dict[str, Any]:
    """Follow the detached run to its end, with two drills. The outage: once the image phase
    has ended, glance-api is stopped; the watch sees the image API stop answering and opens an
    outage gate, where the operator starts it again and goes on (the run can then not end
    `complete`). The failure: once the canary compute is back, nova-conductor is killed (as
    the OOM killer would); the next compute's heartbeat check fails, and the operator starts
    the conductor again and retries at the failure gate."""
    deadline = time.monotonic() + limit
    killed = stopped = resumed = False
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
        gate = now.get("gate")
        if drill and not stopped and _phase_ended(run_id, "dc1/image"):
            cloud.on("ctl01", "supervisorctl stop glance-api")
            say("drill: glance-api stopped on ctl01 after the image phase")
            stopped = True
        if gate and gate.get("kind") == "outage":
            if not (drill and stopped and not resumed):
                raise SetupError(f"unexpected outage gate: {gate.get('title')}")
            say(f"drill: outage gate: {gate.get('title')}")
            cloud.on("ctl01", "supervisorctl start glance-api")
            rollgate(
                "approve", run_id, "--comment", "glance-api was stopped (drill); started again"
            )
            say("drill: glance-api started again; went on at the outage gate")
            resumed = True
        if drill and not killed and _canary_back(run_id):
            pid = cloud.on("ctl01", "supervisorctl pid nova-conductor").stdout.strip()
            cloud.on("ctl01", f"kill -9 {pid}")
            say(f"drill: nova-conductor (pid {pid}) killed on ctl01 after the canary")
            killed = True
        if gate and gate.get("kind") == "failure":
            # the dead conductor fails the batch's computes (two at a time: a gate each, or
            # one for both): each is answered the same way
            if not (drill and killed):
                raise SetupError(f"unexpected failure gate: {gate.get('title')}")
            say(f"drill: failure gate: {gate.get('title')}")
            cloud.on("ctl01", "supervisorctl start nova-conductor", check=False)
            # a compute restarted while the conductor was dead gives up waiting for it (nova's
            # MessagingTimeout at start) and exits: the operator starts it again too
            for problem in now.get("problems") or []:
                node = str(problem.get("node", ""))
                if node in NODES and not problem.get("decision") and node.startswith("cmp"):
                    started = cloud.on(node, "supervisorctl start nova-compute", check=False)
                    say(f"drill: nova-compute on {node}: {started.stdout.strip()[:80]}")
            rollgate(
                "retry", run_id, "--comment", "nova-conductor was killed; started it again (drill)"
            )
            say("drill: nova-conductor started again; retried at the gate")
        time.sleep(0.5)
    raise SetupError(f"the run did not end within {limit:g}s")


def _phase_ended(run_id: str, phase: str) -> bool:
    return any(
        e.get("type") == "phase-finished" and e.get("phase") == phase
        for e in journal_events(run_id)
    )


def _canary_back(run_id: str) -> bool:
    return any(
        e.get("type") == "step-finished"
        and "cmp01" in e.get("step", "")
        and e.get("step", "").endswith("wait-compute-up")
        and e.get("outcome") == "ok"
        for e in journal_events(run_id)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.acceptance", description=__doc__)
    parser.add_argument(
        "--fresh",
        action="store_true",
        help=f"remove the cached {TARGET} virtualenv first, so that Rollgate's "
        "preparation installs it",
    )
    parser.add_argument("--no-drill", action="store_true", help="skip the failure drill")
    parser.add_argument(
        "--record",
        metavar="DIR",
        help="copy the run's journal to DIR/journal.jsonl (the shipped run)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures: dict[str, Any] = {}
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

    release = {r.id: r for r in CATALOGUE}
    services = {"keystone", "glance", "placement", "nova", "neutron", "cinder"}
    say(f"the {SOURCE} virtualenv (cached in {VENVS})")
    figures["source venv build s"] = round(
        build_venv(SOURCE, requirements(services, release[SOURCE]), STATE / "venv.log"), 1
    )
    if args.fresh:
        shutil.rmtree(VENVS / TARGET, ignore_errors=True)
    figures["target venv cached"] = (VENVS / TARGET / ".rollgate-ready").is_file()
    cloud = Cloud()
    run_id = ""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop everything on the way out
    probes: dict[str, Probe] = {}
    ok = False
    try:
        say("MariaDB, RabbitMQ and memcached")
        cloud.start_mariadb()
        cloud.start_memcached()
        cloud.start_rabbitmq()
        cloud.make_ssh_keys()
        for node in NODES:
            cloud.write_node(node)
            cloud.start_node(node)
            deploy.link(cloud, node, SOURCE)
        say(f"{SOURCE}: schemas (keystone's, each region's), keystone bootstrap")
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
        say(f"{SOURCE}: every service of both regions")
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
        checked = rollgate("check", str(INVENTORY), check=False)
        figures["check exit"] = checked.returncode
        if checked.returncode != 0:
            raise SetupError(f"rollgate check exited {checked.returncode}:\n{checked.stdout}")
        say(checked.stdout.strip().splitlines()[-1])
        probes = {
            site: Probe(lambda region=region: checks.connect(region)).start()
            for site, region in SITES.items()
        }
        say("rollgate run (detached, --auto-approve)")
        run_started = time.monotonic()
        run_id = rollgate("run", str(INVENTORY), "--detach", "--auto-approve").stdout.strip()
        say(f"run {run_id}")
        figures["cloud RSS MiB before the run"] = cloud_rss_mb()
        final = drive(cloud, run_id, not args.no_drill, limit=3600, figures=figures)
        figures["rollgate run s"] = round(time.monotonic() - run_started, 1)
        for probe in probes.values():
            probe.stop()
        say(f"run ended: {final.get('state')}")
        results = checks.after_upgrade(cloud, conns, before, run_id, run_started)
        figures["unavailable s"] = {
            SITES[site]: probe.unavailable_seconds() for site, probe in probes.items()
        }
        figures["probe ticks"] = {SITES[site]: probe.ticks for site, probe in probes.items()}
        if not args.no_drill:  # the outage drill: the image API's time down, in the report
            results.append(checks.outage_reported(run_id))
        # with the drills, an outage happened: `complete` would claim what was not so
        expected = "complete" if args.no_drill else "complete with deviations"
        results.append((f"the run ends {expected}", final.get("state") == expected,
                        str(final.get("state"))))  # fmt: skip
        for name, passed, detail in results:
            say(f"{'✔' if passed else '✘'} {name}: {detail}")
        ok = all(p for _, p, _ in results)
        if args.record:
            out = Path(args.record)
            out.mkdir(parents=True, exist_ok=True)
            from rollgate.core.runs import resolve_journal

            shutil.copy(resolve_journal(run_id), out / "journal.jsonl")
            say(f"journal recorded in {out}/journal.jsonl")
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
