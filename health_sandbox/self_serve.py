"""The second synthetic company: a self-serve subscription product, unlike the first in structure.

The first company (``company.py``) is a B2B seat business with CSMs, contracts, Salesforce and
Zendesk. This one is what a large share of subscription businesses look like instead, and the
kind of company issue #18's foreign data came from: product events and monthly card billing,
nothing else. Its story below was fixed and committed before any generator code or model work
on it, and is never tuned to make a model, a signal or a benchmark look good. Its figures are
what the story implies; a generated company that misses them is a bug in the generator, not a
reason to edit the story.

The causal story
----------------
**The business.** *Pinwheel* is a visual planning app (boards, cards, templates) that individuals
and tiny teams buy on the web with a card: no salesperson, no customer-success manager, no support
desk. Two plans, billed monthly only, charged automatically to a card through Stripe:

* ``personal`` - $12 a month, one seat (~85 % of signups);
* ``team`` - $10 per member per month, 2-10 members, most 2-4 (~15 % of signups, more by upgrade).

Every account starts with a 14-day free trial that asks for a card up front, so a trial converts
unless the person cancels it. After the trial the account is billed on the same day of every month
(the trial's end), for its plan and its members at that moment; plan and member changes take
effect at the next invoice (no proration). There is no annual plan, no metered usage, no free
tier, no coupons, refunds or taxes.

**Who is an account.** The product account (``acct_000123``) is the customer: one person's or one
small team's workspace. Signup creates it and, at the same moment, a Stripe customer (the trial
needs a card) whose ``metadata.product_account_id`` names it; the application keeps the Stripe
customer's id on its own ``accounts`` row (``accounts.stripe_customer_id``, a column this product
adds to the four-table product schema; the product extraction does not read it). There is no
Salesforce Id anywhere. Identity is as messy as in life: ~1.5 % of Stripe customers lack the
metadata (made by an older checkout; only ``accounts.stripe_customer_id`` links them); ~1 % of
accounts have a second Stripe customer left by an abandoned checkout (metadata, no subscription,
no invoice); two Stripe customers belong to nothing (card tests) and two product accounts bill
nobody (staff workspaces).

**Population and tenure.** ``accounts`` counts every account in the data: the customers paying
when the window opens, ``B0 = accounts / (1 + 0.075 x days / 30.44)``, and the trials that start
inside it (the rest). Signups arrive at 7.5 % of ``B0`` per month, seasonally (January x1.3,
February x1.1, July and August x0.85, December x0.75, other months x1), so conversions roughly
replace churn and the paying book stays near ``B0``. Customers who joined before the window have
an age of 30 days plus an exponential with a mean of 420 days, at most 5 years (median ~10 months:
a young book, unlike the first company's contracts of up to five years), and they are survivors:
their fit (below) is drawn with weight ``exp(-0.05 x (1 - fit) x age in months)``. Their history
before the window is not generated (invoices and events start with the window, as in the first
company); they enter it paying, outside any trial, dunning or cancellation.

**Latent state.** Nothing below is observed; it causes every observable, with noise.

* *Fit* ``f ~ Beta(2, 1.5)``, fixed per account: how well the product matches the need.
* *Engagement* ``e(t)`` in [0, 1], daily: a target ``0.08 + 0.8 f``, plus a novelty bonus
  ``0.12 exp(-age / 21 days)`` in the first weeks, plus AR(1) noise (coefficient 0.9, innovation
  sd 0.04), clipped to [0.01, 0.99]. ``e30`` is its mean over the last 30 days.
* *Need loss*: after the trial, with a hazard of ``1.5 % + 3.5 % x (1 - f)`` per month, the need
  behind the subscription ends (the project is over, the person changed jobs, the team moved to
  another tool): the target falls linearly over 14-60 days to 0-15 % of its level. A quarter of
  lost needs return (30-120 days after the fall, the target climbs back over 30 days): declines
  that end without churn exist.
* *Traits*, fixed per account: a sharing habit ``s ~ Beta(1.5, 3)``; a card risk
  ``r ~ Beta(1.2, 4)``; the card's expiry, first in a month drawn uniformly over the 48 months
  after signup, then every 48 months. Each member has an activity propensity ``Gamma(2, 0.5)``.

**The product database** (``accounts``, ``users``, ``features``, ``events``; ``login`` is a
session start, every action is ``feature_used`` with its ``feature_key``). A personal account has
one user; a team account one user per member. A member is active on a day with probability
``min(0.95, (0.02 + 0.7 e^1.5) x propensity x weekday x season)``: weekends x0.3 for teams and
x0.8 for personal accounts (people plan their own lives at weekends), December 20 to January 1
x0.6, August x0.85. An active member has ``1 + Poisson(1.5 e)`` sessions, and per session
``Poisson(0.5 + 2.5 e)`` board edits (``board_edit``, core). Per active day: ``Poisson(0.25 e)``
new boards (``board_create``, core), on teams ``Poisson(0.8 e)`` comments (``comment``, core), a
shared link (``share_link``, core) with probability ``0.25 s e``, a template (``template_use``)
with probability ``0.05 + 0.4`` in the first two weeks, an export (``export``) with probability
``0.02 e``, a settings change (``settings_update``) with probability 0.02 (0.3 in the first week),
a visit to the billing page (``billing_view``) with probability 0.005 and an integration
connected (``integration_connect``) with probability 0.01 in the first month. Every invitation
sent is an ``invite_send``. What people do when they are leaving, and around plan changes, is in
the churn mechanism below. Users are deactivated when their seat goes and when the subscription
ends; usage stops with them.

**Stripe.** A customer at signup; a subscription created at signup, ``trialing`` for 14 days, with
a $0 invoice; then one invoice per month. Each invoice's first charge attempt fails with
probability ``1.2 % + 6 % x r``, and for certain when the card expired since the last charge and
the card updater did not replace it (55 % of expiries are replaced silently). A failed invoice
enters dunning: the subscription is ``past_due`` and Stripe retries 3, 8 and 15 days after the
invoice (``attempt_count`` up to 4). Each retry succeeds with probability 0.22 (the money came
back); independently the person updates the card during dunning with probability
``0.10 + 0.60 x e30`` (on a day drawn over the first 14), and the next retry succeeds. Paid
invoices carry ``paid_at``; when every retry has failed, the invoice is ``uncollectible`` and the
subscription is canceled 21 days after the invoice. Disputes are rare (below). Subscriptions show
``trialing``, ``active``, ``past_due`` or ``canceled``; a cancellation the person requested waits
for the period end with ``cancel_at_period_end`` set.

**Churn.** Five ways an account stops paying, each its own mechanism:

1. *Voluntary, visible (cause* ``disengaged`` *).* A paying account enters a *leaving state*
   with a daily hazard ``1.2 % x sigmoid((0.28 - e30) / 0.05)``, times 0.6 for a team with two
   or more members (collaborators lock a workspace in) and times ``1 - 0.35 s`` (people who share
   their boards have an audience). Separately, on an invoice day an account with ``e30 < 0.15``
   notices the charge and enters the leaving state with probability 0.25. The leaving state
   lasts 3-21 days (0-3 after noticing a charge); during it the member is active on at least
   35 % of days, board edits halve, exports are ten times as likely (people take their work
   with them), the billing page is visited with probability 0.25 a day and settings with 0.1.
   80 % of leaving states end in a cancellation request; 20 % end with the account staying. A
   request cancels at the period end; until then engagement is 30 % of its level.
2. *Voluntary, unseen (causes* ``unseen_life_change``, ``unseen_budget``,
   ``unseen_switched_tool`` *).* A constant hazard of 0.8 % per paying month, independent of
   everything above: a cancellation request with no leaving state, and usage as before until the
   service ends. No signal can see these; they are the model's honest false negatives.
3. *Involuntary (cause* ``payment_failed`` *).* Dunning that ends with every retry failed (above).
   Engaged people fix their card, so it concentrates on disengaged accounts, but not only.
4. *Disputes (cause* ``dispute`` *).* A paid charge is disputed with probability 0.05 %, 2 % when
   ``e30 < 0.1`` (people who forgot they subscribed), 5-45 days after it is paid; the product
   cancels the subscription the day the dispute opens.
5. *The trial.* At the trial's end the account converts with probability
   ``0.92 x sigmoid((mean e over the trial - 0.55) / 0.08)``. 85 % of those who do not convert
   cancel during the trial (on a day drawn over its 14, cause ``trial_not_converted``: they never
   paid, and are not churned customers); the other 15 % forget, are charged once and enter the
   leaving state 3-25 days later (accidental conversions, cause ``disengaged``).

Churn ends the subscription (status ``canceled``, ``canceled_at`` = the day service ended; the
sandbox store keeps one timestamp per subscription), deactivates the users, and the account never
comes back (no win-backs).

**Plan and seat changes.** A personal account upgrades to team with a hazard of
``0.8 % x clip((e30 - 0.5) / 0.3, 0, 1)`` per month, inviting 1-3 members (``invite_send``; each
invitation accepted with probability 0.7; billing pages visited). A team with ``e30 > 0.5`` invites
another member with a hazard of 3 % per month; each member other than the owner leaves with a
hazard of ``2 % + 4 % x (1 - e30)`` per month. A team left with its owner alone downgrades to
personal at the next invoice. Seats billed = members at the invoice.

**Base rates** (per month of paying-account exposure inside the window, on a 2,000-account x
730-day company; the tests check a smaller sample against the same ranges):

* trial conversion 50-70 % of trials that end inside the window;
* voluntary visible churn 2.0-4.0 % a month; unseen 0.4-1.1 %; involuntary 0.3-1.2 %; disputes
  under 0.2 %; all paid churn 3.0-5.5 % a month (30-50 % a year), and 9-16 % of the accounts
  paying on a day have churned 90 days later;
* the unseen causes are 10-25 % of all paid churn;
* 2-6 % of charged invoices fail their first attempt; 45-80 % of those are recovered in dunning;
* churn does not fall with tenure: the monthly rate of the first three paid months, of months
  4-12 and of months 13 and later are each within 0.67-1.5 times the overall rate (see the
  erratum below);
* team accounts are 12-30 % of the paying book.

**Seasonality.** Signups and activity only (above); churn has no calendar of its own.

**What is deliberately not in the data.** No Salesforce (no CRM accounts, contacts, activities,
opportunities, owners or Salesforce Ids), no Zendesk (no tickets, no satisfaction ratings), no
NPS or surveys, no CSMs or executive sponsors, no contracts or renewals, no annual billing, no
metered usage, no parent or child accounts, no win-backs, refunds, coupons or taxes. The sandbox
does not serve Salesforce or Zendesk for this company at all: they are not connected (no
endpoint, no Airflow connection), rather than connected and empty. It serves Stripe and the
product database, and the vendor's own tools the actions write to: Slack, e-mail and a marketing
tool whose lifecycle lists (newsletter, team-plan offer, advocacy, nurture) hold the members'
e-mail addresses.

**Ground truth.** ``truth_account`` (the store's table, never read by the pipeline) holds one row
per account keyed by the product account id: ``trajectory`` (``trial_only``, ``steady``,
``need_lost``, ``need_returned``), ``trajectory_start`` (the need loss, else signup),
``churn_date`` (the day service ended; the trial's end for ``trial_not_converted``),
``churn_cause`` (as above), ``expansion_date`` (first upgrade or added seat),
``contraction_date`` (first removed seat or downgrade), and the plan and seats at the end or at
churn.

**Determinism.** As in the first company: the same spec gives the same tables (only
``sandbox_meta.generated_at`` differs), every random draw comes from a ``numpy`` PCG64 stream
named after its purpose, timestamps are naive UTC and none is after ``end_date`` except Stripe's
scheduled ``current_period_end``.

**Erratum** (after the story's commit a8a4082, before any model work on this company; no
mechanism or parameter above changed). The story first claimed that "the first three paid months
churn at least 1.5 times as fast as months 13 and later (low fit leaves early)". That figure was
derived by hand and is not what the mechanisms above imply: the card-required trial converts
mostly accounts of high fit (low fit rarely converts), and need loss strikes at any tenure, so
after the trial the hazard is flat. Measured on the 2,000-account x 730-day company: 4.7 % a
month in the first three paid months, 4.0-4.9 % in months 4-12, 4.5-5.0 % after. The base rate
now states what the mechanisms imply. A company whose early months churn faster would need a
different story (a new version, committed before model work on it), not an edit of this one.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Column, MetaData, String, Table

from health_sandbox import product_db
from health_sandbox.company import (
    FIRST_NAMES,
    LAST_NAMES,
    NAME_HEADS,
    _add_months,
    _chunks,
    _exact_pick,
    _insert,
    _json_list,
    _open_sqlite,
    _remove_sqlite,
    _rng,
    _today_utc,
    _ts_strings,
    _unix,
    _write_meta,
)
from health_sandbox.ids import product_account_id, product_user_id, stripe_ids
from health_sandbox.server import SYSTEMS_META
from health_sandbox.store import (
    hs_contact,
    hs_list,
    hs_list_membership,
    sandbox_meta,
    stripe_customer,
    stripe_dispute,
    stripe_invoice,
    stripe_subscription,
    truth_account,
)

GENERATOR_VERSION = "1"
COMPANY_KIND = "self_serve"
# What the sandbox serves for this company (``sandbox_meta['systems']``, read by
# ``server.Sandbox.start``): Stripe and the vendor's own Slack, e-mail and marketing tool
# (HubSpot). The product database is a file next to the store. Salesforce and Zendesk are not
# connected.
SYSTEMS = ("stripe", "slack", "hubspot", "smtp")

PLANS = ("personal", "team")
PERSONAL, TEAM = 0, 1
PLAN_PRICE_CENTS = np.array([1200, 1000])  # personal: per month; team: per member per month
TEAM_SIGNUP_SHARE = 0.15
TEAM_MAX = 10
TRIAL_DAYS = 14
MONTH = 30.44  # days
SIGNUPS_PER_MONTH = 0.075  # of the starting book
SIGNUP_SEASON = {1: 1.3, 2: 1.1, 7: 0.85, 8: 0.85, 12: 0.75}
PRE_AGE_MIN, PRE_AGE_MEAN, PRE_AGE_MAX = 30, 420, 5 * 365
BURN_IN = 60  # days of latent state simulated before the window (pre-window accounts)
DUNNING_RETRIES = np.array([3, 8, 15])  # days after the invoice
DUNNING_CANCEL_DAYS = 21
UNSEEN_CAUSES = ("unseen_life_change", "unseen_budget", "unseen_switched_tool")
CHURN_CAUSES = ("disengaged", *UNSEEN_CAUSES, "payment_failed", "dispute")  # paid churn
TRIAL_CAUSE = "trial_not_converted"

# The product's feature catalogue (feature_key, name, is_core); events are ``login`` (a session
# start) or ``feature_used`` with one of these keys.
FEATURES: tuple[tuple[str, str, bool], ...] = (
    ("board_edit", "Edit a board", True),
    ("board_create", "Create a board", True),
    ("comment", "Comment", True),
    ("share_link", "Share a link", True),
    ("template_use", "Use a template", False),
    ("export", "Export a board", False),
    ("invite_send", "Invite a member", False),
    ("settings_update", "Change settings", False),
    ("billing_view", "Open billing", False),
    ("integration_connect", "Connect an integration", False),
)
EDIT, CREATE, COMMENT, SHARE, TEMPLATE, EXPORT, INVITE, SETTINGS, BILLING, INTEGRATION = range(len(FEATURES))
N_KINDS = 1 + len(FEATURES)  # event kind 0 is the login, 1 + i the feature i

ACCOUNT_CHUNK = 2000  # accounts simulated together: bounds memory at any size
EVENT_FLUSH_ROWS = 400_000
BIG = 10**6  # "never" as a day index

# Not paying yet, in the trial, paying (pending cancellations included), gone.
NOT_STARTED, TRIALING, PAYING, ENDED = 0, 1, 2, 3

TEAM_WORDS = ("Studio", "Design", "Collective", "Labs", "Works", "Makers", "Crew", "Planning")
MAIL_DOMAINS = ("mail.example", "inbox.example", "post.example", "letters.example")
# Region: (UTC offset in hours, share); local peak hours: evenings for people, mornings for teams.
REGIONS = ((-5.0, 0.5), (1.0, 0.35), (8.0, 0.15))
PEAK_LOCAL_HOUR = (20.5, 11.0)

# The product's own schema adds the Stripe customer to its accounts table (the four shared
# tables of ``product_db`` plus this column; the product extraction does not read it).
_accounts_with_stripe = Table(
    "accounts",
    MetaData(),
    *[c._copy() for c in product_db.accounts.columns],
    Column("stripe_customer_id", String(40)),
)


@dataclass(frozen=True)
class SelfServeSpec:
    """What to generate: how many accounts, how many days ending when, which seed.

    ``accounts`` counts every account in the data: the customers paying when the window opens
    (``starting_book``) and the trials started inside it. ``event_days`` keeps raw product events
    for the last N days only (None: all days), as in ``company.CompanySpec``.
    """

    accounts: int = 2000
    days: int = 730
    seed: int = 42
    end_date: date = field(default_factory=_today_utc)
    event_days: int | None = None

    def __post_init__(self) -> None:
        if self.accounts < 20:
            raise ValueError(f"SelfServeSpec.accounts={self.accounts}: need at least 20 accounts")
        if self.days < 90:
            raise ValueError(f"SelfServeSpec.days={self.days}: need at least 90 days of history for trends")
        if self.event_days is not None and not 1 <= self.event_days <= self.days:
            raise ValueError(
                f"SelfServeSpec.event_days={self.event_days}: must be between 1 and days={self.days}"
            )

    @property
    def window_start(self) -> date:
        """The first day of generated history."""
        return self.end_date - timedelta(days=self.days - 1)

    @property
    def starting_book(self) -> int:
        """Customers paying when the window opens: ``accounts / (1 + 0.075 x days / 30.44)``."""
        return max(1, round(self.accounts / (1 + SIGNUPS_PER_MONTH * self.days / MONTH)))

    def as_meta(self) -> dict[str, str]:
        """The spec as ``sandbox_meta`` rows (a finished company is recognised by them)."""
        return {
            "company": COMPANY_KIND,
            SYSTEMS_META: json.dumps(list(SYSTEMS)),
            "seed": str(self.seed),
            "accounts": str(self.accounts),
            "days": str(self.days),
            "end_date": self.end_date.isoformat(),
            "event_days": "" if self.event_days is None else str(self.event_days),
            "generator_version": GENERATOR_VERSION,
        }


@dataclass
class SelfServeSummary:
    """What was generated: rows per table, outcomes, how long it took."""

    folder: Path
    spec: SelfServeSpec
    counts: dict[str, int]
    churned: dict[str, int]  # cause -> accounts whose service ended inside the window
    paying_months: float  # paying-account exposure inside the window, in months of 30.44 days
    trials_ended: int  # trials whose end (or cancellation) falls inside the window
    trials_paid: int  # of those, the ones that were charged (conversions and forgotten trials)
    seconds: float
    reused: bool = False

    def monthly_rate(self, *causes: str) -> float:
        """Accounts lost to ``causes`` per paying month (all paid churn when none are given)."""
        n = sum(self.churned.get(c, 0) for c in (causes or CHURN_CAUSES))
        return n / self.paying_months if self.paying_months else 0.0

    def describe(self) -> str:
        """A few human lines: the company, its outcomes, its volume, its timing."""
        s = self.spec
        head = "reused existing" if self.reused else "generated"
        vol = self.monthly_rate("disengaged")
        unseen = self.monthly_rate(*UNSEEN_CAUSES)
        invol = self.monthly_rate("payment_failed")
        lines = [
            f"Self-serve company (Pinwheel) in {self.folder} ({head} in {self.seconds:.1f} s)",
            f"  {s.accounts:,} accounts ({s.starting_book:,} paying at the start, the rest trials),"
            f" {s.days} days ending {s.end_date.isoformat()}, seed {s.seed}"
            + (f", product events for the last {s.event_days} days" if s.event_days else ""),
            f"  trials ended {self.trials_ended:,}, paid {self.trials_paid:,}"
            f" ({self.trials_paid / max(1, self.trials_ended):.0%});"
            f" paying exposure {self.paying_months:,.0f} account-months",
            f"  churn per paying month: all {self.monthly_rate():.2%} = disengaged {vol:.2%}"
            f" + unseen {unseen:.2%} + payment failed {invol:.2%} + dispute {self.monthly_rate('dispute'):.2%}",
            "  churned accounts: "
            + ", ".join(f"{c} {self.churned.get(c, 0):,}" for c in (*CHURN_CAUSES, TRIAL_CAUSE)),
            "  rows: " + ", ".join(f"{name} {n:,}" for name, n in self.counts.items()),
        ]
        return "\n".join(lines)


# =============================================================================== entry point
def generate_self_serve(folder: Path, spec: SelfServeSpec) -> SelfServeSummary:
    """Generate the self-serve company ``spec`` into ``folder`` (``company.db``, ``product.db``).

    Returns at once when ``folder`` already holds a complete company of the same spec. Files
    are written under temporary names and moved into place only when complete (``company.db``
    last: its ``sandbox_meta`` marks completeness), as ``company.generate_company`` does.
    """
    started = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    existing = _existing_summary(folder, spec)
    if existing is not None:
        existing.seconds = time.perf_counter() - started
        return existing
    company_path, product_path = folder / "company.db", folder / "product.db"
    tmp_company, tmp_product = folder / "company.db.generating", folder / "product.db.generating"
    for path in (tmp_company, tmp_product, company_path, product_path):
        _remove_sqlite(path)
    world = _Pinwheel(spec)
    store = _open_sqlite(tmp_company, store=True)
    product = _open_sqlite(tmp_product, store=False)
    try:
        product.execute("ALTER TABLE accounts ADD COLUMN stripe_customer_id VARCHAR(40)")
        world.generate(store, product)
        _write_meta(store, spec, world.summary_fields)  # type: ignore[arg-type] - same as_meta() protocol
        for conn in (store, product):
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
        product.close()
    os.replace(tmp_product, product_path)
    os.replace(tmp_company, company_path)
    return SelfServeSummary(
        folder=folder, spec=spec, seconds=time.perf_counter() - started, **world.summary_fields
    )


def _existing_summary(folder: Path, spec: SelfServeSpec) -> SelfServeSummary | None:
    company_path, product_path = folder / "company.db", folder / "product.db"
    if not (company_path.exists() and product_path.exists()):
        return None
    try:
        conn = sqlite3.connect(f"file:{company_path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute(f"SELECT key, value FROM {sandbox_meta.name}").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if any(meta.get(k) != v for k, v in spec.as_meta().items()) or "summary" not in meta:
        return None
    return SelfServeSummary(folder=folder, spec=spec, seconds=0.0, reused=True, **json.loads(meta["summary"]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _first_set(flags: np.ndarray, days: np.ndarray, day: int) -> None:
    """``days[flags] = min(days, day)``: the first day something happened."""
    days[flags] = np.minimum(days[flags], day)


# =============================================================================== per chunk
@dataclass
class _Latent:
    e: np.ndarray  # (n, BURN_IN + D + TRIAL_DAYS) daily engagement, 0 before signup
    e30: np.ndarray  # the same shape: mean over the last 30 days since signup
    trial_mean: np.ndarray  # (n,) mean engagement over the 14 trial days
    losses: list[list[tuple[int, bool]]]  # per account: (need-loss day, returns?)


@dataclass
class _Users:
    """The chunk's product users (one per seat), local account index, day range [start, end)."""

    acct: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    owner: list[bool] = field(default_factory=list)

    def add(self, acct: int, start: int, owner: bool) -> int:
        self.acct.append(acct)
        self.start.append(start)
        self.end.append(BIG)
        self.owner.append(owner)
        return len(self.acct) - 1


class _Pinwheel:
    """The company's state while it is generated: accounts, then chunk by chunk, then Stripe."""

    def __init__(self, spec: SelfServeSpec) -> None:
        self.spec = spec
        self.D = spec.days
        self.W0 = np.datetime64(spec.window_start, "D")
        self.W0s = self.W0.astype("datetime64[s]")
        self.end_ts = self.W0s + np.timedelta64(self.D * 86400 - 1, "s")
        self.counts: dict[str, int] = {}
        self.summary_fields: dict[str, Any] = {}

    # ----------------------------------------------------------------------- orchestration
    def generate(self, store: sqlite3.Connection, product: sqlite3.Connection) -> None:
        self._draw_accounts()
        for idx in product_db.events.indexes:  # built once at the end: far faster than per row
            product.execute(f"DROP INDEX IF EXISTS {idx.name}")
        self._begin_collections()
        for c, chunk in enumerate(_chunks(self.N, ACCOUNT_CHUNK)):
            latent = self._latent(c, chunk)
            self._outcomes(c, chunk, latent)
            self._users_and_events(c, chunk, latent, product)
        for idx in product_db.events.indexes:
            cols = ", ".join(col.name for col in idx.columns)
            product.execute(f"CREATE INDEX {idx.name} ON events ({cols})")
        product.execute("PRAGMA analysis_limit=1000")
        product.execute("ANALYZE")
        self._product_accounts(product)
        self._stripe(store)
        self._marketing(store)
        self._truth(store)

    # ----------------------------------------------------------------------- accounts
    def _draw_accounts(self) -> None:
        spec, D = self.spec, self.D
        rng = _rng(spec.seed, "ss_accounts")
        N = self.N = spec.accounts
        B0 = min(spec.starting_book, N)
        T = N - B0
        # Customers before the window: survivors, their fit weighted by how long they stayed.
        age = np.minimum(PRE_AGE_MIN + np.floor(rng.exponential(PRE_AGE_MEAN, B0)), PRE_AGE_MAX).astype(
            np.int64
        )
        fit_pre = np.empty(B0)
        todo = np.arange(B0)
        while len(todo):
            cand = rng.beta(2.0, 1.5, len(todo))
            keep = rng.random(len(todo)) < np.exp(-0.05 * (1 - cand) * age[todo] / MONTH)
            fit_pre[todo[keep]] = cand[keep]
            todo = todo[~keep]
        order = np.argsort(-age, kind="stable")  # oldest first: account numbers follow signup
        start_pre, fit_pre = -age[order], fit_pre[order]
        # Trials inside the window, by the seasonal signup rate.
        months = (self.W0 + np.arange(D)).astype("datetime64[M]").astype(np.int64) % 12 + 1
        weight = np.array([SIGNUP_SEASON.get(int(m), 1.0) for m in months])
        start_new = np.sort(rng.choice(D, size=T, p=weight / weight.sum()))
        fit_new = rng.beta(2.0, 1.5, T)
        self.start = np.concatenate([start_pre, start_new]).astype(np.int64)
        self.fit = np.concatenate([fit_pre, fit_new])
        self.pre = self.start < 0
        self.plan0 = (rng.random(N) < TEAM_SIGNUP_SHARE).astype(np.int64)
        size = np.floor(np.exp(rng.uniform(np.log(2), np.log(TEAM_MAX + 1), N))).astype(np.int64)
        self.team_size = np.where(self.plan0 == TEAM, np.clip(size, 2, TEAM_MAX), 1)
        self.share = rng.beta(1.5, 3.0, N)
        self.card_risk = rng.beta(1.2, 4.0, N)
        self.expiry_month = rng.integers(1, 49, N)  # first card expiry, months after signup
        region = rng.choice(len(REGIONS), size=N, p=[r[1] for r in REGIONS])
        offset = np.array([r[0] for r in REGIONS])[region]
        self.peak_min = (((np.array(PEAK_LOCAL_HOUR)[self.plan0] - offset) % 24) * 60).astype(np.float64)
        self.first = np.asarray(FIRST_NAMES, dtype=object)[rng.integers(0, len(FIRST_NAMES), N)]
        self.last = np.asarray(LAST_NAMES, dtype=object)[rng.integers(0, len(LAST_NAMES), N)]
        mail = np.asarray(MAIL_DOMAINS, dtype=object)[rng.integers(0, len(MAIL_DOMAINS), N)]
        heads = rng.integers(0, len(NAME_HEADS), N)
        words = rng.integers(0, len(TEAM_WORDS), N)
        names, domains, seen = [], [], set()
        for i in range(N):
            if self.plan0[i] == TEAM:
                base = f"{NAME_HEADS[heads[i]]} {TEAM_WORDS[words[i]]}"
                name, k = base, 2
                while name in seen:
                    name, k = f"{base} {k}", k + 1
                seen.add(name)
                slug = "".join(ch for ch in name.lower() if ch.isalnum())
                names.append(name)
                domains.append(f"{slug}.example")
            else:
                names.append(f"{self.first[i]} {self.last[i]}")
                domains.append(mail[i])
        self.names = np.array(names, dtype=object)
        self.domain = np.array(domains, dtype=object)
        self.owner_email = np.array(
            [
                f"{self.first[i]}.{self.last[i]}.{i + 1}@{self.domain[i]}".lower().replace("ü", "u")
                for i in range(N)
            ],
            dtype=object,
        )
        self.product_id = np.array([product_account_id(i + 1) for i in range(N)], dtype=object)
        self.cus = np.array(stripe_ids("cus", np.arange(N)), dtype=object)
        self.sub = np.array(stripe_ids("sub", np.arange(N)), dtype=object)
        hour = rng.integers(7 * 3600, 22 * 3600, N).astype("timedelta64[s]")
        self.signup_ts = self.W0s + self.start.astype("timedelta64[D]") + hour

    def _begin_collections(self) -> None:
        N = self.N
        self.status_end = np.full(N, NOT_STARTED)
        self.end_day = np.full(N, -1, dtype=np.int64)
        self.cause = np.full(N, None, dtype=object)
        self.request_day = np.full(N, -1, dtype=np.int64)
        self.pending_cause = np.full(N, None, dtype=object)  # why a requested cancellation was asked for
        self.pending_end = np.zeros(N, dtype=bool)
        self.plan_end = self.plan0.copy()
        self.seats_end = np.ones(N, dtype=np.int64)
        self.expansion = np.full(N, BIG, dtype=np.int64)
        self.contraction = np.full(N, BIG, dtype=np.int64)
        self.trajectory = np.full(N, "steady", dtype=object)
        self.trajectory_start = self.start.copy()
        self.period = np.zeros((N, 2), dtype=np.int64)  # current period [start, end) day indices
        self.past_due = np.zeros(N, dtype=bool)
        self.invoices: dict[str, list[np.ndarray]] = {
            k: [] for k in ("acct", "day", "end", "amount", "pay_offset", "attempts", "exhausted")
        }
        self.disputes: dict[str, list[np.ndarray]] = {k: [] for k in ("invoice_key", "day")}
        self.paying_days = 0
        self.trials_ended = 0
        self.trials_paid = 0
        self.user_rows: dict[str, list[np.ndarray]] = {k: [] for k in ("acct", "created", "email", "owner")}
        self.n_users = 0
        self.n_events = 0

    # ----------------------------------------------------------------------- latent state
    def _latent(self, c: int, chunk: slice) -> _Latent:
        D, DD = self.D, BURN_IN + self.D + TRIAL_DAYS
        rng = _rng(self.spec.seed, "ss_latent", c)
        f, s = self.fit[chunk], self.start[chunk]
        n = len(f)
        t = np.arange(DD, dtype=np.float64)[None, :] - BURN_IN  # day index of each column
        age = t - s[:, None]
        mult = np.ones((n, DD), dtype=np.float64)
        losses: list[list[tuple[int, bool]]] = [[] for _ in range(n)]
        hazard = (0.015 + 0.035 * (1 - f)) / MONTH
        nxt = np.maximum(s + TRIAL_DAYS, -BURN_IN).astype(np.int64)  # the hazard starts after the trial
        todo = np.arange(n)
        while len(todo):
            tau = nxt[todo] + rng.geometric(hazard[todo]) - 1
            length = rng.uniform(14, 60, len(todo))
            residual = rng.uniform(0, 0.15, len(todo))
            returns = rng.random(len(todo)) < 0.25
            gap = rng.uniform(30, 120, len(todo))
            inside = tau < D
            rows = todo[inside]
            tau_, len_, res_, ret_, gap_ = (
                tau[inside],
                length[inside],
                residual[inside],
                returns[inside],
                gap[inside],
            )
            rel = t - tau_[:, None]
            fall = (1 - res_)[:, None] * np.clip(rel / len_[:, None], 0, 1)
            rise = np.where(ret_, 1 - res_, 0)[:, None] * np.clip((rel - (len_ + gap_)[:, None]) / 30, 0, 1)
            mult[rows] *= 1 - fall + rise
            for k, i in enumerate(rows):
                losses[i].append((int(tau_[k]), bool(ret_[k])))
            nxt[rows] = np.ceil(tau_ + len_ + gap_ + 30).astype(np.int64)
            todo = rows[ret_]
        eps = rng.normal(0, 0.04, (n, DD))
        noise = np.empty_like(eps)
        noise[:, 0] = eps[:, 0] / np.sqrt(1 - 0.9**2)
        for j in range(1, DD):
            noise[:, j] = 0.9 * noise[:, j - 1] + eps[:, j]
        target = (0.08 + 0.8 * f)[:, None] * mult + 0.12 * np.exp(-np.maximum(age, 0) / 21)
        e = np.where(age >= 0, np.clip(target + noise, 0.01, 0.99), 0.0)
        csum = np.pad(np.cumsum(e, axis=1), ((0, 0), (1, 0)))
        col = np.arange(DD)
        lo = np.maximum(col + 1 - 30, 0)
        count = np.minimum(np.minimum(col + 1, 30)[None, :], np.maximum(age + 1, 0))
        e30 = (csum[:, col + 1] - csum[:, lo]) / np.maximum(count, 1)
        trial_cols = np.clip(s + BURN_IN, 0, DD - TRIAL_DAYS)[:, None] + np.arange(TRIAL_DAYS)[None, :]
        trial_mean = np.take_along_axis(e, trial_cols, axis=1).mean(axis=1)
        return _Latent(e.astype(np.float32), e30.astype(np.float32), trial_mean, losses)

    def _bill_days(self, i: int) -> tuple[list[int], int]:
        """Account ``i``'s invoice days inside the window (the trial end's day of month) and
        the billing anchor just before the window (for pre-window accounts' first period)."""
        W0 = self.spec.window_start
        anchor = W0 + timedelta(days=int(self.start[i]) + TRIAL_DAYS)
        k = 0
        if anchor < W0:
            k = max(0, (W0.year - anchor.year) * 12 + W0.month - anchor.month - 1)
        prev = (anchor - W0).days
        out: list[int] = []
        while True:
            day = (_add_months(anchor, k) - W0).days
            if day >= self.D:
                out.append(day)  # the end of the last period
                return out, prev
            if day >= 0:
                out.append(day)
            else:
                prev = day
            k += 1

    def _expiries(self, i: int) -> list[int]:
        signup = self.spec.window_start + timedelta(days=int(self.start[i]))
        out, m = [], int(self.expiry_month[i])
        while (day := (_add_months(signup, m) - self.spec.window_start).days) < self.D:
            out.append(day)
            m += 48
        return out

    # ----------------------------------------------------------------------- outcomes
    def _outcomes(self, c: int, chunk: slice, lat: _Latent) -> None:
        """Trials, invoices, dunning, leaving states, cancellations, plan and member changes."""
        D = self.D
        rng = _rng(self.spec.seed, "ss_outcomes", c)
        g = np.arange(chunk.start, chunk.stop)
        n = len(g)
        s = self.start[chunk]
        e30 = lat.e30
        share, risk = self.share[chunk], self.card_risk[chunk]
        pcause = self.pending_cause[chunk]  # a view: why each pending cancellation was asked for

        # Billing schedules and card expiries, padded.
        bills, prev_bill, expiries = [], np.zeros(n, dtype=np.int64), []
        for k, i in enumerate(g):
            days, prev_bill[k] = self._bill_days(int(i))
            bills.append(days)
            expiries.append(self._expiries(int(i)))
        width = max(len(b) for b in bills)
        bill = np.full((n, width + 1), BIG, dtype=np.int64)
        for k, b in enumerate(bills):
            bill[k, : len(b)] = b
        ptr = np.zeros(n, dtype=np.int64)
        ew = max(1, max(len(x) for x in expiries))
        expiry = np.full((n, ew), BIG, dtype=np.int64)
        for k, x in enumerate(expiries):
            expiry[k, : len(x)] = x
        last_charge = prev_bill.copy()

        # The trial decision: a property of the person's trial, acted on at its day.
        trial = ~self.pre[chunk]
        converts = rng.random(n) < 0.92 * _sigmoid((lat.trial_mean - 0.55) / 0.08)
        forgets = ~converts & (rng.random(n) < 0.15)
        trial_cancel = np.where(trial & ~converts & ~forgets, s + rng.integers(1, TRIAL_DAYS, n), BIG)
        leave_sched = np.where(trial & forgets, s + TRIAL_DAYS + rng.integers(3, 26, n), BIG)

        status = np.where(self.pre[chunk], PAYING, NOT_STARTED)
        plan = self.plan0[chunk].copy()
        end_day = np.full(n, -1, dtype=np.int64)
        cause = np.full(n, None, dtype=object)
        pending = np.zeros(n, dtype=bool)
        request_day = np.full(n, -1, dtype=np.int64)
        leave_start = np.full(n, -1, dtype=np.int64)
        leave_end = np.full(n, -1, dtype=np.int64)
        dun_fail = np.full(n, BIG, dtype=np.int64)
        dun_until = np.full(n, -1, dtype=np.int64)  # last day of an unresolved dunning
        dispute_day = np.full(n, BIG, dtype=np.int64)
        expansion = np.full(n, BIG, dtype=np.int64)
        contraction = np.full(n, BIG, dtype=np.int64)
        self.mode = np.zeros((n, D), dtype=np.int8)  # 1 leaving, 2 cancellation requested
        self.plan_tl = np.zeros((n, D), dtype=np.int8)
        self.extras: dict[int, list[tuple[int, int, int]]] = {}  # day -> (user, feature, count)

        users = _Users()
        owner = np.array([users.add(k, int(s[k]), True) for k in range(n)])
        for k in np.flatnonzero(self.team_size[chunk] > 1):
            members = int(self.team_size[g[k]]) - 1
            if self.pre[g[k]]:  # joined over the account's life before the window
                for _ in range(members):
                    users.add(int(k), int(s[k] + rng.integers(0, -s[k])), False)
            else:  # invited at signup, accepted within days
                self.extras.setdefault(int(s[k]), []).append((int(owner[k]), INVITE, members))
                for _ in range(members):
                    users.add(int(k), int(s[k] + rng.integers(0, 6)), False)

        def arrays() -> tuple[np.ndarray, ...]:
            return (np.array(users.acct), np.array(users.start), np.array(users.end), np.array(users.owner))

        ua, us, ue, uo = arrays()
        dirty = False

        def end(rows: np.ndarray, day: int, why: Any) -> None:
            """The subscription of ``rows`` ends on ``day``: every seat goes, usage stops."""
            nonlocal dirty
            rows = rows[status[rows] != ENDED]
            if not len(rows):
                return
            status[rows] = ENDED
            end_day[rows] = day
            cause[rows] = why
            seat_end = np.array(users.end)
            for u in np.flatnonzero(np.isin(np.array(users.acct), rows) & (seat_end > day)):
                users.end[u] = day
            dirty = True

        inv: dict[str, list[Any]] = {k: [] for k in self.invoices}
        disputes: dict[str, list[Any]] = {k: [] for k in self.disputes}
        n_inv_before = sum(len(a) for a in self.invoices["acct"])

        for d in range(D):
            j = d + BURN_IN
            e30d = e30[:, j]
            if dirty:
                ua, us, ue, uo = arrays()
                dirty = False
            live = (us <= d) & (d < ue)
            members = np.bincount(ua[live], minlength=n)

            # Trials: start, cancel, end.
            started = np.flatnonzero(status[:] == NOT_STARTED)
            started = started[s[started] == d]
            status[started] = TRIALING
            for k in started:  # the trial's $0 invoice
                self._invoice(inv, g[k], d, d + TRIAL_DAYS, 0, 0.0, 0, False)
            end(np.flatnonzero((status == TRIALING) & (trial_cancel == d)), d, TRIAL_CAUSE)
            converting = np.flatnonzero((status == TRIALING) & (s + TRIAL_DAYS == d))
            status[converting] = PAYING
            self.trials_ended += int(np.sum((trial_cancel == d) & trial)) + len(converting)
            self.trials_paid += len(converting)

            # Endings: a dispute, a dunning that failed, a requested cancellation at period end.
            paying = status == PAYING
            end(np.flatnonzero(paying & (dispute_day == d)), d, "dispute")
            end(np.flatnonzero((status == PAYING) & (dun_fail == d)), d, "payment_failed")
            bill_today = (status == PAYING) & (bill[np.arange(n), ptr] == d)
            for why in sorted(set(pcause[bill_today & pending & (status == PAYING)])):
                end(np.flatnonzero(bill_today & pending & (pcause == why)), d, why)

            # Invoices of accounts still paying.
            charge = np.flatnonzero(bill_today & (status == PAYING))
            if len(charge):
                down = charge[(plan[charge] == TEAM) & (members[charge] <= 1)]
                plan[down] = PERSONAL
                _first_set(np.isin(np.arange(n), down), contraction, d)
                seats = np.where(plan[charge] == TEAM, np.maximum(members[charge], 1), 1)
                amount = PLAN_PRICE_CENTS[plan[charge]] * seats
                expired = ((expiry[charge] > last_charge[charge, None]) & (expiry[charge] <= d)).any(axis=1)
                fails = (rng.random(len(charge)) < 0.012 + 0.06 * risk[charge]) | (
                    expired & (rng.random(len(charge)) < 0.45)
                )
                updates = rng.random(len(charge)) < 0.10 + 0.60 * e30d[charge]
                update_day = rng.integers(1, TRIAL_DAYS + 1, len(charge))
                lucky = rng.random((len(charge), len(DUNNING_RETRIES))) < 0.22
                ok = lucky | (updates[:, None] & (DUNNING_RETRIES[None, :] > update_day[:, None]))
                recovered = ok.any(axis=1)
                first_ok = np.argmax(ok, axis=1)
                pay_offset = np.where(~fails, 0.0, np.where(recovered, DUNNING_RETRIES[first_ok], np.nan))
                attempts = np.where(~fails, 1, np.where(recovered, first_ok + 2, 1 + len(DUNNING_RETRIES)))
                exhausted = fails & ~recovered
                for k, row in enumerate(charge):
                    self._invoice(
                        inv,
                        g[row],
                        d,
                        bill[row, ptr[row] + 1],
                        int(amount[k]),
                        float(pay_offset[k]),
                        int(attempts[k]),
                        bool(exhausted[k]),
                    )
                last_charge[charge] = d
                dun_fail[charge[exhausted]] = d + DUNNING_CANCEL_DAYS
                unresolved = np.where(
                    exhausted, d + DUNNING_CANCEL_DAYS, d + np.nan_to_num(pay_offset).astype(np.int64)
                )
                dun_until[charge] = np.where(fails, unresolved, -1)
                # Disputes of the charges that were paid: rare, mostly people who forgot.
                paid = np.flatnonzero(~np.isnan(pay_offset))
                p_dispute = np.where(e30d[charge[paid]] < 0.1, 0.02, 0.0005)
                disputed = paid[rng.random(len(paid)) < p_dispute]
                opened = d + pay_offset[disputed].astype(np.int64) + rng.integers(5, 46, len(disputed))
                for k, day in zip(disputed.tolist(), opened.tolist(), strict=True):
                    if day < D:
                        disputes["invoice_key"].append(n_inv_before + len(inv["acct"]) - len(charge) + k)
                        disputes["day"].append(day)
                        row = charge[k]
                        dispute_day[row] = min(dispute_day[row], day)
                # Noticing the charge: people who no longer use the product.
                calm = charge[(leave_end[charge] < d) & ~pending[charge]]
                notice = calm[(e30d[calm] < 0.15) & (rng.random(len(calm)) < 0.25)]
                leave_start[notice] = d
                leave_end[notice] = d + rng.integers(0, 4, len(notice))
            ptr[charge] += 1  # an account that ended today keeps its last paid period

            # Leaving states: forgotten trials, their ends, new ones.
            payers = (status == PAYING) & ~pending
            sched = np.flatnonzero(payers & (leave_sched == d) & (leave_end < d))
            leave_start[sched] = d
            leave_end[sched] = d + rng.integers(3, 22, len(sched))
            done = np.flatnonzero(payers & (leave_end == d))
            cancel = done[rng.random(len(done)) < 0.8]
            pending[cancel] = True
            request_day[cancel] = d
            pcause[cancel] = "disengaged"
            calm = payers & ~pending & (leave_end < d)
            team_lock = np.where((plan == TEAM) & (members >= 2), 0.6, 1.0)
            p_leave = 0.012 * _sigmoid((0.28 - e30d) / 0.05) * team_lock * (1 - 0.35 * share)
            enter = np.flatnonzero(calm & (rng.random(n) < p_leave))
            leave_start[enter] = d
            leave_end[enter] = d + rng.integers(3, 22, len(enter))
            unseen = np.flatnonzero(payers & ~pending & (rng.random(n) < 0.008 / MONTH))
            pending[unseen] = True
            request_day[unseen] = d
            pcause[unseen] = np.asarray(UNSEEN_CAUSES, dtype=object)[
                rng.integers(0, len(UNSEEN_CAUSES), len(unseen))
            ]

            # Plans and members.
            payers = (status == PAYING) & ~pending
            up = np.flatnonzero(
                payers
                & (plan == PERSONAL)
                & (rng.random(n) < 0.008 / MONTH * np.clip((e30d - 0.5) / 0.3, 0, 1))
            )
            for k in up:
                plan[k] = TEAM
                expansion[k] = min(expansion[k], d)
                invites = int(rng.integers(1, 4))
                self.extras.setdefault(d, []).extend(
                    [(int(owner[k]), INVITE, invites), (int(owner[k]), BILLING, 1)]
                )
                for _ in range(invites):
                    if rng.random() < 0.7:
                        users.add(int(k), d + int(rng.integers(0, 6)), False)
                        dirty = True
            waiting = np.bincount(ua[(us > d)], minlength=n)
            # A growing team's invitation is accepted as often as an upgrade's (0.7).
            grow = np.flatnonzero(
                payers
                & (plan == TEAM)
                & (e30d > 0.5)
                & (members + waiting < TEAM_MAX)
                & (rng.random(n) < 0.03 / MONTH)
            )
            for k in grow:
                self.extras.setdefault(d, []).append((int(owner[k]), INVITE, 1))
                if rng.random() < 0.7:
                    joins = d + int(rng.integers(0, 6))
                    users.add(int(k), joins, False)
                    expansion[k] = min(expansion[k], joins)
                    dirty = True
            others = np.flatnonzero(live & ~uo & (status[ua] == PAYING))
            leave = others[rng.random(len(others)) < (0.02 + 0.04 * (1 - e30d[ua[others]])) / MONTH]
            for u in leave:
                users.end[u] = d
                contraction[ua[u]] = min(contraction[ua[u]], d)
                dirty = True

            alive = status == PAYING
            self.paying_days += int(alive.sum())
            in_leave = alive & (leave_start <= d) & (leave_end >= d) & (leave_start >= 0)
            requested = alive & pending & (pcause == "disengaged")
            self.mode[:, d] = np.where(requested, 2, np.where(in_leave, 1, 0))
            self.plan_tl[:, d] = plan

        # Where each account stands at the end of the window.
        ua, us, ue, uo = arrays()
        at = np.where(end_day >= 0, end_day - 1, D - 1)
        seated = (us <= at[ua]) & (at[ua] < ue)
        seats = np.bincount(ua[seated], minlength=n)
        period = np.stack([bill[np.arange(n), np.maximum(ptr - 1, 0)], bill[np.arange(n), ptr]], axis=1)
        period[ptr == 0, 0] = prev_bill[ptr == 0]
        trial_rows = (status == TRIALING) | (cause == TRIAL_CAUSE)
        period[trial_rows] = np.stack([s[trial_rows], s[trial_rows] + TRIAL_DAYS], axis=1)
        self.status_end[chunk] = status
        self.end_day[chunk] = end_day
        self.cause[chunk] = cause
        self.request_day[chunk] = np.where(pending & (status != ENDED), request_day, -1)
        self.pending_end[chunk] = pending & (status != ENDED)
        self.plan_end[chunk] = plan
        self.seats_end[chunk] = np.where(plan == TEAM, np.maximum(seats, 1), 1)
        self.expansion[chunk] = expansion
        self.contraction[chunk] = contraction
        self.period[chunk] = period
        self.past_due[chunk] = (status == PAYING) & (dun_until >= D)
        for k in range(n):
            lost = [(day, ret) for day, ret in lat.losses[k] if day < (end_day[k] if end_day[k] >= 0 else D)]
            if cause[k] == TRIAL_CAUSE:
                self.trajectory[g[k]] = "trial_only"
            elif lost:
                self.trajectory[g[k]] = "need_returned" if lost[-1][1] else "need_lost"
                self.trajectory_start[g[k]] = lost[0][0]
        for key, values in inv.items():
            self.invoices[key].append(np.asarray(values))
        for key, values in disputes.items():
            self.disputes[key].append(np.asarray(values, dtype=np.int64))
        self.users = users
        self.owner_user = owner

    @staticmethod
    def _invoice(
        inv: dict[str, list[Any]],
        acct: int,
        day: int,
        end: int,
        amount: int,
        pay_offset: float,
        attempts: int,
        exhausted: bool,
    ) -> None:
        for key, value in (
            ("acct", acct),
            ("day", day),
            ("end", end),
            ("amount", amount),
            ("pay_offset", pay_offset),
            ("attempts", attempts),
            ("exhausted", exhausted),
        ):
            inv[key].append(value)

    # ----------------------------------------------------------------------- product users and events
    def _users_and_events(self, c: int, chunk: slice, lat: _Latent, product: sqlite3.Connection) -> None:
        """The chunk's users (one per seat and period) and its raw event stream."""
        spec, D = self.spec, self.D
        rng = _rng(spec.seed, "ss_events", c)
        users = self.users
        ua, us, ue, uo = (np.array(x) for x in (users.acct, users.start, users.end, users.owner))
        keep = np.flatnonzero((us < D) & (us < ue))  # seats that existed by the end of the window
        keep = keep[np.lexsort((~uo[keep], us[keep], ua[keep]))]
        remap = np.full(len(ua), -1)
        remap[keep] = np.arange(len(keep))
        ua, us, ue, uo = ua[keep], us[keep], ue[keep], uo[keep]
        nu = len(ua)
        g = chunk.start + ua
        ids = np.array([product_user_id(self.n_users + k + 1) for k in range(nu)], dtype=object)
        first = np.asarray(FIRST_NAMES, dtype=object)[rng.integers(0, len(FIRST_NAMES), nu)]
        last = np.asarray(LAST_NAMES, dtype=object)[rng.integers(0, len(LAST_NAMES), nu)]
        emails = np.where(
            uo,
            self.owner_email[g],
            [
                f"{f}.{ln}.{self.n_users + k + 1}@{self.domain[a]}".lower().replace("ü", "u")
                for k, (f, ln, a) in enumerate(zip(first, last, g, strict=True))
            ],
        )
        created = np.where(
            uo,
            self.signup_ts[g],
            self.W0s
            + us.astype("timedelta64[D]")
            + rng.integers(8 * 3600, 20 * 3600, nu).astype("timedelta64[s]"),
        )
        gone = ue < D
        deact = np.full(nu, np.datetime64("NaT"), dtype="datetime64[s]")
        deact[gone] = (
            self.W0s
            + ue[gone].astype("timedelta64[D]")
            + rng.integers(3600, 6 * 3600, int(gone.sum())).astype("timedelta64[s]")
        )
        deact[gone] = np.maximum(deact[gone], created[gone] + np.timedelta64(3600, "s"))
        self.counts["product.users"] = self.counts.get("product.users", 0) + _insert(
            product,
            product_db.users,
            {
                "id": ids,
                "account_id": self.product_id[g],
                "email": emails,
                "created_at": created,
                "deactivated_at": deact,
            },
        )
        self.n_users += nu
        for key, values in (("acct", g), ("created", created), ("email", emails), ("owner", uo)):
            self.user_rows[key].append(values)

        # The event stream, day by day.
        emit_from = D - (spec.event_days or D)
        days = self.W0 + np.arange(D)
        weekend = ((days.view("int64") + 3) % 7) >= 5  # 1970-01-01 was a Thursday
        month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        dom = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        season = np.where(
            (month == 12) & (dom >= 20) | (month == 1) & (dom == 1), 0.6, np.where(month == 8, 0.85, 1.0)
        )
        extras: dict[int, list[tuple[int, int, int]]] = {}
        for day, rows in self.extras.items():
            mapped = [(int(remap[u]), f, k) for u, f, k in rows if remap[u] >= 0]
            if mapped:
                extras[day] = mapped
        prop = rng.gamma(2.0, 0.5, nu)
        share, peak = self.share[chunk], self.peak_min[chunk]
        keys = np.array([None] + [f[0] for f in FEATURES], dtype=object)
        names = np.array(["login"] + ["feature_used"] * len(FEATURES), dtype=object)
        base_ts = self.W0s + np.timedelta64(emit_from, "D")
        buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        buffered = 0

        def flush() -> None:
            nonlocal buffer, buffered
            if not buffer:
                return
            u, kind, sec = (np.concatenate(parts) for parts in zip(*buffer, strict=True))
            product.execute("BEGIN")
            product.executemany(
                "INSERT INTO events (account_id, user_id, event_name, feature_key, occurred_at) VALUES (?, ?, ?, ?, ?)",
                zip(
                    self.product_id[g[u]].tolist(),
                    ids[u].tolist(),
                    names[kind].tolist(),
                    keys[kind].tolist(),
                    _ts_strings(base_ts + sec.astype("timedelta64[s]")),
                    strict=True,
                ),
            )
            product.execute("COMMIT")
            self.n_events += len(u)
            buffer, buffered = [], 0

        for d in range(emit_from, D):
            live = np.flatnonzero((us <= d) & (d < ue))
            if not len(live):
                continue
            a = ua[live]
            md = self.mode[a, d]
            ed = lat.e[a, d + BURN_IN] * np.where(md == 2, 0.3, 1.0)
            leaving_owner = (md == 1) & uo[live]
            team = self.plan_tl[a, d] == TEAM
            weekday = np.where(team, 0.3, 0.8) if weekend[d] else 1.0
            p = np.minimum(0.95, (0.02 + 0.7 * ed**1.5) * prop[live] * weekday * season[d])
            p = np.where(leaving_owner, np.maximum(p, 0.35), p)
            extra = np.zeros((len(live), N_KINDS), dtype=np.int64)
            # Leaving: the billing page (0.25) and settings (0.1) a day, each visit a session.
            extra[:, 1 + BILLING] += leaving_owner & (rng.random(len(live)) < 0.25)
            extra[:, 1 + SETTINGS] += leaving_owner & (rng.random(len(live)) < 0.1)
            for u, f, k in extras.get(d, ()):
                pos = int(np.searchsorted(live, u))
                if pos < len(live) and live[pos] == u:
                    extra[pos, 1 + f] += k
            act = np.flatnonzero((rng.random(len(live)) < p) | extra.any(axis=1))
            if not len(act):
                continue
            n_act = len(act)
            e_a, lo_a, age_a = ed[act], leaving_owner[act], d - us[live[act]]
            counts = np.zeros((n_act, N_KINDS), dtype=np.int64)
            sessions = 1 + rng.poisson(1.5 * e_a)
            counts[:, 0] = sessions
            counts[:, 1 + EDIT] = rng.poisson((0.5 + 2.5 * e_a) * sessions * np.where(md[act] == 1, 0.5, 1.0))
            counts[:, 1 + CREATE] = rng.poisson(0.25 * e_a)
            counts[:, 1 + COMMENT] = np.where(team[act], rng.poisson(0.8 * e_a), 0)
            counts[:, 1 + SHARE] = rng.random(n_act) < 0.25 * share[a[act]] * e_a
            counts[:, 1 + TEMPLATE] = rng.random(n_act) < 0.05 + 0.4 * (age_a < 14)
            counts[:, 1 + EXPORT] = rng.random(n_act) < np.minimum(1.0, 0.02 * e_a * np.where(lo_a, 10, 1))
            counts[:, 1 + SETTINGS] = rng.random(n_act) < np.where(age_a < 7, 0.3, np.where(lo_a, 0.0, 0.02))
            counts[:, 1 + BILLING] = rng.random(n_act) < np.where(lo_a, 0.0, 0.005)
            counts[:, 1 + INTEGRATION] = rng.random(n_act) < np.where(age_a < 30, 0.01, 0.0)
            counts += extra[act]
            # Sessions start around the account's peak hour; actions fall inside a session.
            who = np.repeat(np.arange(n_act), sessions)
            start_min = np.clip(rng.normal(peak[a[act]][who], 150), 0, 1395).astype(np.int64)
            first_session = np.concatenate([[0], np.cumsum(sessions)[:-1]])
            f_who = np.repeat(np.repeat(np.arange(n_act), N_KINDS - 1), counts[:, 1:].ravel())
            f_kind = np.repeat(np.tile(np.arange(1, N_KINDS), n_act), counts[:, 1:].ravel())
            pick = first_session[f_who] + np.floor(rng.random(len(f_who)) * sessions[f_who]).astype(np.int64)
            f_min = np.minimum(start_min[pick] + rng.integers(1, 46, len(f_who)), 1439)
            minute = np.concatenate([start_min, f_min])
            sec = (d - emit_from) * 86400 + minute * 60 + rng.integers(0, 60, len(minute))
            buffer.append(
                (
                    live[act][np.concatenate([who, f_who])],
                    np.concatenate([np.zeros(len(who), np.int64), f_kind]),
                    sec,
                )
            )
            buffered += len(minute)
            if buffered >= EVENT_FLUSH_ROWS:
                flush()
        flush()
        self.counts["product.events"] = self.n_events

    # ----------------------------------------------------------------------- product accounts
    def _product_accounts(self, product: sqlite3.Connection) -> None:
        self.counts["product.accounts"] = _insert(
            product,
            _accounts_with_stripe,
            {
                "id": list(self.product_id) + ["acct_900001", "acct_900002"],
                "name": list(self.names) + ["Pinwheel Staff", "Pinwheel QA"],
                "plan": list(np.asarray(PLANS, dtype=object)[self.plan_end]) + ["team", "team"],
                "created_at": np.concatenate([self.signup_ts, np.array([self.W0s, self.W0s])]),
                "stripe_customer_id": list(self.cus) + [None, None],
            },
        )
        self.counts["product.features"] = _insert(
            product,
            product_db.features,
            {
                "feature_key": [f[0] for f in FEATURES],
                "name": [f[1] for f in FEATURES],
                "is_core": [f[2] for f in FEATURES],
            },
        )

    # ----------------------------------------------------------------------- Stripe
    def _day_ts(self, days: np.ndarray, accounts: np.ndarray) -> np.ndarray:
        """Day indices at the time of day of each account's billing anchor (its signup time)."""
        tod = self.signup_ts - self.signup_ts.astype("datetime64[D]").astype("datetime64[s]")
        return self.W0s + days.astype("timedelta64[D]") + tod[accounts]

    def _stripe(self, store: sqlite3.Connection) -> None:
        rng = _rng(self.spec.seed, "ss_stripe")
        N, D = self.N, self.D
        # Customers: one per account; abandoned checkouts; card tests.
        no_meta = set(_exact_pick(rng, np.arange(N), 0.015).tolist())
        meta = [{} if i in no_meta else {"product_account_id": self.product_id[i]} for i in range(N)]
        dup = _exact_pick(rng, np.flatnonzero(self.start <= D - 4), 0.01)
        dup_created = self.signup_ts[dup] + rng.integers(600, 3 * 86400, len(dup)).astype("timedelta64[s]")
        junk_created = (
            self.W0s
            + np.sort(rng.integers(0, D, 2)).astype("timedelta64[D]")
            + np.timedelta64(10 * 3600, "s")
        )
        self.counts["stripe_customer"] = _insert(
            store,
            stripe_customer,
            {
                "id": list(self.cus) + stripe_ids("cus", N + np.arange(len(dup) + 2)),
                "email": list(self.owner_email)
                + list(self.owner_email[dup])
                + ["card-test@pinwheel.example"] * 2,
                "name": list(self.names) + list(self.names[dup]) + ["Card test", None],
                "metadata": _json_list(
                    meta + [{"product_account_id": self.product_id[i]} for i in dup] + [{}, {}]
                ),
                "created": _unix(np.concatenate([self.signup_ts, dup_created, junk_created])),
            },
        )

        # Subscriptions: where each account stands at the end of the window.
        ended = self.status_end == ENDED
        status = np.where(
            ended,
            "canceled",
            np.where(self.status_end == TRIALING, "trialing", np.where(self.past_due, "past_due", "active")),
        )
        all_acct = np.arange(N)
        # Service ends at the billing anchor's time (a dispute: that evening, after it opened).
        end_day = np.maximum(self.end_day, 0)
        ended_at = np.where(
            self.cause == "dispute",
            self.W0s + end_day.astype("timedelta64[D]") + np.timedelta64(21 * 3600, "s"),
            self._day_ts(end_day, all_acct) + np.timedelta64(1800, "s"),
        )
        canceled_at = np.where(
            ended,
            ended_at,
            np.where(
                self.pending_end,
                self._day_ts(np.maximum(self.request_day, 0), all_acct)
                + rng.integers(3600, 10 * 3600, N).astype("timedelta64[s]"),
                np.datetime64("NaT"),
            ),
        )
        canceled_at = np.where(canceled_at > self.end_ts, self.end_ts, canceled_at)
        self.counts["stripe_subscription"] = _insert(
            store,
            stripe_subscription,
            {
                "id": self.sub,
                "customer": self.cus,
                "status": status,
                "quantity": self.seats_end,
                "unit_amount": PLAN_PRICE_CENTS[self.plan_end],
                "interval": ["month"] * N,
                "created": _unix(self.signup_ts + np.timedelta64(60, "s")),
                "canceled_at": _unix(canceled_at),
                "cancel_at_period_end": self.pending_end.tolist(),
                "current_period_start": _unix(self._day_ts(self.period[:, 0], all_acct)),
                "current_period_end": _unix(self._day_ts(self.period[:, 1], all_acct)),
                "metadata": _json_list([{"plan": PLANS[p]} for p in self.plan_end]),
            },
        )

        # Invoices: the trial's $0 invoice, then one a month; dunning as the story says.
        inv = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.invoices.items()}
        acct, day = inv["acct"].astype(np.int64), inv["day"].astype(np.int64)
        order = np.lexsort((acct, day))
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        acct, day = acct[order], day[order]
        end = inv["end"].astype(np.int64)[order]
        amount = inv["amount"].astype(np.int64)[order]
        offset = inv["pay_offset"].astype(np.float64)[order]
        attempts = inv["attempts"].astype(np.int64)[order]
        exhausted = inv["exhausted"].astype(bool)[order]
        n = len(acct)
        trial = amount == 0
        created = np.where(
            trial,
            self.signup_ts[acct] + np.timedelta64(5, "s"),
            self._day_ts(day, acct) + rng.integers(3600, 2 * 3600, n).astype("timedelta64[s]"),
        )
        created = np.minimum(created, self.end_ts)
        jitter = np.where(offset == 0, rng.integers(5, 300, n), rng.integers(0, 3 * 3600, n))
        paid_at = np.where(
            np.isnan(offset),
            np.datetime64("NaT"),
            created
            + (np.nan_to_num(offset) * 86400).astype(np.int64).astype("timedelta64[s]")
            + jitter.astype("timedelta64[s]"),
        )
        paid = trial | (~np.isnat(paid_at) & (paid_at <= self.end_ts))
        paid_at = np.where(trial, created, np.where(paid, paid_at, np.datetime64("NaT")))
        gave_up = exhausted & (created + np.timedelta64(DUNNING_CANCEL_DAYS, "D") <= self.end_ts)
        status_i = np.where(paid, "paid", np.where(gave_up, "uncollectible", "open"))
        tries = np.array([0, *DUNNING_RETRIES.tolist()])
        made = (created[:, None] + (tries * 86400).astype("timedelta64[s]")[None, :]) <= self.end_ts
        attempt_count = np.where(trial, 0, np.minimum(made.sum(axis=1), attempts))
        charges = np.array(stripe_ids("ch", np.arange(n)), dtype=object)
        charge = np.where(trial, None, charges)
        invoice_ids = np.array(stripe_ids("in", np.arange(n)), dtype=object)
        self.counts["stripe_invoice"] = _insert(
            store,
            stripe_invoice,
            {
                "id": invoice_ids,
                "customer": self.cus[acct],
                "subscription": self.sub[acct],
                "charge": charge,
                "status": status_i,
                "subtotal": amount,
                "usage_amount": np.zeros(n, dtype=np.int64),
                "amount_due": amount,
                "amount_paid": np.where(paid, amount, 0),
                "attempt_count": attempt_count,
                "created": _unix(created),
                "due_date": [None] * n,
                "paid_at": _unix(paid_at),
                "period_start": _unix(np.where(trial, self.signup_ts[acct], self._day_ts(day, acct))),
                "period_end": _unix(self._day_ts(end, acct)),
            },
        )

        # Disputes: the charge, opened on its day; settled after 45 days.
        key = (
            np.concatenate(self.disputes["invoice_key"])
            if self.disputes["invoice_key"]
            else np.zeros(0, np.int64)
        )
        dday = np.concatenate(self.disputes["day"]) if self.disputes["day"] else np.zeros(0, np.int64)
        pos = position[key.astype(np.int64)]
        opened = np.maximum(
            self.W0s
            + dday.astype("timedelta64[D]")
            + rng.integers(8 * 3600, 20 * 3600, len(dday)).astype("timedelta64[s]"),
            paid_at[pos] + np.timedelta64(3600, "s"),
        )
        keep = opened <= self.end_ts
        pos, opened = pos[keep], opened[keep]
        o = np.lexsort((pos, opened))
        pos, opened = pos[o], opened[o]
        age = (self.end_ts - opened).astype(np.int64) / 86400
        outcome = np.asarray(("won", "lost"), dtype=object)[rng.choice(2, len(pos), p=(0.3, 0.7))]
        self.counts["stripe_dispute"] = _insert(
            store,
            stripe_dispute,
            {
                "id": stripe_ids("dp", np.arange(len(pos))),
                "charge": charge[pos],
                "amount": amount[pos],
                "status": np.where(age < 7, "needs_response", np.where(age < 45, "under_review", outcome)),
                "reason": np.asarray(
                    ("fraudulent", "subscription_canceled", "unrecognized", "product_unacceptable"),
                    dtype=object,
                )[rng.choice(4, len(pos), p=(0.35, 0.25, 0.3, 0.1))],
                "created": _unix(opened),
            },
        )

    # ----------------------------------------------------------------------- marketing
    def _marketing(self, store: sqlite3.Connection) -> None:
        """The vendor's lifecycle lists in HubSpot (static lists), and the people on them."""
        rng = _rng(self.spec.seed, "ss_marketing")
        lists = [
            ("201", "Pinwheel Newsletter"),
            ("202", "Upgrade - Team Plan Offer"),
            ("203", "Expansion - Add Your Team"),
            ("204", "Product Tips Sequence"),
            ("205", "Re-engagement Nurture"),
            ("206", "Advocacy - Referral Program"),
            ("207", "Advocacy - Case Study Candidates"),
            ("208", "Advocacy - Beta Program"),
            ("209", "Advocacy - Review Site Prompts"),
        ]
        acct = np.concatenate(self.user_rows["acct"])
        joined = np.concatenate(self.user_rows["created"])
        email = np.concatenate(self.user_rows["email"])
        owner = np.concatenate(self.user_rows["owner"])
        alive = self.status_end[acct] != ENDED
        news = np.flatnonzero(rng.random(len(acct)) < 0.75)
        upsell = np.flatnonzero(
            owner & alive & (self.plan_end[acct] == PERSONAL) & (rng.random(len(acct)) < 0.4)
        )
        more = np.flatnonzero(owner & alive & (self.plan_end[acct] == TEAM) & (rng.random(len(acct)) < 0.3))
        members = [("201", news), ("202", upsell), ("203", more)]
        rows = np.unique(np.concatenate([m for _, m in members]))
        contact_id = {int(r): str(100_001 + i) for i, r in enumerate(rows)}  # HubSpot record ids
        self.counts["hs_contact"] = _insert(
            store,
            hs_contact,
            {
                "id": [contact_id[int(r)] for r in rows],
                "email": [str(e).lower() for e in email[rows]],
                "createdate": joined[rows],
                "lastmodifieddate": joined[rows],
                "archived": [False] * len(rows),
            },
        )
        first = joined.min() if len(joined) else np.datetime64("2024-01-01")
        self.counts["hs_list"] = _insert(
            store,
            hs_list,
            {
                "listId": [x[0] for x in lists],
                "name": [x[1] for x in lists],
                "processingType": ["MANUAL"] * len(lists),
                "objectTypeId": ["0-1"] * len(lists),
                "createdAt": np.full(len(lists), first),
                "updatedAt": np.full(len(lists), first),
                "listVersion": [1] * len(lists),
            },
        )
        # Members who left (their service ended) were taken off the lists, as a marketer would.
        kept = [(lid, m[alive[m]]) for lid, m in members]
        chosen = np.concatenate([m for _, m in kept])
        self.counts["hs_list_membership"] = _insert(
            store,
            hs_list_membership,
            {
                "listId": np.concatenate([np.full(len(m), lid, dtype=object) for lid, m in kept]),
                "recordId": [contact_id[int(r)] for r in chosen],
                "membershipTimestamp": joined[chosen],
            },
        )

    # ----------------------------------------------------------------------- ground truth
    def _truth(self, store: sqlite3.Connection) -> None:
        def dates(days: np.ndarray) -> np.ndarray:
            out = self.W0 + np.minimum(days, self.D).astype("timedelta64[D]")
            return np.where((days < 0) | (days >= BIG), np.datetime64("NaT"), out).astype("datetime64[D]")

        ended = self.status_end == ENDED
        self.counts["truth_account"] = _insert(
            store,
            truth_account,
            {
                "account_id": self.product_id,
                "trajectory": self.trajectory,
                "trajectory_start": (self.W0 + self.trajectory_start.astype("timedelta64[D]")),
                "churn_date": dates(np.where(ended, self.end_day, -1)),
                "churn_cause": self.cause,
                "expansion_date": dates(self.expansion),
                "contraction_date": dates(self.contraction),
                "plan": np.asarray(PLANS, dtype=object)[self.plan_end],
                "seats": self.seats_end,
            },
        )
        churned = {c: int(np.sum(ended & (self.cause == c))) for c in (*CHURN_CAUSES, TRIAL_CAUSE)}
        self.summary_fields = {
            "counts": dict(self.counts),
            "churned": churned,
            "paying_months": self.paying_days / MONTH,
            "trials_ended": self.trials_ended,
            "trials_paid": self.trials_paid,
        }


# =============================================================================== CLI
def main(argv: Sequence[str] | None = None) -> int:
    """Generate the self-serve company from the command line and print its summary."""
    parser = argparse.ArgumentParser(
        prog="python -m health_sandbox.self_serve", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--folder", type=Path, required=True, help="where company.db and product.db go")
    parser.add_argument("--accounts", type=int, default=SelfServeSpec.accounts)
    parser.add_argument("--days", type=int, default=SelfServeSpec.days)
    parser.add_argument("--seed", type=int, default=SelfServeSpec.seed)
    parser.add_argument(
        "--end-date", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today, UTC)"
    )
    parser.add_argument(
        "--event-days", type=int, default=None, help="keep raw product events for the last N days only"
    )
    args = parser.parse_args(argv)
    spec = SelfServeSpec(
        accounts=args.accounts,
        days=args.days,
        seed=args.seed,
        end_date=args.end_date or _today_utc(),
        event_days=args.event_days,
    )
    print(generate_self_serve(args.folder, spec).describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
