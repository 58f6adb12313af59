"""A small SOQL subset: parse a query, evaluate it in Python, or compile it to SQLAlchemy.

The loopback Salesforce serves ``query/`` and ``queryAll/`` with this module. It understands
what the pipeline and its tests send, in Salesforce's own syntax::

    SELECT Id, Name, SystemModstamp FROM Account
    WHERE SystemModstamp > 2026-01-01T00:00:00Z AND (Plan__c IN ('growth', 'enterprise')
          OR Name LIKE 'Acme%') AND ParentId != null
    ORDER BY SystemModstamp ASC, Id DESC NULLS LAST
    LIMIT 100 OFFSET 10

and ``SELECT COUNT() FROM ...``. Fields may be parent relationship paths (``UserRole.Name``,
``Owner.UserRole.Name``: up to five relationships, as in Salesforce) in the select list, WHERE and
ORDER BY; whoever runs the query resolves them (``evaluate`` reads them from nested records, the
way the REST API returns them). Literals: quoted strings (``\\'`` escapes), numbers,
``true``/``false``/``null``, date literals (``2026-01-01``) and datetime literals
(``2026-01-01T00:00:00Z``, ``...T00:00:00.000+0000``, ``...+01:00``). Not supported (rejected
as ``MALFORMED_QUERY``): sub-queries (child relationships), aggregate functions other than
``COUNT()``, GROUP BY, date functions and relative date literals such as ``TODAY``.

Every ``SoqlError`` carries Salesforce's error code and, where known, the position in the query
it is about, so an API can answer in Salesforce's own shape (``error_message``).

Semantics follow SOQL where it differs from SQL: ``field != value`` is true for a null field,
``LIKE`` is case-insensitive, ascending order puts nulls first and descending order last.
Equality on text is case-sensitive here (Salesforce's is not) - a known simplification.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, true

MAX_RELATIONSHIP_DEPTH = 5  # Salesforce: up to five levels of parent relationships in a path


class SoqlError(ValueError):
    """A query this subset cannot run, with the Salesforce error code to answer with.

    ``position`` is the 0-based offset in the query the error is about, when known.
    """

    def __init__(self, message: str, error_code: str = "MALFORMED_QUERY", position: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.position = position

    def error_message(self, soql: str) -> str:
        """The message as Salesforce's query endpoint words it: the query, a caret, row and column.

        ``"\\nSELECT Id, Nope FROM User\\n           ^\\nERROR at Row:1:Column:12\\nNo such column ..."``
        """
        if self.position is None or not soql:
            return str(self)
        before = soql[: self.position]
        row = before.count("\n") + 1
        line_start = before.rfind("\n") + 1
        column = self.position - line_start + 1
        line = soql.splitlines()[row - 1] if soql.splitlines() else soql
        return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{self}"


# ----------------------------------------------------------------------------- the query model
@dataclass(frozen=True)
class Comparison:
    """``field op value``; for ``IN``/``NOT IN`` the value is a tuple."""

    field: str
    op: str  # = != < <= > >= IN NOT IN LIKE
    value: Any


@dataclass(frozen=True)
class BoolOp:
    """``AND`` or ``OR`` over two or more conditions."""

    op: str
    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """``NOT condition``."""

    operand: Condition


Condition = Comparison | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    """One ``ORDER BY`` term; SOQL's default null placement is first for ASC, last for DESC."""

    field: str
    descending: bool = False
    nulls_last: bool | None = None

    @property
    def nulls_are_last(self) -> bool:
        return self.descending if self.nulls_last is None else self.nulls_last


@dataclass(frozen=True)
class SoqlQuery:
    """A parsed SOQL query."""

    object_name: str
    fields: tuple[str, ...]  # empty for COUNT()
    is_count: bool = False
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None
    # Where each field (first mention) and the object name stand in the query, for error carets.
    positions: Mapping[str, int] = dataclass_field(default_factory=dict, compare=False, repr=False)

    def referenced_fields(self) -> list[str]:
        """Every field the query names (select list, WHERE, ORDER BY), in first-seen order."""
        seen: dict[str, None] = dict.fromkeys(self.fields)
        for name in _condition_fields(self.where):
            seen.setdefault(name)
        for item in self.order_by:
            seen.setdefault(item.field)
        return list(seen)


def _condition_fields(cond: Condition | None) -> Iterable[str]:
    if cond is None:
        return
    if isinstance(cond, Comparison):
        yield cond.field
    elif isinstance(cond, Not):
        yield from _condition_fields(cond.operand)
    else:
        for operand in cond.operands:
            yield from _condition_fields(operand)


# ----------------------------------------------------------------------------- tokenizer
_DATETIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})"
_TOKEN = re.compile(
    rf"""
    (?P<ws>\s+)
  | (?P<datetime>{_DATETIME})
  | (?P<date>\d{{4}}-\d{{2}}-\d{{2}})(?![\d:T])
  | (?P<number>[+-]?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL", "COUNT",
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
# LIKE wildcards escaped in a string keep their backslash, so LIKE can tell them from wildcards.
_ESCAPES |= {"%": "\\%", "_": "\\_"}


@dataclass(frozen=True)
class _Token:
    kind: str  # keyword | ident | string | number | date | datetime | op | punct | end
    text: str
    pos: int
    value: Any = None


def _tokenize(soql: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(soql):
        m = _TOKEN.match(soql, pos)
        if not m:
            raise SoqlError(f"unexpected character {soql[pos]!r} at position {pos} in: {soql}")
        kind = m.lastgroup or ""
        text = m.group()
        if kind == "ident" and text.upper() in _KEYWORDS:
            tokens.append(_Token("keyword", text.upper(), pos))
        elif kind == "string":
            tokens.append(_Token("string", text, pos, _unescape(text[1:-1], pos)))
        elif kind == "number":
            tokens.append(_Token("number", text, pos, float(text) if "." in text else int(text)))
        elif kind == "date":
            tokens.append(_Token("date", text, pos, _parse_date(text, pos)))
        elif kind == "datetime":
            tokens.append(_Token("datetime", text, pos, parse_datetime_literal(text)))
        elif kind == "op":
            tokens.append(_Token("op", "!=" if text == "<>" else text, pos))
        elif kind != "ws":
            tokens.append(_Token(kind, text, pos))
        pos = m.end()
    tokens.append(_Token("end", "", len(soql)))
    return tokens


def _unescape(body: str, pos: int) -> str:
    out: list[str] = []
    chars = iter(body)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        if nxt not in _ESCAPES:
            raise SoqlError(f"invalid escape sequence '\\{nxt}' in string at position {pos}")
        out.append(_ESCAPES[nxt])
    return "".join(out)


def _parse_date(text: str, pos: int) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SoqlError(f"invalid date literal {text!r} at position {pos}") from None


def parse_datetime_literal(text: str) -> datetime:
    """A SOQL/REST datetime (``2026-01-01T00:00:00Z``, ``...00.000+0000``) as naive UTC."""
    normalized = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", normalized):  # +0000 -> +00:00
        normalized = f"{normalized[:-2]}:{normalized[-2:]}"
    try:
        value = datetime.fromisoformat(normalized)
    except ValueError:
        raise SoqlError(f"invalid datetime literal {text!r}; expected e.g. 2026-01-01T00:00:00Z") from None
    if value.tzinfo is None:
        raise SoqlError(f"datetime literal {text!r} needs a time zone (Z or +hh:mm)")
    return value.astimezone(UTC).replace(tzinfo=None)


# ----------------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.tokens = _tokenize(soql)
        self.i = 0
        self.positions: dict[str, int] = {}

    # -- helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _fail(self, expected: str) -> SoqlError:
        found = self.tok.text or "end of query"
        return SoqlError(f"unexpected token: '{found}' at position {self.tok.pos}, expected {expected}",
                         position=self.tok.pos)

    def accept(self, kind: str, text: str | None = None) -> _Token | None:
        tok = self.tok
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, text: str | None = None, what: str | None = None) -> _Token:
        tok = self.accept(kind, text)
        if tok is None:
            raise self._fail(what or text or kind)
        return tok

    def field_name(self) -> str:
        """A field, or a parent relationship path such as ``UserRole.Name``."""
        tok = self.expect("ident", what="a field name")
        parts = tok.text.split(".")
        if not all(parts):
            raise SoqlError(f"unexpected token: '{tok.text}' at position {tok.pos}, expected a field name",
                            position=tok.pos)
        if len(parts) - 1 > MAX_RELATIONSHIP_DEPTH:
            raise SoqlError(f"{tok.text}: a field path may follow at most {MAX_RELATIONSHIP_DEPTH} "
                            "parent relationships", position=tok.pos)
        self.positions.setdefault(tok.text, tok.pos)
        return tok.text

    # -- grammar
    def query(self) -> SoqlQuery:
        self.expect("keyword", "SELECT")
        fields: list[str] = []
        is_count = False
        if self.accept("keyword", "COUNT"):
            self.expect("punct", "(")
            self.expect("punct", ")")
            is_count = True
        else:
            fields.append(self.field_name())
            while self.accept("punct", ","):
                fields.append(self.field_name())
        self.expect("keyword", "FROM")
        object_tok = self.expect("ident", what="an object name")
        object_name = object_tok.text
        self.positions[" FROM"] = object_tok.pos  # the object's position (no field has a space)
        where = None
        if self.accept("keyword", "WHERE"):
            where = self.condition()
        order: list[OrderItem] = []
        if self.accept("keyword", "ORDER"):
            self.expect("keyword", "BY")
            order.append(self.order_item())
            while self.accept("punct", ","):
                order.append(self.order_item())
        limit = offset = None
        if self.accept("keyword", "LIMIT"):
            limit = self.non_negative_int("LIMIT")
        if self.accept("keyword", "OFFSET"):
            offset = self.non_negative_int("OFFSET")
        if self.tok.kind != "end":
            raise self._fail("end of query")
        return SoqlQuery(object_name, tuple(fields), is_count, where, tuple(order), limit, offset,
                         dict(self.positions))

    def non_negative_int(self, clause: str) -> int:
        tok = self.expect("number", what=f"a number after {clause}")
        if not isinstance(tok.value, int) or tok.value < 0:
            raise SoqlError(f"{clause} must be a non-negative integer, got {tok.text}")
        return tok.value

    def order_item(self) -> OrderItem:
        name = self.field_name()
        descending = False
        if self.accept("keyword", "DESC"):
            descending = True
        else:
            self.accept("keyword", "ASC")
        nulls_last = None
        if self.accept("keyword", "NULLS"):
            if self.accept("keyword", "LAST"):
                nulls_last = True
            else:
                self.expect("keyword", "FIRST", what="FIRST or LAST after NULLS")
                nulls_last = False
        return OrderItem(name, descending, nulls_last)

    def condition(self) -> Condition:
        operands = [self.conjunction()]
        while self.accept("keyword", "OR"):
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else BoolOp("OR", tuple(operands))

    def conjunction(self) -> Condition:
        operands = [self.negation()]
        while self.accept("keyword", "AND"):
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else BoolOp("AND", tuple(operands))

    def negation(self) -> Condition:
        if self.accept("keyword", "NOT"):
            return Not(self.negation())
        if self.accept("punct", "("):
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        name = self.field_name()
        if self.accept("keyword", "IN"):
            return Comparison(name, "IN", self.value_list())
        if self.accept("keyword", "NOT"):
            self.expect("keyword", "IN", what="IN after NOT")
            return Comparison(name, "NOT IN", self.value_list())
        if self.accept("keyword", "LIKE"):
            tok = self.expect("string", what="a quoted pattern after LIKE")
            return Comparison(name, "LIKE", tok.value)
        op = self.expect("op", what="a comparison operator (=, !=, <, <=, >, >=, IN, LIKE)").text
        value = self.literal()
        if value is None and op not in ("=", "!="):
            raise SoqlError(f"null can only be compared with = or !=, not {op} (field {name})")
        return Comparison(name, op, value)

    def value_list(self) -> tuple[Any, ...]:
        self.expect("punct", "(")
        values = [self.literal()]
        while self.accept("punct", ","):
            values.append(self.literal())
        self.expect("punct", ")")
        return tuple(values)

    def literal(self) -> Any:
        tok = self.tok
        if tok.kind in ("string", "number", "date", "datetime"):
            self.i += 1
            return tok.value
        if tok.kind == "keyword" and tok.text in ("TRUE", "FALSE", "NULL"):
            self.i += 1
            return {"TRUE": True, "FALSE": False, "NULL": None}[tok.text]
        raise self._fail("a literal (quoted string, number, date, datetime, true, false or null)")


def parse_soql(soql: str) -> SoqlQuery:
    """Parse ``soql``; raise ``SoqlError`` (code ``MALFORMED_QUERY``) naming what is wrong."""
    if not soql or not soql.strip():
        raise SoqlError("empty query: expected SELECT <fields> FROM <object>")
    return _Parser(soql.strip()).query()


# ----------------------------------------------------------------------------- evaluation in Python
def like_to_regex(pattern: str) -> re.Pattern[str]:
    """SOQL LIKE (``%`` any run, ``_`` one character, case-insensitive) as a regex."""
    parts: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            parts.append(re.escape(next(chars, "\\")))
        else:
            parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    # A datetime field compared with a date literal (or the reverse) compares on the same footing.
    if isinstance(left, datetime) and type(right) is date:
        return left, datetime.combine(right, datetime.min.time())
    if type(left) is date and isinstance(right, datetime):
        return datetime.combine(left, datetime.min.time()), right
    if isinstance(left, datetime) and left.tzinfo is not None:
        left = left.astimezone(UTC).replace(tzinfo=None)
    return left, right


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """The value of ``path`` in ``record``: a plain key, or a relationship path into the nested
    parent records the REST API returns (``{"UserRole": {"Name": ...}}``; a null parent gives None).
    """
    if path in record or "." not in path:
        return record.get(path)
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def evaluate(cond: Condition | None, record: Mapping[str, Any]) -> bool:
    """Whether ``record`` (field name -> Python value, naive UTC datetimes) satisfies ``cond``."""
    if cond is None:
        return True
    if isinstance(cond, BoolOp):
        results = (evaluate(c, record) for c in cond.operands)
        return all(results) if cond.op == "AND" else any(results)
    if isinstance(cond, Not):
        return not evaluate(cond.operand, record)
    value = field_value(record, cond.field)
    op, literal = cond.op, cond.value
    if op == "=":
        return value is None if literal is None else value is not None and _eq(value, literal)
    if op == "!=":
        return value is not None if literal is None else value is None or not _eq(value, literal)
    if op == "IN":
        return value is not None and any(_eq(value, v) for v in literal if v is not None)
    if op == "NOT IN":
        return value is None or not any(_eq(value, v) for v in literal if v is not None)
    if op == "LIKE":
        return value is not None and bool(like_to_regex(literal).fullmatch(str(value)))
    if value is None:
        return False
    left, right = _comparable(value, literal)
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        raise SoqlError(
            f"cannot compare field {cond.field} ({type(value).__name__}) with {literal!r}",
            "INVALID_QUERY_FILTER_OPERATOR",
        ) from None


def _eq(value: Any, literal: Any) -> bool:
    left, right = _comparable(value, literal)
    return left == right


def sort_records(records: list[dict[str, Any]], order_by: Iterable[OrderItem]) -> list[dict[str, Any]]:
    """``records`` ordered as ``ORDER BY`` says (stable; SOQL null placement)."""
    result = list(records)
    for item in reversed(list(order_by)):
        present = [r for r in result if field_value(r, item.field) is not None]
        missing = [r for r in result if field_value(r, item.field) is None]
        present.sort(key=lambda r, f=item.field: _comparable(field_value(r, f), None)[0], reverse=item.descending)
        result = present + missing if item.nulls_are_last else missing + present
    return result


def run_in_memory(query: SoqlQuery, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Apply WHERE, ORDER BY, OFFSET and LIMIT to ``records`` (for tests and small objects)."""
    matched = [dict(r) for r in records if evaluate(query.where, r)]
    ordered = sort_records(matched, query.order_by)
    start = query.offset or 0
    end = None if query.limit is None else start + query.limit
    return ordered[start:end]


# ----------------------------------------------------------------------------- compilation to SQL
def to_sql(cond: Condition | None, column: Callable[[str], Any]) -> ColumnElement[bool]:
    """``cond`` as a SQLAlchemy boolean expression; ``column(name)`` resolves field names.

    The SQL has the same meaning as ``evaluate`` (SOQL null semantics included).
    """
    if cond is None:
        return true()
    if isinstance(cond, BoolOp):
        parts = [to_sql(c, column) for c in cond.operands]
        return and_(*parts) if cond.op == "AND" else or_(*parts)
    if isinstance(cond, Not):
        return not_(to_sql(cond.operand, column))
    col = column(cond.field)
    op, literal = cond.op, cond.value
    # Every comparison is two-valued (a null field makes it false, never SQL's unknown), so
    # NOT behaves as in ``evaluate``.
    if op == "=":
        return col.is_(None) if literal is None else and_(col.is_not(None), col == literal)
    if op == "!=":
        return col.is_not(None) if literal is None else or_(col.is_(None), col != literal)
    if op in ("IN", "NOT IN"):
        values = [v for v in literal if v is not None]
        inside = and_(col.is_not(None), col.in_(values)) if values else false()
        return inside if op == "IN" else not_(inside)
    if op == "LIKE":
        return and_(col.is_not(None), col.ilike(literal, escape="\\"))
    compared = {"<": col < literal, "<=": col <= literal, ">": col > literal, ">=": col >= literal}[op]
    return and_(col.is_not(None), compared)


__all__ = [
    "BoolOp",
    "Comparison",
    "Condition",
    "MAX_RELATIONSHIP_DEPTH",
    "Not",
    "OrderItem",
    "SoqlError",
    "SoqlQuery",
    "evaluate",
    "field_value",
    "like_to_regex",
    "parse_datetime_literal",
    "parse_soql",
    "run_in_memory",
    "sort_records",
    "to_sql",
]
