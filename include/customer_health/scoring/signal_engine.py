"""Evaluates signal definitions: for one date with SQL push-down, or for a range of dates at once.

The definitions (``scoring/signals.py``) say *what* each signal is: measures over facts
(``scoring/measures.py``) and one formula. This module says *how* to evaluate them, two ways
that give the same frame for a date:

* ``signals_at(engine, D)`` - the daily run and the refresh. Every measure is pushed down to the
  warehouse: one ``GROUP BY account`` query per source (the sums, counts, distinct counts and
  latest dates of all its measures as ``CASE`` columns), one query per median, one per group of
  "latest record" measures. Python sees one row per account per query.
* ``iter_signal_chunks(engine, first, last)`` - history rebuilds. Each source's records that can
  count on some date of the range are read once, and every predicate becomes an interval of view
  days per record (``Predicate.days``). A chunk of dates is then evaluated at once on an
  (account x date) grid: counts and sums by adding each record over its interval (difference
  arrays), latest values by a running maximum, medians over the (record, date) pairs.

Both then build the frame with the same code (``_assemble``): who is a customer at D, seats
and ARR, every signal's formula, NULL where a required system is not connected or the tenure
is too short. A date of a range equals the date computed alone: ``tests/unit/test_signals.py``
and the empty-source property test hold the two evaluations equal, on SQLite and PostgreSQL.

Known difference: when two records tie on their ordering stamp (two invoices of one
subscription created in the same microsecond, two NPS answers of one contact at the same
instant), SQL breaks the tie by ``id`` in the database's collation, the range evaluation by
``id`` in code-point order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    Numeric,
    Select,
    String,
    and_,
    cast,
    func,
    or_,
    select,
    true,
    type_coerce,
)

from customer_health.scoring.measures import (
    Count,
    Distinct,
    Facts,
    Known,
    Latest,
    Max,
    Measure,
    Median,
    Present,
    Scope,
    Source,
    Sum,
    Window,
    counting_days,
    day_number,
    day_numbers,
    day_of,
    reduce_lines,
)
from customer_health.scoring.signal_definition import Inputs, Signal, check_definitions
from customer_health.sources.roster import roster_table as account_roster
from customer_health.warehouse.raw_schema import account_crosswalk

ACCOUNT_COLUMNS: tuple[str, ...] = (
    "account_key",
    "as_of_date",
    "plan",
    "seats",
    "arr",
    "customer_since",
    "tenure_days",
    "parent_account_key",
    "owner_id",
)
"""The columns before the signals, in order."""

DEFAULT_CHUNK_DAYS = 31
# Longer key lists are filtered in pandas: SQLite caps bound parameters per statement at 32766.
_MAX_KEYS_IN_SQL = 10_000


@dataclass(frozen=True)
class AccountContext:
    """Who is a customer at D, and the seats and ARR of the contract (declared in
    ``scoring/signals.py``).

    An account (a live ``raw_sf_account`` row) is a customer at D when ``customer_since <= D``
    and it has not churned: it has churned when ``subscriptions_ended`` > 0 and
    ``subscriptions_live`` == 0. Seats and ARR come from ``contract_seats`` / ``contract_arr``
    when positive, else from the Account's own fields.
    """

    subscriptions_ended: Measure
    subscriptions_live: Measure
    contract_seats: Measure
    contract_arr: Measure

    @property
    def measures(self) -> tuple[Measure, ...]:
        """The measures the context reads."""
        return (self.subscriptions_ended, self.subscriptions_live, self.contract_seats, self.contract_arr)


def _roster(table: Any) -> tuple:
    """An account can be a customer at D from its customer_since, while its record exists."""
    return (Known(table.c.customer_since), Present(table))


def _attributes(accounts: Any, table: Any) -> Select:
    """The account attributes the frame carries (current values), for the accounts ``accounts`` of the
    roster ``table``."""
    cw = account_crosswalk
    return select(
        table.c.id.label("account_key"),
        table.c.plan,
        table.c.seats.label("sf_seats"),
        table.c.arr.label("sf_arr"),
        table.c.customer_since,
        func.coalesce(cw.c.parent_account_key, table.c.parent_id).label("parent_account_key"),
        table.c.owner_id,
    ).select_from(accounts.outerjoin(cw, cw.c.account_key == table.c.id))


# --------------------------------------------------------------------------- reading
def read_frame(conn: Any, stmt: Select) -> pd.DataFrame:
    """Run ``stmt`` into a frame of objects, column by column, from the driver's own rows.

    On SQLite, dates and timestamps come back as their stored ISO text (SQLAlchemy would parse
    each value in Python; the readers here convert whole columns at once).
    """
    if conn.dialect.name == "sqlite":
        stmt = stmt.with_only_columns(
            *[
                type_coerce(c, String).label(c.name) if isinstance(c.type, Date | DateTime) else c
                for c in stmt.selected_columns
            ]
        )
    result = conn.execute(stmt)
    keys = list(result.keys())
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in keys]
    return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in zip(keys, columns, strict=True)})


def _needed(context: AccountContext, definitions: Sequence[Signal]) -> list[Measure]:
    """Every measure the context and the definitions read, once each."""
    check_definitions(tuple(definitions))
    seen: dict[int, Measure] = {}
    for measure in context.measures:
        seen.setdefault(id(measure), measure)
    for signal in definitions:
        for measure in signal.inputs:
            seen.setdefault(id(measure), measure)
        if signal.requires is not None:
            seen.setdefault(id(signal.requires.presence), signal.requires.presence)
    names: dict[str, Measure] = {}
    for measure in seen.values():
        if names.setdefault(measure.name, measure) is not measure:
            raise ValueError(f"two different measures are named {measure.name!r}; rename one")
    return list(seen.values())


def as_date(value: Any) -> date | None:
    """A warehouse date as ``datetime.date`` (SQLite hands back ISO text, pandas may hand back
    Timestamps); None for NULL."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# --------------------------------------------------------------------------- assembly (both paths)
@dataclass
class _Rows:
    """The (account, date) rows of a frame: the account's attributes and the day of each row."""

    attributes: pd.DataFrame  # account attributes, one row per frame row
    day: np.ndarray  # day number of each row's as-of date
    since: np.ndarray  # customer_since day number of each row's account


def _dates(days: np.ndarray) -> np.ndarray:
    """Day numbers as ``datetime.date`` objects (one conversion per distinct day)."""
    if not len(days):
        return np.zeros(0, dtype=object)
    distinct, inverse = np.unique(days, return_inverse=True)
    return np.array([day_of(v) for v in distinct], dtype=object)[inverse]


def _assemble(
    rows: _Rows, values: dict[str, np.ndarray], context: AccountContext, definitions: Sequence[Signal]
) -> pd.DataFrame:
    """The signals frame of the rows: context columns, then every definition's signal."""
    attrs = rows.attributes
    stripe_seats = values[context.contract_seats.name]
    stripe_arr = values[context.contract_arr.name]
    sf_seats = pd.to_numeric(attrs["sf_seats"], errors="coerce").to_numpy(dtype=float)
    sf_arr = pd.to_numeric(attrs["sf_arr"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        seats = np.where(stripe_seats > 0, stripe_seats, sf_seats)
        arr = np.where(stripe_arr > 0, stripe_arr, sf_arr)
    distinct_since = {v: as_date(v) for v in pd.unique(attrs["customer_since"].dropna())}
    out = pd.DataFrame(
        {
            "account_key": attrs["account_key"].to_numpy(dtype=object),
            "as_of_date": _dates(rows.day),
            "plan": attrs["plan"].to_numpy(dtype=object),
            "seats": seats,
            "arr": arr,
            "customer_since": attrs["customer_since"].map(distinct_since).to_numpy(dtype=object),
            "tenure_days": (rows.day - rows.since).astype(int),
            "parent_account_key": attrs["parent_account_key"].to_numpy(dtype=object),
            "owner_id": attrs["owner_id"].to_numpy(dtype=object),
        }
    )
    inputs = Inputs(values, rows.day, rows.since, seats)
    for signal in definitions:
        connected = None if signal.requires is None else values[signal.requires.presence.name] > 0
        out[signal.key] = signal.compute(inputs, connected)
    return out


def empty_frame(definitions: Sequence[Signal]) -> pd.DataFrame:
    """A signals frame without rows (the columns and dtypes of a full one)."""
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in ACCOUNT_COLUMNS})
    for signal in definitions:
        frame[signal.key] = pd.Series(dtype=float)
    return frame


# --------------------------------------------------------------------------- one date, in SQL
def _bounds(measures: Sequence[Measure], view: int, scope: Scope) -> list[Any]:
    """A filter that keeps every record some measure of a query counts, and few others: the OR,
    over the measures, of each one's selective predicates (windows, pending events), windows on
    one stamp merged into the window covering them all. Empty when a measure has none (it may
    count any record)."""
    terms: list[list[Any]] = []
    windows: dict[int, list[Window]] = {}
    for measure in measures:
        selective = [p for p in measure.when if p.selective]
        if not selective:
            return []
        if len(selective) == 1 and isinstance(selective[0], Window):
            windows.setdefault(id(selective[0].stamp), []).append(selective[0])
        else:
            terms.append(selective)
    for group in windows.values():
        terms.append([Window(group[0].stamp, max(w.length for w in group), min(w.skip for w in group))])
    return [or_(*[and_(true(), *_conditions(term, view, scope)) for term in terms])]


def _shared(measures: Sequence[Measure]) -> list[Any]:
    """The predicates every measure of a query has (tested once, in the query's WHERE)."""
    common = {p.same: p for p in measures[0].when}
    for measure in measures[1:]:
        mine = {p.same for p in measure.when}
        common = {key: p for key, p in common.items() if key in mine}
    return list(common.values())


def _conditions(predicates: Iterable[Any], view: int, scope: Scope) -> list[Any]:
    return [c for c in (p.condition(view, view, scope) for p in predicates) if c is not None]


class _DateQueries:
    """The SQL of every measure at one view date, against the candidate accounts ``accounts``."""

    def __init__(self, conn: Any, accounts: Any, index: pd.Index) -> None:
        self.conn = conn
        self.scope = Scope(accounts)
        self.accounts = accounts
        self.index = index

    def _from(self, source: Source) -> Any:
        if source.account_key is None:
            return source.records
        return source.records.join(self.accounts, self.accounts.c.account_key == source.account_key)

    def _aligned(self, frame: pd.DataFrame, column: str, empty: float) -> np.ndarray:
        values = pd.Series(pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float), index=frame["account_key"])
        return values.reindex(self.index).fillna(empty).to_numpy(dtype=float)

    def additive(self, source: Source, shift: int, measures: list[Measure], view: int) -> dict[str, np.ndarray]:
        """Counts, sums, distinct counts and latest dates of one source, one query: the predicates
        all its measures share filter the rows, each measure's own ones its aggregate."""
        shared = _shared(measures)
        common = {p.same for p in shared}
        columns = []
        for m in measures:
            own = _conditions([p for p in m.when if p.same not in common], view, self.scope)
            columns.append(m.aggregation.select(and_(*own) if own else None).label(m.name))
        where = _conditions((*source.always, *shared), view, self.scope)
        rest = [m.with_when(tuple(p for p in m.when if p.same not in common)) for m in measures]
        where += _bounds(rest, view, self.scope)
        out = {}
        if source.account_key is None:
            stmt = select(*columns).select_from(self._from(source)).where(*where)
            frame = read_frame(self.conn, stmt)
            for m in measures:
                scalar = pd.to_numeric(frame[m.name], errors="coerce").fillna(m.aggregation.empty).iloc[0]
                out[m.name] = np.full(len(self.index), float(scalar))
            return out
        stmt = (
            select(source.account_key.label("account_key"), *columns)
            .select_from(self._from(source))
            .where(*where)
            .group_by(source.account_key)
        )
        frame = read_frame(self.conn, stmt)
        for m in measures:
            if isinstance(m.aggregation, Max):
                days = pd.Series(day_numbers(frame[m.name]), index=frame["account_key"])
                out[m.name] = days.reindex(self.index).to_numpy(dtype=float)
            else:
                out[m.name] = self._aligned(frame, m.name, m.aggregation.empty)
        return out

    def median(self, measure: Measure, view: int) -> np.ndarray:
        """The median per account in SQL with window functions (portable: no PERCENTILE_CONT on
        SQLite): rank each account's values, keep the middle one or two, average them."""
        source, value = measure.source, measure.aggregation.value
        ranked = (
            select(
                source.account_key.label("account_key"),
                value.label("value"),
                func.row_number().over(partition_by=source.account_key, order_by=value).label("position"),
                func.count().over(partition_by=source.account_key).label("n"),
            )
            .select_from(self._from(source))
            .where(value.is_not(None), *_conditions(measure.predicates, view, self.scope))
            .subquery("ranked")
        )
        middle = ranked.c.position.in_([(ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2])
        stmt = select(ranked.c.account_key, cast(func.avg(ranked.c.value), Float).label("median")).where(middle)
        frame = read_frame(self.conn, stmt.group_by(ranked.c.account_key))
        return self._aligned(frame, "median", np.nan)

    def latest(self, measures: list[Measure], view: int) -> dict[str, np.ndarray]:
        """Measures sharing one "latest record per group" selection: the latest records in SQL
        (ROW_NUMBER over the group, newest first, ranked before the candidate accounts are joined),
        their values and reductions in numpy."""
        first = measures[0]
        source, aggregation = first.source, first.aggregation
        columns = {name: expr for m in measures for name, expr in m.aggregation.columns.items()}
        stamp, tie = aggregation.order
        recency = func.row_number().over(
            partition_by=(source.account_key, aggregation.per),
            order_by=(stamp.desc().nulls_last(), tie.desc().nulls_last()),
        )
        ranked = (
            select(
                source.account_key.label("account_key"),
                *[expr.label(f"col_{name}") for name, expr in columns.items()],
                recency.label("recency"),
            )
            .select_from(source.records)
            .where(*_conditions(first.predicates, view, None))
            .subquery("ranked")
        )
        stmt = (
            select(ranked.c.account_key, *[ranked.c[f"col_{n}"] for n in columns])
            .select_from(ranked.join(self.accounts, self.accounts.c.account_key == ranked.c.account_key))
            .where(ranked.c.recency == 1)
        )
        frame = read_frame(self.conn, stmt)
        rows = self.index.get_indexer(frame["account_key"].to_numpy(dtype=object))
        keep = rows >= 0
        lines = {name: _line_column(expr, frame[f"col_{name}"])[keep] for name, expr in columns.items()}
        return {
            m.name: reduce_lines(rows[keep], np.asarray(m.aggregation.value(lines), dtype=float), len(self.index), m.aggregation.reduce)
            for m in measures
        }


def _line_column(expr: Any, values: pd.Series) -> np.ndarray:
    """A column of the latest records as a ``Latest`` value function reads it: numbers as
    floats (NaN: NULL), anything else as objects."""
    if isinstance(expr.type, Integer | Float | Numeric):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return values.to_numpy(dtype=object)


def _latest_group(measure: Measure) -> tuple[int, ...]:
    """Measures with equal keys share one latest-record selection."""
    a = measure.aggregation
    return (id(measure.source), measure.shift, id(a.per), *map(id, a.order), *map(id, measure.when))


def _evaluate_at(queries: _DateQueries, measures: Sequence[Measure], as_of: int) -> dict[str, np.ndarray]:
    """Every measure's value per candidate account at ``as_of``."""
    out: dict[str, np.ndarray] = {}
    additive: dict[tuple[int, int], list[Measure]] = {}
    latest: dict[tuple[int, ...], list[Measure]] = {}
    for m in measures:
        if isinstance(m.aggregation, Count | Sum | Distinct | Max):
            additive.setdefault((id(m.source), m.shift), []).append(m)
        elif isinstance(m.aggregation, Median):
            out[m.name] = queries.median(m, as_of - m.shift)
        elif isinstance(m.aggregation, Latest):
            latest.setdefault(_latest_group(m), []).append(m)
        else:  # pragma: no cover - every aggregation of measures.py is handled
            raise TypeError(f"measure {m.name!r}: no evaluation for {type(m.aggregation).__name__}")
    for group in additive.values():
        out.update(queries.additive(group[0].source, group[0].shift, group, as_of - group[0].shift))
    for group in latest.values():
        out.update(queries.latest(group, as_of - group[0].shift))
    return out


def signals_at(
    engine: Engine,
    as_of: date,
    account_keys: Sequence[str] | None,
    context: AccountContext,
    definitions: Sequence[Signal],
) -> pd.DataFrame:
    """Every customer's signals as of the end of ``as_of``, pushed down to SQL: one row per
    account that is a customer at ``as_of`` (restricted to ``account_keys``), sorted by key."""
    measures = _needed(context, definitions)
    view = day_number(as_of)
    roster_table = account_roster()
    candidates = select(roster_table.c.id.label("account_key"), roster_table.c.customer_since).where(
        *_conditions(_roster(roster_table), view, Scope(None))
    )
    if account_keys is not None and len(account_keys) <= _MAX_KEYS_IN_SQL:
        candidates = candidates.where(roster_table.c.id.in_(list(account_keys)))
    accounts = candidates.cte("accounts")
    with engine.connect() as conn:
        attributes = read_frame(
            conn, _attributes(roster_table.join(accounts, accounts.c.account_key == roster_table.c.id), roster_table)
        )
        if account_keys is not None and len(account_keys) > _MAX_KEYS_IN_SQL:
            attributes = attributes[attributes["account_key"].isin(set(account_keys))]
        attributes = attributes.sort_values("account_key", kind="stable").reset_index(drop=True)
        if attributes.empty:
            return empty_frame(definitions)
        queries = _DateQueries(conn, accounts, pd.Index(attributes["account_key"].to_numpy(dtype=object)))
        values = _evaluate_at(queries, measures, view)
    live = ~((values[context.subscriptions_ended.name] > 0) & (values[context.subscriptions_live.name] == 0))
    attributes = attributes[live].reset_index(drop=True)
    values = {name: v[live] for name, v in values.items()}
    since = day_numbers(attributes["customer_since"]).astype(np.int64)
    rows = _Rows(attributes, np.full(len(attributes), view, dtype=np.int64), since)
    return _assemble(rows, values, context, definitions)


# --------------------------------------------------------------------------- a range of dates
def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (record, day) pair of integer intervals ``lo .. hi`` (inclusive, non-empty)."""
    length = (hi - lo + 1).astype(np.int64)
    record = np.repeat(np.arange(len(lo)), length)
    if not len(record):
        return record, np.zeros(0, dtype=np.int64)
    offsets = np.arange(len(record)) - np.repeat(np.cumsum(length) - length, length)
    return record, np.repeat(lo.astype(np.int64), length) + offsets


@dataclass
class _Span:
    """The part of each record's interval inside a chunk of days ``first .. first + n - 1``."""

    keep: np.ndarray  # records counting on some day of the chunk
    lo: np.ndarray  # first day of the chunk on which each kept record counts (0-based)
    hi: np.ndarray  # last day (0-based)
    lasting: np.ndarray  # kept records counting to the chunk's end

    @classmethod
    def of(cls, lo: np.ndarray, hi: np.ndarray, first: int, n: int) -> _Span:
        lo_c = np.maximum(lo, first)
        hi_c = np.minimum(hi, first + n - 1)
        keep = lo_c <= hi_c
        lo_k = (lo_c[keep] - first).astype(np.int64)
        hi_k = (hi_c[keep] - first).astype(np.int64)
        return cls(keep, lo_k, hi_k, hi_k == n - 1)


def _interval_sums(size: int, n: int, groups: np.ndarray, span: _Span, weights: np.ndarray) -> np.ndarray:
    """Per (group, chunk day): the sum of the weights of the records counting that day."""
    g, w = groups[span.keep], weights[span.keep]
    width = n + 1
    total = np.bincount(g * width + span.lo, weights=w, minlength=size * width)
    total -= np.bincount(g * width + span.hi + 1, weights=w, minlength=size * width)
    return np.cumsum(total.reshape(size, width), axis=1)[:, :n]


def _interval_max(size: int, n: int, groups: np.ndarray, span: _Span, values: np.ndarray) -> np.ndarray:
    """Per (group, chunk day): the largest value among the records counting that day (-inf:
    none). Records counting to the chunk's end are a running maximum from their first day;
    the few that stop inside the chunk are spread over their days."""
    g, v = groups[span.keep], values[span.keep]
    best = np.full((size, n), -np.inf)
    lasting = span.lasting
    np.maximum.at(best, (g[lasting], span.lo[lasting]), v[lasting])
    best = np.maximum.accumulate(best, axis=1)
    ending = ~lasting
    record, day = _expand(span.lo[ending], span.hi[ending])
    np.maximum.at(best, (g[ending][record], day), v[ending][record])
    return best


@dataclass
class _RangeMeasure:
    """A measure prepared for a range: each record's account row and counting interval."""

    measure: Measure
    facts: Facts
    lo: np.ndarray
    hi: np.ndarray
    groups: np.ndarray | None = None  # Distinct / Latest: the record's group
    group_rows: np.ndarray | None = None  # the account row of each group
    rank: np.ndarray | None = None  # Latest: the record's place in the order
    by_rank: np.ndarray | None = None  # Latest: the record at each place
    line_values: np.ndarray | None = None  # Latest: each record's value


def _prepare(measure: Measure, facts: Facts) -> _RangeMeasure:
    lo, hi = counting_days(measure.predicates, facts, measure.shift)
    prepared = _RangeMeasure(measure, facts, lo, hi)
    aggregation = measure.aggregation
    if isinstance(aggregation, Distinct | Latest):
        # A group is an (account, value) pair: a feature an account used, a contact's answers.
        key_codes, key_values = pd.factorize(facts.texts(aggregation.value if isinstance(aggregation, Distinct) else aggregation.per))
        width = max(len(key_values), 1)
        codes, pairs = pd.factorize(facts.rows * width + key_codes.astype(np.int64))
        prepared.groups = codes.astype(np.int64)
        prepared.group_rows = (np.asarray(pairs, dtype=np.int64) // width).astype(np.int64)
    if isinstance(aggregation, Latest):
        stamp, tie = aggregation.order
        order = np.lexsort((facts.texts(tie), facts.instants(stamp)))
        rank = np.empty(len(order), dtype=float)
        rank[order] = np.arange(len(order))
        prepared.rank, prepared.by_rank = rank, order
        columns = {name: _line_column(expr, facts.raw[facts.label_of[id(expr)]]) for name, expr in aggregation.columns.items()}
        prepared.line_values = np.asarray(aggregation.value(columns), dtype=float)
    return prepared


def _evaluate_chunk(p: _RangeMeasure, n_rows: int, first: int, n: int) -> np.ndarray:
    """The measure per (account row, chunk day): an (n_rows, n) grid, or (1, n) for a
    population measure."""
    m, facts = p.measure, p.facts
    rows = facts.rows if m.source.account_key is not None else np.zeros(len(facts), dtype=np.int64)
    size = n_rows if m.source.account_key is not None else 1
    span = _Span.of(p.lo, p.hi, first, n)
    aggregation = m.aggregation
    if isinstance(aggregation, Count | Sum):
        return _interval_sums(size, n, rows, span, aggregation.weights(facts))
    if isinstance(aggregation, Distinct):
        present = _interval_sums(len(p.group_rows), n, p.groups, span, np.ones(len(facts))) > 0
        out = np.zeros((size, n))
        np.add.at(out, p.group_rows, present.astype(float))
        return out
    if isinstance(aggregation, Max):
        best = _interval_max(size, n, rows, span, facts.days(aggregation.stamp))
        return np.where(np.isfinite(best), best, np.nan)
    if isinstance(aggregation, Median):
        values = facts.numbers(aggregation.value)
        record, day = _expand(span.lo, span.hi)
        kept = np.nonzero(span.keep)[0][record]
        cells = pd.DataFrame({"cell": rows[kept] * n + day, "value": values[kept]}).dropna()
        medians = cells.groupby("cell", sort=False)["value"].median()
        out = np.full(size * n, np.nan)
        out[medians.index.to_numpy(dtype=np.int64)] = medians.to_numpy()
        return out.reshape(size, n)
    if isinstance(aggregation, Latest):
        best = _interval_max(len(p.group_rows), n, p.groups, span, p.rank)
        group, day = np.nonzero(np.isfinite(best))
        record = p.by_rank[best[group, day].astype(np.int64)]
        cells = p.group_rows[group] * n + day
        return reduce_lines(cells, p.line_values[record], size * n, aggregation.reduce).reshape(size, n)
    raise TypeError(f"measure {m.name!r}: no evaluation for {type(aggregation).__name__}")  # pragma: no cover


def _read_facts(
    conn: Any, source: Source, measures: list[Measure], first: int, last: int, keys: Sequence[str] | None,
    index: pd.Index, since: np.ndarray,
) -> Facts:  # fmt: skip
    """The records of ``source`` that can count on some date ``first .. last`` for one of
    ``measures``, with every column their predicates and aggregations read."""
    exprs: dict[int, Any] = {}
    for m in measures:
        for predicate in m.predicates:
            for expr in predicate.reads():
                exprs.setdefault(id(expr), expr)
        for expr in m.aggregation.reads():
            exprs.setdefault(id(expr), expr)
    labels = {key: f"c{i}" for i, key in enumerate(exprs)}
    columns = [expr.label(labels[key]) for key, expr in exprs.items()]
    relevant = [
        and_(true(), *[c for c in (p.condition(first - m.shift, last - m.shift, None) for p in m.predicates) if c is not None])
        for m in measures
    ]
    if source.account_key is not None:
        columns.insert(0, source.account_key.label("account_key"))
    stmt = select(*columns).select_from(source.records).where(or_(*relevant))
    if source.account_key is not None and keys is not None and len(keys) <= _MAX_KEYS_IN_SQL:
        stmt = stmt.where(source.account_key.in_(list(keys)))
    raw = read_frame(conn, stmt)
    if source.account_key is None:
        return Facts(raw, labels, np.zeros(len(raw), dtype=np.int64), since)
    rows = index.get_indexer(raw["account_key"].to_numpy(dtype=object))
    raw = raw[rows >= 0].reset_index(drop=True)
    return Facts(raw, labels, rows[rows >= 0].astype(np.int64), since)


def iter_signal_chunks(
    engine: Engine,
    start: date,
    end: date,
    account_keys: Sequence[str] | None,
    context: AccountContext,
    definitions: Sequence[Signal],
    *,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
) -> Iterator[pd.DataFrame]:
    """The signals of ``start`` .. ``end``, ``chunk_days`` dates per frame (sorted by date, then
    account): for each date exactly the rows ``signals_at`` returns."""
    if end < start:
        raise ValueError(f"signals range: end {end} is before start {start}; swap them")
    if chunk_days < 1:
        raise ValueError(f"chunk_days must be at least 1, got {chunk_days}")
    if account_keys is not None and isinstance(account_keys, str):
        raise TypeError(f"account_keys must be a sequence of account keys, not the string {account_keys!r}")
    measures = _needed(context, definitions)
    first, last = day_number(start), day_number(end)
    keys = None if account_keys is None else list(account_keys)
    roster_table = account_roster()
    with engine.connect() as conn:
        roster_columns = _attributes(roster_table, roster_table).add_columns(roster_table.c.is_deleted, roster_table.c.source_updated_at)
        stmt = roster_columns.where(roster_table.c.customer_since.is_not(None), roster_table.c.customer_since <= day_of(last))
        if keys is not None and len(keys) <= _MAX_KEYS_IN_SQL:
            stmt = stmt.where(roster_table.c.id.in_(keys))
        accounts = read_frame(conn, stmt)
        if keys is not None and len(keys) > _MAX_KEYS_IN_SQL:
            accounts = accounts[accounts["account_key"].isin(set(keys))]
        accounts = accounts.sort_values("account_key", kind="stable").reset_index(drop=True)
        index = pd.Index(accounts["account_key"].to_numpy(dtype=object))
        since = day_numbers(accounts["customer_since"])
        roster = Facts(
            accounts.rename(columns={"is_deleted": "deleted", "source_updated_at": "updated", "customer_since": "since"}),
            {id(roster_table.c.is_deleted): "deleted", id(roster_table.c.source_updated_at): "updated", id(roster_table.c.customer_since): "since"},
            np.arange(len(accounts), dtype=np.int64),
            since,
        )
        by_source: dict[int, list[Measure]] = {}
        for m in measures:
            by_source.setdefault(id(m.source), []).append(m)
        prepared = {}
        for group in by_source.values():
            facts = _read_facts(conn, group[0].source, group, first, last, keys, index, since)
            for m in group:
                prepared[m.name] = _prepare(m, facts)
    if accounts.empty:
        return
    member_lo, member_hi = counting_days(_roster(roster_table), roster)
    since_int = np.nan_to_num(since, nan=0).astype(np.int64)
    for chunk_first in range(first, last + 1, chunk_days):
        n = min(last, chunk_first + chunk_days - 1) - chunk_first + 1
        yield _chunk(accounts, since_int, member_lo, member_hi, prepared, chunk_first, n, context, definitions)


def _chunk(
    accounts: pd.DataFrame, since: np.ndarray, member_lo: np.ndarray, member_hi: np.ndarray,
    prepared: dict[str, _RangeMeasure], first: int, n: int, context: AccountContext, definitions: Sequence[Signal],
) -> pd.DataFrame:  # fmt: skip
    """The frame of the chunk's dates ``first .. first + n - 1``."""
    n_rows = len(accounts)
    day_axis = np.arange(first, first + n)
    candidate = (member_lo[:, None] <= day_axis[None, :]) & (day_axis[None, :] <= member_hi[:, None])
    grids = {name: _evaluate_chunk(p, n_rows, first, n) for name, p in prepared.items()}
    churned = (grids[context.subscriptions_ended.name] > 0) & (grids[context.subscriptions_live.name] == 0)
    a_idx, d_idx = np.nonzero(candidate & ~churned)
    if not len(a_idx):
        return empty_frame(definitions)
    order = np.lexsort((a_idx, d_idx))  # by date, then account (accounts are sorted by key)
    a_idx, d_idx = a_idx[order], d_idx[order]
    values = {}
    for name, grid in grids.items():
        values[name] = grid[0, d_idx] if prepared[name].measure.source.account_key is None else grid[a_idx, d_idx]
    attributes = accounts.iloc[a_idx].reset_index(drop=True)
    return _assemble(_Rows(attributes, day_axis[d_idx], since[a_idx]), values, context, definitions)


__all__ = [
    "ACCOUNT_COLUMNS", "DEFAULT_CHUNK_DAYS", "AccountContext", "as_date", "empty_frame", "iter_signal_chunks", "read_frame",
    "signals_at",
]  # fmt: skip
