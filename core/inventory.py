"""The inventory: a YAML description of a cloud, validated into typed, resolved models."""

from __future__ import annotations

import difflib
import hashlib
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

from rollgate.core.cloud_scope import Declared
from rollgate.core.releases import UpgradePath
from rollgate.core.roles import ROLES
from rollgate.core.yamlsource import (
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
HOST_RE = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")
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


class LoginSettings(StrictModel):
    """What a login names, checked alike wherever it is written: a login name, key and
    known_hosts paths on one line."""

    @field_validator("user", check_fields=False)
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and not USER_RE.match(v):
            raise ValueError(f"{v!r} is not a valid login name: use letters, digits, '_', '.', '-'")
        return v

    @field_validator("key", "known_hosts", check_fields=False)
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else _safe_text(v, "path")


class JumpSpec(LoginSettings):
    """One jump host (bastion): what it leaves unset comes from the inventory's ssh settings,
    then from the ssh config's block for it."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    verify_host_keys: bool | None = None
    connect_timeout: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not HOST_RE.match(v):
            raise ValueError(f"{v!r} is not a host name or address")
        return v


class SshOptions(LoginSettings):
    """SSH settings; every field optional so that sites and nodes can override a few."""

    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    key: str | None = None
    known_hosts: str | None = None
    verify_host_keys: bool | None = None
    # `[user@]host[:port]`, a chain as `a,b` (ProxyJump's form), or `jump:` with settings
    jump_host: str | None = None
    jump: JumpSpec | list[JumpSpec] | None = None
    # the OpenSSH client config read for what the inventory leaves unset (default
    # ~/.ssh/config); false reads none
    config: str | bool | None = None
    become: bool | None = None
    # fed to `sudo -S` when sudo asks for one; read when the run starts, never stored
    become_password: SecretSpec | None = None
    connect_timeout: float | None = Field(default=None, gt=0, le=3600)
    keepalive: float | None = Field(default=None, ge=0, le=3600)

    @model_validator(mode="after")
    def _one_jump(self) -> SshOptions:
        if self.jump_host is not None and self.jump is not None:
            raise ValueError("give jump_host or jump, not both")
        if self.config is True:
            raise ValueError("config takes a path, or false to read no ssh config")
        return self

    @field_validator("jump_host")
    @classmethod
    def _jump(cls, v: str | None) -> str | None:
        if v is not None and not all(JUMP_RE.match(hop.strip()) for hop in v.split(",")):
            raise ValueError(
                f"{v!r} is not a jump host: write [user@]host[:port] (a,b for a chain)"
            )
        return v

    @field_validator("config")
    @classmethod
    def _config(cls, v: str | bool | None) -> str | bool | None:
        return _safe_text(v, "path") if isinstance(v, str) else v


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


class UnmanagedSpec(StrictModel):
    """A host (or some of its services) the site's APIs list that Rollgate leaves alone, and
    why: shown, journalled and reported as not upgraded by Rollgate."""

    host: str
    reason: str = Field(min_length=3)
    binaries: list[str] = Field(default_factory=list)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid host name: use letters, digits, '.', '_', '-'")
        return v


class SiteSpec(StrictModel):
    region: str | None = None
    priority: int = 100
    ssh: SshOptions | None = None
    openstack: OpenStackOptions | None = None
    recipe: RecipeOverrides | None = None
    nodes: list[NodeSpec] = Field(min_length=1)
    unmanaged: list[UnmanagedSpec] = Field(default_factory=list)


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
    # how long a network-bound build of the preparation may take (a virtualenv from PyPI,
    # kolla-ansible and its dependencies, image pulls): minutes on a loaded mirror, whatever
    # step_timeout says for the steps of the window
    build_timeout: float = Field(default=3600, gt=0, le=7 * 86400)
    # seconds after a restart before what runs is read: a WSGI app loads for seconds, and a
    # process that dies in its first seconds must not be read as running
    start_grace: float = Field(default=15, ge=0, le=3600)
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
            raise ValueError(f"{v!r} is not one of {listed}{suggest(v, known)}")
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
    jump: tuple[JumpSpec, ...] = ()  # the jump hosts in order (jump_host parsed, or jump:)
    config: str | bool | None = None  # ssh config file; None: ~/.ssh/config; False: none
    become_password: SecretSpec | None = None  # where the sudo password is read from
    given: frozenset[str] = frozenset()  # the settings the inventory wrote (not defaults)

    def merged(self, options: SshOptions | None) -> SshConfig:
        if options is None:
            return self
        changes = {
            name: getattr(options, name)
            for name in options.model_fields_set
            if getattr(options, name) is not None
        }
        if "jump_host" in changes:
            changes["jump"] = tuple(parse_jump(hop) for hop in changes["jump_host"].split(","))
        elif "jump" in changes:
            hops = changes["jump"]
            changes["jump"] = tuple(hops) if isinstance(hops, list) else (hops,)
            changes["jump_host"] = ",".join(jump_text(h) for h in changes["jump"])
        return SshConfig(**{**self.__dict__, **changes, "given": self.given | set(changes)})


def parse_jump(text: str) -> JumpSpec:
    """`[user@]host[:port]` (an IPv6 address in brackets) as a jump host."""
    user, _, rest = text.strip().rpartition("@")
    host, port = rest, None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") else None
    elif rest.count(":") == 1:
        host, _, number = rest.partition(":")
        port = int(number)
    return JumpSpec(host=host, port=port, user=user or None)


def jump_text(hop: JumpSpec) -> str:
    host = f"[{hop.host}]" if ":" in hop.host else hop.host
    return f"{hop.user + '@' if hop.user else ''}{host}{f':{hop.port}' if hop.port else ''}"


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
    unmanaged: tuple[Declared, ...] = ()  # what its APIs list that Rollgate leaves alone

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
    from rollgate.core.inventory_resolve import resolve

    return resolve(spec, doc)


def suggest(word: str, choices: list[str] | tuple[str, ...] | frozenset[str]) -> str:
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
            message = f"unknown key {key!r}{suggest(str(key), allowed)}"
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
            message = f"{value!r} is not one of {choices}{suggest(str(value), options)}"
        elif kind in ("datetime_parsing", "datetime_type", "datetime_from_date_parsing"):
            message = f"expected a date and time like 2026-11-28T22:00:00Z, got {value!r}"
        elif kind == "value_error":
            message = str(ctx.get("error", err["msg"]))
        else:
            message = err["msg"]
        problems.append(Problem(doc.file, doc.line_of(loc), format_path(loc), message))
    return problems


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
