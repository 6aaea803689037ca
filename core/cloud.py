"""The OpenStack API through openstacksdk: one connection per site, used from worker threads
so the event loop never blocks. Steps use it to fence computes from the scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rollgate.core import cloud_checks as checks
from rollgate.core.cloud_scope import scope_result
from rollgate.core.executor import (
    LEFT_AS_FOUND,
    CommandResult,
    OutputCallback,
    SlowAnswer,
    Stopped,
    TransportError,
    fenced_by_operator,
    within,
)
from rollgate.core.inventory import Site

API_TIMEOUT = 60.0  # seconds per API call, unless the inventory says (openstack.timeout)
API_WORKERS = 8  # API calls at once: their own threads, never the loop's default executor
# answers that say the service is not there right now (restarting, behind a proxy): the step
# asks again with backoff (policy.transport_retries) instead of failing
UNAVAILABLE = (502, 503, 504)
# the API a cloud action calls, for saying which one did not answer
ACTION_SERVICE = {
    "wait-agents-up": "network",
    "verify-cloud": "identity",
    "verify-scope": "compute",
}


POLL_BACKOFF_CAP = 30.0  # seconds between two asks of a status poll whose calls fail


class CloudAdapter:
    def __init__(self, *, run_id: str = "", poll_interval: float = 1.0, workers: int = 0):
        """`workers`: API calls at once (at least API_WORKERS; the session asks for a batch's
        worth of computes per site running at once)."""
        self._connections: dict[str, Any] = {}
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.workers = max(API_WORKERS, workers)
        # openstacksdk blocks: its calls get a bounded pool of their own, so a slow API never
        # holds up the journal's fsync (which uses the default executor)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rollgate-api")
        self._inflight = 0  # calls sent to the pool and not finished
        self._waiting: dict[str, int] = {}  # site -> its calls waiting for a free worker

    async def _in_pool(
        self,
        site: Site,
        what: str,
        call: Any,
        *args: Any,
        service_type: str = "identity",
        out: OutputCallback | None = None,
    ) -> Any:
        """Run a blocking API call in the pool, bounded by the site's API timeout counted from
        when a worker sends it (time waiting for a free worker is not the API's); `out` hears
        when it has to wait."""
        limit = site.openstack.timeout or API_TIMEOUT
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        def begin() -> None:
            self._waiting[site.name] = self._waiting.get(site.name, 1) - 1
            if not started.done():
                started.set_result(None)

        def run() -> Any:
            loop.call_soon_threadsafe(begin)
            try:
                return call(*args)
            finally:
                loop.call_soon_threadsafe(self._done_one)

        if self._inflight >= self.workers and out is not None:
            waiting = self._waiting.get(site.name, 0) + 1
            out("info", f"API of {site.name}: {waiting} calls waiting (all {self.workers} "
                        "workers busy); its timeout starts when it is sent")  # fmt: skip
        self._waiting[site.name] = self._waiting.get(site.name, 0) + 1
        self._inflight += 1
        future = loop.run_in_executor(self._pool, run)
        try:
            # within, not wait_for: Python 3.11's wait_for can swallow a cancellation that
            # arrives as the call completes (CPython gh-86296)
            await asyncio.wait({started, future}, return_when=asyncio.FIRST_COMPLETED)
            return await within(future, limit, None)
        except TimeoutError:
            raise SlowAnswer(
                site.name,
                f"the {service_type} API of {site.region} ({self._endpoint(site, service_type)})"
                f" did not answer {what} within {limit:g}s; check it, or raise "
                "openstack.timeout in the inventory",
            ) from None
        finally:
            if not started.done():  # never started (cancelled while waiting)
                started.cancel()

    def _done_one(self) -> None:
        self._inflight -= 1

    def _endpoint(self, site: Site, service_type: str = "identity") -> str:
        """The URL of the service whose call hung (the catalog's; keystone's for identity)."""
        conn = self._connections.get(site.name)
        if conn is None:
            return "not connected"
        try:  # never a call: this runs on the event loop, after the API did not answer
            auth_url = str(conn.config.get_auth_args().get("auth_url"))
            cached = getattr(conn.session.auth, "auth_ref", None)
            if service_type == "identity" or cached is None:
                return auth_url
            return str(
                cached.service_catalog.url_for(
                    service_type=service_type,
                    region_name=site.region,
                    interface=conn.config.get_interface() or "public",
                )
            )
        except Exception:
            return "its endpoint"

    def _connection(self, site: Site) -> Any:
        conn = self._connections.get(site.name)
        if conn is not None:
            return conn
        import openstack
        from openstack import config as os_config

        cloud = site.openstack.cloud or os.environ.get("OS_CLOUD")
        files = [site.openstack.clouds_yaml] if site.openstack.clouds_yaml else None
        try:
            config = (
                os_config.OpenStackConfig(config_files=files)
                if files
                else os_config.OpenStackConfig()
            )
            region = config.get_one(
                cloud=cloud,
                region_name=site.region,
                api_timeout=site.openstack.timeout or API_TIMEOUT,
            )
            conn = openstack.connection.Connection(config=region)
        except Exception as exc:  # openstacksdk raises many kinds for bad config
            raise TransportError(
                site.name,
                (
                    f"cannot set up the OpenStack API for region {site.region} (cloud "
                    f"{cloud!r}): {exc}; check clouds.yaml and openstack.cloud in the inventory"
                ),
                retryable=False,
            ) from None
        self._connections[site.name] = conn
        return conn

    def _guarded(self, site: Site, call: Any, *args: Any) -> Any:
        """`call(*args)` with the API's errors said as Rollgate's: a service not there right
        now (502/503/504, unreachable) is a TransportError the step asks again after; any other
        answer an error result."""
        from keystoneauth1 import exceptions as ks_exc
        from openstack import exceptions as os_exc

        try:
            return call(*args)
        except os_exc.HttpException as exc:
            if exc.status_code in UNAVAILABLE:  # a service (re)starting: asked again
                raise TransportError(
                    site.name, f"{site.region}: {exc.status_code} {exc.message}"[:300]
                ) from None
            return CommandResult(1, error=f"{site.region}: {exc.status_code} {exc.message}"[:300])
        except ks_exc.HttpError as exc:  # the API answered, with an error (auth, 5xx)
            if exc.http_status in UNAVAILABLE:
                raise TransportError(
                    site.name, f"{site.region}: {exc.http_status} {exc.message}"[:300]
                ) from None
            return CommandResult(1, error=f"{site.region}: {exc.http_status} {exc.message}"[:300])
        except (os_exc.SDKException, ks_exc.ClientException, OSError) as exc:
            raise TransportError(
                site.name,
                f"the API of {site.region} is unreachable: {str(exc).splitlines()[0][:200]}",
            ) from None

    def _call(
        self, site: Site, action: str, args: dict[str, Any], out: OutputCallback, timeout: float
    ) -> CommandResult | checks.Polling:
        found: CommandResult | checks.Polling = self._guarded(
            site, self._act, site, action, args, out, timeout
        )
        return found

    def _act(
        self, site: Site, action: str, args: dict[str, Any], out: OutputCallback, timeout: float
    ) -> CommandResult | checks.Polling:
        conn = self._connection(site)
        compute = conn.compute
        if action == "verify-compute-api":  # a plan made before verify-api
            args = {"service_type": "compute", **args}
            action = "verify-api"
        if action in ("wait-api-up", "verify-api"):
            return checks.wait_api_up(conn, site.region, args, out, timeout, self.poll_interval)
        if action == "wait-service-up":
            return checks.wait_service_up(conn, args, out, timeout, self.poll_interval)
        if action == "verify-cloud":
            interface = conn.config.get_interface() or "public"
            return checks.verify_cloud(conn, site.region, interface, args, out)
        if action == "wait-agents-up":
            return self._agents_up(conn, args, out, timeout)
        if action == "verify-scope":
            return self._scope(site, args, out)
        host, binary = args["host"], args.get("binary", "nova-compute")
        if action in ("disable-service", "enable-service") and binary.startswith("cinder-"):
            volume = conn.block_storage
            found = [s for s in volume.services(binary=binary) if s.host.split("@")[0] == host]
            if not found:
                return CommandResult(1, error=f"no {binary} service on {host}")
            for service in found:
                reason = service.disabled_reason or ""
                if fenced_by_operator(service.status == "disabled", reason):
                    out(  # an operator fenced it before the run: left as it was found
                        "info",
                        f"{binary} on {service.host} {LEFT_AS_FOUND} ({reason or 'no reason'})",
                    )
                elif action == "disable-service":
                    volume.disable_service(service, reason=args.get("reason"))
                    out("info", f"{binary} on {service.host} disabled")
                else:
                    volume.enable_service(service)
                    out("info", f"{binary} on {service.host} enabled")
            return CommandResult(0)
        services = list(compute.services(host=host, binary=binary))
        if not services:
            return CommandResult(1, error=f"no {binary} service on {host} in {site.region}")
        service = services[0]
        if action == "list-computes":
            out("info", f"{len(services)} {binary} service(s) on {host}")
            return CommandResult(0)
        found_reason = service.disabled_reason or ""
        by_operator = fenced_by_operator(service.status == "disabled", found_reason)
        if action == "disable-compute":
            if by_operator:  # an operator fenced it before the run: keep their reason
                out(
                    "info",
                    f"{binary} on {host} was already disabled by an operator "
                    f"({found_reason or 'no reason'}); it stays disabled after the upgrade",
                )
                return CommandResult(0)
            reason = args.get("reason") or f"rollgate run {self.run_id}"
            compute.disable_service(service, host=host, binary=binary, disabled_reason=reason)
            out("info", f"{binary} on {host} disabled: {reason}")
            return CommandResult(0)
        if action == "enable-compute":
            if by_operator:
                out(
                    "info",
                    f"{binary} on {host} {LEFT_AS_FOUND} ({found_reason or 'no reason'})",
                )
                return CommandResult(0)
            compute.enable_service(service, host=host, binary=binary)
            out("info", f"{binary} on {host} enabled")
            return CommandResult(0)
        if action == "wait-compute-up":
            # "up" alone passes on a dead process for service_down_time (60 s) after its
            # last heartbeat (nova servicegroup/drivers/db.py): a heartbeat newer than the
            # first one seen, which only the restarted process can write
            return checks.wait_service_up(
                conn, {"host": host, "binary": binary}, out, timeout, self.poll_interval
            )
        return CommandResult(1, error=f"unknown cloud action {action!r}")

    def _agents_up(
        self, conn: Any, args: dict[str, Any], out: OutputCallback, timeout: float
    ) -> CommandResult | checks.Polling:
        """Every named neutron agent on the host alive, with a heartbeat newer than the first
        one seen (the restarted agent's own)."""
        host, wanted = args["host"], set(args["binaries"])

        def agents() -> dict[str, Any]:
            return {a.binary: a for a in conn.network.agents(host=host) if a.binary in wanted}

        found = agents()
        if missing := sorted(wanted - set(found)):
            return CommandResult(1, error=f"no {', '.join(missing)} agent on {host}")
        first = {b: a.last_heartbeat_at for b, a in found.items()}

        def fresh() -> CommandResult | None:
            now = agents()
            if all(
                b in now and now[b].is_alive and now[b].last_heartbeat_at != first[b]
                for b in wanted
            ):
                out("info", f"{', '.join(sorted(wanted))} on {host} alive after the restart")
                return CommandResult(0)
            return None

        return checks.until(
            fresh,
            timeout,
            self.poll_interval,
            lambda: f"{', '.join(sorted(wanted))} on {host}: no heartbeat after the restart",
        )

    def _scope(self, site: Site, args: dict[str, Any], out: OutputCallback) -> CommandResult:
        """Every service and agent the region's APIs list against the site's nodes and its
        `unmanaged:` declarations (the step's args): one the plan would not upgrade fails."""
        roles = {n.name: n.roles for n in site.nodes}
        return scope_result(site.region, self._status(site), roles, args, out)

    def _status(self, site: Site) -> dict[str, dict[str, str]]:
        conn = self._connection(site)
        listed = checks.listed_services(conn, site.region, conn.config.get_interface() or "public")
        hosts: dict[str, dict[str, str]] = {}
        for svc in conn.compute.services() if "compute" in listed else ():
            hosts.setdefault(svc.host, {})[svc.binary] = f"{svc.state}/{svc.status}"
        volume = {"block-storage", "volumev3"} & listed
        for svc in conn.block_storage.services() if volume else ():
            host = svc.host.split("@")[0]
            hosts.setdefault(host, {})[svc.binary] = f"{svc.state}/{svc.status}"
        for agent in conn.network.agents() if "network" in listed else ():
            state = "up" if agent.is_alive else "down"
            admin = "enabled" if agent.is_admin_state_up else "disabled"
            hosts.setdefault(agent.host, {})[agent.binary] = f"{state}/{admin}"
        return hosts

    def _health(self, site: Site) -> dict[str, str | None]:
        conn = self._connection(site)
        return checks.health(conn, site.region, conn.config.get_interface() or "public")

    async def health(self, site: Site) -> dict[str, str | None]:
        """What answers at the site now (core/cloud_checks.py health), for the watch."""
        return await self._in_pool(site, "the watch's probes", self._health, site)

    async def status(self, site: Site) -> dict[str, dict[str, str]]:
        """Service and agent states per host at a site: {host: {binary: "up/enabled"}}."""
        return await self._in_pool(site, "the service list", self._status, site)

    async def cloud(
        self,
        site: Site,
        action: str,
        args: dict[str, Any],
        *,
        on_output: OutputCallback,
        timeout: float,
        stop: asyncio.Event | None = None,
    ) -> CommandResult:
        loop = asyncio.get_running_loop()

        def out(stream: str, line: str) -> None:
            loop.call_soon_threadsafe(on_output, stream, line)

        service_type = str(
            args.get("service_type")
            or ACTION_SERVICE.get(action)
            or ("block-storage" if str(args.get("binary", "")).startswith("cinder-") else "compute")
        )

        async def ask(probe: Any, *probe_args: Any) -> Any:
            return await self._in_pool(
                site, action, probe, *probe_args, service_type=service_type, out=out
            )

        async def act() -> CommandResult:
            first = await ask(self._call, site, action, args, out, timeout)
            if isinstance(first, checks.Polling):
                return await self._poll(site, first, ask, timeout, out)
            assert isinstance(first, CommandResult)
            return first

        try:
            return await within(act(), None, stop)
        except Stopped:  # the thread finishes its call on its own; nothing waits for it
            return CommandResult(
                None, interrupted=True, error="aborted by the operator; the API call was left"
            )

    async def _poll(
        self, site: Site, polling: checks.Polling, ask: Any, timeout: float, out: OutputCallback
    ) -> CommandResult:
        """Ask the polling's probe every poll interval, sleeping on the loop (a worker holds
        only a call), until it answers or the step's `timeout` ends. A probe whose call fails
        is said in the step's output and asked again after a backoff (doubling, capped,
        jittered); the timeout's message carries the last failure."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        failures = 0
        last_error = ""
        while True:
            delay = self.poll_interval
            try:
                result = await ask(self._guarded, site, polling.probe)
            except TransportError as exc:
                if not exc.retryable:  # auth, configuration: asking again will not help
                    raise
                failures += 1
                last_error = str(exc)
                delay = min(POLL_BACKOFF_CAP, self.poll_interval * 2**failures)
                delay *= 0.5 + random.random() / 2
                out("info", f"status poll failed ({last_error}); asking again in {delay:.1f}s")
                result = None
            else:
                failures = 0
            if result is not None:
                assert isinstance(result, CommandResult)
                return result
            if loop.time() >= deadline:
                why = polling.why() + (f" (last poll: {last_error})" if failures else "")
                return CommandResult(None, timed_out=True, error=why)
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))

    async def close(self) -> None:
        for conn in self._connections.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(self._pool, conn.close), 10
                )
        self._connections.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
