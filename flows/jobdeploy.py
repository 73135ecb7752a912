"""Deployments of a team's own jobs (callable, command): the same shape as an ingestion's.

A job ``J`` gets the deployments ``J-live`` / ``J-shadow`` of flow ``cutover-callable`` or
``cutover-command`` (entrypoints ``flows/jobs.py:run_callable`` / ``:run_command``), on the same
work pool, with the tags every cutover reader keys on (``cutover``, ``ingestion:J``,
``mode:M``) plus ``kind:<kind>``, the legacy schedule translated exactly, and:

- parameters: what the job runs -- target, args, kwargs and code location (callable); argv or
  shell line, working directory, accepted exit codes (command) -- with its timeout, retries and
  shadow declaration. A callable whose kwargs name a credential (``password``, ``token`` ...) gets
  no args/kwargs parameters: the flow reads them from the records store at run time, so no
  secret reaches Prefect's records;
- job variables ``env``: the workspace (``CUTOVER_HOME`` ...) as for an ingestion, the
  ``CUTOVER_*`` variables of the mode (:mod:`cutover.core.jobenv`), and the command's own
  environment except values that look like credentials (those too are read at run time);
- the code location: a directory job's code is found through the deployment's working
  directory pull step (the repository, as for ingestions) plus ``sys.path`` at call time.

A job declared ``shadow: observe`` gets no shadow deployment (:func:`runs_in`): Prefect does not
run it during shadow.

:func:`deploy_items` is what `cutover prefect deploy` calls: ingestions and jobs in one call.
"""

from __future__ import annotations

from typing import Any

from cutover.core import jobenv
from cutover.core.config import job_env
from cutover.core.records.jobs import CALLABLE, Job
from cutover.core.redact import is_secret_key, redact_text
from flows import deploy as D
from flows.deploy import REPO_ROOT, Desired, PlanItem, check_mode, deployment_name, tags_for, translate_schedule

CALLABLE_ENTRYPOINT = "flows/jobs.py:run_callable"
COMMAND_ENTRYPOINT = "flows/jobs.py:run_command"
CALLABLE_FLOW, COMMAND_FLOW = "cutover-callable", "cutover-command"  # = flows.jobs (not imported: prefect loads)
WORK_QUEUE = "default"


def is_job(item) -> bool:
    return isinstance(item, Job)


def flow_name_of(job: Job) -> str:
    return CALLABLE_FLOW if job.kind == CALLABLE else COMMAND_FLOW


def runs_in(job: Job, mode: str) -> bool:
    """Whether Prefect runs ``job`` in ``mode``: live always; shadow only for env and sdk jobs."""
    return mode == "live" or job.shadow in (jobenv.ENV, jobenv.SDK)


def output_prefix(ws, job: Job) -> str:
    return str(job.legacy.get("shadow_output_prefix") or jobenv.default_output_prefix(ws.settings.home, job.id))


def _schema(entrypoint: str) -> dict[str, Any]:
    from prefect.utilities.callables import parameter_schema

    from flows.jobs import run_callable, run_command

    fn = run_callable if entrypoint == CALLABLE_ENTRYPOINT else run_command
    return parameter_schema(fn).model_dump(exclude_unset=True)


def desired_job(ws, job: Job, mode: str, *, paused_on_create: bool | None = None, allow_approx: bool = False,
                environ: dict[str, str] | None = None) -> Desired:
    check_mode(mode)
    sched, text = translate_schedule(job, allow_approx=allow_approx)
    env, warnings = job_env(ws.settings, environ)
    prefix = output_prefix(ws, job) if mode == "shadow" else None
    env.update({k: v for k, v in jobenv.env_for(mode, job_id=job.id, output_prefix=prefix).items()})
    params: dict[str, Any] = {"job_id": job.id, "mode": mode, "trigger": "scheduled", "shadow": job.shadow,
                              "output_prefix": prefix, "timeout_s": job.timeout_s, "retries": job.retries,
                              "retry_delay_s": job.retry_delay_s}
    if job.kind == CALLABLE:
        entry = CALLABLE_ENTRYPOINT
        params.update(target=job.target, code_location=job.code_location)
        if any(is_secret_key(k) for k in job.kwargs):
            params.update(args=None, kwargs=None)  # read from the records store at run time
        else:
            params.update(args=list(job.args), kwargs=dict(job.kwargs))
    else:
        entry = COMMAND_ENTRYPOINT
        params.update(argv=list(job.argv) if job.argv is not None else None, shell=job.shell, cwd=job.cwd,
                      ok_exit_codes=list(job.ok_exit_codes))
        for k, v in job.env.items():
            if is_secret_key(k) or redact_text(v) != v:
                warnings.append(f"{job.id}: env {k} carries a credential: not copied into the deployment "
                                f"(the flow reads it from the records store at run time)")
            else:
                env[k] = v
    return Desired(
        ingestion_id=job.id,
        mode=mode,
        name=deployment_name(job.id, mode),
        work_pool=ws.settings.prefect_work_pool,
        work_queue=WORK_QUEUE,
        tags=tags_for(job.id, mode) + [f"kind:{job.kind}"],
        parameters=params,
        entrypoint=entry,
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}],
        job_variables={"env": env},
        schedule=sched,
        schedule_text=text,
        parameter_schema=_schema(entry),
        paused_on_create=(mode == "live") if paused_on_create is None else paused_on_create,
        description=f"cutover: {job.kind} job {job.id} ({job.describe_target()}), {mode} mode"[:1000],
        warnings=warnings,
        flow_name=flow_name_of(job),
    )


def deploy_items(client, ws, items, mode: str, *, dry_run: bool = False, paused_on_create: bool | None = None,
                 allow_approx: bool = False) -> tuple[list[PlanItem], list[str]]:
    """Ingestions through :func:`flows.deploy.deploy`, then the team's jobs (sequential writes);
    (plan items, notes). A job Prefect does not run in ``mode`` gets a note, not a deployment.
    Every desired state is computed (and validated) before the first write."""
    kw = {"paused_on_create": paused_on_create, "allow_approx": allow_approx}
    jobs = [i for i in items if is_job(i)]
    notes = [f"{j.id}: no {mode} deployment: it is declared shadow: {j.shadow}, so Prefect does not run it in "
             f"shadow (parity compares its schedule and the legacy runs)" for j in jobs if not runs_in(j, mode)]
    wanted = [desired_job(ws, j, mode, **kw) for j in jobs if runs_in(j, mode)]
    out = D.deploy(client, ws, [i for i in items if not is_job(i)], mode, dry_run=dry_run, **kw)
    job_items = [D.plan_one(client, w) for w in wanted]
    if dry_run:
        return out + job_items, notes
    if any(it.action != "unchanged" for it in job_items):
        D.prepare(client, ws, job_items)
    flow_ids: dict[str, Any] = {}
    for it in job_items:
        name = it.desired.flow_name
        if it.action == "create" and name not in flow_ids:
            flow_ids[name] = client.create_flow_from_name(name)
        D.apply(client, it, flow_id=flow_ids.get(name))
        job = ws.jobs.get(it.ingestion_id)
        if it.deployment_id and (job.prefect_deployment_id, job.prefect_flow_id) != (it.deployment_id, it.flow_id):
            ws.jobs.set_prefect_ids(job.id, it.deployment_id, it.flow_id)
    return out + job_items, notes
