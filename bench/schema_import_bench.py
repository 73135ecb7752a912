"""What the typed models (pydantic, cutover/core/schema) cost, and where.

Same run, same interpreter, RUNS processes each (medians, wall time spawn to exit), on a fresh
empty CUTOVER_HOME:

- ``python -c pass`` (the baseline);
- ``cutover config show`` as shipped (pydantic is not imported: the schema loads only where a
  definition or plan file is read);
- ``cutover config show`` with the definition models (and so pydantic) imported first (what every
  command would pay if the schema were on the start path);
- in a fresh process: the import of pydantic, then of cutover's models on top of it;
- in-process: validating a definition file of N ingestions (``load_inventory_file``: model + the
  semantic checks) and the model part alone.

Last line: ``schema-import: config show A ms, with models B ms (+C ms, ratio D×), python E ms,
pydantic on start path: no, import pydantic P ms + models M ms, N-item file F ms (model G ms)``.

    .venv/bin/python bench/schema_import_bench.py --runs 11 --items 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # this checkout's cutover, for the in-process part (subprocesses run with cwd=ROOT)
    sys.path.insert(0, str(ROOT))


def timed(argv: list[str], env: dict, runs: int) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def on_start_path(env: dict) -> bool:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "cutover", "config", "show"], env=env, cwd=ROOT,
                       capture_output=True, text=True, check=False)
    return any(ln.rsplit("|", 1)[-1].strip().startswith("pydantic") for ln in p.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--items", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}, "CUTOVER_HOME": f"{tmp}/home"}
        py = timed([sys.executable, "-c", "pass"], env, a.runs)
        plain = timed([sys.executable, "-m", "cutover", "config", "show"], env, a.runs)
        forced = timed([sys.executable, "-c", "import sys, runpy; import cutover.core.schema.definitions; "
                        "sys.argv = ['cutover', 'config', 'show']; runpy.run_module('cutover', run_name='__main__')"],
                       env, a.runs)
        split = []  # in a fresh process: pydantic itself, then cutover's models on top of it
        for _ in range(a.runs):
            p = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import pydantic.main; "
                                "u = time.perf_counter(); import cutover.core.schema.definitions; "
                                "print((u - t) * 1000, (time.perf_counter() - u) * 1000)"],
                               env=env, cwd=ROOT, capture_output=True, text=True, check=True)
            split.append(tuple(map(float, p.stdout.split())))
        pyd_ms = statistics.median(x[0] for x in split)
        models_ms = statistics.median(x[1] for x in split)
        loaded = on_start_path(env)

        import yaml

        from cutover.core.records.jobs import load_inventory_file
        from cutover.core.schema import validated
        from cutover.core.schema.definitions import DefinitionFile

        src = Path(tmp, "src")
        src.mkdir()
        doc = {"ingestions": [{"id": f"i{k:04d}", "source_uri": str(src), "format": "csv", "table": f"ns.t{k}",
                               "schedule": {"frequency": "daily", "at": "02:30"}, "timezone": "Europe/Berlin",
                               "key_columns": ["id"], "deploy": {"cpu": "500m", "memory": "1Gi"},
                               "values": {"tolerances": {"amount": {"abs": 0.01}}}} for k in range(a.items)]}
        f = Path(tmp, "defs.yaml")
        f.write_text(yaml.safe_dump(doc))
        whole, model = [], []
        for _ in range(5):
            t = time.perf_counter()
            load_inventory_file(f)
            whole.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            validated(DefinitionFile, doc)
            model.append((time.perf_counter() - t) * 1000)
    print(f"{'python -c pass':<34}{py:8.0f} ms")
    print(f"{'cutover config show':<34}{plain:8.0f} ms")
    print(f"{'config show, models imported':<34}{forced:8.0f} ms")
    print(f"{'import pydantic (in process)':<34}{pyd_ms:8.0f} ms")
    print(f"{'then cutover.core.schema models':<34}{models_ms:8.0f} ms")
    print(f"{f'{a.items}-item file (model+checks)':<34}{statistics.median(whole):8.1f} ms")
    print(f"{f'{a.items}-item file (model only)':<34}{statistics.median(model):8.1f} ms")
    print(f"schema-import: config show {plain:.0f} ms, with models {forced:.0f} ms (+{forced - plain:.0f} ms, ratio "
          f"{forced / plain:.2f}×), python {py:.0f} ms, pydantic on start path: {'yes' if loaded else 'no'}, "
          f"import pydantic {pyd_ms:.0f} ms + models {models_ms:.0f} ms, "
          f"{a.items}-item file {statistics.median(whole):.1f} ms (model {statistics.median(model):.1f} ms)")


if __name__ == "__main__":
    main()
