"""The local executor: steps that run on the deploy host (kolla-ansible), as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib

from core.executor import CommandResult, OutputCallback


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
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    readers.cancel()
    with contextlib.suppress(asyncio.CancelledError, OSError):
        await readers
