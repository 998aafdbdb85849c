"""Secret redaction for everything a run writes (reports, samples, viewer, MLflow, logs, console).

A value is secret when its key names a secret (``api_key``, ``token``, ``secret``, ``password``,
``authorization``, ...; ``tokens`` is a count and ``*_env`` holds an environment variable NAME,
both kept), or when it is the password of a URL (``http://user:KEY@host``). Text is scrubbed of
URL passwords, ``Bearer``/``Basic`` credentials and ``key=value`` / ``key: value`` pairs whose key
names a secret, so override lists and exception messages are safe to print.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: What replaces a secret.
MASK = "***"
_SECRET_WORD = (r"(?:api[_-]?key|apikey|access[_-]?key|private[_-]?key|secret|passw(?:or)?d|passwd|authorization"
                r"|credentials?|auth(?![a-z])|bearer|token(?![a-z]))")
#: A key naming a secret (``max_tokens``, ``tokenizer``, ``answer_key`` and ``*_env`` are not).
SECRET_KEY = re.compile(_SECRET_WORD, re.IGNORECASE)
_ENV_NAME = re.compile(r"_env(_var)?$", re.IGNORECASE)
#: ``scheme://user:PASSWORD@`` or ``scheme://TOKEN@`` in any text.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*)(?::[^/@\s]*)?@")
_AUTH_HEADER = re.compile(r"(?P<kind>\b(?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE)
#: ``key=value``, ``key: value``, ``"key": "value"``, ``'key': 'value'`` with a secret-naming key.
_PAIR = re.compile(
    r"(?P<key>[\"']?[\w.-]*" + _SECRET_WORD + r"[\w.-]*[\"']?\s*(?:=|:)\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&}\]\)\"']+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """True when a value stored under ``key`` is a credential (``api_key_env`` names one: False)."""
    key = str(key)
    return bool(SECRET_KEY.search(key)) and not _ENV_NAME.search(key)


def redact_url(url: str) -> str:
    """``url`` without the password of its user-info (``http://u:***@h``; a bare token: ``***@h``)."""
    return _URL_USERINFO.sub(_userinfo, url)


def _userinfo(match: re.Match[str]) -> str:
    whole = match.group(0)
    user = match.group("user")
    if ":" in whole[len(match.group("scheme")):]:
        return f"{match.group('scheme')}{user}:{MASK}@"
    return f"{match.group('scheme')}{MASK}@"


def _pair(match: re.Match[str]) -> str:
    key = match.group("key")
    name = key.strip().strip("\"'").rstrip("=: \t\"'")
    if not is_secret_key(name) or match.group("value") in ('""', "''"):
        return match.group(0)
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{key}{quote}{MASK}{quote}"


def redact_text(text: str) -> str:
    """``text`` with URL passwords, auth-header credentials and secret ``key=value`` pairs masked."""
    if not isinstance(text, str) or not text:
        return text
    text = redact_url(text)
    text = _AUTH_HEADER.sub(lambda m: m.group("kind") + MASK, text)
    return _PAIR.sub(_pair, text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` (mappings, lists, tuples, strings, pydantic models) with every secret
    masked: values under a secret-naming key become ``***`` (empty / None ones are kept, so a
    report still says a key was not set), strings go through ``redact_text``."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if key and is_secret_key(key) and value not in (None, "", {}, []):
        if isinstance(value, Mapping):
            return {k: redact(v, key) for k, v in value.items()}
        return MASK
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
