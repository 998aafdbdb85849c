"""``key=value`` overrides of pydantic configs, as given to ``--set`` on the command line and as
pipeline parameters. Values are read as YAML; dotted keys reach nested models and dict fields
(``launch.mode=ray``, ``extra_args.save_total_limit=2``); a config's ``FLAT_KEYS`` (flat alias →
dotted path) keeps short keys for nested settings (``max_turns=4`` = ``rollout_limits.max_turns=4``)."""

from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, Optional, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mini_o3.redact import MASK, is_secret_key, redact_text

Config = TypeVar("Config", bound=BaseModel)
#: YAML 1.1 reads "1e-5" as a string; such values are numbers here.
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(raw: str) -> Any:
    """A YAML scalar or flow value; "1e-5" becomes a float; unparsable text stays a string."""
    raw = raw.strip()
    if not raw:
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str) and _FLOAT.match(value):
        return float(value)
    return value


def describe_errors(exc: ValidationError) -> str:
    """One line per pydantic error: ``field.path: message (got value)``; the value of a field whose
    name says it holds a secret is masked, other values are redacted (``mini_o3.redact``)."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "config"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        if any(is_secret_key(str(part)) for part in error["loc"]):
            got = f" (got {MASK})"
        else:
            got = "" if isinstance(value, (dict, list)) else f" (got {redact_text(repr(value))})"
        lines.append(f"{where}: {message}{got}")
    return "; ".join(lines)


def apply_overrides(
    config: Config, assignments: Iterable[str], *, label: Optional[str] = None, unknown_hint: str = ""
) -> Config:
    """A copy of ``config`` with each ``key=value`` applied and the whole model re-validated.

    ``label`` names the settings in errors (default: the model's name); ``unknown_hint`` is
    appended to the error for an unknown key.
    """
    root = type(config)
    label = label or f"{root.__name__} setting"
    aliases: dict[str, str] = getattr(root, "FLAT_KEYS", {})
    assignments = list(assignments)
    data = config.model_dump()
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {assignment!r} must look like key=value")
        _assign(data, root, aliases.get(key, key), parse_value(raw), label, unknown_hint, shown=key)
    try:
        return root.model_validate(data)
    except ValidationError as exc:
        shown = redact_text(", ".join(assignments))
        raise ValueError(f"invalid override ({shown}): {describe_errors(exc)}") from exc


def _assign(data: dict[str, Any], root: type[BaseModel], key: str, value: Any, label: str, hint: str,
            shown: str = "") -> None:
    """Set ``data[key path]``: model fields must exist; free-form dict fields nest freely.
    ``shown``: the key as the user wrote it (a flat alias of ``key``), for messages."""
    path = key.split(".")
    model: Optional[type[BaseModel]] = root
    node = data
    for i, part in enumerate(path):
        sub_model = None
        if model is not None:
            field = model.model_fields.get(part)
            if field is None:
                raise ValueError(_unknown(shown or key, part, model, label, hint))
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                sub_model = annotation
        if i == len(path) - 1:
            node[part] = value
            return
        if model is not None and sub_model is None and not isinstance(node.get(part), dict):
            raise ValueError(f"{label} {'.'.join(path[: i + 1])!r} is not a mapping; cannot set {key!r}")
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, dict) else {}
        node, model = child, sub_model


def _unknown(key: str, name: str, model: type[BaseModel], label: str, hint: str) -> str:
    close = difflib.get_close_matches(name, [*model.model_fields, *getattr(model, "FLAT_KEYS", {})], n=3)
    suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown {label} {key!r}: {name!r} is not a field of {model.__name__}{suggestion}" + (f"; {hint}" if hint else "")


# -- composing override lists ------------------------------------------------------------------


def override_key(assignment: str) -> str:
    """The key of ``key=value`` (stripped), or the whole item when it has no ``=``."""
    return assignment.partition("=")[0].strip()


def merge_overrides(defaults: Iterable[str], extra: Iterable[str]) -> list[str]:
    """``extra`` added to ``defaults``: a key ``extra`` sets replaces the default's item, every other
    default stays (applied in order, the result means the same as ``defaults + extra``)."""
    extra = list(extra)
    given = {override_key(item) for item in extra}
    return [item for item in defaults if override_key(item) not in given] + extra


def is_override_list(name: str) -> bool:
    """Pipeline parameters holding ``key=value`` lists (``p4_eval_overrides``, ``p1_data_synthetic``)."""
    return name.endswith("_overrides") or name.endswith("_synthetic")


def compose_params(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Pipeline parameters ``given`` on top of ``defaults``: override lists (``is_override_list``)
    are merged (``merge_overrides``), so ``--param eval_overrides=[limit=2]`` keeps an embedded
    run's tiny turn / token / pixel settings; any other parameter is replaced."""
    out = dict(defaults)
    for name, value in given.items():
        base = defaults.get(name)
        if is_override_list(name) and isinstance(base, list) and isinstance(value, (list, tuple)):
            out[name] = merge_overrides(base, [str(v) for v in value])
        else:
            out[name] = value
    return out
