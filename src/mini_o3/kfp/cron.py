"""Cron expressions for KFP recurring runs.

The KFP ScheduledWorkflow controller parses with robfig/cron v1 (``cron.Parse``): six fields,
**seconds first** (``sec min hour dom month dow``), or a descriptor (``@daily``, ``@every 1h``).
A plain 5-field crontab line given to KFP is silently misread (``"0 3 * * *"`` = second 0, minute 3,
every hour), so ``to_kfp_cron`` converts the usual 5-field form by prepending ``0`` seconds.

``next_fire_times`` is a small evaluator of that syntax (lists, ranges, steps, month / weekday
names, ``?``, ``*``; day-of-month and day-of-week are OR-ed when both are restricted, as in
robfig/cron) so the CLI can show when a schedule fires before creating it. Times are naive
wall-clock times in the controller's timezone (``CRON_SCHEDULE_TIMEZONE``, default its local time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

#: (name, low, high) of the six fields.
FIELDS: tuple[tuple[str, int, int], ...] = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
)
MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
WEEKDAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
#: robfig/cron v1 descriptors (6-field equivalents).
DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_EVERY = re.compile(r"^@every\s+((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Schedule:
    """A parsed 6-field expression: the allowed values of every field."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool  # day-of-month given as * or ?
    dow_star: bool  # day-of-week given as * or ?

    def day_matches(self, day: datetime) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python: Monday=0; cron: Sunday=0
        dom, dow = day.day in self.days, weekday in self.weekdays
        if self.dom_star or self.dow_star:  # robfig: AND when either is a star, else OR
            return dom and dow
        return dom or dow


def to_kfp_cron(expr: str) -> str:
    """The KFP (robfig v1, seconds-first) form of ``expr``.

    5 fields → ``"0 " + expr``; 6 fields are validated and kept; ``@daily``-style descriptors and
    ``@every <duration>`` are kept. Anything else raises ``ValueError`` naming the field and why.
    """
    text = " ".join(str(expr).split())
    if not text:
        raise ValueError("cron expression is empty; give 5 fields (min hour dom month dow), 6 (seconds first) or @daily")
    if text.startswith("@"):
        if text in DESCRIPTORS:
            return text
        if text.startswith("@every"):
            every_seconds(text)
            return text
        raise ValueError(f"cron expression {expr!r}: unknown descriptor; expected one of {', '.join(DESCRIPTORS)} or @every <duration>")
    fields = text.split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise ValueError(
            f"cron expression {expr!r} has {len(fields)} fields; expected 5 (minute hour day-of-month month day-of-week) "
            "or 6 (second first, KFP's form)"
        )
    result = " ".join(fields)
    parse(result)
    return result


def every_seconds(expr: str) -> float:
    """Seconds of an ``@every <Go duration>`` descriptor (``1h30m``, ``90s``; at least 1 s)."""
    match = _EVERY.match(expr.strip())
    if not match:
        raise ValueError(f"cron expression {expr!r}: @every needs a Go duration such as 1h, 30m or 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(match.group(1)))
    if seconds < 1:
        raise ValueError(f"cron expression {expr!r}: @every interval must be at least 1s")
    return seconds


def parse(expr: str) -> Schedule:
    """Parse a 6-field expression or a descriptor (not ``@every``) into a ``Schedule``."""
    text = DESCRIPTORS.get(expr.strip(), expr.strip())
    fields = text.split()
    if len(fields) != 6:
        raise ValueError(f"cron expression {expr!r} has {len(fields)} fields; the KFP form has 6 (second first)")
    values = [_field(raw, *spec) for raw, spec in zip(fields, FIELDS)]
    return Schedule(*values, dom_star=fields[3] in ("*", "?"), dow_star=fields[5] in ("*", "?"))


def _field(raw: str, name: str, low: int, high: int) -> frozenset[int]:
    if raw == "?" and name not in ("day-of-month", "day-of-week"):
        raise ValueError(f"cron field {name} {raw!r}: '?' is only allowed in day-of-month and day-of-week")
    out: set[int] = set()
    for part in raw.split(","):
        if not part:
            raise ValueError(f"cron field {name} {raw!r}: empty list item")
        base, _, step_text = part.partition("/")
        step = 1
        if _:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"cron field {name} {raw!r}: step {step_text!r} must be a positive integer")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = _value(a, name, low, high, raw), _value(b, name, low, high, raw)
            if start > end:
                raise ValueError(f"cron field {name} {raw!r}: range {base!r} runs backwards")
        else:
            start = _value(base, name, low, high, raw)
            end = high if _ else start  # robfig: "N/step" runs from N to the field's maximum
        out.update(range(start, end + 1, step))
    return frozenset(out)


def _value(text: str, name: str, low: int, high: int, raw: str) -> int:
    names = MONTHS if name == "month" else WEEKDAYS if name == "day-of-week" else {}
    key = text.upper()
    if key in names:
        return names[key]
    if not text.isdigit():
        hint = f" (or a name: {', '.join(names)})" if names else ""
        raise ValueError(f"cron field {name} {raw!r}: {text!r} is not a number{hint}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"cron field {name} {raw!r}: {value} is outside {low}-{high}")
    return value


def next_fire_times(kfp_expr: str, n: int = 3, start: datetime | None = None) -> list[datetime]:
    """The next ``n`` times after ``start`` (default: now, naive local time) that ``kfp_expr`` fires."""
    start = (start or datetime.now()).replace(microsecond=0)
    text = kfp_expr.strip()
    if text.startswith("@every"):
        step = timedelta(seconds=every_seconds(text))
        return [start + step * (i + 1) for i in range(n)]
    schedule = parse(text)
    times: list[datetime] = []
    t = start + timedelta(seconds=1)
    limit = start + timedelta(days=5 * 366)
    while len(times) < n:
        t = _next(schedule, t, limit, kfp_expr)
        times.append(t)
        t += timedelta(seconds=1)
    return times


def _next(s: Schedule, t: datetime, limit: datetime, expr: str) -> datetime:
    """The first time >= ``t`` that matches (field-by-field carry, like robfig's ``Next``)."""
    while t <= limit:
        if t.month not in s.months:
            t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            continue
        if not s.day_matches(t):
            t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            continue
        if t.hour not in s.hours:
            t = t.replace(minute=0, second=0) + timedelta(hours=1)
            continue
        if t.minute not in s.minutes:
            t = t.replace(second=0) + timedelta(minutes=1)
            continue
        if t.second not in s.seconds:
            t += timedelta(seconds=1)
            continue
        return t
    raise ValueError(f"cron expression {expr!r} never fires within 5 years (e.g. 30 February)")
