"""The typed models of definition and plan files (cutover/core/schema): one-line errors naming the
dotted path, the value and the fix; unknown fields at any depth suggest the nearest name; a plan
file of the wrong shape is refused before anything runs; the published JSON Schema and the field
tables of docs/definitions.md come from the same models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cutover.core.errors import InputError
from cutover.core.records.jobs import load_inventory_file
from tests.helpers import invoke_cli

from .conftest import store_dump

ROOT = Path(__file__).resolve().parents[2]


def _defs(tmp_path: Path, doc) -> Path:
    f = tmp_path / "defs.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def _ing(tmp_path: Path, **changes) -> dict:
    return {"id": "orders", "source_uri": str(tmp_path), "format": "csv", "table": "shop.orders", **changes}


def _refused(tmp_path: Path, doc) -> str:
    with pytest.raises(InputError) as e:
        load_inventory_file(_defs(tmp_path, doc))
    line = e.value.one_line()
    assert "\n" not in line and e.value.fix
    return line


@pytest.mark.parametrize("doc, words", [
    (lambda t: {"ingestions": [_ing(t), _ing(t, id="b", deploy={"cpu": {"cores": 2}})]},
     "defs.yaml: ingestions[1].deploy.cpu {'cores': 2} is dict, not a quantity"),
    (lambda t: {"ingestions": [_ing(t, values={"tolerances": {"amount": {"abs": "0.01"}}})]},
     "ingestions[0].values.tolerances.amount.abs '0.01' is str, not a number"),
    (lambda t: {"ingestions": [_ing(t, values={"tolerances": {"amount": {"rel": float("nan")}}})]},
     "ingestions[0].values.tolerances.amount.rel nan should be a finite number"),
    (lambda t: {"ingestions": [_ing(t, key_columns=["id", 7])]}, "ingestions[0].key_columns[1] 7 is int, not text"),
    (lambda t: {"ingestions": [_ing(t, deploy={"labels": {"team": ["a"]}})]},
     "ingestions[0].deploy.labels.team ['a'] is list, not text, a number or true/false"),
    (lambda t: {"jobs": [{"id": "j", "kind": "command", "argv": ["x"], "ok_exit_codes": [0, 300]}]},
     "jobs[0].ok_exit_codes[1] 300 should be less than or equal to 255"),
    (lambda t: {"jobs": [{"id": "j", "kind": "callable", "target": "a:b", "retries": "3"}]},
     "jobs[0].retries '3' is str, not a whole number"),
    (lambda t: [_ing(t), {"id": "j", "kind": "command", "shell": 5}], "defs.yaml: [1].shell 5 is int, not text"),
    (lambda t: {"ingestions": [_ing(t, kind="lambda")]}, "ingestions[0].kind 'lambda' is not a kind"),
    (lambda t: {"ingestions": [_ing(t, id=5)]}, "ingestions[0].id 5 is int, not text: write e.g. id: orders"),
])
def test_a_wrong_type_in_a_nested_field_names_its_dotted_path(tmp_path, doc, words):
    line = _refused(tmp_path, doc(tmp_path))
    assert words in line, line


def test_secret_values_are_masked_in_type_errors(tmp_path):
    line = _refused(tmp_path, {"ingestions": [_ing(tmp_path, credentials={"secret": "x"},
                                                   deploy={"env": {"TZ": ["hunter2-secret"]}})]})
    assert "ingestions[0].deploy.env.TZ '***'" in line and "hunter2" not in line
    line = _refused(tmp_path, {"jobs": [{"id": "j", "kind": "command", "argv": ["x"], "env": {"DB_PASSWORD": {"v": "pw-12.5"}}}]})
    assert "pw-12.5" not in line and "jobs[0].env.DB_PASSWORD" in line


@pytest.mark.parametrize("doc, path, nearest", [
    (lambda t: {"ingestions": [_ing(t, deploy={"imagee": "x"})]}, "ingestions[0].deploy.imagee", "image"),
    (lambda t: {"ingestions": [_ing(t, values={"tolerances": {"amount": {"abss": 1}}})]},
     "ingestions[0].values.tolerances.amount.abss", "abs"),
    (lambda t: {"ingestions": [_ing(t, values={"ignroe": ["a"]})]}, "ingestions[0].values.ignroe", "ignore"),
    (lambda t: {"ingestions": [_ing(t, sourc_uri="/x")]}, "ingestions[0].sourc_uri", "source_uri"),
    (lambda t: {"jobs": [{"id": "j", "kind": "command", "shel": "true"}]}, "jobs[0].shel", "shell"),
    (lambda t: {"ingestions": [_ing(t)], "job": []}, "job", "jobs"),
])
def test_an_unknown_nested_field_suggests_the_nearest_name(tmp_path, doc, path, nearest):
    line = _refused(tmp_path, doc(tmp_path))
    assert f"unknown field {path!r}" in line and f"did you mean {nearest!r}?" in line, line


def test_the_first_problem_wins_and_nothing_is_coerced(tmp_path):
    from cutover.core.records.ingestions import validate

    ing = validate(_ing(tmp_path, key_columns="a, b", deploy={"cpu": 2, "env": {"N": 3}}))
    assert ing.key_columns == ("a", "b") and ing.deploy == {"cpu": "2", "env": {"N": "3"}}
    with pytest.raises(InputError, match="source_uri 7 is int"):
        validate(_ing(tmp_path, source_uri=7))
    with pytest.raises(InputError, match=r"ingestion: format is missing: give it, e\.g\. format: csv"):
        validate({"id": "x", "source_uri": str(tmp_path), "table": "a.b"})
    with pytest.raises(InputError, match=r"ingestion: table is empty \(null\): give it, e\.g\. table: "):
        validate({"id": "x", "source_uri": str(tmp_path), "format": "csv", "table": None})


# -- plan files ---------------------------------------------------------------------------------

@pytest.fixture
def saved_plan(bench, tmp_path, capsys):
    env = bench.new("schema", plan=False)
    plan_file = tmp_path / "plan.json"
    code, out, err = invoke_cli(capsys, "plan", "--waves", "rest", "--gate", "streak>=0,no_open_waiver",
                                "--handoff-timeout", "5s", "--out", str(plan_file))
    assert code == 0, err
    return env, plan_file


def _forge(plan_file: Path, change) -> None:
    """Edit the plan AND recompute its digest (it has no secret): only the typed model stands in the way."""
    from cutover.engine.plan import digest_of

    d = json.loads(plan_file.read_text())
    change(d)
    content = {k: v for k, v in d.items() if k != "digest"}
    plan_file.write_text(json.dumps({**content, "digest": digest_of(content)}, indent=2))


@pytest.mark.parametrize("change, words", [
    (lambda d: d.__setitem__("handoff_timeout", "600"), "handoff_timeout '600' is str, not a number"),
    (lambda d: d["waves"][0]["moves"][0]["steps"][0].__setitem__("action", "rm_rf"),
     "waves[0].moves[0].steps[0].action 'rm_rf' should be 'fork_shadow', "),
    (lambda d: d["waves"][0]["moves"][0].__setitem__("to_state", "DONEE"), "waves[0].moves[0].to_state 'DONEE' should be"),
    (lambda d: d["waves"][0].__setitem__("number", True), "waves[0].number True is bool, not a whole number"),
    (lambda d: d["waves"][0]["moves"][0]["steps"][1].__setitem__("args", {"mdoe": "shadow"}),
     "unknown field 'waves[0].moves[0].steps[1].args.mdoe': did you mean 'mode'?"),
])
def test_a_plan_file_of_the_wrong_shape_is_one_line_exit_2_and_changes_nothing(saved_plan, capsys, change, words):
    env, plan_file = saved_plan
    _forge(plan_file, change)
    before = store_dump(env.home)
    for args in (["--dry-run"], ["--yes"]):
        code, out, err = invoke_cli(capsys, "execute", str(plan_file), *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
        assert words in lines[0] and str(plan_file) in lines[0] and "Traceback" not in err, lines[0]
        assert store_dump(env.home) == before
    assert env.calls_since() == {}


def test_the_saved_plan_passes_the_model(saved_plan):
    from cutover.core.schema import validated
    from cutover.core.schema.planfile import PlanFile

    _, plan_file = saved_plan
    validated(PlanFile, json.loads(plan_file.read_text()))


# -- the models, the code and the docs say the same --------------------------------------------

def test_the_models_name_the_fields_the_semantic_checks_read():
    from typing import get_args

    from cutover.core import deployspec
    from cutover.core.records import ingestions, jobs, valuespec
    from cutover.core.schema import definitions as D
    from cutover.core.schema.planfile import Action
    from cutover.engine.plan import ACTIONS

    assert set(D.IngestionDef.model_fields) - {"kind"} == ingestions.FIELDS
    assert tuple(D.DeployDef.model_fields) == deployspec.KEYS
    assert tuple(D.ValuesDef.model_fields) == valuespec.SPEC_FIELDS
    assert set(D.ToleranceDef.model_fields) == set(valuespec.Tolerance.__dataclass_fields__)
    assert set(D.CallableJobDef.model_fields) == jobs.FIELDS[jobs.CALLABLE]
    assert set(D.CommandJobDef.model_fields) == jobs.FIELDS[jobs.COMMAND]
    assert set(get_args(Action)) == set(ACTIONS)


def test_docs_definitions_lists_every_field_as_the_models_say():
    from cutover.core.schema import definitions as D

    doc = (ROOT / "docs" / "definitions.md").read_text()
    block = doc.split("<!-- fields:start -->\n", 1)[1].split("<!-- fields:end -->", 1)[0]
    assert block.strip() == D.fields_markdown().strip(), "regenerate with `cutover ingestion schema --markdown`"
    for model in (D.IngestionDef, D.DeployDef, D.ValuesDef, D.ToleranceDef, D.CallableJobDef, D.CommandJobDef):
        for name in model.model_fields:
            assert f"| `{name}` |" in block, (model.__name__, name)


def test_ingestion_schema_prints_the_json_schema_a_good_file_satisfies(tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    code, out, err = invoke_cli(capsys, "ingestion", "schema")
    assert code == 0, err
    schema = json.loads(out)
    assert set(schema["properties"]) == {"ingestions", "jobs"} and schema["additionalProperties"] is False
    code, out2, _ = invoke_cli(capsys, "ingestion", "schema", "--json")
    assert code == 0 and json.loads(out2) == schema
    good = {"ingestions": [_ing(tmp_path, deploy={"cpu": 2}, values={"key": "row"}),
                           {"id": "j", "kind": "command", "argv": ["true"], "ok_exit_codes": 3}]}
    jsonschema.validate(good, schema)
    load_inventory_file(_defs(tmp_path, good))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"ingestions": [_ing(tmp_path, id=5)]}, schema)
    code, out, _ = invoke_cli(capsys, "ingestion", "schema", "--plan")
    assert code == 0 and "waves" in json.loads(out)["properties"]


def test_commands_that_read_no_file_start_without_pydantic():
    for args in (["config", "show"], ["--help"]):
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "cutover", *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        mods = [ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")]
        assert mods and not [m for m in mods if m.split(".")[0] in ("pydantic", "pydantic_core")], args
        assert "cutover.core.schema" not in mods
