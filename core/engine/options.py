"""What an engine is told when it is made (EngineOptions) and the plan words it acts on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rollgate.core.cloud_checks import HEARTBEAT_WAITS
from rollgate.core.notify import Notifier
from rollgate.core.secrets import Secrets
from rollgate.core.transports.remote_job import DEFAULT_JOB_ROOT
from rollgate.core.window import Window
from rollgate.core.words import AUTO_OPERATOR, RUN_PAUSED

DATA_PLANE_STAGES = ("canary", "batch", "network")
# Stages whose failed nodes count against the phase's failure budget. A canary is not among
# them: a failed canary opens a failure gate at once, and batches never start after it.
BUDGET_STAGES = ("batch", "network")
# Phases of these tiers may run before the maintenance window opens (a method's preparation).
BEFORE_WINDOW = ("scope", "prepare")  # reading the cloud and preparing: outside the window too
# waits for a restarted service's heartbeat or API: limited by policy.heartbeat_timeout
# the preparation's network-bound builds (a virtualenv from PyPI, kolla-ansible and its
# Ansible collections, image pulls): limited by policy.build_timeout, not step_timeout
BUILD_ACTIONS = ("install-venv", "install-kolla", "install-deps", "pull")
PLAN_GATE_KINDS = ("phase", "canary", "step", "downtime", "window")
# Why the run must end early: aborted (running commands terminated), stopped (a gate was
# rejected), paused (the driver leaves, the run stays resumable), error (a bug).
HALT_MODES = ("aborted", "stopped", RUN_PAUSED, "error")

__all__ = [
    "AUTO_OPERATOR",
    "BEFORE_WINDOW",
    "BUDGET_STAGES",
    "BUILD_ACTIONS",
    "DATA_PLANE_STAGES",
    "HALT_MODES",
    "HEARTBEAT_WAITS",
    "PLAN_GATE_KINDS",
    "EngineOptions",
]


@dataclass
class EngineOptions:
    operator: str
    run_id: str
    auto_approve: bool = False
    backoff: float = 0.5  # first transport retry delay in seconds; doubles each retry
    flush_interval: float = 0.1  # how often buffered output becomes StepOutput events
    status_interval: float = 10.0  # how often service states are polled (0: never)
    secrets: Secrets = field(default_factory=Secrets)  # filled into commands, masked in events
    dry_run: bool = False  # nothing runs: checks of what a command printed are not made
    job_root: str = DEFAULT_JOB_ROOT  # where steps' job directories live on the nodes
    keep_jobs: bool = False  # keep them after the run (else removed when every job ended)
    backup_root: Path | None = None  # where pull-* steps copy backups (the run's backups/)
    window: Window | None = None  # the maintenance window
    outside_window: bool = False  # --outside-window: starting outside it was asked for
    host: str = ""  # the machine this engine runs on (watchers see who drives from where)
    past_pace: float | None = None  # seconds per step of past runs of the cloud (estimates)
    notifier: Notifier | None = None  # the inventory's notify: (gates waiting, failures, end)
    # bounds on the end of a run: every await there finishes or gives up within these
    end_timeout: float = 60.0  # the job clean-up, the method's clean-ups, notifications
    # the lab's time scale: waits that stand for a real service's own time, the start grace
    # (policy.start_grace), are scaled with it. None: the inventory's lab.time_scale when it
    # has a lab, else 1 (a real cloud)
    time_scale: float | None = None
    # said once when the run starts (not again on resume), journalled as notes by "rollgate":
    # the release lifecycle's warnings, so the console, a replay and the report carry them
    notes: tuple[str, ...] = ()
    # what resumes this run, as its gates and end say it (core/runs.py resume_command)
    resume_command: str = ""
    watch_interval: float = 10.0  # how often services already moved are probed (0: never)
    watch_probe_timeout: float = 60.0  # a site's probes slower than this are not judged
