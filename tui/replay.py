"""The console in replay: the same widgets, driven by a journal's timeline, read-only
(its keys: REPLAY_HELP, shown by `?`)."""

from __future__ import annotations

import time
from typing import Any

from textual import work
from textual.binding import Binding

from rollgate.core.client import JournalClient
from rollgate.core.journal import JournalError
from rollgate.core.timeline import journal_timeline
from rollgate.tui.app import RollgateApp
from rollgate.tui.screens.dialogs import PromptScreen, TextScreen

SPEEDS = (0.5, 1.0, 2.0, 5.0, 10.0, 100.0)
LOG_CONTEXT = 300  # log lines rebuilt around the position after a jump
LARGE_JOURNAL = 200_000  # events; folding this many takes about half a second


REPLAY_HELP = """space  play / pause          + / -  faster / slower
right  next event              left  previous event
n / N  next / previous gate    e / E  next / previous failure
] / [  next / previous phase   home / end  start / end of the run
g      go to a time (HH:MM:SS)
enter  node detail (on the site map); a step's command and output (steps table)
/      search the log          f  follow the log on/off
v      filter the site map     l  log of the node under the cursor / everything
t      next theme              q  quit
Read-only: nothing can be approved or changed from a replay."""


class ReplayApp(RollgateApp):
    BINDINGS = [
        # ? and q first, then what fits an 80-column footer; ? lists every key
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("space", "play", "Play/pause"),
        Binding("n", "jump('gate', True)", "Next gate"),
        Binding("e", "jump('failure', True)", "Next failure"),
        Binding("plus", "faster", "Faster", show=False),
        Binding("minus", "slower", "Slower", show=False),
        Binding("right", "step(1)", "Next event", show=False),
        Binding("left", "step(-1)", "Previous event", show=False),
        Binding("N", "jump('gate', False)", "Previous gate", show=False),
        Binding("E", "jump('failure', False)", "Previous failure", show=False),
        Binding("right_square_bracket", "jump('phase', True)", "Next phase", show=False),
        Binding("left_square_bracket", "jump('phase', False)", "Previous phase", show=False),
        Binding("home", "seek(0)", "Start", priority=True, show=False),
        Binding("end", "seek(-1)", "End", priority=True, show=False),
        Binding("g", "goto_time", "Go to time", show=False),
        *[
            b
            for b in RollgateApp.BINDINGS
            if isinstance(b, Binding)
            and b.action in ("search", "filter", "log_scope", "follow", "theme", "node_detail")
        ],
        # the live console's decision keys do nothing here
        *[Binding(key, "read_only", show=False) for key in ("a", "j", "r", "s", "x")],
    ]

    def __init__(self, client: JournalClient, *, start_at_end: bool | None = None, **kwargs: Any):
        super().__init__(client, operator="replay (read-only)", **kwargs)
        self.timeline = journal_timeline(client.plan, client.index)
        if start_at_end is None:  # a big journal opens at once at its start; End folds it
            start_at_end = len(self.timeline) <= LARGE_JOURNAL
        self.position = len(self.timeline) if start_at_end else 0
        self.speed_index = 1
        self.playing = False
        self.virtual_time = 0.0
        self.clock = lambda: self.virtual_time  # elapsed time as it was at the position

    def _consume(self) -> None:  # type: ignore[override]  # the timeline, not a live stream, feeds this console
        self.set_position(self.position)
        if self.position == 0 and len(self.timeline) > LARGE_JOURNAL:
            self.notify(
                f"{len(self.timeline):,} events: opened at the start. End goes to the end "
                "(the first pass folds every event once, a few seconds); then seeks are quick."
            )
        self.set_interval(0.1, self._tick)

    def set_position(self, k: int) -> None:
        try:
            self._set_position(k)
        except JournalError as exc:  # a line edited or corrupted after the run
            self._fail(exc)

    def _fail(self, exc: JournalError) -> None:
        """Leave the console with the journal's one-line error (the command prints it)."""
        self.playing = False
        self.error = str(exc)
        self.exit(return_code=2)

    def _set_position(self, k: int) -> None:
        self.position = max(0, min(k, len(self.timeline)))
        events = self.timeline.events(max(0, self.position - LOG_CONTEXT), self.position)
        lines = [ln for e in events if (ln := self.log_line(e))]
        self.show_moment(
            self.timeline.view_at(self.position),
            "\n".join(lines).split("\n") if lines else [],
        )
        self.virtual_time = (
            self.timeline.time_of(self.position - 1)
            if self.position
            else (self.timeline.time_of(0) if len(self.timeline) else 0.0)
        )

    def _where(self) -> str:
        moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.virtual_time))
        state = "playing" if self.playing else "paused"
        return (
            f"REPLAY {self.position}/{len(self.timeline)} at {moment}, "
            f"{state} x{SPEEDS[self.speed_index]:g}"
        )

    def _draw_header(self) -> None:
        self.operator = self._where()  # the header's last field says where the replay is
        super()._draw_header()

    def _tick(self) -> None:
        if not self.playing:
            return
        if self.position >= len(self.timeline):
            self.playing = False
            return
        self.virtual_time += 0.1 * SPEEDS[self.speed_index]
        try:
            target = max(self.position + 1, self.timeline.index_at_time(self.virtual_time))
        except JournalError as exc:
            self._fail(exc)
            return
        moment = self.virtual_time
        self.set_position(target)
        self.virtual_time = max(self.virtual_time, moment)

    def action_help(self) -> None:
        self.push_screen(TextScreen("Replay keys", REPLAY_HELP))

    def action_read_only(self) -> None:
        self.notify("replay is read-only: nothing can be approved or changed", severity="warning")

    def action_play(self) -> None:
        if self.position >= len(self.timeline):
            self.set_position(0)
        self.playing = not self.playing
        self.notify(self._where())

    def action_faster(self) -> None:
        self.speed_index = min(self.speed_index + 1, len(SPEEDS) - 1)
        self.notify(self._where())

    def action_slower(self) -> None:
        self.speed_index = max(self.speed_index - 1, 0)
        self.notify(self._where())

    def action_step(self, delta: int) -> None:
        self.playing = False
        self.set_position(self.position + delta)

    def action_jump(self, mark: str, forward: bool) -> None:
        self.playing = False
        try:
            target = self.timeline.find(self.position, mark, forward)
        except JournalError as exc:
            self._fail(exc)
            return
        self.set_position(target)

    def action_seek(self, k: int) -> None:
        self.playing = False
        self.set_position(len(self.timeline) if k < 0 else k)

    @work(exclusive=True, group="dialog")
    async def action_goto_time(self) -> None:
        answer = await self.push_screen_wait(PromptScreen("Go to time (HH:MM:SS, local):"))
        if not answer:
            return
        try:
            clock = time.strptime(answer, "%H:%M:%S")
        except ValueError:
            self.notify("write the time as HH:MM:SS", severity="warning")
            return
        day = time.localtime(self.virtual_time)
        moment = time.mktime(
            (
                day.tm_year,
                day.tm_mon,
                day.tm_mday,
                clock.tm_hour,
                clock.tm_min,
                clock.tm_sec,
                0,
                0,
                -1,
            )
        )
        self.playing = False
        try:
            target = self.timeline.index_at_time(moment)
        except JournalError as exc:
            self._fail(exc)
            return
        self.set_position(target)
