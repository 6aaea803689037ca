"""The SSH executor (asyncssh): one reused connection per node, host keys verified, output
streamed line by line, timeouts that terminate the remote command, one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh

from rollgate.core.executor import (
    BecomeFailed,
    CommandResult,
    OutputCallback,
    Stopped,
    TransportError,
    leaving,
    within,
)
from rollgate.core.inventory import Node
from rollgate.core.transports.become import MARK, as_root, sudo_reason
from rollgate.core.transports.remote_job import KILL_GRACE, REFUSED, wrapper_command
from rollgate.core.transports.ssh_keys import ChoosingClient, KeyRing
from rollgate.core.transports.ssh_route import Hop, Route, route

logging.getLogger("asyncssh").setLevel(logging.WARNING)

# Channels at once on one connection: OpenSSH refuses more than MaxSessions (default 10).
MAX_SESSIONS = 8
EXEC_TIMEOUT = 60  # seconds a wrapper verb (start, status, kill, clean) may take


def _known_host_listed(hop: Hop, alias: str) -> bool:
    """Whether the hop's known_hosts has any key for it, hashed entries (Ubuntu's default)
    included: then a key that does not verify has changed, rather than being unknown."""
    path = Path(hop.known_hosts_file).expanduser()
    try:
        listed = asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError):
        return False
    for host in dict.fromkeys((hop.host, alias)):
        trusted, cas, *_ = listed.match(host, hop.host, hop.port)
        if trusted or cas:
            return True
    return False


def _termination(stopped: bool | None, node: Node) -> str:
    if stopped:
        return "the command was terminated (checked: nothing of it is left)"
    if stopped is False:
        return f"the command could not be stopped: it may still be running on {node.name}"
    return f"could not check whether it stopped: it may still be running on {node.name}"


class SshExecutor:
    def __init__(
        self,
        *,
        max_connections: int = 200,
        max_commands: int = 200,
        max_sessions: int = MAX_SESSIONS,
        insecure: bool = False,
        become_passwords: dict[str, str] | None = None,
    ):
        # open connections, least recently used first; idle ones are closed to make room
        self._connections: OrderedDict[str, asyncssh.SSHClientConnection] = OrderedDict()
        self._connecting: dict[str, asyncio.Lock] = {}
        self._max_connections = max_connections
        self._opening = 0  # connections being opened now, counted against the cap
        self.evicted = 0  # idle connections closed to make room under the cap
        self.peak_connections = 0
        self._in_use: dict[str, int] = {}  # node -> commands running over its connection
        self._room = asyncio.Condition()  # told when a connection becomes idle or closes
        self._max_sessions = max_sessions
        self._sessions: dict[str, asyncio.Semaphore] = {}  # node -> channels it may open
        self._command_slots = asyncio.Semaphore(max_commands)
        self.insecure = insecure
        self._offsets: dict[str, list[int]] = {}  # job -> bytes of stdout, stderr seen
        self._deadlines: dict[str, float] = {}  # job -> when its step times out
        self._jobs: dict[str, Node] = {}  # nodes a job ran on, for cleaning up
        # known_hosts files as read: path -> ((mtime, size), their keys)
        self._known_hosts_read: dict[str, tuple[tuple[int, int], asyncssh.SSHKnownHosts]] = {}
        # jump host connections, shared by the nodes behind them: chain of hops -> connection
        self._jumps: dict[tuple[object, ...], asyncssh.SSHClientConnection] = {}
        self._jump_locks: dict[tuple[object, ...], asyncio.Lock] = {}
        self._keys = KeyRing()
        self.logins: dict[str, str] = {}  # node -> how it was logged in to (for check)
        # nodes reached with what the inventory does not name: a jump host, the ssh config,
        # the agent's or a default key (check says how, for each of them)
        self.beyond_inventory: set[str] = set()
        # node -> the password `sudo -S` is given (kept in memory only)
        self._become_passwords = dict(become_passwords or {})

    async def _connect(self, node: Node) -> asyncssh.SSHClientConnection:
        lock = self._connecting.setdefault(node.name, asyncio.Lock())
        async with lock:
            conn = self._connections.get(node.name)
            if conn is not None and not conn.is_closed():
                return conn
            if conn is not None:  # closed under us: forget it
                self._connections.pop(node.name, None)
            way = route(node, insecure=self.insecure)
            tunnel = await self._through(node, way) if way.jumps else None
            conn, client = await self._open_counted(node, way, way.node, tunnel)
            self.logins[node.name] = self._said_login(way, client)
            if way.jumps or way.from_config() or (client.used and not client.used.named):
                self.beyond_inventory.add(node.name)
            self._connections[node.name] = conn
            self.peak_connections = max(
                self.peak_connections, len(self._connections) + len(self._jumps)
            )
            return conn

    async def _open_counted(
        self,
        node: Node,
        way: Route,
        hop: Hop,
        tunnel: asyncssh.SSHClientConnection | None,
    ) -> tuple[asyncssh.SSHClientConnection, ChoosingClient]:
        """Open the hop's connection once it fits under the cap; a failure in one line that
        names the hop."""
        await self._make_room()
        try:
            return await self._open(node, hop, tunnel)
        except TransportError:
            raise
        except BaseException as exc:
            raise self._explain(node, way, hop, exc) from None
        finally:
            self._opening -= 1

    async def _open(
        self, node: Node, hop: Hop, tunnel: asyncssh.SSHClientConnection | None
    ) -> tuple[asyncssh.SSHClientConnection, ChoosingClient]:
        """One SSH connection for the hop, with its own keys and known_hosts, no ssh config
        read behind our back (route.py read it)."""
        options: dict[str, object] = {
            "host": hop.host,
            "port": hop.port,
            "connect_timeout": hop.connect_timeout,
            "keepalive_interval": node.ssh.keepalive or None,
            "config": [],
            "client_keys": None,
            "password_auth": False,
            "kbdint_auth": False,
        }
        if tunnel is not None:
            options["tunnel"] = tunnel
        if not hop.verify:
            options["known_hosts"] = None
        else:
            path = Path(hop.known_hosts_file).expanduser()
            if not path.is_file():
                raise TransportError(
                    node.name,
                    f"the host key of {hop.what} cannot be checked: {hop.known_hosts_file} "
                    f"does not exist; add the host's key to it (ssh-keyscan -p {hop.port} "
                    f"{hop.host}) or set verify_host_keys: false knowingly",
                    retryable=False,
                )
            options["known_hosts"] = self._known_hosts(path)
        if hop.user:
            options["username"] = hop.user
        client = ChoosingClient(await self._keys.keys_for(node.name, hop))
        try:
            conn = await asyncssh.connect(client_factory=lambda: client, **options)
        except asyncssh.PermissionDenied as exc:
            exc.offered = client.offered  # type: ignore[attr-defined]  # what was refused
            raise
        return conn, client

    async def _through(self, node: Node, way: Route) -> asyncssh.SSHClientConnection:
        """The connection to the last jump host, each jump opened through the one before it
        (or found open: the nodes behind a jump host share its connection)."""
        tunnel: asyncssh.SSHClientConnection | None = None
        for depth, hop in enumerate(way.jumps):
            chain = tuple(h.identity for h in way.jumps[: depth + 1])
            async with self._jump_locks.setdefault(chain, asyncio.Lock()):
                conn = self._jumps.get(chain)
                if conn is None or conn.is_closed():  # never opened, or dropped: (re)open
                    self._jumps.pop(chain, None)
                    conn, _ = await self._open_counted(node, way, hop, tunnel)
                    self._jumps[chain] = conn
            tunnel = conn
        assert tunnel is not None
        return tunnel

    @staticmethod
    def _said_login(way: Route, client: ChoosingClient) -> str:
        """How the node was reached, for `check`: login, jumps, key, and what the ssh config
        gave."""
        text = f"as {way.node.login}"
        if way.jumps:
            text += " via " + " then ".join(h.login for h in way.jumps)
        text += f", {client.used.label if client.used else 'no key'}"
        settings = way.from_config()
        if settings:
            text += f"; from {way.config}: {', '.join(settings)}"
        return text

    def _known_hosts(self, path: Path) -> asyncssh.SSHKnownHosts | str:
        """`path` read once while it is unchanged: given as a file name, asyncssh reads and
        decodes the whole file for every connection, so 1,000 nodes listed in it cost a million
        key decodes (20 s of the 1,000-node fan-out)."""
        try:
            stat = path.stat()
        except OSError:
            return str(path)  # asyncssh says what is wrong with it
        version = (stat.st_mtime_ns, stat.st_size)  # an edited file is read again
        read = self._known_hosts_read.get(str(path))
        if read is None or read[0] != version:
            try:
                read = (version, asyncssh.read_known_hosts(str(path)))
            except (OSError, ValueError):
                return str(path)
            self._known_hosts_read[str(path)] = read
        return read[1]

    async def _make_room(self) -> None:
        """Wait until one more connection fits under the cap, closing the least recently
        used idle connection when one is there (never one a command is using)."""
        async with self._room:
            while (
                len(self._connections) + len(self._jumps) + self._opening >= self._max_connections
            ):
                idle = next((n for n in self._connections if not self._in_use.get(n)), None)
                if idle is not None:
                    self._connections.pop(idle).close()
                    self.evicted += 1
                    continue
                await self._room.wait()
            self._opening += 1

    @contextlib.asynccontextmanager
    async def _session(self, node: Node) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A connection to `node` to open one channel on: counted as in use meanwhile (so it
        is never closed to make room), at most MAX_SESSIONS channels per connection."""
        conn = await self._connect(node)
        name = node.name
        self._in_use[name] = self._in_use.get(name, 0) + 1
        if name in self._connections:
            self._connections.move_to_end(name)
        sessions = self._sessions.setdefault(name, asyncio.Semaphore(self._max_sessions))
        try:
            async with sessions, self._command_slots:
                yield conn
        finally:
            self._in_use[name] -= 1
            async with self._room:
                self._room.notify_all()

    def _explain(self, node: Node, way: Route, hop: Hop, exc: BaseException) -> BaseException:
        """One line for a failed connection: which hop failed (the jump host or the node),
        which check, the address and the known_hosts file consulted."""
        where = hop.what
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            if _known_host_listed(hop, node.address if not hop.jump else hop.name):
                return TransportError(
                    node.name,
                    (
                        f"the host key of {where} CHANGED: it does not match "
                        f"{hop.known_hosts_file}; refusing to connect — check the host, then "
                        "update known_hosts"
                    ),
                    retryable=False,
                )
            return TransportError(
                node.name,
                (
                    f"the host key of {where} is unknown: it is not in {hop.known_hosts_file}; "
                    f"add it (ssh-keyscan -p {hop.port} {hop.host}) or set verify_host_keys: "
                    "false knowingly"
                ),
                retryable=False,
            )
        if isinstance(exc, asyncssh.PermissionDenied):
            offered = [o.label.removeprefix("key ") for o in getattr(exc, "offered", [])]
            return TransportError(
                node.name,
                (
                    f"authentication failed for {hop.login}"
                    f"{' (the jump host)' if hop.jump else ''} "
                    f"(tried {', '.join(offered) or 'no key'}); check the user and key"
                ),
                retryable=False,
            )
        if isinstance(exc, asyncssh.ChannelOpenError) and way.jumps and not hop.jump:
            return TransportError(
                node.name,
                f"the jump host {way.jumps[-1].where} could not connect to {hop.where}: "
                f"{exc.reason}; check the node's address as the jump host sees it",
            )
        if isinstance(exc, ConnectionRefusedError):
            return TransportError(
                node.name,
                f"cannot connect to {where}: connection refused; "
                f"check {'the jump host' if hop.jump else 'the node'} is up and sshd listens",
            )
        if isinstance(exc, TimeoutError):
            return TransportError(
                node.name,
                f"timed out connecting to {where} after "
                f"{hop.connect_timeout:g}s; check the address and network",
            )
        if isinstance(exc, asyncssh.Error | OSError):
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
            return TransportError(node.name, f"cannot reach {where}: {reason}")
        return exc

    def _sudo(self, node: Node) -> str | None:
        """The password `sudo -S` is given on this node, when there is one."""
        return self._become_passwords.get(node.name)

    async def run(
        self,
        node: Node,
        command: str,
        *,
        on_output: OutputCallback,
        timeout: float,
        local: bool = False,
        job: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> CommandResult:
        if job is not None:
            return await self._run_job(node, command, job, on_output, timeout, stop)
        password = self._sudo(node)
        if node.ssh.become:
            command = as_root(command, password=password is not None)
        became = not node.ssh.become  # sudo's shell said it runs (become.py)
        sudo_said: list[str] = []
        async with self._session(node) as conn:
            process = await self._start(node, conn, command, password)

            async def pump(stream: asyncssh.SSHReader[str], name: str) -> None:
                nonlocal became
                async for line in stream:
                    if not line:  # "" marks EOF; a blank output line arrives as "\n"
                        continue
                    if name == "stderr" and not became:
                        if line.rstrip("\n") == MARK:
                            became = True
                        else:
                            sudo_said.append(line.rstrip("\n"))
                        continue
                    on_output(name, line.rstrip("\n"))

            readers = asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
            try:
                await within(asyncio.shield(readers), timeout, stop)
                completed = await process.wait()
            except (TimeoutError, Stopped) as exc:
                await self._terminate(process, readers)
                why = (
                    f"timed out after {timeout:g}s"
                    if isinstance(exc, TimeoutError)
                    else "aborted by the operator"
                )
                return CommandResult(
                    None,
                    timed_out=isinstance(exc, TimeoutError),
                    interrupted=isinstance(exc, Stopped),
                    error=f"{why}; its channel was closed (not a job: whether the command "
                    "stopped was not checked)",
                )
            except asyncio.CancelledError:
                await self._terminate(process, readers)
                raise
            except (asyncssh.Error, OSError) as exc:
                self._drop(node)
                raise TransportError(node.name, f"connection lost mid-command: {exc}") from None
        if not became:
            raise BecomeFailed(node.name, sudo_reason(sudo_said))
        if completed.exit_status is None:
            if completed.exit_signal:
                return CommandResult(None, error=f"killed by signal {completed.exit_signal[0]}")
            self._drop(node)
            raise TransportError(node.name, "connection lost mid-command (no exit status)")
        return CommandResult(completed.exit_status)

    # ---------------------------------------------------------------- durable jobs

    async def _start(
        self,
        node: Node,
        conn: asyncssh.SSHClientConnection,
        command: str,
        password: str | None,
        **options: object,
    ) -> asyncssh.SSHClientProcess:
        """Start the command on the connection; `sudo -S` reads the password from stdin."""
        try:
            process = await conn.create_process(
                command, stdin=asyncssh.DEVNULL if password is None else asyncssh.PIPE, **options
            )
        except (asyncssh.Error, OSError) as exc:
            self._drop(node)
            raise self._lost(node, exc) from None
        if password is not None:
            given = password + "\n"
            process.stdin.write(
                given if options.get("encoding", "") is not None else given.encode()
            )
            process.stdin.write_eof()
        return process

    def _lost(self, node: Node, exc: BaseException) -> BaseException:
        way = route(node, insecure=self.insecure)
        return self._explain(node, way, way.node, exc)

    async def _exec(self, node: Node, verb: str, *args: str | int) -> tuple[int | None, str, str]:
        """A wrapper verb (start, status, kill, clean, check): its exit status, stdout and
        stderr, within EXEC_TIMEOUT seconds (else TransportError: the node did not answer)."""
        password = self._sudo(node)
        command = wrapper_command(
            verb, str(args[0]), *args[1:], become=node.ssh.become, password=password is not None
        )
        async with self._session(node) as conn:
            try:
                async with asyncio.timeout(EXEC_TIMEOUT):
                    if password is None:
                        done = await conn.run(command, stdin=asyncssh.DEVNULL, check=False)
                    else:
                        done = await conn.run(command, input=password + "\n", check=False)
            except (asyncssh.Error, OSError) as exc:
                self._drop(node)
                raise self._lost(node, exc) from None
            except TimeoutError:
                self._drop(node)
                raise TransportError(
                    node.name, f"did not answer a short command within {EXEC_TIMEOUT}s"
                ) from None
        out, err = done.stdout, done.stderr
        out = out if isinstance(out, str) else ""
        err = err if isinstance(err, str) else ""
        if node.ssh.become:  # what precedes the mark is sudo's (`sudo -S` ends its prompt)
            _, mark, rest = err.partition(MARK + "\n")
            if not mark:
                raise BecomeFailed(node.name, sudo_reason(err.splitlines()))
            err = rest
        return done.exit_status, out, err

    async def _run_job(
        self,
        node: Node,
        command: str,
        job: str,
        on_output: OutputCallback,
        timeout: float,
        stop: asyncio.Event | None = None,
    ) -> CommandResult:
        """Start the job (or find it started), follow its output to its end, read its exit
        status. A lost connection raises TransportError; running the same job again
        re-attaches from the output already seen. A timeout, a stop or a cancellation kills
        the job's process group and checks nothing of it is left (a cancellation then
        propagates)."""
        loop = asyncio.get_running_loop()
        deadline = self._deadlines.setdefault(job, loop.time() + timeout)
        self._jobs.setdefault(node.name, node)
        try:
            status, out, err = await self._exec(node, "start", job, command)
            if status != 0:
                self._forget(job)
                return CommandResult(None, error=f"could not start the job: {(err or out).strip()}")
            while True:
                await within(
                    self._attach(node, job, on_output), max(0.0, deadline - loop.time()), stop
                )
                code, said, err = await self._exec(node, "status", job)
                if code == REFUSED:
                    self._forget(job)
                    return CommandResult(None, error=err.strip())
                word = said.strip()
                if word.startswith("exit "):
                    self._forget(job)
                    return CommandResult(int(word.split()[1]))
                if word != "running":
                    self._forget(job)
                    return CommandResult(
                        None,
                        error=f"the job ended without an exit status ({word}): killed, or the "
                        "node restarted",
                    )
        except TimeoutError:
            self._forget(job)
            stopped = await self._kill(node, job)
            return CommandResult(
                None,
                timed_out=True,
                terminated=stopped,
                error=f"timed out after {timeout:g}s; " + _termination(stopped, node),
            )
        except Stopped:
            self._forget(job)
            if leaving(stop):  # the driver leaves: the job runs on; the next one follows it
                return CommandResult(
                    None,
                    interrupted=True,
                    left_running=True,
                    error=f"the driver left; the job runs on on {node.name}, and the next "
                    "driver follows it to its end",
                )
            stopped = await self._kill(node, job)  # the engine aborts: stop the job
            return CommandResult(
                None,
                interrupted=True,
                terminated=stopped,
                error="aborted by the operator; " + _termination(stopped, node),
            )
        except asyncio.CancelledError:  # the engine itself goes: stop the job, then go too
            self._forget(job)
            killing = asyncio.ensure_future(self._kill(node, job))
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(KILL_GRACE + 10):
                    await asyncio.shield(killing)
            raise

    async def _attach(self, node: Node, job: str, on_output: OutputCallback) -> None:
        """Stream the job's output from what was already seen until the job ends."""
        seen = self._offsets.setdefault(job, [0, 0])
        password = self._sudo(node)
        command = wrapper_command(
            "attach", job, seen[0], seen[1], become=node.ssh.become, password=password is not None
        )
        became = not node.ssh.become  # sudo's shell said it runs (become.py)
        sudo_said: list[str] = []
        async with self._session(node) as conn:
            process = await self._start(node, conn, command, password, encoding=None)

            async def pump(stream: asyncssh.SSHReader[bytes], index: int, name: str) -> None:
                nonlocal became
                while True:
                    raw = await stream.readline()
                    if not raw:
                        return
                    line = raw.decode(errors="replace").rstrip("\n")
                    if index == 1 and not became:  # sudo's words, not the job's output
                        became = line == MARK
                        if not became:
                            sudo_said.append(line)
                        continue
                    seen[index] += len(raw)
                    on_output(name, line)

            readers = asyncio.gather(
                pump(process.stdout, 0, "stdout"), pump(process.stderr, 1, "stderr")
            )
            try:
                await readers
                completed = await process.wait()
            except asyncio.CancelledError:
                process.close()
                readers.cancel()
                raise
            except (asyncssh.Error, OSError) as exc:
                self._drop(node)
                raise TransportError(node.name, f"connection lost mid-command: {exc}") from None
        if not became:
            raise BecomeFailed(node.name, sudo_reason(sudo_said))
        if completed.exit_status is None:
            self._drop(node)
            raise TransportError(node.name, "connection lost mid-command (no exit status)")
        if completed.exit_status != 0:
            raise TransportError(
                node.name, f"could not follow the job (exit {completed.exit_status})"
            )

    async def _kill(self, node: Node, job: str) -> bool | None:
        """TERM the job's process group, KILL after a grace period; True once nothing of it
        is left on the node, False when something is, None when the node could not say."""
        try:
            _, said, _ = await self._exec(node, "kill", job, KILL_GRACE)
        except TransportError:
            return None
        word = said.strip()
        return True if word == "terminated" else False if word == "alive" else None

    def _forget(self, job: str) -> None:
        self._offsets.pop(job, None)
        self._deadlines.pop(job, None)

    async def follow(
        self,
        node: Node,
        job: str,
        *,
        on_output: OutputCallback,
        timeout: float,
        stop: asyncio.Event | None = None,
    ) -> CommandResult | None:
        """Re-attach to a job a previous driver started: its result once it ends, or None
        when the node cannot tell (no such job, or it ended without an exit status)."""
        code, said, err = await self._exec(node, "status", job)
        if code == REFUSED:  # the job directory is not this login's own: nothing to follow
            raise TransportError(node.name, err.strip(), retryable=False)
        if said.strip() in ("unknown", "lost"):
            return None
        self._offsets[job] = [0, 0]  # the output is replayed whole into the journal
        result = await self._run_job(node, "true", job, on_output, timeout, stop)
        ended = result.exit_status is not None or result.timed_out or result.interrupted
        return result if ended else None

    async def clean_jobs(self, run_dir: str) -> None:
        """Remove this run's job directory on every node a job ran on."""
        for node in list(self._jobs.values()):
            with contextlib.suppress(TransportError):
                await self._exec(node, "clean", run_dir)

    async def _terminate(self, process: asyncssh.SSHClientProcess, readers: asyncio.Future) -> None:
        """Signal the remote command, then close its channel."""
        with contextlib.suppress(asyncssh.Error, OSError):
            process.send_signal("TERM")
        await asyncio.sleep(0.05)
        process.close()
        readers.cancel()
        with contextlib.suppress(asyncio.CancelledError, asyncssh.Error, OSError):
            await readers

    def _drop(self, node: Node) -> None:
        conn = self._connections.pop(node.name, None)
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        every = [*self._connections.values(), *reversed(self._jumps.values())]
        for conn in every:
            conn.close()
        for conn in every:
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        self._connections.clear()
        self._jumps.clear()
        self._keys.close()
