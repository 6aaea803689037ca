"""The local executor: steps that run on the deploy host (a method's own deployment tool), as
subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from rollgate.core.executor import CommandResult, OutputCallback, Stopped, leaving, within


async def run_local(
    command: str,
    *,
    on_output: OutputCallback,
    timeout: float,
    stop: asyncio.Event | None = None,
) -> CommandResult:
    process = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )

    async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        async for raw in stream:
            on_output(name, raw.decode(errors="replace").rstrip("\n"))

    readers = asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
    try:
        await within(asyncio.shield(readers), timeout, stop)
        return CommandResult(await process.wait())
    except (TimeoutError, Stopped) as exc:
        gone = await _stop(process, readers)
        why = (
            f"timed out after {timeout:g}s"
            if isinstance(exc, TimeoutError)
            else "the driver left"
            if leaving(stop)
            else "aborted"
        )
        return CommandResult(
            None,
            timed_out=isinstance(exc, TimeoutError),
            interrupted=isinstance(exc, Stopped),
            terminated=gone,
            error=f"{why}; the command "
            + ("was terminated" if gone else "could not be stopped (its process group lives)"),
        )
    except asyncio.CancelledError:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await asyncio.shield(_stop(process, readers))
        raise


async def _stop(process: asyncio.subprocess.Process, readers: asyncio.Future) -> bool:
    """Terminate the command's whole process group, then kill it if it lingers; True once
    the group's pipes closed (every process of it is gone)."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            await within(process.wait(), grace, None)
            break
        except TimeoutError:
            continue
    try:  # the pipes close once every process of the group is gone
        await within(readers, 2, None)
        return True
    except (TimeoutError, OSError):
        readers.cancel()
        return False
