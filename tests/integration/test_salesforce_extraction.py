"""Salesforce: the loopback REST API and the extraction of Salesforce into the warehouse.

Everything runs through the real clients - simple-salesforce over requests, and the Airflow
provider's hook - against the sandbox's Salesforce served over HTTPS on 127.0.0.1. The store is
seeded here, object by object, so each test knows exactly which records exist and faults can be
aimed at one request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests
import requests.adapters
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest
from sqlalchemy import Engine, delete, func, insert, select, update

from customer_health.sources.salesforce import (
    OBJECT_MAPPINGS,
    RecordInvalid,
    SalesforceAuthenticationError,
    SalesforcePermissionError,
    SalesforceQueryError,
    SalesforceRateLimited,
    SalesforceUnavailable,
    case_safe_id,
    extract_salesforce,
    record_to_row,
    salesforce_http_session,
)
from customer_health.sources.window import SAFETY_LAG, read_bound
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import get_watermark
from customer_health.warehouse.schema import extraction_watermarks, quarantine
from health_sandbox.connections import SANDBOX_SF_CLIENT_ID, SANDBOX_SF_CLIENT_SECRET
from health_sandbox.http import RunningServer, serve
from health_sandbox.ids import is_valid_salesforce_id
from health_sandbox.salesforce_api import SANDBOX_SF_PASSWORD, SANDBOX_SF_USERNAME, build_app
from health_sandbox.server import Sandbox
from health_sandbox.store import (
    sandbox_faults,
    sandbox_writes,
    sf_account,
    sf_contact,
    sf_nps_response,
    sf_opportunity,
    sf_task,
    sf_user,
    sf_user_role,
    store_engine,
)
from health_sandbox.tls import ensure_certificate, server_context

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
SEEDED_UNTIL = NOW - timedelta(days=1)  # every seeded record changed before this
STORE_TABLES = {
    "User": sf_user,
    "Account": sf_account,
    "Contact": sf_contact,
    "Task": sf_task,
    "Opportunity": sf_opportunity,
    "NPS_Response__c": sf_nps_response,
}
BATCH = 7  # small pages, so every object spans several


# ----------------------------------------------------------------------------- the seeded org
def sf_id(prefix: str, n: int) -> str:
    return case_safe_id(f"{prefix}5g0000{n:06d}")


ROLES = {"00E5g0000000001AAA": "Customer Success Manager", "00E5g0000000002AAA": "VP Customer Success"}


def seed_org(store: Engine) -> None:
    """A small org: 2 roles, 3 users, 20 accounts, 30 contacts, 45 tasks, 12 opportunities, 10 NPS.

    Modification stamps are spread over the ten days before ``SEEDED_UNTIL``, several share a
    stamp (so ``ORDER BY SystemModstamp, Id`` matters), and a few records are deleted.
    """
    base = SEEDED_UNTIL - timedelta(days=10)

    def stamp(i: int) -> datetime:
        return base + timedelta(hours=(i // 2) * 5)  # pairs share a stamp

    roles = [{"Id": role_id, "Name": name, "SystemModstamp": base} for role_id, name in ROLES.items()]
    role_of = [*ROLES, None]  # user 0: CSM, user 1: VP, user 2: no role
    users = [
        {"Id": sf_id("005", i), "Name": f"CSM {i}", "Email": f"csm{i}@example.com", "Title": "CSM",
         "UserRoleId": role_of[i], "IsActive": True, "CreatedDate": stamp(i), "SystemModstamp": stamp(i)}
        for i in range(3)
    ]
    accounts = [
        {"Id": sf_id("001", i), "Name": f"Account {i}", "ParentId": sf_id("001", 0) if i % 7 == 3 else None,
         "OwnerId": users[i % 3]["Id"], "Industry": "Software", "Type": "Customer",
         "Plan__c": ("starter", "growth", "enterprise")[i % 3], "Seats__c": 10 + i, "ARR__c": 1200.0 * (i + 1),
         "Customer_Since__c": date(2024, 1, 1) + timedelta(days=i), "Product_Account_Id__c": f"pa_{i:04d}",
         "CreatedDate": stamp(i), "SystemModstamp": stamp(i), "IsDeleted": i == 19}
        for i in range(20)
    ]
    contacts = [
        {"Id": sf_id("003", i), "AccountId": accounts[i % 20]["Id"], "FirstName": f"First{i}",
         "LastName": f"Last{i}", "Email": f"c{i}@customer.example", "Title": "VP" if i < 20 else "Engineer",
         "Executive_Sponsor__c": i < 20, "CreatedDate": stamp(i), "SystemModstamp": stamp(i),
         "IsDeleted": i == 29}
        for i in range(30)
    ]
    tasks = [
        {"Id": sf_id("00T", i), "AccountId": accounts[i % 20]["Id"], "WhatId": accounts[i % 20]["Id"],
         "WhoId": contacts[i % 30]["Id"], "OwnerId": users[i % 3]["Id"], "Subject": f"Call {i}",
         "Type": "Call", "Status": "Completed", "Priority": "Normal", "ActivityDate": date(2026, 10, 1),
         "Executive_Touch__c": i % 4 == 0, "Outreach_Responded__c": None if i % 3 else True,
         "Health_Action_Key__c": None, "CreatedDate": stamp(i), "SystemModstamp": stamp(i),
         "IsDeleted": i in (5, 6)}
        for i in range(45)
    ]
    opportunities = [
        {"Id": sf_id("006", i), "AccountId": accounts[i]["Id"], "Name": f"Renewal {i}", "Type": "Renewal",
         "StageName": "Closed Won" if i % 2 else "Negotiation", "Amount": 5000.0 + i, "CloseDate": date(2026, 12, 1),
         "IsClosed": bool(i % 2), "IsWon": bool(i % 2), "CreatedDate": stamp(i), "SystemModstamp": stamp(i),
         "IsDeleted": False}
        for i in range(12)
    ]
    nps = [
        {"Id": sf_id("a0N", i), "Account__c": accounts[i]["Id"], "Contact__c": contacts[i]["Id"],
         "Score__c": i % 11, "Comment__c": "fine", "Responded_At__c": stamp(i), "CreatedDate": stamp(i),
         "SystemModstamp": stamp(i), "IsDeleted": False}
        for i in range(10)
    ]
    with store.begin() as conn:
        for table, rows in ((sf_user_role, roles), (sf_user, users), (sf_account, accounts), (sf_contact, contacts),
                            (sf_task, tasks), (sf_opportunity, opportunities), (sf_nps_response, nps)):
            conn.execute(insert(table), rows)


@dataclass
class LoopbackSalesforce:
    """The loopback Salesforce for one test: store, server, and ways to log in."""

    store: Engine
    folder: Path
    server: RunningServer
    ca_cert: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/services/oauth2/token"

    def inject_fault(self, kind: str, **kwargs) -> None:
        """Arm a fault exactly as ``Sandbox.inject_fault`` does."""
        Sandbox(folder=self.folder, store=self.store).inject_fault("salesforce", kind, **kwargs)

    def faults_left(self) -> int:
        with self.store.connect() as conn:
            return conn.execute(select(func.coalesce(func.sum(sandbox_faults.c.remaining), 0))).scalar_one()

    def login(self, timeout: float = 5.0, retries: int = 3, backoff: float = 0.05) -> Salesforce:
        """A freshly logged-in client (client-credentials grant) on a retrying session."""
        http = salesforce_http_session(self.ca_cert, timeout=timeout, retries=retries, backoff=backoff,
                                       token_url=self.token_url)
        token = http.post(self.token_url, data={"grant_type": "client_credentials", "client_id": SANDBOX_SF_CLIENT_ID,
                                                "client_secret": SANDBOX_SF_CLIENT_SECRET}).json()
        return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=http,
                          version="59.0")

    def count(self, obj: str) -> int:
        with self.store.connect() as conn:
            return conn.execute(select(func.count()).select_from(STORE_TABLES[obj])).scalar_one()


@pytest.fixture()
def salesforce(tmp_path) -> Iterator[LoopbackSalesforce]:
    folder = tmp_path / "sandbox"
    store = store_engine(folder / "company.db")
    seed_org(store)
    cert, _ = ensure_certificate(folder)
    server = serve(build_app(store, folder), tls=server_context(folder))
    yield LoopbackSalesforce(store, folder, server, str(cert))
    server.stop()
    store.dispose()


def warehouse_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(m.table)).scalar_one()
            for name, m in OBJECT_MAPPINGS.items()
        }


def store_counts(sf: LoopbackSalesforce) -> dict[str, int]:
    return {name: sf.count(name) for name in STORE_TABLES}


def watermarks(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return {name: get_watermark(conn, "salesforce", name) for name in OBJECT_MAPPINGS}


# ----------------------------------------------------------------------------- extraction
def test_every_object_lands_exactly_once_across_many_pages(salesforce, warehouse_url):
    engine = engine_for(warehouse_url)
    report = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)

    assert warehouse_counts(engine) == store_counts(salesforce)
    for name, obj in report.objects.items():
        assert obj.rows == salesforce.count(name)
        assert obj.pages == -(-obj.rows // BATCH)  # ceil: every page read once
        assert obj.watermark_before is None
        assert obj.watermark_after == SEEDED_UNTIL.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert report.objects["Task"].deleted == 2 and report.objects["Account"].deleted == 1
    with engine.connect() as conn:
        task = conn.execute(select(OBJECT_MAPPINGS["Task"].table).where(
            OBJECT_MAPPINGS["Task"].table.c.id == sf_id("00T", 4))).one()
        account = conn.execute(select(OBJECT_MAPPINGS["Account"].table).where(
            OBJECT_MAPPINGS["Account"].table.c.id == sf_id("001", 19))).one()
    assert task.is_executive_touch is True and task.outreach_responded is None
    assert task.activity_date == date(2026, 10, 1) and task.task_type == "Call"
    assert account.is_deleted is True and account.seats == 29 and account.plan == "growth"
    assert account.customer_since == date(2024, 1, 20) and account.product_account_id == "pa_0019"


def test_rerun_for_the_same_interval_changes_no_row_counts(salesforce, warehouse_url):
    engine = engine_for(warehouse_url)
    extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)
    first = warehouse_counts(engine)

    again = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)
    assert again.rows == 0  # nothing changed after the watermark: not even a query is needed
    assert warehouse_counts(engine) == first

    with engine.begin() as conn:  # a rebuild from scratch re-reads everything, and upserts
        conn.execute(delete(extraction_watermarks))
    rebuilt = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)
    assert rebuilt.rows == sum(first.values())
    assert warehouse_counts(engine) == first


def test_incremental_run_reads_only_changed_records_and_deletions(salesforce, warehouse_url):
    engine = engine_for(warehouse_url)
    extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)
    before = warehouse_counts(engine)

    sf = salesforce.login()
    sf.Account.update(sf_id("001", 2), {"Seats__c": 99})
    new_task = sf.Task.create({"WhatId": sf_id("001", 2), "Subject": "QBR", "Type": "Meeting",
                               "Status": "Not Started", "ActivityDate": "2026-11-30"})["id"]
    sf.Contact.delete(sf_id("003", 4))

    # Taken now, not at import: in a long suite this test may run many minutes after collection.
    later = datetime.now(UTC).replace(tzinfo=None, microsecond=0) + timedelta(minutes=5)
    # A run five minutes from now: the changes are older than its read bound.
    report = extract_salesforce(salesforce.login, engine, later, batch_size=BATCH, read_started=later)
    assert {n: o.rows for n, o in report.objects.items() if o.rows} == {"Account": 1, "Contact": 1, "Task": 1}
    assert report.objects["Contact"].deleted == 1
    assert report.objects["Account"].watermark_before == SEEDED_UNTIL.strftime("%Y-%m-%dT%H:%M:%SZ")
    after = warehouse_counts(engine)
    assert after == before | {"Task": before["Task"] + 1}
    account, task, contact = (OBJECT_MAPPINGS[n].table for n in ("Account", "Task", "Contact"))
    with engine.connect() as conn:
        assert conn.execute(select(account.c.seats).where(account.c.id == sf_id("001", 2))).scalar_one() == 99
        assert conn.execute(select(task.c.subject, task.c.account_id).where(task.c.id == new_task)).one() == (
            "QBR", sf_id("001", 2))  # Salesforce fills Task.AccountId from WhatId
        assert conn.execute(select(contact.c.is_deleted).where(contact.c.id == sf_id("003", 4))).scalar_one()


def test_changes_committed_while_a_run_reads_are_extracted_by_the_next_run(salesforce, warehouse_url):
    """A run for "today" reads while people keep working in Salesforce.

    Two contacts change while the run is in progress, committed just after its Contact query was
    answered: one stamped five seconds before the run started (Salesforce's clock a few seconds
    behind the warehouse host's), one stamped a minute before the run's read bound (a long
    transaction: SystemModstamp is when the write began, it becomes visible at commit). Neither can
    be in this run; the next run, a quarter of an hour later, must read both.
    """
    engine = engine_for(warehouse_url)
    extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)  # everything up to yesterday
    started = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    interval_end = started + timedelta(days=1)  # a run for today: its interval ends in the future
    stamps = {sf_id("003", 0): started - timedelta(seconds=5),
              sf_id("003", 1): read_bound(interval_end, started) - timedelta(minutes=1)}

    def login_while_people_work() -> Salesforce:
        client = salesforce.login()
        answer_query = client.query

        def query(soql: str, *args, **kwargs):
            page = answer_query(soql, *args, **kwargs)
            if "FROM Contact" in soql:  # committed right after the query was answered
                with salesforce.store.begin() as conn:
                    for contact_id, stamp in stamps.items():
                        conn.execute(update(sf_contact).where(sf_contact.c.Id == contact_id)
                                     .values(Title="Chief Customer Officer", SystemModstamp=stamp))
            return page

        client.query = query
        return client

    contact = OBJECT_MAPPINGS["Contact"].table

    def titles() -> dict[str, str]:
        with engine.connect() as conn:
            return dict(conn.execute(select(contact.c.id, contact.c.title).where(contact.c.id.in_(stamps))).all())

    extract_salesforce(login_while_people_work, engine, interval_end, objects=["Contact"], read_started=started)
    assert set(titles().values()) == {"VP"}  # not in this run: committed after its query
    assert as_naive(watermarks(engine)["Contact"]) <= started - SAFETY_LAG  # never past the moment of reading

    nxt = extract_salesforce(salesforce.login, engine, interval_end, objects=["Contact"],
                             read_started=started + timedelta(minutes=15))
    assert titles() == dict.fromkeys(stamps, "Chief Customer Officer")
    assert nxt.objects["Contact"].rows >= 2


def as_naive(text: str | None) -> datetime:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def test_backfill_with_an_older_until_reads_nothing_and_keeps_the_watermark(salesforce, sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)
    marks = watermarks(engine)
    report = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL - timedelta(days=3))
    assert report.rows == 0
    assert watermarks(engine) == marks


# ----------------------------------------------------------------------------- faults
def test_daily_api_limit_is_a_clear_error_that_keeps_the_watermark_and_the_rerun_loads_each_record_once(
    salesforce, warehouse_url
):
    engine = engine_for(warehouse_url)
    # User's query and Account's first page pass; Account's second page hits the limit.
    salesforce.inject_fault("rate_limit", path_regex=r"/query", skip=2)
    with pytest.raises(SalesforceRateLimited) as err:
        extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)
    message = str(err.value)
    assert "daily API request limit" in message and "REQUEST_LIMIT_EXCEEDED" in message
    assert "retry in an hour" in message and "Account" in message
    assert err.value.retry_after_seconds >= 3600
    marks = watermarks(engine)
    assert marks["User"] is not None and marks["Account"] is None and marks["Task"] is None
    assert 0 < warehouse_counts(engine)["Account"] < salesforce.count("Account")  # page 1 committed

    report = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)
    assert warehouse_counts(engine) == store_counts(salesforce)
    assert report.objects["Account"].rows == salesforce.count("Account")
    assert report.objects["User"].rows == 0  # already extracted: not read twice


def test_503_and_429_with_retry_after_are_retried_and_the_run_completes(salesforce, sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    salesforce.inject_fault("server_error", path_regex=r"/query", times=2)  # 503, twice
    salesforce.inject_fault("server_error", path_regex=r"/query", retry_after=1, skip=3)  # 429 Retry-After: 1
    started = time.monotonic()
    extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, batch_size=BATCH)
    assert time.monotonic() - started >= 1.0  # the Retry-After was honoured
    assert salesforce.faults_left() == 0
    assert warehouse_counts(engine) == store_counts(salesforce)


def test_503_that_outlasts_the_retries_is_a_clear_unavailable_error(salesforce, sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    salesforce.inject_fault("server_error", path_regex=r"/query", times=10)
    with pytest.raises(SalesforceUnavailable, match="HTTP 503 .*through every retry"):
        extract_salesforce(lambda: salesforce.login(retries=2), engine, SEEDED_UNTIL, objects=["Account"])
    assert watermarks(engine)["Account"] is None


def test_expired_session_is_renewed_by_logging_in_again(salesforce, sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    logins = []

    def login() -> Salesforce:
        logins.append(1)
        return salesforce.login()

    salesforce.inject_fault("expired_session", path_regex=r"/query", skip=3)
    extract_salesforce(login, engine, SEEDED_UNTIL, batch_size=BATCH)
    assert len(logins) == 2
    assert warehouse_counts(engine) == store_counts(salesforce)


def test_expired_session_without_a_way_to_log_in_again_is_an_authentication_error(
    salesforce, sqlite_warehouse_url
):
    salesforce.inject_fault("expired_session", path_regex=r"/query")
    with pytest.raises(SalesforceAuthenticationError, match="could not be renewed"):
        extract_salesforce(salesforce.login(), engine_for(sqlite_warehouse_url), SEEDED_UNTIL)


def test_a_timeout_is_retried(salesforce, sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    salesforce.inject_fault("timeout", path_regex=r"/query", retry_after=1.5, skip=1)
    extract_salesforce(lambda: salesforce.login(timeout=0.5), engine, SEEDED_UNTIL, batch_size=BATCH,
                       objects=["Account"])
    assert salesforce.faults_left() == 0
    assert warehouse_counts(engine)["Account"] == salesforce.count("Account")


def test_a_timeout_that_persists_is_a_clear_error(salesforce, sqlite_warehouse_url):
    salesforce.inject_fault("timeout", path_regex=r"/query", retry_after=1.0, times=5)
    with pytest.raises(SalesforceUnavailable, match="Account"):
        extract_salesforce(lambda: salesforce.login(timeout=0.3, retries=1), engine_for(sqlite_warehouse_url),
                           SEEDED_UNTIL, objects=["Account"])


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("Account", "Seats__c: expected a whole number, got 'twelve'"),
        ("NPS_Response__c", "Score__c: expected a whole number, got 'nine'"),
        ("Contact", "SystemModstamp: expected a datetime"),
    ],
)
def test_malformed_record_is_quarantined_with_its_reason_and_the_rest_loads(
    salesforce, warehouse_url, obj, reason
):
    engine = engine_for(warehouse_url)
    salesforce.inject_fault("malformed", path_regex=r"/query", skip=1)  # the second page
    report = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=[obj], batch_size=BATCH)

    assert report.objects[obj].quarantined == 1
    assert warehouse_counts(engine)[obj] == salesforce.count(obj) - 1
    with engine.connect() as conn:
        held = conn.execute(select(quarantine)).one()
    assert (held.source, held.object) == ("salesforce", obj)
    assert reason in held.reason
    assert json.loads(held.payload)["Id"] == held.record_id
    assert watermarks(engine)[obj] is not None  # one bad record does not hold the object back

    # Fixed at the source (here: read again without the fault), it loads and leaves quarantine.
    with engine.begin() as conn:
        conn.execute(delete(extraction_watermarks))
    extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=[obj], batch_size=BATCH)
    assert warehouse_counts(engine)[obj] == salesforce.count(obj)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 0


def test_record_without_an_id_is_quarantined_under_a_stable_key(salesforce, sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    for _ in range(2):  # the same broken record, read twice, is held once
        salesforce.inject_fault("malformed", path_regex=r"/query")  # User: the Id goes missing
        with engine.begin() as conn:
            conn.execute(delete(extraction_watermarks))
        report = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=["User"])
        assert report.objects["User"].quarantined == 1
    with engine.connect() as conn:
        held = conn.execute(select(quarantine.c.record_id, quarantine.c.reason, quarantine.c.times_seen)).one()
    assert held.record_id.startswith("no-id:") and held.reason == "missing Id" and held.times_seen == 2
    assert warehouse_counts(engine)["User"] == 2


def test_duplicated_page_loads_every_record_once(salesforce, warehouse_url):
    engine = engine_for(warehouse_url)
    salesforce.inject_fault("duplicate_page", path_regex=r"/query", skip=1)
    report = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=["Task"], batch_size=BATCH)
    task_count = salesforce.count("Task")
    assert report.objects["Task"].pages == -(-task_count // BATCH) + 1  # one page read twice
    assert report.objects["Task"].rows == task_count
    assert warehouse_counts(engine)["Task"] == task_count


def test_an_object_the_user_cannot_see_is_a_query_error_naming_both_causes(salesforce, sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    # A query on an object the user may not read answers what an unknown object does: INVALID_TYPE.
    salesforce.inject_fault("insufficient_access", path_regex=r"/queryAll/?$", skip=1)  # the 2nd object
    with pytest.raises(SalesforceQueryError) as err:
        extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=["Account", "NPS_Response__c", "Task"])
    assert not isinstance(err.value, SalesforceRateLimited | SalesforcePermissionError)
    assert err.value.objects == ["NPS_Response__c"] and err.value.retryable is False
    message = str(err.value)
    assert "INVALID_TYPE" in message and "does not exist in this org" in message
    assert "no Read access to it" in message and "leave it out of `objects`" in message
    marks = watermarks(engine)  # the objects it may read were extracted
    assert marks["Account"] and marks["Task"] and marks["NPS_Response__c"] is None


def test_insufficient_access_is_a_permission_error_naming_the_object(salesforce, sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    # Account's second page (query_more) answers 403 INSUFFICIENT_ACCESS.
    salesforce.inject_fault("insufficient_access", path_regex=r"/queryAll/01g")
    with pytest.raises(SalesforcePermissionError) as err:
        extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=["Account", "Task"], batch_size=BATCH)
    assert not isinstance(err.value, SalesforceQueryError)
    assert err.value.objects == ["Account"] and err.value.retryable is False
    assert "INSUFFICIENT_ACCESS" in str(err.value) and "grant Read access on the Account object" in str(err.value)
    marks = watermarks(engine)
    assert marks["Task"] and marks["Account"] is None


# ----------------------------------------------------------------------------- the REST API itself
def test_requests_without_a_valid_session_get_invalid_session_id(salesforce):
    resp = requests.get(f"{salesforce.base_url}/services/data/v59.0/limits/",
                        headers={"Authorization": "Bearer forged"}, verify=salesforce.ca_cert)
    assert resp.status_code == 401
    assert resp.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    bad_login = requests.post(salesforce.token_url, data={"grant_type": "client_credentials", "client_id": "x"},
                              verify=salesforce.ca_cert)
    assert bad_login.status_code == 400 and bad_login.json()["error"] == "invalid_client_id"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials", "client_id": "not-our-app", "client_secret": SANDBOX_SF_CLIENT_SECRET},
         {"error": "invalid_client_id", "error_description": "client identifier invalid"}),
        ({"grant_type": "client_credentials", "client_id": SANDBOX_SF_CLIENT_ID, "client_secret": "wrong"},
         {"error": "invalid_client", "error_description": "invalid client credentials"}),
        ({"grant_type": "password", "client_id": SANDBOX_SF_CLIENT_ID, "client_secret": SANDBOX_SF_CLIENT_SECRET,
          "username": SANDBOX_SF_USERNAME, "password": "wrong"},
         {"error": "invalid_grant", "error_description": "authentication failure"}),
        ({"grant_type": "password", "client_id": SANDBOX_SF_CLIENT_ID, "client_secret": SANDBOX_SF_CLIENT_SECRET,
          "username": "someone@else.example", "password": SANDBOX_SF_PASSWORD},
         {"error": "invalid_grant", "error_description": "authentication failure"}),
    ],
)
def test_wrong_credentials_get_salesforces_oauth_errors(salesforce, form, error):
    """Salesforce's token endpoint answers HTTP 400 with an OAuth error body, and no token."""
    resp = requests.post(salesforce.token_url, data=form, verify=salesforce.ca_cert)
    assert resp.status_code == 400
    assert resp.json() == error


def test_token_response_has_the_oauth_shape(salesforce):
    body = requests.post(salesforce.token_url, verify=salesforce.ca_cert, data={
        "grant_type": "password", "client_id": SANDBOX_SF_CLIENT_ID, "client_secret": SANDBOX_SF_CLIENT_SECRET,
        "username": SANDBOX_SF_USERNAME, "password": SANDBOX_SF_PASSWORD}).json()
    assert set(body) >= {"access_token", "instance_url", "token_type", "issued_at", "id"}
    assert body["token_type"] == "Bearer" and body["instance_url"] == salesforce.base_url


def test_query_pages_serialize_like_salesforce(salesforce):
    sf = salesforce.login()
    first = sf.query("SELECT Id, Name, Customer_Since__c, SystemModstamp FROM Account ORDER BY Id LIMIT 5",
                     headers={"Sforce-Query-Options": "batchSize=2"})
    assert first["totalSize"] == 5 and first["done"] is False
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    record = first["records"][0]
    assert record["attributes"] == {"type": "Account",
                                    "url": f"/services/data/v59.0/sobjects/Account/{sf_id('001', 0)}"}
    assert record["Customer_Since__c"] == "2024-01-01"
    assert record["SystemModstamp"].endswith(".000+0000") and "T" in record["SystemModstamp"]
    records = list(sf.query_all_iter("SELECT Id FROM Account ORDER BY Id LIMIT 5",
                                     headers={"Sforce-Query-Options": "batchSize=2"}))
    assert [r["Id"] for r in records] == [sf_id("001", i) for i in range(5)]


def test_query_hides_deleted_records_and_query_all_includes_them(salesforce):
    sf = salesforce.login()
    assert sf.query("SELECT COUNT() FROM Task")["totalSize"] == 43
    assert sf.query("SELECT COUNT() FROM Task", include_deleted=True)["totalSize"] == 45
    assert sf.query("SELECT Id FROM Task WHERE IsDeleted = true", include_deleted=True)["totalSize"] == 2


def test_malformed_soql_answers_400_malformed_query(salesforce):
    sf = salesforce.login()
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELEC Id FROM Account")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Nope__c FROM Account")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM Lead")
    assert err.value.content == [{
        "message": "\nSELECT Id FROM Lead\n               ^\nERROR at Row:1:Column:16\nsObject type 'Lead' is not "
                   "supported. If you are attempting to use a custom object, be sure to append the '__c' after the "
                   "entity name. Please reference your WSDL or the describe call for the appropriate names.",
        "errorCode": "INVALID_TYPE",
    }]


def test_a_field_that_is_not_on_the_object_answers_salesforces_invalid_field(salesforce):
    """The old extraction's ``UserRoleName``: not a field of User, so Salesforce refuses the query."""
    sf = salesforce.login()
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id, UserRoleName FROM User")
    assert err.value.status == 400
    assert err.value.content == [{
        "message": "\nSELECT Id, UserRoleName FROM User\n           ^\nERROR at Row:1:Column:12\nNo such column "
                   "'UserRoleName' on entity 'User'. If you are attempting to use a custom field, be sure to "
                   "append the '__c' after the custom field name. Please reference your WSDL or the describe "
                   "call for the appropriate names.",
        "errorCode": "INVALID_FIELD",
    }]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM User WHERE Role.Name = 'x'")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "Didn't understand relationship 'Role' in field path" in err.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT UserRole.Nmae FROM User")
    assert "No such column 'Nmae' on entity 'UserRole'" in err.value.content[0]["message"]


def test_parent_relationship_fields_come_back_nested_or_null(salesforce):
    sf = salesforce.login()
    records = sf.query("SELECT Id, UserRole.Name, Name FROM User WHERE UserRole.Name != 'VP Customer Success' "
                       "ORDER BY UserRole.Name ASC NULLS LAST")["records"]
    assert [r["Id"] for r in records] == [sf_id("005", 0), sf_id("005", 2)]
    role_id = next(iter(ROLES))
    assert records[0] == {
        "attributes": {"type": "User", "url": f"/services/data/v59.0/sobjects/User/{sf_id('005', 0)}"},
        "Id": sf_id("005", 0),
        "UserRole": {"attributes": {"type": "UserRole", "url": f"/services/data/v59.0/sobjects/UserRole/{role_id}"},
                     "Name": "Customer Success Manager"},
        "Name": "CSM 0",
    }
    assert records[1]["UserRole"] is None  # no role: the parent is null, not an empty record
    two_levels = sf.query(f"SELECT Owner.UserRole.Name FROM Account WHERE Id = '{sf_id('001', 1)}'")["records"]
    assert two_levels[0]["Owner"]["UserRole"]["Name"] == "VP Customer Success"


def test_outreach_responded_is_a_yes_no_picklist_blank_for_other_tasks(salesforce):
    """A Checkbox is never blank in Salesforce, so "not an outreach e-mail" needs a picklist."""
    sf = salesforce.login()
    answered = sf.query("SELECT Id, Outreach_Responded__c FROM Task WHERE Outreach_Responded__c = 'Yes'")
    assert answered["totalSize"] == 14 and {r["Outreach_Responded__c"] for r in answered["records"]} == {"Yes"}
    assert sf.Task.get(sf_id("00T", 1))["Outreach_Responded__c"] is None
    assert sf.Task.update(sf_id("00T", 1), {"Outreach_Responded__c": "No"}) == 204
    assert sf.Task.get(sf_id("00T", 1))["Outreach_Responded__c"] == "No"
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"):
        sf.Task.update(sf_id("00T", 1), {"Outreach_Responded__c": True})
    mapping = OBJECT_MAPPINGS["Task"]
    base = {"Id": sf_id("00T", 1), "SystemModstamp": "2026-01-01T00:00:00.000+0000", "IsDeleted": False}
    assert record_to_row(mapping, base | {"Outreach_Responded__c": "No"}, NOW)["outreach_responded"] is False
    assert record_to_row(mapping, base | {"Outreach_Responded__c": None}, NOW)["outreach_responded"] is None
    with pytest.raises(RecordInvalid, match="Outreach_Responded__c: expected Yes, No or blank"):
        record_to_row(mapping, base | {"Outreach_Responded__c": True}, NOW)  # an org that made it a Checkbox


def test_record_to_row_reads_the_role_from_the_nested_parent_record():
    mapping = OBJECT_MAPPINGS["User"]
    base = {"Id": sf_id("005", 1), "Name": "Vera", "IsActive": True, "SystemModstamp": "2026-01-01T00:00:00.000+0000"}
    role = {"attributes": {"type": "UserRole", "url": "/services/data/v59.0/sobjects/UserRole/00E5g0000000002AAA"},
            "Name": "VP Customer Success"}
    assert record_to_row(mapping, base | {"UserRole": role}, NOW)["role"] == "VP Customer Success"
    assert record_to_row(mapping, base | {"UserRole": None}, NOW)["role"] is None
    with pytest.raises(RecordInvalid, match="UserRole: expected a related record or null"):
        record_to_row(mapping, base | {"UserRole": "VP Customer Success"}, NOW)


def test_user_role_name_is_extracted_through_the_relationship(salesforce, warehouse_url):
    engine = engine_for(warehouse_url)
    report = extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=["User"])
    assert report.objects["User"].rows == 3 and report.objects["User"].quarantined == 0
    user = OBJECT_MAPPINGS["User"].table
    with engine.connect() as conn:
        roles = dict(conn.execute(select(user.c.id, user.c.role)).all())
    assert roles == {sf_id("005", 0): "Customer Success Manager", sf_id("005", 1): "VP Customer Success",
                     sf_id("005", 2): None}


def test_a_field_the_org_does_not_have_is_a_query_error_naming_field_object_and_both_causes(
    salesforce, sqlite_warehouse_url, monkeypatch
):
    """What the old User mapping did on a real org: select UserRoleName. Not a permission problem."""
    engine = engine_for(sqlite_warehouse_url)
    user = OBJECT_MAPPINGS["User"]
    old = tuple(f if f.column != "role" else replace(f, sf_field="UserRoleName") for f in user.fields)
    monkeypatch.setitem(OBJECT_MAPPINGS, "User", replace(user, fields=old))
    with pytest.raises(SalesforceQueryError) as err:
        extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=["User", "Account"])
    assert not isinstance(err.value, SalesforcePermissionError)
    assert err.value.objects == ["User"] and err.value.fields == ["User.UserRoleName"]
    assert err.value.retryable is False
    message = str(err.value)
    assert "INVALID_FIELD" in message and "User.UserRoleName" in message
    assert "does not exist in this org" in message and "field-level access" in message
    assert "Set Field-Level Security" in message
    assert "ERROR at Row" not in message  # the explanation, not Salesforce's caret drawing
    marks = watermarks(engine)
    assert marks["Account"] and marks["User"] is None


def test_a_missing_custom_field_points_at_the_readme_list(salesforce, sqlite_warehouse_url, monkeypatch):
    engine = engine_for(sqlite_warehouse_url)
    monkeypatch.setattr(sf_account.c.Plan__c, "name", "Plan_Tier__c")  # an org without Account.Plan__c
    with pytest.raises(SalesforceQueryError) as err:
        extract_salesforce(salesforce.login, engine, SEEDED_UNTIL, objects=["Account"])
    assert err.value.fields == ["Account.Plan__c"]
    assert "create the custom field Account.Plan__c as listed in the README" in str(err.value)


def test_describe_global_describe_and_limits(salesforce):
    sf = salesforce.login()
    names = {o["name"] for o in sf.describe()["sobjects"]}
    # what the extraction reads, the role hierarchy, and the Campaign objects the campaign target writes
    assert names == set(STORE_TABLES) | {"UserRole", "Campaign", "CampaignMember", "CampaignMemberStatus"}
    fields = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert fields["Health_Action_Key__c"]["externalId"] is True
    assert fields["SystemModstamp"]["type"] == "datetime" and fields["SystemModstamp"]["updateable"] is False
    assert fields["ActivityDate"]["type"] == "date" and fields["Subject"]["updateable"] is True
    daily = sf.limits()["DailyApiRequests"]
    assert daily["Max"] > daily["Remaining"] > 0


def test_create_get_and_update_stamp_system_modstamp_and_are_recorded(salesforce):
    sf = salesforce.login()
    created = sf.Account.create({"Name": "Newco", "Plan__c": "growth", "Seats__c": 5})
    assert created["success"] is True and created["errors"] == []
    new_id = created["id"]
    assert new_id.startswith("001") and is_valid_salesforce_id(new_id) and case_safe_id(new_id[:15]) == new_id
    record = sf.Account.get(new_id)
    assert record["Name"] == "Newco" and record["IsDeleted"] is False
    assert sf.Account.update(new_id, {"Seats__c": 6}) == 204
    updated = sf.Account.get(new_id)
    assert updated["Seats__c"] == 6 and updated["SystemModstamp"] >= record["SystemModstamp"]
    with salesforce.store.connect() as conn:
        writes = conn.execute(select(sandbox_writes.c.object, sandbox_writes.c.record_id, sandbox_writes.c.created)
                              .where(sandbox_writes.c.system == "salesforce")).all()
    assert [tuple(w) for w in writes] == [("Account", new_id, True), ("Account", new_id, False)]


def test_upsert_by_health_action_key_creates_once_then_updates(salesforce):
    sf = salesforce.login()
    key = "001:checkin:2026-11-01"
    body = {"Subject": "Check in: usage dropped 40%", "WhatId": sf_id("001", 1), "Status": "Not Started",
            "ActivityDate": "2026-11-03"}
    first = sf.Task.upsert(f"Health_Action_Key__c/{key}", body, raw_response=True)
    assert first.status_code == 201 and first.json()["created"] is True
    again = sf.Task.upsert(f"Health_Action_Key__c/{key}", body | {"Status": "In Progress"}, raw_response=True)
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "success": True, "errors": [], "created": False}
    with salesforce.store.connect() as conn:
        tasks = conn.execute(select(sf_task.c.Id, sf_task.c.Status).where(sf_task.c.Health_Action_Key__c == key)).all()
        writes = conn.execute(select(sandbox_writes.c.created, sandbox_writes.c.external_id)
                              .where(sandbox_writes.c.object == "Task")).all()
    assert [tuple(t) for t in tasks] == [(first.json()["id"], "In Progress")]
    assert [tuple(w) for w in writes] == [(True, key), (False, key)]
    assert sf.Task.get_by_custom_id("Health_Action_Key__c", key)["Id"] == first.json()["id"]
    with pytest.raises(SalesforceMalformedRequest, match="not an External ID"):
        sf.Task.upsert("Subject/whatever", {"Status": "Completed"})


def test_composite_collections_create_update_and_upsert_per_record(salesforce):
    sf = salesforce.login()
    created = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Account"}, "Name": "Alpha"},
        {"attributes": {"type": "Account"}, "Seats__c": 3},  # no Name: refused, alone
    ]})
    assert created[0]["success"] is True and len(created[0]["id"]) == 18
    assert created[1]["success"] is False and created[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"

    writeback = [{"attributes": {"type": "Account"}, "Id": sf_id("001", i), "Health_Score__c": 40.0 + i,
                  "Health_Zone__c": "At Risk", "Health_Score_Date__c": "2026-11-01"} for i in range(3)]
    updated = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": writeback})
    assert [r["success"] for r in updated] == [True, True, True]
    with salesforce.store.connect() as conn:
        scores = conn.execute(select(sf_account.c.Health_Score__c, sf_account.c.Health_Score_Date__c).where(
            sf_account.c.Id.in_([r["Id"] for r in writeback])).order_by(sf_account.c.Id)).all()
    assert [tuple(s) for s in scores] == [(40.0 + i, date(2026, 11, 1)) for i in range(3)]
    assert sf.Account.get(sf_id("001", 0))["Health_Score_Date__c"] == "2026-11-01"

    upserted = sf.restful("composite/sobjects/Task/Health_Action_Key__c", method="PATCH", json={
        "allOrNone": False, "records": [
            {"attributes": {"type": "Task"}, "Health_Action_Key__c": "k1", "Subject": "one"},
            {"attributes": {"type": "Task"}, "Health_Action_Key__c": "k2", "Subject": "two"},
        ]})
    assert [r["created"] for r in upserted] == [True, True]
    replay = sf.restful("composite/sobjects/Task/Health_Action_Key__c", method="PATCH", json={
        "allOrNone": False, "records": [{"attributes": {"type": "Task"}, "Health_Action_Key__c": "k1",
                                         "Subject": "one again"}]})
    assert replay[0] == {"id": upserted[0]["id"], "success": True, "errors": [], "created": False}


def test_all_or_none_collection_with_one_bad_record_writes_nothing(salesforce):
    sf = salesforce.login()
    result = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Account"}, "Id": sf_id("001", 0), "Health_Score__c": 10.0},
        {"attributes": {"type": "Account"}, "Id": sf_id("001", 1), "Health_Score__c": "high"},
    ]})
    assert [r["success"] for r in result] == [False, False]
    assert result[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert result[1]["errors"][0]["statusCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    with salesforce.store.connect() as conn:
        assert conn.execute(select(sf_account.c.Health_Score__c).where(sf_account.c.Id == sf_id("001", 0))
                            ).scalar_one() is None
        assert conn.execute(select(func.count()).select_from(sandbox_writes)).scalar_one() == 0


def test_collections_take_at_most_200_records(salesforce):
    sf = salesforce.login()
    records = [{"attributes": {"type": "Account"}, "Name": f"n{i}"} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest, match="maximum of 200"):
        sf.restful("composite/sobjects", method="POST", json={"records": records})


def test_expired_session_fault_revokes_the_token(salesforce):
    sf = salesforce.login()
    salesforce.inject_fault("expired_session", path_regex=r"/limits")
    with pytest.raises(SalesforceExpiredSession):
        sf.limits()
    with pytest.raises(SalesforceExpiredSession):  # the token stays dead, as a real expiry does
        sf.query("SELECT Id FROM User")
    assert salesforce.login().query("SELECT COUNT() FROM User")["totalSize"] == 3


# ----------------------------------------------------------------------------- the Airflow hook
@pytest.fixture()
def salesforce_connection(salesforce, monkeypatch):
    """An Airflow connection to the loopback Salesforce, defined the way deployments do: env var."""
    from airflow.models import Connection

    def define(conn_id: str, **fields) -> str:
        extra = {"token_url": salesforce.token_url, "consumer_key": SANDBOX_SF_CLIENT_ID,
                 "consumer_secret": SANDBOX_SF_CLIENT_SECRET, "ca_cert": salesforce.ca_cert, "version": "59.0",
                 "timeout": 5} | fields.pop("extra", {})
        conn = Connection(conn_id=conn_id, conn_type="salesforce", extra=json.dumps(extra), **fields)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn.as_json())
        return conn_id

    return define


def test_hook_logs_in_through_the_token_endpoint_and_queries(salesforce, salesforce_connection, caplog):
    from customer_health.sources.salesforce import HealthSalesforceHook

    conn_id = salesforce_connection("health_salesforce_test")
    caplog.set_level("INFO")
    salesforce.inject_fault("server_error", path_regex=r"/oauth2/token")  # a login is worth a retry
    hook = HealthSalesforceHook(conn_id)
    result = hook.make_query("SELECT Id FROM Account")  # the provider's own helper, on our login
    assert result["totalSize"] == 19
    assert hook.get_available_fields("Task")[:2] == ["Id", "AccountId"]
    assert SANDBOX_SF_CLIENT_SECRET not in caplog.text
    assert salesforce.faults_left() == 0


def test_hook_password_grant_and_a_rejected_login_says_what_to_check(salesforce, salesforce_connection):
    from customer_health.sources.salesforce import HealthSalesforceHook

    ok = salesforce_connection("sf_password", login=SANDBOX_SF_USERNAME, password=SANDBOX_SF_PASSWORD)
    assert HealthSalesforceHook(ok).get_conn().query("SELECT COUNT() FROM User")["totalSize"] == 3
    bad = salesforce_connection("sf_no_secret", extra={"consumer_secret": ""})
    with pytest.raises(SalesforceAuthenticationError, match="sf_no_secret.*invalid_client.*extra consumer_secret"):
        HealthSalesforceHook(bad).get_conn()
    wrong_password = salesforce_connection("sf_wrong_password", login=SANDBOX_SF_USERNAME, password="nope")
    with pytest.raises(SalesforceAuthenticationError, match="invalid_grant authentication failure.*password"):
        HealthSalesforceHook(wrong_password).get_conn()


def test_a_wrong_consumer_secret_fails_fast_with_the_authentication_error(
    salesforce, salesforce_connection, sqlite_warehouse_url, monkeypatch
):
    """Wrong credentials are not transient: one token request, no retries, an error that says so."""
    from customer_health.sources.salesforce import run_salesforce_extraction

    sent: list[str] = []
    real_send = requests.adapters.HTTPAdapter.send

    def counting_send(adapter, request, *args, **kwargs):
        sent.append(request.url)
        return real_send(adapter, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", counting_send)
    conn_id = salesforce_connection("sf_wrong_secret", extra={"consumer_secret": "not-the-secret"})
    engine = engine_for(sqlite_warehouse_url)
    with pytest.raises(SalesforceAuthenticationError) as err:
        run_salesforce_extraction(conn_id, engine, SEEDED_UNTIL)
    assert sent == [salesforce.token_url]  # asked once; nothing else was tried
    assert err.value.retryable is False
    message = str(err.value)
    assert "HTTP 400 invalid_client invalid client credentials" in message
    assert "consumer_secret" in message and "not-the-secret" not in message
    assert watermarks(engine) == dict.fromkeys(OBJECT_MAPPINGS)


def test_errors_that_retrying_cannot_fix_say_so():
    """The DAG fails fast on ``retryable = False``: credentials, queries and permissions need a person."""
    assert SalesforceAuthenticationError.retryable is False
    assert SalesforceQueryError.retryable is False
    assert SalesforcePermissionError.retryable is False
    assert getattr(SalesforceUnavailable, "retryable", True) is not False


def test_run_salesforce_extraction_renews_an_expired_session_and_returns_counts(
    salesforce, salesforce_connection, sqlite_warehouse_url
):
    from customer_health.sources.salesforce import run_salesforce_extraction

    conn_id = salesforce_connection("health_salesforce_test")
    salesforce.inject_fault("expired_session", path_regex=r"/query", skip=2)
    engine = engine_for(sqlite_warehouse_url)
    counts = run_salesforce_extraction(conn_id, engine, SEEDED_UNTIL)
    assert counts["source"] == "salesforce"
    assert counts["rows"] == sum(store_counts(salesforce).values())
    assert counts["objects"]["Task"]["rows"] == 45
    assert json.loads(json.dumps(counts)) == counts  # XCom-safe
    assert salesforce.faults_left() == 0
    assert warehouse_counts(engine) == store_counts(salesforce)



# ----------------------------------------------------------------------------- the generated company
def test_generated_company_extracts_completely_and_then_incrementally(sandbox, sqlite_warehouse_url):
    """The synthetic company's Salesforce, as the DAG reads it: a first run, then the next days."""
    endpoints = sandbox.endpoints
    token_url = f"{endpoints['salesforce']}/services/oauth2/token"

    def login() -> Salesforce:
        http = salesforce_http_session(endpoints["ca_cert"], timeout=10, token_url=token_url)
        token = http.post(token_url, data={"grant_type": "client_credentials", "client_id": SANDBOX_SF_CLIENT_ID,
                                           "client_secret": SANDBOX_SF_CLIENT_SECRET}).json()
        return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=http)

    engine = engine_for(sqlite_warehouse_url)
    midpoint, end = datetime(2026, 6, 1), datetime(2026, 11, 2)
    first = extract_salesforce(login, engine, midpoint)
    second = extract_salesforce(login, engine, end)

    with sandbox.store.connect() as conn:
        expected = {name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for name, t in STORE_TABLES.items()}
        changed_later = {name: conn.execute(select(func.count()).select_from(t)
                                            .where(t.c.SystemModstamp > midpoint)).scalar_one()
                         for name, t in STORE_TABLES.items()}
    assert warehouse_counts(engine) == expected
    assert {n: o.rows for n, o in second.objects.items()} == changed_later
    assert first.rows + second.rows == sum(expected.values())
    assert first.quarantined == second.quarantined == 0  # the generator's records all map cleanly
