"""Incremental extraction loses nothing, whatever the interleaving of source writes and runs.

A property test against the loopback Salesforce, on a simulated clock: random sequences of

* source writes - a Contact created or changed, committed with a ``SystemModstamp`` up to five
  minutes before it becomes visible (a long transaction, a record changed while a run is in
  progress, a source clock a few seconds ahead of ours);
* runs - whose data interval may end in the past or in the future (the demo's "today", a manual
  trigger, a refresh), that may overlap another run (it reads, another run reads and commits,
  then it commits its watermark), or be killed after writing its rows but before its watermark.

After a final catch-up run, the warehouse holds exactly the source's final state, and no
watermark ever stood later than the moment its run started reading.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simple_salesforce import Salesforce
from sqlalchemy import func, insert, select, update

from customer_health.sources import salesforce as sf_source
from customer_health.sources.salesforce import case_safe_id, extract_salesforce, salesforce_http_session
from customer_health.sources.window import SAFETY_LAG
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import get_watermark
from customer_health.warehouse.migrate import upgrade_to_head
from customer_health.warehouse.schema import raw_sf_contact
from health_sandbox.connections import SANDBOX_SF_CLIENT_ID, SANDBOX_SF_CLIENT_SECRET
from health_sandbox.http import serve
from health_sandbox.salesforce_api import build_app
from health_sandbox.store import sf_account, sf_contact, store_engine
from health_sandbox.tls import ensure_certificate, server_context

pytestmark = pytest.mark.slow

ACCOUNT = case_safe_id("0015g0000000001")
CONTACTS = 6


class Org:
    """The loopback Salesforce over a store shared by every example (each starts later in time)."""

    def __init__(self, folder: Path) -> None:
        self.store = store_engine(folder / "company.db")
        cert, _ = ensure_certificate(folder)
        self.ca_cert = str(cert)
        self.server = serve(build_app(self.store, folder), tls=server_context(folder))
        with self.store.begin() as conn:
            conn.execute(insert(sf_account).values(Id=ACCOUNT, Name="Acme", SystemModstamp=datetime(2026, 1, 1),
                                                   CreatedDate=datetime(2026, 1, 1), IsDeleted=False))

    def login(self) -> Salesforce:
        token_url = f"{self.server.base_url}/services/oauth2/token"
        http = salesforce_http_session(self.ca_cert, timeout=5.0, retries=2, backoff=0.01, token_url=token_url)
        token = http.post(token_url, data={"grant_type": "client_credentials", "client_id": SANDBOX_SF_CLIENT_ID,
                                           "client_secret": SANDBOX_SF_CLIENT_SECRET}).json()
        return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=http,
                          version="59.0")

    def latest_stamp(self) -> datetime:
        with self.store.connect() as conn:
            return conn.execute(select(func.max(sf_contact.c.SystemModstamp))).scalar_one() or datetime(2026, 1, 1)

    def write(self, contact: int, stamp: datetime, value: str) -> None:
        """Create or change a Contact, committed with ``stamp`` as its SystemModstamp."""
        key = case_safe_id(f"0035g{contact:010d}")
        with self.store.begin() as conn:
            changed = conn.execute(
                update(sf_contact).where(sf_contact.c.Id == key).values(LastName=value, SystemModstamp=stamp)
            ).rowcount
            if not changed:
                conn.execute(insert(sf_contact).values(
                    Id=key, AccountId=ACCOUNT, FirstName="C", LastName=value, CreatedDate=stamp,
                    SystemModstamp=stamp, IsDeleted=False))

    def final_state(self) -> dict[str, str]:
        with self.store.connect() as conn:
            return {r.Id: r.LastName for r in conn.execute(select(sf_contact.c.Id, sf_contact.c.LastName))}


@pytest.fixture(scope="module")
def org() -> Iterator[Org]:
    with tempfile.TemporaryDirectory() as folder:
        o = Org(Path(folder))
        yield o
        o.server.stop()
        o.store.dispose()


@contextmanager
def watermark_held_back(held: list) -> Iterator[None]:
    """The run inside does everything but commit its watermark, which is kept in ``held``."""
    original = sf_source.advance_time_watermark

    def hold(conn, source, obj, watermark, moment, rows_added=0):
        held.append((source, obj, watermark, moment, rows_added))
        return watermark

    sf_source.advance_time_watermark = hold
    try:
        yield
    finally:
        sf_source.advance_time_watermark = original


# Seconds a write's stamp precedes its visibility; seconds a run's interval end lies ahead of its
# start (negative: a past interval); seconds between steps. Edges are drawn often.
delays = st.one_of(st.sampled_from([0, 3, 150, 299]), st.integers(0, 300))
ends = st.one_of(st.sampled_from([-3600, 0, 60, 86_400]), st.integers(-3600, 86_400))
gaps = st.one_of(st.sampled_from([0, 5, 60, 900]), st.integers(0, 900))
write_op = st.tuples(st.just("write"), st.integers(0, CONTACTS - 1), delays)
run_op = st.tuples(st.just("run"), ends, st.sampled_from(["plain", "overlapped", "killed"]))
ops = st.lists(st.tuples(st.one_of(write_op, run_op), gaps), min_size=1, max_size=12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_the_union_of_extracted_rows_is_the_source_and_no_watermark_passes_its_read(org, steps):
    warehouse = engine_for(f"sqlite:///{tempfile.mkdtemp()}/wh.db")
    upgrade_to_head(warehouse)
    clock = org.latest_stamp() + timedelta(days=1)
    value = 0

    def run(until: datetime) -> None:
        extract_salesforce(org.login, warehouse, until, ["Contact"], read_started=clock)
        with warehouse.connect() as conn:
            mark = get_watermark(conn, "salesforce", "Contact")
        assert mark is None or datetime.fromisoformat(mark.replace("Z", "")) <= clock - SAFETY_LAG

    for (kind, a, b), advance in steps:
        if kind == "write":  # visible now, stamped up to five minutes earlier
            value += 1
            org.write(a, clock - timedelta(seconds=b), f"v{value}")
        else:
            until = clock + timedelta(seconds=a)
            if b == "plain":
                run(until)
            elif b == "killed":  # rows written, the watermark never committed
                with watermark_held_back([]):
                    run(until)
            else:  # this run reads; another reads and commits; then this one commits its watermark
                held: list = []
                with watermark_held_back(held):
                    run(until)
                clock += timedelta(seconds=30)
                org.write(0, clock - timedelta(seconds=5), f"v{value}-during")
                run(until)
                with warehouse.begin() as conn:
                    for args in held:
                        sf_source.advance_time_watermark(conn, *args)
        clock += timedelta(seconds=advance)

    clock += timedelta(hours=1)
    run(clock)  # the catch-up run
    with warehouse.connect() as conn:
        extracted = {r.id: r.last_name for r in conn.execute(select(raw_sf_contact.c.id, raw_sf_contact.c.last_name))}
    assert extracted == org.final_state()
    warehouse.dispose()
