"""Cron conversion to KFP's seconds-first form and the fire-time evaluator."""

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mini_o3.kfp.cron import next_fire_times, parse, to_kfp_cron

START = datetime(2026, 11, 24, 17, 30, 15)  # a Tuesday


@pytest.mark.parametrize(
    ("given_expr", "kfp"),
    [
        ("0 3 * * *", "0 0 3 * * *"),
        ("  */15  * * * MON-FRI ", "0 */15 * * * MON-FRI"),
        ("0 0 9 ? * 2-6", "0 0 9 ? * 2-6"),
        ("@daily", "@daily"),
        ("@every 1h30m", "@every 1h30m"),
    ],
)
def test_conversion(given_expr, kfp):
    assert to_kfp_cron(given_expr) == kfp


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty"),
        ("* * * *", "has 4 fields"),
        ("0 0 0 0 * * *", "has 7 fields"),
        ("61 * * * *", "cron field minute '61': 61 is outside 0-59"),
        ("0 25 * * *", "hour '25': 25 is outside 0-23"),
        ("0 3 * FOO *", "month 'FOO': 'FOO' is not a number (or a name: JAN"),
        ("0 3 * * 7", "day-of-week '7': 7 is outside 0-6"),
        ("*/0 * * * *", "step '0' must be a positive integer"),
        ("5-1 * * * *", "range '5-1' runs backwards"),
        ("? * * * *", "'?' is only allowed in day-of-month"),
        ("@sometimes", "unknown descriptor"),
        ("@every soon", "Go duration"),
    ],
)
def test_bad_expressions_name_the_field(expr, message):
    with pytest.raises(ValueError, match="cron") as caught:
        to_kfp_cron(expr)
    assert message in str(caught.value)


def test_next_three_fire_times():
    assert next_fire_times(to_kfp_cron("0 3 * * *"), 3, START) == [
        datetime(2026, 11, 25, 3), datetime(2026, 11, 26, 3), datetime(2026, 11, 27, 3)]
    # weekdays only, by name: Tue 24 (after 17:30) → Wed, Thu, Fri at 09:00
    assert next_fire_times("0 0 9 * * MON-FRI", 3, START) == [
        datetime(2026, 11, 25, 9), datetime(2026, 11, 26, 9), datetime(2026, 11, 27, 9)]
    assert next_fire_times("0 0 9 * * MON-FRI", 2, datetime(2026, 11, 27, 10))[1] == datetime(2026, 12, 1, 9)
    # seconds field, steps, lists
    assert next_fire_times("*/20 31 17 * * *", 3, START) == [
        datetime(2026, 11, 24, 17, 31, 0), datetime(2026, 11, 24, 17, 31, 20), datetime(2026, 11, 24, 17, 31, 40)]
    assert next_fire_times("@monthly", 2, START) == [datetime(2026, 12, 1), datetime(2027, 1, 1)]
    assert next_fire_times("@every 90m", 2, START) == [START + timedelta(minutes=90), START + timedelta(minutes=180)]
    # leap day
    assert next_fire_times("0 0 12 29 FEB *", 1, START) == [datetime(2028, 2, 29, 12)]
    # "N/step" runs from N to the field's end (robfig)
    assert next_fire_times("0 50/5 17 * * *", 2, START) == [datetime(2026, 11, 24, 17, 50), datetime(2026, 11, 24, 17, 55)]


def test_day_of_month_and_weekday_are_ored_when_both_restricted():
    # 1st of the month OR any Monday (robfig / Vixie cron rule)
    times = next_fire_times("0 0 0 1 * MON", 4, START)
    assert times == [datetime(2026, 11, 30), datetime(2026, 12, 1), datetime(2026, 12, 7), datetime(2026, 12, 14)]
    # with a star in one of them it is AND (only the restricted one matters)
    assert next_fire_times("0 0 0 ? * MON", 1, START) == [datetime(2026, 11, 30)]


def test_never_firing_expression_is_an_error():
    with pytest.raises(ValueError, match="never fires"):
        next_fire_times("0 0 0 30 2 *", 1, START)


def _brute(expr: str, start: datetime) -> datetime | None:
    s = parse(expr)
    t = start.replace(second=0) + timedelta(minutes=1)
    for _ in range(60 * 24 * 40):
        if t.month in s.months and s.day_matches(t) and t.hour in s.hours and t.minute in s.minutes:
            return t
        t += timedelta(minutes=1)
    return None


def _field(low, high):
    item = st.one_of(
        st.integers(low, high).map(str),
        st.tuples(st.integers(low, high), st.integers(low, high)).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.integers(1, 7).map(lambda k: f"*/{k}"),
    )
    return st.one_of(st.just("*"), st.lists(item, min_size=1, max_size=3).map(",".join))


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(_field(0, 59), _field(0, 23), _field(1, 31), _field(1, 12), _field(0, 6),
       st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)))
def test_evaluator_matches_brute_force(minute, hour, dom, month, dow, start):
    expr = to_kfp_cron(f"{minute} {hour} {dom} {month} {dow}")
    start = start.replace(microsecond=0, second=0)
    expected = _brute(expr, start)
    if expected is not None:
        assert next_fire_times(expr, 1, start)[0] == expected
