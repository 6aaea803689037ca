"""Fault injection for the lab, from the inventory's `lab.faults` or `--fault SPEC`.

Specs (NODE may be `*` for every node; CMD is the start of a command, after any sudo):
  unreachable:NODE              SSH to NODE fails (connection refused), every time
  fail:NODE:CMD[:EXIT[:COUNT]]  CMD exits EXIT (default 1) the first COUNT times (default: always)
  warn:NODE:CMD                 CMD exits 1 (a warning) with a warning in its output, once
  hang:NODE:CMD[:COUNT]         CMD never finishes (until its timeout or termination)
  slow:NODE:FACTOR              everything on NODE takes FACTOR times longer
  api-error:SITE                the site's API answers 503 to compute/volume/network calls
  api-slow:SITE:SECONDS         every API call of the site takes SECONDS of real time first
                                (whatever the time scale)
  api-hang:SITE:SERVICE         the site's SERVICE API (its URL path: compute, image...) takes
                                requests and never answers (a wedged WSGI worker)
  cinder-pending:COUNT          the previous release's cinder online migrations are unfinished
  crash:NODE:UNIT               UNIT starts, then exits before its first heartbeat
  hold:NODE:PACKAGE             PACKAGE is held (apt-mark hold) on NODE
  conffile:NODE:PACKAGE         an operator edited a conffile PACKAGE ships on NODE
  target-blocker:SERVICE        SERVICE-status upgrade check fails, with the target's code only
  unpinned:NODE                 NODE's nova.conf has no [upgrade_levels] compute (Ubuntu's default)
  stale-restart:NODE:UNIT       restarting UNIT exits 0 but leaves its old process running
  dies-after:NODE:UNIT:SECONDS  UNIT's next start dies SECONDS (lab seconds) later
  schema-noop:SERVICE           SERVICE's schema tools exit 0 as if they migrated, moving nothing
  disk:NODE:BYTES               NODE's disk has BYTES free (df), whatever its files hold
  binlog:SITE                   the site's MySQL has binary logging on and
                                log_bin_trust_function_creators off: a migration that creates
                                triggers (keystone's expand, glance's) fails (ERROR 1419)
  unlisted:SITE:HOST:BINARY     the site's APIs list BINARY (nova-compute, cinder-volume, a
                                neutron agent) on HOST, running the source release, which the
                                inventory does not have (or does not give that role)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rollgate.core.errors import UserError


@dataclass
class CommandFault:
    kind: str  # fail | warn | hang
    node: str
    prefix: str
    exit: int = 1
    remaining: int | None = None  # None: always


@dataclass
class Faults:
    unreachable: set[str] = field(default_factory=set)
    commands: list[CommandFault] = field(default_factory=list)
    slow: dict[str, float] = field(default_factory=dict)
    api_errors: set[str] = field(default_factory=set)
    api_hangs: set[tuple[str, str]] = field(default_factory=set)  # (site, URL path service)
    api_slow: dict[str, float] = field(default_factory=dict)  # site -> real seconds per call
    cinder_pending: int = 0
    crash: set[tuple[str, str]] = field(default_factory=set)  # (node, unit)
    held: set[tuple[str, str]] = field(default_factory=set)  # (node, package)
    conffiles: set[tuple[str, str]] = field(default_factory=set)  # (node, package)
    blockers: set[str] = field(default_factory=set)  # services whose target check fails
    no_pin: set[str] = field(default_factory=set)  # nodes whose nova.conf has no RPC pin
    stale: set[tuple[str, str]] = field(default_factory=set)  # (node, unit): restart is a no-op
    dies: dict[tuple[str, str], float] = field(default_factory=dict)  # (node, unit) -> seconds
    schema_noop: set[str] = field(default_factory=set)  # services whose migrations move nothing
    binlog: set[str] = field(default_factory=set)  # sites whose MySQL logs binary, untrusting
    disk: dict[str, int] = field(default_factory=dict)  # node -> bytes free
    # (site, host, binary): a service the site's APIs list beyond the inventory
    unlisted: list[tuple[str, str, str]] = field(default_factory=list)

    def api_delay(self, site: str) -> float:
        return self.api_slow.get(site, self.api_slow.get("*", 0.0))

    def api_hangs_at(self, site: str, service: str) -> bool:
        return (site, service) in self.api_hangs or ("*", service) in self.api_hangs

    def unpinned(self, node: str) -> bool:
        return node in self.no_pin or "*" in self.no_pin

    def target_blocker(self, service: str) -> bool:
        return service in self.blockers

    def stale_restart(self, node: str, unit: str) -> bool:
        return (node, unit) in self.stale or ("*", unit) in self.stale

    def dies_after(self, node: str, unit: str) -> float | None:
        """Seconds after its next start that the unit dies (once), or None."""
        for key in ((node, unit), ("*", unit)):
            if key in self.dies:
                return self.dies.pop(key)
        return None

    def disk_free(self, node: str) -> int | None:
        return self.disk.get(node, self.disk.get("*"))

    def binary_logging(self, site: str) -> bool:
        return site in self.binlog or "*" in self.binlog

    def schema_moves(self, service: str) -> bool:
        return service not in self.schema_noop

    def crashes(self, node: str, unit: str) -> bool:
        return (node, unit) in self.crash or ("*", unit) in self.crash

    def is_held(self, node: str, package: str) -> bool:
        return (node, package) in self.held or ("*", package) in self.held

    def edited_conffile(self, node: str, package: str) -> bool:
        return (node, package) in self.conffiles or ("*", package) in self.conffiles

    def is_unreachable(self, node: str) -> bool:
        return node in self.unreachable or "*" in self.unreachable

    def slowness(self, node: str) -> float:
        return self.slow.get(node, self.slow.get("*", 1.0))

    def for_command(self, node: str, command: str) -> CommandFault | None:
        for fault in self.commands:
            if fault.node in (node, "*") and command.startswith(fault.prefix):
                if fault.remaining is None:
                    return fault
                if fault.remaining > 0:
                    fault.remaining -= 1
                    return fault
        return None


KINDS = (
    "unreachable", "fail", "warn", "hang", "slow", "api-error", "api-slow", "api-hang",
    "cinder-pending", "crash", "hold", "conffile", "target-blocker", "unpinned",
    "stale-restart", "dies-after", "schema-noop", "binlog", "disk", "unlisted",
)  # fmt: skip


# the binaries the lab's APIs can list for a host (its apt packages' names)
LISTED_BINARIES = (
    "nova-compute", "nova-conductor", "nova-scheduler", "cinder-volume", "cinder-scheduler",
    "cinder-backup", "neutron-openvswitch-agent", "neutron-l3-agent", "neutron-dhcp-agent",
    "neutron-metadata-agent",
)  # fmt: skip


def parse_faults(specs: list[str], node_names: set[str], site_names: set[str]) -> Faults:
    faults = Faults()
    for spec in specs:
        kind, _, rest = spec.partition(":")
        parts = rest.split(":") if rest else []

        def node_of(name: str, spec: str = spec) -> str:
            if name != "*" and name not in node_names:
                raise UserError(f"fault {spec!r}: no node {name!r} in the inventory")
            return name

        def site_of(name: str, spec: str = spec) -> str:
            if name != "*" and name not in site_names:
                raise UserError(f"fault {spec!r}: no site {name!r} in the inventory")
            return name

        try:
            if kind == "unreachable" and len(parts) == 1:
                faults.unreachable.add(node_of(parts[0]))
            elif kind == "unpinned" and len(parts) == 1:
                faults.no_pin.add(node_of(parts[0]))
            elif kind in ("fail", "warn", "hang") and len(parts) >= 2:
                node, prefix = node_of(parts[0]), parts[1]
                extra = parts[2:]
                if kind == "fail":
                    code = int(extra[0]) if extra else 1
                    count = int(extra[1]) if len(extra) > 1 else None
                elif kind == "warn":
                    code, count = 1, 1
                else:
                    code, count = 0, int(extra[0]) if extra else None
                if not 0 <= code <= 255 or (count is not None and count < 1):
                    raise ValueError  # exit statuses are 0-255; a count is at least 1
                faults.commands.append(CommandFault(kind, node, prefix, code, count))
            elif kind == "slow" and len(parts) == 2:
                factor = float(parts[1])
                if not (math.isfinite(factor) and 0 < factor <= 1000):
                    raise ValueError
                faults.slow[node_of(parts[0])] = factor
            elif kind == "api-error" and len(parts) == 1:
                faults.api_errors.add(site_of(parts[0]))
            elif kind == "api-slow" and len(parts) == 2:
                site_of(parts[0])
                seconds = float(parts[1])
                if not (math.isfinite(seconds) and 0 <= seconds <= 600):
                    raise ValueError
                faults.api_slow[parts[0]] = seconds
            elif kind == "api-hang" and len(parts) == 2 and parts[1]:
                faults.api_hangs.add((site_of(parts[0]), parts[1]))
            elif kind in ("crash", "hold", "conffile") and len(parts) == 2 and parts[1]:
                pair = (node_of(parts[0]), parts[1])
                {"crash": faults.crash, "hold": faults.held, "conffile": faults.conffiles}[
                    kind
                ].add(pair)
            elif kind == "stale-restart" and len(parts) == 2 and parts[1]:
                faults.stale.add((node_of(parts[0]), parts[1]))
            elif kind == "dies-after" and len(parts) == 3 and parts[1]:
                seconds = float(parts[2])
                if not (math.isfinite(seconds) and 0 <= seconds <= 86400):
                    raise ValueError
                faults.dies[(node_of(parts[0]), parts[1])] = seconds
            elif kind == "disk" and len(parts) == 2:
                free = int(parts[1])
                if free < 0:
                    raise ValueError
                faults.disk[node_of(parts[0])] = free
            elif kind == "unlisted" and len(parts) == 3 and parts[1]:
                if parts[2] not in LISTED_BINARIES:
                    raise UserError(
                        f"fault {spec!r}: the lab lists {', '.join(LISTED_BINARIES)}, "
                        f"not {parts[2]!r}"
                    )
                faults.unlisted.append((site_of(parts[0]), parts[1], parts[2]))
            elif kind == "binlog" and len(parts) == 1:
                faults.binlog.add(site_of(parts[0]))
            elif kind == "schema-noop" and len(parts) == 1 and parts[0]:
                faults.schema_noop.add(parts[0])
            elif kind == "target-blocker" and len(parts) == 1 and parts[0]:
                faults.blockers.add(parts[0])
            elif kind == "cinder-pending" and len(parts) == 1:
                faults.cinder_pending = int(parts[0])
                if not 0 <= faults.cinder_pending <= 1_000_000:
                    raise ValueError
            else:
                raise ValueError
        except ValueError:
            raise UserError(
                f"fault {spec!r} is not a fault spec: the kinds are {', '.join(KINDS)} (forms "
                "in docs/lab.md), e.g. fail:NODE:COMMAND[:EXIT[:COUNT]] with an exit status "
                "0-255 and a count of at least 1"
            ) from None
    return faults
