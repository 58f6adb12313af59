"""Zendesk extraction: zenpy against the loopback Zendesk API, into SQLite and PostgreSQL.

The store is seeded directly (small, exact data), and only the Zendesk app is served, so every
fault is placed precisely. zenpy reaches the server through ZENPY_FORCE_NETLOC/SCHEME.

The seeded data is long past. A test about "today" runs with ``read_started``: a first run that
reads now, then a *later* run simulated by a ``read_started`` some minutes ahead (the source's
changes made now are older than that run's read bound), as a real schedule would have it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, insert, select, update
from zenpy import Zenpy

from customer_health.refresh import RefreshWindow, affected_accounts
from customer_health.retries import RetryPolicy
from customer_health.sources import zendesk as zendesk_source
from customer_health.sources.window import SAFETY_LAG
from customer_health.sources.zendesk import (
    ZendeskAuthenticationError,
    ZendeskExtractionError,
    extract_zendesk,
    run_zendesk_extraction,
    ticket_category,
)
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import get_watermark
from customer_health.warehouse.schema import (
    account_crosswalk,
    account_identity_map,
    quarantine,
    raw_zd_organization,
    raw_zd_satisfaction_rating,
    raw_zd_ticket,
)
from health_sandbox.connections import SANDBOX_ZENDESK_EMAIL, SANDBOX_ZENDESK_TOKEN
from health_sandbox.http import serve
from health_sandbox.server import Sandbox
from health_sandbox.store import (
    store_engine,
    zd_organization,
    zd_satisfaction_rating,
    zd_ticket,
)
from health_sandbox.zendesk_api import build_app, source_now, system_update_delay

T0 = datetime(2026, 1, 1, 8, 0, 0)
ORGS = 23
TICKETS = 120
RATINGS = 41
# Tickets are updated every 6 hours from T0; the last one at T0 + 119 * 6 h.
UNTIL = T0 + timedelta(days=40)
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
SMALL_PAGES = {"page_size": 7, "export_page_size": 9, "retry": FAST}


def _ticket_updated(i: int) -> datetime:
    # Tickets 10 and 11 share a second: the export orders them by id.
    return T0 + timedelta(hours=6 * (10 if i == 11 else i))


def seed_zendesk(store) -> None:
    """A small help desk: organizations, tickets with metrics, satisfaction ratings."""
    tags = (["how_to"], ["complaint", "billing"], ["feature_request"], ["how-to", "complaint"])
    with store.begin() as conn:
        conn.execute(
            insert(zd_organization),
            [
                {
                    "id": 1000 + i,
                    "name": f"Org {i}",
                    "external_id": f"001A{i:014d}" if i % 4 else None,
                    "created_at": T0 - timedelta(days=400 - i),
                    "updated_at": T0 - timedelta(days=30 - i),
                }
                for i in range(ORGS)
            ],
        )
        conn.execute(
            insert(zd_ticket),
            [
                {
                    "id": 5000 + i,
                    "organization_id": 1000 + i % ORGS,
                    "requester_id": 9000 + i,
                    "subject": f"Ticket {i}",
                    "type": ("question", "incident", "problem", "task")[i % 4],
                    "priority": ("low", "normal", "high", "urgent")[i % 4],
                    "status": "deleted" if i == 3 else ("solved" if i % 3 == 0 else "open"),
                    "tags": tags[i % 4],
                    "created_at": T0 - timedelta(days=2) + timedelta(hours=i),
                    "updated_at": _ticket_updated(i),
                    "solved_at": _ticket_updated(i) if i % 3 == 0 else None,
                    "reopens": i % 2,
                    "replies": 2,
                    "full_resolution_time_in_minutes": 60 + i if i % 3 == 0 else None,
                    "first_reply_time_in_minutes": 15,
                }
                for i in range(TICKETS)
            ],
        )
        conn.execute(
            insert(zd_satisfaction_rating),
            [
                {
                    "id": 7000 + i,
                    "ticket_id": 5000 + i,
                    "organization_id": 1000 + i % ORGS,
                    "requester_id": 9000 + i,
                    "score": "good" if i % 3 else "bad",
                    "comment": None,
                    "created_at": T0 + timedelta(hours=12 * i),
                    "updated_at": T0 + timedelta(hours=12 * i),
                }
                for i in range(RATINGS)
            ],
        )


@pytest.fixture()
def zendesk(tmp_path, monkeypatch):
    """The Zendesk app served alone over a seeded store; zenpy pointed at it."""
    folder = tmp_path / "sandbox"
    store = store_engine(folder / "company.db")
    seed_zendesk(store)
    running = serve(build_app(store, folder))
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", f"127.0.0.1:{running.port}")
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    yield Sandbox(folder=folder, store=store, servers={"zendesk": running})
    running.stop()


@pytest.fixture()
def zenpy_client() -> Zenpy:
    return Zenpy(subdomain="acme", email=SANDBOX_ZENDESK_EMAIL, token=SANDBOX_ZENDESK_TOKEN)


@pytest.fixture()
def warehouse(warehouse_url):
    return engine_for(warehouse_url)


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def watermark(engine, obj: str) -> str | None:
    with engine.connect() as conn:
        return get_watermark(conn, "zendesk", obj)


def tickets_before(until: datetime) -> int:
    return sum(1 for i in range(TICKETS) if _ticket_updated(i) < until)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def stored(engine, table, record_id: int):
    with engine.connect() as conn:
        return conn.execute(select(table).where(table.c.id == record_id)).first()


def export_pages(base_url: str, start: datetime, per_page: int = 9) -> list[dict]:
    """Every page of the raw ticket export from ``start``, as the sandbox serves it."""
    auth = (f"{SANDBOX_ZENDESK_EMAIL}/token", SANDBOX_ZENDESK_TOKEN)
    url = f"{base_url}/api/v2/incremental/tickets/cursor.json"
    params: dict = {"start_time": int(start.replace(tzinfo=UTC).timestamp()), "per_page": per_page}
    pages = []
    while True:
        page = requests.get(url, params=params, auth=auth, timeout=10).json()
        pages.append(page)
        if page["end_of_stream"]:
            return pages
        params = {"cursor": page["after_cursor"], "per_page": per_page}


# ----------------------------------------------------------------------------- completeness
def test_every_record_lands_exactly_once_across_many_small_pages(zendesk, zenpy_client, warehouse):
    report = extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    assert count(warehouse, raw_zd_organization) == ORGS
    assert count(warehouse, raw_zd_ticket) == TICKETS
    assert count(warehouse, raw_zd_satisfaction_rating) == RATINGS
    objects = report.objects
    assert (objects["organizations"].rows, objects["tickets"].rows, objects["satisfaction_ratings"].rows) == (
        ORGS,
        TICKETS,
        RATINGS,
    )
    assert objects["tickets"].pages >= TICKETS // 9
    assert objects["tickets"].deleted == 1
    assert report.quarantined == 0
    assert watermark(warehouse, "tickets").startswith("cursor:")
    assert watermark(warehouse, "satisfaction_ratings") == UNTIL.isoformat()


def test_metric_sets_are_folded_into_tickets_and_category_comes_from_tags(zendesk, zenpy_client, warehouse):
    extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    with warehouse.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(raw_zd_ticket)).fetchall()}
    solved = rows[5006]
    assert (solved.status, solved.reopens, solved.full_resolution_minutes) == ("solved", 0, 66)
    assert solved.solved_at == _ticket_updated(6)
    assert solved.source_updated_at == _ticket_updated(6)
    assert (json.loads(solved.tags), solved.category) == (["feature_request"], "other")
    assert {rows[5000].category, rows[5001].category, rows[5002].category, rows[5007].category} == {
        "how_to",
        "complaint",
        "other",
    }
    assert rows[5007].category == "complaint"  # tagged both how-to and complaint
    assert rows[5003].is_deleted is True
    assert ticket_category(["How-To"]) == "how_to"


def test_rerun_of_the_same_interval_changes_nothing(zendesk, zenpy_client, warehouse):
    extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)
    marks = {obj: watermark(warehouse, obj) for obj in ("tickets", "satisfaction_ratings")}

    again = extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    assert again.objects["tickets"].rows == 0
    assert again.objects["satisfaction_ratings"].rows == 0
    assert again.objects["satisfaction_ratings"].pages == 0
    assert {obj: watermark(warehouse, obj) for obj in marks} == marks
    assert (count(warehouse, raw_zd_ticket), count(warehouse, raw_zd_satisfaction_rating)) == (
        TICKETS,
        RATINGS,
    )


def test_incremental_run_picks_up_only_new_and_updated_tickets(zendesk, zenpy_client, warehouse):
    extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)
    later = UNTIL + timedelta(days=2)
    with zendesk.store.begin() as conn:
        conn.execute(
            update(zd_ticket)
            .where(zd_ticket.c.id == 5004)
            .values(status="solved", updated_at=UNTIL + timedelta(hours=1))
        )
        conn.execute(
            insert(zd_ticket).values(
                id=6000,
                organization_id=1000,
                subject="New",
                type="question",
                priority="low",
                status="new",
                tags=["how_to"],
                created_at=UNTIL + timedelta(hours=2),
                updated_at=UNTIL + timedelta(hours=2),
            )
        )
        conn.execute(
            insert(zd_satisfaction_rating).values(
                id=7999,
                ticket_id=6000,
                organization_id=1000,
                score="good",
                created_at=UNTIL + timedelta(hours=3),
            )
        )

    report = extract_zendesk(zenpy_client, warehouse, later, **SMALL_PAGES)

    assert report.objects["tickets"].rows == 2
    assert report.objects["satisfaction_ratings"].rows == 1
    assert count(warehouse, raw_zd_ticket) == TICKETS + 1
    with warehouse.connect() as conn:
        assert (
            conn.execute(select(raw_zd_ticket.c.status).where(raw_zd_ticket.c.id == 5004)).scalar_one()
            == "solved"
        )


def test_tickets_updated_at_or_after_until_are_not_stored_and_the_cursor_stays_before_them(
    zendesk, zenpy_client, warehouse
):
    until = T0 + timedelta(hours=6 * 50 + 3)  # between ticket 50 and ticket 51

    report = extract_zendesk(zenpy_client, warehouse, until, **SMALL_PAGES)

    with warehouse.connect() as conn:
        latest = conn.execute(select(func.max(raw_zd_ticket.c.source_updated_at))).scalar_one()
    assert latest < until
    assert count(warehouse, raw_zd_ticket) == tickets_before(until)
    assert count(warehouse, raw_zd_satisfaction_rating) == sum(
        1 for i in range(RATINGS) if T0 + timedelta(hours=12 * i) < until
    )
    # The page holding ticket 51 was not committed past: the next run starts at or before it.
    follow_up = extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)
    assert count(warehouse, raw_zd_ticket) == TICKETS
    assert follow_up.objects["tickets"].rows >= TICKETS - tickets_before(until)
    assert report.objects["tickets"].watermark_after != follow_up.objects["tickets"].watermark_after


# ----------------------------------------------------------------------------- time
def test_a_run_for_today_leaves_every_watermark_before_the_moment_it_read(zendesk, zenpy_client, warehouse):
    started = now_utc()
    tonight = started + timedelta(hours=6)  # the interval of a run for "today" ends in the future

    first = extract_zendesk(zenpy_client, warehouse, tonight, read_started=started, **SMALL_PAGES)

    bound = started - SAFETY_LAG
    assert datetime.fromisoformat(watermark(warehouse, "satisfaction_ratings")) == bound
    assert first.objects["tickets"].rows == TICKETS
    # Just after that read, Zendesk - its clock a few seconds behind ours - records a rating and
    # a ticket change, stamped *before* the moment the first run started reading.
    at_zendesk = source_now(zendesk.store)
    assert at_zendesk < now_utc()
    with zendesk.store.begin() as conn:
        conn.execute(
            insert(zd_satisfaction_rating).values(
                id=7998, ticket_id=5002, requester_id=9002, score="bad", created_at=at_zendesk, updated_at=at_zendesk
            )
        )
        conn.execute(update(zd_ticket).where(zd_ticket.c.id == 5002).values(status="solved", updated_at=at_zendesk))

    # The next run (ten minutes later) reads both: nothing was marked read that had not happened.
    later = extract_zendesk(zenpy_client, warehouse, tonight, read_started=started + timedelta(minutes=10), **SMALL_PAGES)

    assert later.objects["satisfaction_ratings"].rows == 1
    assert stored(warehouse, raw_zd_satisfaction_rating, 7998).score == "bad"
    assert stored(warehouse, raw_zd_ticket, 5002).status == "solved"
    assert datetime.fromisoformat(watermark(warehouse, "satisfaction_ratings")) == bound + timedelta(minutes=10)


def test_a_ticket_and_a_rating_changed_while_a_run_is_in_progress_are_left_for_the_next_run(
    zendesk, zenpy_client, warehouse, monkeypatch
):
    started = now_utc()
    tonight = started + timedelta(hours=6)
    changed = []
    get = zendesk_source.ZendeskPages.get

    def get_then_change(self, api, path, params):  # noqa: ANN001, ANN202
        body = get(self, api, path, params)
        if path.startswith("incremental/tickets") and not changed:  # after the first export page
            at_zendesk = source_now(zendesk.store)
            with zendesk.store.begin() as conn:
                conn.execute(
                    update(zd_ticket).where(zd_ticket.c.id == 5100).values(status="solved", updated_at=at_zendesk)
                )
                conn.execute(
                    insert(zd_satisfaction_rating).values(
                        id=7997, ticket_id=5100, requester_id=9100, score="good", created_at=at_zendesk
                    )
                )
            changed.append(at_zendesk)
        return body

    monkeypatch.setattr(zendesk_source.ZendeskPages, "get", get_then_change)

    first = extract_zendesk(zenpy_client, warehouse, tonight, read_started=started, **SMALL_PAGES)

    # Ticket 5100 moved to the end of the export while the run paged; it was changed after the
    # read began, so this run stores no version of it and its cursor stops before it.
    assert changed and stored(warehouse, raw_zd_ticket, 5100) is None
    assert stored(warehouse, raw_zd_satisfaction_rating, 7997) is None
    assert first.objects["tickets"].rows == TICKETS - 1
    monkeypatch.setattr(zendesk_source.ZendeskPages, "get", get)

    second = extract_zendesk(zenpy_client, warehouse, tonight, read_started=started + timedelta(minutes=10), **SMALL_PAGES)

    assert stored(warehouse, raw_zd_ticket, 5100).status == "solved"
    assert stored(warehouse, raw_zd_satisfaction_rating, 7997).score == "good"
    assert second.objects["tickets"].rows >= 1
    assert count(warehouse, raw_zd_ticket) == TICKETS


def test_the_export_is_ordered_by_generated_timestamp_and_a_ticket_system_updated_after_until_waits(
    zendesk, zenpy_client, warehouse
):
    until = T0 + timedelta(hours=6 * 60 + 3)  # between ticket 60 and ticket 61
    touched = next(i for i in range(6000, 6100) if system_update_delay(i))  # gets a system update
    plain = next(i for i in range(6000, 6100) if not system_update_delay(i))
    with zendesk.store.begin() as conn:
        for ticket_id, updated in ((touched, until - timedelta(minutes=2)), (plain, until - timedelta(minutes=1))):
            conn.execute(
                insert(zd_ticket).values(
                    id=ticket_id, organization_id=1001, requester_id=9999, subject="Late", type="question",
                    priority="low", status="open", tags=["how_to"], created_at=T0, updated_at=updated,
                )
            )  # fmt: skip

    # Zendesk's page: `touched` (last event 2 minutes before `until`, system update after it)
    # comes after `plain`, so updated_at goes backwards within the page.
    pages = export_pages(zendesk.servers["zendesk"].base_url, until - timedelta(hours=1))
    order = [t["id"] for page in pages for t in page["tickets"]]
    assert order.index(plain) < order.index(touched)
    stamps = [(t["generated_timestamp"], t["updated_at"]) for page in pages for t in page["tickets"]]
    assert stamps == sorted(stamps, key=lambda s: s[0])
    assert [u for _, u in stamps] != sorted(u for _, u in stamps)

    report = extract_zendesk(zenpy_client, warehouse, until, **SMALL_PAGES)

    # Its current version was generated after `until`: left for the next run, although its
    # updated_at is before `until`.
    assert stored(warehouse, raw_zd_ticket, plain) is not None
    assert stored(warehouse, raw_zd_ticket, touched) is None
    assert report.objects["tickets"].rows == tickets_before(until) + 1
    follow_up = extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)
    assert stored(warehouse, raw_zd_ticket, touched).source_updated_at == until - timedelta(minutes=2)
    assert follow_up.objects["tickets"].rows >= TICKETS - tickets_before(until) + 1


def test_ratings_carry_no_organization_and_a_rating_alone_marks_its_account_changed(
    zendesk, zenpy_client, warehouse
):
    base = zendesk.servers["zendesk"].base_url
    auth = (f"{SANDBOX_ZENDESK_EMAIL}/token", SANDBOX_ZENDESK_TOKEN)
    served = requests.get(f"{base}/api/v2/satisfaction_ratings.json", auth=auth, timeout=5).json()
    assert served["satisfaction_ratings"] and not any("organization_id" in r for r in served["satisfaction_ratings"])

    extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    with warehouse.connect() as conn:
        orgs = set(conn.execute(select(raw_zd_satisfaction_rating.c.organization_id)).scalars())
    assert orgs == {None}
    # Rating 21 (on ticket 21 of org 1021) is the only change of org 1021 in this window: the
    # rating -> ticket -> organization -> account path marks the account changed.
    i = 21
    account = "001A00000000000021"
    with warehouse.begin() as conn:
        conn.execute(insert(account_crosswalk).values(account_key=account, account_name="Org 21", updated_at=T0))
        conn.execute(
            insert(account_identity_map).values(
                system="zendesk", source_id=str(1000 + i % ORGS), account_key=account, match_method="external_id",
                updated_at=T0,
            )
        )  # fmt: skip
    rated_at = T0 + timedelta(hours=12 * i)
    assert _ticket_updated(i) < rated_at - timedelta(hours=1)
    window = RefreshWindow(since=rated_at - timedelta(hours=1), until=rated_at + timedelta(hours=1))

    assert affected_accounts(warehouse, window) == [account]
    assert affected_accounts(warehouse, RefreshWindow(since=rated_at, until=rated_at + timedelta(hours=1))) == []


# ----------------------------------------------------------------------------- faults
def test_rate_limit_with_retry_after_is_waited_out(zendesk, zenpy_client, warehouse):
    zendesk.inject_fault(
        "zendesk", "rate_limit", path_regex="incremental/tickets", times=2, retry_after=1, skip=1
    )

    started = time.monotonic()
    extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    assert time.monotonic() - started >= 2.0  # two Retry-After: 1 honoured
    assert count(warehouse, raw_zd_ticket) == TICKETS


def test_rate_limiting_beyond_the_budget_fails_clearly_and_keeps_committed_pages(
    zendesk, zenpy_client, warehouse
):
    zendesk.inject_fault(
        "zendesk", "rate_limit", path_regex="incremental/tickets", times=100, retry_after=1, skip=3
    )

    with pytest.raises(ZendeskExtractionError, match="rate-limit budget"):
        extract_zendesk(zenpy_client, warehouse, UNTIL, ratelimit_budget=2, **SMALL_PAGES)

    assert count(warehouse, raw_zd_ticket) == 27  # the three pages committed before the 429s
    committed = watermark(warehouse, "tickets")
    zendesk.clear_faults()
    extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)
    assert count(warehouse, raw_zd_ticket) == TICKETS
    assert watermark(warehouse, "tickets") != committed


def test_a_few_server_errors_are_retried_and_the_run_completes(zendesk, zenpy_client, warehouse):
    zendesk.inject_fault("zendesk", "server_error", path_regex="organizations", times=2)
    zendesk.inject_fault("zendesk", "server_error", path_regex="incremental/tickets", times=2, skip=4)

    report = extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    assert report.objects["tickets"].rows == TICKETS
    assert count(warehouse, raw_zd_organization) == ORGS


def test_persistent_server_errors_fail_clearly_without_advancing_the_watermark(
    zendesk, zenpy_client, warehouse
):
    extract_zendesk(zenpy_client, warehouse, T0 + timedelta(days=5), **SMALL_PAGES)
    before = watermark(warehouse, "tickets")
    zendesk.inject_fault("zendesk", "server_error", path_regex="incremental/tickets", times=100)

    with pytest.raises(ZendeskExtractionError, match=r"failed after 3 attempt\(s\).*HTTP 503"):
        extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    assert watermark(warehouse, "tickets") == before
    assert watermark(warehouse, "satisfaction_ratings") == (T0 + timedelta(days=5)).isoformat()


def test_a_server_that_hangs_times_out_and_is_retried(zendesk, zenpy_client, warehouse):
    zendesk.inject_fault(
        "zendesk", "timeout", path_regex="incremental/tickets", times=1, retry_after=1.5, skip=2
    )

    report = extract_zendesk(zenpy_client, warehouse, UNTIL, request_timeout=0.5, **SMALL_PAGES)

    assert report.objects["tickets"].rows == TICKETS
    assert count(warehouse, raw_zd_ticket) == TICKETS


def test_malformed_records_are_quarantined_and_counted_and_the_rest_continues(
    zendesk, zenpy_client, warehouse
):
    zendesk.inject_fault("zendesk", "malformed", path_regex="incremental/tickets", times=1, skip=2)
    zendesk.inject_fault("zendesk", "malformed", path_regex="satisfaction_ratings", times=1)

    report = extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    assert report.objects["tickets"].quarantined == 1
    assert report.objects["satisfaction_ratings"].quarantined == 1
    assert count(warehouse, raw_zd_ticket) == TICKETS - 1
    assert count(warehouse, raw_zd_satisfaction_rating) == RATINGS - 1
    with warehouse.connect() as conn:
        reasons = dict(conn.execute(select(quarantine.c.object, quarantine.c.reason)).fetchall())
    assert "created_at is not a timestamp: 'garbage'" in reasons["tickets"]
    assert "priority 42 is not one of" in reasons["tickets"]
    assert "score 42" in reasons["satisfaction_ratings"]


def test_a_page_served_twice_stores_each_record_once(zendesk, zenpy_client, warehouse):
    zendesk.inject_fault("zendesk", "duplicate_page", path_regex="incremental/tickets", times=2)
    zendesk.inject_fault("zendesk", "duplicate_page", path_regex="organizations", times=1)

    report = extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    assert report.objects["tickets"].rows == TICKETS
    assert report.objects["organizations"].rows == ORGS
    assert count(warehouse, raw_zd_ticket) == TICKETS
    assert report.objects["tickets"].pages == -(-TICKETS // 9) + 2


# ----------------------------------------------------------------------------- the API itself
def test_only_the_api_token_of_the_sandbox_user_is_accepted_as_zendesk_takes_it(zendesk):
    url = f"{zendesk.servers['zendesk'].base_url}/api/v2/organizations.json"
    email, token = SANDBOX_ZENDESK_EMAIL, SANDBOX_ZENDESK_TOKEN

    refused = [
        requests.get(url, timeout=5),  # no credentials
        requests.get(url, auth=(f"{email}/token", "wrong-token"), timeout=5),
        requests.get(url, auth=("someone.else@example.com/token", token), timeout=5),
        requests.get(url, auth=(email, token), timeout=5),  # a password login, not a token
    ]

    assert [(r.status_code, r.json()) for r in refused] == [(401, {"error": "Couldn't authenticate you"})] * 4
    assert requests.get(url, auth=(f"{email.upper()}/token", token), timeout=5).status_code == 200


def test_a_wrong_api_token_fails_at_once_with_an_error_that_names_the_connection(zendesk, warehouse, monkeypatch):
    client = Zenpy(subdomain="acme", email=SANDBOX_ZENDESK_EMAIL, token="revoked-token")
    requests_sent = []
    original = client.organizations._get
    monkeypatch.setattr(
        client.organizations, "_get", lambda *a, **k: requests_sent.append(a) or original(*a, **k)
    )

    with pytest.raises(ZendeskAuthenticationError, match=r"HTTP 401.*connection 'health_zendesk'") as failure:
        extract_zendesk(client, warehouse, UNTIL, connection="health_zendesk", **SMALL_PAGES)

    assert len(requests_sent) == 1, "an authentication error is not retried"
    assert failure.value.retryable is False
    assert isinstance(failure.value, ZendeskExtractionError)
    assert "API token" in str(failure.value) and "Retrying will not help" in str(failure.value)
    assert watermark(warehouse, "tickets") is None
    # The DAG's wrapper turns it into a failure Airflow does not retry.
    from airflow.sdk.exceptions import AirflowFailException

    from customer_health.pipeline import fail_fast

    with pytest.raises(AirflowFailException, match="ZendeskAuthenticationError"):
        fail_fast(extract_zendesk)(client, warehouse, UNTIL, connection="health_zendesk", **SMALL_PAGES)


def test_an_agent_without_admin_access_fails_at_once_saying_the_export_needs_an_admin(
    zendesk, zenpy_client, warehouse
):
    from health_sandbox.store import sandbox_meta

    with zendesk.store.begin() as conn:
        conn.execute(insert(sandbox_meta).values(key="zendesk_role", value="agent"))

    with pytest.raises(ZendeskAuthenticationError, match=r"HTTP 403.*for admins only") as failure:
        extract_zendesk(zenpy_client, warehouse, UNTIL, **SMALL_PAGES)

    assert failure.value.retryable is False
    assert count(warehouse, raw_zd_organization) == ORGS  # organizations are readable by agents
    assert watermark(warehouse, "tickets") is None


def test_zenpy_reads_a_single_ticket(zendesk, zenpy_client):
    ticket = zenpy_client.tickets(id=5002)

    assert (ticket.id, ticket.subject, ticket.priority) == (5002, "Ticket 2", "high")


# ----------------------------------------------------------------------------- Airflow
def test_the_provider_hook_built_from_an_airflow_connection_extracts_from_the_sandbox(
    zendesk, warehouse, monkeypatch
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HEALTH_ZENDESK",
        json.dumps(
            {
                "conn_type": "zendesk",
                "host": "acme.zendesk.com",
                "login": SANDBOX_ZENDESK_EMAIL,
                "password": SANDBOX_ZENDESK_TOKEN,
                "extra": {"use_token": True},
            }
        ),
    )

    counts = run_zendesk_extraction("health_zendesk", warehouse, UNTIL)

    assert counts["source"] == "zendesk"
    assert counts["objects"]["tickets"]["rows"] == TICKETS
    assert counts["rows"] == ORGS + TICKETS + RATINGS
    json.dumps(counts)  # XCom-able


# ----------------------------------------------------------------------------- the generated company
def test_the_generated_company_extracts_completely_through_the_sandbox_connection(
    sandbox, sqlite_warehouse_url, monkeypatch
):
    from health_sandbox.connections import as_environment, sandbox_connections

    for name, value in as_environment(sandbox_connections(sandbox.endpoints)).items():
        monkeypatch.setenv(name, value)
    warehouse = engine_for(sqlite_warehouse_url)

    counts = run_zendesk_extraction("health_zendesk", warehouse, datetime(2030, 1, 1))

    with sandbox.store.connect() as conn:
        expected = {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in (
                ("organizations", zd_organization),
                ("tickets", zd_ticket),
                ("satisfaction_ratings", zd_satisfaction_rating),
            )
        }
    assert {name: o["rows"] for name, o in counts["objects"].items()} == expected
    assert counts["quarantined"] == 0
    assert count(warehouse, raw_zd_ticket) == expected["tickets"]
    # As on real export pages, updated_at goes backwards somewhere (system updates), and the
    # company's ratings carry no organization.
    pages = export_pages(sandbox.endpoints["zendesk"], datetime(2000, 1, 1), per_page=1000)
    assert any(
        later["updated_at"] < earlier["updated_at"]
        for page in pages
        for earlier, later in zip(page["tickets"], page["tickets"][1:], strict=False)
    )
    with warehouse.connect() as conn:
        assert set(conn.execute(select(raw_zd_satisfaction_rating.c.organization_id)).scalars()) == {None}
