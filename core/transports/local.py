"""The local executor: steps that run on the deploy host (a method's own deployment tool), as
subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from rollgate.core.executor import CommandResult, OutputCallback


async def run_local(command: str, *, on_output: OutputCallback, timeout: float) -> CommandResult:
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
        await asyncio.wait_for(asyncio.shield(readers), timeout)
        return CommandResult(await process.wait())
    except TimeoutError:
        await _stop(process, readers)
        return CommandResult(
            None, timed_out=True, error=f"timed out after {timeout:g}s; the command was terminated"
        )
    except asyncio.CancelledError:
        await _stop(process, readers)
        raise


async def _stop(process: asyncio.subprocess.Process, readers: asyncio.Future) -> None:
    """Terminate the command's whole process group, then kill it if it lingers."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(process.wait(), grace)
            break
        except TimeoutError:
            continue
    try:  # the pipes close once every process of the group is gone
        await asyncio.wait_for(readers, 2)
    except (TimeoutError, asyncio.CancelledError, OSError):
        readers.cancel()
