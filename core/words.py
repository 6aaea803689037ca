"""The fixed state words of runs, phases, nodes and steps, their glyphs, and how each is earned.

Every view (console, headless, replay, watch, report, `rollgate runs`) shows these words and
nothing else; the README's "State words" table is this module in prose. A word that claims
success (`ok`, `done`, `complete`) is derived from step outcomes, never from a flag.
"""

from __future__ import annotations

from collections.abc import Iterable

# ---------------------------------------------------------------- steps

# A step that only runs when an earlier check asks for it (neutron's contract when migrations are
# pending) and was not asked: nothing to do, which is success.
STEP_NOT_NEEDED = "not needed"
# ran and succeeded (a warning was acknowledged at its gate), or had nothing to do
STEP_OK = ("ok", "warning", STEP_NOT_NEEDED)
STEP_FAILED = ("failed", "timed_out", "unreachable", "interrupted")
# A check of the final verification that found the cloud not at the target (or could not read
# it): said, and the run goes on to its end, which is then `complete with deviations`.
STEP_DEVIATION = "deviation"
# A finished step the run may go past: it succeeded, an operator skipped it with a reason, or
# the final verification found a deviation.
STEP_SETTLED = (*STEP_OK, "skipped", STEP_DEVIATION)

# ---------------------------------------------------------------- phases and runs

PHASE_OK = "ok"
PHASE_DEVIATIONS = "ok with deviations"  # every step settled, one skipped or a deviation
RUN_COMPLETE = "complete"
RUN_DEVIATIONS = "complete with deviations"  # every step settled, one skipped or a deviation
# The driver stopped on request (Ctrl-C, a signal, "quit leaving the run paused"): nothing
# was terminated, open gates stay undecided, and `run --resume` carries on.
RUN_PAUSED = "paused"

# Run words that mean the run is over and nothing is left to resume.
RUN_FINAL = (RUN_COMPLETE, RUN_DEVIATIONS)

# Who decided a gate that --auto-approve answered, as the journal says it
AUTO_OPERATOR = "auto-approve"

WORDS: dict[str, dict[str, str]] = {
    "run": {
        "pending": "not started yet",
        "running": "the engine is driving it",
        "paused": "nothing new starts; running steps finish (or the driver stopped, resumable)",
        RUN_COMPLETE: "every step finished ok, the final verification read every API, "
        "program and schema back at the target, and no service went down during the run",
        RUN_DEVIATIONS: "every step settled, but some were skipped (nodes not upgraded), the "
        "final verification found something not at the target or not answering, or a "
        "service went down after its phase",
        "failed": "a step failed and was not retried or skipped, or the engine hit an error",
        "stopped": "an operator rejected a gate: nothing new started after it",
        "aborted": "an operator aborted: running commands were terminated",
    },
    "phase": {
        "pending": "not started",
        "running": "steps of it are running or waiting at its gates",
        PHASE_OK: "every step finished ok",
        PHASE_DEVIATIONS: "every step settled; at least one was skipped or found a deviation",
        "failed": "a step of it failed and was left failed",
        "stopped": "the run stopped (a rejected gate or a pause) before the phase finished",
        "aborted": "the run was aborted during the phase",
    },
    "node": {
        "pending": "none of its steps has started",
        "working": "one of its steps is running now",
        "partial": "some of its steps are done; the rest wait for their phase or gate",
        "done": "every step of it finished ok: upgraded",
        "skipped": "an operator skipped at least one of its steps: not (fully) upgraded",
        "deviates": "the final verification found it not at the target (or could not read it)",
        "failed": "a step of it failed",
        "unreachable": "it could not be reached; its steps failed or were skipped",
    },
    "step": {
        "pending": "not started",
        "running": "running on its node now",
        "ok": "exited with a success status",
        "warning": "its status check warned and an operator acknowledged it",
        STEP_NOT_NEEDED: "the check it depends on found nothing to do, so it did not run",
        "failed": "exited with a failure status",
        "timed_out": "ran past the step timeout and was stopped",
        "unreachable": "its node or API could not be reached",
        "skipped": "an operator skipped it, with a reason",
        STEP_DEVIATION: "a check of the final verification found the cloud not at the target "
        "(or could not read it); the run went on and ends complete with deviations",
        "interrupted": "it was running when the driver stopped; the next driver asks about it",
    },
}

GLYPHS = {
    "pending": "·",
    "running": "▶",
    "working": "▶",
    "partial": "◐",
    "ok": "✔",
    "done": "✔",
    RUN_COMPLETE: "✔",
    "warning": "!",
    STEP_NOT_NEEDED: "–",
    PHASE_DEVIATIONS: "↷",
    RUN_DEVIATIONS: "↷",
    "skipped": "↷",
    STEP_DEVIATION: "≠",
    "deviates": "≠",
    "failed": "✘",
    "timed_out": "⏱",
    "unreachable": "⊘",
    "interrupted": "↯",
    "paused": "⏸",
    "stopped": "■",
    "aborted": "■",
}


def glyph(word: str) -> str:
    return GLYPHS.get(word, "?")


def settled_word(statuses: Iterable[str], *, clean: str, deviations: str) -> str:
    """The word for a set of steps: `failed` if any failed, `deviations` if every step settled
    but some were skipped or found a deviation, `clean` if every one finished ok, else
    `incomplete`."""
    skipped = False
    incomplete = False
    for status in statuses:
        if status in STEP_FAILED:
            return "failed"
        if status in ("skipped", STEP_DEVIATION):
            skipped = True
        elif status not in STEP_OK:
            incomplete = True
    if incomplete:
        return "incomplete"
    return deviations if skipped else clean


def phase_word(statuses: Iterable[str]) -> str:
    return settled_word(statuses, clean=PHASE_OK, deviations=PHASE_DEVIATIONS)


def run_word(statuses: Iterable[str]) -> str:
    return settled_word(statuses, clean=RUN_COMPLETE, deviations=RUN_DEVIATIONS)
