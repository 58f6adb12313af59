"""CSV export of the dashboard's lists: ``?format=csv`` on their JSON endpoints.

The worklist, search results, trending accounts and the intervention outcomes are streamed as
CSV with the same rows as their JSON (the worklist and a search: every matching row, not one
page), a header row, and ``Content-Disposition: attachment`` with a filename naming the list,
the model version and the date.

The file is UTF-8 with a byte-order mark (so Excel reads accented names as they are; Python
reads it with ``encoding="utf-8-sig"``), RFC 4180 line ends, and every text cell quoted
(numbers are not), so a ``;`` inside a name stays inside its cell even where Excel splits on
``;``. Names, reasons and owners come from source systems, so a text cell that begins with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return - what a spreadsheet would run as a
formula - gets a leading ``'`` (OWASP, "CSV Injection"). Numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from fastapi.responses import StreamingResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP's list)."""

MEDIA_TYPE = "text/csv; charset=utf-8"
BOM = "\ufeff"

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def cell(value: Any) -> str | int | float:
    """One CSV cell: numbers as numbers, dates in ISO form, text guarded against formulas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return "" if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def lines(columns: Sequence[Column], rows: Iterable[dict[str, Any]], *, flush_every: int = 500) -> Iterator[bytes]:
    """The CSV of ``rows`` (a header of the columns' names, then one line a row), in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    buffer.write(BOM)
    writer.writerow([cell(name) for name, _ in columns])
    pending = 0
    for row in rows:
        writer.writerow([cell(get(row)) for _, get in columns])
        pending += 1
        if pending >= flush_every:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue().encode("utf-8")


def filename(*parts: Any) -> str:
    """``customer-health-<parts>.csv``, with nothing but letters, digits, ``.``, ``_`` and ``-``."""
    stem = "-".join(["customer-health", *(str(p) for p in parts if p not in (None, ""))])
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:150] + ".csv"


def response(columns: Sequence[Column], rows: Iterable[dict[str, Any]], name: str) -> StreamingResponse:
    """A streamed CSV download of ``rows`` named ``name``."""
    return StreamingResponse(
        lines(columns, rows),
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


def field(name: str, *path: str) -> Column:
    """A column reading ``row[name]`` (or ``row[path[0]][path[1]]...`` when a path is given)."""
    keys = path or (name,)

    def get(row: dict[str, Any]) -> Any:
        value: Any = row
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return name, get


# --------------------------------------------------------------------------- the lists
def worklist_columns(account_url: Callable[[str], str]) -> list[Column]:
    """The worklist's CSV columns (``account_url``: the account page's address)."""
    return [
        field("rank"), field("account_key"), field("account_name"), field("owner_id"), field("owner_name"),
        field("segment"), field("plan"), field("score"), field("model_score", "computed_score"),
        field("override_id"), field("zone"), field("previous_zone"), field("delta_30"), field("arr"),
        field("priority"), field("top_driver", "top_driver", "label"), field("top_driver_points", "top_driver", "points"),
        field("open_action", "open_action", "label"), field("open_action_type", "open_action", "action_type"),
        field("open_action_status", "open_action", "status"), field("open_action_due", "open_action", "due_date"),
        field("open_action_overdue", "open_action", "overdue"), field("open_actions"),
        ("account_url", lambda row: account_url(row["account_key"])),
    ]  # fmt: skip


def search_columns(account_url: Callable[[str], str]) -> list[Column]:
    """A search's CSV columns."""
    return [field("account_key"), field("account_name"), field("score"), field("zone"), field("score_date"),
            ("account_url", lambda row: account_url(row["account_key"]))]  # fmt: skip


def _drivers(kind: str) -> Column:
    return f"drivers_{kind}", lambda row: "; ".join(
        f"{d['label']} ({d['points']:+.1f} pts)" for d in (row.get("drivers") or {}).get(kind, [])
    )


def trending_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The declines, then the recoveries, each with its direction and rank."""
    for direction, movers in (("decline", data["declines"]), ("recovery", data["recoveries"])):
        for rank, mover in enumerate(movers, start=1):
            yield {"direction": direction, "rank": rank, **mover}


def trending_columns(account_url: Callable[[str], str]) -> list[Column]:
    """The trending lists' CSV columns."""
    return [
        field("direction"), field("rank"), field("account_key"), field("account_name"), field("segment"), field("plan"),
        field("score"), field("model_score", "computed_score"), field("override_id"), field("zone"),
        field("previous_zone"), field("delta_30"), field("delta_90"), field("arr"),
        _drivers("changes"), _drivers("down"), _drivers("up"), field("explanation"),
        ("account_url", lambda row: account_url(row["account_key"])),
    ]  # fmt: skip


OUTCOME_FIELDS = ("episodes", "recovered", "still_at_risk", "mature_episodes", "recovery_rate",
                  "median_days_to_recover", "mean_days_to_recover")  # fmt: skip


def intervention_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The outcomes per action type, then the groups the page compares them with."""
    for entry in data["by_action_type"]:
        yield {"group": entry["action_type"], "kind": "action type", **entry}
    for key, label in (("overall", "all episodes"), ("with_action", "with a delivered action"),
                       ("no_action", "no action delivered"), ("decided_not_delivered", "decided, none delivered")):  # fmt: skip
        yield {"group": label, "kind": "all", **data[key]}


def intervention_columns() -> list[Column]:
    """The intervention outcomes' CSV columns."""
    return [
        field("group"), field("kind"), *(field(name) for name in OUTCOME_FIELDS),
        ("actions_by_status", lambda row: "; ".join(f"{s} {n}" for s, n in (row.get("statuses") or {}).items())),
    ]  # fmt: skip
