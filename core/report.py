"""The change-record report of a run, folded from its journal: JSON, Markdown or HTML."""

from __future__ import annotations

import html
import json
import time
from typing import Any

from rollgate.core import events as ev
from rollgate.core.durations import span_words
from rollgate.core.hostrange import compress
from rollgate.core.plan import Plan
from rollgate.core.problems import budget_phase, problem_records
from rollgate.core.secrets import mask
from rollgate.core.state import RunState, fold
from rollgate.core.words import (
    RUN_COMPLETE,
    RUN_DEVIATIONS,
    STEP_DEVIATION,
    STEP_FAILED,
    phase_word,
    run_word,
)


def redact(text: str) -> str:
    """Mask values that look like credentials (core/secrets.py)."""
    return mask(text)


def _iso(moment: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment)) if moment else None


END_PAGE_PROBLEMS = 20  # problem records the end page shows; status --json has them all

# Run and phase words that come from how the run was driven, not from its steps' outcomes.
_CONTROL_WORDS = ("pending", "running", "paused", "stopped", "aborted")


def run_outcome(state: RunState) -> str:
    """The run's word, earned from its steps' outcomes (a run that ended on its own)."""
    if state.status in _CONTROL_WORDS or state.error:
        return state.status
    word = run_word(s.status for s in state.steps.values())
    if word == RUN_COMPLETE and state.outages:  # something stopped answering after its phase
        return RUN_DEVIATIONS
    return "failed" if word == "incomplete" else word


def outages(state: RunState) -> list[dict[str, Any]]:
    """What stopped answering after its phase moved it, as the watch saw it: since, until
    (None: not seen answering again) and for how long."""
    return [
        {
            "site": o.site,
            "what": o.what,
            "detail": redact(o.detail),
            "phase": o.phase,
            "since": _iso(o.since),
            "until": _iso(o.until),
            "down_s": round(o.until - o.since, 1) if o.until is not None else None,
        }
        for o in state.outages
    ]


def _found(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's problem records of checks that read the cloud not at the target."""
    return [p for p in r.get("problems", []) if p["outcome"] == STEP_DEVIATION]


def _outage_line(o: dict[str, Any]) -> str:
    end = f"until {o['until']} ({o['down_s']} s)" if o["until"] else "and not seen answering since"
    return f"{o['what']} at {o['site']} ({o['detail']}) down since {o['since']} {end}"


def phase_outcome(state: RunState, phase_id: str, step_ids: list[str]) -> str:
    status = state.phases.get(phase_id, "pending")
    if status in _CONTROL_WORDS:
        return status
    word = phase_word(state.steps[s].status for s in step_ids)
    return "failed" if word == "incomplete" else word


def not_upgraded(plan: Plan, state: RunState) -> list[dict[str, Any]]:
    """Every node that is not fully upgraded after the run, with why, and whether it was left
    fenced (disabled in the scheduler)."""
    out = []
    steps_of: dict[str, list[Any]] = {}
    for step in plan.steps:
        steps_of.setdefault(step.node, []).append(step)
    for name, node in state.nodes.items():
        if node.status == "done":
            continue
        why = []
        skipped = []
        for step in steps_of.get(name, []):
            st = state.steps[step.id]
            if st.status in STEP_FAILED:
                why.append(
                    f"{step.title}: {st.status}" + (f" ({redact(st.error)})" if st.error else "")
                )
            elif st.status == "skipped":
                skipped.append(step.title)
                if st.error.startswith("skipped: "):
                    why.append(
                        f"{step.title}: skipped ({redact(st.error.removeprefix('skipped: '))})"
                    )
        pending = sum(
            1 for step in steps_of.get(name, []) if state.steps[step.id].status == "pending"
        )
        if pending and not why:
            why.append(f"{pending} steps not run")
        out.append(
            {
                "node": name,
                "site": node.site,
                "state": node.status,
                "why": why,
                "skipped_steps": skipped,
                "fenced": bool(node.disabled),
                "version": node.version,  # what its program runs, read from the process
                "installed": dict(node.installed),  # package -> what the install put there
            }
        )
    return out


def moved_beyond(plan: Plan, state: RunState) -> dict[str, dict[str, str]]:
    """node -> {package: version} of what the installs moved beyond the packages the plan
    named (apt's dist-upgrade: libraries, plugins, Open vSwitch, libvirt ...)."""
    named: dict[str, set[str]] = {}
    for step in plan.steps:
        if step.action == "upgrade-packages":
            named.setdefault(step.node, set()).update(step.args.get("packages", ()))
    out: dict[str, dict[str, str]] = {}
    for name, node in state.nodes.items():
        if name not in named:
            continue
        extra = {p: v for p, v in node.installed.items() if p not in named[name]}
        if extra:
            out[name] = dict(sorted(extra.items()))
    return out


def declared_unmanaged(plan: Plan) -> list[str]:
    """What the inventory declared `unmanaged:` (the plan's scope checks carry it): hosts and
    services the APIs list that Rollgate leaves on whatever release they run."""
    from rollgate.core.cloud_scope import DECLARED

    out: list[str] = []
    for step in plan.steps:
        if step.action != "verify-scope" or step.args.get("deviation"):
            continue
        for d in step.args.get("unmanaged", ()):
            what = f" {', '.join(d['binaries'])}" if d.get("binaries") else ""
            out.append(
                f"{d['host']}{what} ({step.site}): "
                + DECLARED.format(reason=redact(str(d["reason"])))
            )
    return out


def version_changes(state: RunState) -> list[dict[str, Any]]:
    """Each package's version on each node before the run moved it, what the install put on
    disk, and what its running process runs (as the run's checks read them), grouped:
    [{package, before, installed, after, nodes: [...]}], most nodes first. `after` is what
    runs: "not read" when no check read it from the process. A package only an install's
    output named (apt's dist-upgrade: no process of its own) is moved_beyond's."""
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for name, node in state.nodes.items():
        for package in node.packages:
            before, after = node.packages.get(package, (None, None))
            installed = node.installed.get(package)
            key = (package, before or "not read", installed or "not read", after or "not read")
            groups.setdefault(key, []).append(name)
    return [
        {
            "package": package,
            "before": before,
            "installed": installed,
            "after": after,
            "nodes": sorted(nodes),
        }
        for (package, before, installed, after), nodes in sorted(
            groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))
        )
    ]


def method_notes(plan: Plan, state: RunState) -> list[str]:
    """What the run's deployment method says about what it left as the run made it."""
    from rollgate.core.methods import UnknownMethod, method

    try:
        return method(plan.method).outcome_notes(plan, state)
    except UnknownMethod:  # a journal of a method not installed here
        return []


def _version_lines(changes: list[dict[str, Any]]) -> list[str]:
    return [f"  {c['package']} on {compress(c['nodes'])}: {_moved(c)}" for c in changes]


def _moved(change: dict[str, Any]) -> str:
    """before -> what runs; what was installed when that differs (or was all that was read)."""
    before, installed, after = change["before"], change["installed"], change["after"]
    if after == "not read":
        text = f"{before} -> {installed} installed, what runs not read"
    elif not after[:1].isdigit():  # the probe's word: stale, not-running, unknown
        text = f"{before} -> {installed} installed, but its process: {after}"
    elif installed not in ("not read", after):
        text = f"{before} -> {after} running ({installed} installed, not running)"
    else:
        text = f"{before} -> {after}"
    moved = after if after != "not read" else installed
    return text + ("  (did not move)" if before == moved and before != "not read" else "")


def _clock(moment: float) -> str:
    return time.strftime("%H:%M", time.localtime(moment))


def time_lines(state: RunState, window: tuple[float, float] | None) -> list[str]:
    """How long the run took, and how that sat with the maintenance window."""
    if state.started is None:
        return []
    end = state.finished if state.finished is not None else time.time()
    line = f"took {span_words(end - state.started)} ({_clock(state.started)} -> {_clock(end)})"
    if window is not None:
        start, close = window
        if state.started < start:
            line += f"; started {span_words(start - state.started)} before the window opened"
        elif end > close:
            line += f"; went past the window's end ({_clock(close)}) by {span_words(end - close)}"
        else:
            line += f"; inside the window (it ends {_clock(close)}, {span_words(close - end)} left)"
    return [line]


def deviation_line(state: RunState) -> str:
    """Retries, skips, acknowledged warnings and auto-approvals, in one line ("" if none)."""
    retries = sum(1 for s in state.steps.values() if s.attempts > 1)
    skips = sum(1 for s in state.steps.values() if s.status == "skipped")
    warnings = sum(1 for s in state.steps.values() if s.status == "warning")
    auto = sum(1 for g in state.gates if g.operator == "auto-approve")
    parts = [
        f"{n} {word}"
        for n, word in (
            (retries, "retried steps"),
            (skips, "skipped steps"),
            (warnings, "warnings acknowledged"),
            (auto, "gates auto-approved"),
        )
        if n
    ]
    return "deviations: " + ", ".join(parts) if parts else ""


def end_summary(
    plan: Plan, state: RunState, window: tuple[float, float] | None = None
) -> list[str]:
    """What the end of a run says, in the console and headless alike: the run's word, node
    counts, its time against the window, deviations, and every node not upgraded with why
    and whether it was left fenced."""
    counts = state.counts()
    lines = [
        f"run {run_outcome(state)}" + (f": {state.error}" if state.error else ""),
        "nodes: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        *time_lines(state, window),
    ]
    deviations = deviation_line(state)
    if deviations:
        lines.append(deviations)
    for outage in outages(state):
        lines.append("outage: " + _outage_line(outage))
    changes = version_changes(state)
    if changes:
        lines.append("versions before -> after (as the running processes report them):")
        lines += _version_lines(changes)
    lines += method_notes(plan, state)
    lines += declared_unmanaged(plan)
    beyond = moved_beyond(plan, state)
    if beyond:
        count = sum(len(v) for v in beyond.values())
        lines.append(f"{count} packages beyond the named ones moved on {len(beyond)} nodes "
                     "(the whole node from the pocket; the report lists them)")  # fmt: skip
    missing = not_upgraded(plan, state)
    if missing:
        lines.append(f"{len(missing)} node(s) not upgraded:")
    for node in missing:
        fenced = ", left disabled in the scheduler" if node["fenced"] else ""
        lines.append(f"  {node['node']} ({node['site']}): {node['state']}{fenced}")
        lines += [f"      {why}" for why in node["why"]]
        if len(node["skipped_steps"]) > 1:
            lines.append(f"      skipped with it: {', '.join(node['skipped_steps'])}")
    problems = problem_records(plan, state)
    if problems:
        lines.append(f"{len(problems)} step(s) did not end as planned:")
    for record in problems[:END_PAGE_PROBLEMS]:
        lines.append("  " + problem_line(record))
    if len(problems) > END_PAGE_PROBLEMS:
        more = len(problems) - END_PAGE_PROBLEMS
        lines.append(f"  and {more} more: rollgate status RUN --json lists them all")
    return lines


def problem_line(record: dict[str, Any]) -> str:
    """A problem record (core/problems.py) as one line a person reads."""
    exit_status = record["exit_status"]
    status = f" (exit {exit_status})" if exit_status not in (None, 0) else ""
    decided = (
        f"; {record['decision']} by {record['decided_by']}"
        + (f": {record['comment']}" if record["comment"] else "")
        if record["decision"]
        else ""
    )
    error = f": {record['error']}" if record["error"] else ""
    return f"{record['node']}: {record['title']} {record['outcome']}{status}{error}{decided}"


FAILED_TAIL = 5  # output lines kept per failed attempt


def failed_attempts(plan: Plan, events: list[ev.Event]) -> list[dict[str, Any]]:
    """Every attempt of a step that failed (a retried one too: each is in the record), with its
    last output lines and what was decided at the gate that followed it, by whom and why."""
    tails: dict[str, list[str]] = {}  # step -> its output since its attempt started
    asked: dict[str, list[str]] = {}  # gate -> the steps it decides (a budget gate: a phase's)
    waiting: dict[str, dict[str, Any]] = {}  # step -> its failure not decided yet
    phase_of = {step.id: phase.id for phase in plan.phases for step in phase.steps}
    out: list[dict[str, Any]] = []
    for e in events:
        if isinstance(e, ev.StepStarted):
            tails[e.step] = []
        elif isinstance(e, ev.StepOutput):
            tail = tails.setdefault(e.step, [])
            tail.extend(e.lines)
            del tail[:-FAILED_TAIL]
        elif isinstance(e, ev.StepFinished) and e.outcome in STEP_FAILED:
            record = {
                "step": e.step,
                "attempt": e.attempt,
                "outcome": e.outcome,
                "exit_status": e.exit_status,
                "error": redact(e.error),
                "last_output": [redact(line) for line in tails.get(e.step, [])],
                "decision": None,
                "decided_by": None,
                "comment": "",
            }
            out.append(record)
            waiting[e.step] = record
        elif isinstance(e, ev.GateOpened) and e.kind in ("failure", "interrupted"):
            if e.step is not None:
                asked[e.gate] = [e.step]
            elif e.gate.startswith("gate:failures:"):  # a phase's failure budget spent
                phase = budget_phase(e.gate)
                asked[e.gate] = [s for s in waiting if phase_of.get(s) == phase]
        elif isinstance(e, ev.GateDecided) and e.gate in asked:
            for step in asked.pop(e.gate):
                record = waiting.pop(step, {})
                if record:
                    record.update(decision=e.decision, decided_by=e.operator,
                                  comment=redact(e.comment))  # fmt: skip
    return out


def build_report(plan: Plan, header: dict[str, Any], events: list[ev.Event]) -> dict[str, Any]:
    state = fold(plan, events)
    spans: dict[str, list[float | None]] = {}  # phase -> [first start, last finish]
    for event in events:
        if isinstance(event, ev.PhaseStarted):
            spans.setdefault(event.phase, [event.time, None])
        elif isinstance(event, ev.PhaseFinished) and event.phase in spans:
            spans[event.phase][1] = event.time
    phases = []
    sites: dict[str, list[float]] = {}
    for phase in plan.phases:
        start, end = spans.get(phase.id, [None, None])
        phases.append(
            {
                "phase": phase.id,
                "title": phase.title,
                "site": phase.site,
                "outcome": phase_outcome(state, phase.id, [s.id for s in phase.steps]),
                "start": _iso(start),
                "end": _iso(end),
                "duration_s": round(end - start, 1) if start and end else None,
            }
        )
        if start and end:
            span = sites.setdefault(phase.site, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    by_id = {step.id: step for step in plan.steps}

    def named(step_id: str | None) -> dict[str, Any]:
        """A step as a person reads it (its title and node), with its id for tools."""
        step = by_id.get(step_id or "")
        return {
            "step": step_id,
            "title": step.title if step else step_id,
            "node": step.node if step else None,
        }

    skips = [
        {**named(e.step), "reason": redact(e.error.removeprefix("skipped: "))}
        for e in events
        if isinstance(e, ev.StepFinished) and e.outcome == "skipped"
    ]
    return {
        "cloud": plan.cloud,
        "from": plan.source,
        "to": plan.target,
        "skip_level": plan.skip_level,
        "run_id": header.get("run_id") or state.run_id,
        "operator": header.get("operator"),
        "dry_run": bool(header.get("dry_run")),
        "rollback": header.get("rollback"),  # {run, site, phase}: this run undid another's
        "window": _window_record(header.get("window"), state),
        "outcome": run_outcome(state),
        "error": state.error,
        "not_upgraded": not_upgraded(plan, state),
        "problems": problem_records(plan, state),
        "outages": outages(state),
        "versions": version_changes(state),
        "method_notes": method_notes(plan, state),
        "unmanaged": declared_unmanaged(plan),
        "moved_beyond": moved_beyond(plan, state),
        "start": _iso(state.started),
        "end": _iso(state.finished),
        "duration_s": round(state.finished - state.started, 1)
        if state.started and state.finished
        else None,
        "phases": phases,
        "sites": {
            site: {"start": _iso(a), "end": _iso(b), "duration_s": round(b - a, 1)}
            for site, (a, b) in sites.items()
        },
        "nodes": {name: node.status for name, node in state.nodes.items()},
        "steps": [
            {
                **named(step.id),
                "phase": phase.title,
                "site": phase.site,
                "outcome": state.steps[step.id].status,
                "attempts": state.steps[step.id].attempts,
                "exit_status": state.steps[step.id].exit_status,
                "start": _iso(state.steps[step.id].started),
                "duration_s": round(state.steps[step.id].duration, 1),
            }
            for phase in plan.phases
            for step in phase.steps
        ],
        "failures": [{**named(f.pop("step")), **f} for f in failed_attempts(plan, events)],
        "gates": [
            {
                "gate": g.id,
                "kind": g.kind,
                "title": g.title,
                "decision": g.decision,
                "operator": g.operator,
                "comment": redact(g.comment),
                "opened": _iso(g.opened),
                "decided": _iso(g.decided),
            }
            for g in state.gates
        ],
        "deviations": {
            "skips": skips,
            "retries": [
                {**named(s.id), "attempts": s.attempts}
                for s in state.steps.values()
                if s.attempts > 1
            ],
            "interrupted_decisions": [
                {
                    **named(g.step),
                    "decision": g.decision,
                    "operator": g.operator,
                    "comment": g.comment,
                }
                for g in state.gates
                if g.kind == "interrupted"
            ],
            "auto_approved": sum(1 for g in state.gates if g.operator == "auto-approve"),
        },
        "notes": [{"time": _iso(t), "operator": o, "text": redact(x)} for t, o, x in state.notes],
        "backups": [
            {
                "node": e.node,
                "service": e.service,
                "file": e.file,
                "sha256": e.sha256,
                "source": e.source,
                "databases": list(e.databases),
                "where": e.where,
            }
            for e in events
            if isinstance(e, ev.BackupTaken)
        ],
    }


def _window_record(window: dict[str, Any] | None, state: RunState) -> dict[str, Any] | None:
    """The maintenance window and whether the run (its start, its steps, its end) stayed
    inside it."""
    if not window:
        return None
    start, end = float(window["start"]), float(window["end"])
    times = [t for s in state.steps.values() for t in (s.started, s.finished) if t is not None]
    times += [t for t in (state.started, state.finished) if t is not None]
    inside = all(start <= t <= end for t in times)
    last = max(times, default=None)
    return {
        "start": _iso(start),
        "end": _iso(end),
        "inside": inside,
        "over_by_s": round(last - end, 1) if last is not None and last > end else 0,
    }


def _window_line(w: dict[str, Any] | None) -> str:
    if not w:
        return "No maintenance window was given."
    if w["inside"]:
        return f"Maintenance window {w['start']} -> {w['end']}: the run stayed inside it."
    over = f"; it ended {w['over_by_s']} s after the window closed" if w["over_by_s"] else ""
    return f"Maintenance window {w['start']} -> {w['end']}: the run went OUTSIDE it{over}."


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)


def _what(r: dict[str, Any]) -> str:
    """The record's title: an upgrade, or the rollback of another run's phases at a site."""
    back = r.get("rollback")
    if back:
        phases = f"its {back['phase']} phase" if back.get("phase") else "its phases"
        return (f"Rollback of {r['cloud']} at {back['site']}: {r['from']} -> {r['to']} "
                f"(undoes {phases} of run {back['run']})")  # fmt: skip
    return f"Upgrade of {r['cloud']}: {r['from']} -> {r['to']}" + (
        " (skip-level)" if r["skip_level"] else ""
    )


def to_markdown(r: dict[str, Any]) -> str:
    lines = [
        ("# DRY RUN (nothing was executed): " if r.get("dry_run") else "# ") + _what(r),
        "",
        f"Run `{r['run_id']}` by {r['operator']}: **{r['outcome']}**, "
        f"{r['start']} -> {r['end']} ({r['duration_s']} s)",
        "",
    ]
    if r.get("error"):
        lines += [f"Engine error: {r['error']}", ""]
    missing = r.get("not_upgraded", [])
    lines += ["## Nodes not upgraded", ""]
    lines += [
        f"- **{n['node']}** ({n['site']}): {n['state']}"
        + (f", runs {n['version']}" if n.get("version") else "")
        + (", left disabled in the scheduler" if n["fenced"] else "")
        + "".join(f"\n    - {w}" for w in n["why"])
        + (
            f"\n    - skipped with it: {', '.join(n['skipped_steps'])}"
            if len(n["skipped_steps"]) > 1
            else ""
        )
        for n in missing
    ] or ["None: every node finished every step ok."]
    lines += ["", *r.get("method_notes", [])] if r.get("method_notes") else []
    if r.get("unmanaged"):
        lines += ["", "## Not upgraded by Rollgate (declared unmanaged)", ""]
        lines += [f"- {line}" for line in r["unmanaged"]]
    if r.get("moved_beyond"):
        lines += ["", "## Packages moved beyond the named ones", ""]
        lines += [
            f"- {node}: " + ", ".join(f"{p} {v}" for p, v in packages.items())
            for node, packages in r["moved_beyond"].items()
        ]
    lines += ["", "## Final verification and outages", ""]
    lines += [
        f"- deviation: {f['title']} on {f['node']}: {_without_node(f['error'], f['node'])}"
        + "".join(f"\n    - `{o}`" for o in f["last_output"])
        for f in _found(r)
    ]
    lines += [f"- outage: {_outage_line(o)}" for o in r.get("outages", [])]
    if not _found(r) and not r.get("outages"):
        lines.append("None: every check read the cloud at the target; nothing went down.")
    lines += ["", _window_line(r.get("window"))]
    lines += ["", "## Versions before and after", ""]
    lines += [
        f"- {c['package']} on {compress(c['nodes'])} ({len(c['nodes'])} nodes): {_moved(c)}"
        for c in r.get("versions", [])
    ] or ["No version was read (a dry run, or a method without version checks)."]
    lines += [
        "",
        "## Phases",
        "",
        "| phase | site | outcome | start | end | seconds |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {_cell(p['title'])} | {_cell(p['site'])} | {_cell(p['outcome'])} | "
        f"{_cell(p['start'])} | {_cell(p['end'])} | {_cell(p['duration_s'])} |"
        for p in r["phases"]
    ]
    lines += ["", "## Steps", ""]
    lines += _step_tables(r.get("steps", []))
    lines += ["", "## Sites", "", "| site | start | end | seconds |", "|---|---|---|---|"]
    lines += [
        f"| {s} | {v['start']} | {v['end']} | {v['duration_s']} |" for s, v in r["sites"].items()
    ]
    lines += [
        "",
        "## Gates",
        "",
        "| gate | decision | operator | comment | decided |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {_cell(g['title'])} | {_cell(g['decision'] or 'open')} | {_cell(g['operator'])} | "
        f"{_cell(g['comment'])} | {_cell(g['decided'])} |"
        for g in r["gates"]
    ]
    lines += ["", "## Failures", ""]
    lines += [
        f"- {f['title']} on {f['node']} (attempt {f['attempt']}): {f['outcome']} — {f['error']}"
        + f"; {_decided(f)}\n"
        + "".join(f"    - `{o}`\n" for o in f["last_output"])
        for f in r["failures"]
    ] or ["None."]
    d = r["deviations"]
    lines += ["", "## Deviations", ""]
    lines += [f"- skipped {s['title']} on {s['node']}: {s['reason']}" for s in d["skips"]]
    lines += [
        f"- retried {x['title']} on {x['node']} ({x['attempts']} attempts)" for x in d["retries"]
    ]
    lines += [
        f"- interrupted {x['title']} on {x['node']}: {x['decision']} by {x['operator']}"
        for x in d["interrupted_decisions"]
    ]
    if d["auto_approved"]:
        lines += [f"- {d['auto_approved']} gates approved automatically (--auto-approve)"]
    lines += ["", "## Backups (what a restore needs)", ""]
    lines += [
        f"- {b['service']} on {b['node']}, taken at {b['source']} "
        f"({', '.join(b['databases'])}): "
        + (f"`{b['file']}` sha256 `{b['sha256']}`" if b["file"] else b["where"])
        for b in r.get("backups", [])
    ] or ["None taken."]
    counts: dict[str, int] = {}
    for status in r["nodes"].values():
        counts[status] = counts.get(status, 0) + 1
    lines += ["", "## Nodes", "", ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), ""]
    lines += [f"- {n}: {s}" for n, s in r["nodes"].items() if s != "done"]
    return "\n".join(lines) + "\n"


STEP_HEADERS = ["step", "node", "outcome", "attempts", "exit", "start", "seconds"]


def _step_row(x: dict[str, Any]) -> list[Any]:
    return [x["title"], x["node"], x["outcome"], x["attempts"], x["exit_status"], x["start"],
            x["duration_s"]]  # fmt: skip


def _step_tables(steps: list[dict[str, Any]]) -> list[str]:
    """Every step of the plan, phase by phase, in plan order."""
    lines: list[str] = []
    phase = None
    for x in steps:
        if (x["phase"], x["site"]) != phase:
            phase = (x["phase"], x["site"])
            lines += ["", f"### {x['phase']} at {x['site']}", ""]
            lines += ["| " + " | ".join(STEP_HEADERS) + " |", "|---" * len(STEP_HEADERS) + "|"]
        lines.append("| " + " | ".join(_cell(v) for v in _step_row(x)) + " |")
    return lines or ["No steps."]


def _without_node(error: str, node: str) -> str:
    """A check's words without the node they begin with (the line names it already)."""
    for lead in (f"on {node}: ", f"{node}: "):
        if error.startswith(lead):
            return error.removeprefix(lead)
    return error


def _decided(failure: dict[str, Any]) -> str:
    """What was decided after a failed attempt, by whom and why."""
    if not failure.get("decision"):
        return "no decision (the run ended first)"
    why = f" ({failure['comment']})" if failure.get("comment") else ""
    return f"{failure['decision']} by {failure['decided_by']}{why}"


def _cell(value: Any) -> str:
    """A Markdown table cell: `|` would end it, a newline would end the row."""
    return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#111}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #999;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#eee}pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}"
    ".bad{color:#a00;font-weight:bold}.ok{color:#070;font-weight:bold}"
)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(c if c is not None else ''))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(r: dict[str, Any]) -> str:
    """The change record as one self-contained HTML page: tables, no external assets."""
    e = html.escape
    title = ("DRY RUN (nothing was executed): " if r.get("dry_run") else "") + _what(r)
    word = str(r["outcome"])
    good = word.startswith("complete") and "deviations" not in word
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>Rollgate report {e(str(r['run_id']))}</title><style>{_CSS}</style>",
        f"<h1>{e(title)}</h1>",
        f"<p>Run <code>{e(str(r['run_id']))}</code> by {e(str(r['operator']))}: "
        f"<span class={'ok' if good else 'bad'}>{e(word)}</span>, {e(str(r['start']))} -> "
        f"{e(str(r['end']))} ({e(str(r['duration_s']))} s)</p>",
    ]
    inside = (r.get("window") or {}).get("inside", True)
    parts.append(f"<p class={'ok' if inside else 'bad'}>{e(_window_line(r.get('window')))}</p>")
    if r.get("error"):
        parts.append(f"<p class=bad>Engine error: {e(r['error'])}</p>")
    parts += [f"<p class=bad>{e(note)}</p>" for note in r.get("method_notes", [])]
    if r.get("unmanaged"):
        parts.append("<h2>Not upgraded by Rollgate (declared unmanaged)</h2>")
        parts += [f"<p>{e(line)}</p>" for line in r["unmanaged"]]
    if r.get("moved_beyond"):
        parts.append("<h2>Packages moved beyond the named ones</h2>")
        parts.append(
            _table(
                ["node", "package", "installed"],
                [[n, p, v] for n, pk in r["moved_beyond"].items() for p, v in pk.items()],
            )
        )
    parts.append("<h2>Nodes not upgraded</h2>")
    parts.append(
        _table(
            ["node", "site", "state", "version", "left fenced", "why", "skipped with it"],
            [
                [
                    n["node"],
                    n["site"],
                    n["state"],
                    n.get("version") or "",
                    "yes" if n["fenced"] else "no",
                    "; ".join(n["why"]),
                    ", ".join(n["skipped_steps"]),
                ]
                for n in r.get("not_upgraded", [])
            ],
        )
    )
    parts.append("<h2>Final verification: deviations</h2>")
    parts.append(
        _table(
            ["check", "node", "what it read", "last output"],
            [
                [
                    f["title"],
                    f["node"],
                    _without_node(f["error"], f["node"]),
                    " / ".join(f["last_output"]),
                ]
                for f in _found(r)
            ],
        )
    )
    parts.append("<h2>Outages after a phase</h2>")
    parts.append(
        _table(
            ["what", "site", "detail", "phase", "since", "until", "seconds down"],
            [
                [o["what"], o["site"], o["detail"], o["phase"], o["since"],
                 o["until"] or "not seen answering again", o["down_s"]]
                for o in r.get("outages", [])
            ],
        )
    )  # fmt: skip
    parts.append("<h2>Versions before and after</h2>")
    parts.append(
        _table(
            ["package", "nodes", "count", "before", "installed", "running after"],
            [
                [
                    c["package"],
                    compress(c["nodes"]),
                    len(c["nodes"]),
                    c["before"],
                    c["installed"],
                    c["after"],
                ]
                for c in r.get("versions", [])
            ],
        )
    )
    parts.append("<h2>Phases</h2>")
    parts.append(
        _table(
            ["phase", "site", "outcome", "start", "end", "seconds"],
            [
                [p["title"], p["site"], p["outcome"], p["start"], p["end"], p["duration_s"]]
                for p in r["phases"]
            ],
        )
    )
    parts.append("<h2>Steps</h2>")
    parts.append(
        _table(["phase", *STEP_HEADERS], [[x["phase"], *_step_row(x)] for x in r.get("steps", [])])
    )
    parts.append("<h2>Sites</h2>")
    parts.append(
        _table(
            ["site", "start", "end", "seconds"],
            [[s, v["start"], v["end"], v["duration_s"]] for s, v in r["sites"].items()],
        )
    )
    parts.append("<h2>Gates</h2>")
    parts.append(
        _table(
            ["gate", "kind", "decision", "operator", "comment", "opened", "decided"],
            [
                [
                    g["title"],
                    g["kind"],
                    g["decision"] or "open",
                    g["operator"],
                    g["comment"],
                    g["opened"],
                    g["decided"],
                ]
                for g in r["gates"]
            ],
        )
    )
    parts.append("<h2>Failures</h2>")
    if not r["failures"]:
        parts.append("<p>None.</p>")
    for f in r["failures"]:
        parts.append(
            f"<h3>{e(str(f['title']))} on {e(str(f['node']))} (attempt {f['attempt']}): "
            f"{e(f['outcome'])}</h3><p>{e(f['error'])}; {e(_decided(f))}</p>"
            f"<pre>{e(chr(10).join(f['last_output']))}</pre>"
        )
    d = r["deviations"]
    parts.append("<h2>Deviations</h2>")
    parts.append(
        _table(
            ["what", "step", "node", "detail"],
            [["skipped", s["title"], s["node"], s["reason"]] for s in d["skips"]]
            + [
                ["retried", x["title"], x["node"], f"{x['attempts']} attempts"]
                for x in d["retries"]
            ]
            + [
                ["interrupted", x["title"], x["node"], f"{x['decision']} by {x['operator']}"]
                for x in d["interrupted_decisions"]
            ],
        )
    )
    if d["auto_approved"]:
        parts.append(f"<p>{d['auto_approved']} gates approved automatically (--auto-approve).</p>")
    parts.append("<h2>Backups (what a restore needs)</h2>")
    parts.append(
        _table(
            ["service", "node", "taken at", "databases", "file or place", "sha256"],
            [
                [b["service"], b["node"], b["source"], ", ".join(b["databases"]),
                 b["file"] or b["where"], b["sha256"]]
                for b in r.get("backups", [])
            ],
        )
    )  # fmt: skip
    parts.append("<h2>Notes</h2>")
    parts.append(
        _table(
            ["time", "operator", "note"],
            [[n["time"], n["operator"], n["text"]] for n in r["notes"]],
        )
    )
    counts: dict[str, int] = {}
    for status in r["nodes"].values():
        counts[status] = counts.get(status, 0) + 1
    parts.append("<h2>Nodes</h2>")
    parts.append(_table(["state", "nodes"], [[k, v] for k, v in sorted(counts.items())]))
    return "\n".join(parts) + "\n</html>\n"
