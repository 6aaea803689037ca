"""The inventory: a YAML description of a cloud, validated into typed, resolved models."""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from rollgate.core import hostrange
from rollgate.core.releases import ReleaseError, UpgradePath, find_release, validate_path
from rollgate.core.roles import INFRA_ROLES, ROLES
from rollgate.core.yamlsource import (
    Path,
    Problem,
    SourceError,
    YamlDocument,
    format_path,
    parse_yaml,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
PATTERN_RE = re.compile(r"^[A-Za-z0-9\[][A-Za-z0-9._:\[\]-]{0,80}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
JUMP_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_.-]*@)?[A-Za-z0-9.:\[\]-]+(?::\d{1,5})?$")
GATE_KINDS = ("phase", "canary", "step")


MAX_HOSTS = 50_000  # policy.max_hosts raises it
MAX_INVENTORY_BYTES = 10 * 1024 * 1024  # an inventory is kilobytes; /dev/zero is not one


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


def _safe_text(value: str, what: str) -> str:
    if any(c in value for c in "\n\r\0"):
        raise ValueError(f"{what} {value!r} contains a line break or NUL; write it on one line")
    return value


class SshOptions(StrictModel):
    """SSH settings; every field optional so that sites and nodes can override a few."""

    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    key: str | None = None
    known_hosts: str | None = None
    verify_host_keys: bool | None = None
    jump_host: str | None = None
    become: bool | None = None
    connect_timeout: float | None = Field(default=None, gt=0, le=3600)
    keepalive: float | None = Field(default=None, ge=0, le=3600)

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and not USER_RE.match(v):
            raise ValueError(f"{v!r} is not a valid login name: use letters, digits, '_', '.', '-'")
        return v

    @field_validator("key", "known_hosts")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else _safe_text(v, "path")

    @field_validator("jump_host")
    @classmethod
    def _jump(cls, v: str | None) -> str | None:
        if v is not None and not JUMP_RE.match(v):
            raise ValueError(f"{v!r} is not a jump host: write [user@]host[:port]")
        return v


class OpenStackOptions(StrictModel):
    cloud: str | None = None
    region: str | None = None
    clouds_yaml: str | None = None
    # seconds one API call may take before it counts as unreachable (default 60)
    timeout: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("cloud", "region")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid name: use letters, digits, '.', '_', '-'")
        return v


class UpgradeSpec(StrictModel):
    from_: str = Field(alias="from")
    to: str

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v


class SharedService(StrictModel):
    site: str


class SharedServices(StrictModel):
    identity: SharedService
    dashboard: SharedService | None = None


class NodeSpec(StrictModel):
    name: str
    address: str
    roles: list[str] = Field(min_length=1)
    az: str | None = None
    ssh: SshOptions | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PATTERN_RE.match(v):
            raise ValueError(
                f"{v!r} is not a valid node name: use letters, digits, '.', '_', '-' and one "
                "optional [start:end] range"
            )
        return v

    @field_validator("az")
    @classmethod
    def _az(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid zone name: use letters, digits, '.', '_', '-'")
        return v


class SiteSpec(StrictModel):
    region: str | None = None
    priority: int = 100
    ssh: SshOptions | None = None
    openstack: OpenStackOptions | None = None
    recipe: RecipeOverrides | None = None
    nodes: list[NodeSpec] = Field(min_length=1)


class PolicySpec(StrictModel):
    gates: list[Literal["phase", "canary", "step"]] = Field(
        default_factory=lambda: list[Literal["phase", "canary", "step"]](["phase", "canary"])
    )
    canary: int = Field(default=1, ge=0, le=100_000)
    batch_size: int = Field(default=10, ge=1, le=100_000)
    failure_budget: int = Field(default=0, ge=0, le=100_000)
    site_concurrency: int = Field(default=1, ge=1, le=1000)
    step_timeout: float = Field(default=1800, gt=0, le=7 * 86400)
    # how long a restarted nova-compute or neutron agent has to report (a heartbeat from the
    # new process) before its check fails: nova-compute reports every 10 s and neutron agents
    # every 30 s by default, so one silent for five minutes is not coming back on its own
    heartbeat_timeout: float = Field(default=300, gt=0, le=7 * 86400)
    transport_retries: int = Field(default=3, ge=0, le=100)
    # how many nodes a host range, and the whole inventory, may expand to
    max_hosts: int = Field(default=MAX_HOSTS, ge=1, le=10_000_000)

    @field_validator("gates", mode="before")
    @classmethod
    def _gates(cls, v: Any) -> Any:
        if v is None or v == "none" or v == ["none"]:
            return []
        return [v] if isinstance(v, str) else v


_DATETIME = TypeAdapter(datetime)


class WindowSpec(StrictModel):
    """The maintenance window: absolute times (without a zone they are UTC), or `start: now`
    and `hours` (it opens when the run first starts: the lab demo's)."""

    start: datetime | Literal["now"]
    end: datetime | None = None
    hours: float | None = Field(default=None, gt=0, le=168, allow_inf_nan=False)

    @field_validator("start", mode="before")
    @classmethod
    def _now_or_a_time(cls, value: Any) -> Any:
        """`now`, or a date and time: one message for anything else, not one per choice."""
        if value == "now" or isinstance(value, datetime):
            return value
        try:
            return _DATETIME.validate_python(value)
        except ValidationError:
            raise ValueError(
                f"expected a date and time like 2026-11-28T22:00:00Z, or now, got {value!r}"
            ) from None

    @field_validator("start", "end")
    @classmethod
    def _utc_when_naive(cls, moment: datetime | str | None) -> datetime | str | None:
        return _aware(moment) if isinstance(moment, datetime) else moment


class SecretSpec(StrictModel):
    """A secret recipe variable: its value from an environment variable or a file, read when
    the run starts, or written here. It is never stored or shown (core/secrets.py)."""

    env: str | None = None
    file: str | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSpec:
        given = [k for k in ("env", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a secret takes exactly one of env (a variable's name), file (a path) or "
                f"value; got {', '.join(given) or 'none'}"
            )
        return self


class RecipeOverrides(StrictModel):
    """Changes to the deployment method's recipe: variables (a secret one as
    `{env: NAME}`, `{file: PATH}` or `{value: X}`), and actions by name (`service:action` or
    `action`) given a new command, or null to leave them out."""

    variables: dict[str, str | SecretSpec] = Field(default_factory=dict)
    actions: dict[str, str | None] = Field(default_factory=dict)

    @field_validator("variables", "actions")
    @classmethod
    def _one_line(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, text in v.items():
            if isinstance(text, str):
                _safe_text(text, f"recipe value for {key!r}")
        return v


NotifyMoment = Literal["gate", "failure", "end"]
NOTIFY_MOMENTS: tuple[NotifyMoment, ...] = ("gate", "failure", "end")


class NotifySpec(StrictModel):
    """Who hears of a gate that waits, a failure and the end of a run, besides the terminal's
    bell: a command (run without a shell, the text in ROLLGATE_* variables) and a webhook
    (an HTTP POST of JSON); `when` chooses which of those moments (YAML reads a key `on` as
    true, so it is not one)."""

    command: str | None = None
    webhook: str | None = None
    when: list[NotifyMoment] = Field(default_factory=lambda: list(NOTIFY_MOMENTS))

    @field_validator("webhook")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"{v!r} is not an http:// or https:// URL")
        return v

    @field_validator("command")
    @classmethod
    def _words(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                if not shlex.split(v):
                    raise ValueError("the notify command is empty")
            except ValueError as exc:
                raise ValueError(f"the notify command cannot be split into words: {exc}") from None
        return v


class LabSpec(StrictModel):
    time_scale: float = Field(default=1.0, ge=0, le=1000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    faults: list[str] = Field(default_factory=list)
    state_dir: str | None = None


class InventorySpec(StrictModel):
    cloud: str
    upgrade: UpgradeSpec
    method: str = "apt"  # a registered deployment method (core/methods)
    ssh: SshOptions = SshOptions()
    openstack: OpenStackOptions = OpenStackOptions()
    shared: SharedServices
    sites: dict[str, SiteSpec] = Field(min_length=1)
    policy: PolicySpec = PolicySpec()
    window: WindowSpec | None = None
    notify: NotifySpec | None = None
    lab: LabSpec | None = None
    recipe: RecipeOverrides | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        from rollgate.core.methods import names

        known = names()
        if not known:
            raise ValueError("no deployment method is registered: install Rollgate (pip install .)")
        if v not in known:
            listed = ", ".join(repr(n) for n in known[:-1]) + f" or {known[-1]!r}"
            raise ValueError(f"{v!r} is not one of {listed}{_suggest(v, known)}")
        return v

    @field_validator("cloud")
    @classmethod
    def _cloud(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid cloud name: use letters, digits, '.', '_', '-'")
        return v


# ---------------------------------------------------------------- resolved, ready-to-use models


@dataclass(frozen=True)
class SshConfig:
    """Effective SSH settings for one node."""

    user: str | None = None
    port: int = 22
    key: str | None = None
    known_hosts: str | None = None
    verify_host_keys: bool = True
    jump_host: str | None = None
    become: bool = False
    connect_timeout: float = 10.0
    keepalive: float = 30.0

    def merged(self, options: SshOptions | None) -> SshConfig:
        if options is None:
            return self
        changes = {k: v for k, v in options.model_dump().items() if v is not None}
        return SshConfig(**{**self.__dict__, **changes})


@dataclass(frozen=True)
class OpenStackConfig:
    cloud: str | None = None
    region: str | None = None
    clouds_yaml: str | None = None
    timeout: float | None = None  # per API call; None: API_TIMEOUT


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    site: str
    roles: tuple[str, ...]
    az: str | None
    ssh: SshConfig

    @property
    def services(self) -> frozenset[str]:
        return frozenset(ROLES[r].service for r in self.roles if r in ROLES)

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Site:
    name: str
    region: str
    priority: int
    nodes: tuple[Node, ...]
    openstack: OpenStackConfig

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if role in n.roles]


@dataclass(frozen=True)
class Inventory:
    file: str
    cloud: str
    upgrade: UpgradePath
    method: str
    identity_site: str
    dashboard_site: str | None
    sites: tuple[Site, ...]
    policy: PolicySpec
    window: WindowSpec | None
    lab: LabSpec | None
    spec: InventorySpec = field(repr=False)
    digest: str = ""

    @property
    def nodes(self) -> list[Node]:
        return [n for s in self.sites for n in s.nodes]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)


class InventoryError(SourceError):
    """The inventory is malformed; `problems` lists each with file, line and fix."""


# ---------------------------------------------------------------- loading and validation


def load_inventory(path: str | FsPath) -> Inventory:
    """Read, parse and validate an inventory file; raise InventoryError listing every problem."""
    path = FsPath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_INVENTORY_BYTES + 1)
        if len(raw) > MAX_INVENTORY_BYTES:
            raise InventoryError(
                [
                    Problem(
                        str(path),
                        None,
                        "",
                        f"larger than {MAX_INVENTORY_BYTES // 2**20} MiB: not an inventory "
                        "(one is a few kilobytes); check the path",
                    )
                ]
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise InventoryError(
            [Problem(str(path), None, "", "no such file; check the path to the inventory")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8 text"
        raise InventoryError(
            [Problem(str(path), None, "", f"cannot read the inventory: {reason}")]
        ) from None
    return parse_inventory(text, str(path))


def parse_inventory(text: str, file: str = "<inventory>") -> Inventory:
    try:
        doc = parse_yaml(text, file)
    except SourceError as exc:
        raise InventoryError(exc.problems) from None
    if not isinstance(doc.data, dict):
        raise InventoryError(
            [
                Problem(
                    file,
                    1,
                    "",
                    "the inventory must be a mapping with keys such as cloud, "
                    "upgrade, shared and sites",
                )
            ]
        )
    try:
        spec = InventorySpec.model_validate(doc.data)
    except ValidationError as exc:
        raise InventoryError(_translate(exc, doc)) from None
    return _resolve(spec, doc)


def _suggest(word: str, choices: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the mapping at `loc` (for listing allowed keys)."""
    model: type[BaseModel] | None = InventorySpec
    skip_key = False
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if skip_key:  # the user-chosen key of a dict such as sites.<name>
            skip_key = False
            continue
        fields = model.model_fields
        name = next((n for n, f in fields.items() if (f.alias or n) == part), None)
        if name is None:
            return None
        annotation = fields[name].annotation
        if get_origin(annotation) is dict:
            model = _unwrap_model(get_args(annotation)[1])
            skip_key = True
        else:
            model = _unwrap_model(annotation)
    return model


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _translate(exc: ValidationError, doc: YamlDocument) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind, value = err["type"], err.get("input")
        ctx = err.get("ctx", {})
        parent = loc[:-1]
        key = loc[-1] if loc else ""
        if kind == "extra_forbidden":
            model = _model_at(parent)
            allowed = sorted((f.alias or n) for n, f in model.model_fields.items()) if model else []
            message = f"unknown key {key!r}{_suggest(str(key), allowed)}"
            if allowed:
                message += f" (allowed here: {', '.join(allowed)})"
        elif kind == "missing":
            message = f"missing required key {key!r}; add it"
            problems.append(Problem(doc.file, doc.line_of(parent), format_path(loc), message))
            continue
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            message = f"expected a whole number, got {value!r}"
        elif kind == "finite_number":
            message = f"expected a finite number, got {value!r}"
        elif kind in ("float_parsing", "float_type"):
            message = f"expected a number, got {value!r}"
        elif kind in ("bool_parsing", "bool_type"):
            message = f"expected true or false, got {value!r}"
        elif kind in ("string_type",):
            message = f"expected text, got {value!r}"
        elif kind in ("list_type",):
            message = f"expected a list, got {value!r}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            message = f"expected a mapping of keys, got {value!r}"
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            bound = {
                "greater_than_equal": ("at least", "ge"),
                "greater_than": ("more than", "gt"),
                "less_than_equal": ("at most", "le"),
                "less_than": ("less than", "lt"),
            }[kind]
            message = f"must be {bound[0]} {ctx.get(bound[1])}, got {value!r}"
        elif kind == "too_short":
            message = "must not be empty; list at least one entry"
        elif kind == "literal_error":
            choices = ctx.get("expected", "")
            options = re.findall(r"'([^']+)'", str(choices))
            message = f"{value!r} is not one of {choices}{_suggest(str(value), options)}"
        elif kind in ("datetime_parsing", "datetime_type", "datetime_from_date_parsing"):
            message = f"expected a date and time like 2026-11-28T22:00:00Z, got {value!r}"
        elif kind == "value_error":
            message = str(ctx.get("error", err["msg"]))
        else:
            message = err["msg"]
        problems.append(Problem(doc.file, doc.line_of(loc), format_path(loc), message))
    return problems


def _valid_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(text)) and not text.replace(".", "").isdigit()


def _resolve(spec: InventorySpec, doc: YamlDocument) -> Inventory:
    problems: list[Problem] = []

    def problem(path: Path, message: str) -> None:
        problems.append(Problem(doc.file, doc.line_of(path), format_path(path), message))

    upgrade: UpgradePath | None = None
    try:
        source = find_release(spec.upgrade.from_)
    except ReleaseError as exc:
        problem(("upgrade", "from"), str(exc))
        source = None
    try:
        target = find_release(spec.upgrade.to)
    except ReleaseError as exc:
        problem(("upgrade", "to"), str(exc))
        target = None
    if source and target:
        try:
            upgrade = validate_path(source, target)
        except ReleaseError as exc:
            problem(("upgrade",), str(exc))

    defaults = SshConfig().merged(spec.ssh)
    base_os = OpenStackConfig(**spec.openstack.model_dump())
    seen_names: dict[str, Path] = {}
    seen_addresses: dict[str, Path] = {}
    sites: list[Site] = []
    known_roles = sorted([*ROLES, *INFRA_ROLES])
    for site_name, site in spec.sites.items():
        site_path: Path = ("sites", site_name)
        if not isinstance(site_name, str) or not NAME_RE.match(site_name):
            problem(
                site_path,
                f"{site_name!r} is not a valid site name: use letters, digits, '.', '_', '-'",
            )
        site_ssh = defaults.merged(site.ssh)
        nodes: list[Node] = []
        problems_before = len(problems)
        for i, spec_node in enumerate(site.nodes):
            node_path: Path = (*site_path, "nodes", i)
            for j, role in enumerate(spec_node.roles):
                if role not in ROLES and role not in INFRA_ROLES:
                    problem(
                        (*node_path, "roles", j),
                        f"unknown role {role!r}{_suggest(role, known_roles)} "
                        f"(known roles: {', '.join(known_roles)})",
                    )
            try:
                names = hostrange.expand(spec_node.name, limit=spec.policy.max_hosts)
            except hostrange.HostRangeError as exc:
                problem((*node_path, "name"), str(exc))
                continue
            try:
                addresses = hostrange.expand(spec_node.address, limit=spec.policy.max_hosts)
            except hostrange.HostRangeError as exc:
                problem((*node_path, "address"), str(exc))
                continue
            if len(addresses) == 1 and len(names) > 1:
                problem(
                    (*node_path, "address"),
                    f"{spec_node.address!r} is one address for {len(names)} nodes "
                    f"({spec_node.name}); give a matching range such as "
                    f"{_range_hint(spec_node.address, len(names))}",
                )
                continue
            if len(addresses) != len(names):
                problem(
                    (*node_path, "address"),
                    f"{spec_node.address!r} expands to {len(addresses)} addresses but "
                    f"{spec_node.name!r} to {len(names)} names; make both ranges the same length",
                )
                continue
            node_ssh = site_ssh.merged(spec_node.ssh)
            for name, address in zip(names, addresses, strict=True):
                if not NAME_RE.match(name):
                    problem(
                        (*node_path, "name"),
                        f"{name!r} is not a valid node name: use letters, digits, '.', '_', '-'",
                    )
                    continue
                if not _valid_address(address):
                    problem(
                        (*node_path, "address"),
                        f"{address!r} is not an IP address or host name; shell "
                        "metacharacters and spaces are not allowed",
                    )
                    continue
                if name in seen_names:
                    problem(
                        (*node_path, "name"),
                        f"duplicate node name {name!r} (first defined at line "
                        f"{doc.line_of(seen_names[name])}); node names must be unique",
                    )
                    continue
                if address in seen_addresses:
                    problem(
                        (*node_path, "address"),
                        f"duplicate address {address!r} (first used at line "
                        f"{doc.line_of(seen_addresses[address])}); give each node its own",
                    )
                    continue
                seen_names[name] = (*node_path, "name")
                seen_addresses[address] = (*node_path, "address")
                nodes.append(
                    Node(name, address, site_name, tuple(spec_node.roles), spec_node.az, node_ssh)
                )
        nodes.sort(key=lambda n: hostrange.natural_key(n.name))
        roles_here = {r for n in nodes for r in n.roles}
        rejected_nodes = len(problems) > problems_before  # no cascade from a rejected node
        if (
            "nova-compute" in roles_here
            and "nova-conductor" not in roles_here
            and not rejected_nodes
        ):
            problem(
                (*site_path, "nodes"),
                f"site {site_name!r} has nova-compute nodes but no nova-conductor; add the "
                "nova-conductor role to a controller of this site",
            )
        site_os = base_os
        if site.openstack is not None:
            changes = {k: v for k, v in site.openstack.model_dump().items() if v is not None}
            site_os = OpenStackConfig(**{**base_os.__dict__, **changes})
        region = site.region or site_os.region or site_name
        sites.append(Site(site_name, region, site.priority, tuple(nodes), site_os))

    site_names = [s.name for s in sites]
    identity = spec.shared.identity.site
    if identity not in spec.sites:
        problem(
            ("shared", "identity", "site"),
            f"unknown site {identity!r}{_suggest(identity, site_names)} "
            f"(sites: {', '.join(site_names)})",
        )
    else:
        for s in sites:
            has_keystone = any("keystone" in n.roles for n in s.nodes)
            if s.name == identity and not has_keystone:
                problem(
                    ("sites", s.name, "nodes"),
                    f"the shared identity site {identity!r} has no node with the keystone role; "
                    "add one",
                )
            elif s.name != identity and has_keystone:
                problem(
                    ("sites", s.name, "nodes"),
                    f"site {s.name!r} has keystone nodes but identity is shared at "
                    f"{identity!r}; move them there or change shared.identity.site",
                )
    dashboard = spec.shared.dashboard.site if spec.shared.dashboard else None
    if dashboard is not None:
        if dashboard not in spec.sites:
            problem(
                ("shared", "dashboard", "site"),
                f"unknown site {dashboard!r}{_suggest(dashboard, site_names)} "
                f"(sites: {', '.join(site_names)})",
            )
        else:
            for s in sites:
                has_horizon = any("horizon" in n.roles for n in s.nodes)
                if s.name == dashboard and not has_horizon:
                    problem(
                        ("shared", "dashboard", "site"),
                        f"the shared dashboard site {dashboard!r} has no node with the horizon "
                        "role; add one or remove shared.dashboard",
                    )
                elif s.name != dashboard and has_horizon:
                    problem(
                        ("sites", s.name, "nodes"),
                        f"site {s.name!r} has horizon nodes but the dashboard is shared at "
                        f"{dashboard!r}; remove them or drop shared.dashboard",
                    )

    if upgrade is not None:
        from rollgate.core.methods import method

        method(spec.method).check_inventory(spec, upgrade.target, problem)
    total = sum(len(site.nodes) for site in sites)
    if total > spec.policy.max_hosts:
        problem(
            ("sites",),
            f"{total:,} nodes, more than policy.max_hosts ({spec.policy.max_hosts:,}); "
            "raise it if the cloud really has that many",
        )
    _check_recipe_overrides(spec, problem)
    if spec.lab is not None and spec.lab.faults:
        from rollgate.core.errors import UserError
        from rollgate.core.faults import parse_faults

        node_names = {n.name for site in sites for n in site.nodes}
        for i, fault in enumerate(spec.lab.faults):
            try:
                parse_faults([fault], node_names, {site.name for site in sites})
            except UserError as exc:
                problem(("lab", "faults", i), str(exc))
    if spec.lab is not None:
        for lab_site in sites:
            for node in lab_site.nodes:
                if not _is_loopback(node.address):
                    problem(
                        ("sites", lab_site.name, "nodes"),
                        f"lab node {node.name} has address {node.address!r}: the lab only "
                        "listens on loopback addresses (127.x.y.z); use those, or remove "
                        "the lab: section to reach real machines",
                    )
                    break
    if spec.window is not None:
        window = spec.window
        if (window.end is None) == (window.hours is None):
            problem(
                ("window",),
                "a window needs an end or hours (not both): e.g. {start: 2026-12-05T22:00Z, "
                "end: 2026-12-06T04:00Z} or {start: now, hours: 6}",
            )
        elif window.start == "now" and window.end is not None:
            problem(("window", "end"), "a window that starts now has hours, not an end")
        elif (
            isinstance(window.start, datetime)
            and window.end is not None
            and window.end <= window.start
        ):
            problem(
                ("window", "end"),
                f"the window ends ({window.end.isoformat()}) before it starts "
                f"({window.start.isoformat()}); swap or correct the times",
            )

    if problems or upgrade is None:
        raise InventoryError(problems)
    sites.sort(key=lambda s: (s.name != identity, s.priority, s.name))
    return Inventory(
        file=doc.file,
        cloud=spec.cloud,
        upgrade=upgrade,
        method=spec.method,
        identity_site=identity,
        dashboard_site=dashboard,
        sites=tuple(sites),
        policy=spec.policy,
        window=spec.window,
        lab=spec.lab,
        spec=spec,
        digest=spec_digest(spec),
    )


def _check_recipe_overrides(spec: InventorySpec, problem: Any) -> None:
    """Every overridden action must exist in the deployment method's recipe, and every
    `{{placeholder}}` in it must be a value the plan gives or a recipe variable."""
    from rollgate.core.methods import method
    from rollgate.core.recipes import PLAN_VALUES, load_recipe, placeholders

    recipe = load_recipe(spec.method)
    plan_values = PLAN_VALUES | method(spec.method).plan_value_names
    known = sorted(recipe.actions)
    cloud_variables = set(spec.recipe.variables) if spec.recipe else set()
    places: list[tuple[Path, RecipeOverrides | None, set[str]]] = [
        (("recipe",), spec.recipe, cloud_variables)
    ]
    places += [
        (
            ("sites", name, "recipe"),
            site.recipe,
            set(site.recipe.variables) if site.recipe else set(),
        )
        for name, site in spec.sites.items()
    ]
    used = {
        name
        for _, overrides, _ in places
        for run in (overrides.actions.values() if overrides else [])
        for name in placeholders(run or "")
    }
    for path, overrides, _ in places:
        for name in overrides.variables if overrides else {}:
            if name not in recipe.variables and name not in used:
                problem(
                    (*path, "variables", name),
                    f"the {spec.method} recipe has no variable {name!r} and no overridden "
                    f"action uses it{_suggest(name, sorted(recipe.variables))} (its variables: "
                    f"{', '.join(sorted(recipe.variables))})",
                )
    for path, overrides, site_variables in places:
        for key, run in (overrides.actions if overrides else {}).items():
            if key not in known:
                problem(
                    (*path, "actions", key),
                    f"the {spec.method} recipe has no action {key!r}"
                    f"{_suggest(key, known)}; see core/methods/{spec.method}/recipe.yaml",
                )
                continue
            base = recipe.actions[key]
            names = (
                plan_values
                | set(recipe.variables)
                | cloud_variables
                | site_variables
                | set(placeholders(base.run) if base else [])
            )
            for name in placeholders(run or ""):
                if name not in names:
                    problem(
                        (*path, "actions", key),
                        f"{{{{{name}}}}} is no value Rollgate knows{_suggest(name, sorted(names))}"
                        "; use a recipe variable (recipe.variables) or one of "
                        f"{', '.join(sorted(plan_values))}",
                    )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _range_hint(address: str, count: int) -> str:
    head, _, last = address.rpartition(".")
    if head and last.isdigit():
        return f"{head}.[{last}:{int(last) + count - 1}]"
    return f"{address}[1:{count}]"


def _aware(moment: datetime) -> datetime:
    """Times without a zone are taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def spec_digest(spec: InventorySpec) -> str:
    """A digest of what the inventory says, independent of key order and formatting. Fields
    left at their defaults are not part of it, so a setting added in a later version does not
    change the digest of an inventory that does not use it (a run stays resumable)."""
    said = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    canonical = json.dumps(said, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
