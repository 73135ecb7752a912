"""The Prefect 3 flows that run a team's own jobs (issue #15): a callable and a command.

``run_callable``  imports ``target`` (``pkg.module:function``) from the job's code location
                  -- a directory put first on ``sys.path`` or an installed package -- and
                  calls it with the job's args/kwargs, as the legacy scheduler did. An
                  exception is a Failed flow run whose logs carry the traceback.
``run_command``   runs ``argv`` (no shell) or a ``shell`` line in ``cwd`` with the job's
                  environment; stdout and stderr are streamed line by line to the flow-run
                  logs; the exit code decides the state (``ok_exit_codes``, default ``[0]``);
                  ``timeout_s`` kills the process group (Failed).

Both run the work as one task (``call`` / ``execute``) with the job's ``retries`` and
``retry_delay_s``; the callable's task carries ``timeout_s`` (Prefect's task timeout). Both
write a run record (orchestrator ``prefect``, the mode, ``external_id`` = flow-run id) keyed
by the job id, and the command's exit code and output tail in ``job_run_output``.

Before the work starts, the run's environment gets the variables of
:mod:`cutover.core.jobenv` for its mode (``CUTOVER_MODE``, ``CUTOVER_ICEBERG_BRANCH``,
``CUTOVER_LEDGER_NAMESPACE``, ``CUTOVER_OUTPUT_PREFIX`` in shadow, ``CUTOVER_JOB_ID``,
``CUTOVER_RUN_ID``, ``CUTOVER_ORCHESTRATOR=prefect``): a job declared ``env`` reads them, a job
declared ``sdk`` gets them through ``cutover.sdk`` (whose Run counts on this run record). A job
declared ``observe`` is never run in shadow: the flow refuses it (the shadow side deploys nothing
for it anyway).

Why subprocess and not prefect-shell: ``ShellOperation`` always goes through a shell and fails
every non-zero exit, so it can honour neither ``argv`` without a shell nor accepted exit codes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed
from cutover.core import jobenv
from cutover.core.records import runs as R
from cutover.core.records.jobruns import redact_output, secret_values
from cutover.core.records.jobs import decode_value
from cutover.core.records.tables import job_run_output
from cutover.core.redact import redact_text
from cutover.core.workspace import Workspace, process_workspace

CALLABLE_FLOW = "cutover-callable"
COMMAND_FLOW = "cutover-command"
TAIL_LINES = 50
TAIL_CHARS = 8000

def workspace() -> Workspace:
    """One Workspace per flow-run process (settings from the environment)."""
    return process_workspace()


def _check(mode: str, trigger: str, shadow: str | None, job_id: str) -> None:
    if mode not in R.MODES:
        raise ValueError(f"mode must be one of {R.MODES}, got {mode!r}")
    if trigger not in R.TRIGGERS:
        raise ValueError(f"trigger must be one of {R.TRIGGERS}, got {trigger!r}")
    if mode == "shadow" and shadow not in (jobenv.ENV, jobenv.SDK):
        why = "observe-only: Prefect does not run it during shadow" if shadow == jobenv.OBSERVE else \
            "it declares no shadow mode"
        raise ValueError(f"job {job_id} cannot run in shadow ({why}); {jobenv.SHADOW_FIX}")


def _start(job_id: str, mode: str, trigger: str, output_prefix: str | None, command: str) -> tuple[str, dict[str, str]]:
    """Open the run record (and its job_run_output row) and compute the run's CUTOVER_* variables."""
    from prefect.runtime import deployment, flow_run
    from sqlalchemy import insert

    ws = workspace()
    run_id = uuid.uuid4().hex
    ws.runs.start(job_id, orchestrator="prefect", mode=mode, trigger=trigger, external_id=flow_run.id,
                  prefect_deployment_id=str(deployment.id) if deployment.id else None, run_id=run_id)
    with ws.autoloader_engine.begin() as conn:
        conn.execute(insert(job_run_output).values(run_id=run_id, job_id=job_id, command=redact_text(command)[:2000]))
    prefix = output_prefix or (jobenv.default_output_prefix(ws.settings.home, job_id) if mode == "shadow" else None)
    env = jobenv.env_for(mode, job_id=job_id, output_prefix=prefix, run_id=run_id, orchestrator="prefect")
    return run_id, env


def _finish(run_id: str, status: str, error: str | None) -> None:
    try:
        workspace().runs.finish(run_id, status, error=redact_output(error)[:500] if error else None)
    except Exception as e:  # noqa: BLE001 - the flow's state still says what happened
        get_run_logger().warning("could not close run record %s: %s", run_id, redact_text(str(e)))


# -- callable ------------------------------------------------------------------------------------


def import_target(target: str, code_location: str | None):
    """The function ``pkg.module:attr.path`` from ``code_location`` (a directory, first on
    sys.path; ``package:NAME``: an installed distribution, nothing added)."""
    import importlib

    if code_location and not code_location.startswith("package:"):
        if not os.path.isdir(code_location):
            raise FileNotFoundError(f"code location {code_location} is not a directory on this worker")
        if code_location in sys.path:
            sys.path.remove(code_location)
        sys.path.insert(0, code_location)
    elif code_location:
        from importlib.metadata import PackageNotFoundError, distribution

        name = code_location[len("package:"):]
        try:
            distribution(name)
        except PackageNotFoundError:
            raise ModuleNotFoundError(f"package {name} is not installed on this worker") from None
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj


class JobFailed(Exception):
    """The team's function raised: its traceback is in the logs (secrets masked), this carries the
    masked one-line reason -- so Prefect's own record of the task's exception holds no secret."""


@task(name="call", cache_policy=NO_CACHE, persist_result=False)
def call(target: str, code_location: str | None, args: list, kwargs: dict) -> Any:
    logger = get_run_logger()
    try:
        fn = import_target(target, code_location)
        a, k = decode_value(args), decode_value(kwargs)
        logger.info("calling %s with %d positional and %d keyword argument(s)", target, len(a), len(k))
        result = fn(*a, **k)
    except Exception as e:  # noqa: BLE001 - re-raised masked (the task fails, and is retried)
        logger.error("%s raised %s:\n%s", target, type(e).__name__,
                     redact_output("".join(traceback.format_exception(e))))
        raise JobFailed(redact_output(f"{type(e).__name__}: {e}".splitlines()[0])[:500]) from None
    return None if result is None else redact_output(repr(result))[:500]


@flow(name=CALLABLE_FLOW, flow_run_name="{job_id}-{mode}-{trigger}", persist_result=False, validate_parameters=True)
def run_callable(job_id: str, target: str, args: list | None = None, kwargs: dict | None = None,
                 code_location: str | None = None, mode: str = "live", trigger: str = "scheduled",
                 shadow: str | None = None, output_prefix: str | None = None, timeout_s: float | None = None,
                 retries: int = 0, retry_delay_s: float = 0.0):
    """Call one team function as its legacy scheduler did; Failed (traceback in the logs) when it raises."""
    _check(mode, trigger, shadow, job_id)
    logger = get_run_logger()
    run_id, env = _start(job_id, mode, trigger, output_prefix, target)
    os.environ.update(env)  # the flow-run process is this run's own: the job reads them
    logger.info("run record %s; %s", run_id, ", ".join(f"{k}={v}" for k, v in env.items() if k in jobenv.VARIABLES))
    if args is None and kwargs is None:  # a credential among the kwargs: never a Prefect parameter
        stored = workspace().jobs.get(job_id)
        args, kwargs = stored.args, stored.kwargs
    opts: dict[str, Any] = {"retries": int(retries), "retry_delay_seconds": float(retry_delay_s)}
    if timeout_s:
        opts["timeout_seconds"] = float(timeout_s)
    try:
        result = call.with_options(**opts)(target, code_location, list(args or []), dict(kwargs or {}))
    except BaseException as e:
        reason = str(e) if isinstance(e, JobFailed) else f"{type(e).__name__}: {e}".splitlines()[0]
        reason = redact_output(reason)[:500]
        _finish(run_id, R.FAILED if isinstance(e, Exception) else R.CANCELLED, reason)
        if not isinstance(e, Exception):
            raise
        return Failed(message=f"{target} raised {reason}"[:500])
    _finish(run_id, R.SUCCESS, None)
    logger.info("%s returned %s", target, result)
    return {"run_id": run_id, "job_id": job_id, "mode": mode, "result": result}


# -- command -------------------------------------------------------------------------------------


def _stream(pipe, name: str, logger, tail: deque, secrets: list[str]) -> None:
    for raw in iter(pipe.readline, b""):
        line = redact_output(raw.decode("utf-8", "replace").rstrip("\n"), secrets)
        tail.append(f"{name}: {line}" if name == "stderr" else line)
        (logger.warning if name == "stderr" else logger.info)("%s", line)
    pipe.close()


@task(name="execute", cache_policy=NO_CACHE, persist_result=False)
def execute(job_id: str, run_id: str, argv: list[str] | None, shell: str | None, cwd: str | None, env: dict,
            ok_exit_codes: list[int], timeout_s: float | None, stdin: str | None = None) -> dict:
    """Run the process; raises (the task fails, and is retried) unless its exit code is accepted.
    A shell line runs under the job's SHELL (a crontab's), else /bin/sh; ``stdin`` is its input."""
    logger = get_run_logger()
    secrets = secret_values(env)
    cmd = list(argv) if argv else [env.get("SHELL") or "/bin/sh", "-c", shell]
    shown = redact_output(shell if shell is not None else " ".join(argv or []), secrets)
    full_env = {**os.environ, **env}
    if cwd and not os.path.isdir(cwd):
        raise FileNotFoundError(f"working directory {cwd} does not exist on this worker")
    logger.info("$ %s%s", shown, f"  (in {cwd})" if cwd else "")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd or None, env=full_env,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    tail: deque = deque(maxlen=TAIL_LINES)
    readers = [threading.Thread(target=_stream, args=(p, n, logger, tail, secrets), daemon=True)
               for p, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
    for t in readers:
        t.start()
    if stdin is not None:
        try:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        except BrokenPipeError:  # the command did not read it
            pass
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
    except BaseException:  # cancelled: the process group goes with us
        _kill_group(proc)
        raise
    for t in readers:
        t.join(5)
    code = proc.returncode
    sig = -code if code is not None and code < 0 else None
    text = "\n".join(tail)[-TAIL_CHARS:]
    _record_output(run_id, job_id, code if sig is None else None, sig, text, shown)
    took = time.monotonic() - t0
    if timed_out:
        raise TimeoutError(f"command timed out after {timeout_s:g}s and was killed")
    if sig is not None:
        raise RuntimeError(f"command killed by signal {sig} after {took:.1f}s")
    if code not in ok_exit_codes:
        raise RuntimeError(f"command exited {code} (accepted: {', '.join(map(str, ok_exit_codes))}) after {took:.1f}s")
    logger.info("exit %d after %.1fs", code, took)
    return {"exit_code": code, "duration_s": round(took, 3)}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _record_output(run_id: str, job_id: str, code: int | None, sig: int | None, tail: str, command: str) -> None:
    """The last attempt's exit code, signal and output tail on the run's job_run_output row."""
    from sqlalchemy import update

    try:
        with workspace().autoloader_engine.begin() as conn:
            conn.execute(update(job_run_output).where(job_run_output.c.run_id == run_id).values(
                exit_code=code, signal=sig, output_tail=tail, command=command))
    except Exception as e:  # noqa: BLE001 - the flow-run logs hold the output anyway
        get_run_logger().warning("could not record the output of run %s: %s", run_id, redact_text(str(e)))


@flow(name=COMMAND_FLOW, flow_run_name="{job_id}-{mode}-{trigger}", persist_result=False, validate_parameters=True)
def run_command(job_id: str, argv: list[str] | None = None, shell: str | None = None, cwd: str | None = None,
                ok_exit_codes: list[int] | None = None, mode: str = "live", trigger: str = "scheduled",
                shadow: str | None = None, output_prefix: str | None = None, timeout_s: float | None = None,
                retries: int = 0, retry_delay_s: float = 0.0):
    """Run one team command as cron did; its exit code decides the state. The job's own
    environment comes from the deployment's job variables (``env``), never from parameters."""
    _check(mode, trigger, shadow, job_id)
    if (argv is None) == (shell is None):
        raise ValueError("give exactly one of argv and shell")
    logger = get_run_logger()
    run_id, env = _start(job_id, mode, trigger, output_prefix, shell if shell is not None else " ".join(argv or []))
    stored = workspace().jobs.find(job_id)  # its env, credentials included (never in the deployment)
    env = {**(stored.env if stored is not None else {}), **env}
    stdin = stored.stdin if stored is not None else None
    codes = list(ok_exit_codes or [0])
    try:
        out = execute.with_options(retries=int(retries), retry_delay_seconds=float(retry_delay_s))(
            job_id, run_id, argv, shell, cwd, env, codes, timeout_s, stdin)
    except BaseException as e:
        msg = redact_output(f"{type(e).__name__}: {e}".splitlines()[0])[:500]
        _finish(run_id, R.FAILED if isinstance(e, Exception) else R.CANCELLED, msg)
        if not isinstance(e, Exception):
            raise
        logger.error("%s", msg)
        return Failed(message=msg)
    _finish(run_id, R.SUCCESS, None)
    return {"run_id": run_id, "job_id": job_id, "mode": mode, **out}
