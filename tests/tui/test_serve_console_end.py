"""`rollgate serve` ending a console that exits that same instant says nothing about it."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from rollgate.tui.commands.serve import _EndedConsoles, end_process

ASYNCIO_WORDS = "Unknown child process pid %d, will report returncode 255"


async def test_a_console_serve_ended_is_not_reported_unknown_in_its_terminal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Signalling a console polls it first (CPython's Popen.send_signal): one that exited
    that instant is reaped there, and asyncio's child watcher then logs it as unknown, a
    warning in the operator's terminal for nothing. Serve drops that line for the consoles
    it ended, and only for them."""
    assert ASYNCIO_WORDS in inspect.getsource(asyncio.unix_events)  # CPython's own words
    # a console slow to go: it takes a moment after SIGTERM, as one saving its screen does
    console = await asyncio.create_subprocess_exec("sh", "-c", "trap '' TERM; sleep 0.5")
    await asyncio.sleep(0.1)  # its trap is set
    log = logging.getLogger("asyncio")
    ended = _EndedConsoles()
    log.addFilter(ended)
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            ending = asyncio.ensure_future(end_process(console))
            await asyncio.sleep(0.1)  # serve is ending it
            log.warning(ASYNCIO_WORDS, console.pid)  # as the watcher says it: dropped
            log.warning(ASYNCIO_WORDS, console.pid + 100_000)  # a child serve did not end
            await ending
            assert console.returncode is not None  # it ended
            log.warning(ASYNCIO_WORDS, console.pid)  # the pid may be another's now
    finally:
        log.removeFilter(ended)
    assert [r.getMessage() for r in caplog.records] == [
        ASYNCIO_WORDS % (console.pid + 100_000),
        ASYNCIO_WORDS % console.pid,
    ]
