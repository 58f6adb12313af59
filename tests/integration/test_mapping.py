"""The source mapping: the names of a real org and a real product database, instead of hard-coded ones.

The shipped ``config/sources.yaml`` is today's names, generated from the two lists of what the
product needs; a file of the company's own (``CUSTOMER_HEALTH_SOURCES``) changes only the keys
it lists, is validated whole with errors that name the file, the key and the fix, and every
reader and writer of Salesforce and the product database takes its names from it: checked here
against the sandbox with an org whose fields and object are called otherwise.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select, text

from customer_health.actions.config import load_action_rules
from customer_health.actions.writeback import account_health_fields
from customer_health.sources import salesforce_fields
from customer_health.sources.mapping import (
    DEFAULT_PATH,
    SOURCES_FILE_ENV,
    SourceMappingError,
    active_mapping,
    default_mapping,
    default_mapping_yaml,
    load_mapping,
)
from customer_health.sources.salesforce import salesforce_http_session
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import raw_sf_account, raw_sf_nps_response
from health_sandbox.connections import SANDBOX_SF_CLIENT_ID, SANDBOX_SF_CLIENT_SECRET
from health_sandbox.salesforce_org import configure_org


def write(tmp_path: Path, text_: str, name: str = "sources.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text_)
    return path


# ----------------------------------------------------------------------------- the file
def test_the_shipped_file_is_every_key_with_todays_names_generated_from_the_lists():
    assert DEFAULT_PATH.read_text() == default_mapping_yaml(), (
        "config/sources.yaml differs from mapping.default_mapping_yaml(); regenerate it")
    shipped = load_mapping()
    assert shipped.salesforce_fields == {f.mapping_key: f.name for f in salesforce_fields.CUSTOM_FIELDS}
    assert shipped.salesforce_fields["Account.arr"] == "ARR__c"
    assert shipped.salesforce_objects == {"NPS_Response": "NPS_Response__c"}
    assert shipped.product_tables["events"] == "events"
    assert shipped.event_names == {"login": "login", "feature_used": "feature_used"}
    assert shipped.changed_from_defaults() == {}


def test_an_override_changes_only_the_keys_it_lists(tmp_path, monkeypatch):
    override = write(tmp_path, """
version: 1
salesforce:
  fields:
    Account.arr: AnnualRevenue
    Account.health_score: CS_Health__c
product_db:
  tables:
    events: analytics.app_events
  event_names:
    login: session_start
""")
    monkeypatch.setenv(SOURCES_FILE_ENV, str(override))
    mapping = active_mapping()
    assert mapping.changed_from_defaults() == {
        "salesforce.fields.Account.arr": "AnnualRevenue",
        "salesforce.fields.Account.health_score": "CS_Health__c",
        "product_db.tables.events": "analytics.app_events",
        "product_db.event_names.login": "session_start",
    }
    assert salesforce_fields.api_name("Account.arr") == "AnnualRevenue"
    assert salesforce_fields.api_name("Account.plan") == "Plan__c"
    assert str(override) in mapping.source
    monkeypatch.delenv(SOURCES_FILE_ENV)
    assert salesforce_fields.api_name("Account.arr") == "ARR__c"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("version: 1\nsalesforce:\n  fields:\n    Account.ar: X__c\n",
         "salesforce.fields.Account.ar is not something the product reads or writes; did you mean 'Account.arr'?"),
        ("version: 1\nsalesforce:\n  fields:\n    Account.arr: 'ARR c'\n",
         "salesforce.fields.Account.arr is 'ARR c', which is not a field API name"),
        ("version: 1\nsalesforce:\n  fields:\n    Account.plan: null\n",
         "salesforce.fields.Account.plan cannot be null: it is required"),
        ("version: 1\nsalesforce:\n  fields:\n    Account.seats: ARR__c\n",
         "salesforce.fields.Account.arr and Account.seats are both ARR__c; each needs a field of its own"),
        ("version: 1\nsalesforce:\n  fields:\n    Account.arr: A__c\n    Account.arr: B__c\n",
         "the key 'Account.arr' is given twice"),
        ("version: 2\n", "version is 2; this product reads version 1"),
        ("version: 1\nsalesforce:\n  objects:\n    NPS_Response: NPS\n",
         "salesforce.objects.NPS_Response is 'NPS', which is not a custom object's API name"),
        ("version: 1\nproduct_db:\n  tables:\n    events: 'events; drop table x'\n",
         "product_db.tables.events is 'events; drop table x', which is not a table name"),
        ("version: 1\nproduct_db:\n  columns:\n    events.occurred_at: null\n",
         "product_db.columns.events.occurred_at cannot be null"),
        ("version: 1\nproduct_db:\n  event_names:\n    feature_used: null\n",
         "product_db.event_names.feature_used cannot be null while tables.features is mapped"),
        ("version: 1\nzendesk: {}\n", "unknown top-level key(s) ['zendesk']"),
    ],
)
def test_a_wrong_mapping_fails_on_load_naming_the_file_the_key_and_the_fix(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(SourceMappingError) as err:
        load_mapping(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_a_missing_override_file_is_an_error_naming_the_variable(tmp_path):
    with pytest.raises(SourceMappingError, match=f"{SOURCES_FILE_ENV} names .*not a file"):
        load_mapping(tmp_path / "nowhere.yaml")


def test_optional_items_may_be_null_and_are_then_not_read(tmp_path):
    mapping = load_mapping(write(tmp_path, """
version: 1
salesforce:
  objects:
    NPS_Response: null
  fields:
    NPS_Response.score: null
product_db:
  tables:
    features: null
  columns:
    events.feature_key: null
    accounts.plan: null
  event_names:
    feature_used: null
"""))
    assert salesforce_fields.api_object("NPS_Response__c", mapping) is None
    assert not mapping.has_features
    assert mapping.product_column("accounts.plan") is None


# ----------------------------------------------------------------------------- what people receive
def test_the_crm_writeback_writes_the_fields_the_mapping_names(tmp_path, monkeypatch):
    monkeypatch.setenv(SOURCES_FILE_ENV, str(write(tmp_path, """
version: 1
salesforce:
  fields:
    Account.health_score: CS_Health_Score__c
    Account.health_drivers: CS_Health_Why__c
""")))
    row = SimpleNamespace(score=41.0, zone="At Risk", slope_90=-4.0, explanation="Usage fell.", drivers=None)
    fields = account_health_fields(row, load_action_rules())
    assert set(fields) == {"CS_Health_Score__c", "Health_Zone__c", "Health_Trend__c", "CS_Health_Why__c"}
    assert fields["CS_Health_Score__c"] == 41.0


# ----------------------------------------------------------------------------- against the sandbox
RENAMED = """
version: 1
salesforce:
  objects:
    NPS_Response: Survey_Answer__c
  fields:
    Account.arr: Annual_Recurring_Revenue__c
    Account.health_score: CS_Health_Score__c
    NPS_Response.score: Rating__c
"""


def _login(sandbox):
    token_url = f"{sandbox.endpoints['salesforce']}/services/oauth2/token"
    http = salesforce_http_session(sandbox.endpoints["ca_cert"], timeout=10, token_url=token_url)
    token = http.post(token_url, data={"grant_type": "client_credentials", "client_id": SANDBOX_SF_CLIENT_ID,
                                       "client_secret": SANDBOX_SF_CLIENT_SECRET}).json()
    from simple_salesforce import Salesforce

    return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=http,
                      version="59.0")


@pytest.fixture()
def renamed_org(fresh_sandbox):
    """The sandbox org with ARR, the health score, the NPS object and its score under other names."""
    configure_org(
        fresh_sandbox.store,
        renamed_fields={"Account.ARR__c": "Annual_Recurring_Revenue__c",
                        "Account.Health_Score__c": "CS_Health_Score__c", "NPS_Response__c.Score__c": "Rating__c"},
        renamed_objects={"NPS_Response__c": "Survey_Answer__c"},
    )
    return fresh_sandbox


def test_an_org_with_other_names_is_extracted_and_written_back_through_the_mapping(
    renamed_org, sqlite_warehouse_url, tmp_path, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException

    from customer_health import pipeline, settings
    from customer_health.warehouse.schema import health_scores
    from health_sandbox.connections import as_environment, sandbox_connections

    for key, value in as_environment(sandbox_connections(renamed_org.endpoints, sqlite_warehouse_url)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, sqlite_warehouse_url)
    engine_for.cache_clear()
    engine = engine_for(sqlite_warehouse_url)
    until = datetime(2026, 11, 2)
    with pytest.raises(AirflowFailException) as err:  # the defaults do not fit this org: no retry, the fix
        pipeline.extract_salesforce(until)
    assert "No such column 'ARR__c' on entity 'Account'" in str(err.value)
    assert "map it: `salesforce.fields.Account.arr: <that name>`" in str(err.value)

    monkeypatch.setenv(SOURCES_FILE_ENV, str(write(tmp_path, RENAMED)))
    report = pipeline.extract_salesforce(until)
    assert report["objects"]["NPS_Response__c"]["rows"] > 0  # the product's name; the org's is Survey_Answer__c
    with renamed_org.store.connect() as conn:
        stored = dict(conn.execute(text('SELECT "Id", "ARR__c" FROM sf_account WHERE "IsDeleted" = 0')).all())
        scores = dict(conn.execute(text('SELECT "Id", "Score__c" FROM sf_nps_response')).all())
    with engine.connect() as conn:
        arr = dict(conn.execute(select(raw_sf_account.c.id, raw_sf_account.c.arr)
                                .where(raw_sf_account.c.is_deleted.is_(False))).all())
        nps = dict(conn.execute(select(raw_sf_nps_response.c.id, raw_sf_nps_response.c.score)).all())
    assert arr == stored and any(v is not None for v in arr.values())
    assert nps == {k: int(v) for k, v in scores.items() if v is not None} | {k: None for k, v in scores.items()
                                                                             if v is None}

    # Scored by the real engine, written back to the org's own field for the health score.
    as_of = date(2026, 11, 1)
    pipeline.build_crosswalk()
    pipeline.compute_signals(as_of)
    pipeline.score(as_of)
    written = pipeline.crm_writeback(as_of)
    assert written["written"] > 0 and written["failed"] == 0
    with engine.connect() as conn:
        row = conn.execute(select(health_scores.c.account_key, health_scores.c.score, health_scores.c.zone)
                           .where(health_scores.c.as_of_date == as_of).limit(1)).one()
    record = _login(renamed_org).Account.get(row.account_key)
    assert record["CS_Health_Score__c"] == float(row.score) and "Health_Score__c" not in record
    assert record["Health_Zone__c"] == row.zone and record["Health_Score_Date__c"] == as_of.isoformat()


def test_the_default_mapping_is_what_the_sandbox_org_serves():
    mapping = default_mapping()
    assert salesforce_fields.api_name("Task.health_action_key", mapping) == "Health_Action_Key__c"
    assert salesforce_fields.api_object("NPS_Response__c", mapping) == "NPS_Response__c"
    assert salesforce_fields.api_object("Account", mapping) == "Account"


def test_the_readme_documents_every_product_database_key():
    from customer_health.sources.product_fields import readme_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Connecting your company", 1)[1].split("\n## ", 1)[0]
    assert readme_table() in section, (
        "README's product database table differs from product_fields.readme_table(); paste its output "
        "into \"Connecting your company\"")
