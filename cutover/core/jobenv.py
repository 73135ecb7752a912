"""The environment contract between cutover and a team's own job (DESIGN §3a).

A job that cutover runs in shadow must not write where production writes. cutover tells
the job where to write through four variables, set by whichever side runs it (the Prefect
callable/command flows, ``cutover cron exec``); a job reads them itself (``shadow: env``)
or through :mod:`cutover.sdk` (``shadow: sdk``):

==========================  =====================  ===================================
variable                    live                   shadow
==========================  =====================  ===================================
``CUTOVER_MODE``            ``live``               ``shadow``
``CUTOVER_ICEBERG_BRANCH``  ``main``               ``cutover-shadow``
``CUTOVER_LEDGER_NAMESPACE````live``               ``shadow``
``CUTOVER_OUTPUT_PREFIX``   (unset)                a directory outside production
==========================  =====================  ===================================

Besides: ``CUTOVER_JOB_ID`` (the job's id: the ledger and run-record key) and
``CUTOVER_RUN_ID`` (the run record the side opened, which :mod:`cutover.sdk` counts its
files on instead of opening its own), ``CUTOVER_ORCHESTRATOR`` (``legacy`` | ``prefect``).

The three shadow declarations a job can make (``shadow:`` in its definition) are here too:
what cutover does with each during SHADOW is decided by the sides and the engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cutover.core.errors import InputError
from cutover.core.iceberg import MAIN, SHADOW_BRANCH

MODE, BRANCH, NAMESPACE, OUTPUT_PREFIX = (
    "CUTOVER_MODE", "CUTOVER_ICEBERG_BRANCH", "CUTOVER_LEDGER_NAMESPACE", "CUTOVER_OUTPUT_PREFIX")
JOB_ID, RUN_ID, ORCHESTRATOR = "CUTOVER_JOB_ID", "CUTOVER_RUN_ID", "CUTOVER_ORCHESTRATOR"
# set in a legacy scheduler process whose runs cutover records (APScheduler's listeners): the record of
# a run is opened by the listener just after the job is submitted, so cutover.sdk waits for it
RECORDER = "CUTOVER_RUN_RECORDER"
VARIABLES = (MODE, BRANCH, NAMESPACE, OUTPUT_PREFIX)

# how a job can be shadowed: never run by Prefect in shadow / reads the variables / uses cutover.sdk
OBSERVE, ENV, SDK = "observe", "env", "sdk"
SHADOW_CHOICES = (OBSERVE, ENV, SDK)
SHADOW_FIX = ("observe (Prefect does not run it during shadow), env (it reads CUTOVER_MODE and the other "
              "CUTOVER_* variables and writes elsewhere in shadow) or sdk (it uses cutover.sdk)")


def check_shadow(value, *, where: str) -> str | None:
    """A job's ``shadow`` declaration (None when absent); InputError naming the three choices."""
    if value is None or value == "":
        return None
    if value not in SHADOW_CHOICES:
        raise InputError(f"{where}: shadow {value!r} is not one of {', '.join(SHADOW_CHOICES)}", fix=SHADOW_FIX)
    return str(value)


def default_output_prefix(home: Path, job_id: str) -> str:
    """Where a shadow run writes its files when the job's definition names no prefix."""
    return str(Path(home) / "shadow-output" / job_id)


def env_for(mode: str, *, job_id: str, output_prefix: str | None = None, run_id: str | None = None,
            orchestrator: str | None = None) -> dict[str, str]:
    """The variables a run of ``job_id`` in ``mode`` gets. Shadow needs ``output_prefix``."""
    if mode == "live":
        env = {MODE: "live", BRANCH: MAIN, NAMESPACE: "live"}
    elif mode == "shadow":
        if not output_prefix:
            raise InputError(f"job {job_id}: a shadow run needs an output prefix",
                             fix="set shadow_output_prefix in the job's definition")
        env = {MODE: "shadow", BRANCH: SHADOW_BRANCH, NAMESPACE: "shadow", OUTPUT_PREFIX: str(output_prefix)}
    else:
        raise InputError(f"mode {mode!r} is not live or shadow", fix="pass live or shadow")
    env[JOB_ID] = job_id
    if run_id:
        env[RUN_ID] = run_id
    if orchestrator:
        env[ORCHESTRATOR] = orchestrator
    return env


@dataclass(frozen=True)
class JobEnv:
    """The variables as one job run sees them, checked for consistency."""

    mode: str
    branch: str
    namespace: str
    output_prefix: str | None
    job_id: str | None
    run_id: str | None
    orchestrator: str

    @property
    def shadow(self) -> bool:
        return self.mode == "shadow"


def read(environ: Mapping[str, str] | None = None) -> JobEnv:
    """Read the variables (``os.environ`` by default). Absent: live, main, live. A shadow run whose
    branch or namespace would be production's is refused (InputError): shadow never writes there."""
    e = os.environ if environ is None else environ
    mode = (e.get(MODE) or "live").strip().lower()
    if mode not in ("live", "shadow"):
        raise InputError(f"{MODE}={e.get(MODE)!r} is not live or shadow", fix=f"unset {MODE} or set live|shadow")
    branch = e.get(BRANCH) or (SHADOW_BRANCH if mode == "shadow" else MAIN)
    namespace = e.get(NAMESPACE) or mode
    if namespace not in ("live", "shadow"):
        raise InputError(f"{NAMESPACE}={namespace!r} is not live or shadow", fix=f"unset {NAMESPACE}")
    prefix = e.get(OUTPUT_PREFIX) or None
    if mode == "shadow":
        if branch == MAIN or namespace == "live":
            raise InputError(f"{MODE}=shadow with {BRANCH}={branch} and {NAMESPACE}={namespace}: a shadow run "
                             "never writes production's branch or ledger", fix=f"unset {BRANCH} and {NAMESPACE}")
    elif branch != MAIN or namespace != "live" or prefix:
        raise InputError(f"{MODE}=live with {BRANCH}={branch}, {NAMESPACE}={namespace}, {OUTPUT_PREFIX}={prefix}: "
                         "these go together with shadow only", fix=f"set {MODE}=shadow, or unset the others")
    orch = (e.get(ORCHESTRATOR) or "legacy").strip().lower()
    if orch not in ("legacy", "prefect"):
        raise InputError(f"{ORCHESTRATOR}={orch!r} is not legacy or prefect", fix=f"unset {ORCHESTRATOR}")
    return JobEnv(mode, branch, namespace, prefix, e.get(JOB_ID) or None, e.get(RUN_ID) or None, orch)


def redirect(path: str | os.PathLike, prefix: str | None) -> Path:
    """``path`` as a shadow run writes it: re-rooted under ``prefix`` (the same relative layout, so
    two jobs' outputs stay apart); unchanged when ``prefix`` is None (live)."""
    p = Path(path)
    if not prefix:
        return p
    rel = p.relative_to(p.anchor) if p.is_absolute() else p
    return Path(prefix) / rel
