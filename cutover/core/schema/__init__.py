"""Typed models of the files users give cutover (definition files, plan files), and the one
translation of a pydantic error into cutover's one-line :class:`~cutover.core.errors.InputError`.

pydantic checks the shape: types (strict: ``id: 5`` is refused, never turned into ``"5"``), unknown
fields (``extra="forbid"``), finite numbers and bounds. The meaning (id and table patterns,
schedules, timezones, deploy and values rules) is checked after, on the validated data, by the
modules that own it (``cutover.core.records.ingestions`` ...).

This package imports pydantic: the modules that read a definition or a plan file import it in the
function that reads one, so the commands that read none (``cutover config show``, ``status``,
``--help``) start without pydantic (bench/schema_import_bench.py measures it).
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Annotated, Any, Iterable, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter, ValidationError

from cutover.core.errors import InputError
from cutover.core.redact import MASK, is_secret_key
from cutover.core.validate import did_you_mean, show


class Strict(BaseModel):
    """Every model of a user's file: unknown fields refused, no coercion, finite numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def either(what: str, **members: Any) -> Any:
    """A union picked by the Python type of the value (``text=str, list=list[str]``): one error
    naming what is wanted (``what``) when no member fits, and the member's own error when one does.
    Each member is ``(type, isinstance-check)`` or a type whose origin the check uses."""
    checks = {}
    ann = []
    for tag, spec in members.items():
        tp, kinds = spec if isinstance(spec, tuple) else (spec, typing.get_origin(spec) or spec)
        checks[tag] = kinds
        ann.append(Annotated[tp, Tag(tag)])

    def pick(v: Any) -> str | None:
        for tag, kinds in checks.items():
            if isinstance(v, kinds) and not (isinstance(v, bool) and bool not in _flat(kinds)):
                return tag
        return None

    return Annotated[Union[tuple(ann)], Discriminator(pick, custom_error_type="either_type",
                                                      custom_error_message=what)]


def _flat(kinds) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


# -- from a pydantic error to one line ---------------------------------------------------------

_WANT = {
    "string_type": "text", "int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
    "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "int_from_float": "a whole number", "none_required": "null",
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_FIELDS = {"credentials", "env"}


def dotted(parts: Iterable[Any]) -> str:
    """``('ingestions', 2, 'deploy', 'cpu')`` -> ``ingestions[2].deploy.cpu``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENT.match(str(p)):
            out += f".{p}" if out else str(p)
        else:
            out += f"[{str(p)!r}]"
    return out


def _strip(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> X (a tagged union is kept)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _tags(tp: Any) -> dict[str, Any]:
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return {}
    out = {}
    for m in typing.get_args(tp):
        if typing.get_origin(m) is Annotated:
            for meta in m.__metadata__:
                if isinstance(meta, Tag):
                    out[meta.tag] = typing.get_args(m)[0]
    return out


def walk(model: Any, loc: tuple) -> tuple[list, type[BaseModel] | None, str, Any, Any]:
    """The user's path of a pydantic error location (union tags dropped), the model that holds the
    last field on it, that field's name and FieldInfo (None for an unknown field), and the type
    expected at the end of the path."""
    parts: list = []
    owner, name, field = None, "", None
    tp: Any = model
    for el in loc:
        tp = _strip(tp)
        tags = _tags(tp)
        if tags and el in tags:
            tp = tags[el]
            continue
        parts.append(el)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            owner, name, field = tp, str(el), tp.model_fields.get(el) if isinstance(el, str) else None
            tp = field.annotation if field is not None else Any
        elif typing.get_origin(tp) in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            tp = Any
    return parts, owner, name, field, _strip(tp)


def _is_mapping_model(tp: Any) -> bool:
    """A model, or a tagged union of models (a definition item of any kind)."""
    members = list(_tags(tp).values()) or [tp]
    return all(isinstance(m, type) and issubclass(m, BaseModel) for m in members)


def example_of(name: str, field: Any) -> str | None:
    """``name: <example>`` from the field's first example (JSON, which YAML reads too)."""
    ex = getattr(field, "examples", None)
    if not ex:
        return None
    v = ex[0]
    return f"{name}: {v if isinstance(v, str) and _IDENT.match(v) else json.dumps(v)}"


def input_error(exc: ValidationError, model: Any, *, where: str = "", at: Iterable[Any] = (),
                root: str = "a mapping") -> InputError:
    """The first problem of ``exc`` (from ``model.model_validate``) as one line: where (file, path
    such as ``ingestions[2].deploy.cpu``), the value (secrets masked, cut short), the problem, the fix
    (for an unknown field the nearest valid name)."""
    e = exc.errors(include_url=False)[0]
    parts, owner, name, field, tp = walk(model, tuple(e["loc"]))
    path = dotted([*at, *parts])
    head = f"{where}: " if where else ""
    value = e.get("input")
    secret = any(isinstance(p, str) and (p in _SECRET_FIELDS or is_secret_key(p)) for p in parts)
    shown = repr(MASK) if secret and value is not None else show(value)
    kind = e["type"]
    if kind == "extra_forbidden":
        valid = list(owner.model_fields) if owner is not None else []
        return InputError(f"{head}unknown field {path!r}", fix=did_you_mean(name, valid, valid="valid fields are"))
    if kind == "kind_type":  # a definition item whose kind is none of the kinds
        k = value.get("kind") if isinstance(value, dict) else value
        return InputError(f"{head}{dotted([*at, *parts, 'kind'])} {show(k)} is not a kind of definition",
                          fix="use kind: ingestion (the default), callable or command")
    example = example_of(name, field) if field is not None else None
    if kind == "missing" or (kind in _WANT and value is None and parts):
        what = "missing" if kind == "missing" else "empty (null)"
        return InputError(f"{head}{path} is {what}", fix=f"give it, e.g. {example}" if example else f"give {name}")
    if kind in _WANT and (not parts or _is_mapping_model(tp)):
        return InputError(f"{head}{path + ' ' if path else ''}{shown} is {type(value).__name__}, "
                          f"not {root if not parts else 'a mapping'}", fix="write it as key: value pairs")
    if kind in _WANT or kind == "either_type":
        want = e["msg"] if kind == "either_type" else _WANT[kind]
        return InputError(f"{head}{path} {shown} is {type(value).__name__}, not {want}",
                          fix=f"write e.g. {example}" if example else f"give {want}")
    msg = e["msg"]
    msg = re.sub(r"^Input should", "should", msg)
    msg = msg[0].lower() + msg[1:] if msg else kind
    return InputError(f"{head}{path} {shown} {msg}", fix=f"e.g. {example}" if example else "fix the value")


_ADAPTERS: dict[Any, TypeAdapter] = {}


def validated(model: Any, data: Any, *, where: str = "", at: Iterable[Any] = (), root: str = "a mapping") -> Any:
    """``data`` validated by ``model`` (a model class, or a type such as ``list[DefinitionItem]``),
    or the one-line InputError of its first problem."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        if model not in _ADAPTERS:
            _ADAPTERS[model] = TypeAdapter(model)
        return _ADAPTERS[model].validate_python(data)
    except ValidationError as e:
        raise input_error(e, model, where=where, at=at, root=root) from None
