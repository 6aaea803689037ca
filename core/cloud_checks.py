"""Checks that read the running cloud through its API, each answer fresh: version documents are
fetched anew on every call (keystoneauth's Discover, never a discovery cache that outlives a
restart), heartbeats are compared with the first one seen, and the final read-back covers what
the cloud lists, not only what the inventory names. Blocking calls: CloudAdapter runs them in
its pool (core/cloud.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollgate.core.executor import CommandResult, OutputCallback

# cloud actions that wait (a heartbeat, an API that starts): limited by the step's timeout
# (policy.heartbeat_timeout), not by one API call's
HEARTBEAT_WAITS = (
    "wait-compute-up", "wait-agents-up", "wait-service-up", "wait-api-up", "verify-api",
)  # fmt: skip
FACTS_NAME = {"compute": "compute", "placement": "placement", "block-storage": "block-storage",
              "volumev3": "block-storage"}  # fmt: skip


@dataclass(frozen=True)
class Answer:
    """What a service's version document said, fetched just now."""

    url: str
    low: str | None  # its oldest microversion (None: the API has none)
    high: str | None  # its newest microversion
    version: str  # the API version, e.g. 2.1


def _dotted(value: Any) -> str | None:
    if not value:
        return None
    return ".".join(str(part) for part in value)


def endpoint(conn: Any, service_type: str) -> str:
    """The catalog's URL of `service_type` in the connection's region."""
    url = conn.endpoint_for(service_type)
    if not url:
        raise LookupError(f"the catalog lists no {service_type} endpoint")
    return str(url)


def _candidates(conn: Any, url: str) -> list[str]:
    """Where the version document may be: the endpoint, without its project id, its root."""
    out = [url.rstrip("/")]
    project = getattr(conn, "current_project_id", None)
    if project and out[-1].endswith("/" + project):
        out.append(out[-1][: -len(project) - 1])
    last = out[-1].rsplit("/", 1)
    if len(last) == 2 and last[1][:1] == "v" and last[1][1:2].isdigit():
        out.append(last[0])
    return out


def fresh_answer(conn: Any, service_type: str) -> Answer:
    """The service's version document, fetched now; raises what the request raised."""
    from keystoneauth1 import discover
    from keystoneauth1 import exceptions as ks_exc

    url = endpoint(conn, service_type)
    failure: Exception | None = None
    for candidate in _candidates(conn, url):
        try:
            found = discover.Discover(conn.session, candidate, authenticated=True)
            data = found.version_data()
        except ks_exc.NotFound as exc:  # not the document: try the next place
            failure = exc
            continue
        if not data:
            failure = LookupError(f"{candidate} gave no version document")
            continue
        best = max(data, key=lambda v: (v.get("max_microversion") or (0,), v["version"]))
        return Answer(
            candidate,
            _dotted(best.get("min_microversion")),
            _dotted(best.get("max_microversion")),
            _dotted(best["version"]) or "?",
        )
    assert failure is not None
    raise failure


def _microversion_key(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in value.split("."))


@dataclass(frozen=True)
class Polling:
    """A check that waits: `probe` (one short API call) is asked again every poll interval
    by the caller, on its event loop, until it gives a result; `why` says what never came."""

    probe: Callable[[], CommandResult | None]
    why: Callable[[], str]


def until(
    probe: Callable[[], CommandResult | None],
    timeout: float,
    interval: float,
    why: Callable[[], str],
) -> CommandResult | Polling:
    """The first answer of `probe` when it gives one now, else the polling to go on with
    (the adapter asks again on its loop, never sleeping in an API worker)."""
    result = probe()
    return result if result is not None else Polling(probe, why)


def _answer_or_error(conn: Any, service_type: str) -> Answer | str:
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

    try:
        return fresh_answer(conn, service_type)
    except ks_exc.HttpError as exc:
        return f"{exc.http_status} {exc.message}"[:200]
    except ks_exc.ConnectFailure as exc:  # "Unable to establish connection to URL: <urllib3's>"
        return str(exc).split(": HTTPConnectionPool", 1)[0].split(": ('Connection", 1)[0][:200]
    except (ks_exc.ClientException, os_exc.SDKException, OSError, LookupError) as exc:
        return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def wait_api_up(
    conn: Any,
    region: str,
    args: dict[str, Any],
    out: OutputCallback,
    timeout: float,
    interval: float,
) -> CommandResult | Polling:
    """The service's API answers a fresh version discovery (asked until it does); with
    `expect_microversion`, its newest microversion must be that one."""
    kind = str(args["service_type"])
    last: list[str] = ["no answer yet"]

    def probe() -> CommandResult | None:
        found = _answer_or_error(conn, kind)
        if isinstance(found, str):
            last[0] = found
            return None
        span = f"microversions {found.low} to {found.high}" if found.high else "no microversions"
        out("info", f"the {kind} API of {region} answers at {found.url}: v{found.version}, {span}")
        if "expect_microversion" not in args or args["expect_microversion"] is None:
            return CommandResult(0)
        want = str(args["expect_microversion"])
        if found.high == want:
            return CommandResult(0)
        return CommandResult(
            1,
            error=f"the {kind} API of {region} announces {found.high or 'no microversion'} as "
            f"its newest microversion, while {args.get('target')}'s code has {want}: an API "
            "process still runs other code (restart it), or answers from elsewhere",
        )

    return until(
        probe,
        timeout,
        interval,
        lambda: (
            f"the {kind} API of {region} did not answer within {timeout:g}s "
            f"(last: {last[0]}); it is not running, or cannot start: read its log"
        ),
    )


def _host(record_host: str) -> str:
    return record_host.split("@")[0]  # cinder-volume's host is HOST@BACKEND


def service_records(conn: Any, binary: str, host: str | None = None) -> list[Any]:
    """The service records of `binary` (nova's or cinder's), fresh."""
    if binary.startswith("cinder-"):
        found = conn.block_storage.services(binary=binary)
    else:
        found = conn.compute.services(binary=binary, **({"host": host} if host else {}))
    return [s for s in found if host is None or _host(s.host) == host]


def wait_service_up(
    conn: Any, args: dict[str, Any], out: OutputCallback, timeout: float, interval: float
) -> CommandResult | Polling:
    """The service's record shows a heartbeat newer than the first one seen (only a process
    that runs after the restart writes it), and up."""
    host, binary = str(args["host"]), str(args["binary"])
    records = service_records(conn, binary, host)
    if not records:
        return CommandResult(1, error=f"no {binary} service on {host} in the API's list")
    first = {s.id: s.updated_at for s in records}

    def probe() -> CommandResult | None:
        now = service_records(conn, binary, host)
        if not now:
            return CommandResult(1, error=f"no {binary} service on {host} any more")
        if all(s.state == "up" and s.updated_at != first.get(s.id) for s in now):
            out("info", f"{binary} on {host} reports again ({now[0].updated_at})")
            return CommandResult(0)
        return None

    return until(
        probe,
        timeout,
        interval,
        lambda: (
            f"{binary} on {host} wrote no heartbeat after its restart (last "
            f"{next(iter(first.values()))}): it is not running, or cannot report"
            + (
                " (nova services report through nova-conductor and the message queue)"
                if binary.startswith("nova-")
                else " (it cannot reach the message queue)"
            )
        ),
    )


def verify_cloud(
    conn: Any, region: str, interface: str, args: dict[str, Any], out: OutputCallback
) -> CommandResult:
    """Every API the region's catalog lists answers a fresh version discovery (the
    microversioned ones with the target's newest), and every service record and agent the
    APIs list is up. One line each; a deviation names what and why."""
    access = conn.session.auth.get_access(conn.session)
    listed = {
        kind: found
        for kind, found in access.service_catalog.get_endpoints(
            region_name=region, interface=interface
        ).items()
        if found
    }
    expect: dict[str, str | None] = dict(args.get("expect_microversions") or {})
    problems: list[str] = []
    seen: set[str] = set()
    for kind in sorted(listed):
        found = _answer_or_error(conn, kind)
        if isinstance(found, str):
            problems.append(f"the {kind} API does not answer ({found})")
            continue
        if found.url in seen:
            continue
        seen.add(found.url)
        line = f"{kind} API answers at {found.url}: v{found.version}"
        name = FACTS_NAME.get(kind)
        if name is not None:
            want = expect.get(name)
            line += f", microversions {found.low} to {found.high}"
            if want is None:
                line += f" (not compared: {args.get('target')}'s newest is not known)"
            elif found.high != want:
                problems.append(
                    f"the {kind} API announces {found.high}, not {args.get('target')}'s {want}"
                )
        out("info", line)
    problems += _down_services(conn, listed, out)
    if problems:
        return CommandResult(1, error="; ".join(problems[:10]) + (
            f"; and {len(problems) - 10} more" if len(problems) > 10 else ""))  # fmt: skip
    out("info", f"{region}: every API and service answers")
    return CommandResult(0)


def _down_services(conn: Any, listed: dict[str, Any], out: OutputCallback) -> list[str]:
    """Every nova and cinder service and neutron agent the APIs list, up."""
    found: list[tuple[str, str, bool]] = []  # (binary, host, up)
    if "compute" in listed:
        found += [(s.binary, s.host, s.state == "up") for s in conn.compute.services()]
    if "block-storage" in listed or "volumev3" in listed:
        found += [(s.binary, s.host, s.state == "up") for s in conn.block_storage.services()]
    if "network" in listed:
        found += [(a.binary, a.host, bool(a.is_alive)) for a in conn.network.agents()]
    down = [f"{binary} on {host} is down" for binary, host, up in found if not up]
    out("info", f"{len(found) - len(down)} of {len(found)} services and agents up")
    return down


def listed_services(conn: Any, region: str, interface: str) -> set[str]:
    """The service types the catalog lists with an endpoint in `region` (the token's)."""
    access = conn.session.auth.get_access(conn.session)
    return {
        kind
        for kind, found in access.service_catalog.get_endpoints(
            region_name=region, interface=interface
        ).items()
        if found
    }


def health(conn: Any, region: str, interface: str) -> dict[str, str | None]:
    """What answers in the region now: {"the compute API": None or why not, "nova-compute on
    cmp1": None or "down", ...}; what an unanswering API would list is left out (its API's
    entry says why)."""
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

    listed = sorted(listed_services(conn, region, interface) - {"volumev3"})
    out: dict[str, str | None] = {}
    for kind in sorted(listed):
        found = _answer_or_error(conn, kind)
        out[f"the {kind} API"] = found if isinstance(found, str) else None
    readers = (
        ("compute", lambda: [(s.binary, s.host, s.state == "up") for s in conn.compute.services()]),
        ("block-storage", lambda: [(s.binary, _host(s.host), s.state == "up")
                                   for s in conn.block_storage.services()]),
        ("network", lambda: [(a.binary, a.host, bool(a.is_alive)) for a in conn.network.agents()]),
    )  # fmt: skip
    for kind, read in readers:
        if kind not in listed or out.get(f"the {kind} API"):
            continue
        try:
            for binary, host, up in read():
                out[f"{binary} on {host}"] = None if up else "down"
        except (ks_exc.ClientException, os_exc.SDKException, OSError):
            continue  # the API's own entry says it does not answer
    return out
