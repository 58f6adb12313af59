"""The enterprise rollup page: a parent account's aggregate health beside each child's, and
the people in them.

The seeds ask for "rollup views for enterprise accounts showing both aggregate and
stakeholder-level health". A parent account (one whose Salesforce children are scored) shows:

* the **aggregate**: its rollup score (``health_score_rollups``: the ARR-weighted score of its
  direct children and, when scored, itself; ``scoring.rollup``) and its own score;
* each **child** (and the parent itself) with its score, zone, 30-day change and ARR, its
  executive sponsor and champion, and its stakeholder alerts (``customer_health.stakeholders``),
  most urgent first.

Reads through primary keys and account indexes: the parent's children from the crosswalk, their
latest scores probed by date (``scoring.history.latest_account_scores``), one rollup row.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, select

from customer_health.scoring import history as history_store
from customer_health.sources.roster import roster_table
from customer_health.stakeholders import read_stakeholders
from customer_health.warehouse.schema import (
    account_crosswalk,
    health_score_rollups,
    health_scores,
)

HS = health_scores.c
SEVERITY = {"high": 0, "medium": 1, "info": 2}


def parent_of(conn: Connection, account_key: str) -> str | None:
    """The account's parent (crosswalk, else Salesforce), or None."""
    cw = account_crosswalk.c
    parent = conn.execute(select(cw.parent_account_key).where(cw.account_key == account_key)).scalar()
    if parent is None:
        roster = roster_table()
        parent = conn.execute(select(roster.c.parent_id).where(roster.c.id == account_key)).scalar()
    return parent or None


def children_of(conn: Connection, parent_key: str) -> list[tuple[str, str | None]]:
    """The parent's direct children (key, name), by name."""
    cw = account_crosswalk.c
    rows = conn.execute(
        select(cw.account_key, cw.account_name).where(cw.parent_account_key == parent_key, cw.account_key != parent_key)
        .order_by(cw.account_name, cw.account_key)
    ).all()  # fmt: skip
    return [(r.account_key, r.account_name) for r in rows]


def rollup_key(conn: Connection, account_key: str) -> str | None:
    """Which rollup an account page links to: its own when it has children, else its parent's."""
    if children_of(conn, account_key):
        return account_key
    return parent_of(conn, account_key)


def rollup(conn: Connection, view: Any, parent_key: str) -> dict[str, Any] | None:
    """The rollup page's data for ``parent_key`` (None when it has no child account)."""
    children = children_of(conn, parent_key)
    if not children:
        return None
    cw = account_crosswalk.c
    parent_name = conn.execute(select(cw.account_name).where(cw.account_key == parent_key)).scalar()
    keys = [parent_key, *(k for k, _ in children)]
    scores: dict[str, Any] = {}
    aggregate = None
    as_of: date | None = view.as_of if view is not None else None
    if view is not None:
        columns = [HS.account_key, HS.as_of_date, HS.score, HS.computed_score, HS.zone, HS.delta_30, HS.arr, HS.explanation]
        scores = history_store.latest_account_scores(conn, view.version, keys, view.as_of, columns)
        r = health_score_rollups.c
        row = conn.execute(
            select(health_score_rollups)
            .where(r.parent_account_key == parent_key, r.model_version == view.version, r.as_of_date <= view.as_of)
            .order_by(r.as_of_date.desc()).limit(1)
        ).first()  # fmt: skip
        aggregate = row._asdict() if row is not None else None
    people = read_stakeholders(conn, keys, as_of) if as_of is not None else {}
    names = {parent_key: parent_name, **dict(children)}
    members = []
    for key in keys:
        score = scores.get(key)
        group = people.get(key)
        page = group.page(users_shown=0) if group is not None else None
        members.append({
            "account_key": key, "account_name": names.get(key), "is_parent": key == parent_key,
            "score": score.score if score is not None else None, "zone": score.zone if score is not None else None,
            "delta_30": score.delta_30 if score is not None else None, "arr": score.arr if score is not None else None,
            "score_date": score.as_of_date if score is not None else None,
            "explanation": score.explanation if score is not None else None,
            "sponsor": page["sponsor"] if page else None, "champion": page["champion"] if page else None,
            "alerts": page["alerts"] if page else [], "stakeholders_on": page["as_of_date"] if page else None,
            "contacts": page["contacts"] if page else 0,
        })  # fmt: skip
    own = next(m for m in members if m["is_parent"])
    children_rows = sorted((m for m in members if not m["is_parent"]),
                           key=lambda m: (min((SEVERITY[a["severity"]] for a in m["alerts"]), default=3),
                                          m["score"] if m["score"] is not None else 101))  # fmt: skip
    zones: dict[str, int] = {}
    for m in children_rows:
        if m["zone"]:
            zones[m["zone"]] = zones.get(m["zone"], 0) + 1
    return {
        "parent_account_key": parent_key, "parent_name": parent_name,
        "model_version": view.version if view is not None else None, "as_of_date": as_of,
        "aggregate": aggregate, "parent": own, "children": children_rows, "child_zones": zones,
        "arr": sum(m["arr"] or 0.0 for m in members),
        "alerts": sum(1 for m in members for a in m["alerts"] if a["severity"] != "info"),
    }  # fmt: skip
