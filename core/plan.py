"""The upgrade plan: phases in DOMAIN.md §1 order, stages of steps bound to nodes, and gates.

JSON schema (format "rollgate.plan/1"), stable for other tools:
  {format, cloud, method, upgrade: {from, to, skip_level}, inventory_digest, digest,
   policy: {gates, canary, batch_size, failure_budget, site_concurrency, step_timeout,
            heartbeat_timeout, start_grace, transport_retries},
   phases: [{id, tier, site, wave, title, gate, stages: [
       {id, title, kind, gate, steps: [
           {id, action, service, role, node, site, executor, command, args, exit_codes,
            repeat_max, title, gate}]}]}]}
  gate = null | {id, kind: phase|canary|step|downtime, title}  (downtime: a skip-level stop)
  executor = ssh (command on the node) | local (command on the deploy host) | cloud (API call)
  stage kind = pre | control | network | canary | batch | post
Stages run in order; inside a stage each node's steps run in order and nodes run in parallel.
Phases of one wave (one tier) run site by site, up to policy.site_concurrency at once.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import json
import operator
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from rollgate.core import methods
from rollgate.core.hostrange import compress
from rollgate.core.inventory import Inventory, Node, Site
from rollgate.core.plan_checks import (
    after_restart,
    running_version,
    schema_version,
    scope_phase,
    service_versions,
    verify_api,
    verify_phase,
)
from rollgate.core.recipes import Recipe, load_recipe, render, render_title
from rollgate.core.releases import package_source
from rollgate.core.roles import AGENT_ORDER, ROLES, TIERS
from rollgate.core.secrets import mask

PLAN_FORMAT = "rollgate.plan/1"


@dataclass(frozen=True)
class Gate:
    id: str
    kind: str  # phase | canary | step
    title: str


ONLY_ZERO_OK: dict[int, str] = {0: "ok"}  # a step's exit codes when it names none
NO_ARGS: dict[str, Any] = {}  # the args of a step that has none (shared: steps never change)


# slots: a plan of 20,000 nodes holds 380,000 steps. Fields in alphabetical order, so orjson
# writes a step itself as its record with sorted keys (the plan's digest: plan_digest)
@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    action: str
    args: dict[str, Any] = field(default_factory=dict)
    command: str | None
    executor: str  # ssh | local | cloud
    # shared, never changed: one dict per recipe action, not one per step
    exit_codes: dict[int, str] = field(default_factory=lambda: ONLY_ZERO_OK)
    gate: Gate | None = None
    id: str
    node: str
    repeat_max: int = 1
    role: str
    service: str
    site: str
    title: str


@dataclass(frozen=True)
class Stage:
    id: str
    title: str
    kind: str  # pre | control | network | canary | batch | post
    steps: tuple[Step, ...]
    gate: Gate | None = None

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(s.node for s in self.steps))


@dataclass(frozen=True)
class Phase:
    id: str
    tier: str
    site: str
    wave: int
    title: str
    stages: tuple[Stage, ...]
    gate: Gate | None = None

    @property
    def steps(self) -> list[Step]:
        return [s for st in self.stages for s in st.steps]


@dataclass(frozen=True)
class Plan:
    cloud: str
    method: str
    source: str
    target: str
    skip_level: bool
    inventory_digest: str
    policy: dict[str, Any]
    phases: tuple[Phase, ...]
    digest: str = ""

    @property
    def steps(self) -> list[Step]:
        return [s for p in self.phases for s in p.steps]

    def step(self, step_id: str) -> Step:
        return self._by_id[step_id]  # KeyError for a step not in the plan

    @functools.cached_property
    def _by_id(self) -> dict[str, Step]:
        """Each step by its id, made once (a plan of 10,000 nodes has 200,000 of them)."""
        return {s.id: s for p in self.phases for st in p.stages for s in st.steps}

    def to_dict(self) -> dict[str, Any]:
        return {**self._head(), "phases": [_phase_dict(p) for p in self.phases]}

    def _head(self) -> dict[str, Any]:
        """Everything of to_dict() but the phases."""
        return {
            "format": PLAN_FORMAT,
            "cloud": self.cloud,
            "method": self.method,
            "upgrade": {"from": self.source, "to": self.target, "skip_level": self.skip_level},
            "inventory_digest": self.inventory_digest,
            "digest": self.digest,
            "policy": self.policy,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        consume: bool = False,
        phases: Iterable[dict[str, Any]] | None = None,
    ) -> Plan:
        """`consume`: the record is the caller's no more; each phase's part of it is let go
        once read (a plan of 10,000 nodes and its record were too much at once). `phases`:
        the phases' records one at a time, instead of data's (core/plan.py plan_from_record)."""
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a {PLAN_FORMAT} document (format {data.get('format')!r})")
        sharing = Sharing()
        if phases is not None:
            built = tuple(_phase_from([record], 0, True, sharing) for record in phases)
        else:
            records = data["phases"]
            built = tuple(_phase_from(records, i, consume, sharing) for i in range(len(records)))
        up = data["upgrade"]
        return cls(
            data["cloud"],
            data["method"],
            up["from"],
            up["to"],
            up["skip_level"],
            data["inventory_digest"],
            data["policy"],
            built,
            data.get("digest", ""),
        )


_STEP_ORDER = tuple(f.name for f in fields(Step))
_STEP_FIELDS = frozenset(_STEP_ORDER)


_WORDS = ("action", "service", "role", "node", "site", "executor")
_EXIT_CODES_READ: dict[tuple[tuple[str, str], ...], dict[int, str]] = {}


def _exit_codes_from(record: dict[str, str]) -> dict[int, str]:
    """Exit codes from their record, one shared table per distinct one (never changed)."""
    key = tuple(record.items())
    codes = _EXIT_CODES_READ.get(key)
    if codes is None:
        codes = {int(k): v for k, v in record.items()}
        if len(_EXIT_CODES_READ) < 4096:
            _EXIT_CODES_READ[key] = codes
    return codes


class Sharing:
    """Equal commands, titles and argument tables of a plan's steps, one copy of each: a
    thousand computes run the same commands (161,089 commands of a 10 x 1,000 plan are 94
    texts; its 211,332 titles 40,269), which each step held a copy of (a third of what a
    replay held)."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._args: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}

    def text(self, text: str | None) -> str | None:
        return None if text is None else self._texts.setdefault(text, text)

    def args(self, args: dict[str, Any]) -> dict[str, Any]:
        """One table for equal ones (steps never change theirs); one with a list in it is
        kept as it is."""
        if not args:
            return NO_ARGS
        key = tuple(args.items())
        try:
            return self._args.setdefault(key, args)
        except TypeError:  # a value that cannot be a key (a list): not shared
            return args


def _step_from_dict(data: dict[str, Any], sharing: Sharing) -> Step:
    """A step from its record; a plan holds tens of thousands, so when the record has exactly
    the step's fields it is built without running the dataclass __init__ (same result)."""
    values = dict(data)
    values["gate"] = _gate(data["gate"])
    values["exit_codes"] = _exit_codes_from(data["exit_codes"])
    # a plan of 10,000 nodes read back: the same few words in every step, one copy of each
    # (with shared exit codes and empty args: 450 MB -> 250 MB)
    for name in _WORDS:
        if type(values.get(name)) is str:
            values[name] = sys.intern(values[name])
    values["command"] = sharing.text(values.get("command"))
    values["title"] = sharing.text(values.get("title"))
    values["args"] = sharing.args(values.get("args") or NO_ARGS)
    if values.keys() != _STEP_FIELDS:
        return Step(**values)  # raises on unknown or missing fields
    return _new_step(**values)


_STEP_DEFAULTS = {"args": NO_ARGS, "exit_codes": ONLY_ZERO_OK, "repeat_max": 1, "gate": None}


def _step_maker() -> Any:
    """Step(**values) without the frozen dataclass's __init__ (an object.__setattr__ per
    field): each field's slot set directly, in a function written out once per field as
    dataclasses writes __init__ (0.98 against 1.83 µs a step; a plan builds 400,000)."""
    params = ", ".join(f"{n}=_D_{n}" if n in _STEP_DEFAULTS else n for n in _STEP_ORDER)
    body = "".join(f"    _set_{n}(step, {n})\n" for n in _STEP_ORDER)
    scope: dict[str, Any] = {"_new": object.__new__, "Step": Step}
    scope.update({f"_set_{n}": getattr(Step, n).__set__ for n in _STEP_ORDER})
    scope.update({f"_D_{n}": v for n, v in _STEP_DEFAULTS.items()})
    exec(f"def _new_step(*, {params}):\n    step = _new(Step)\n{body}    return step\n", scope)
    return scope["_new_step"]


_new_step = _step_maker()
_step_fields = operator.attrgetter(*_STEP_ORDER)


def _phase_from(records: list[dict[str, Any]], i: int, consume: bool, sharing: Sharing) -> Phase:
    p = records[i]
    if consume:
        records[i] = None  # type: ignore[call-overload]
    return Phase(
        id=p["id"],
        tier=p["tier"],
        site=p["site"],
        wave=p["wave"],
        title=p["title"],
        gate=_gate(p["gate"]),
        stages=tuple(
            Stage(
                id=s["id"],
                title=s["title"],
                kind=s["kind"],
                gate=_gate(s["gate"]),
                steps=tuple(_step_from_dict(st, sharing) for st in s["steps"]),
            )
            for s in p["stages"]
        ),
    )


def _gate(data: dict[str, Any] | None) -> Gate | None:
    return Gate(**data) if data else None


def _step_dict(step: Step, *, copies: bool = True) -> dict[str, Any]:
    """A step's record. `copies` False: its args and exit codes are the step's own tables,
    for a caller that only serialises them (the digest, the journal's plan record)."""
    # flat JSON values but for gate and exit codes (no asdict copy), read at once
    d = dict(zip(_STEP_ORDER, _step_fields(step), strict=True))
    if step.command is not None:  # stored and shown: a literal password never leaves
        d["command"] = mask(step.command)
    if copies:
        d["args"] = dict(step.args)
    gate = step.gate
    d["gate"] = {"id": gate.id, "kind": gate.kind, "title": gate.title} if gate else None
    codes = _exit_codes_record(step.exit_codes)
    d["exit_codes"] = dict(codes) if copies else codes
    return d


_EXIT_CODE_RECORDS: dict[int, tuple[dict[int, str], dict[str, str]]] = {}


def _exit_codes_record(codes: dict[int, str]) -> dict[str, str]:
    """`codes` as JSON keys, once per shared table (a recipe action's, for every step)."""
    known = _EXIT_CODE_RECORDS.get(id(codes))
    if known is None or known[0] is not codes or len(_EXIT_CODE_RECORDS) > 4096:
        if len(_EXIT_CODE_RECORDS) > 4096:
            _EXIT_CODE_RECORDS.clear()
        known = _EXIT_CODE_RECORDS[id(codes)] = (
            codes,  # kept: its id is not reused while it is here
            {str(k): v for k, v in sorted(codes.items())},
        )
    return known[1]  # shared: copied by a caller that hands it out


def _json_step(step: Step) -> Step | dict[str, Any]:
    """What orjson writes as a step's record (with OPT_NON_STR_KEYS for its exit codes): the
    step itself (its fields are the record's, in sorted order), or its record as a dict when
    its command must be masked."""
    if step.command is None or mask(step.command) == step.command:
        return step
    return _step_dict(step, copies=False)


JSON_OPTIONS = orjson.OPT_NON_STR_KEYS  # exit codes are ints; JSON's keys are strings


def _phase_dict(phase: Phase, *, copies: bool = True) -> dict[str, Any]:
    """`copies` False: steps as _json_step gives them, for orjson (JSON_OPTIONS) only."""
    return {
        "id": phase.id,
        "tier": phase.tier,
        "site": phase.site,
        "wave": phase.wave,
        "title": phase.title,
        "gate": asdict(phase.gate) if phase.gate else None,
        "stages": [
            {
                "id": s.id,
                "title": s.title,
                "kind": s.kind,
                "gate": asdict(s.gate) if s.gate else None,
                "steps": [_step_dict(st) for st in s.steps]
                if copies
                else [_json_step(st) for st in s.steps],
            }
            for s in phase.stages
        ],
    }


def plan_json_pieces(plan: Plan) -> Iterator[bytes]:
    """to_dict() as JSON, a phase at a time: the same record without holding the whole plan's
    dict (for 10,000 nodes a copy of a few hundred megabytes, the peak of a run's memory)."""
    head = orjson.dumps({**plan._head(), "phases": None})
    yield head[: -len(b"null}")] + b"["
    for i, phase in enumerate(plan.phases):
        yield (b"," if i else b"") + orjson.dumps(
            _phase_dict(phase, copies=False), option=JSON_OPTIONS
        )
    yield b"]}"


def plan_record(plan: Plan) -> tuple[bytes, dict[str, Any]]:
    """to_dict() as JSON and where its phases lie in it ({"length", "phases_at", "ends"}: byte
    offsets), so a reader can build the plan a phase at a time (plan_from_record)."""
    pieces = list(plan_json_pieces(plan))
    ends, at = [], len(pieces[0])
    for piece in pieces[1:-1]:
        at += len(piece)
        ends.append(at)
    record = b"".join(pieces)
    return record, {"length": len(record), "phases_at": len(pieces[0]), "ends": ends}


class PlanJSON:
    """A plan in a header kept in memory: its JSON made when the header is sent (an attaching
    console asks for it; header_answer), not held for the whole run (100 MB at 10,000
    nodes)."""

    __slots__ = ("plan",)

    def __init__(self, plan: Plan):
        self.plan = plan


def header_answer(header: dict[str, Any], *, plan: bool = True) -> dict[str, Any]:
    """A header as the control socket sends it: the layout of its plan's phases first, the
    plan's record last, so a client builds the plan a phase at a time (split_header_answer)
    instead of parsing 100 MB of JSON whole (at 10,000 nodes: 6 s and 800 MB). `plan` False:
    without the plan (its record takes half a second to make at that size)."""
    kept = header.get("plan")
    rest = {k: v for k, v in header.items() if k not in ("plan", "plan_layout")}
    if not plan:
        return rest
    if not isinstance(kept, PlanJSON):
        return header
    record, layout = plan_record(kept.plan)
    return {"plan_layout": layout, **rest, "plan": orjson.Fragment(record)}


_LAYOUT_FIRST, _PLAN_LAST = b'{"plan_layout":', b',"plan":'


def split_header_answer(line: bytes) -> tuple[dict[str, Any], memoryview | None]:
    """A header answer (header_answer) read back: the header without its plan, and the plan's
    record as it lies in `line`; else (an engine that sends the plan otherwise) the header
    parsed whole, plan included, and None."""
    line = line.rstrip(b"\n")
    try:
        if not line.startswith(_LAYOUT_FIRST):
            raise ValueError("no layout first")
        after = line.index(b"}", len(_LAYOUT_FIRST)) + 1  # the layout holds numbers only
        layout = orjson.loads(line[len(_LAYOUT_FIRST) : after])
        start = len(line) - 1 - int(layout["length"])
        if line[start - len(_PLAN_LAST) : start] != _PLAN_LAST or not line.endswith(b"}"):
            raise ValueError("the plan is not last")
        rest = line[after + 1 : start - len(_PLAN_LAST)]
        header = orjson.loads(b"{" + rest + b"}")
    except (ValueError, KeyError, TypeError):
        return orjson.loads(line), None
    header["plan_layout"] = layout
    return header, memoryview(line)[start:-1]


def plan_from_record(record: bytes | memoryview, layout: dict[str, Any]) -> Plan:
    """The plan of a record plan_record() wrote, parsed a phase at a time: the whole record's
    objects never exist at once (for 10,000 nodes they were 375 MB)."""
    phases_at, ends = int(layout["phases_at"]), [int(e) for e in layout["ends"]]
    head = orjson.loads(bytes(record[: phases_at - 1]) + b"null}")
    starts = [phases_at, *(end + 1 for end in ends[:-1])]  # a comma between two phases
    return Plan.from_dict(
        head, phases=(orjson.loads(record[a:b]) for a, b in zip(starts, ends, strict=True))
    )


def plan_digest(plan: Plan) -> str:
    """sha256 of to_dict() without its digest, as orjson writes it with sorted keys, fed a
    phase at a time: the same bytes, without holding the whole plan's dict (at 20,000 nodes
    that copy was as big as the plan)."""
    sort = orjson.OPT_SORT_KEYS | JSON_OPTIONS
    head: dict[str, Any] = {**plan._head(), "phases": None}
    head.pop("digest")
    sha = hashlib.sha256(b"{")
    for i, key in enumerate(sorted(head)):
        sha.update((b"," if i else b"") + orjson.dumps(key) + b":")
        if key != "phases":
            sha.update(orjson.dumps(head[key], option=sort))
            continue
        sha.update(b"[")
        for j, phase in enumerate(plan.phases):
            record = _phase_dict(phase, copies=False)
            sha.update((b"," if j else b"") + orjson.dumps(record, option=sort))
        sha.update(b"]")
    sha.update(b"}")
    return sha.hexdigest()


# ---------------------------------------------------------------- building


TIER_TITLES = {
    "scope": "Scope (the cloud against the inventory)",
    "prepare": "Prepare (before the window)",
    "identity": "Identity (keystone)",
    "image": "Image (glance)",
    "compute": "Compute (placement, nova, neutron)",
    "block-storage": "Block Storage (cinder)",
    "dashboard": "Dashboard (horizon)",
    "verify": "Verify (the whole cloud read back)",
    "rollback": "Roll back (a run of its own: core/rollback.py)",
}


class PhaseBuilder:
    """Accumulates the stages of one phase and renders each step from the recipe."""

    def __init__(self, plan: PlanContext, tier: str, site: Site):
        self.ctx = plan
        self.tier = tier
        self.site = site
        self.id = f"{site.name}/{tier}"
        self.stages: list[Stage] = []
        self._current: list[Step] = []
        self._stage_meta: tuple[str, str, str, Gate | None] | None = None
        self.upgraded: set[tuple[str, str]] = set()  # (node, role) whose code is installed
        self.blocked: dict[str, tuple[Node, str]] = {}  # nodes whose restarts are blocked
        self.recipe = plan.recipe_for(site)

    # stage management
    def stage(self, name: str, title: str, kind: str, gate: Gate | None = None) -> None:
        self.flush()
        self._stage_meta = (f"{self.id}/{name}", title, kind, gate)

    def flush(self) -> None:
        if self._stage_meta and self._current:
            sid, title, kind, gate = self._stage_meta
            self.stages.append(Stage(sid, title, kind, tuple(self._current), gate))
        self._current = []

    def add(
        self,
        action: str,
        node: Node,
        role: str,
        args: dict[str, Any] | None = None,
        service: str | None = None,
        **extra: Any,
    ) -> Step | None:
        """Add `action` for `node` unless the recipe does not use it (None); `extra` fills the
        command's placeholders, `args` is recorded on the step for executors and readers.
        `service` is the role's own unless given (a deploy host's step names what it moves)."""
        service = service or ROLES[role].service
        recipe_action = self.recipe.action(service, action)
        if recipe_action is None:
            return None
        shared = self.ctx.shared_values(node, role, service)
        values = {"node": node.name, "service": service, **extra}
        local = recipe_action.on == "deploy-host"
        qualifier = extra.get("unit") or extra.get("package")
        return self._append(
            _new_step(
                id=self._step_id(node, f"{service}.{action}", qualifier),
                action=action,
                service=service,
                role=role,
                node=node.name,
                site=self.site.name,
                executor="local" if local else "ssh",
                command=render(recipe_action.run, values, shared),
                title=render_title(recipe_action.title, values, shared),
                args=dict(args) if args else NO_ARGS,
                exit_codes=recipe_action.exit_codes,
                repeat_max=recipe_action.repeat_max,
            )
        )

    def cloud(
        self,
        action: str,
        node: Node,
        role: str,
        title: str,
        qualifier: str | None = None,
        **args: Any,
    ) -> Step:
        return self._append(
            _new_step(
                id=self._step_id(node, action, qualifier),
                action=action,
                service=ROLES[role].service,
                role=role,
                node=node.name,
                site=self.site.name,
                executor="cloud",
                command=None,
                title=title,
                args=args,
            )
        )

    def _append(self, step: Step) -> Step:
        if "step" in self.ctx.gates:
            step = dataclasses.replace(
                step, gate=Gate(f"gate:{step.id}", "step", f"run '{step.title}' on {step.node}?")
            )
        self._current.append(step)
        return step

    def _step_id(self, node: Node, action: str, qualifier: str | None) -> str:
        assert self._stage_meta is not None
        base = f"{self._stage_meta[0]}/{node.name}/{action}"
        return f"{base}:{qualifier}" if qualifier else base

    def upgrade_node(
        self, node: Node, role: str, *, host: bool = False, only: list[str] | None = None
    ) -> None:
        """Install the new code of `role`'s service on `node` (of every data-plane role when
        `host`; of the roles `only` names when given), each (node, role) once per phase, so no
        service's packages move before its own backup."""
        wanted = (
            {ROLES[r].service for r in node.roles if r in ROLES and ROLES[r].data_plane}
            if host
            else {ROLES[role].service}
        )
        roles = [
            r
            for r in node.roles
            if r in ROLES
            and ROLES[r].tier == self.tier
            and ROLES[r].service in wanted
            and (only is None or r in only)
            and (node.name, r) not in self.upgraded
        ]
        if not roles:
            return
        self.upgraded.update((node.name, r) for r in roles)
        hooks = self.ctx.method.hooks
        if node.name not in self.ctx.sourced:  # before any package of the node moves
            self.ctx.sourced.add(node.name)
            hooks.before_first_install(self, node, role)
        self.blocked.setdefault(node.name, (node, role))  # its installs block restarts
        packages = sorted({self.ctx.method.package(r) for r in roles})
        services = sorted({ROLES[r].service for r in roles})
        hooks.before_install(self, node, role, roles)
        self.add(
            "upgrade-packages",
            node,
            role,
            args={"packages": packages, "services": services},
            packages=packages,
        )
        hooks.after_install(self, node, role, roles)
        if self._installed_all(node):
            hooks.after_node_installed(self, node, role)

    def _installed_all(self, node: Node) -> bool:
        """This phase is the node's last with a role to install, and each of its roles of
        this phase is installed: nothing of the node's own is left to move."""
        tiers = [TIERS.index(ROLES[r].tier) for r in node.roles if r in ROLES]
        if not tiers or max(tiers) != TIERS.index(self.tier):
            return False
        return all(
            (node.name, r) in self.upgraded
            for r in node.roles
            if r in ROLES and ROLES[r].tier == self.tier
        )

    def restarted(self, node: Node, role: str) -> None:
        """The node's own services run the new code: undo what blocked their restarts."""
        if self.blocked.pop(node.name, None) is not None:
            self.ctx.method.hooks.after_restarts(self, node, role)

    def build(self, title: str) -> Phase | None:
        if self.blocked:  # the phase restarted every service itself: allow restarts again
            self.stage("allow-restarts", "let packages restart services again", "post")
            for node, role in list(self.blocked.values()):
                self.restarted(node, role)
        self.flush()
        if not self.stages:
            return None
        gate = None
        if "phase" in self.ctx.gates and self.tier not in (
            "scope",
            "verify",
        ):  # reading asks nothing
            gate = Gate(f"gate:{self.id}", "phase", f"start {title} at {self.site.name}?")
        return Phase(
            self.id,
            self.tier,
            self.site.name,
            TIERS.index(self.tier),
            title,
            tuple(self.stages),
            gate,
        )


@dataclass
class PlanContext:
    inventory: Inventory
    recipe: Recipe
    _site_recipes: dict[str, Recipe] = field(default_factory=dict)
    _db_hosts: dict[str, str] = field(default_factory=dict)  # site -> its services' database
    _method_values: dict[str, dict[str, Any]] = field(default_factory=dict)  # site -> values
    _shared_values: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    sourced: set[str] = field(default_factory=set)  # nodes pointed at the target release
    started: set[str] = field(default_factory=set)  # sites whose first phase was built

    @property
    def method(self) -> methods.Method:
        return methods.method(self.inventory.method)

    @property
    def gates(self) -> list[str]:
        return list(self.inventory.policy.gates)

    def recipe_for(self, site: Site) -> Recipe:
        """The recipe with the inventory's overrides, then the site's, applied."""
        if site.name in self._site_recipes:
            return self._site_recipes[site.name]
        spec = self.inventory.spec
        recipe = self.recipe
        for overrides in (spec.recipe, spec.sites[site.name].recipe):
            if overrides is not None:
                recipe = recipe.with_overrides(overrides.variables, overrides.actions)
        self._site_recipes[site.name] = recipe
        return recipe

    def db_host(self, node: Node) -> str:
        """The database the node's services use: a `database` node at its site, else at the
        identity site, else the node itself (a database on the controller). Once per site:
        every step asks."""
        if node.site not in self._db_hosts:
            self._db_hosts[node.site] = "localhost"
            for site_name in (node.site, self.inventory.identity_site):
                found = self.inventory.site(site_name).with_role("database")
                if found:
                    self._db_hosts[node.site] = found[0].address
                    break
        return self._db_hosts[node.site]

    def method_values(self, site: str, variables: Any) -> dict[str, Any]:
        """The values the method's commands need besides these (its `plan_values`), once per
        site: they depend on the inventory and the site's recipe, not on the step."""
        if site not in self._method_values:
            self._method_values[site] = self.method.plan_values(self.inventory, variables)
        return self._method_values[site]

    def values(self, node: Node, role: str, extra: dict[str, Any]) -> dict[str, Any]:
        service = extra.get("service") or ROLES[role].service
        return {**self.shared_values(node, role, service), "node": node.name, **extra}

    def shared_values(self, node: Node, role: str, service: str) -> dict[str, Any]:
        """The values of every node of the node's site with that role and service (made once;
        never changed)."""
        key = (node.site, role, service)
        shared = self._shared_values.get(key)
        if shared is None:
            shared = self._shared_values[key] = self._values_of(node, role, service)
        return shared

    def _values_of(self, node: Node, role: str, service: str) -> dict[str, Any]:
        variables = self.recipe_for(self.inventory.site(node.site)).variables
        target = self.inventory.upgrade.target
        series = str(variables.get("ubuntu_series", ""))
        return {
            **self.method_values(node.site, variables),
            **variables,
            "cloud": self.inventory.cloud,
            "from": self.inventory.upgrade.source.id,
            "to": target.id,
            "to_pocket": package_source(target, series) or f"no-pocket-for-{target.name}",
            # where a rollback's packages come back from (its inventory is turned around)
            "from_pocket": package_source(self.inventory.upgrade.source, series)
            or f"no-pocket-for-{self.inventory.upgrade.source.name}",
            "db_host": self.db_host(node),
            "service": service,
            "databases": self.recipe.databases.get(service, [service]),
            "site": node.site,
            "unit": self.method.unit(role),
            "package": self.method.package(role),
            "container": self.method.unit(role),
        }


def render_action(
    inventory: Inventory, node: Node, role: str, action: str, recipe: Recipe | None = None
) -> tuple[str, bool] | None:
    """The command `action` runs for `role` on `node`, exactly as a plan step would render it
    (the method's recipe with the inventory's and the site's overrides), and whether it runs
    on the deploy host; None when the recipe does not use the action."""
    ctx = PlanContext(inventory, recipe or load_recipe(inventory.method))
    site_recipe = ctx.recipe_for(inventory.site(node.site))
    found = site_recipe.action(ROLES[role].service, action)
    if found is None:
        return None
    values = ctx.values(node, role, {})
    return render(found.run, values), found.on == "deploy-host"


def site_variables(inventory: Inventory, site: str) -> dict[str, Any]:
    """The recipe variables a site's steps are rendered with: the method's, then the
    inventory's, then the site's."""
    ctx = PlanContext(inventory, load_recipe(inventory.method))
    return ctx.recipe_for(inventory.site(site)).variables


def _first(nodes: list[Node]) -> Node:
    return nodes[0]


def _control_role_stages(
    b: PhaseBuilder, roles: list[str], schema: Any, *, stopped: bool = False
) -> None:
    """One stage per (role, node): install the new code with restarts blocked; on the first
    node, the target's own status check, then the schema; then restart the role's unit.
    `stopped`: every unit of the roles was stopped first (an offline upgrade)."""
    schema_done = False
    jumped = bool(roles) and (
        stopped or (b.ctx.inventory.upgrade.skip_level and ROLES[roles[0]].service != "nova")
    )
    for role in roles:
        for node in b.site.with_role(role):
            b.stage(f"{role}@{node.name}", f"{role} on {node.name}", "control")
            fence = (
                role == "cinder-volume"
                and b.recipe.variables.get("fence_volume_services", "no") == "yes"
            )
            if fence:
                b.cloud(
                    "disable-service",
                    node,
                    role,
                    f"disable {role} on {node.name} in the volume scheduler",
                    host=node.name,
                    binary=role,
                    reason=f"rollgate: upgrading to {b.ctx.inventory.upgrade.target.id}",
                )
            b.upgrade_node(node, role)
            if not schema_done:
                b.add("status-check", node, role)  # the target's checks, before anything moves
                schema(node, role)
                schema_done = True
            b.add("restart", node, role, unit=b.ctx.method.unit(role))
            # in a skip-level jump the service's API is stopped until its own stage: its
            # records are read after every restart (the refresh stage)
            after_restart(b, node, [role], heartbeats=not jumped)
            if fence:
                b.cloud(
                    "enable-service",
                    node,
                    role,
                    f"enable {role} on {node.name}",
                    host=node.name,
                    binary=role,
                )


def _restart_everywhere(b: PhaseBuilder, roles: list[str], why: str) -> None:
    """A post stage restarting every unit of `roles` at the site, each unit once per node:
    services that started while older ones ran cache the older version (the RPC pin). Each
    node's restarts are checked as any restart is (after_restart), a compute by a heartbeat
    written after its restart."""
    b.stage(f"refresh-{ROLES[roles[0]].service}", why, "post")
    for node in b.site.nodes:
        present = [r for r in roles if node.has(r)]
        if not present:
            continue
        _each_unit(b, [node], present, "restart")
        after_restart(b, node, present)
        if node.has("nova-compute"):
            wait_compute_up(b, node)


def _each_unit(b: PhaseBuilder, nodes: Sequence[Node], roles: list[str], action: str) -> None:
    """`action` (restart, stop) once for each unit that runs one of `roles` on each node."""
    for node in nodes:
        units: dict[str, str] = {}
        for role in roles:
            if node.has(role):
                units.setdefault(b.ctx.method.unit(role), role)
        for unit, role in units.items():
            b.add(action, node, role, unit=unit)


# What stops being available while a service is stopped for a skip-level jump.
JUMP_OUTAGE = {
    "keystone": "authentication for the whole cloud",
    "glance": "the image API",
    "placement": "scheduling (placement API)",
    "neutron": "the networking API and the agents of the controllers and network nodes "
    "(existing traffic keeps flowing; the computes' agents keep running the source release "
    "until their own batch, as neutron's skip-level multinode jobs run them)",
    "cinder": "the volume API and volume operations",
    "horizon": "the dashboard",
}


def _stop_for_jump(
    b: PhaseBuilder, roles: list[str], offline: str = "", keep: frozenset[str] = frozenset()
) -> None:
    """In a skip-level (SLURP) upgrade, a service with no documented N/N+2 coexistence stops
    everywhere at the site before its first node moves (the TC's release-cadence resolution:
    "requiring some downtime during an upgrade"); each unit starts again, on the target's
    code, when its node's stage restarts it. Nova rolls: it supports N and N-2 together.
    `offline`: why the service takes its offline path in any upgrade (glance); `keep`: nodes
    whose units keep running until their own stage (the computes' neutron agents)."""
    inv = b.ctx.inventory
    present = [r for r in roles if b.site.with_role(r)]
    if not (inv.upgrade.skip_level or offline) or not present:
        return
    service = ROLES[present[0]].service
    nodes = [n for n in b.site.nodes if any(n.has(r) for r in present) and n.name not in keep]
    where = f"every {service} service at {b.site.name} ({compress([n.name for n in nodes])})"
    if inv.upgrade.skip_level:
        stage, title = f"{service}-jump", f"stop {service} for the skip-level jump"
        why = (
            f"skip-level {inv.upgrade.source.id} -> {inv.upgrade.target.id}: {service} does "
            f"not run two releases apart side by side (only nova does), so {where} stops now"
        )
    else:
        stage, title = f"{service}-offline", f"stop {service} for its offline upgrade"
        why = f"{offline}, so {where} stops now"
    b.stage(
        stage,
        title,
        "control",
        Gate(
            f"gate:{b.id}/{stage}",
            "downtime",
            f"{why} and starts on {inv.upgrade.target.id} as its node is upgraded; down "
            f"meanwhile: {JUMP_OUTAGE.get(service, service)}."
            f"{_shared_units(b, nodes, present)} Stop them?",
        ),
    )
    _each_unit(b, nodes, present, "stop")


def _shared_units(b: PhaseBuilder, nodes: list[Node], roles: list[str]) -> str:
    """What else the stop takes down: services of other roles that run under the same unit
    on the same node (Ubuntu runs keystone, placement-api, cinder-api and horizon under one
    apache2), said in the gate."""
    method = b.ctx.method
    hit: dict[tuple[str, str], list[str]] = {}  # (unit, other service) -> nodes
    for node in nodes:
        units = {method.unit(r) for r in roles if node.has(r)}
        for other in node.roles:
            spec = ROLES.get(other)
            if other in roles or spec is None or method.unit(other) not in units:
                continue
            names = hit.setdefault((method.unit(other), spec.service), [])
            if node.name not in names:
                names.append(node.name)
    return "".join(
        f" Stopping {unit} also stops {service} on {compress(names)} (it runs under {unit} "
        f"there): down too: {JUMP_OUTAGE.get(service, service)}."
        for (unit, service), names in sorted(hit.items())
    )


def _backup(b: PhaseBuilder, node: Node, role: str) -> None:
    """Back up the service's database and configuration (keystone: its keys too) and, when
    the recipe says pull_backups: "yes", copy each file to the run directory."""
    service = ROLES[role].service
    b.add(
        "db-backup",
        node,
        role,
        args={
            "backup": {
                "databases": list(b.recipe.databases.get(service, [service])),
                "source": b.ctx.inventory.upgrade.source.id,
            }
        },
    )
    b.add("keys-backup", node, role)  # keystone's only
    if str(b.recipe.variables.get("pull_backups", "no")) == "yes":
        for action in ("pull-dump", "pull-etc", "pull-keys"):
            b.add(action, node, role)


def _identity(b: PhaseBuilder) -> None:
    nodes = b.site.with_role("keystone")
    if not nodes:
        return
    k1 = _first(nodes)
    b.stage("pre", "back up and check keystone", "pre")
    _backup(b, k1, "keystone")
    b.add("doctor", k1, "keystone")

    def schema(node: Node, role: str) -> None:
        b.add("db-expand", node, role)
        schema_version(b, node, role, expanded_only=True)

    _stop_for_jump(b, ["keystone"])
    _control_role_stages(b, ["keystone"], schema)
    b.stage("post", "contract the keystone schema", "post")
    b.add("db-contract", k1, "keystone")
    b.add("db-check", k1, "keystone")
    verify_api(b, "keystone")


def _image(b: PhaseBuilder) -> None:
    nodes = b.site.with_role("glance-api")
    if not nodes:
        return
    g1 = _first(nodes)
    b.stage("pre", "back up glance", "pre")
    _backup(b, g1, "glance-api")
    if str(b.recipe.variables.get("glance_rolling", "no")) != "yes":
        # glance's supported path: every glance-api stopped, `glance-manage db sync`, then
        # each starts on the new code; its rolling path is EXPERIMENTAL upstream
        def sync(node: Node, role: str) -> None:
            b.add("db-sync", node, role)
            schema_version(b, node, role)

        _stop_for_jump(b, ["glance-api"], GLANCE_OFFLINE)
        _control_role_stages(b, ["glance-api"], sync, stopped=True)
        verify_api(b, "glance-api")
        return

    def schema(node: Node, role: str) -> None:
        b.add("db-check", node, role)  # with the new code: which schema step comes next
        b.add("db-expand", node, role)
        b.add("db-migrate", node, role)
        schema_version(b, node, role, expanded_only=True)

    _stop_for_jump(b, ["glance-api"])
    _control_role_stages(b, ["glance-api"], schema)
    b.stage("post", "contract the glance schema", "post")
    b.add("db-contract", g1, "glance-api")
    schema_version(b, g1, "glance-api")
    verify_api(b, "glance-api")


GLANCE_OFFLINE = (
    "glance's rolling (zero-downtime) database path is EXPERIMENTAL upstream and not supported "
    'in production (glance admin guide, "Zero-Downtime Database Upgrades"); its supported '
    "path is offline: `glance-manage db sync` with no glance-api running (recipe variable "
    'glance_rolling: "yes" takes the rolling path)'
)


def _data_plane_host(b: PhaseBuilder, node: Node, reason: str) -> None:
    """A data-plane host: fence it from the scheduler, upgrade, restart agents then nova, and
    see each of them report again on the new code."""
    is_compute = node.has("nova-compute")
    main_role = "nova-compute" if is_compute else next(r for r in AGENT_ORDER if node.has(r))
    if is_compute:
        fence_compute(b, node, reason)
    b.upgrade_node(node, main_role, host=True)
    if is_compute:
        _rpc_pin(b, node, "nova-compute")
    agents = [a for a in AGENT_ORDER if node.has(a)]
    for agent in agents:
        b.add("restart", node, agent, unit=b.ctx.method.unit(agent))
    if is_compute:
        b.add("restart", node, "nova-compute", unit=b.ctx.method.unit("nova-compute"))
    running_version(b, node, [*agents, "nova-compute"], settle=True)
    if agents:
        agents_up(b, node, agents)
    if is_compute:
        compute_back(b, node)
    b.restarted(node, main_role)  # its own services restarted: unblock now


def compute_groups(
    b: PhaseBuilder, computes: list[Node]
) -> list[tuple[str, str, str, list[Node], Gate | None]]:
    """(name, title, kind, nodes, gate) of the canary, then each batch: the policy's canary
    size and batch size, the canary gate before the first batch when the policy asks."""
    policy = b.ctx.inventory.policy
    canary, rest = computes[: policy.canary], computes[policy.canary :]
    out: list[tuple[str, str, str, list[Node], Gate | None]] = []
    if canary:
        out.append(("canary", f"canary {compress([n.name for n in canary])}", "canary",
                    canary, None))  # fmt: skip
    batches = [rest[i : i + policy.batch_size] for i in range(0, len(rest), policy.batch_size)]
    for i, batch in enumerate(batches, start=1):
        gate = None
        if i == 1 and canary and "canary" in b.ctx.gates:
            gate = Gate(
                f"gate:{b.id}/canary",
                "canary",
                f"canary {compress([n.name for n in canary])} is upgraded at "
                f"{b.site.name}: continue with {len(rest)} computes in {len(batches)} batches?",
            )
        names = compress([n.name for n in batch])
        out.append((f"batch-{i}", f"batch {i}/{len(batches)} {names}", "batch", batch, gate))
    return out


def verify_compute_api(b: PhaseBuilder) -> None:
    """The site's compute API answers, fresh, with the target's newest microversion."""
    verify_api(b, "nova-api")


def fence_compute(b: PhaseBuilder, node: Node, reason: str) -> None:
    """Take the compute out of the scheduler while it is worked on."""
    b.cloud(
        "disable-compute",
        node,
        "nova-compute",
        f"disable nova-compute on {node.name} in the scheduler",
        host=node.name,
        binary="nova-compute",
        reason=reason,
    )


def compute_back(b: PhaseBuilder, node: Node) -> None:
    """See the compute report (a heartbeat from the new code) after its restart, then put it
    back in the scheduler. Not the other way round: the acceptance cloud's nova-compute died
    seconds after its restart, and enabling it first hung on the API for the RPC timeout
    (nova tells the compute of the change) while the scheduler could already pick a dead
    host."""
    wait_compute_up(b, node)
    b.cloud(
        "enable-compute",
        node,
        "nova-compute",
        f"enable nova-compute on {node.name}",
        host=node.name,
        binary="nova-compute",
    )


def wait_compute_up(b: PhaseBuilder, node: Node) -> None:
    """The compute writes a heartbeat after its restart (the restarted process's own)."""
    b.cloud(
        "wait-compute-up",
        node,
        "nova-compute",
        f"nova-compute on {node.name} reports again after its restart",
        host=node.name,
        binary="nova-compute",
    )


def agents_up(b: PhaseBuilder, node: Node, agents: list[str]) -> None:
    """See the node's neutron agents report alive, started after their restart."""
    binaries = sorted({b.ctx.method.package(a) for a in agents})
    b.cloud(
        "wait-agents-up",
        node,
        agents[0],
        f"neutron agents on {node.name} report alive, started after their restart",
        host=node.name,
        binaries=binaries,
    )


def _rpc_pin(b: PhaseBuilder, node: Node, role: str) -> None:
    """The node runs with [upgrade_levels] compute=auto before its nova services restart on
    the new code (written first when the recipe says so): controllers in the phase's pre
    stage, each compute in its own batch."""
    if str(b.recipe.variables.get("rpc_pin", "check")) == "set":
        b.add("rpc-pin-set", node, role)
    b.add(
        "rpc-pin",
        node,
        role,
        args={
            "expect_line": "auto",
            "hint": "set [upgrade_levels] compute = auto in /etc/nova/nova.conf on every nova "
            "node, or recipe.variables.rpc_pin: set",
        },
    )


def _neutron(b: PhaseBuilder, servers: list[Node]) -> None:
    """Servers first (neutron: "first, all neutron-servers are upgraded"), the contract only
    with every server stopped and only when migrations are pending, then the agents that
    live on the servers' nodes."""
    for index, node in enumerate(servers):
        b.stage(f"neutron-server@{node.name}", f"neutron-server on {node.name}", "control")
        b.upgrade_node(node, "neutron-server", only=["neutron-server"])
        if index == 0:
            b.add("status-check", node, "neutron-server")
            b.add("db-expand", node, "neutron-server")
            schema_version(b, node, "neutron-server", expanded_only=True)
        b.add("restart", node, "neutron-server", unit=b.ctx.method.unit("neutron-server"))
        after_restart(b, node, ["neutron-server"])
    s1, unit = servers[0], b.ctx.method.unit("neutron-server")
    b.stage("neutron-offline-check", "pending neutron contract migrations?", "control")
    check = b.add(
        "offline-migrations",
        s1,
        "neutron-server",
        args={
            "warning": f"neutron has contract migrations pending: every neutron-server at "
            f"{b.site.name} ({compress([n.name for n in servers])}) must stop while "
            "`neutron-db-manage upgrade --contract` runs, so the networking API is down "
            "until they start again; acknowledge to stop them, contract and start them, or "
            "reject to stop here"
        },
    )
    if check is not None:
        when = {"step": check.id, "outcome": "warning"}
        b.stage("neutron-stop", "stop every neutron-server for the contract", "control")
        for node in servers:
            b.add("stop", node, "neutron-server", args={"when": when}, unit=unit)
        b.stage("neutron-contract", "contract the neutron schema", "control")
        b.add("db-contract", s1, "neutron-server", args={"when": when})
        schema_version(b, s1, "neutron-server", when=when)
        b.stage("neutron-start", "start every neutron-server again", "control")
        for node in servers:
            b.add("start", node, "neutron-server", args={"when": when}, unit=unit)
            after_restart(b, node, ["neutron-server"], when=when)
    for node in servers:
        agents = [a for a in AGENT_ORDER if node.has(a)]
        if not agents or node.has("nova-compute"):
            continue
        b.stage(f"neutron-agents@{node.name}", f"neutron agents on {node.name}", "control")
        b.upgrade_node(node, agents[0], only=agents)
        for agent in agents:
            b.add("restart", node, agent, unit=b.ctx.method.unit(agent))
        running_version(b, node, agents, settle=True)
        agents_up(b, node, agents)
    verify_api(b, "neutron-server")


def _compute(b: PhaseBuilder) -> None:
    site, inv = b.site, b.ctx.inventory
    placement = site.with_role("placement-api")
    if placement:
        p1 = _first(placement)
        b.stage("placement-pre", "back up placement", "pre")
        _backup(b, p1, "placement-api")
        b.add("previous-migrations", p1, "placement-api")
        _stop_for_jump(b, ["placement-api"])

        def placement_schema(node: Node, role: str) -> None:
            b.add("db-sync", node, role)
            schema_version(b, node, role)

        _control_role_stages(b, ["placement-api"], placement_schema)
        b.stage("placement-post", "placement online data migrations", "post")
        b.add("online-migrations", p1, "placement-api")
        verify_api(b, "placement-api")
    controllers = [r for r in ("nova-conductor", "nova-scheduler", "nova-api") if site.with_role(r)]
    servers = site.with_role("neutron-server")
    if controllers or servers:
        b.stage("pre", "back up nova and neutron; nova's RPC pin", "pre")
        if controllers:
            n1 = _first(site.with_role(controllers[0]))
            _backup(b, n1, controllers[0])
            b.add("previous-migrations", n1, controllers[0])
        if servers:
            _backup(b, servers[0], "neutron-server")
        for node in site.nodes:
            role = next((r for r in controllers if node.has(r)), None)
            if role is not None:
                _rpc_pin(b, node, role)

    def nova_schema(node: Node, role: str) -> None:
        b.add("api-db-sync", node, role)
        b.add("db-sync", node, role)
        schema_version(b, node, role)

    _control_role_stages(b, controllers, nova_schema)
    # the computes' agents keep running the source release until their own batch: neutron
    # runs its skip-level multinode grenade jobs so (grenade upgrades only the controller;
    # the subnode's compute and agents stay on the old release), and stopping them would
    # leave every new port on a not-yet-upgraded compute unwired for hours
    computes = frozenset(n.name for n in site.nodes if n.has("nova-compute"))
    _stop_for_jump(b, ["neutron-server", *AGENT_ORDER], keep=computes)
    if servers:
        _neutron(b, servers)
    reason = f"rollgate: upgrading {inv.cloud} to {inv.upgrade.target.id}"
    network_only = [
        n
        for n in site.nodes
        if not n.has("nova-compute")
        and not n.has("neutron-server")
        and any(n.has(a) for a in AGENT_ORDER)
    ]
    for node in network_only:
        b.stage(f"network@{node.name}", f"network node {node.name}", "network")
        _data_plane_host(b, node, reason)
    for name, title, kind, nodes, gate in compute_groups(b, site.with_role("nova-compute")):
        b.stage(name, title, kind, gate)
        for node in nodes:
            _data_plane_host(b, node, reason)
    if controllers:
        nova_roles = [*controllers, "nova-compute"]
        _restart_everywhere(
            b, nova_roles, "restart every nova service: all run the new code (drops the RPC pin)"
        )
        n1 = _first(site.with_role(controllers[0]))
        b.stage("post", "nova online data migrations and checks", "post")
        b.add("online-migrations", n1, controllers[0])
        b.add("status-check", n1, controllers[0])
        service_versions(b, n1, controllers[0])
        verify_compute_api(b)


def _block_storage(b: PhaseBuilder) -> None:
    order = [
        r
        for r in ("cinder-scheduler", "cinder-volume", "cinder-backup", "cinder-api")
        if b.site.with_role(r)
    ]
    if not order:
        return
    c1 = _first(b.site.with_role(order[0]))
    b.stage("pre", "back up cinder; finish the previous release's migrations", "pre")
    _backup(b, c1, order[0])
    b.add("previous-migrations", c1, order[0])

    def cinder_schema(node: Node, role: str) -> None:
        b.add("db-sync", node, role)
        schema_version(b, node, role)

    _stop_for_jump(b, order)
    _control_role_stages(b, order, cinder_schema)
    _restart_everywhere(
        b, order, "restart every cinder service: all run the new code (drops the RPC pin)"
    )
    b.stage("post", "cinder online data migrations and checks", "post")
    b.add("online-migrations", c1, order[0])
    b.add("status-check", c1, order[0])
    verify_api(b, "cinder-api")


def _dashboard(b: PhaseBuilder) -> None:
    for node in b.site.with_role("horizon"):
        b.stage(f"horizon@{node.name}", f"horizon on {node.name}", "control")
        b.upgrade_node(node, "horizon")
        b.add("collectstatic", node, "horizon")
        b.add("compress", node, "horizon")
        b.add("reload", node, "horizon")


BUILDERS = {
    "identity": _identity,
    "image": _image,
    "compute": _compute,
    "block-storage": _block_storage,
    "dashboard": _dashboard,
    "verify": verify_phase,
}


def build_plan(inventory: Inventory, recipe: Recipe | None = None) -> Plan:
    """Turn a validated inventory into the ordered, gated, deterministic upgrade plan."""
    # A plan is hundreds of thousands of small objects that make no reference cycles; the
    # cyclic collector's full passes over them cost more than building them (10 x 1,000:
    # most of the time), so it waits until the plan is built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build_plan(inventory, recipe)
    finally:
        if collecting:
            gc.enable()


def _build_plan(inventory: Inventory, recipe: Recipe | None) -> Plan:
    ctx = PlanContext(inventory, recipe or load_recipe(inventory.method))
    # every method's plan ends with the whole cloud read back, unless it reads it its own way
    builders = {"scope": scope_phase, "verify": verify_phase, **(ctx.method.builders or BUILDERS)}
    phases: list[Phase] = []
    for tier in TIERS:
        if tier not in builders or tier == "rollback":  # a rollback is a plan of its own
            continue
        if tier == "identity":
            sites = [inventory.site(inventory.identity_site)]
        elif tier == "dashboard" and inventory.dashboard_site:
            sites = [inventory.site(inventory.dashboard_site)]
        else:
            sites = list(inventory.sites)
        for site in sites:
            builder = PhaseBuilder(ctx, tier, site)
            builders[tier](builder)
            phase = builder.build(TIER_TITLES[tier])
            if phase is not None:
                phases.append(phase)
    policy = inventory.policy
    plan = Plan(
        cloud=inventory.cloud,
        method=inventory.method,
        source=inventory.upgrade.source.id,
        target=inventory.upgrade.target.id,
        skip_level=inventory.upgrade.skip_level,
        inventory_digest=inventory.digest,
        policy={
            "gates": list(policy.gates),
            "canary": policy.canary,
            "batch_size": policy.batch_size,
            "failure_budget": policy.failure_budget,
            "site_concurrency": policy.site_concurrency,
            "step_timeout": policy.step_timeout,
            "heartbeat_timeout": policy.heartbeat_timeout,
            "build_timeout": policy.build_timeout,
            "start_grace": policy.start_grace,
            "transport_retries": policy.transport_retries,
        },
        phases=tuple(phases),
    )
    ids = [s.id for s in plan.steps]
    if len(ids) != len(set(ids)):  # a bug in a builder, never the user's input
        raise AssertionError(f"duplicate step ids: {sorted(i for i in ids if ids.count(i) > 1)}")
    return dataclasses.replace(plan, digest=plan_digest(plan))
