"""What a check printed, against what the plan expects of it: a version of the target release,
an exact line, a pattern, the code each unit runs, a schema's revisions, nova's service
versions. Each reader returns why the output is wrong ("" when it is right), in words that name
the node, the program and both values."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rollgate.core.plan import Step
from rollgate.core.releases import release_for_major
from rollgate.core.upstream import FACTS

# what a running-version probe says instead of a version (core/methods/*/recipe.yaml)
NOT_RUNNING_WORDS = ("stale", "not-running", "not-installed", "unknown")
_REVISION = re.compile(r"^\s*([0-9a-z_]+)(?:\s+\(.*\))?\s*$")

# Steps whose every line of output is read (the others: their last line only)
MULTI_LINE = ("expect_running", "expect_revisions", "expect_service_version",
              "expect_every_match")  # fmt: skip


# installs whose every "Setting up" line is recorded (what moved beyond the named packages)
INSTALLS = ("upgrade-packages", "upgrade-node")


def reads_all_lines(step: Step) -> bool:
    """Its check reads every line, or (an install) every line is what it moved."""
    return step.action in INSTALLS or any(key in step.args for key in MULTI_LINE)


def wrong_lines(step: Step, lines: list[str]) -> str:
    """`expect_every_match`: it printed something, and every line matches the pattern."""
    if not lines:
        return f"{step.node} printed nothing to read"
    pattern = re.compile(str(step.args["expect_every_match"]))
    bad = [line.strip() for line in lines if not pattern.fullmatch(line.strip())]
    if not bad:
        return ""
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{step.node}: {len(bad)} line(s) say otherwise: {'; '.join(bad[:3])}{more}"


def release_word(service: str, version: str) -> tuple[str | None, str]:
    """(release id, its label or "no known release") of a package or distribution version."""
    major = re.match(r"^(?:\d+:)?(\d+)\.", version.strip())
    release = release_for_major(service, int(major.group(1))) if major else None
    return (release.id, release.label) if release else (None, "no known release")


def wrong_release(step: Step, version: str) -> str:
    """Why an installed version is not the step's expected release ("" if it is)."""
    expect, service = str(step.args["expect"]), str(step.args.get("service", ""))
    found, label = release_word(service, version)
    if found == expect:
        return ""
    return (
        f"{step.node} runs {service} {version.strip() or '(no version)'}, which is {label}, "
        f"not the target {expect}: the package did not move"
    )


@dataclass(frozen=True)
class Running:
    """What one unit's process runs, as its probe read it."""

    unit: str
    package: str
    service: str
    version: str | None  # None: the probe found no version it could vouch for
    said: str  # the probe's words after the unit and package


def running(step: Step, lines: list[str]) -> list[Running]:
    """Each expected (unit, package) with what the probe printed for it."""
    said: dict[tuple[str, str], str] = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            said.setdefault((fields[0], fields[1]), " ".join(fields[2:]))
    out = []
    for unit, package, service in step.args["expect_running"]:
        words = said.get((unit, package), "")
        first = words.split()[0] if words else ""
        version = first if first and first.rstrip(":") not in NOT_RUNNING_WORDS else None
        out.append(Running(unit, package, service, version, words or "printed nothing"))
    return out


def wrong_running(step: Step, lines: list[str]) -> str:
    """Each unit runs a process started after its package's install, of the target's code."""
    target = str(step.args["target"])
    problems = []
    for found in running(step, lines):
        if found.version is None:
            problems.append(f"{found.unit} ({found.package}): {found.said}")
            continue
        release, label = release_word(found.service, found.version)
        if release != target:
            problems.append(
                f"{found.unit} runs {found.package} {found.version} ({label}), not {target}"
            )
    if not problems:
        return ""
    return f"on {step.node}: " + "; ".join(problems)


def revisions(lines: list[str]) -> list[str]:
    """The alembic revisions a schema tool printed (one per line, maybe with "(head)")."""
    out = []
    for line in lines:
        match = _REVISION.match(line)
        if match and match.group(1) != "none":
            out.append(match.group(1))
    return out


def wrong_revisions(step: Step, lines: list[str]) -> str:
    expect = step.args.get("expect_revisions")
    found = revisions(lines)
    database, target = step.args.get("database", step.service), step.args.get("target", "")
    if expect is None:
        return ""
    missing = [r for r in expect if r not in found]
    if not missing:
        return ""
    return (
        f"the {database} schema is at {', '.join(found) or 'no revision'}, not at {target}'s "
        f"head{'s' if len(expect) > 1 else ''} {', '.join(expect)}: its migrations did not move "
        "it (the tool exited 0 without migrating, or ran other code)"
    )


def unknown_facts(step: Step) -> str:
    """A check whose expected value Rollgate does not know for the target ("" if known)."""
    target = step.args.get("target", "")
    if "expect_revisions" in step.args and step.args["expect_revisions"] is None:
        what = f"{step.args.get('database', step.service)} schema heads"
    elif "expect_service_version" in step.args and step.args["expect_service_version"] is None:
        what = "nova service version"
    else:
        return ""
    return (
        f"Rollgate has no record of {target}'s {what} (core/upstream.py): what was read is "
        "shown above and NOT compared; acknowledge to go on unverified, or reject"
    )


def service_version_release(version: int) -> str:
    ids = [rid for rid, facts in FACTS.items() if facts.nova_service_version == version]
    return "/".join(ids) if ids else "no known release"


def wrong_service_versions(step: Step, lines: list[str], left_out: frozenset[str]) -> str:
    """Every nova service row (host, binary, version) records the target's service version:
    of the hosts `hosts` names when given (not those `left_out`: an operator skipped them, and
    the final verification reports them), else of every host the table lists."""
    expect = step.args.get("expect_service_version")
    if expect is None:
        return ""
    judged = step.args.get("hosts")
    rows, problems = 0, []
    for line in lines:
        words = line.split("\t") if "\t" in line else line.split()
        if len(words) != 3 or not words[2].strip().isdigit():
            continue
        rows += 1
        host, binary, version = words[0].strip(), words[1].strip(), int(words[2])
        if judged is not None and (host not in judged or host in left_out):
            continue
        if version != expect:
            problems.append(
                f"{binary} on {host} records service version {version} "
                f"({service_version_release(version)})"
            )
    if rows == 0:
        return "no nova service row was read from the services table"
    if not problems:
        return ""
    shown = "; ".join(problems[:8]) + (
        f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
    )
    return (
        f"{shown}; {step.args.get('target')} writes {expect}: each of these runs other code "
        "(restart it on the new code), or is a record of a host that is gone (delete it: "
        "openstack compute service delete)"
    )


def wrong_output(step: Step, lines: list[str], left_out: frozenset[str] = frozenset()) -> str:
    """What is wrong with what a check printed ("" when it is what the plan expects):
    `expect` a version of the target release, `expect_line` exactly that line, `expect_match`
    a line the regular expression matches whole (each of the last line printed), or the
    multi-line checks above."""
    if "expect_running" in step.args:
        return wrong_running(step, lines)
    if "expect_revisions" in step.args:
        return wrong_revisions(step, lines)
    if "expect_service_version" in step.args:
        return wrong_service_versions(step, lines, left_out)
    if "expect_every_match" in step.args:
        return wrong_lines(step, lines)
    printed = lines[-1] if lines else ""
    if "expect" in step.args:
        return wrong_release(step, printed)
    if "expect_line" in step.args and printed.strip() != step.args["expect_line"]:
        return f"{step.node} printed {printed.strip()!r}, not {step.args['expect_line']!r}"
    if "expect_match" in step.args and not re.fullmatch(
        str(step.args["expect_match"]), printed.strip()
    ):
        return f"{step.node} printed {printed.strip()!r}"
    return ""
