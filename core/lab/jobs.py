"""The lab's side of the remote-job wrapper (core/transports/remote_job.py): the same verbs,
the same words, by job directory, so a rehearsal over SSH exercises the path a real node does.

A job runs as a task of the lab; its output and exit status are kept by job directory for as
long as the lab runs. A lab that stops is a node that restarted: its jobs are gone (`unknown`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Out = Callable[[str, str], None]
Runner = Callable[[str, Out], Awaitable[int]]  # runs one command on this node


@dataclass
class LabJob:
    command: str
    lines: list[tuple[str, bytes]] = field(default_factory=list)  # (stream, line + newline)
    status: int | None = None
    killed: bool = False
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self.status is not None or self.killed


class LabJobs:
    """Every job of one lab node, by job directory."""

    def __init__(self) -> None:
        self.jobs: dict[str, LabJob] = {}

    async def handle(self, argv: list[str], out: Out, run: Runner) -> int:
        """`rollgate-job VERB JOBDIR [ARGS]` (what follows `sh -c WRAPPER`)."""
        if len(argv) < 3:
            out("stderr", "rollgate-job: a verb and a job directory are needed")
            return 95
        verb, where, args = argv[1], argv[2], argv[3:]
        if verb == "start":
            return self._start(where, args[0] if args else "true", out, run)
        if verb == "attach":
            return await self._attach(where, int(args[0]), int(args[1]), out)
        if verb == "status":
            job = self.jobs.get(where)
            if job is None:
                out("stdout", "unknown")
            elif job.status is not None:
                out("stdout", f"exit {job.status}")
            else:
                out("stdout", "lost" if job.killed else "running")
            return 0
        if verb == "kill":
            job = self.jobs.get(where)
            if job is None:  # not started yet: take its place, so a late start starts nothing
                self.jobs[where] = LabJob("", killed=True)
            elif not job.ended and job.task is not None:
                job.killed = True
                job.task.cancel()
                job.notify()
            out("stdout", "terminated")
            return 0
        if verb == "check":  # a lab node's job directories are the lab's own
            out("stdout", "ok")
            return 0
        if verb == "clean":
            for key in [k for k in self.jobs if k == where or k.startswith(where + "/")]:
                del self.jobs[key]
            return 0
        out("stderr", f"rollgate-job: unknown verb {verb}")
        return 95

    def _start(self, where: str, command: str, out: Out, run: Runner) -> int:
        if where in self.jobs:  # mkdir of an existing job directory fails: re-attach
            out("stdout", "attached")
            return 0
        job = self.jobs[where] = LabJob(command)

        def collect(stream: str, line: str) -> None:
            job.lines.append((stream, (line + "\n").encode()))
            job.notify()

        async def work() -> None:
            try:
                job.status = await run(command, collect)
            finally:
                job.notify()

        job.task = asyncio.create_task(work())
        out("stdout", "started")
        return 0

    async def _attach(self, where: str, seen_out: int, seen_err: int, out: Out) -> int:
        job = self.jobs.get(where)
        if job is None:
            out("stderr", f"rollgate-job: no job {where} on this node")
            return 96
        offsets = {"stdout": seen_out, "stderr": seen_err}
        sent = {"stdout": 0, "stderr": 0}
        index = 0
        while True:
            ended = job.ended
            waiter = job.changed
            while index < len(job.lines):
                stream, raw = job.lines[index]
                index += 1
                start = sent[stream]
                sent[stream] += len(raw)
                if sent[stream] <= offsets[stream]:
                    continue  # seen by the driver already
                part = raw[max(0, offsets[stream] - start) :]
                out(stream, part.decode(errors="replace").rstrip("\n"))
            if ended:
                return 0
            await waiter.wait()
