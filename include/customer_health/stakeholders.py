"""Stakeholder-level health: the people inside each account, beside the account's score.

The seeds ask for "rollup views for enterprise accounts showing both aggregate and
stakeholder-level health": an account's score can hold steady while the person who carries the
product inside the customer stops using it, or the executive sponsor goes quiet. This module
computes, for a date D, one row per account and person (``schema.stakeholder_health``), from the
raw tables only:

* **Who** - every Salesforce contact of the account (``raw_sf_contact``, existing at D, not
  deleted), and every product user of the account's product account (``raw_product_user``) who
  held a login at D or lost it within the last 120 days. A user and a contact are the same
  person when their e-mails are equal, ignoring case and surrounding blanks, within the account.
  A contact without a login has no engagement (NULL, not zero).
* **Engagement** (``raw_product_user_daily``, extracted by ``sources.product_users``) - active
  days and uses of a core feature over 28 and 90 days, active days in the last 30 days against
  the 30 before them (``engagement_change_30``: the relative change, NULL when the earlier
  window had none), the last login within ``LAST_LOGIN_DAYS`` (180), when the login was created
  and deactivated. NULL for everyone when the per-user history does not cover those 180 days.
* **Sentiment** - the contact's latest NPS answer (``raw_sf_nps_response.contact_id``), and the
  CSAT of the tickets the person filed (``raw_zd_ticket.requester_email``; ratings of the last
  365 days, good of rated) with the tickets filed in 90 days; NULL when the account has no
  Zendesk organization at D (a mapped organization with nothing filed is a real 0).
* **Relationship** - the latest completed Salesforce activity logged with the contact
  (``raw_sf_task.who_id``).
* **Roles** - the *executive sponsor* is the contact Salesforce flags (``Executive_Sponsor__c``).
  The *champion* is defined from the data: of the people with a login who are not the sponsor,
  the one with the most active days in the 90 days before the last 30 (D - 119 .. D - 30; ties:
  more core actions, then the key), at least ``CHAMPION_MIN_DAYS`` of them. Named contacts come
  first (the champion is someone a CSM can call); only when no contact qualifies is the most
  active unnamed user the champion. Choosing on the window *before* the last 30 days keeps the
  champion the same person while their own last month is judged: "the champion's engagement
  dropped" compares the last 30 days with the champion's established habit.

``stakeholder_alerts`` turns a date's rows into the stakeholder-level signals people read (the
champion's engagement dropping, the champion losing their login, the executive sponsor not
logging in, detractors among the contacts, unhappy support ratings). They are shown on the
account page and the enterprise rollup; they are **not** weighted into the health score (the
page says so): the model is versioned configuration, recalibrated against churn, and these
signals have not been through that yet.

Point in time: every fact counts by its own stamp at D (created, responded, rated, active day,
activity date); contacts and users deleted in their source are left out (their deletion date is
unknown). The daily run writes D's rows after scoring; a re-run replaces them whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, String, and_, case, cast, delete, func, or_, select

from customer_health.sources.product_users import coverage_start
from customer_health.warehouse.io import as_date, get_watermark, upsert_rows, utcnow
from customer_health.warehouse.schema import (
    account_identity_map,
    raw_product_user,
    raw_product_user_daily,
    raw_sf_contact,
    raw_sf_nps_response,
    raw_sf_task,
    raw_zd_satisfaction_rating,
    raw_zd_ticket,
    signal_values,
    stakeholder_health,
)
from customer_health.wording import count, days

WINDOW_DAYS = 120
"""How far back a person's activity counts for D (the champion window reaches D - 119)."""
LAST_LOGIN_DAYS = 180
"""How far back a person's last login is looked for (the per-user history the extraction keeps)."""
CHAMPION_WINDOW = (119, 30)
"""The champion is chosen on the active days of D - 119 .. D - 30."""
CHAMPION_MIN_DAYS = 5
CHAMPION_DROP = 0.5
"""An alert when the champion's active days fell by at least this share (last 30 vs the 30 before)."""
CHAMPION_DROP_MIN_DAYS = 6
"""... and the champion was active on at least this many days in the 30 days before (a habit of
about two days a week: below it, a few days either way is noise, not a drop)."""
SPONSOR_SILENT_DAYS = 45
DETRACTOR_MAX = 6
"""An NPS answer of 0-6 is a detractor's (the NPS convention)."""
NPS_RECENT_DAYS = 180
UNHAPPY_MIN_RATED = 2
USER_PREFIX = "user:"
USERS_SHOWN = 10
"""Product users without a Salesforce contact an account page lists (the most active)."""


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min)


def _email_key(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    return text or None


# --------------------------------------------------------------------------- computing a date
def _accounts_of_date(conn: Connection, as_of: date) -> list[str]:
    """The accounts scored on ``as_of`` (those with stored signal input that day)."""
    sv = signal_values.c
    return sorted(conn.execute(select(sv.account_key).where(sv.as_of_date == as_of)).scalars())


def _contacts(conn: Connection, as_of: date) -> pd.DataFrame:
    c = raw_sf_contact.c
    sv = signal_values.c
    m = account_identity_map.alias("contact_map")
    # A merged duplicate's contacts belong to the account the map names (as the signals do).
    joined = raw_sf_contact.outerjoin(m, and_(m.c.system == "salesforce", m.c.source_id == c.account_id))
    account = func.coalesce(m.c.account_key, c.account_id)
    stmt = (
        select(
            account.label("account_key"), c.id.label("contact_id"), c.first_name, c.last_name, c.email, c.title,
            c.is_executive_sponsor,
        )
        .select_from(joined.join(signal_values, and_(sv.account_key == account, sv.as_of_date == as_of)))
        .where(c.is_deleted.is_(False), or_(c.created_at.is_(None), c.created_at < _day_start(as_of + timedelta(days=1))))
    )  # fmt: skip
    frame = pd.DataFrame(conn.execute(stmt).all(), columns=[
        "account_key", "contact_id", "first_name", "last_name", "email", "title", "is_executive_sponsor"])  # fmt: skip
    names = (frame["first_name"].fillna("") + " " + frame["last_name"].fillna("")).str.strip()
    frame["name"] = names.where(names != "", None)
    frame["email_key"] = frame["email"].map(_email_key)
    frame["is_executive_sponsor"] = frame["is_executive_sponsor"].fillna(False).astype(bool)
    return frame.drop(columns=["first_name", "last_name"])


def _users(conn: Connection, as_of: date) -> pd.DataFrame:
    u = raw_product_user.c
    sv = signal_values.c
    m = account_identity_map.alias("user_map")
    end = _day_start(as_of + timedelta(days=1))
    stmt = (
        select(m.c.account_key, u.id.label("product_user_id"), u.email.label("user_email"), u.created_at, u.deactivated_at)
        .select_from(
            raw_product_user.join(m, and_(m.c.system == "product", m.c.source_id == u.account_id)).join(
                signal_values, and_(sv.account_key == m.c.account_key, sv.as_of_date == as_of)
            )
        )
        .where(
            u.is_deleted.is_(False),
            u.created_at < end,
            or_(u.deactivated_at.is_(None), u.deactivated_at >= _day_start(as_of - timedelta(days=WINDOW_DAYS - 1))),
        )
    )
    frame = pd.DataFrame(conn.execute(stmt).all(), columns=["account_key", "product_user_id", "user_email", "created_at",
                                                            "deactivated_at"])  # fmt: skip
    frame["login_created_on"] = frame["created_at"].map(as_date)
    # A deactivation after D is not known at D.
    frame["login_deactivated_on"] = [
        d if d is not None and d <= as_of else None for d in frame["deactivated_at"].map(as_date)
    ]
    frame["email_key"] = frame["user_email"].map(_email_key)
    return frame.drop(columns=["created_at", "deactivated_at"])


def _activity(conn: Connection, as_of: date) -> pd.DataFrame:
    """Per product user: active days, core actions and the last login in the windows of D."""
    d = raw_product_user_daily.c
    first_champion, last_champion = (as_of - timedelta(days=k) for k in CHAMPION_WINDOW)

    def days_since(lo: date, hi: date = as_of) -> Any:
        return func.sum(case((and_(d.day >= lo, d.day <= hi), 1), else_=0))

    def core_since(lo: date) -> Any:
        return func.sum(case((d.day >= lo, d.core_actions), else_=0))

    stmt = (
        select(
            d.user_id.label("product_user_id"),
            days_since(as_of - timedelta(days=27)).label("active_days_28"),
            days_since(as_of - timedelta(days=89)).label("active_days_90"),
            core_since(as_of - timedelta(days=27)).label("core_actions_28"),
            core_since(as_of - timedelta(days=89)).label("core_actions_90"),
            days_since(as_of - timedelta(days=29)).label("active_days_30"),
            days_since(as_of - timedelta(days=59), as_of - timedelta(days=30)).label("active_days_prev_30"),
            days_since(first_champion, last_champion).label("champion_days"),
            func.sum(case((and_(d.day >= first_champion, d.day <= last_champion), d.core_actions), else_=0)).label(
                "champion_core"
            ),
            func.max(case((d.logins > 0, d.day))).label("last_login_on"),
        )
        .where(d.day > as_of - timedelta(days=LAST_LOGIN_DAYS), d.day <= as_of, d.events > 0)
        .group_by(d.user_id)
    )
    frame = pd.DataFrame(conn.execute(stmt).all(), columns=[
        "product_user_id", "active_days_28", "active_days_90", "core_actions_28", "core_actions_90", "active_days_30",
        "active_days_prev_30", "champion_days", "champion_core", "last_login_on"])  # fmt: skip
    frame["last_login_on"] = frame["last_login_on"].map(as_date)
    return frame


def _nps(conn: Connection, as_of: date) -> pd.DataFrame:
    """Each contact's latest NPS answer known at D."""
    n = raw_sf_nps_response.c
    ranked = (
        select(
            n.contact_id, n.score, n.responded_at,
            func.row_number().over(partition_by=n.contact_id, order_by=(n.responded_at.desc(), n.id.desc())).label("k"),
        )
        .where(n.contact_id.is_not(None), n.is_deleted.is_(False), n.score.is_not(None),
               n.responded_at < _day_start(as_of + timedelta(days=1)))
        .subquery()
    )  # fmt: skip
    rows = conn.execute(select(ranked.c.contact_id, ranked.c.score, ranked.c.responded_at).where(ranked.c.k == 1)).all()
    frame = pd.DataFrame(rows, columns=["contact_id", "latest_nps", "latest_nps_on"])
    frame["latest_nps_on"] = frame["latest_nps_on"].map(as_date)
    return frame


def _support(conn: Connection, as_of: date) -> tuple[pd.DataFrame, set[str]]:
    """Per (account, requester e-mail): tickets filed in 90 days and the CSAT of their ratings
    in 365 days; and the accounts with a Zendesk organization at D."""
    t = raw_zd_ticket.c
    r = raw_zd_satisfaction_rating.c
    m = account_identity_map.alias("ticket_map")
    end = _day_start(as_of + timedelta(days=1))
    mapped = raw_zd_ticket.join(m, and_(m.c.system == "zendesk", m.c.source_id == cast(t.organization_id, String)))
    email = func.lower(func.trim(t.requester_email))
    tickets = conn.execute(
        select(m.c.account_key, email.label("email_key"),
               func.sum(case((t.created_at >= _day_start(as_of - timedelta(days=89)), 1), else_=0)).label("tickets_90"))
        .select_from(mapped)
        .where(t.requester_email.is_not(None), t.is_deleted.is_(False), t.created_at < end)
        .group_by(m.c.account_key, email)
    ).all()  # fmt: skip
    ratings = conn.execute(
        select(m.c.account_key, email.label("email_key"),
               func.sum(case((r.score == "good", 1), else_=0)).label("csat_good"),
               func.sum(case((r.score.in_(("good", "bad")), 1), else_=0)).label("csat_rated"))
        .select_from(mapped.join(raw_zd_satisfaction_rating, r.ticket_id == t.id))
        .where(t.requester_email.is_not(None), r.is_deleted.is_(False),
               r.created_at >= _day_start(as_of - timedelta(days=364)), r.created_at < end)
        .group_by(m.c.account_key, email)
    ).all()  # fmt: skip
    frame = pd.DataFrame(tickets, columns=["account_key", "email_key", "tickets_90"]).merge(
        pd.DataFrame(ratings, columns=["account_key", "email_key", "csat_good", "csat_rated"]),
        on=["account_key", "email_key"], how="outer",
    )  # fmt: skip
    im = account_identity_map.c
    connected = set(conn.execute(select(im.account_key).where(im.system == "zendesk").distinct()).scalars())
    return frame, connected


def _touches(conn: Connection, as_of: date) -> pd.DataFrame:
    """Each contact's latest completed Salesforce activity on or before D."""
    k = raw_sf_task.c
    rows = conn.execute(
        select(k.who_id, func.max(k.activity_date))
        .where(k.who_id.is_not(None), k.is_deleted.is_(False), k.status == "Completed", k.activity_date <= as_of,
               or_(k.created_at.is_(None), k.created_at < _day_start(as_of + timedelta(days=1))))
        .group_by(k.who_id)
    ).all()  # fmt: skip
    frame = pd.DataFrame(rows, columns=["contact_id", "last_touch_on"])
    frame["last_touch_on"] = frame["last_touch_on"].map(as_date)
    return frame


def history_covers(conn: Connection, as_of: date) -> bool:
    """Whether the per-user activity extracted so far covers the ``LAST_LOGIN_DAYS`` to D."""
    first = coverage_start(conn)
    last = get_watermark(conn, "product", "user_daily")
    return first is not None and last is not None and first <= as_of - timedelta(days=LAST_LOGIN_DAYS - 1) and (
        date.fromisoformat(last) >= as_of
    )


ENGAGEMENT = ("active_days_28", "active_days_90", "core_actions_28", "core_actions_90", "active_days_30",
              "active_days_prev_30")  # fmt: skip
COLUMNS = [c.name for c in stakeholder_health.columns]


def compute_stakeholders(engine: Engine | Connection, as_of: date) -> pd.DataFrame:
    """Every stakeholder of every account scored on ``as_of``: the rows of ``stakeholder_health``."""
    if isinstance(engine, Connection):
        return _compute(engine, as_of)
    with engine.connect() as conn:
        return _compute(conn, as_of)


def _compute(conn: Connection, as_of: date) -> pd.DataFrame:
    if not _accounts_of_date(conn, as_of):
        return pd.DataFrame(columns=COLUMNS)
    contacts, users = _contacts(conn, as_of), _users(conn, as_of)
    covered = history_covers(conn, as_of)
    # One login per contact: the same e-mail in the account, the live login first, then the newest.
    users = users.assign(live=users["login_deactivated_on"].isna()).sort_values(
        ["account_key", "email_key", "live", "login_created_on", "product_user_id"],
        ascending=[True, True, False, False, True], na_position="last",
    )  # fmt: skip
    matchable = users[users["email_key"].notna()].drop_duplicates(["account_key", "email_key"])
    people = contacts.merge(
        matchable[["account_key", "email_key", "product_user_id", "login_created_on", "login_deactivated_on"]],
        on=["account_key", "email_key"], how="left",
    )  # fmt: skip
    matched = set(people["product_user_id"].dropna())
    others = users[~users["product_user_id"].isin(matched)].rename(columns={"user_email": "email"})
    others = others.assign(contact_id=None, name=None, title=None, is_executive_sponsor=False)
    people = pd.concat([people, others[people.columns.intersection(others.columns)]], ignore_index=True)
    people["stakeholder_key"] = [
        c if isinstance(c, str) else f"{USER_PREFIX}{u}" for c, u in zip(people["contact_id"], people["product_user_id"], strict=True)
    ]  # fmt: skip
    has_login = people["product_user_id"].notna()

    activity = _activity(conn, as_of) if covered else pd.DataFrame(columns=["product_user_id"])
    people = people.merge(activity, on="product_user_id", how="left")
    for name in (*ENGAGEMENT, "champion_days", "champion_core"):
        if name not in people.columns:
            people[name] = None
        # A login with no activity is a real 0; no login, or no history, is no data.
        filled = pd.to_numeric(people[name], errors="coerce").fillna(0).astype("int64")
        people[name] = filled.astype(object).where(has_login & covered, None)
    if "last_login_on" not in people.columns:
        people["last_login_on"] = None
    previous = pd.to_numeric(people["active_days_prev_30"], errors="coerce")
    recent = pd.to_numeric(people["active_days_30"], errors="coerce")
    people["engagement_change_30"] = ((recent - previous) / previous).where(previous > 0)

    people = people.merge(_nps(conn, as_of), on="contact_id", how="left")
    support, connected = _support(conn, as_of)
    people = people.merge(support, on=["account_key", "email_key"], how="left")
    zendesk = people["account_key"].isin(connected)
    for name in ("tickets_90", "csat_good", "csat_rated"):
        filled = pd.to_numeric(people[name], errors="coerce").fillna(0).astype("int64")
        people[name] = filled.astype(object).where(zendesk, None)
    people = people.merge(_touches(conn, as_of), on="contact_id", how="left")
    people["is_champion"] = _champions(people)
    people["as_of_date"] = as_of
    people["computed_at"] = utcnow()
    return people.reindex(columns=COLUMNS).sort_values(["account_key", "stakeholder_key"]).reset_index(drop=True)


def _champions(people: pd.DataFrame) -> pd.Series:
    """True for each account's champion (see the module docstring)."""
    days_ = pd.to_numeric(people["champion_days"], errors="coerce").fillna(0)
    core = pd.to_numeric(people["champion_core"], errors="coerce").fillna(0)
    eligible = people["product_user_id"].notna() & ~people["is_executive_sponsor"].astype(bool) & (days_ >= CHAMPION_MIN_DAYS)
    ranked = people.assign(named=people["contact_id"].notna(), days_=days_, core_=core)[eligible]
    ranked = ranked.sort_values(["account_key", "named", "days_", "core_", "stakeholder_key"],
                                ascending=[True, False, False, False, True])  # fmt: skip
    chosen = ranked.drop_duplicates("account_key").index
    return pd.Series(people.index.isin(chosen), index=people.index)


def write_stakeholders(engine: Engine, as_of: date, frame: pd.DataFrame) -> int:
    """Replace ``as_of``'s rows with ``frame`` in one transaction; returns the rows written."""
    with engine.begin() as conn:
        conn.execute(delete(stakeholder_health).where(stakeholder_health.c.as_of_date == as_of))
        return upsert_rows(conn, stakeholder_health, frame) if not frame.empty else 0


def run_stakeholder_health(engine: Engine, as_of: date) -> dict[str, Any]:
    """Compute and store ``as_of``'s stakeholders; counts for the task log and XCom."""
    with engine.connect() as conn:
        covered = history_covers(conn, as_of)
    frame = compute_stakeholders(engine, as_of)
    written = write_stakeholders(engine, as_of, frame)
    people = [Stakeholder.from_row(r) for r in frame.to_dict("records")]
    by_account: dict[str, list[Stakeholder]] = {}
    for person in people:
        by_account.setdefault(person.account_key, []).append(person)
    alerts = [a for group in by_account.values() for a in stakeholder_alerts(group, as_of)]
    return {
        "as_of": as_of.isoformat(),
        "accounts": len(by_account),
        "stakeholders": written,
        "contacts": sum(1 for p in people if p.contact_id),
        "contacts_with_login": sum(1 for p in people if p.contact_id and p.product_user_id),
        "champions": sum(1 for p in people if p.is_champion),
        "engagement_history": covered,
        "alerts": {kind: sum(1 for a in alerts if a.kind == kind) for kind in sorted({a.kind for a in alerts})},
    }


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Stakeholder:
    """One person of one account on one date (a ``stakeholder_health`` row)."""

    account_key: str
    stakeholder_key: str
    as_of_date: date
    contact_id: str | None
    product_user_id: str | None
    name: str | None
    email: str | None
    title: str | None
    is_executive_sponsor: bool
    is_champion: bool
    login_created_on: date | None
    login_deactivated_on: date | None
    active_days_28: int | None
    active_days_90: int | None
    core_actions_28: int | None
    core_actions_90: int | None
    active_days_30: int | None
    active_days_prev_30: int | None
    engagement_change_30: float | None
    last_login_on: date | None
    latest_nps: int | None
    latest_nps_on: date | None
    csat_good: int | None
    csat_rated: int | None
    tickets_90: int | None
    last_touch_on: date | None

    @classmethod
    def from_row(cls, row: Any) -> Stakeholder:
        """From a stored row (or a ``compute_stakeholders`` record)."""
        data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)

        def number(key: str, kind: type = int) -> Any:
            value = data.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return None
            return kind(value)

        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)

        return cls(
            account_key=str(data["account_key"]), stakeholder_key=str(data["stakeholder_key"]),
            as_of_date=as_date(data["as_of_date"]), contact_id=text("contact_id"), product_user_id=text("product_user_id"),
            name=text("name"), email=text("email"), title=text("title"),
            is_executive_sponsor=bool(data.get("is_executive_sponsor")), is_champion=bool(data.get("is_champion")),
            login_created_on=as_date(data.get("login_created_on")), login_deactivated_on=as_date(data.get("login_deactivated_on")),
            active_days_28=number("active_days_28"), active_days_90=number("active_days_90"),
            core_actions_28=number("core_actions_28"), core_actions_90=number("core_actions_90"),
            active_days_30=number("active_days_30"), active_days_prev_30=number("active_days_prev_30"),
            engagement_change_30=number("engagement_change_30", float), last_login_on=as_date(data.get("last_login_on")),
            latest_nps=number("latest_nps"), latest_nps_on=as_date(data.get("latest_nps_on")),
            csat_good=number("csat_good"), csat_rated=number("csat_rated"), tickets_90=number("tickets_90"),
            last_touch_on=as_date(data.get("last_touch_on")),
        )  # fmt: skip

    @property
    def who(self) -> str:
        """How a page names the person: the contact's name and title, else the login's e-mail."""
        if self.name:
            return f"{self.name} ({self.title})" if self.title else self.name
        return self.email or self.stakeholder_key

    @property
    def has_login(self) -> bool:
        """Whether the person has (or recently had) a product login."""
        return self.product_user_id is not None

    @property
    def roles(self) -> list[str]:
        """``Executive sponsor`` and/or ``Champion``."""
        return [r for r, held in (("Executive sponsor", self.is_executive_sponsor), ("Champion", self.is_champion)) if held]

    @property
    def csat(self) -> float | None:
        """The share of the person's rated tickets rated good (None without a rating)."""
        return self.csat_good / self.csat_rated if self.csat_rated else None


@dataclass(frozen=True)
class StakeholderAlert:
    """A stakeholder-level signal a person reads: what happened, to whom, how serious."""

    kind: str
    severity: str  # high | medium | info
    stakeholder_key: str | None
    text: str


@dataclass
class AccountStakeholders:
    """An account's stakeholders on one date, sponsor and champion first, with their alerts."""

    account_key: str
    as_of_date: date | None
    people: list[Stakeholder] = field(default_factory=list)
    alerts: list[StakeholderAlert] = field(default_factory=list)

    @property
    def sponsor(self) -> Stakeholder | None:
        return next((p for p in self.people if p.is_executive_sponsor), None)

    @property
    def champion(self) -> Stakeholder | None:
        return next((p for p in self.people if p.is_champion), None)

    @property
    def contacts(self) -> list[Stakeholder]:
        return [p for p in self.people if p.contact_id]

    @property
    def other_users(self) -> list[Stakeholder]:
        """Product users who are not Salesforce contacts, most active first."""
        return [p for p in self.people if not p.contact_id]

    def page(self, users_shown: int = USERS_SHOWN) -> dict[str, Any]:
        """What a page shows: every contact, the sponsor and champion, the most active other
        users (``users_shown``), each as words and numbers; the alerts; what was left out."""
        shown = [p for p in self.people if p.contact_id or p.is_champion]
        others = [p for p in self.other_users if not p.is_champion]
        shown += others[:users_shown]
        return {
            "as_of_date": self.as_of_date,
            "alerts": [vars(a) for a in self.alerts],
            "people": [_page_row(p) for p in shown],
            "contacts": len(self.contacts),
            "contacts_with_login": sum(1 for p in self.contacts if p.has_login),
            "users_not_shown": max(0, len(others) - users_shown),
            "sponsor": self.sponsor.who if self.sponsor else None,
            "champion": self.champion.who if self.champion else None,
        }


def _page_row(person: Stakeholder) -> dict[str, Any]:
    nps = f"{person.latest_nps} on {person.latest_nps_on.isoformat()}" if person.latest_nps is not None and person.latest_nps_on else None
    csat = None
    if person.csat_rated:
        csat = f"{person.csat_good or 0} of {count(person.csat_rated, 'rated ticket')} good"
    elif person.csat_rated == 0 and person.tickets_90:
        csat = "no rating yet"
    return {
        "stakeholder_key": person.stakeholder_key, "who": person.who, "email": person.email,
        "contact_id": person.contact_id, "roles": person.roles, "engagement": describe_engagement(person),
        "engagement_change_30": person.engagement_change_30, "active_days_30": person.active_days_30,
        "active_days_90": person.active_days_90, "core_actions_28": person.core_actions_28,
        "last_login_on": person.last_login_on, "login_deactivated_on": person.login_deactivated_on,
        "nps": nps, "csat": csat, "tickets_90": person.tickets_90, "last_touch_on": person.last_touch_on,
    }  # fmt: skip


def _order(person: Stakeholder) -> tuple:
    return (not person.is_executive_sponsor, not person.is_champion, person.contact_id is None,
            -(person.active_days_90 or 0), person.stakeholder_key)  # fmt: skip


def read_stakeholders(conn: Connection, account_keys: Sequence[str], as_of: date) -> dict[str, AccountStakeholders]:
    """Each account's stakeholders on its latest stakeholder date on or before ``as_of``."""
    sh = stakeholder_health.c
    keys = sorted(set(account_keys))
    found: dict[str, AccountStakeholders] = {}
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        latest = (
            select(sh.account_key, func.max(sh.as_of_date).label("as_of_date"))
            .where(sh.account_key.in_(part), sh.as_of_date <= as_of)
            .group_by(sh.account_key)
            .subquery()
        )
        rows = conn.execute(
            select(stakeholder_health).join(
                latest, and_(latest.c.account_key == sh.account_key, latest.c.as_of_date == sh.as_of_date)
            )
        ).all()
        for row in rows:
            person = Stakeholder.from_row(row)
            entry = found.setdefault(person.account_key, AccountStakeholders(person.account_key, person.as_of_date))
            entry.people.append(person)
    for entry in found.values():
        entry.people.sort(key=_order)
        entry.alerts = stakeholder_alerts(entry.people, entry.as_of_date)
    return found


def account_stakeholders(conn: Connection, account_key: str, as_of: date) -> AccountStakeholders:
    """One account's stakeholders on its latest stakeholder date on or before ``as_of``."""
    return read_stakeholders(conn, [account_key], as_of).get(account_key) or AccountStakeholders(account_key, None)


# --------------------------------------------------------------------------- alerts
def _percent(share: float) -> str:
    return f"{round(100 * abs(share))}%"


def stakeholder_alerts(people: Iterable[Stakeholder], as_of: date | None) -> list[StakeholderAlert]:
    """The stakeholder-level signals of one account's people on one date, most serious first."""
    people = list(people)
    if not people or as_of is None:
        return []
    alerts: list[StakeholderAlert] = []
    sponsor = next((p for p in people if p.is_executive_sponsor), None)
    champion = next((p for p in people if p.is_champion), None)
    if champion is not None:
        if champion.login_deactivated_on is not None:
            alerts.append(StakeholderAlert("champion_left", "high", champion.stakeholder_key,
                                           f"Champion {champion.who} no longer has a product login "
                                           f"(deactivated on {champion.login_deactivated_on.isoformat()})."))  # fmt: skip
        elif (
            champion.engagement_change_30 is not None
            and champion.engagement_change_30 <= -CHAMPION_DROP
            and (champion.active_days_prev_30 or 0) >= CHAMPION_DROP_MIN_DAYS
        ):
            alerts.append(StakeholderAlert(
                "champion_drop", "high", champion.stakeholder_key,
                f"Champion {champion.who} used the product on {count(champion.active_days_30 or 0, 'day')} in the last "
                f"30, {_percent(champion.engagement_change_30)} fewer than the "
                f"{count(champion.active_days_prev_30 or 0, 'day')} of the 30 days before.",
            ))  # fmt: skip
    if sponsor is None:
        alerts.append(StakeholderAlert("no_sponsor", "info", None, "No executive sponsor is recorded in Salesforce."))
    elif sponsor.has_login and sponsor.login_deactivated_on is None and sponsor.active_days_90 is not None:
        if sponsor.last_login_on is None:
            alerts.append(StakeholderAlert("sponsor_silent", "medium", sponsor.stakeholder_key,
                                           f"Executive sponsor {sponsor.who} has not logged in for over "
                                           f"{days(LAST_LOGIN_DAYS)}."))  # fmt: skip
        elif (as_of - sponsor.last_login_on).days >= SPONSOR_SILENT_DAYS:
            alerts.append(StakeholderAlert(
                "sponsor_silent", "medium", sponsor.stakeholder_key,
                f"Executive sponsor {sponsor.who} has not logged in for {days((as_of - sponsor.last_login_on).days)} "
                f"(last login {sponsor.last_login_on.isoformat()}).",
            ))  # fmt: skip
    for person in people:
        if (
            person.latest_nps is not None
            and person.latest_nps <= DETRACTOR_MAX
            and person.latest_nps_on is not None
            and (as_of - person.latest_nps_on).days < NPS_RECENT_DAYS
        ):
            role = " ".join(person.roles[:1]) or "Contact"
            severity = "high" if person.is_executive_sponsor or person.is_champion else "medium"
            alerts.append(StakeholderAlert(
                "detractor", severity, person.stakeholder_key,
                f"{role} {person.who} answered {person.latest_nps} out of 10 to the NPS survey on "
                f"{person.latest_nps_on.isoformat()}.",
            ))  # fmt: skip
        if person.csat_rated is not None and person.csat_rated >= UNHAPPY_MIN_RATED and (person.csat or 0) < 0.5:
            bad = person.csat_rated - (person.csat_good or 0)
            alerts.append(StakeholderAlert(
                "unhappy_with_support", "medium", person.stakeholder_key,
                f"{person.who} rated support bad on {bad} of {count(person.csat_rated, 'rated ticket')} in the last year.",
            ))  # fmt: skip
    rank = {"high": 0, "medium": 1, "info": 2}
    return sorted(alerts, key=lambda a: rank[a.severity])


def describe_engagement(person: Stakeholder) -> str:
    """The person's product use in words (for the pages): active days and the trend."""
    if not person.has_login:
        return "no product login"
    if person.active_days_30 is None:
        return "no per-user history for this date"
    text = f"active on {count(person.active_days_30, 'day')} of the last 30"
    if person.engagement_change_30 is not None and abs(person.engagement_change_30) >= 0.05:
        direction = "up" if person.engagement_change_30 > 0 else "down"
        text += f", {direction} {_percent(person.engagement_change_30)} on the 30 days before"
    elif person.active_days_prev_30 == 0 and person.active_days_30:
        text += ", none in the 30 days before"
    return text


__all__ = [
    "AccountStakeholders",
    "Stakeholder",
    "StakeholderAlert",
    "account_stakeholders",
    "compute_stakeholders",
    "describe_engagement",
    "history_covers",
    "read_stakeholders",
    "run_stakeholder_health",
    "stakeholder_alerts",
    "write_stakeholders",
]
