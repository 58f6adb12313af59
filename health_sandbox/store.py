"""The sandbox's own data: what Salesforce, Zendesk, Stripe and HubSpot "hold".

The synthetic company is generated into one SQLite file (``company.db``) whose tables mirror the
objects each API serves, with the API's own field names, so the loopback servers serialize rows
directly. The Salesforce tables hold standard fields (Salesforce's field reference) and the custom
fields of ``customer_health.sources.salesforce_fields`` only: the contract test checks both. The product database is a separate file (``product.db``, see ``product_db.py``) reached
through SQLAlchemy, like a customer's own application database would be.

Besides the source objects the store keeps:
* ``sandbox_writes`` - every write any client made (tests count these: "exactly one Task");
* ``sandbox_faults`` - faults switched on per endpoint (429, 5xx, timeouts, expired sessions,
  malformed records, duplicated pages), each with a remaining count;
* ``truth_account`` - the generator's hidden ground truth (trajectory, churn date). The pipeline
  never reads it; only tests and benchmarks that judge the model do.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.schema import CreateIndex

store_metadata = MetaData()

# ----------------------------------------------------------------------------- Salesforce objects
sf_user = Table(
    "sf_user",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("Name", String(255)),
    Column("Email", String(255)),
    Column("Title", String(80)),
    Column("UserRoleId", String(18)),  # the user's role (sf_user_role); the role's name is UserRole.Name
    Column("IsActive", Boolean),
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime, index=True),
)

sf_user_role = Table(  # UserRole: "Customer Success Manager", "VP Customer Success", ...
    "sf_user_role",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("Name", String(80)),
    Column("ParentRoleId", String(18)),  # the role above it in the hierarchy (managers), or NULL at the top
    Column("SystemModstamp", DateTime),
)

sf_account = Table(
    "sf_account",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("Name", String(255)),
    Column("ParentId", String(18)),
    Column("OwnerId", String(18)),
    Column("Industry", String(80)),
    Column("Type", String(40)),
    Column("Plan__c", String(40)),  # starter | growth | enterprise
    Column("Seats__c", Integer),
    Column("ARR__c", Float),
    Column("Customer_Since__c", Date),
    Column("Product_Account_Id__c", String(40)),
    Column("Executive_Sponsor_User__c", String(18)),  # Lookup(User): our executive sponsor of the account
    # Health writeback fields (written by the pipeline's CRM writeback).
    Column("Health_Score__c", Float),
    Column("Health_Zone__c", String(20)),
    Column("Health_Trend__c", String(40)),
    Column("Health_Drivers__c", Text),
    Column("Health_Score_Date__c", Date),  # the as-of date of the score the record shows
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime, index=True),
    Column("IsDeleted", Boolean, default=False),
)

sf_contact = Table(
    "sf_contact",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("AccountId", String(18), index=True),
    Column("FirstName", String(80)),
    Column("LastName", String(80)),
    Column("Email", String(255)),
    Column("Title", String(128)),
    Column("Executive_Sponsor__c", Boolean),
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime, index=True),
    Column("IsDeleted", Boolean, default=False),
)

sf_task = Table(
    "sf_task",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("AccountId", String(18), index=True),
    Column("WhatId", String(18)),
    Column("WhoId", String(18)),
    Column("OwnerId", String(18)),
    Column("Subject", String(255)),
    Column("Type", String(40)),  # Call | Email | Meeting | Other
    Column("Status", String(40)),  # Not Started | In Progress | Completed
    Column("Priority", String(20)),
    Column("ActivityDate", Date),
    Column("Description", Text),
    Column("Executive_Touch__c", Boolean),  # a touch with the account's executive sponsor
    # Picklist Yes/No, blank for tasks that are not outreach e-mails; held here as true/false/NULL
    # (the API serves and takes "Yes"/"No").
    Column("Outreach_Responded__c", Boolean),
    Column("Health_Action_Key__c", String(120), unique=True),  # external id for idempotent upsert
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime, index=True),
    Column("IsDeleted", Boolean, default=False),
)

sf_opportunity = Table(
    "sf_opportunity",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("AccountId", String(18), index=True),
    Column("Name", String(255)),
    Column("Type", String(40)),  # Renewal | Expansion | New Business
    Column("StageName", String(40)),
    Column("Amount", Float),
    Column("CloseDate", Date),
    Column("IsClosed", Boolean),
    Column("IsWon", Boolean),
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime, index=True),
    Column("IsDeleted", Boolean, default=False),
)

sf_nps_response = Table(  # custom object NPS_Response__c
    "sf_nps_response",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("Account__c", String(18), index=True),
    Column("Contact__c", String(18)),
    Column("Score__c", Integer),
    Column("Comment__c", Text),
    Column("Responded_At__c", DateTime),
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime, index=True),
    Column("IsDeleted", Boolean, default=False),
)

sf_campaign = Table(  # Campaign: a marketing programme (upsell offers, advocacy, nurture, ...)
    "sf_campaign",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("Name", String(80)),
    Column("Type", String(40)),  # picklist: Email, Referral Program, Other, ...
    Column("Status", String(40)),  # picklist: Planned, In Progress, Completed, Aborted
    Column("IsActive", Boolean),
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime),
    Column("IsDeleted", Boolean, default=False),
)

sf_campaign_member_status = Table(  # CampaignMemberStatus: the member status values of one campaign
    "sf_campaign_member_status",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("CampaignId", String(18), index=True),
    Column("Label", String(765)),
    Column("HasResponded", Boolean),
    Column("IsDefault", Boolean),
    Column("SortOrder", Integer),
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime),
    Column("IsDeleted", Boolean, default=False),
)

sf_campaign_member = Table(  # CampaignMember: a contact's membership of a campaign, with its status
    "sf_campaign_member",
    store_metadata,
    Column("Id", String(18), primary_key=True),
    Column("CampaignId", String(18), index=True),
    Column("ContactId", String(18), index=True),
    Column("Status", String(40)),  # one of the campaign's CampaignMemberStatus labels
    Column("HasResponded", Boolean),  # from the status (read-only)
    Column("CreatedDate", DateTime),
    Column("SystemModstamp", DateTime),
    Column("IsDeleted", Boolean, default=False),
)

# ----------------------------------------------------------------------------- Zendesk objects
zd_organization = Table(
    "zd_organization",
    store_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(255)),
    Column("external_id", String(40)),  # Salesforce Account Id (sometimes 15-char, sometimes none)
    Column("created_at", DateTime),
    Column("updated_at", DateTime, index=True),
)

zd_ticket = Table(
    "zd_ticket",
    store_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("organization_id", Integer, index=True),
    Column("requester_id", Integer),
    Column("subject", String(255)),
    Column("type", String(20)),  # question | incident | problem | task
    Column("priority", String(20)),  # low | normal | high | urgent
    Column("status", String(20)),  # new | open | pending | solved | closed
    Column("tags", JSON),  # e.g. ["how_to"], ["complaint", "billing"]
    Column("created_at", DateTime),
    Column("updated_at", DateTime, index=True),
    Column("solved_at", DateTime),
    Column("reopens", Integer),
    Column("replies", Integer),
    Column("full_resolution_time_in_minutes", Integer),
    Column("first_reply_time_in_minutes", Integer),
)

zd_user = Table(  # end users: the requesters of tickets (sideloaded by include=users)
    "zd_user",
    store_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(255)),
    Column("email", String(255)),  # the person's Salesforce Contact e-mail
    Column("organization_id", Integer),
    Column("role", String(20)),  # end-user
    Column("created_at", DateTime),
    Column("updated_at", DateTime),
)

zd_satisfaction_rating = Table(
    "zd_satisfaction_rating",
    store_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("ticket_id", Integer, index=True),
    Column("organization_id", Integer),
    Column("requester_id", Integer),
    Column("score", String(20)),  # good | bad
    Column("comment", Text),
    Column("created_at", DateTime, index=True),
    Column("updated_at", DateTime),
)

# ----------------------------------------------------------------------------- Stripe objects
stripe_customer = Table(
    "stripe_customer",
    store_metadata,
    Column("id", String(40), primary_key=True),  # cus_...
    Column("email", String(255)),
    Column("name", String(255)),
    Column("metadata", JSON),  # {"salesforce_account_id": ..., "product_account_id": ...}
    Column("created", Integer, index=True),  # unix seconds, as Stripe
)

stripe_subscription = Table(
    "stripe_subscription",
    store_metadata,
    Column("id", String(40), primary_key=True),  # sub_...
    Column("customer", String(40), index=True),
    Column("status", String(20)),  # active | past_due | canceled | unpaid
    Column("quantity", Integer),
    Column("unit_amount", Integer),  # cents per seat per interval
    Column("interval", String(10)),  # month | year
    Column("created", Integer, index=True),
    Column("canceled_at", Integer),
    Column("cancel_at_period_end", Boolean),
    Column("current_period_start", Integer),
    Column("current_period_end", Integer),
    Column("metadata", JSON),
)

stripe_invoice = Table(
    "stripe_invoice",
    store_metadata,
    Column("id", String(40), primary_key=True),  # in_...
    Column("customer", String(40), index=True),
    Column("subscription", String(40)),
    Column("charge", String(40)),  # ch_...
    Column("status", String(20)),  # draft | open | paid | uncollectible | void
    Column("subtotal", Integer),
    Column("usage_amount", Integer),  # metered-usage line, cents
    Column("amount_due", Integer),
    Column("amount_paid", Integer),
    Column("attempt_count", Integer),
    Column("created", Integer, index=True),
    Column("due_date", Integer),
    Column("paid_at", Integer),
    Column("period_start", Integer),
    Column("period_end", Integer),
)

stripe_dispute = Table(
    "stripe_dispute",
    store_metadata,
    Column("id", String(40), primary_key=True),  # dp_...
    Column("charge", String(40)),
    Column("amount", Integer),
    Column("status", String(30)),
    Column("reason", String(40)),
    Column("created", Integer, index=True),
)

# ----------------------------------------------------------------------------- HubSpot
# HubSpot's contacts and contact lists (the lists API v3), for the HubSpot campaign target.
hs_contact = Table(
    "hs_contact",
    store_metadata,
    Column("id", String(20), primary_key=True),  # HubSpot record ids are numbers, served as strings
    Column("email", String(255), unique=True),
    Column("firstname", String(80)),
    Column("lastname", String(80)),
    Column("createdate", DateTime),
    Column("lastmodifieddate", DateTime),
    Column("archived", Boolean, default=False),
)

hs_list = Table(
    "hs_list",
    store_metadata,
    Column("listId", String(20), primary_key=True),
    Column("name", String(255), unique=True),
    Column("processingType", String(20)),  # MANUAL | SNAPSHOT | DYNAMIC
    Column("objectTypeId", String(10)),  # "0-1": contacts
    Column("createdAt", DateTime),
    Column("updatedAt", DateTime),
    Column("listVersion", Integer, default=1),
)

hs_list_membership = Table(
    "hs_list_membership",
    store_metadata,
    Column("listId", String(20), primary_key=True),
    Column("recordId", String(20), primary_key=True),
    Column("membershipTimestamp", DateTime),
    Index("ix_hs_list_membership_record", "recordId"),
)

# ----------------------------------------------------------------------------- bookkeeping
sandbox_writes = Table(
    "sandbox_writes",
    store_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("system", String(20), index=True),  # salesforce | zendesk | stripe | slack | smtp | hubspot
    Column("method", String(10)),
    Column("path", Text),
    Column("object", String(60)),
    Column("record_id", String(120)),
    Column("external_id", String(200)),
    Column("idempotency_key", String(200)),
    Column("created", Boolean),  # False when an upsert/idempotent replay changed nothing new
    Column("body", JSON),
    Column("at", DateTime),
)

sandbox_faults = Table(
    "sandbox_faults",
    store_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("system", String(20)),
    Column("method", String(10)),  # "*" for any
    Column("path_regex", Text),
    Column("kind", String(30)),  # rate_limit | server_error | timeout | expired_session | malformed | duplicate_page
    Column("remaining", Integer),  # how many requests it still hits
    Column("retry_after", Float),
    Column("skip", Integer, default=0),  # let this many matching requests through first
)

truth_account = Table(  # hidden ground truth, never read by the pipeline
    "truth_account",
    store_metadata,
    Column("account_id", String(18), primary_key=True),
    Column("trajectory", String(30)),
    Column("trajectory_start", Date),
    Column("churn_date", Date),
    Column("churn_cause", String(30)),  # health | budget_cut | acquisition (the last two: near-invisible)
    Column("expansion_date", Date),
    Column("contraction_date", Date),
    Column("plan", String(40)),
    Column("seats", Integer),
)

sandbox_meta = Table(
    "sandbox_meta",
    store_metadata,
    Column("key", String(60), primary_key=True),
    Column("value", Text),
)


def _pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def store_engine(path: str | Path) -> Engine:
    """An engine on the sandbox store file at ``path`` (created with its tables if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    eng = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(eng, "connect", _pragmas)
    store_metadata.create_all(eng)
    # Indexes added after a company was generated are created on its existing tables too
    # (IF NOT EXISTS: several processes may open the same store at once).
    with eng.begin() as conn:
        for table in store_metadata.sorted_tables:
            for index in table.indexes:
                conn.execute(CreateIndex(index, if_not_exists=True))
    return eng
