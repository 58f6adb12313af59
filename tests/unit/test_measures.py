"""The two renderings of every point-in-time predicate mean the same thing.

For random records (timestamps and dates at any hour, NULLs, deletions before and after the
view) and random view days, the SQL a predicate renders for a day bound (what the daily run
pushes down, on SQLite and PostgreSQL) selects exactly the records whose interval of counting
days (what the rebuild adds over) meets that bound.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
)

from customer_health.scoring.measures import (
    Facts,
    Known,
    Pending,
    Present,
    Where,
    Window,
    calendar_day,
    day_number,
    weekday,
)
from customer_health.scoring.signal_engine import read_frame
from customer_health.warehouse.engine import engine_for

probe_metadata = MetaData()
probe = Table(
    "measure_probe",
    probe_metadata,
    Column("id", Integer, primary_key=True),
    Column("stamp", DateTime),
    Column("day", Date),
    Column("kind", String(10)),
    Column("is_deleted", Boolean),
    Column("source_updated_at", DateTime),
)
BASE = date(2026, 3, 2)  # a Monday
BASE_DAY = day_number(BASE)

PREDICATES = {
    "known stamp": Known(probe.c.stamp),
    "known stamp or unknown": Known(probe.c.stamp, if_null=True),
    "known day": Known(probe.c.day),
    "stamp in 7 days": Window(probe.c.stamp, 7),
    "stamp in days 3 to 10 back": Window(probe.c.stamp, 10, skip=2),
    "day in 5 days": Window(probe.c.day, 5),
    "day in days 2 to 4 back": Window(probe.c.day, 4, skip=1),
    "stamp still pending": Pending(probe.c.stamp),
    "stamp pending or never": Pending(probe.c.stamp, if_null=True),
    "stamp pending or open": Pending(probe.c.stamp, if_null=Where(probe.c.kind == "open")),
    "present": Present(probe),
    "kind a": Where(probe.c.kind == "a"),
    "weekday": Where(weekday(probe.c.day)),
    "same day": Where(calendar_day(probe.c.stamp) <= probe.c.day),
}

_moments = st.one_of(
    st.none(),
    st.builds(
        lambda d, s: datetime.combine(BASE + timedelta(days=d), datetime.min.time()) + timedelta(seconds=s),
        st.integers(-15, 15), st.sampled_from([0, 1, 3600 * 12, 86_399]),
    ),
)  # fmt: skip
RECORDS = st.lists(
    st.tuples(
        _moments,
        st.one_of(st.none(), st.integers(-15, 15).map(lambda d: BASE + timedelta(days=d))),
        st.sampled_from(["a", "b", "open", None]),
        st.sampled_from([False, True, None]),
        _moments,
    ),
    min_size=1,
    max_size=25,
)


def _facts(engine) -> Facts:
    exprs = {id(e): e for p in PREDICATES.values() for e in p.reads()}
    labels = {key: f"c{i}" for i, key in enumerate(exprs)}
    stmt = select(probe.c.id, *[e.label(labels[k]) for k, e in exprs.items()]).order_by(probe.c.id)
    with engine.connect() as conn:
        raw = read_frame(conn, stmt)
    return Facts(raw, labels, np.zeros(len(raw), dtype=np.int64), np.zeros(1))


def _selected(engine, predicate, first: int, last: int) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(probe.c.id).where(predicate.condition(first, last, None))).scalars())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS, first=st.integers(-12, 12), length=st.integers(1, 6))
def test_sql_for_a_day_bound_selects_the_records_whose_counting_days_meet_it(warehouse_url, records, first, length):
    engine = engine_for(warehouse_url)
    probe_metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(delete(probe))
        conn.execute(insert(probe), [
            {"id": i, "stamp": s, "day": d, "kind": k, "is_deleted": x, "source_updated_at": u}
            for i, (s, d, k, x, u) in enumerate(records)
        ])  # fmt: skip
    facts = _facts(engine)
    ids = pd.to_numeric(facts.raw["id"]).to_numpy()
    lo_view, hi_view = BASE_DAY + first, BASE_DAY + first + length - 1
    for name, predicate in PREDICATES.items():
        lo, hi = predicate.days(facts)
        counting = {int(i) for i, a, b in zip(ids, lo, hi, strict=True) if max(a, lo_view) <= min(b, hi_view)}
        assert _selected(engine, predicate, lo_view, hi_view) == counting, (name, lo_view, hi_view)
        # and on each single day of the bound: exactly the daily run's rule
        for view in (lo_view, hi_view):
            exact = {int(i) for i, a, b in zip(ids, lo, hi, strict=True) if a <= view <= b}
            assert _selected(engine, predicate, view, view) == exact, (name, view)
