"""The synthetic company: a deterministic, believable B2B SaaS business and its source systems.

Every demo, test and model-accuracy figure stands on this data, so the story below is fixed
first and the data follows from it. It is never tuned to make a model look good.

The causal story
----------------
**The business.** Customers buy seats on one of three plans - starter (~55 %, 3-10 seats,
$25/seat/month), growth (~33 %, 10-40 seats, $45) and enterprise (~12 %, 40-200 seats, $75, or
$765/seat/year when billed annually, as ~80 % of enterprise is). Every customer signs a one-year
contract that renews on its anniversary; starter and growth are billed monthly. Customers joined
over the ~5 years before ``end_date``; ~22 % joined inside the generated window, so onboarding
customers exist. About 3 % of accounts are enterprise parents with 2-4 child accounts (a
subsidiary or region), each child with its own seats, subscription and health.

**Latent health.** Each account has a daily health ``h(t)`` in [0, 1] that follows one
trajectory - healthy (~30 %), stable (~30 %), slowly_declining (~11 %), sudden_shock (~7 %),
recovering (~8 %) or churning (6 % per year of window: ~12 % of a 2-year window, on a path that
ends at one of its renewals) - plus autocorrelated noise. A child copies its parent's
trajectory half the time. Health is never observed; it *causes* every signal, with noise:

* **Product** - each seat's user is active on a day with probability rising with ``h`` (lower
  at weekends, ramping up over a new customer's first two months, and scaled by the user's own
  propensity), logs in once and uses 1-2 features; the breadth of features used (of 10, 6 core)
  follows ``h`` a week late, the depth (a second feature) follows ``h``.
* **Zendesk** - the ticket rate rises as ``h`` falls (and with seats, and in onboarding);
  unhappy accounts file complaints (tag ``complaint``), high/urgent tickets, wait longer for a
  solution, reopen more and rate support ``bad``; healthy and new ones ask how-to questions
  (tag ``how_to``).
* **Stripe** - invoices every billing period: seats x price plus metered usage (25 cents per
  feature use in the previous month), so usage billing tracks engagement. Payment failures
  (``attempt_count`` > 1), late payment of annual invoices, uncollectible invoices and the
  rare dispute concentrate on unhappy accounts.
* **Salesforce** - CSMs own accounts (~5 % are "unowned": left with a CSM who has since left,
  an inactive user, or parked on the integration user); executive-sponsor touches become rarer
  as ``h`` (30-day mean) falls; outreach e-mails are answered with probability rising with
  ``h``; contacts answer quarterly NPS surveys with scores around ``1 + 9 h``.

**Outcomes.** At each contract anniversary the account decides, ~2 weeks ahead, from its
recent health (the mean over the 60 to 14 days before it): churn is likely below ``h`` ~ 0.3,
a coin flip around 0.33 and rare above 0.5 (so some low-health accounts renew anyway). The
result is ~11 % annualised churn. Independently, ~2 % of renewals are lost to causes the signals barely
show (a budget cut, an acquisition): about 15 % of all churn, the model's honest false
negatives. Churn cancels the subscription at the period end, closes the renewal opportunity as
lost, turns the Salesforce account into a "Former Customer" and deactivates the product users:
usage stops. Healthy accounts expand (more seats, a won expansion opportunity) with a monthly
chance rising with ``h`` above 0.65; unhappy accounts contract (fewer seats, users deactivated)
at renewal, or at any month end on monthly billing. ``truth_account`` records trajectory,
churn, expansion and contraction dates (and the churn cause) for judging models; the pipeline
never reads it.

**Crosswalk realism.** Salesforce Ids are 18-character with the real checksum; Zendesk
organisations carry the Salesforce Id as ``external_id`` (the 15-character form for ~3 %,
missing for ~1 %); ~1 % of accounts have a duplicate Zendesk organisation (which takes some of
their tickets) or a duplicate Stripe customer; ~1.5 % of Stripe customers lack the
``salesforce_account_id`` metadata (but keep ``product_account_id``); ~2 % of Salesforce
accounts lack ``Product_Account_Id__c``; every system holds a couple of junk records that map
to nothing.

**Determinism.** The same ``CompanySpec`` gives byte-identical tables (only
``sandbox_meta.generated_at`` differs): every random draw comes from a ``numpy`` PCG64 stream
named after its purpose and derived from the seed, and nothing depends on dict/set order or
the clock. All timestamps are naive UTC and none is after ``end_date`` (end of that day),
except the two scheduled Stripe fields that are in the future by nature
(``current_period_end``, ``due_date``).

Run ``python -m health_sandbox.company --folder DIR`` to generate one from the shell.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import sqlite3
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Table

from health_sandbox import product_db
from health_sandbox.ids import (
    product_account_id,
    product_user_id,
    salesforce_ids,
    stripe_ids,
    to_15,
)
from health_sandbox.store import (
    sandbox_meta,
    sf_account,
    sf_campaign,
    sf_campaign_member,
    sf_campaign_member_status,
    sf_contact,
    sf_nps_response,
    sf_opportunity,
    sf_task,
    sf_user,
    sf_user_role,
    store_engine,
    stripe_customer,
    stripe_dispute,
    stripe_invoice,
    stripe_subscription,
    truth_account,
    zd_organization,
    zd_satisfaction_rating,
    zd_ticket,
    zd_user,
)

GENERATOR_VERSION = "5"  # 5: the role hierarchy, the leaders, Account.Executive_Sponsor_User__c

PLANS = ("starter", "growth", "enterprise")
PLAN_SHARES = (0.55, 0.33, 0.12)
PLAN_SEATS = {"starter": (3, 10), "growth": (10, 40), "enterprise": (40, 200)}
PRICE_PER_SEAT_MONTH_CENTS = {"starter": 2500, "growth": 4500, "enterprise": 7500}
ANNUAL_DISCOUNT = 0.85  # annual billing: 12 months for the price of 10.2
ENTERPRISE_ANNUAL_SHARE = 0.8
USAGE_PRICE_CENTS = 25  # metered: per feature use, billed in arrears each month

TRAJECTORIES = ("healthy", "stable", "slowly_declining", "sudden_shock", "recovering", "churning")
TRAJECTORY_SHARES = (0.32, 0.32, 0.12, 0.07, 0.09, 0.06)  # churning share: per year of window

NEW_CUSTOMER_SHARE = 0.22
TENURE_YEARS = 5
HIDDEN_CHURN_PER_RENEWAL = 0.02  # budget cuts and acquisitions: invisible in the signals
HIDDEN_CAUSES = ("budget_cut", "acquisition")

ACCOUNT_CHUNK = 1000  # accounts simulated together: bounds memory at 100k accounts
EVENT_FLUSH_ROWS = 400_000
INSERT_SLICE_ROWS = 200_000

INDUSTRIES = (
    "Software",
    "Healthcare",
    "Financial Services",
    "Retail",
    "Manufacturing",
    "Education",
    "Media",
    "Logistics",
    "Professional Services",
    "Nonprofit",
)
NAME_HEADS = (
    "Northwind",
    "Blue Harbor",
    "Cedar",
    "Summit",
    "Ironclad",
    "Brightline",
    "Redwood",
    "Silver Oak",
    "Granite",
    "Lumen",
    "Harbor Point",
    "Kestrel",
    "Meridian",
    "Oakridge",
    "Pioneer",
    "Quartz",
    "Riverbend",
    "Sequoia",
    "Tidewater",
    "Vantage",
    "Willow",
    "Atlas",
    "Beacon",
    "Cobalt",
    "Driftwood",
    "Evergreen",
    "Falcon",
    "Golden Gate",
    "Horizon",
    "Juniper",
    "Keystone",
    "Lakeshore",
    "Maple",
    "Nimbus",
    "Orchard",
    "Polaris",
    "Rockport",
    "Stonebridge",
    "Trailhead",
    "Upland",
)
NAME_TAILS = (
    "Logistics",
    "Health",
    "Labs",
    "Analytics",
    "Foods",
    "Capital",
    "Robotics",
    "Media",
    "Energy",
    "Systems",
    "Outfitters",
    "Dental",
    "Learning",
    "Freight",
    "Partners",
    "Software",
    "Clinics",
    "Insurance",
    "Retail",
    "Manufacturing",
    "Studios",
    "Networks",
    "Biotech",
    "Consulting",
)
NAME_LEGAL = ("Inc", "LLC", "Ltd", "GmbH", "Co", "Group", "Corp")
CHILD_UNITS = ("EMEA", "APAC", "Canada", "LATAM", "UK", "Labs", "Retail Division", "Federal")
FIRST_NAMES = (
    "Alex",
    "Priya",
    "Jordan",
    "Maria",
    "Chen",
    "Fatima",
    "Lukas",
    "Aisha",
    "Diego",
    "Hannah",
    "Kenji",
    "Olivia",
    "Mateo",
    "Sofia",
    "Noah",
    "Amara",
    "Ethan",
    "Ingrid",
    "Ravi",
    "Zoe",
    "Omar",
    "Claire",
    "Tomasz",
    "Yuki",
    "Samuel",
    "Leila",
    "Marcus",
    "Elena",
    "Kwame",
    "Nina",
)
LAST_NAMES = (
    "Nguyen",
    "Patel",
    "Garcia",
    "Smith",
    "Kim",
    "Müller",
    "Okafor",
    "Rossi",
    "Johansson",
    "Cohen",
    "Silva",
    "Tanaka",
    "Brown",
    "Haddad",
    "Kowalski",
    "Martin",
    "Singh",
    "Lopez",
    "Dubois",
    "Walker",
    "Novak",
    "Ahmed",
    "Fischer",
    "Moreau",
    "Reyes",
    "Sato",
    "Clarke",
    "Ivanova",
    "Mensah",
    "Larsen",
)
# Leaders added after the other users: (role, title). Their roles sit in the hierarchy by
# ROLE_PARENTS; the executives among them sponsor accounts (Account.Executive_Sponsor_User__c).
LEADERS = (
    ("Director of Customer Success", "Director of Customer Success"),
    ("Support Manager", "Support Manager"),
    ("Chief Revenue Officer", "Chief Revenue Officer"),
    ("Chief Executive Officer", "Chief Executive Officer"),
)
EXECUTIVE_ROLES = ("Chief Revenue Officer", "Chief Executive Officer")
ROLE_PARENTS = {
    "Customer Success Manager": "Director of Customer Success",
    "Director of Customer Success": "VP Customer Success",
    "Support Manager": "VP Customer Success",
    "VP Customer Success": "Chief Executive Officer",
    "Account Executive": "Chief Revenue Officer",
    "Chief Revenue Officer": "Chief Executive Officer",
}
SPONSOR_TITLES = ("VP Operations", "Chief Operating Officer", "VP Finance", "Director of Operations", "CTO")
CONTACT_TITLES = ("Operations Manager", "Analyst", "Team Lead", "Product Admin", "IT Manager", "Coordinator")
TICKET_TOPICS = (
    "billing",
    "integrations",
    "reporting",
    "login",
    "performance",
    "data_import",
    "permissions",
    "api",
)
TICKET_SUBJECTS = {
    "how_to": ("How do I set up {t}?", "Question about {t}", "Where can I find {t} settings?"),
    "complaint": ("{T} is broken again", "Unacceptable {t} problems", "Still waiting on the {t} fix"),
    "other": ("{T} request", "Issue with {t}", "{T}: follow-up"),
}
NPS_COMMENTS = {
    "promoter": ("Great product, the team loves it.", "Saves us hours every week.", ""),
    "passive": ("Does the job.", "Some features are hard to find.", ""),
    "detractor": ("Too many bugs lately.", "Support is slow to respond.", "Not worth the price for us.", ""),
}

EPOCH = np.datetime64("1970-01-01T00:00:00", "s")


def _today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class CompanySpec:
    """What to generate: how many accounts, how many days of history ending when, which seed.

    ``event_days`` limits the raw product-event history to the last N days (None: all days).
    Everything else (tickets, invoices, tasks) always covers the whole window; the limit exists
    because events dominate the volume (2,000 accounts x 730 days is ~11 million rows, ~1.8 GB; 100,000 accounts would be
    ~560 million rows, so use e.g. ``event_days=30`` there: ~23 million rows).
    """

    accounts: int = 2000
    days: int = 730
    seed: int = 42
    end_date: date = field(default_factory=_today_utc)
    event_days: int | None = None

    def __post_init__(self) -> None:
        if self.accounts < 20:
            raise ValueError(
                f"CompanySpec.accounts={self.accounts}: need at least 20 accounts for a believable company"
            )
        if self.days < 90:
            raise ValueError(f"CompanySpec.days={self.days}: need at least 90 days of history for trends")
        if self.event_days is not None and not 1 <= self.event_days <= self.days:
            raise ValueError(
                f"CompanySpec.event_days={self.event_days}: must be between 1 and days={self.days}"
            )

    @property
    def window_start(self) -> date:
        """The first day of generated history."""
        return self.end_date - timedelta(days=self.days - 1)

    def as_meta(self) -> dict[str, str]:
        """The spec as ``sandbox_meta`` rows (the key a finished company is recognised by)."""
        return {
            "seed": str(self.seed),
            "accounts": str(self.accounts),
            "days": str(self.days),
            "end_date": self.end_date.isoformat(),
            "event_days": "" if self.event_days is None else str(self.event_days),
            "generator_version": GENERATOR_VERSION,
        }


@dataclass
class CompanySummary:
    """What was generated: row counts per table, outcomes, and how long it took."""

    folder: Path
    spec: CompanySpec
    counts: dict[str, int]
    churned_accounts: int
    hidden_cause_churns: int
    expanded_accounts: int
    contracted_accounts: int
    annual_churn_rate: float
    seconds: float
    reused: bool = False

    def describe(self) -> str:
        """A few human lines: the company, its outcomes, the volume per table, the timing."""
        s = self.spec
        head = "reused existing" if self.reused else "generated"
        lines = [
            f"Synthetic company in {self.folder} ({head} in {self.seconds:.1f} s)",
            f"  {s.accounts:,} customer accounts, {s.days} days ending {s.end_date.isoformat()}, seed {s.seed}"
            + (f", product events for the last {s.event_days} days" if s.event_days else ""),
            f"  churned {self.churned_accounts:,} ({self.annual_churn_rate:.1%} annualised;"
            f" {self.hidden_cause_churns:,} from causes the signals barely show),"
            f" expanded {self.expanded_accounts:,}, contracted {self.contracted_accounts:,}",
            "  rows: " + ", ".join(f"{name} {n:,}" for name, n in self.counts.items()),
        ]
        return "\n".join(lines)


# =============================================================================== entry point
def generate_company(folder: Path, spec: CompanySpec) -> CompanySummary:
    """Generate the company ``spec`` into ``folder`` (``company.db`` and ``product.db``).

    Returns at once when ``folder`` already holds a complete company of the same spec. Both
    files are written under temporary names and moved into place only when complete, and left
    fully checkpointed, so they can be copied as plain files.
    """
    started = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    company_path, product_path = folder / "company.db", folder / "product.db"
    existing = _existing_summary(folder, spec)
    if existing is not None:
        existing.seconds = time.perf_counter() - started
        return existing

    tmp_company, tmp_product = folder / "company.db.generating", folder / "product.db.generating"
    for path in (tmp_company, tmp_product, company_path, product_path):
        _remove_sqlite(path)

    world = _World(spec)
    store = _open_sqlite(tmp_company, store=True)
    product = _open_sqlite(tmp_product, store=False)
    try:
        counts = world.generate(store, product)
        _write_meta(store, spec, world.summary_fields)
        for conn in (store, product):
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
        product.close()
    os.replace(tmp_product, product_path)
    os.replace(tmp_company, company_path)  # last: company.db's sandbox_meta marks completeness
    return world.summary(folder, counts, time.perf_counter() - started)


def _remove_sqlite(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        p.unlink(missing_ok=True)


def _open_sqlite(path: Path, *, store: bool) -> sqlite3.Connection:
    """A raw connection for bulk loading, the schema created through SQLAlchemy first."""
    engine = store_engine(path) if store else product_db.product_engine(path)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    # Speed over durability while generating: a crash leaves a *.generating file, never a
    # half-written company.db, and the next call starts over.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def _existing_summary(folder: Path, spec: CompanySpec) -> CompanySummary | None:
    """The summary of a complete company of ``spec`` already in ``folder``, else None."""
    company_path, product_path = folder / "company.db", folder / "product.db"
    if not (company_path.exists() and product_path.exists()):
        return None
    try:
        conn = sqlite3.connect(f"file:{company_path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM sandbox_meta").fetchall())
            if any(meta.get(k) != v for k, v in spec.as_meta().items()) or "summary" not in meta:
                return None
            saved = json.loads(meta["summary"])
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return CompanySummary(folder=folder, spec=spec, seconds=0.0, reused=True, **saved)


def _write_meta(conn: sqlite3.Connection, spec: CompanySpec, summary: dict[str, Any] | None = None) -> None:
    rows = spec.as_meta() | {
        "generated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    }
    if summary is not None:
        rows["summary"] = json.dumps(summary)
    conn.execute("BEGIN")
    conn.executemany(
        f'INSERT OR REPLACE INTO {sandbox_meta.name} ("key", "value") VALUES (?, ?)', sorted(rows.items())
    )
    conn.execute("COMMIT")


# =============================================================================== helpers
def _rng(seed: int, purpose: str, *more: int) -> np.random.Generator:
    """An independent random stream per purpose, so changing one part never shifts another."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(purpose.encode()), *more]))
    )


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _exact_pick(
    rng: np.random.Generator, candidates: np.ndarray, share: float, minimum: int = 1
) -> np.ndarray:
    """``share`` of ``candidates`` (at least ``minimum``): imperfections exist in every size."""
    k = min(len(candidates), max(minimum, round(share * len(candidates))))
    return np.sort(rng.choice(candidates, size=k, replace=False)) if k else candidates[:0]


def _add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _ts_strings(values: np.ndarray) -> list[str | None]:
    """datetime64 values as SQLAlchemy's SQLite DATETIME strings (None for NaT)."""
    strs = np.datetime_as_string(values.astype("datetime64[s]"), unit="s").tolist()
    return [None if s == "NaT" else s.replace("T", " ") + ".000000" for s in strs]


def _date_strings(values: np.ndarray) -> list[str | None]:
    strs = np.datetime_as_string(values.astype("datetime64[D]"), unit="D").tolist()
    return [None if s == "NaT" else s for s in strs]


def _unix(values: np.ndarray) -> list[int | None]:
    secs = values.astype("datetime64[s]")
    ints = (secs - EPOCH).astype(np.int64).tolist()
    return [None if np.isnat(v) else i for v, i in zip(secs, ints, strict=True)]


def _column_values(values: Any) -> list[Any]:
    """One column as Python values ready for sqlite3 (dates formatted, NaN as NULL)."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "M":
            unit = np.datetime_data(values.dtype)[0]
            return _date_strings(values) if unit == "D" else _ts_strings(values)
        if values.dtype.kind == "f":
            return [None if v != v else v for v in values.tolist()]
        return values.tolist()
    return list(values)


def _insert(conn: sqlite3.Connection, table: Table, columns: dict[str, Any]) -> int:
    """Bulk-insert columns (name -> sequence) into ``table`` in one transaction; returns rows.

    Rows are converted to Python values slice by slice, so a table of millions of rows never
    exists as Python objects all at once.
    """
    names = list(columns)
    unknown = [n for n in names if n not in table.c]
    if unknown:
        raise KeyError(f"{table.name} has no column(s) {unknown}")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"{table.name}: columns of different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    quoted = ", ".join(f'"{c}"' for c in names)  # Salesforce names are mixed-case
    sql = f"INSERT INTO {table.name} ({quoted}) VALUES ({', '.join('?' * len(names))})"
    conn.execute("BEGIN")
    for rows in _chunks(n, INSERT_SLICE_ROWS):
        cols = [_column_values(v[rows]) for v in columns.values()]
        conn.executemany(sql, zip(*cols, strict=True))
    conn.execute("COMMIT")
    return n


def _json_list(objs: Sequence[Any]) -> list[str]:
    return [json.dumps(o) for o in objs]


def _choice(
    rng: np.random.Generator, options: Sequence[str], size: int, p: Sequence[float] | None = None
) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=size, p=p)]


def _trailing_mean(h: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` days (fewer at the start) along axis 1."""
    c = np.cumsum(np.pad(h.astype(np.float64), ((0, 0), (1, 0))), axis=1)
    idx = np.arange(1, h.shape[1] + 1)
    lo = np.maximum(idx - window, 0)
    return ((c[:, idx] - c[:, lo]) / (idx - lo)).astype(np.float32)


# =============================================================================== the world
class _World:
    """All of the company's state while it is generated, section by section."""

    def __init__(self, spec: CompanySpec) -> None:
        self.spec = spec
        self.D = spec.days
        self.W0 = np.datetime64(spec.window_start, "D")
        self.end_ts = np.datetime64(spec.end_date, "D") + np.timedelta64(1, "D") - np.timedelta64(1, "s")
        self.counts: dict[str, int] = {}

    # ----------------------------------------------------------------------- orchestration
    def generate(self, store: sqlite3.Connection, product: sqlite3.Connection) -> dict[str, int]:
        """Run every section in causal order and write the tables; returns row counts."""
        self._draw_accounts()
        self._draw_health()
        self._simulate_contracts()
        self._salesforce_people(store)
        self._product(product)
        self._zendesk(store)
        self._stripe(store)
        self._salesforce_records(store)
        self._marketing(store)
        self._truth(store)
        return self.counts

    def summary(self, folder: Path, counts: dict[str, int], seconds: float) -> CompanySummary:
        """The summary; also saved in ``sandbox_meta`` so a reuse can report it."""
        return CompanySummary(folder=folder, spec=self.spec, seconds=seconds, **self.summary_fields)

    # ----------------------------------------------------------------------- accounts
    def _draw_accounts(self) -> None:
        spec, D, N = self.spec, self.D, self.spec.accounts
        rng = _rng(spec.seed, "accounts")
        self.N = N
        plan = rng.choice(3, size=N, p=PLAN_SHARES)

        # B2B parents: enterprise accounts with 2-4 children drawn from growth/enterprise.
        n_parents = max(1, round(0.03 * N))
        parent = np.full(N, -1)
        enterprise = np.flatnonzero(plan == 2)
        if len(enterprise) < n_parents:
            extra = rng.choice(np.flatnonzero(plan != 2), size=n_parents - len(enterprise), replace=False)
            plan[extra] = 2
            enterprise = np.flatnonzero(plan == 2)
        parents = np.sort(rng.choice(enterprise, size=n_parents, replace=False))
        pool = np.setdiff1d(np.arange(N), parents)
        pool = pool[rng.permutation(len(pool))]
        taken = 0
        for p in parents:
            k = int(rng.integers(2, 5))
            kids = pool[taken : taken + k]
            taken += k
            parent[kids] = p
            plan[kids] = np.where(rng.random(len(kids)) < 0.6, 1, 2)
        self.parent = parent
        self.plan = plan

        lo = np.array([PLAN_SEATS[p][0] for p in PLANS])[plan]
        hi = np.array([PLAN_SEATS[p][1] for p in PLANS])[plan]
        # Log-uniform: most accounts sit at the low end of their plan's range.
        self.seats0 = np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1)))).astype(np.int64)
        self.annual = (plan == 2) & (rng.random(N) < ENTERPRISE_ANNUAL_SHARE)
        monthly = np.array([PRICE_PER_SEAT_MONTH_CENTS[p] for p in PLANS])[plan]
        self.unit_amount = np.where(self.annual, np.round(monthly * 12 * ANNUAL_DISCOUNT), monthly).astype(
            np.int64
        )

        # Tenure: new customers inside the window, the rest over the years before it.
        new = rng.random(N) < NEW_CUSTOMER_SHARE
        offset_new = rng.integers(7, D - 7, size=N)
        span = max(30, TENURE_YEARS * 365 - D)
        offset_old = D + np.floor(span * rng.random(N) ** 1.3).astype(np.int64)
        since_idx = np.where(new, D - 1 - offset_new, D - 1 - offset_old)
        for c in np.flatnonzero(parent >= 0):  # a subsidiary joins after its parent
            since_idx[c] = min(D - 8, max(since_idx[c], since_idx[parent[c]] + int(rng.integers(0, 400))))
        self.since_idx = since_idx.astype(np.int64)
        self.since = self.W0 + self.since_idx.astype("timedelta64[D]")

        self.industry = _choice(rng, INDUSTRIES, N)
        self.names = self._account_names(rng)
        self.domain = np.array([self._domain(n) for n in self.names], dtype=object)
        # Peak usage hour in UTC by region (Americas, Europe, Asia-Pacific).
        self.peak_hour = np.array([16.5, 10.0, 3.0])[rng.choice(3, size=N, p=[0.55, 0.33, 0.12])]
        self.sf_id = np.array(salesforce_ids("Account", np.arange(N)), dtype=object)
        self.product_id = np.array([product_account_id(i + 1) for i in range(N)], dtype=object)

    def _account_names(self, rng: np.random.Generator) -> np.ndarray:
        names: list[str] = []
        seen: set[str] = set()
        heads = rng.integers(0, len(NAME_HEADS), self.N)
        tails = rng.integers(0, len(NAME_TAILS), self.N)
        legal = rng.integers(0, len(NAME_LEGAL), self.N)
        units = rng.integers(0, len(CHILD_UNITS), self.N)
        for i in range(self.N):
            base = f"{NAME_HEADS[heads[i]]} {NAME_TAILS[tails[i]]} {NAME_LEGAL[legal[i]]}"
            name, k = base, 2
            while name in seen:
                name, k = f"{base} {k}", k + 1
            seen.add(name)
            names.append(name)
        for i in np.flatnonzero(self.parent >= 0):  # children carry the parent's name
            base = f"{names[self.parent[i]]} - {CHILD_UNITS[units[i]]}"
            name, k = base, 2
            while name in seen:
                name, k = f"{base} {k}", k + 1
            seen.add(name)
            names[i] = name
        return np.array(names, dtype=object)

    @staticmethod
    def _domain(name: str) -> str:
        slug = "".join(
            ch for ch in name.lower().replace(" - ", "-").replace(" ", "") if ch.isalnum() or ch == "-"
        )
        return f"{slug}.com"

    # ----------------------------------------------------------------------- latent health
    def _draw_health(self) -> None:
        spec, D, N = self.spec, self.D, self.N
        rng = _rng(spec.seed, "health")
        # Accounts on a path to churn *within the window* scale with its length, so the
        # annualised churn rate does not depend on how many days are generated.
        shares = np.array(TRAJECTORY_SHARES)
        shares[-1] = min(0.3, shares[-1] * D / 365)
        shares[:-1] *= (1 - shares[-1]) / shares[:-1].sum()
        traj = rng.choice(len(TRAJECTORIES), size=N, p=shares)
        copy = (self.parent >= 0) & (rng.random(N) < 0.5)
        traj[copy] = traj[self.parent[copy]]
        first = np.clip(self.since_idx, 0, D - 1)
        b1 = rng.uniform(0.72, 0.92, N)
        b2 = b1.copy()
        s = first.astype(np.float64)
        length = np.ones(N)
        drop = np.zeros(N)
        regain = np.zeros(N)
        u = rng.random((6, N))
        for i in range(N):
            name = TRAJECTORIES[traj[i]]
            f = first[i]
            room = D - f
            if name == "churning":
                renewals = [r for r in self._anniversaries(i) if r >= max(f + 60, 60)]
                if not renewals:
                    name = "slowly_declining"
                else:
                    target = renewals[int(u[0, i] * len(renewals))]
                    length[i] = 60 + 140 * u[1, i]
                    s[i] = target - length[i] - 10 - 35 * u[2, i]
                    b1[i] = 0.55 + 0.25 * u[3, i]
                    b2[i] = 0.05 + 0.15 * u[4, i]
            if name == "sudden_shock" and room < 60:
                name = "stable"
            if name == "stable":
                b1[i] = b2[i] = 0.50 + 0.22 * u[0, i]
            elif name == "slowly_declining":
                s[i] = f - 60 + (60 + 0.5 * room) * u[1, i]
                length[i] = 150 + 250 * u[2, i]
                b1[i] = 0.62 + 0.23 * u[3, i]
                b2[i] = 0.20 + 0.25 * u[4, i]
            elif name == "recovering":
                s[i] = f - 30 + (30 + 0.5 * room) * u[1, i]
                length[i] = 90 + 150 * u[2, i]
                b1[i] = 0.28 + 0.17 * u[3, i]
                b2[i] = 0.60 + 0.22 * u[4, i]
            elif name == "sudden_shock":
                s[i] = f + 30 + (room - 45) * u[1, i]
                b1[i] = b2[i] = 0.62 + 0.23 * u[3, i]
                drop[i] = 0.30 + 0.20 * u[4, i]
                regain[i] = 0.6 * u[5, i]
            traj[i] = TRAJECTORIES.index(name)
        self.traj = traj
        flat = np.isin(traj, [TRAJECTORIES.index("healthy"), TRAJECTORIES.index("stable")])
        start_idx = np.where(flat, first, np.round(s)).astype(np.int64)
        self.traj_start = self.W0 + np.clip(start_idx, self.since_idx, D - 1).astype("timedelta64[D]")

        t = np.arange(D, dtype=np.float32)[None, :]
        self.h = np.empty((N, D), dtype=np.float32)
        self.h_smooth = np.empty((N, D), dtype=np.float32)
        for chunk in _chunks(N, 5000):  # chunked: bounded memory at 100k accounts
            sc, lc = s[chunk, None], length[chunk, None]
            base = b1[chunk, None] + (b2 - b1)[chunk, None] * np.clip((t - sc) / lc, 0, 1)
            regained = regain[chunk, None] * np.clip((t - sc) / 180, 0, 1)
            base -= drop[chunk, None] * (t >= sc) * (1 - regained)
            # Autocorrelated noise: weeks that go better or worse than the trajectory.
            eps = rng.normal(0, 0.03, (chunk.stop - chunk.start, D)).astype(np.float32)
            noise = np.empty_like(eps)
            noise[:, 0] = eps[:, 0] / np.sqrt(1 - 0.9**2)
            for d in range(1, D):
                noise[:, d] = 0.9 * noise[:, d - 1] + eps[:, d]
            self.h[chunk] = np.clip(base + noise, 0.02, 0.98)
            self.h_smooth[chunk] = _trailing_mean(self.h[chunk], 30)

    def _anniversaries(self, i: int) -> list[int]:
        """Day indices of account ``i``'s contract anniversaries inside the window."""
        since = self.spec.window_start + timedelta(days=int(self.since_idx[i]))
        out, k = [], 1
        while True:
            day = (_add_months(since, 12 * k) - self.spec.window_start).days
            if day >= self.D:
                return out
            if day >= 0:
                out.append(day)
            k += 1

    # ----------------------------------------------------------------------- contracts
    def _simulate_contracts(self) -> None:
        """Renewals, churn, expansion and contraction, decided from recent health."""
        spec, D, N = self.spec, self.D, self.N
        rng = _rng(spec.seed, "contracts")
        self.churn_day = np.full(N, -1, dtype=np.int64)
        self.churn_cause = np.full(N, None, dtype=object)
        self.renewals: list[list[tuple[int, bool, int]]] = []  # (day, won, seats)
        self.seat_changes: list[list[tuple[int, int, str]]] = []  # (day, new seats, kind)
        h = self.h
        for i in range(N):
            seats = int(self.seats0[i])
            first = max(0, int(self.since_idx[i]))
            anniversaries = self._anniversaries(i)
            checks = [(d, "renewal") for d in anniversaries]
            checks += [(d, "month") for d in range(first + 30, D, 30)]
            checks.sort(key=lambda c: (c[0], c[1] != "renewal"))
            renewals: list[tuple[int, bool, int]] = []
            changes: list[tuple[int, int, str]] = []
            expanded = False
            for day, kind in checks:
                recent = float(h[i, max(0, day - 60) : max(1, day - 14)].mean())
                if kind == "renewal":
                    p_churn = 0.9 / (1 + np.exp(-(0.33 - recent) / 0.05))
                    if rng.random() < p_churn:
                        self.churn_day[i], self.churn_cause[i] = day, "health"
                    elif rng.random() < HIDDEN_CHURN_PER_RENEWAL:
                        self.churn_day[i] = day
                        self.churn_cause[i] = HIDDEN_CAUSES[int(rng.integers(0, 2))]
                    if self.churn_day[i] >= 0:
                        renewals.append((day, False, seats))
                        break
                    renewals.append((day, True, seats))
                    if rng.random() < 0.6 * np.clip((0.55 - recent) / 0.3, 0, 1) and seats > 2:
                        seats = max(2, seats - max(1, int(seats * rng.uniform(0.15, 0.4))))
                        changes.append((day, seats, "contraction"))
                    continue
                p_expand = (0.025 if expanded else 0.04) * np.clip((recent - 0.65) / 0.25, 0, 1)
                if rng.random() < p_expand:
                    seats += max(1, int(seats * rng.uniform(0.1, 0.5)))
                    changes.append((day, seats, "expansion"))
                    expanded = True
                elif (
                    not self.annual[i]
                    and seats > 2
                    and rng.random() < 0.04 * np.clip((0.5 - recent) / 0.3, 0, 1)
                ):
                    seats = max(2, seats - max(1, int(seats * rng.uniform(0.15, 0.4))))
                    changes.append((day, seats, "contraction"))
            self.renewals.append(renewals)
            self.seat_changes.append(changes)

        self.seats_tl = np.repeat(self.seats0[:, None], D, axis=1).astype(np.int32)
        for i, changes in enumerate(self.seat_changes):
            for day, seats, _ in changes:
                self.seats_tl[i, day:] = seats
        t = np.arange(D)[None, :]
        churn = np.where(self.churn_day >= 0, self.churn_day, D)
        self.alive = (t >= self.since_idx[:, None]) & (t < churn[:, None])
        self.seats_now = np.array(
            [self.seats_tl[i, (self.churn_day[i] - 1) if self.churn_day[i] > 0 else D - 1] for i in range(N)]
        )

    def _first_change(self, kind: str) -> np.ndarray:
        out = np.full(self.N, np.datetime64("NaT"), dtype="datetime64[D]")
        for i, changes in enumerate(self.seat_changes):
            days = [d for d, _, k in changes if k == kind]
            if days:
                out[i] = self.W0 + np.timedelta64(days[0], "D")
        return out

    # ----------------------------------------------------------------------- Salesforce people
    def _salesforce_people(self, store: sqlite3.Connection) -> None:
        """Users (CSMs, their VP, AEs) and contacts; accounts are written later with outcomes."""
        spec, N = self.spec, self.N
        rng = _rng(spec.seed, "sf_people")
        n_csm = max(3, -(-N // 70))
        n_ae = max(2, -(-N // 300))
        roles = (
            [("VP Customer Success", "VP Customer Success")]
            + [("Customer Success Manager", "Customer Success Manager")] * n_csm
            + [("Account Executive", "Account Executive")] * n_ae
            + [("Customer Success Manager", "Customer Success Manager")]  # left the company
            + [(None, "Integration User")]
        )
        n_users = len(roles)
        first = _choice(rng, FIRST_NAMES, n_users)
        last = _choice(rng, LAST_NAMES, n_users)
        names = [f"{f} {ln}" for f, ln in zip(first, last, strict=True)]
        names[-1] = "Salesforce Integration"
        ids = salesforce_ids("User", np.arange(n_users))
        created = (
            self.W0
            - np.timedelta64(TENURE_YEARS * 365, "D")
            + rng.integers(0, 300, n_users).astype("timedelta64[D]")
        )
        created = created.astype("datetime64[s]") + np.timedelta64(9 * 3600, "s")
        active = np.ones(n_users, dtype=bool)
        active[-2] = False
        modstamp = created.copy()
        modstamp[-2] = self.W0.astype("datetime64[s]") + np.timedelta64(
            int(rng.integers(0, self.D // 2)), "D"
        )
        # Roles are their own object (UserRole); a user points at one through UserRoleId. The
        # role hierarchy (ParentRoleId): CSMs report to the Director of Customer Success, who
        # with the Support Manager reports to the VP, who reports to the CEO; the CRO too. The
        # leaders' roles and users come after the others (their Ids and rows unchanged).
        role_names = list(dict.fromkeys(r[0] for r in roles if r[0] is not None))
        role_names += [r for r, _ in LEADERS if r not in role_names]
        role_ids = dict(zip(role_names, salesforce_ids("00E", np.arange(len(role_names))), strict=True))
        self.counts["sf_user_role"] = _insert(
            store,
            sf_user_role,
            {
                "Id": list(role_ids.values()),
                "Name": role_names,
                "ParentRoleId": [role_ids.get(ROLE_PARENTS.get(name, "")) for name in role_names],
                "SystemModstamp": np.full(len(role_names), created.min()),
            },
        )
        self.counts["sf_user"] = _insert(
            store,
            sf_user,
            {
                "Id": ids,
                "Name": names,
                "Email": [f"{n.lower().replace(' ', '.')}@northpeak-saas.com" for n in names],
                "Title": [r[1] for r in roles],
                "UserRoleId": [role_ids.get(r[0]) for r in roles],
                "IsActive": active.tolist(),
                "CreatedDate": created,
                "SystemModstamp": modstamp,
            },
        )
        self.vp_id = ids[0]
        # The leaders, after every other user: a generator of their own, so nothing above changes.
        lead_rng = _rng(spec.seed, "sf_leaders")
        lead_ids = salesforce_ids("User", n_users + np.arange(len(LEADERS)))
        lead_names = [f"{f} {ln}" for f, ln in zip(_choice(lead_rng, FIRST_NAMES, len(LEADERS)),
                                                     _choice(lead_rng, LAST_NAMES, len(LEADERS)), strict=True)]
        self.counts["sf_user"] += _insert(
            store,
            sf_user,
            {
                "Id": lead_ids,
                "Name": lead_names,
                "Email": [f"{n.lower().replace(' ', '.')}@northpeak-saas.com" for n in lead_names],
                "Title": [title for _, title in LEADERS],
                "UserRoleId": [role_ids[r] for r, _ in LEADERS],
                "IsActive": [True] * len(LEADERS),
                "CreatedDate": np.full(len(LEADERS), created.min()),
                "SystemModstamp": np.full(len(LEADERS), created.min()),
            },
        )
        # Our executive sponsors of accounts: the VP of Customer Success and the C-level leaders.
        self.executive_ids = [ids[0]] + [i for i, (r, _) in zip(lead_ids, LEADERS, strict=True) if r in EXECUTIVE_ROLES]
        csm_ids = np.array(ids[1 : 1 + n_csm], dtype=object)
        self.ae_ids = np.array(ids[1 + n_csm : 1 + n_csm + n_ae], dtype=object)
        owner = csm_ids[rng.integers(0, n_csm, N)]
        # "Unowned": left with the CSM who left, or parked on the integration user.
        orphan = _exact_pick(rng, np.arange(N), 0.05)
        owner[orphan] = np.where(rng.random(len(orphan)) < 0.4, ids[-2], ids[-1])
        self.owner = owner

        # Contacts: 2-9 per account by plan, one executive sponsor for most accounts.
        lo = np.array([2, 3, 4])[self.plan]
        hi = np.array([4, 6, 9])[self.plan]
        per = rng.integers(lo, hi + 1)
        acct = np.repeat(np.arange(N), per)
        n_c = len(acct)
        starts = np.concatenate([[0], np.cumsum(per)[:-1]])
        has_sponsor = rng.random(N) < 0.88
        sponsor_row = starts[has_sponsor]
        is_sponsor = np.zeros(n_c, dtype=bool)
        is_sponsor[sponsor_row] = True
        self.sponsor_of = np.full(N, -1)
        self.sponsor_of[has_sponsor] = sponsor_row
        fn = _choice(rng, FIRST_NAMES, n_c)
        ln = _choice(rng, LAST_NAMES, n_c)
        emails, seen = [], set()
        for k in range(n_c):
            local = f"{fn[k]}.{ln[k]}".lower().replace("ü", "u")
            email, j = f"{local}@{self.domain[acct[k]]}", 2
            while email in seen:
                email, j = f"{local}{j}@{self.domain[acct[k]]}", j + 1
            seen.add(email)
            emails.append(email)
        titles = np.where(is_sponsor, _choice(rng, SPONSOR_TITLES, n_c), _choice(rng, CONTACT_TITLES, n_c))
        joined = np.maximum(self.since_idx[acct] - 20, -TENURE_YEARS * 365) + rng.integers(0, 120, n_c)
        joined = np.minimum(joined, self.D - 1)
        created = (
            self.W0.astype("datetime64[s]")
            + joined.astype("timedelta64[D]")
            + rng.integers(8 * 3600, 18 * 3600, n_c).astype("timedelta64[s]")
        )
        edited = rng.random(n_c) < 0.3
        modstamp = created.copy()
        bump = rng.integers(1, 400, n_c).astype("timedelta64[D]")
        modstamp[edited] = np.minimum(created[edited] + bump[edited], self.end_ts)
        self.contact_acct = acct
        self.contact_ids = np.array(salesforce_ids("Contact", np.arange(n_c)), dtype=object)
        self.contact_email = np.array(emails, dtype=object)
        self.contact_name = np.array([f"{f} {last}" for f, last in zip(fn, ln, strict=True)], dtype=object)
        self.contact_created = created
        self.contact_created_idx = joined
        self.contact_starts = starts
        self.contact_per = per
        self.counts["sf_contact"] = _insert(
            store,
            sf_contact,
            {
                "Id": self.contact_ids,
                "AccountId": self.sf_id[acct],
                "FirstName": fn,
                "LastName": ln,
                "Email": emails,
                "Title": titles,
                "Executive_Sponsor__c": is_sponsor,
                "CreatedDate": created,
                "SystemModstamp": modstamp,
                "IsDeleted": [False] * n_c,
            },
        )

    def _random_contact(self, rng: np.random.Generator, accounts: np.ndarray) -> np.ndarray:
        """A random contact row of each given account."""
        return self.contact_starts[accounts] + np.floor(
            rng.random(len(accounts)) * self.contact_per[accounts]
        ).astype(np.int64)

    # ----------------------------------------------------------------------- product
    def _product(self, product: sqlite3.Connection) -> None:
        """The product database: accounts, users (seat occupants), features, the event stream."""
        spec, D, N = self.spec, self.D, self.N
        rng = _rng(spec.seed, "product_users")
        W0s = self.W0.astype("datetime64[s]")
        acct_created = self.since.astype("datetime64[s]") + rng.integers(8 * 3600, 20 * 3600, N).astype(
            "timedelta64[s]"
        )
        self.acct_created = acct_created
        self.counts["product.accounts"] = _insert(
            product,
            product_db.accounts,
            {
                "id": self.product_id,
                "name": self.names,
                "plan": np.asarray(PLANS, dtype=object)[self.plan],
                "created_at": acct_created,
            },
        )
        # Junk: the vendor's own demo and QA accounts, mapped to nothing anywhere else.
        _insert(
            product,
            product_db.accounts,
            {
                "id": ["acct_900001", "acct_900002"],
                "name": ["Internal Demo", "QA Sandbox"],
                "plan": ["enterprise", "starter"],
                "created_at": np.array([W0s, W0s]),
            },
        )
        self.counts["product.accounts"] += 2
        self.counts["product.features"] = _insert(
            product,
            product_db.features,
            {
                "feature_key": [f[0] for f in product_db.FEATURE_CATALOGUE],
                "name": [f[1] for f in product_db.FEATURE_CATALOGUE],
                "is_core": [f[2] for f in product_db.FEATURE_CATALOGUE],
            },
        )

        # Seat occupants: each seat is held by one user at a time; people leave (~9 %/year) and
        # are replaced, contraction removes seats, expansion adds them, churn ends them all.
        u_acct, u_from, u_to = [], [], []

        def tenure() -> int:  # how long a person keeps a seat before leaving
            return 30 + int(rng.exponential(4 * 365))

        for i in range(N):
            first = int(self.since_idx[i])
            end = int(self.churn_day[i]) if self.churn_day[i] >= 0 else D
            ended: list[tuple[int, int]] = []  # (start, end) of each past occupancy
            # [start day, planned leaving day] of each seat's current occupant
            slots = []
            for _ in range(int(self.seats0[i])):
                start = first + int(rng.exponential(12)) if first >= -60 else int(rng.integers(first, 0))
                slots.append([start, start + tenure()])
            for day, seats, _kind in [*self.seat_changes[i], (end, 0, "end")]:
                for slot in slots:  # people leave and are replaced a few days later
                    while slot[1] < day:
                        ended.append((slot[0], slot[1]))
                        start = slot[1] + int(rng.integers(3, 30))
                        slot[:] = [start, start + tenure()]
                if day == end:
                    break
                ended.extend((slot[0], day) for slot in slots[seats:])
                del slots[seats:]
                for _ in range(seats - len(slots)):
                    start = day + int(rng.integers(0, 30))
                    slots.append([start, start + tenure()])
            ended.extend((slot[0], end if end < D else 10**6) for slot in slots)
            u_acct.extend([i] * len(ended))
            u_from.extend(e[0] for e in ended)
            u_to.extend(e[1] for e in ended)
        u_acct_a = np.array(u_acct, dtype=np.int64)
        u_from_a = np.array(u_from, dtype=np.int64)
        u_to_a = np.array(u_to, dtype=np.int64)
        # Users whose seat starts after end_date do not exist yet; order by account then start.
        keep = (u_from_a < D) & (u_from_a < u_to_a)
        order = np.lexsort((u_from_a[keep], u_acct_a[keep]))
        ua, uf, ut = u_acct_a[keep][order], u_from_a[keep][order], u_to_a[keep][order]
        n_u = len(ua)
        self.user_ids = np.array([product_user_id(k + 1) for k in range(n_u)], dtype=object)
        fn = _choice(rng, FIRST_NAMES, n_u)
        ln = _choice(rng, LAST_NAMES, n_u)
        u_email = [
            f"{f.lower()}.{ln_.lower().replace('ü', 'u')}.{k + 1}@{self.domain[a]}"
            for k, (f, ln_, a) in enumerate(zip(fn, ln, ua, strict=True))
        ]
        self._contact_logins(ua, uf, ut, u_email)
        created = (
            W0s
            + uf.astype("timedelta64[D]")
            + rng.integers(7 * 3600, 19 * 3600, n_u).astype("timedelta64[s]")
        )
        created = np.maximum(created, acct_created[ua])
        deact = np.full(n_u, np.datetime64("NaT"), dtype="datetime64[s]")
        gone = ut < D
        deact[gone] = (
            W0s
            + ut[gone].astype("timedelta64[D]")
            + rng.integers(0, 12 * 3600, int(gone.sum())).astype("timedelta64[s]")
        )
        deact[gone] = np.maximum(deact[gone], created[gone] + np.timedelta64(3600, "s"))
        deact = np.where(deact > self.end_ts, np.datetime64("NaT"), deact)
        self.counts["product.users"] = _insert(
            product,
            product_db.users,
            {
                "id": self.user_ids,
                "account_id": self.product_id[ua],
                "email": u_email,
                "created_at": created,
                "deactivated_at": deact,
            },
        )
        self._product_events(product, ua, uf, ut)

    def _contact_logins(self, ua: np.ndarray, uf: np.ndarray, ut: np.ndarray, u_email: list[str]) -> None:
        """Most Salesforce contacts also use the product: their login is their CRM e-mail.

        About three in four contacts (and under half of the executive sponsors) hold a login;
        each takes one of its account's seats, longest-held first, so a contact is one of the
        account's steady users (and leaves, like anyone, when that seat's occupancy ends). One
        in seven of those logins was typed with capitals, as people do, so matching the two
        systems has to ignore case. Whether a contact has a login is a hash of its Id, not a
        draw from a random stream, so every other table is the same as without it.
        """
        starts = np.searchsorted(ua, np.arange(self.N), side="left")
        ends = np.searchsorted(ua, np.arange(self.N), side="right")
        held = np.minimum(ut, self.D) - np.maximum(uf, 0)
        for i in range(self.N):
            seats = sorted(range(starts[i], ends[i]), key=lambda u: (-held[u], u))
            first = int(self.contact_starts[i])
            for j in range(int(self.contact_per[i])):
                if not seats:
                    break
                k = first + j
                bucket = zlib.crc32(str(self.contact_ids[k]).encode()) % 100
                if bucket >= (45 if self.sponsor_of[i] == k else 75):
                    continue
                email = str(self.contact_email[k])
                u_email[seats.pop(0)] = email[:1].upper() + email[1:] if bucket % 7 == 0 else email

    def _product_events(
        self, product: sqlite3.Connection, ua: np.ndarray, uf: np.ndarray, ut: np.ndarray
    ) -> None:
        spec, D, N = self.spec, self.D, self.N
        for idx in product_db.events.indexes:  # built once at the end: far faster than per row
            product.execute(f"DROP INDEX IF EXISTS {idx.name}")
        emit_from = D - (spec.event_days or D)
        weekday = (self.W0 + np.arange(D)).astype("datetime64[D]").view("int64")
        weekend = ((weekday + 3) % 7) >= 5  # 1970-01-01 was a Thursday
        day_factor = np.where(weekend, 0.10, 1.0).astype(np.float32)

        minutes = np.arange((D - emit_from) * 1440, dtype=np.int64)
        grid_times = (
            self.W0.astype("datetime64[s]")
            + np.timedelta64(emit_from, "D")
            + (minutes * 60 + (minutes * 37 + 11) % 60).astype("timedelta64[s]")
        )
        grid = np.array(_ts_strings(grid_times), dtype=object)
        feature_keys = np.array([None] + [f[0] for f in product_db.FEATURE_CATALOGUE], dtype=object)
        event_names = np.array(["login", "feature_used"], dtype=object)

        self.feature_uses = np.zeros((N, D), dtype=np.int32)
        total = 0
        buffer: list[tuple[np.ndarray, ...]] = []
        buffered = 0

        def flush() -> None:
            nonlocal buffered, total, buffer
            if not buffer:
                return
            u, kind, minute = (np.concatenate(parts) for parts in zip(*buffer, strict=True))
            product.execute("BEGIN")
            product.executemany(
                "INSERT INTO events (account_id, user_id, event_name, feature_key, occurred_at) VALUES (?, ?, ?, ?, ?)",
                zip(
                    self.product_id[ua[u]].tolist(),
                    self.user_ids[u].tolist(),
                    event_names[(kind > 0).astype(np.int64)].tolist(),
                    feature_keys[kind].tolist(),
                    grid[minute].tolist(),
                    strict=True,
                ),
            )
            product.execute("COMMIT")
            total += len(u)
            buffer, buffered = [], 0

        rng_perm = _rng(spec.seed, "product_features")
        # Which features an account reaches for first: core ones mostly, in its own order.
        pref = rng_perm.random((N, 10)) + np.array([0] * 6 + [0.6] * 4)
        feature_rank = np.argsort(pref, axis=1) + 1  # feature index + 1 (0 is "login")
        account_offset = rng_perm.normal(0, 0.8, N)
        prop = rng_perm.gamma(2.0, 0.5, len(ua)).astype(np.float32)  # power users and occasional ones
        peak = self.peak_hour * 60

        for c, chunk in enumerate(_chunks(N, ACCOUNT_CHUNK)):
            rng = _rng(spec.seed, "product_events", c)
            users = np.flatnonzero((ua >= chunk.start) & (ua < chunk.stop))
            if len(users) == 0:
                continue
            cu_acct, cu_from, cu_to, cu_prop = ua[users], uf[users], ut[users], prop[users]
            h = self.h[chunk]
            t = np.arange(D)[None, :]
            onboarding = np.clip(0.35 + 0.65 * (t - self.since_idx[chunk, None]) / 60, 0.35, 1)
            p_active = (0.02 + 0.36 * h**1.5) * onboarding * day_factor[None, :] * self.alive[chunk]
            lag = np.concatenate([np.repeat(h[:, :1], 7, axis=1), h[:, :-7]], axis=1)
            breadth = np.clip(np.round(1 + 9 * lag + account_offset[chunk, None]), 1, 10)
            second_feature = 0.10 + 0.55 * h
            local = cu_acct - chunk.start
            for d in range(D):
                live = (cu_from <= d) & (d < cu_to)
                hit = live & (rng.random(len(users)) < np.minimum(0.95, p_active[local, d] * cu_prop))
                who = np.flatnonzero(hit)
                if len(who) == 0:
                    continue
                acct_local = local[who]
                n_feat = 1 + (rng.random(len(who)) < second_feature[acct_local, d])
                self.feature_uses[chunk.start : chunk.stop, d] += np.bincount(
                    acct_local, weights=n_feat, minlength=chunk.stop - chunk.start
                ).astype(np.int32)
                if d < emit_from:
                    continue
                login_min = np.clip(rng.normal(peak[cu_acct[who]], 150), 0, 1438).astype(np.int64)
                f_user = np.repeat(who, n_feat)
                f_acct = acct_local.repeat(n_feat)
                f_rank = np.floor(breadth[f_acct, d] * rng.random(len(f_user)) ** 1.7).astype(np.int64)
                f_kind = feature_rank[chunk.start + f_acct, f_rank]
                f_min = np.minimum(np.repeat(login_min, n_feat) + rng.integers(1, 240, len(f_user)), 1439)
                base = (d - emit_from) * 1440
                buffer.append(
                    (
                        users[np.concatenate([who, f_user])],
                        np.concatenate([np.zeros(len(who), dtype=np.int64), f_kind]),
                        base + np.concatenate([login_min, f_min]),
                    )
                )
                buffered += len(who) + len(f_user)
                if buffered >= EVENT_FLUSH_ROWS:
                    flush()
        flush()
        for idx in product_db.events.indexes:
            cols = ", ".join(c.name for c in idx.columns)
            product.execute(f"CREATE INDEX {idx.name} ON events ({cols})")
        product.execute("PRAGMA analysis_limit=1000")  # planner statistics without a full scan
        product.execute("ANALYZE")
        self.counts["product.events"] = total

    # ----------------------------------------------------------------------- Zendesk
    def _zendesk(self, store: sqlite3.Connection) -> None:
        spec, D, N = self.spec, self.D, self.N
        rng = _rng(spec.seed, "zendesk")
        W0s = self.W0.astype("datetime64[s]")
        org_ids = 360_000_000 + np.arange(N) * 7 + 3
        external = self.sf_id.copy()
        short = _exact_pick(rng, np.arange(N), 0.03)
        external[short] = [to_15(x) for x in external[short]]
        missing = _exact_pick(rng, np.setdiff1d(np.arange(N), short), 0.01)
        external[missing] = None
        created = np.maximum(self.since, self.W0 - np.timedelta64(TENURE_YEARS * 365, "D")).astype(
            "datetime64[s]"
        ) + rng.integers(1, 15, N).astype("timedelta64[D]")
        created = np.minimum(created, self.end_ts - np.timedelta64(3600, "s"))
        # Duplicates: a second organisation someone created by hand, which takes some tickets.
        dup = _exact_pick(rng, np.flatnonzero(self.since_idx < D - 120), 0.01)
        dup_ids = 361_000_000 + np.arange(len(dup)) * 7 + 5
        dup_created = np.maximum(created[dup], W0s) + rng.integers(10, 90, len(dup)).astype("timedelta64[D]")
        # Typed by hand: the legal form dropped, or a note appended.
        dup_name = [
            self.names[i].rsplit(" ", 1)[0]
            if self.names[i].split(" ")[-1] in NAME_LEGAL
            else f"{self.names[i]} (support)"
            for i in dup
        ]
        dup_external = [self.sf_id[i] if rng.random() < 0.5 else None for i in dup]
        self.dup_org = dict(
            zip(dup.tolist(), zip(dup_ids.tolist(), list(dup_created), strict=True), strict=True)
        )
        junk_ids = [362_000_001, 362_000_002]
        org_rows = {
            "id": np.concatenate([org_ids, dup_ids, junk_ids]).tolist(),
            "name": list(self.names) + dup_name + ["Internal QA", "Zendesk Test Organization"],
            "external_id": list(external) + dup_external + [None, None],
            "created_at": np.concatenate([created, dup_created, [W0s, W0s]]),
        }
        org_rows["updated_at"] = org_rows["created_at"]
        self.counts["zd_organization"] = _insert(store, zd_organization, org_rows)
        self.org_ids = org_ids
        # End users: every contact can write to support (requester id 900,000,000 + contact
        # row, as the tickets below use it), with the e-mail Salesforce has; plus the QA
        # requester of the junk tickets.
        n_c = len(self.contact_acct)
        self.counts["zd_user"] = _insert(
            store,
            zd_user,
            {
                "id": (900_000_000 + np.arange(n_c)).tolist() + [990_000_001],
                "name": list(self.contact_name) + ["QA Robot"],
                "email": list(self.contact_email) + ["qa-robot@support.invalid"],
                "organization_id": org_ids[self.contact_acct].tolist() + [junk_ids[0]],
                "role": ["end-user"] * (n_c + 1),
                "created_at": np.concatenate([self.contact_created, [W0s]]),
                "updated_at": np.concatenate([self.contact_created, [W0s]]),
            },
        )

        # Tickets: a Poisson count per account-day, rate rising as health falls.
        parts = []
        for chunk in _chunks(N, 5000):
            h = self.h[chunk]
            t = np.arange(D)[None, :]
            age = t - self.since_idx[chunk, None]
            onboarding = 1 + 2 * np.exp(-np.maximum(age, 0) / 45)
            rate = (
                (0.004 + 0.02 * (1 - h) ** 2) * self.seats_tl[chunk] ** 0.6 * onboarding * self.alive[chunk]
            )
            counts = rng.poisson(rate)
            a, d = np.nonzero(counts)
            reps = counts[a, d]
            parts.append((np.repeat(a + chunk.start, reps), np.repeat(d, reps)))
        ta = np.concatenate([p[0] for p in parts])
        td = np.concatenate([p[1] for p in parts])
        order = np.lexsort((ta, td))
        ta, td = ta[order], td[order]
        n = len(ta)
        th = self.h[ta, td]
        onboard = np.exp(-np.maximum(td - self.since_idx[ta], 0) / 45)
        p_how = 0.25 + 0.35 * th + 0.3 * onboard
        p_complaint = 0.05 + 0.45 * (1 - th) ** 1.5
        p_other = np.maximum(0.1, 1 - p_how - p_complaint)
        total_p = p_how + p_complaint + p_other
        r = rng.random(n) * total_p
        category = np.where(r < p_how, "how_to", np.where(r < p_how + p_complaint, "complaint", "other"))
        topic = _choice(rng, TICKET_TOPICS, n)
        ttype = np.where(
            category == "how_to",
            "question",
            np.where(
                category == "complaint",
                np.where(rng.random(n) < 0.7, "incident", "problem"),
                _choice(rng, ("incident", "task", "question"), n),
            ),
        )
        r = rng.random(n)
        p_urgent = 0.02 + 0.08 * (1 - th) + 0.05 * (category == "complaint")
        p_high = 0.10 + 0.20 * (1 - th) + 0.10 * (category == "complaint")
        p_low = 0.25 * th
        priority = np.where(
            r < p_urgent,
            "urgent",
            np.where(r < p_urgent + p_high, "high", np.where(r < p_urgent + p_high + p_low, "low", "normal")),
        )
        created = (
            self.W0.astype("datetime64[s]")
            + td.astype("timedelta64[D]")
            + np.clip(rng.normal(14 * 3600, 4 * 3600, n), 0, 86399).astype(np.int64).astype("timedelta64[s]")
        )
        first_reply = np.maximum(
            1, rng.lognormal(np.log(90) + 0.8 * (1 - th) - 0.6 * (priority == "urgent"), 0.8)
        ).astype(np.int64)
        resolution = np.maximum(
            first_reply + 5,
            rng.lognormal(np.log(600) + 1.4 * (1 - th) + 0.5 * (category == "complaint"), 1.0),
        ).astype(np.int64)
        reopens = rng.poisson(0.05 + 0.7 * (1 - th) ** 2)
        resolution += reopens * rng.integers(60, 2880, n)
        solved = created + (resolution * 60).astype("timedelta64[s]")
        is_solved = solved <= self.end_ts
        age_days = (self.end_ts - created).astype(np.int64) / 86400
        status = np.where(
            is_solved,
            np.where((self.end_ts - solved).astype(np.int64) > 4 * 86400, "closed", "solved"),
            np.where(age_days < 1, "new", np.where(rng.random(n) < 0.6, "open", "pending")),
        )
        solved_at = np.where(is_solved, solved, np.datetime64("NaT"))
        activity = created + np.minimum(
            (self.end_ts - created).astype(np.int64), (first_reply * 60 + rng.integers(0, 3 * 86400, n))
        ).astype("timedelta64[s]")
        updated = np.where(
            is_solved,
            np.minimum(
                solved + np.where(status == "closed", 4 * 86400, 0).astype("timedelta64[s]"), self.end_ts
            ),
            activity,
        )
        replies = 1 + rng.poisson(1 + 3 * (1 - th)) + reopens
        tags = [
            [c, tp] if c != "other" else [tp] for c, tp in zip(category.tolist(), topic.tolist(), strict=True)
        ]
        subj_idx = rng.integers(0, 3, n)
        subjects = [
            TICKET_SUBJECTS[c][k].format(t=tp.replace("_", " "), T=tp.replace("_", " ").capitalize())
            for c, k, tp in zip(category.tolist(), subj_idx.tolist(), topic.tolist(), strict=True)
        ]
        org = org_ids[ta].copy()
        for i, (dup_id, dup_created) in self.dup_org.items():
            moved = (ta == i) & (created >= dup_created) & (rng.random(n) < 0.35)
            org[moved] = dup_id
        requester = 900_000_000 + self._random_contact(rng, ta)
        # Junk: a few tickets on the internal organisations.
        junk_n = 4
        ticket_ids = np.arange(1001, 1001 + n + junk_n)
        junk_created = (
            self.W0.astype("datetime64[s]")
            + rng.integers(0, D, junk_n).astype("timedelta64[D]")
            + np.timedelta64(10 * 3600, "s")
        )
        self.counts["zd_ticket"] = _insert(
            store,
            zd_ticket,
            {
                "id": ticket_ids.tolist(),
                "organization_id": org.tolist() + [junk_ids[k % 2] for k in range(junk_n)],
                "requester_id": requester.tolist() + [990_000_001] * junk_n,
                "subject": subjects + ["Test ticket, please ignore"] * junk_n,
                "type": ttype.tolist() + ["task"] * junk_n,
                "priority": priority.tolist() + ["low"] * junk_n,
                "status": status.tolist() + ["closed"] * junk_n,
                "tags": _json_list(tags + [["test"]] * junk_n),
                "created_at": np.concatenate([created, junk_created]),
                "updated_at": np.concatenate([updated, junk_created + np.timedelta64(600, "s")]),
                "solved_at": np.concatenate([solved_at, junk_created + np.timedelta64(600, "s")]),
                "reopens": reopens.tolist() + [0] * junk_n,
                "replies": replies.tolist() + [1] * junk_n,
                "full_resolution_time_in_minutes": np.where(is_solved, resolution, None).tolist()
                + [10] * junk_n,
                "first_reply_time_in_minutes": np.where(
                    created + (first_reply * 60).astype("timedelta64[s]") <= self.end_ts, first_reply, None
                ).tolist()
                + [5] * junk_n,
            },
        )

        # CSAT: a third of solved tickets get rated; unhappy accounts and reopened tickets rate bad.
        rated = is_solved & (rng.random(n) < 0.35)
        rated_at = solved + rng.integers(600, 2 * 86400, n).astype("timedelta64[s]")
        rated &= rated_at <= self.end_ts
        p_good = np.clip(0.45 + 0.55 * th - 0.12 * np.minimum(reopens, 2), 0.05, 0.97)
        good = rng.random(n) < p_good
        comments = np.where(
            good,
            _choice(rng, ("Thanks, quick help!", "Solved, thank you.", ""), n),
            _choice(rng, ("Took far too long.", "Problem is not really fixed.", ""), n),
        )
        k = np.flatnonzero(rated)
        self.counts["zd_satisfaction_rating"] = _insert(
            store,
            zd_satisfaction_rating,
            {
                "id": (7_000_000_000 + np.arange(len(k)) * 3).tolist(),
                "ticket_id": ticket_ids[k].tolist(),
                "organization_id": org[k].tolist(),
                "requester_id": requester[k].tolist(),
                "score": np.where(good[k], "good", "bad").tolist(),
                "comment": comments[k].tolist(),
                "created_at": rated_at[k],
                "updated_at": rated_at[k],
            },
        )

    # ----------------------------------------------------------------------- Stripe
    def _stripe(self, store: sqlite3.Connection) -> None:
        spec, D, N = self.spec, self.D, self.N
        rng = _rng(spec.seed, "stripe")
        W0 = spec.window_start
        cus = np.array(stripe_ids("cus", np.arange(N)), dtype=object)
        no_sf = _exact_pick(rng, np.arange(N), 0.015)
        meta = [
            {"salesforce_account_id": self.sf_id[i], "product_account_id": self.product_id[i]}
            for i in range(N)
        ]
        for i in no_sf:
            del meta[i]["salesforce_account_id"]
        cus_created = self.acct_created + np.timedelta64(1800, "s")
        dup = _exact_pick(rng, np.flatnonzero(self.since_idx < D - 60), 0.01)
        dup_ids = stripe_ids("cus", N + np.arange(len(dup)))
        dup_meta = [{"salesforce_account_id": self.sf_id[i]} for i in dup]
        dup_created = np.maximum(cus_created[dup], self.W0.astype("datetime64[s]")) + rng.integers(
            5, 50, len(dup)
        ).astype("timedelta64[D]")
        junk = stripe_ids("cus", N + len(dup) + np.arange(2))
        junk_created = np.array([self.W0, self.W0 + np.timedelta64(3, "D")], dtype="datetime64[s]")
        self.counts["stripe_customer"] = _insert(
            store,
            stripe_customer,
            {
                "id": list(cus) + dup_ids + junk,
                "email": [f"billing@{d}" for d in self.domain]
                + [f"accounts@{self.domain[i]}" for i in dup]
                + ["test@example.com", "qa+stripe@northpeak-saas.com"],
                "name": list(self.names) + [self.names[i] for i in dup] + ["Test Customer", "QA Card Test"],
                "metadata": _json_list(meta + dup_meta + [{}, {}]),
                "created": _unix(np.concatenate([cus_created, dup_created, junk_created])),
            },
        )

        # Subscriptions and their invoices, period by period.
        subs = stripe_ids("sub", np.arange(N))
        inv: dict[str, list[Any]] = {
            k: [] for k in ("acct", "issued", "period_start", "period_end", "subtotal", "usage", "license")
        }
        sub_status, period_start, period_end, canceled = [], [], [], []
        for i in range(N):
            since = W0 + timedelta(days=int(self.since_idx[i]))
            churn = int(self.churn_day[i])
            stop = churn if churn >= 0 else D  # nothing is billed from the churn date on
            step = 12 if self.annual[i] else 1
            months_before = max(0, (W0.year - since.year) * 12 + W0.month - since.month - 1)
            k = months_before // step * step
            last = (since, _add_months(since, step))
            while (start := _add_months(since, k)) <= W0 + timedelta(days=stop - 1):
                end = _add_months(since, k + step)
                last = (start, end)
                if start >= W0:
                    sd, ed = (start - W0).days, (end - W0).days
                    seats = int(self.seats_tl[i, sd])
                    usage = 0
                    if not self.annual[i]:  # monthly: last month's metered usage rides along
                        usage = int(self.feature_uses[i, max(0, 2 * sd - ed) : sd].sum()) * USAGE_PRICE_CENTS
                    self._invoice_row(
                        inv, i, start, start, end, seats * int(self.unit_amount[i]) + usage, usage, True
                    )
                k += step
            if self.annual[i]:  # metered usage of annual contracts is billed monthly in arrears
                m = max(1, months_before)
                while (issued := _add_months(since, m)) <= W0 + timedelta(days=stop - 1):
                    if issued >= W0:
                        used_from = _add_months(since, m - 1)
                        use = int(
                            self.feature_uses[i, max(0, (used_from - W0).days) : (issued - W0).days].sum()
                        )
                        self._invoice_row(
                            inv,
                            i,
                            issued,
                            used_from,
                            issued,
                            use * USAGE_PRICE_CENTS,
                            use * USAGE_PRICE_CENTS,
                            False,
                        )
                    m += 1
            if churn >= 0:
                sub_status.append("canceled")
                canceled.append(self.W0 + np.timedelta64(churn, "D"))
            else:
                sub_status.append("active")
                canceled.append(np.datetime64("NaT"))
            period_start.append(np.datetime64(last[0]))
            period_end.append(np.datetime64(last[1]))
        self._invoices(store, rng, inv, cus, subs, sub_status)
        sub_created = self.acct_created + np.timedelta64(3600, "s")
        canceled_a = np.array(canceled, dtype="datetime64[D]").astype("datetime64[s]")
        self.counts["stripe_subscription"] = _insert(
            store,
            stripe_subscription,
            {
                "id": subs,
                "customer": cus,
                "status": sub_status,
                "quantity": self.seats_now,
                "unit_amount": self.unit_amount,
                "interval": np.where(self.annual, "year", "month").tolist(),
                "created": _unix(sub_created),
                "canceled_at": _unix(canceled_a),
                "cancel_at_period_end": [False] * N,
                "current_period_start": _unix(np.array(period_start, dtype="datetime64[s]")),
                "current_period_end": _unix(np.array(period_end, dtype="datetime64[s]")),
                "metadata": _json_list([{"plan": PLANS[p]} for p in self.plan]),
            },
        )

    @staticmethod
    def _invoice_row(
        inv: dict[str, list[Any]],
        i: int,
        issued: date,
        start: date,
        end: date,
        subtotal: int,
        usage: int,
        license_: bool,
    ) -> None:
        for key, value in (
            ("acct", i),
            ("issued", issued),
            ("period_start", start),
            ("period_end", end),
            ("subtotal", subtotal),
            ("usage", usage),
            ("license", license_),
        ):
            inv[key].append(value)

    def _invoices(
        self,
        store: sqlite3.Connection,
        rng: np.random.Generator,
        inv: dict[str, list[Any]],
        cus: np.ndarray,
        subs: list[str],
        sub_status: list[str],
    ) -> None:
        acct = np.array(inv["acct"], dtype=np.int64)
        issued = np.array(inv["issued"], dtype="datetime64[D]")
        order = np.lexsort((acct, issued))
        acct, issued = acct[order], issued[order]
        start = np.array(inv["period_start"], dtype="datetime64[D]")[order]
        end = np.array(inv["period_end"], dtype="datetime64[D]")[order]
        subtotal = np.array(inv["subtotal"], dtype=np.int64)[order]
        usage = np.array(inv["usage"], dtype=np.int64)[order]
        license_ = np.array(inv["license"], dtype=bool)[order]
        n = len(acct)
        day = (issued - self.W0).astype(np.int64)
        h = self.h_smooth[acct, day]
        created = issued.astype("datetime64[s]") + rng.integers(3600, 4 * 3600, n).astype("timedelta64[s]")
        send_invoice = self.annual[acct] & license_  # annual license invoices are paid by transfer
        due = np.where(send_invoice, created + np.timedelta64(30, "D"), np.datetime64("NaT"))
        fails = (~send_invoice) & (rng.random(n) < 0.02 + 0.3 * (1 - h) ** 2)
        attempts = np.where(fails, rng.integers(2, 5, n), 1)
        recovered = rng.random(n) < 0.55 + 0.4 * h
        delay_days = np.where(
            send_invoice,
            rng.lognormal(np.log(5 + 35 * (1 - h) ** 1.5), 0.5),
            np.where(fails, rng.uniform(3, 16, n), rng.uniform(0, 0.05, n)),
        )
        paid_at = created + (delay_days * 86400).astype(np.int64).astype("timedelta64[s]")
        payable = ~fails | recovered
        is_paid = payable & (paid_at <= self.end_ts) & (subtotal > 0)
        old = (self.end_ts - created).astype(np.int64) > 30 * 86400
        status = np.where(
            subtotal == 0,
            "paid",
            np.where(is_paid, "paid", np.where(fails & ~recovered & old, "uncollectible", "open")),
        )
        paid_at = np.where(is_paid, paid_at, np.where(subtotal == 0, created, np.datetime64("NaT")))
        charged = ~send_invoice | is_paid
        charge_ids = np.array(stripe_ids("ch", np.arange(n)), dtype=object)
        charge = np.where(charged & (subtotal > 0), charge_ids, None)
        ids = stripe_ids("in", np.arange(n))
        self.counts["stripe_invoice"] = _insert(
            store,
            stripe_invoice,
            {
                "id": ids,
                "customer": cus[acct],
                "subscription": np.array(subs, dtype=object)[acct],
                "charge": charge,
                "status": status,
                "subtotal": subtotal,
                "usage_amount": usage,
                "amount_due": subtotal,
                "amount_paid": np.where(status == "paid", subtotal, 0),
                "attempt_count": np.where(charged, attempts, 0),
                "created": _unix(created),
                "due_date": _unix(due),
                "paid_at": _unix(paid_at),
                "period_start": _unix(start.astype("datetime64[s]")),
                "period_end": _unix(end.astype("datetime64[s]")),
            },
        )
        # A past-due subscription: its latest license invoice is still open after a failed charge.
        for k in np.flatnonzero((status == "open") & fails):
            if sub_status[acct[k]] == "active":
                sub_status[acct[k]] = "past_due"

        # Disputes: rare, and mostly from accounts that are unhappy when the charge lands.
        paid = np.flatnonzero((status == "paid") & (subtotal > 0) & charged)
        disputed = paid[rng.random(len(paid)) < 0.0008 + 0.03 * (1 - h[paid]) ** 3]
        opened = paid_at[disputed] + rng.integers(5, 45, len(disputed)).astype("timedelta64[D]")
        keep = opened <= self.end_ts
        disputed, opened = disputed[keep], opened[keep]
        age = (self.end_ts - opened).astype(np.int64) / 86400
        outcome = _choice(rng, ("won", "lost"), len(disputed), p=(0.4, 0.6))
        status_d = np.where(age < 7, "needs_response", np.where(age < 45, "under_review", outcome))
        self.counts["stripe_dispute"] = _insert(
            store,
            stripe_dispute,
            {
                "id": stripe_ids("dp", np.arange(len(disputed))),
                "charge": charge[disputed],
                "amount": subtotal[disputed],
                "status": status_d,
                "reason": _choice(
                    rng,
                    ("product_unacceptable", "subscription_canceled", "fraudulent", "duplicate"),
                    len(disputed),
                    p=(0.45, 0.3, 0.15, 0.1),
                ),
                "created": _unix(opened),
            },
        )

    # ----------------------------------------------------------------------- Salesforce records
    def _salesforce_records(self, store: sqlite3.Connection) -> None:
        spec, D, N = self.spec, self.D, self.N
        rng = _rng(spec.seed, "salesforce")
        W0s = self.W0.astype("datetime64[s]")
        churned = self.churn_day >= 0
        arr = self.seats_now * self.unit_amount * np.where(self.annual, 1, 12) / 100.0
        created = self.acct_created - rng.integers(14, 150, N).astype("timedelta64[D]")
        last_change = np.array([max([d for d, _, _ in ch], default=-(10**6)) for ch in self.seat_changes])
        last_change = np.maximum(last_change, np.where(churned, self.churn_day, -(10**6)))
        edit = W0s + rng.integers(0, D, N).astype("timedelta64[D]") + np.timedelta64(11 * 3600, "s")
        modstamp = np.maximum(created, np.where(rng.random(N) < 0.5, edit, created))
        changed = last_change > -(10**6)
        modstamp[changed] = np.maximum(
            modstamp[changed],
            W0s + last_change[changed].astype("timedelta64[D]") + np.timedelta64(15 * 3600, "s"),
        )
        product_ref = self.product_id.copy()
        product_ref[_exact_pick(rng, np.arange(N), 0.02)] = None
        parent_id = np.where(self.parent >= 0, self.sf_id[np.maximum(self.parent, 0)], None)
        junk_ids = salesforce_ids("Account", N + np.arange(2))
        self.counts["sf_account"] = _insert(
            store,
            sf_account,
            {
                "Id": list(self.sf_id) + junk_ids,
                "Name": list(self.names) + ["Test Account (do not use)", "Sandbox Demo Co"],
                "ParentId": list(parent_id) + [None, None],
                "OwnerId": list(self.owner) + [self.vp_id, self.ae_ids[0]],
                "Industry": list(self.industry) + [None, "Software"],
                "Type": np.where(churned, "Former Customer", "Customer").tolist() + ["Other", "Prospect"],
                "Plan__c": np.asarray(PLANS, dtype=object)[self.plan].tolist() + [None, None],
                "Seats__c": self.seats_now.tolist() + [None, None],
                "ARR__c": np.where(churned, 0.0, arr).tolist() + [None, None],
                "Customer_Since__c": np.concatenate(
                    [self.since, np.array(["NaT", "NaT"], dtype="datetime64[D]")]
                ),
                "Product_Account_Id__c": list(product_ref) + [None, None],
                "Executive_Sponsor_User__c": self._executive_sponsor_users() + [None, None],
                "CreatedDate": np.concatenate([created, [W0s, W0s + np.timedelta64(40, "D")]]),
                "SystemModstamp": np.concatenate([modstamp, [W0s, W0s + np.timedelta64(40, "D")]]),
                "IsDeleted": [False] * (N + 2),
            },
        )
        self._tasks(store, rng)
        self._opportunities(store, rng)
        self._nps(store, rng)

    def _executive_sponsor_users(self) -> list[str | None]:
        """Account.Executive_Sponsor_User__c: one of our executives for most enterprise accounts
        and a few growth ones (a generator of its own: nothing else drawn changes)."""
        rng = _rng(self.spec.seed, "executive_sponsor_users")
        share = np.array([0.0, 0.25, 0.9])[self.plan]
        assigned = rng.random(self.N) < share
        pick = rng.integers(0, len(self.executive_ids), self.N)
        return [self.executive_ids[k] if a else None for a, k in zip(assigned, pick, strict=True)]

    def _tasks(self, store: sqlite3.Connection, rng: np.random.Generator) -> None:
        N = self.N
        parts = []
        has_sponsor = self.sponsor_of >= 0
        for chunk in _chunks(N, 5000):
            hs = self.h_smooth[chunk]
            alive = self.alive[chunk]
            boost = np.where(self.plan[chunk] == 2, 1.5, 1.0)[:, None]
            exec_rate = has_sponsor[chunk, None] * (0.15 + 1.1 * hs) * boost / 30
            rates = (exec_rate, np.full_like(hs, 1.2 / 30), np.full_like(hs, 0.8 / 30))
            for kind, rate in enumerate(rates):
                counts = rng.poisson(rate * alive)
                a, d = np.nonzero(counts)
                reps = counts[a, d]
                parts.append(
                    (np.repeat(a + chunk.start, reps), np.repeat(d, reps), np.full(int(reps.sum()), kind))
                )
        ta = np.concatenate([p[0] for p in parts])
        td = np.concatenate([p[1] for p in parts])
        kind = np.concatenate([p[2] for p in parts])
        order = np.lexsort((kind, ta, td))
        ta, td, kind = ta[order], td[order], kind[order]
        n = len(ta)
        created = (
            self.W0.astype("datetime64[s]")
            + td.astype("timedelta64[D]")
            + rng.integers(8 * 3600, 18 * 3600, n).astype("timedelta64[s]")
        )
        is_exec, is_outreach = kind == 0, kind == 1
        responded = is_outreach & (rng.random(n) < 0.1 + 0.8 * self.h_smooth[ta, td])
        reply_at = created + rng.integers(3600, 5 * 86400, n).astype("timedelta64[s]")
        responded &= reply_at <= self.end_ts  # a reply that has not arrived yet is not a reply
        modstamp = np.where(responded, reply_at, created + rng.integers(60, 3600, n).astype("timedelta64[s]"))
        modstamp = np.minimum(modstamp, self.end_ts)
        who = np.where(is_exec, self.sponsor_of[ta], self._random_contact(rng, ta))
        recent = (self.D - 1 - td) < 3
        status = np.where(recent & ~is_outreach, _choice(rng, ("Not Started", "In Progress"), n), "Completed")
        owner = np.where(is_exec & (rng.random(n) < 0.25), self.vp_id, self.owner[ta])
        exec_subjects = _choice(
            rng, ("Executive business review", "Sponsor check-in", "Quarterly exec sync"), n
        )
        out_subjects = _choice(
            rng,
            (
                "Checking in on your rollout",
                "New features you may like",
                "Renewal planning",
                "Training session invite",
            ),
            n,
        )
        other_subjects = _choice(
            rng, ("Call: support follow-up", "QBR prep", "Onboarding call", "Internal note"), n
        )
        subject = np.where(is_exec, exec_subjects, np.where(is_outreach, out_subjects, other_subjects))
        ttype = np.where(
            is_exec,
            _choice(rng, ("Meeting", "Call"), n),
            np.where(is_outreach, "Email", _choice(rng, ("Call", "Other"), n)),
        )
        sf_ids = self.sf_id[ta]
        self.counts["sf_task"] = _insert(
            store,
            sf_task,
            {
                "Id": salesforce_ids("Task", np.arange(n)),
                "AccountId": sf_ids,
                "WhatId": sf_ids,
                "WhoId": self.contact_ids[who],
                "OwnerId": owner,
                "Subject": subject,
                "Type": ttype,
                "Status": status,
                "Priority": np.where(rng.random(n) < 0.15, "High", "Normal"),
                "ActivityDate": (self.W0 + td.astype("timedelta64[D]")),
                "Description": [None] * n,
                "Executive_Touch__c": is_exec,
                "Outreach_Responded__c": np.where(is_outreach, responded, None),
                "CreatedDate": created,
                "SystemModstamp": modstamp,
                "IsDeleted": [False] * n,
            },
        )

    def _opportunities(self, store: sqlite3.Connection, rng: np.random.Generator) -> None:
        rows: dict[str, list[Any]] = {
            k: [] for k in ("acct", "name", "type", "stage", "amount", "close", "won")
        }
        price_year = self.unit_amount * np.where(self.annual, 1, 12) / 100.0

        def add(i: int, name: str, kind: str, won: bool, amount: float, day: int) -> None:
            rows["acct"].append(i)
            rows["name"].append(f"{self.names[i]} - {name}")
            rows["type"].append(kind)
            rows["stage"].append("Closed Won" if won else "Closed Lost")
            rows["amount"].append(round(float(amount), 2))
            rows["close"].append(day)
            rows["won"].append(won)

        W0 = self.spec.window_start
        for i in range(self.N):
            if self.since_idx[i] >= 0:
                add(
                    i,
                    "New Business",
                    "New Business",
                    True,
                    self.seats0[i] * price_year[i],
                    int(self.since_idx[i]),
                )
            for day, won, seats in self.renewals[i]:
                add(
                    i,
                    f"Renewal {(W0 + timedelta(days=day)).year}",
                    "Renewal",
                    won,
                    seats * price_year[i],
                    day,
                )
            prev = int(self.seats0[i])
            for day, seats, kind in self.seat_changes[i]:
                if kind == "expansion":
                    add(
                        i,
                        f"Expansion +{seats - prev} seats",
                        "Expansion",
                        True,
                        (seats - prev) * price_year[i],
                        day,
                    )
                prev = seats
        acct = np.array(rows["acct"], dtype=np.int64)
        close = np.array(rows["close"], dtype=np.int64)
        order = np.lexsort((acct, close))
        n = len(acct)
        acct, close = acct[order], close[order]
        kinds = np.array(rows["type"], dtype=object)[order]
        lead = np.where(kinds == "Renewal", 90, np.where(kinds == "Expansion", 45, 60))
        W0s = self.W0.astype("datetime64[s]")
        close_ts = W0s + close.astype("timedelta64[D]") + np.timedelta64(16 * 3600, "s")
        created = (
            W0s
            + (close - lead).astype("timedelta64[D]")
            + rng.integers(9 * 3600, 17 * 3600, n).astype("timedelta64[s]")
        )
        self.counts["sf_opportunity"] = _insert(
            store,
            sf_opportunity,
            {
                "Id": salesforce_ids("Opportunity", np.arange(n)),
                "AccountId": self.sf_id[acct],
                "Name": np.array(rows["name"], dtype=object)[order],
                "Type": kinds,
                "StageName": np.array(rows["stage"], dtype=object)[order],
                "Amount": np.array(rows["amount"])[order],
                "CloseDate": self.W0 + close.astype("timedelta64[D]"),
                "IsClosed": [True] * n,
                "IsWon": np.array(rows["won"], dtype=bool)[order],
                "CreatedDate": created,
                "SystemModstamp": np.minimum(close_ts, self.end_ts),
                "IsDeleted": [False] * n,
            },
        )

    def _nps(self, store: sqlite3.Connection, rng: np.random.Generator) -> None:
        W0, end = self.spec.window_start, self.spec.end_date
        waves = []
        d = date(W0.year, 1, 8)
        while d <= end:
            if d >= W0:
                waves.append((d - W0).days)
            d = _add_months(d, 3)
        parts = []
        for wave in waves:
            contacts = np.flatnonzero(
                self.alive[self.contact_acct, wave] & (self.contact_created_idx <= wave)
            )
            is_sponsor = self.sponsor_of[self.contact_acct[contacts]] == contacts
            answer = contacts[rng.random(len(contacts)) < np.where(is_sponsor, 0.4, 0.28)]
            day = wave + rng.integers(0, 14, len(answer))
            ok = day < self.D
            answer, day = answer[ok], day[ok]
            ok = self.alive[self.contact_acct[answer], day]
            parts.append((answer[ok], day[ok]))
        contact = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        day = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        n = len(contact)
        acct = self.contact_acct[contact]
        score = np.clip(np.round(1 + 9 * self.h_smooth[acct, day] + rng.normal(0, 1.6, n)), 0, 10).astype(
            np.int64
        )
        band = np.where(score >= 9, "promoter", np.where(score >= 7, "passive", "detractor"))
        comment = [
            NPS_COMMENTS[b][k % len(NPS_COMMENTS[b])] or None
            for b, k in zip(band.tolist(), rng.integers(0, 12, n).tolist(), strict=True)
        ]
        at = (
            self.W0.astype("datetime64[s]")
            + day.astype("timedelta64[D]")
            + rng.integers(7 * 3600, 21 * 3600, n).astype("timedelta64[s]")
        )
        self.counts["sf_nps_response"] = _insert(
            store,
            sf_nps_response,
            {
                "Id": salesforce_ids("NPS_Response__c", np.arange(n)),
                "Account__c": self.sf_id[acct],
                "Contact__c": self.contact_ids[contact],
                "Score__c": score,
                "Comment__c": comment,
                "Responded_At__c": at,
                "CreatedDate": at,
                "SystemModstamp": at,
                "IsDeleted": [False] * n,
            },
        )

    # ----------------------------------------------------------------------- marketing
    def _marketing(self, store: sqlite3.Connection) -> None:
        """Salesforce Campaigns, their member statuses, and who is a member (CampaignMembers).

        The campaigns the product acts on (upsell and expansion offers it pauses, advocacy
        programmes it enrols into, the health segments' campaigns) and a newsletter it leaves
        alone. Every campaign has Salesforce's two default statuses, Sent (the default) and
        Responded; the upsell and expansion offers also define Paused (what the product's pause
        sets) and Opted Out (what marketing set for members whose account has left).
        """
        rng = _rng(self.spec.seed, "marketing")
        campaigns = [  # (name, Campaign.Type)
            ("Customer Newsletter", "Email"),
            ("Upsell - Seat Add-on Offer", "Email"),
            ("Expansion - Enterprise Features", "Email"),
            ("Product Tips Sequence", "Email"),
            ("Customer Advocates", "Other"),
            ("Renewal Nurture", "Email"),
            # The advocacy programmes the actions enrol long-healthy customers in.
            ("Advocacy - Referral Program", "Referral Program"),
            ("Advocacy - Case Study Candidates", "Other"),
            ("Advocacy - Beta Program", "Other"),
            ("Advocacy - Review Site Prompts", "Other"),
            # The health segments' campaigns (actions.segments).
            ("Health - Referral and case study candidates", "Referral Program"),
            ("Health - Engagement nurture", "Email"),
            ("Health - Suppression (At Risk)", "Other"),
        ]
        ids = np.array(salesforce_ids("701", np.arange(len(campaigns))), dtype=object)
        opened = np.datetime64(self.W0, "s")
        self.counts["sf_campaign"] = _insert(
            store,
            sf_campaign,
            {
                "Id": ids,
                "Name": [c[0] for c in campaigns],
                "Type": [c[1] for c in campaigns],
                "Status": ["In Progress"] * len(campaigns),
                "IsActive": [True] * len(campaigns),
                "CreatedDate": np.full(len(campaigns), opened),
                "SystemModstamp": np.full(len(campaigns), opened),
                "IsDeleted": [False] * len(campaigns),
            },
        )
        offers = {1, 2}  # the upsell and expansion offers
        statuses = [
            (int(i), label, responded, default)
            for i in range(len(campaigns))
            for label, responded, default in (
                ("Sent", False, True), ("Responded", True, False),
                *((("Paused", False, False), ("Opted Out", False, False)) if i in offers else ()),
            )
        ]  # fmt: skip
        self.counts["sf_campaign_member_status"] = _insert(
            store,
            sf_campaign_member_status,
            {
                "Id": salesforce_ids("01Y", np.arange(len(statuses))),
                "CampaignId": ids[[s[0] for s in statuses]],
                "Label": [s[1] for s in statuses],
                "HasResponded": [s[2] for s in statuses],
                "IsDefault": [s[3] for s in statuses],
                "SortOrder": [k + 1 for k in range(len(statuses))],
                "CreatedDate": np.full(len(statuses), opened),
                "SystemModstamp": np.full(len(statuses), opened),
                "IsDeleted": [False] * len(statuses),
            },
        )
        n_c = len(self.contact_acct)
        alive_now = self.alive[:, -1]
        joined = (
            self.W0.astype("datetime64[s]")
            + np.maximum(self.contact_created_idx, 0).astype("timedelta64[D]")
            + np.timedelta64(12 * 3600, "s")
        )
        news = np.flatnonzero(rng.random(n_c) < 0.8)
        upsell_accts = alive_now & (self.plan < 2) & (rng.random(self.N) < 0.35)
        upsell = np.flatnonzero(upsell_accts[self.contact_acct])
        expansion = self.sponsor_of[
            alive_now & (self.plan > 0) & (self.sponsor_of >= 0) & (rng.random(self.N) < 0.2)
        ]
        members = [(0, news), (1, upsell), (2, np.sort(expansion))]
        campaign = np.concatenate([np.full(len(m), k) for k, m in members])
        contacts = np.concatenate([m for _, m in members])
        alive = self.alive[self.contact_acct[contacts], -1]
        status = np.where(alive | (campaign == 0), "Sent", "Opted Out")
        self.counts["sf_campaign_member"] = _insert(
            store,
            sf_campaign_member,
            {
                "Id": salesforce_ids("00v", np.arange(len(contacts))),
                "CampaignId": ids[campaign],
                "ContactId": self.contact_ids[contacts],
                "Status": status,
                "HasResponded": [False] * len(contacts),
                "CreatedDate": joined[contacts],
                "SystemModstamp": joined[contacts],
                "IsDeleted": [False] * len(contacts),
            },
        )

    # ----------------------------------------------------------------------- ground truth
    def _truth(self, store: sqlite3.Connection) -> None:
        churn = np.where(
            self.churn_day >= 0, self.W0 + self.churn_day.astype("timedelta64[D]"), np.datetime64("NaT")
        )
        self.expansion_date = self._first_change("expansion")
        self.contraction_date = self._first_change("contraction")
        self.counts["truth_account"] = _insert(
            store,
            truth_account,
            {
                "account_id": self.sf_id,
                "trajectory": np.asarray(TRAJECTORIES, dtype=object)[self.traj],
                "trajectory_start": self.traj_start,
                "churn_date": churn.astype("datetime64[D]"),
                "churn_cause": self.churn_cause,
                "expansion_date": self.expansion_date,
                "contraction_date": self.contraction_date,
                "plan": np.asarray(PLANS, dtype=object)[self.plan],
                "seats": self.seats_now,
            },
        )
        churned = int((self.churn_day >= 0).sum())
        exposure_years = float(self.alive.sum()) / 365.0
        self.summary_fields = {
            "counts": dict(self.counts),
            "churned_accounts": churned,
            "hidden_cause_churns": int(np.isin(self.churn_cause, HIDDEN_CAUSES).sum()),
            "expanded_accounts": int((~np.isnat(self.expansion_date)).sum()),
            "contracted_accounts": int((~np.isnat(self.contraction_date)).sum()),
            "annual_churn_rate": churned / exposure_years if exposure_years else 0.0,
        }


# =============================================================================== CLI
def main(argv: Sequence[str] | None = None) -> int:
    """Generate a company from the command line and print its summary."""
    parser = argparse.ArgumentParser(
        prog="python -m health_sandbox.company", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--folder", type=Path, required=True, help="where company.db and product.db go")
    parser.add_argument("--accounts", type=int, default=CompanySpec.accounts)
    parser.add_argument("--days", type=int, default=CompanySpec.days)
    parser.add_argument("--seed", type=int, default=CompanySpec.seed)
    parser.add_argument(
        "--end-date", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today, UTC)"
    )
    parser.add_argument(
        "--event-days", type=int, default=None, help="keep raw product events for the last N days only"
    )
    args = parser.parse_args(argv)
    spec = CompanySpec(
        accounts=args.accounts,
        days=args.days,
        seed=args.seed,
        end_date=args.end_date or _today_utc(),
        event_days=args.event_days,
    )
    print(generate_company(args.folder, spec).describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
