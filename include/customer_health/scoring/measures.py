"""The vocabulary signals are declared in: where facts come from, when they count, how they add up.

A signal (``scoring/signals.py``) is a formula over *measures*. A measure aggregates the records
of one *source* - a warehouse table joined to the account each record belongs to - that
**count at an as-of date D**: "the logins of the last 28 days", "the tickets open at the end of
D", "each contact's latest NPS answer of the last year". Whether a record counts at D is a
conjunction of *predicates* over the record's own stamps (point in time: only what existed by
the end of D ever counts):

=====================================  ==========================================================
``Known(stamp)``                        the stamp lies on or before D (NULL: never, or always)
``Window(stamp, days, skip=0)``         the stamp lies in the ``days`` days ending ``skip`` days
                                        before D: ``D - days + 1 <= day(stamp) <= D - skip``
``Pending(stamp, if_null=...)``         the stamp lies after D (not yet happened at the end of D)
``Present(table)``                      the record was not deleted by the end of D
``Where(condition)``                    a condition that does not depend on D (SQL)
``SinceCustomer(stamp)``                the stamp lies on or after the account's ``customer_since``
=====================================  ==========================================================

and the aggregations are ``Count``, ``Sum``, ``Distinct``, ``Max`` (of a date), ``Median`` and
``Latest`` (per group, the latest record by an order, its value summed or averaged over the
groups). A measure may also be *shifted*: evaluated as of ``D - n`` days (a contract six months
ago).

Two renderings of one meaning
-----------------------------
Every predicate has, side by side, the two forms the evaluator (``signal_engine.py``) needs:

* ``condition(first, last, scope)``: SQL that holds for a record when it counts at *some* view
  day in ``[first, last]``. At ``first == last == D`` it is exactly "counts at D": the daily
  run's push-down, one ``GROUP BY account`` per source. Over a range it is the filter that reads
  each record once for a history rebuild.
* ``days(facts)``: per record, the interval ``[lo, hi]`` of view days on which it counts,
  computed from its stamps as day numbers (days since 1970-01-01). A rebuild evaluates every
  date of a range at once by adding over these intervals.

On whole days the two agree by construction: every rule compares a stamp with a midnight
derived from D, and ``stamp < midnight(X)`` holds exactly when ``day(stamp) < X``. Conditions
that do not depend on D (``Where``) are evaluated by the database in both cases (read as a 0/1
column over a range), and values (sums, orders) are read from the same SQL expressions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, ColumnElement, Date, DateTime, case, false, func, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FromClause
from sqlalchemy.sql.functions import FunctionElement

EPOCH = date(1970, 1, 1)
_EPOCH64 = np.datetime64("1970-01-01", "D")
NEVER = -np.inf
FOREVER = np.inf


# --------------------------------------------------------------------------- day numbers
def day_number(value: date) -> int:
    """Days since 1970-01-01: the integer day axis every interval lives on."""
    return (value - EPOCH).days


def day_of(number: int) -> date:
    """The date of a day number."""
    return EPOCH + timedelta(days=int(number))


def midnight(number: int) -> datetime:
    """The first instant (naive UTC) of the day ``number``."""
    return datetime.combine(day_of(number), time())


def day_numbers(values: pd.Series) -> np.ndarray:
    """The calendar day of each stamp (a date, a datetime or their ISO text) as a float day
    number; NaN where the stamp is NULL. Only the day matters to the point-in-time rules."""
    if values.empty:
        return np.zeros(0)
    first = values.first_valid_index()
    if first is not None and not isinstance(values[first], str):  # PostgreSQL: date and datetime objects
        values = values.map(lambda v: v.isoformat(), na_action="ignore")
    days = pd.to_datetime(values.astype(object).str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    out = (days.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]") - _EPOCH64).astype(np.int64).astype(float)
    out[days.isna().to_numpy()] = np.nan
    return out


def instants(values: pd.Series) -> np.ndarray:
    """Stamps as int64 nanoseconds, for ordering records (NULL sorts first)."""
    if values.empty:
        return np.zeros(0, dtype=np.int64)
    stamps = pd.to_datetime(values, errors="coerce", format="ISO8601")
    return stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _is_date(stamp: ColumnElement[Any]) -> bool:
    """A DATE stamp (compared with dates) rather than a timestamp (compared with midnights)."""
    if isinstance(stamp.type, Date):
        return True
    if isinstance(stamp.type, DateTime):
        return False
    raise TypeError(f"{stamp} is not a date or a timestamp ({stamp.type!r}); a point-in-time rule needs one")


def _on_or_before(stamp: ColumnElement[Any], number: int) -> ColumnElement[bool]:
    """``day(stamp) <= number`` (NULL: unknown)."""
    return stamp <= day_of(number) if _is_date(stamp) else stamp < midnight(number + 1)


def _on_or_after(stamp: ColumnElement[Any], number: int) -> ColumnElement[bool]:
    """``day(stamp) >= number`` (NULL: unknown)."""
    return stamp >= day_of(number) if _is_date(stamp) else stamp >= midnight(number)


# --------------------------------------------------------------------------- SQL helpers
def _dialect_function(name: str, returns: Any, sqlite: str, default: str, doc: str) -> type[FunctionElement]:
    """A one-argument SQL function rendered from ``sqlite`` on SQLite and ``default`` elsewhere
    (``{}`` stands for the argument)."""
    function = type(name, (FunctionElement,), {"type": returns, "inherit_cache": True, "name": name, "__doc__": doc})

    @compiles(function, "sqlite")
    def _on_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
        return sqlite.format(compiler.process(element.clauses, **kw))

    @compiles(function)
    def _elsewhere(element: Any, compiler: Any, **kw: Any) -> str:
        return default.format(compiler.process(element.clauses, **kw))

    return function


weekday = _dialect_function(
    "weekday", Boolean(), "(CAST(strftime('%w', {}) AS INTEGER) BETWEEN 1 AND 5)", "(EXTRACT(dow FROM {}) BETWEEN 1 AND 5)",
    "True when a date falls on Monday-Friday (day-of-week extraction is dialect-specific).",
)  # fmt: skip
calendar_day = _dialect_function(
    "calendar_day", Date(), "date({})", "CAST({} AS DATE)",
    "The calendar day of a timestamp (SQLite's CAST AS DATE would keep only the year).",
)  # fmt: skip


# --------------------------------------------------------------------------- what a record reads
@dataclass
class Facts:
    """The records of one source read for a range of dates, with the account row of each.

    ``raw`` holds one column per SQL expression the measures read (``label_of``); ``rows`` the
    index of each record's account in the range's sorted accounts; ``since`` each account's
    ``customer_since`` day. Conversions of a column are computed once.
    """

    raw: pd.DataFrame
    label_of: Mapping[int, str]
    rows: np.ndarray
    since: np.ndarray
    _cache: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.raw)

    def _column(self, expr: ColumnElement[Any]) -> pd.Series:
        return self.raw[self.label_of[id(expr)]]

    def _cached(self, kind: str, expr: ColumnElement[Any], convert: Callable[[pd.Series], np.ndarray]) -> np.ndarray:
        key = (kind, id(expr))
        if key not in self._cache:
            self._cache[key] = convert(self._column(expr))
        return self._cache[key]

    def days(self, expr: ColumnElement[Any]) -> np.ndarray:
        """Day numbers of a stamp (NaN: NULL)."""
        return self._cached("days", expr, day_numbers)

    def numbers(self, expr: ColumnElement[Any]) -> np.ndarray:
        """A numeric column as floats (NaN: NULL)."""
        return self._cached("numbers", expr, lambda s: pd.to_numeric(s, errors="coerce").to_numpy(dtype=float))

    def flags(self, expr: ColumnElement[Any]) -> np.ndarray:
        """A 0/1 column (``Where``) as booleans."""
        return self._cached("flags", expr, lambda s: pd.to_numeric(s, errors="coerce").fillna(0).to_numpy() > 0)

    def instants(self, expr: ColumnElement[Any]) -> np.ndarray:
        """A stamp as nanoseconds, for ordering."""
        return self._cached("instants", expr, instants)

    def texts(self, expr: ColumnElement[Any]) -> np.ndarray:
        """A column as text (ids and keys, for ordering and grouping)."""
        return self._cached("texts", expr, lambda s: s.map(str, na_action="ignore").fillna("").to_numpy(dtype=object))

    def values(self, expr: ColumnElement[Any]) -> np.ndarray:
        """A column as it was read (objects)."""
        return self._cached("values", expr, lambda s: s.to_numpy(dtype=object))


@dataclass(frozen=True)
class Scope:
    """What a single-date SQL condition may refer to besides its own source: the candidate
    accounts (``account_key``, ``customer_since``) the query is joined to."""

    accounts: Any


# --------------------------------------------------------------------------- predicates
class Predicate:
    """A point-in-time condition on a record (see the module docstring)."""

    def condition(self, first: int, last: int, scope: Scope | None) -> ColumnElement[bool] | None:
        """SQL holding when the record counts at some view day in ``[first, last]``; None when
        there is nothing to filter in SQL (the condition needs the account: ``SinceCustomer``
        over a range)."""
        raise NotImplementedError

    def days(self, facts: Facts) -> tuple[np.ndarray, np.ndarray]:
        """Per record, the first and last view day on which it counts (±inf: unbounded; an
        empty interval where it never counts)."""
        raise NotImplementedError

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        """The SQL expressions ``days`` reads."""
        raise NotImplementedError

    @property
    def same(self) -> tuple[Any, ...]:
        """Equal for predicates that hold for the same records (the same rule on the same
        expressions): a query tests such a predicate once."""
        return (type(self).__name__, *(id(v) if not isinstance(v, int | bool | str) else v for v in vars(self).values()))

    @property
    def selective(self) -> bool:
        """True when the predicate keeps a small part of a table at one date (a window, an event
        still pending), so it is worth bounding the rows a query reads with it."""
        return False


def _always(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, NEVER), np.full(n, FOREVER)


def _only(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every day where ``mask`` holds, no day elsewhere."""
    return np.where(mask, NEVER, FOREVER), np.where(mask, FOREVER, NEVER)


@dataclass(frozen=True, eq=False)
class Known(Predicate):
    """The stamp lies on or before D: the record (or its event) exists by the end of D.

    ``if_null``: whether a record without the stamp counts (``False``: a NULL stamp is never
    known; ``True``: the stamp is unknown and the record always counts)."""

    stamp: ColumnElement[Any]
    if_null: bool = False

    def __post_init__(self) -> None:
        _is_date(self.stamp)

    def condition(self, first: int, last: int, scope: Scope | None) -> ColumnElement[bool]:
        if _is_date(self.stamp):
            known = self.stamp <= day_of(last)
        else:
            # "Everything created so far" keeps nearly the whole table: COALESCE hides the column
            # from SQLite's planner, which would walk the timestamp index over almost every row.
            end = midnight(last + 1)
            known = func.coalesce(self.stamp, end) < end
        return or_(self.stamp.is_(None), known) if self.if_null else known

    def days(self, facts: Facts) -> tuple[np.ndarray, np.ndarray]:
        day = facts.days(self.stamp)
        lo = np.where(np.isnan(day), NEVER if self.if_null else FOREVER, day)
        return lo, np.where(np.isnan(day) & ~self.if_null, NEVER, FOREVER)

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.stamp,)


@dataclass(frozen=True, eq=False)
class Window(Predicate):
    """The stamp lies in the ``days`` days ending ``skip`` days before D:
    ``D - days + 1 <= day(stamp) <= D - skip``. ``Window(created_at, 90)`` is "created in the
    last 90 days"; ``Window(day, 90, skip=30)`` is "days 31 to 90 back". NULL never counts."""

    stamp: ColumnElement[Any]
    length: int
    skip: int = 0

    @property
    def selective(self) -> bool:
        return True

    def __post_init__(self) -> None:
        _is_date(self.stamp)
        if not 0 <= self.skip < self.length:
            raise ValueError(f"Window({self.stamp}, {self.length}, skip={self.skip}): need 0 <= skip < days")

    def condition(self, first: int, last: int, scope: Scope | None) -> ColumnElement[bool]:
        return _on_or_after(self.stamp, first - self.length + 1) & _on_or_before(self.stamp, last - self.skip)

    def days(self, facts: Facts) -> tuple[np.ndarray, np.ndarray]:
        day = facts.days(self.stamp)
        missing = np.isnan(day)
        return np.where(missing, FOREVER, day + self.skip), np.where(missing, NEVER, day + self.length - 1)

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.stamp,)


@dataclass(frozen=True, eq=False)
class Where(Predicate):
    """A condition on the record that does not depend on D (its category, priority, status)."""

    test: ColumnElement[bool]
    flag: ColumnElement[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flag", case((self.test, 1), else_=0))

    def condition(self, first: int, last: int, scope: Scope | None) -> ColumnElement[bool]:
        return self.test

    def days(self, facts: Facts) -> tuple[np.ndarray, np.ndarray]:
        return _only(facts.flags(self.flag))

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.flag,)


@dataclass(frozen=True, eq=False)
class Pending(Predicate):
    """The stamp lies after D: the event (a ticket solved, an invoice paid, a subscription
    ended) had not happened by the end of D. ``if_null`` decides a record without the stamp:
    a bool, or a ``Where`` (a ticket without ``solved_at`` is open unless its status says it
    was solved or closed)."""

    stamp: ColumnElement[Any]
    if_null: bool | Where = False

    @property
    def selective(self) -> bool:
        return True

    def __post_init__(self) -> None:
        _is_date(self.stamp)

    def _null_rule(self) -> ColumnElement[bool]:
        if isinstance(self.if_null, Where):
            return self.if_null.test
        return true() if self.if_null else false()

    def condition(self, first: int, last: int, scope: Scope | None) -> ColumnElement[bool]:
        later = _on_or_after(self.stamp, first + 1)
        return or_(later, self.stamp.is_(None) & self._null_rule())

    def days(self, facts: Facts) -> tuple[np.ndarray, np.ndarray]:
        day = facts.days(self.stamp)
        missing = np.isnan(day)
        if isinstance(self.if_null, Where):
            counts_when_null = facts.flags(self.if_null.flag)
        else:
            counts_when_null = np.full(len(day), bool(self.if_null))
        hi = np.where(missing, np.where(counts_when_null, FOREVER, NEVER), day - 1)
        return np.full(len(day), NEVER), hi

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.stamp, self.if_null.flag) if isinstance(self.if_null, Where) else (self.stamp,)


@dataclass(frozen=True, eq=False)
class Present(Predicate):
    """The record of ``table`` existed at the end of D: not deleted, or deleted only after D
    (the raw tables keep deleted records with ``is_deleted`` and the deletion's
    ``source_updated_at``). A NULL ``is_deleted`` counts only through the stamp."""

    table: Any

    def condition(self, first: int, last: int, scope: Scope | None) -> ColumnElement[bool]:
        t = self.table.c
        return or_(t.is_deleted == false(), t.source_updated_at >= midnight(first + 1))

    def days(self, facts: Facts) -> tuple[np.ndarray, np.ndarray]:
        flag = pd.Series(facts.values(self.table.c.is_deleted), dtype=object)
        unknown = flag.isna().to_numpy()
        kept = ~unknown & (flag.where(~flag.isna(), 1).astype(float).to_numpy() == 0)
        updated = facts.days(self.table.c.source_updated_at)
        until = np.where(np.isnan(updated), NEVER, updated - 1)
        return np.full(len(flag), NEVER), np.where(kept, FOREVER, until)

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.table.c.is_deleted, self.table.c.source_updated_at)


@dataclass(frozen=True, eq=False)
class SinceCustomer(Predicate):
    """The stamp lies on or after the account's ``customer_since``: usage during a trial, before
    the contract, is not customer engagement."""

    stamp: ColumnElement[Any]

    def condition(self, first: int, last: int, scope: Scope | None) -> ColumnElement[bool] | None:
        return None if scope is None else self.stamp >= scope.accounts.c.customer_since

    def days(self, facts: Facts) -> tuple[np.ndarray, np.ndarray]:
        day = facts.days(self.stamp)
        return _only(~np.isnan(day) & (day >= facts.since[facts.rows]))

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.stamp,)


def counting_days(predicates: Sequence[Predicate], facts: Facts, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The view days ``[lo, hi]`` on which each record satisfies every predicate, shifted by
    ``shift`` days (a measure as of ``D - shift`` counts a record at D when it counts at
    ``D - shift``)."""
    lo, hi = _always(len(facts))
    for predicate in predicates:
        p_lo, p_hi = predicate.days(facts)
        lo, hi = np.maximum(lo, p_lo), np.minimum(hi, p_hi)
    return lo + shift, hi + shift


# --------------------------------------------------------------------------- sources
@dataclass(frozen=True, eq=False)
class Source:
    """Records of one kind, each joined to the account it belongs to.

    ``records`` is the FROM clause (the fact table joined through ``account_identity_map`` or
    its Salesforce Account Id), ``account_key`` the expression naming each record's account
    (None: the facts are the population's, not an account's - e.g. the core features that
    exist). ``always`` are the predicates every measure of the source shares (the record exists
    at D, it is billed, ...).
    """

    name: str
    records: FromClause
    account_key: ColumnElement[str] | None
    always: tuple[Predicate, ...] = ()

    def measure(self, name: str, aggregation: Aggregation, *when: Predicate) -> Measure:
        """A measure of this source: ``aggregation`` of the records satisfying ``when``."""
        return Measure(name, self, aggregation, tuple(when))

    def count(self, name: str, *when: Predicate) -> Measure:
        """How many records count at D."""
        return self.measure(name, Count(), *when)

    def sum(self, name: str, value: ColumnElement[Any], *when: Predicate) -> Measure:
        """The sum of ``value`` over the records that count at D (NULL adds nothing)."""
        return self.measure(name, Sum(value), *when)

    def distinct(self, name: str, value: ColumnElement[Any], *when: Predicate) -> Measure:
        """How many distinct ``value`` the records that count at D hold."""
        return self.measure(name, Distinct(value), *when)

    def latest_day(self, name: str, stamp: ColumnElement[Any], *when: Predicate) -> Measure:
        """The latest day ``stamp`` among the records that count at D (NaN: none)."""
        return self.measure(name, Max(stamp), *when)

    def median(self, name: str, value: ColumnElement[Any], *when: Predicate) -> Measure:
        """The median of ``value`` over the records that count at D (NaN: none)."""
        return self.measure(name, Median(value), *when)


# --------------------------------------------------------------------------- aggregations
class Aggregation:
    """How the records counting at D add up to one value per account. ``empty`` is the value
    of an account none of whose records counts."""

    empty: float = math.nan

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        """The SQL expressions the vectorized evaluation reads."""
        return ()


@dataclass(frozen=True, eq=False)
class Count(Aggregation):
    """The number of records."""

    empty: float = 0.0

    def select(self, counts: ColumnElement[bool] | None) -> ColumnElement[Any]:
        """The SQL aggregate of the records for which ``counts`` holds (None: every record)."""
        return func.count() if counts is None else func.sum(case((counts, 1), else_=0))

    def weights(self, facts: Facts) -> np.ndarray:
        """What each record adds."""
        return np.ones(len(facts))


@dataclass(frozen=True, eq=False)
class Sum(Aggregation):
    """The sum of a numeric expression (NULL adds nothing)."""

    value: ColumnElement[Any]
    empty: float = 0.0

    def select(self, counts: ColumnElement[bool] | None) -> ColumnElement[Any]:
        value = func.coalesce(self.value, 0)
        return func.sum(value if counts is None else case((counts, value), else_=0))

    def weights(self, facts: Facts) -> np.ndarray:
        return np.nan_to_num(facts.numbers(self.value), nan=0.0)

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.value,)


@dataclass(frozen=True, eq=False)
class Distinct(Aggregation):
    """The number of distinct values of an expression (e.g. core features used)."""

    value: ColumnElement[Any]
    empty: float = 0.0

    def select(self, counts: ColumnElement[bool] | None) -> ColumnElement[Any]:
        return func.count(func.distinct(self.value if counts is None else case((counts, self.value))))

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.value,)


@dataclass(frozen=True, eq=False)
class Max(Aggregation):
    """The latest day of a date or timestamp expression, as a day number."""

    stamp: ColumnElement[Any]

    def __post_init__(self) -> None:
        _is_date(self.stamp)

    def select(self, counts: ColumnElement[bool] | None) -> ColumnElement[Any]:
        return func.max(self.stamp if counts is None else case((counts, self.stamp)))

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.stamp,)


@dataclass(frozen=True, eq=False)
class Median(Aggregation):
    """The median of a numeric expression (the mean of the middle two of an even count);
    records whose value is NULL do not count."""

    value: ColumnElement[Any]

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.value,)


LineValue = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True, eq=False)
class Latest(Aggregation):
    """Per group of records (``per``: a contact, a subscription), the latest record counting
    at D by ``order`` (stamp, then tie-breaker), turned into a number by ``value`` - a numpy
    function of the record's ``columns`` - and reduced over the account's groups by
    ``reduce``: ``"sum"`` or ``"mean"`` (NaN where no group has a value)."""

    per: ColumnElement[Any]
    order: tuple[ColumnElement[Any], ColumnElement[Any]]
    columns: Mapping[str, ColumnElement[Any]]
    value: LineValue
    reduce: str = "sum"

    def __post_init__(self) -> None:
        if self.reduce not in ("sum", "mean"):
            raise ValueError(f"Latest(reduce={self.reduce!r}): expected 'sum' or 'mean'")

    def reads(self) -> tuple[ColumnElement[Any], ...]:
        return (self.per, *self.order, *self.columns.values())


def reduce_lines(rows: np.ndarray, values: np.ndarray, size: int, how: str) -> np.ndarray:
    """Per row ``0 .. size-1``: the sum (or mean) of its non-NaN ``values``; NaN without any."""
    valid = ~np.isnan(values)
    counted = np.bincount(rows[valid], minlength=size).astype(float)
    total = np.bincount(rows[valid], weights=values[valid], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / counted if how == "mean" else total
    return np.where(counted > 0, out, np.nan)


# --------------------------------------------------------------------------- measures
@dataclass(frozen=True, eq=False)
class Measure:
    """``aggregation`` of the records of ``source`` that satisfy the source's predicates and
    ``when`` at the view day ``D - shift``. ``name`` is how a signal's formula refers to it
    (``inputs.logins_28``); two different measures never share a name."""

    name: str
    source: Source
    aggregation: Aggregation
    when: tuple[Predicate, ...] = ()
    shift: int = 0

    @property
    def predicates(self) -> tuple[Predicate, ...]:
        """Every predicate a record must satisfy: the source's, then the measure's own."""
        return (*self.source.always, *self.when)

    def with_when(self, when: tuple[Predicate, ...]) -> Measure:
        """The same measure with other predicates of its own."""
        return replace(self, when=when)

    def shifted(self, days: int, name: str) -> Measure:
        """The same measure as of ``days`` earlier (a contract six months ago)."""
        return replace(self, name=name, shift=self.shift + days)



def latest(
    source: Source,
    name: str,
    *when: Predicate,
    per: ColumnElement[Any],
    order: tuple[ColumnElement[Any], ColumnElement[Any]],
    columns: Mapping[str, ColumnElement[Any]],
    value: LineValue,
    reduce: str = "sum",
) -> Measure:
    """Per ``per`` group, the latest record of ``source`` counting at D by ``order``, its
    ``value`` reduced over the account's groups (see ``Latest``)."""
    return Measure(name, source, Latest(per, order, dict(columns), value, reduce), tuple(when))


# --------------------------------------------------------------------------- systems
@dataclass(frozen=True, eq=False)
class System:
    """A source system an account may or may not be connected to (its product account, its
    Zendesk organization, its Stripe customer). ``presence`` counts the account's identities in
    the system that exist at D; a signal that ``requires`` the system is NULL without one."""

    name: str
    presence: Measure


# --------------------------------------------------------------------------- formulas
def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``; NaN where the denominator is missing or zero."""
    den = np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, dtype=float) / np.where(den > 0, den, np.nan)


def fractional_change(current: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """``current / baseline - 1``; NaN where the baseline is missing or zero (no reference)."""
    return ratio(current, baseline) - 1.0


__all__ = [
    "Aggregation",
    "Count",
    "Distinct",
    "Facts",
    "Known",
    "Latest",
    "Max",
    "Measure",
    "Median",
    "Pending",
    "Predicate",
    "Present",
    "Scope",
    "SinceCustomer",
    "Source",
    "Sum",
    "System",
    "Where",
    "Window",
    "calendar_day",
    "counting_days",
    "day_number",
    "day_numbers",
    "day_of",
    "fractional_change",
    "latest",
    "midnight",
    "ratio",
    "reduce_lines",
    "weekday",
]
