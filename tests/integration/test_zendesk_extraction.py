"""Zendesk extraction: zenpy against the loopback Zendesk API, into SQLite and PostgreSQL.

The store is seeded directly (small, exact data), and only the Zendesk app is served, so every
fault is placed precisely. zenpy reaches the server through ZENPY_FORCE_NETLOC/SCHEME.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import func, insert, select, update
from zenpy import Zenpy

from customer_health.sandbox.http import serve
from customer_health.sandbox.server import Sandbox
from customer_health.sandbox.store import (
    store_engine,
    zd_organization,
    zd_satisfaction_rating,
    zd_ticket,
)
from customer_health.sandbox.zendesk_api import build_app
from customer_health.sources.retry import (
    RetriesExhausted,
    Retryable,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
)
from customer_health.sources.zendesk import (
    ZendeskExtractionError,
    extract_zendesk,
    run_zendesk_extraction,
    ticket_category,
)
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import get_watermark
from customer_health.warehouse.schema import (
    quarantine,
    raw_zd_organization,
    raw_zd_satisfaction_rating,
    raw_zd_ticket,
)

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
    return Zenpy(subdomain="acme", email="ops@acme.example", token="sandbox-token")


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


def test_the_retry_helper_honours_retry_after_and_gives_up_within_its_bounds():
    waits: list[float] = []
    outcomes = iter([Retryable("HTTP 429", 2.0), Retryable("HTTP 503"), None])

    def flaky() -> str:
        verdict = next(outcomes)
        if verdict is None:
            return "page"
        raise ConnectionError(verdict.reason)

    def classify(exc: BaseException) -> Retryable | None:
        return Retryable(str(exc), 2.0 if "429" in str(exc) else None)

    policy = RetryPolicy(attempts=3, base_delay=0.5)
    assert (
        call_with_retries(flaky, describe="GET x", classify=classify, policy=policy, sleep=waits.append)
        == "page"
    )
    assert waits == [2.0, 1.0]  # Retry-After exactly, then exponential backoff
    with pytest.raises(RetriesExhausted, match="asked to wait 900s"):
        call_with_retries(
            lambda: (_ for _ in ()).throw(ConnectionError("429")),
            describe="GET y",
            classify=lambda exc: Retryable("HTTP 429", 900.0),
            sleep=waits.append,
        )
    assert parse_retry_after("7") == 7.0 and parse_retry_after("soon") is None


# ----------------------------------------------------------------------------- the API itself
def test_requests_without_zendesk_credentials_are_rejected(zendesk):
    base = zendesk.servers["zendesk"].base_url

    assert requests.get(f"{base}/api/v2/organizations.json", timeout=5).status_code == 401
    assert (
        requests.get(f"{base}/api/v2/organizations.json", auth=("a@b.c/token", "x"), timeout=5).status_code
        == 200
    )


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
                "login": "ops@acme.example",
                "password": "sandbox-token",
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
    from customer_health.sandbox.connections import as_environment, sandbox_connections

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
