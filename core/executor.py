"""The executor interface: how the engine runs a step on a node, the deploy host or a cloud API.

Implementations: the SSH executor (core/transports/ssh.py), the local executor
(core/transports/local.py), the openstacksdk cloud adapter (core/cloud.py) and the lab's
in-process executor (core/lab/). The engine only sees this protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from rollgate.core.inventory import Node, Site

# Called once per complete output line: (stream, line) with stream "stdout" or "stderr".
OutputCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class CommandResult:
    """How a command or cloud action ended."""

    exit_status: int | None  # None when there is no exit status (timed out, terminated)
    timed_out: bool = False
    error: str | None = None  # one line: why there is no exit status, or what the call said
    # After a timeout or an abort: True when a check on the node found nothing of the command
    # left running, False when something still runs, None when no check could be made.
    terminated: bool | None = None
    interrupted: bool = False  # the engine asked the command to stop (abort)
    left_running: bool = False  # the driver left; the command runs on, for the next driver


# What enable-compute says when it leaves a host disabled as the run found it (an operator
# fenced it before, with a reason of their own); the engine keeps the node marked fenced.
LEFT_AS_FOUND = "left disabled, as the run found it"


def fenced_by_operator(disabled: bool, reason: str | None) -> bool:
    """A service disabled before the run by someone else: Rollgate's reasons start "rollgate"."""
    return disabled and not (reason or "").startswith("rollgate")


class TransportError(Exception):
    """A connection-level failure (unreachable, refused, reset, lost, auth, host key).

    `retryable` is True for failures that may pass on their own (refused, reset, timed out
    connecting); False for ones that need the operator (auth failed, host key changed).
    """

    def __init__(self, node: str, message: str, *, retryable: bool = True):
        self.node = node
        self.retryable = retryable
        super().__init__(f"{node}: {message}")


class BecomeFailed(TransportError):
    """sudo itself did not run the command (a password wanted, not allowed, no tty): the
    node was reached, nothing ran as root, and no exit status of the command exists."""

    def __init__(self, node: str, reason: str):
        super().__init__(node, f"could not run as root on {node}: {reason}", retryable=False)


class SlowAnswer(TransportError):
    """An API call that did not answer within its timeout: slow, not known to be down."""


class Stopped(Exception):
    """Inside an executor: the engine asked the running command to stop (an abort)."""


class StopSignal(asyncio.Event):
    """Set when running commands must stop. `leave` says why: False, an abort (terminate what
    runs); True, the driver leaves the run paused (a durable job on a node keeps running, for
    the next driver to follow; anything else is terminated)."""

    leave = False

    def __init__(self) -> None:
        super().__init__()
        self._waiting: set[asyncio.Future[None]] = set()

    def waiter(self) -> asyncio.Future[None]:
        """A future done once the signal is set, for one command to wait on (cheaper than the
        task `stop.wait()` makes); give it back with `done_waiting`."""
        future = asyncio.get_running_loop().create_future()
        if self.is_set():
            future.set_result(None)
        else:
            self._waiting.add(future)
        return future

    def done_waiting(self, future: asyncio.Future[None]) -> None:
        self._waiting.discard(future)

    def set(self) -> None:
        super().set()
        waiting, self._waiting = self._waiting, set()
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def abort(self) -> None:
        self.leave = False
        self.set()

    def leave_running(self) -> None:
        if not self.is_set():
            self.leave = True
            self.set()


def leaving(stop: asyncio.Event | None) -> bool:
    """Whether a stop means the driver leaves (see StopSignal)."""
    return bool(getattr(stop, "leave", False))


T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout: float | None, stop: asyncio.Event | None) -> T:
    """Await `awaitable` for at most `timeout` seconds (None: no limit). Raises TimeoutError
    when the time runs out and Stopped when `stop` is set first; either way the awaitable is
    cancelled and has ended when this returns. A cancellation of the caller propagates (the
    awaitable is cancelled with it), never swallowed.

    Without a stop, or with a StopSignal (whose waiter can call back), the awaitable runs in
    the caller's own task, a timer or the stop cancelling that task: no task, no
    `asyncio.wait` and no `asyncio.timeout` per command (a run of 10,000 nodes awaits this
    400,000 times; asyncio.timeout cost 4 µs a call, a timer of the loop 1.5 µs)."""
    if stop is not None and not isinstance(stop, StopSignal):
        return await _within_task(awaitable, timeout, stop)
    if stop is not None and stop.is_set():
        _discard(awaitable)
        raise Stopped
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    ended_by = ""  # "stop" or "timeout", once either cancelled the task
    listening = True
    waiter: asyncio.Future[None] | None = None
    timer: asyncio.TimerHandle | None = None

    def end(why: str) -> None:
        nonlocal ended_by
        if listening and not ended_by:  # never after this call returned, and only once
            ended_by = why
            task.cancel()

    def on_stop(_: asyncio.Future[None]) -> None:
        end("stop")

    if stop is not None:
        waiter = stop.waiter()
        waiter.add_done_callback(on_stop)
    if timeout is not None:
        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + timeout, end, "timeout")
    try:
        result = await awaitable
    except BaseException as exc:
        if ended_by:  # our cancel is spent whatever the awaitable raised
            ours_alone = task.uncancel() <= cancelling  # nobody else cancelled the task
            if ours_alone and isinstance(exc, asyncio.CancelledError):
                raise (Stopped if ended_by == "stop" else TimeoutError) from None
        raise
    finally:
        listening = False
        if timer is not None:
            timer.cancel()
        if waiter is not None:
            assert isinstance(stop, StopSignal)
            stop.done_waiting(waiter)
    if ended_by:  # it finished as we cancelled it: its result stands, the cancel is spent
        task.uncancel()
    return result


def _discard(awaitable: Awaitable[Any]) -> None:
    """An awaitable that will never be awaited: closed (a coroutine) or cancelled."""
    if asyncio.iscoroutine(awaitable):
        awaitable.close()
    elif isinstance(awaitable, asyncio.Future):
        awaitable.cancel()


async def _within_task(awaitable: Awaitable[T], timeout: float | None, stop: asyncio.Event) -> T:
    """`within` for a plain asyncio.Event: the awaitable in a task of its own, raced with the
    event's wait."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task})  # it has ended (a caller's cancellation still propagates)
    if not task.cancelled() and task.exception() is None:  # it finished as it was cancelled
        return task.result()
    if stop.is_set():
        raise Stopped
    raise TimeoutError


class Executor(Protocol):
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
        """Run `command` on `node` over SSH, or on the deploy host when `local` is True
        (a deployment tool's steps, whose command already names the node it targets).

        `job` (a path on the node, core/transports/remote_job.py) makes the command a durable
        job: run again with the same job it re-attaches instead of starting a second copy.

        Streams output line by line; on timeout terminates the command and returns
        CommandResult(None, timed_out=True); when `stop` is set (an abort) terminates it and
        returns CommandResult(None, interrupted=True), `terminated` saying whether a check
        found it gone. Raises TransportError when the node cannot be reached or the
        connection drops. A cancellation stops the command too, and propagates.
        """
        ...

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
        """Perform a cloud API action for a site: disable-compute, enable-compute,
        wait-compute-up (args: host, binary, reason). exit_status 0 on success, 1 on failure
        with `error` set; interrupted when `stop` is set first. Raises TransportError when the
        API cannot be reached."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...
