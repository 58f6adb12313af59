"""The sandbox's SOQL subset: what it parses, what it means, and what it rejects."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
)

from health_sandbox.soql import (
    BoolOp,
    Comparison,
    Not,
    OrderItem,
    SoqlError,
    evaluate,
    field_value,
    parse_datetime_literal,
    parse_soql,
    run_in_memory,
    to_sql,
)

ACCOUNTS = [
    {"Id": "001A", "Name": "Acme", "Seats__c": 12, "Plan__c": "growth", "ParentId": None,
     "SystemModstamp": datetime(2026, 1, 1, 9, 0), "IsDeleted": False},
    {"Id": "001B", "Name": "Beta Labs", "Seats__c": 40, "Plan__c": "enterprise", "ParentId": "001A",
     "SystemModstamp": datetime(2026, 1, 2, 9, 0), "IsDeleted": False},
    {"Id": "001C", "Name": "acme west", "Seats__c": None, "Plan__c": "starter", "ParentId": "001A",
     "SystemModstamp": datetime(2026, 1, 3, 9, 0), "IsDeleted": True},
    {"Id": "001D", "Name": "100% Dental", "Seats__c": 5, "Plan__c": None, "ParentId": None,
     "SystemModstamp": datetime(2026, 1, 3, 9, 0), "IsDeleted": False},
]


def ids(soql: str) -> list[str]:
    return [r["Id"] for r in run_in_memory(parse_soql(soql), ACCOUNTS)]


# ----------------------------------------------------------------------------- parsing
def test_parses_the_extraction_query_the_pipeline_sends():
    q = parse_soql(
        "SELECT Id, Name, SystemModstamp, IsDeleted FROM Account "
        "WHERE SystemModstamp > 2026-01-01T00:00:00Z AND SystemModstamp <= 2026-02-01T00:00:00.000+0000 "
        "ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert q.object_name == "Account"
    assert q.fields == ("Id", "Name", "SystemModstamp", "IsDeleted")
    assert q.where == BoolOp("AND", (
        Comparison("SystemModstamp", ">", datetime(2026, 1, 1)),
        Comparison("SystemModstamp", "<=", datetime(2026, 2, 1)),
    ))
    assert q.order_by == (OrderItem("SystemModstamp"), OrderItem("Id"))
    assert q.limit is None and not q.is_count


def test_keywords_are_case_insensitive_and_count_has_no_fields():
    q = parse_soql("select count() from Task where IsDeleted = false limit 10")
    assert q.is_count and q.fields == () and q.limit == 10
    assert q.where == Comparison("IsDeleted", "=", False)


def test_and_binds_tighter_than_or_and_parentheses_and_not_group():
    q = parse_soql("SELECT Id FROM Account WHERE Name = 'a' OR NOT (Seats__c > 3 AND Plan__c IN ('x', 'y'))")
    assert q.where == BoolOp("OR", (
        Comparison("Name", "=", "a"),
        Not(BoolOp("AND", (Comparison("Seats__c", ">", 3), Comparison("Plan__c", "IN", ("x", "y"))))),
    ))


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'it\\'s'", "it's"),
        ("42", 42),
        ("-1.5", -1.5),
        ("true", True),
        ("FALSE", False),
        ("null", None),
        ("2026-03-04", date(2026, 3, 4)),
        ("2026-03-04T10:00:00Z", datetime(2026, 3, 4, 10)),
        ("2026-03-04T10:00:00.250+0000", datetime(2026, 3, 4, 10, 0, 0, 250000)),
        ("2026-03-04T12:00:00+02:00", datetime(2026, 3, 4, 10)),
    ],
)
def test_literals_parse_to_python_values_with_datetimes_in_utc(literal, value):
    q = parse_soql(f"SELECT Id FROM Account WHERE Name = {literal}")
    assert q.where == Comparison("Name", "=", value)


def test_order_by_directions_and_null_placement():
    q = parse_soql("SELECT Id FROM Account ORDER BY Seats__c DESC, Name ASC NULLS LAST, Id")
    assert q.order_by == (OrderItem("Seats__c", True), OrderItem("Name", False, True), OrderItem("Id"))
    assert q.order_by[0].nulls_are_last and not q.order_by[2].nulls_are_last


@pytest.mark.parametrize(
    ("soql", "complaint"),
    [
        ("", "empty query"),
        ("SELEC Id FROM Account", "unexpected token: 'SELEC'"),
        ("SELECT Id FORM Account", "unexpected token: 'FORM'"),
        ("SELECT Id, FROM Account", "a field name"),
        ("SELECT Id FROM Account WHERE", "a field name"),
        ("SELECT Id FROM Account WHERE Name = ", "a literal"),
        ("SELECT Id FROM Account WHERE Name 'x'", "comparison operator"),
        ("SELECT Id FROM Account WHERE Name = 'unterminated", "unexpected character"),
        ("SELECT Id FROM Account WHERE Seats__c > null", "null can only be compared"),
        ("SELECT Id FROM Account LIMIT -1", "LIMIT must be a non-negative integer"),
        ("SELECT Id FROM Account LIMIT 5 extra", "expected end of query"),
        ("SELECT Owner..Name FROM Account", "unexpected token: 'Owner..Name'"),
        ("SELECT Owner. FROM Account", "unexpected token: 'Owner.'"),
        ("SELECT A.B.C.D.E.F.Name FROM Account", "at most 5 parent relationships"),
        ("SELECT Id FROM Account WHERE CreatedDate = TODAY", "a literal"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2026-13-01", "invalid date literal"),
    ],
)
def test_malformed_queries_are_rejected_saying_what_is_wrong(soql, complaint):
    with pytest.raises(SoqlError) as err:
        parse_soql(soql)
    assert complaint in str(err.value)
    assert err.value.error_code == "MALFORMED_QUERY"


def test_parent_relationship_fields_parse_everywhere_a_field_may_stand():
    q = parse_soql("SELECT Id, UserRole.Name, Owner.UserRole.Name FROM User "
                   "WHERE UserRole.Name != null ORDER BY UserRole.Name DESC")
    assert q.fields == ("Id", "UserRole.Name", "Owner.UserRole.Name")
    assert q.where == Comparison("UserRole.Name", "!=", None)
    assert q.order_by == (OrderItem("UserRole.Name", True),)
    assert q.referenced_fields() == ["Id", "UserRole.Name", "Owner.UserRole.Name"]


def test_errors_know_where_they_are_and_read_like_salesforce():
    soql = "SELECT Id, UserRoleName FROM User"
    assert parse_soql(soql).positions["UserRoleName"] == 11
    err = SoqlError("No such column 'UserRoleName' on entity 'User'.", "INVALID_FIELD", position=11)
    # Salesforce's shape: the query, a caret under the culprit, its row and column, then the words.
    assert err.error_message(soql) == (
        "\nSELECT Id, UserRoleName FROM User\n           ^\nERROR at Row:1:Column:12\n"
        "No such column 'UserRoleName' on entity 'User'."
    )
    with pytest.raises(SoqlError) as syntax:
        parse_soql("SELECT Id FORM Account")
    assert syntax.value.error_message("SELECT Id FORM Account").startswith(
        "\nSELECT Id FORM Account\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FORM'")


def test_relationship_fields_evaluate_against_nested_parent_records():
    users = [
        {"Id": "005A", "UserRole": {"attributes": {"type": "UserRole"}, "Name": "VP Customer Success"}},
        {"Id": "005B", "UserRole": None},
        {"Id": "005C", "UserRole": {"attributes": {"type": "UserRole"}, "Name": "Account Executive"}},
    ]
    assert field_value(users[0], "UserRole.Name") == "VP Customer Success"
    assert field_value(users[1], "UserRole.Name") is None
    rows = run_in_memory(parse_soql("SELECT Id FROM User WHERE UserRole.Name LIKE '%success%'"), users)
    assert [r["Id"] for r in rows] == ["005A"]
    rows = run_in_memory(parse_soql("SELECT Id FROM User ORDER BY UserRole.Name ASC"), users)
    assert [r["Id"] for r in rows] == ["005B", "005C", "005A"]  # nulls first, as in SOQL
    assert [r["Id"] for r in run_in_memory(parse_soql("SELECT Id FROM User WHERE UserRole.Name = null"), users)] == [
        "005B"]


def test_datetime_literal_without_zone_is_rejected():
    with pytest.raises(SoqlError, match="time zone|invalid datetime"):
        parse_datetime_literal("2026-01-01T00:00:00")


# ----------------------------------------------------------------------------- meaning
def test_comparisons_filter_records():
    assert ids("SELECT Id FROM Account WHERE Seats__c >= 12") == ["001A", "001B"]
    assert ids("SELECT Id FROM Account WHERE Seats__c < 12") == ["001D"]
    assert ids("SELECT Id FROM Account WHERE SystemModstamp > 2026-01-02T00:00:00Z AND IsDeleted = false") == [
        "001B", "001D"]


def test_not_equal_includes_nulls_as_in_soql():
    assert ids("SELECT Id FROM Account WHERE Plan__c != 'growth'") == ["001B", "001C", "001D"]
    assert ids("SELECT Id FROM Account WHERE ParentId != null") == ["001B", "001C"]
    assert ids("SELECT Id FROM Account WHERE ParentId = null") == ["001A", "001D"]


def test_in_and_not_in():
    assert ids("SELECT Id FROM Account WHERE Plan__c IN ('growth', 'starter')") == ["001A", "001C"]
    assert ids("SELECT Id FROM Account WHERE Plan__c NOT IN ('growth', 'starter')") == ["001B", "001D"]


def test_like_is_case_insensitive_with_escaped_wildcards():
    assert ids("SELECT Id FROM Account WHERE Name LIKE 'acme%'") == ["001A", "001C"]
    assert ids("SELECT Id FROM Account WHERE Name LIKE '_eta%'") == ["001B"]
    assert ids("SELECT Id FROM Account WHERE Name LIKE '100\\% %'") == ["001D"]


def test_order_by_limit_and_offset():
    assert ids("SELECT Id FROM Account ORDER BY SystemModstamp DESC, Id DESC LIMIT 2") == ["001D", "001C"]
    assert ids("SELECT Id FROM Account ORDER BY Seats__c ASC") == ["001C", "001D", "001A", "001B"]
    assert ids("SELECT Id FROM Account ORDER BY Seats__c DESC") == ["001B", "001A", "001D", "001C"]
    assert ids("SELECT Id FROM Account ORDER BY Id LIMIT 2 OFFSET 1") == ["001B", "001C"]


def test_datetime_field_compares_with_date_literal():
    record = {"SystemModstamp": datetime(2026, 1, 2, 9, 0)}
    assert evaluate(parse_soql("SELECT Id FROM A WHERE SystemModstamp > 2026-01-02").where, record)


# ----------------------------------------------------------------------------- SQL push-down
@pytest.mark.parametrize(
    "where",
    [
        "Seats__c >= 12",
        "Plan__c != 'growth'",
        "ParentId != null",
        "Plan__c NOT IN ('growth', 'starter')",
        "Name LIKE 'acme%'",
        "SystemModstamp > 2026-01-02T00:00:00Z AND (IsDeleted = false OR Seats__c = null)",
        "NOT Seats__c < 12",
    ],
)
def test_sql_compilation_selects_what_python_evaluation_selects(where):
    md = MetaData()
    table = Table(
        "account", md,
        Column("Id", String, primary_key=True), Column("Name", String), Column("Seats__c", Integer),
        Column("Plan__c", String), Column("ParentId", String), Column("SystemModstamp", DateTime),
        Column("IsDeleted", Boolean),
    )
    engine = create_engine("sqlite://")
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), ACCOUNTS)
        query = parse_soql(f"SELECT Id FROM Account WHERE {where}")
        sql_ids = conn.execute(select(table.c.Id).where(to_sql(query.where, table.c.__getitem__))
                               .order_by(table.c.Id)).scalars().all()
    assert sql_ids == sorted(ids(f"SELECT Id FROM Account WHERE {where}"))
