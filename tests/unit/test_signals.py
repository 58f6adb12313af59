"""Point-in-time signals: each signal on a hand-built world with a known answer, on SQLite and
PostgreSQL; who counts as a customer at D; missing (NaN) versus a real zero; and that nothing
dated after D changes the signals for D.

Every world is evaluated both ways the definitions are evaluated - for the date in SQL
(``compute_signals``, the daily run and the refresh) and as a range of one date, vectorized
(``compute_signals_range``, the rebuild) - and the two frames must be equal (``signals_of``)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signal_definition import Signal
from customer_health.scoring.signal_store import read_signal_frame, write_signal_frame
from customer_health.scoring.signals import (
    ACCOUNT_COLUMNS,
    SIGNAL_COLUMNS,
    compute_signals,
    compute_signals_range,
)
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import (
    raw_sf_account,
    raw_sf_task,
    raw_stripe_invoice,
    raw_stripe_subscription,
    raw_zd_ticket,
    signal_values,
)
from tests.unit.signal_fixtures import RawWorld, at, both_ways, contact_of, days, is_nan, rich_account, row

D = date(2026, 6, 30)  # a Tuesday
LONG_AGO = date(2024, 1, 1)


def signals_of(url: str, world: RawWorld, as_of: date = D) -> pd.DataFrame:
    engine = engine_for(url)
    world.save(engine)
    return both_ways(engine, as_of)


# --------------------------------------------------------------------------- catalog
def test_catalog_holds_the_fixed_signal_keys_by_dimension():
    assert {key: spec.dimension for key, spec in SIGNALS.items()} == {
        "login_frequency": "engagement",
        "active_user_ratio": "engagement",
        "feature_breadth": "engagement",
        "feature_depth": "engagement",
        "engagement_trend": "engagement",
        "open_tickets": "support",
        "severity_mix": "support",
        "resolution_time_trend": "support",
        "howto_complaint_ratio": "support",
        "reopen_rate": "support",
        "csat": "support",
        "payment_timeliness": "financial",
        "payment_failures": "financial",
        "contract_value_change": "financial",
        "usage_billing_trend": "financial",
        "nps": "sentiment",
        "exec_sponsor_recency": "sentiment",
        "outreach_response": "sentiment",
    }
    assert all(spec.key == key for key, spec in SIGNALS.items())


def test_catalog_phrases_read_as_csm_sentences():
    assert SIGNALS["active_user_ratio"].describe(0.42).startswith("active users 42% of seats")
    assert SIGNALS["engagement_trend"].describe(-0.25) == "logins -25% vs the two months before"
    assert SIGNALS["csat"].describe(float("nan")) == "no data for CSAT"
    for spec in SIGNALS.values():
        spec.describe(0.5)  # every template formats a float


def test_a_signal_with_an_unknown_dimension_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"dimension 'mood'.*engagement"):
        Signal("x", "mood", "higher_is_better", "u", 1, "x", "{value}", inputs=(), value=lambda x: x.day)  # type: ignore[arg-type]


def test_a_signal_whose_reading_does_not_format_a_number_is_refused():
    with pytest.raises(ValueError, match=r"reading .* no \{value\} field"):
        Signal("x", "support", "higher_is_better", "u", 1, "x", "no value here", inputs=(), value=lambda x: x.day)


# --------------------------------------------------------------------------- engagement
def test_login_frequency_is_logins_per_seat_per_week_over_the_last_28_days(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO, seats=10)
    product = w.product_account(acme)
    for back in range(28):
        w.usage(product, D - days(back), active_users=1, logins=5)
    w.usage(product, D - days(28), active_users=1, logins=1000)  # the 29th day back
    w.usage(product, D + days(1), active_users=1, logins=1000)  # after D

    assert row(signals_of(warehouse_url, w), acme)["login_frequency"] == pytest.approx(140 / 4 / 10)


def test_rates_of_a_new_customer_run_over_the_days_it_has_been_a_customer(warehouse_url):
    w = RawWorld()
    newcomer = w.account(D - days(6), seats=10)  # a customer for 7 days
    product = w.product_account(newcomer)
    w.usage(product, D - days(10), active_users=9, logins=900)  # trial, before the contract
    for back in range(7):
        w.usage(product, D - days(back), active_users=2, logins=10)

    signals = row(signals_of(warehouse_url, w), newcomer)
    assert signals["login_frequency"] == pytest.approx(70 / 1 / 10)
    # D-6 .. D (Wed .. Tue) holds 5 weekdays with 2 of 10 seats active
    assert signals["active_user_ratio"] == pytest.approx(0.2)


def test_active_user_ratio_averages_weekday_active_users_over_seats(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO, seats=10)
    product = w.product_account(acme)
    for back in range(28):
        day = D - days(back)
        weekend = day.weekday() >= 5
        w.usage(product, day, active_users=10 if weekend else 5, logins=1)

    assert row(signals_of(warehouse_url, w), acme)["active_user_ratio"] == pytest.approx(0.5)


def test_feature_breadth_and_depth_count_core_features_in_the_last_30_days(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    product = w.product_account(acme)
    for key in ("reports", "alerts", "dashboards", "exports"):
        w.feature(key)
    w.feature("beta_lab", is_core=False)
    w.feature_use(product, D - days(2), "reports", events=30)
    w.feature_use(product, D - days(29), "alerts", events=10)
    w.feature_use(product, D - days(5), "beta_lab", events=100)  # not core
    w.feature_use(product, D - days(30), "dashboards", events=50)  # the 31st day back
    w.feature_use(product, D + days(1), "exports", events=50)  # after D
    for back in range(10):
        w.usage(product, D - days(back), active_users=2, logins=2)

    signals = row(signals_of(warehouse_url, w), acme)
    assert signals["feature_breadth"] == pytest.approx(2 / 4)
    assert signals["feature_depth"] == pytest.approx(40 / 20)  # core events per active user-day


def test_engagement_trend_compares_the_last_30_days_with_the_mean_month_of_days_31_to_90(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    newcomer = w.account(D - days(60))
    for account in (acme, newcomer):
        product = w.product_account(account)
        for back in range(30):
            w.usage(product, D - days(back), active_users=1, logins=2)  # 60 logins
        for back in range(30, 90):
            w.usage(product, D - days(back), active_users=1, logins=3)  # 180 over two months

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["engagement_trend"] == pytest.approx(60 / 90 - 1)
    # a customer for 61 days has no full baseline: no trend rather than a made-up one
    assert is_nan(row(frame, newcomer)["engagement_trend"])


def test_engagement_is_missing_without_a_product_account_and_zero_when_idle(warehouse_url):
    w = RawWorld()
    w.feature("reports")
    unmapped = w.account(LONG_AGO)
    idle = w.account(LONG_AGO)
    w.product_account(idle)

    frame = signals_of(warehouse_url, w)
    for key in ("login_frequency", "active_user_ratio", "feature_breadth", "feature_depth", "engagement_trend"):
        assert is_nan(row(frame, unmapped)[key]), key
    idle_row = row(frame, idle)
    assert idle_row["login_frequency"] == 0.0
    assert idle_row["active_user_ratio"] == 0.0
    assert idle_row["feature_breadth"] == 0.0
    assert is_nan(idle_row["feature_depth"])  # no active user-days to divide by
    assert is_nan(idle_row["engagement_trend"])  # nothing to compare with


def test_a_product_account_created_after_d_does_not_count(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    w.product_account(acme, created_at=at(D + days(3)))

    assert is_nan(row(signals_of(warehouse_url, w), acme)["login_frequency"])


# --------------------------------------------------------------------------- support
def test_open_tickets_are_those_open_at_the_end_of_d(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    org = w.zendesk_org(acme)
    w.ticket(org, at(D - days(5)))  # open
    w.ticket(org, at(D - days(400)))  # open for a long time
    w.ticket(org, at(D - days(20)), solved_at=at(D + days(3)))  # solved after D: open at D
    w.ticket(org, at(D, 8), solved_at=at(D, 23, 59))  # solved on D
    w.ticket(org, at(D - days(20)), solved_at=at(D - days(1)))
    w.ticket(org, at(D + days(1), 0))  # created after D
    w.ticket(org, at(D - days(30)), status="closed")  # closed without a solved_at: a data gap

    assert row(signals_of(warehouse_url, w), acme)["open_tickets"] == 3


def test_severity_mix_is_the_share_of_high_and_urgent_tickets_of_the_last_90_days(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    quiet = w.account(LONG_AGO)
    w.zendesk_org(quiet)
    without_zendesk = w.account(LONG_AGO)
    org = w.zendesk_org(acme)
    for priority in ("high", "urgent", "normal", "low"):
        w.ticket(org, at(D - days(10)), priority=priority)
    w.ticket(org, at(D - days(95)), priority="urgent")  # older than 90 days
    w.ticket(org, at(D + days(1)), priority="urgent")  # after D

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["severity_mix"] == pytest.approx(0.5)
    # no tickets: a share of nothing is missing, not 0 % (the weight moves to present signals)
    assert is_nan(row(frame, quiet)["severity_mix"])
    assert row(frame, quiet)["open_tickets"] == 0.0  # an organization with no open ticket: a real 0
    # no Zendesk organization: every support signal is missing, none is a 0 that looks like data
    assert is_nan(row(frame, without_zendesk)["severity_mix"])
    assert is_nan(row(frame, without_zendesk)["open_tickets"])


def test_resolution_time_trend_compares_median_resolution_of_the_last_two_quarters(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    few = w.account(LONG_AGO)
    org, few_org = w.zendesk_org(acme), w.zendesk_org(few)
    for minutes in (100, 200, 300, 1000):  # solved in the last 90 days: median 250
        w.ticket(org, at(D - days(40)), solved_at=at(D - days(30)), minutes=minutes)
        w.ticket(few_org, at(D - days(40)), solved_at=at(D - days(30)), minutes=minutes)
    for minutes in (100, 100, 200):  # solved 91-180 days back: median 100
        w.ticket(org, at(D - days(150)), solved_at=at(D - days(120)), minutes=minutes)
    w.ticket(org, at(D - days(150)), solved_at=at(D + days(1)), minutes=99_999)  # solved after D
    for minutes in (100, 100):  # too few to make a median worth comparing
        w.ticket(few_org, at(D - days(150)), solved_at=at(D - days(120)), minutes=minutes)

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["resolution_time_trend"] == pytest.approx(250 / 100 - 1)
    assert is_nan(row(frame, few)["resolution_time_trend"])


def test_howto_complaint_ratio_over_180_days_and_missing_without_either(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    only_other = w.account(LONG_AGO)
    org, other_org = w.zendesk_org(acme), w.zendesk_org(only_other)
    for category in ("how_to", "how_to", "how_to", "complaint", "other", "other"):
        w.ticket(org, at(D - days(100)), category=category)
    w.ticket(org, at(D - days(200)), category="complaint")  # older than 180 days
    w.ticket(org, at(D + days(2)), category="complaint")  # after D
    w.ticket(other_org, at(D - days(10)), category="other")

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["howto_complaint_ratio"] == pytest.approx(0.75)
    assert is_nan(row(frame, only_other)["howto_complaint_ratio"])


def test_reopen_rate_counts_reopens_per_ticket_solved_in_the_last_180_days(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    never_solved = w.account(LONG_AGO)
    org = w.zendesk_org(acme)
    for reopens in (0, 1, 2, 1):
        w.ticket(org, at(D - days(60)), solved_at=at(D - days(50)), reopens=reopens)
    w.ticket(org, at(D - days(60)), reopens=5)  # still open
    w.ticket(org, at(D - days(260)), solved_at=at(D - days(200)), reopens=9)  # solved long ago
    w.ticket(w.zendesk_org(never_solved), at(D - days(3)))

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["reopen_rate"] == pytest.approx(1.0)
    assert is_nan(row(frame, never_solved)["reopen_rate"])


def test_csat_is_good_over_good_and_bad_ratings_of_the_last_180_days(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    unrated = w.account(LONG_AGO)
    w.zendesk_org(unrated)
    org = w.zendesk_org(acme)
    for score in ("good", "good", "good", "bad", "offered", "unoffered"):
        w.rating(org, score, at(D - days(20)))
    w.rating(org, "bad", at(D - days(181)))
    w.rating(org, "bad", at(D + days(1), 0))

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["csat"] == pytest.approx(0.75)
    assert is_nan(row(frame, unrated)["csat"])


def test_tickets_of_duplicate_zendesk_orgs_mapped_to_one_account_all_count(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    first, duplicate = w.zendesk_org(acme), w.zendesk_org(acme)
    w.ticket(first, at(D - days(3)), priority="urgent", category="complaint")
    w.ticket(duplicate, at(D - days(4)), priority="normal", category="how_to")
    w.rating(first, "good", at(D - days(3)))
    w.rating(duplicate, "bad", at(D - days(3)))

    signals = row(signals_of(warehouse_url, w), acme)
    assert signals["open_tickets"] == 2
    assert signals["severity_mix"] == pytest.approx(0.5)
    assert signals["howto_complaint_ratio"] == pytest.approx(0.5)
    assert signals["csat"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- financial
def test_payment_timeliness_counts_an_invoice_unpaid_and_past_due_at_d_as_late(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    nothing_due = w.account(LONG_AGO)
    w.invoice(w.stripe_customer(nothing_due), at(D - days(2)), due_date=at(D + days(12)))
    cus = w.stripe_customer(acme)
    w.invoice(cus, at(D - days(110)), due_date=at(D - days(100)), paid_at=at(D - days(102)))  # on time
    w.invoice(cus, at(D - days(60)), due_date=at(D - days(50), 0), paid_at=at(D - days(50), 18))  # on the day
    w.invoice(cus, at(D - days(60)), paid_at=at(D - days(60), 13))  # charged automatically: due when created
    w.invoice(cus, at(D - days(40)), due_date=at(D - days(30)), paid_at=at(D - days(20)))  # late
    w.invoice(cus, at(D - days(20)), due_date=at(D - days(10)), paid_at=at(D + days(5)))  # unpaid at D: late
    w.invoice(cus, at(D - days(5)), due_date=at(D + days(10)))  # not due yet
    w.invoice(cus, at(D - days(210)), due_date=at(D - days(200)))  # due before the window
    w.invoice(cus, at(D - days(45)), due_date=at(D - days(40)), status="void")

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["payment_timeliness"] == pytest.approx(3 / 5)
    assert is_nan(row(frame, nothing_due)["payment_timeliness"])


def test_payment_failures_count_retried_and_past_due_invoices_and_disputes(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    clean = w.account(LONG_AGO)
    w.stripe_customer(clean)
    not_in_stripe = w.account(LONG_AGO)
    cus = w.stripe_customer(acme)
    w.invoice(cus, at(D - days(90)), paid_at=at(D - days(85)), attempt_count=3)  # 1: retried
    w.invoice(cus, at(D - days(60)), paid_at=at(D - days(60), 13))  # paid at once
    w.invoice(cus, at(D - days(50)), due_date=at(D - days(40)), status="uncollectible", attempt_count=4)  # 2
    w.invoice(cus, at(D - days(10)), due_date=at(D - days(3)), paid_at=at(D + days(3)), attempt_count=4)  # 3
    w.invoice(cus, at(D - days(2)), due_date=at(D + days(5)), attempt_count=2)  # not due yet
    w.invoice(cus, at(D - days(200)), paid_at=at(D - days(190)), attempt_count=3)  # older than 180 days
    w.invoice(cus, at(D - days(250)), paid_at=at(D - days(250), 13), charge_id="ch_old")
    w.dispute("ch_old", at(D - days(30)))  # 4: a dispute on an old charge, opened in the window
    w.dispute("ch_old", at(D + days(2)))  # opened after D

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["payment_failures"] == 4
    assert row(frame, clean)["payment_failures"] == 0.0
    assert is_nan(row(frame, not_in_stripe)["payment_failures"])


def test_duplicate_stripe_customers_mapped_to_one_account_all_count(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    for cus in (w.stripe_customer(acme), w.stripe_customer(acme)):
        w.invoice(cus, at(D - days(20)), due_date=at(D - days(10)))

    signals = row(signals_of(warehouse_url, w), acme)
    assert signals["payment_failures"] == 2
    assert signals["payment_timeliness"] == 0.0


def test_seats_arr_and_contract_value_change_come_from_the_latest_invoices(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO, seats=3, arr=1.0)
    cus = w.stripe_customer(acme)
    sub = w.subscription(cus, at(D - days(400)), unit_amount=10_000)
    w.invoice(cus, at(D - days(200)), subtotal=107_000, usage_amount=7_000, subscription_id=sub)
    w.invoice(cus, at(D - days(185)), subtotal=100_000, subscription_id=sub)  # latest as of D-180
    w.invoice(cus, at(D - days(20)), subtotal=123_000, usage_amount=3_000, subscription_id=sub)  # latest at D
    w.invoice(cus, at(D - days(1)), subtotal=999_000, subscription_id=sub, status="void")
    w.invoice(cus, at(D + days(5)), subtotal=500_000, subscription_id=sub)  # after D

    signals = row(signals_of(warehouse_url, w), acme)
    assert signals["seats"] == 12
    assert signals["arr"] == pytest.approx(120_000 * 12 / 100)
    assert signals["contract_value_change"] == pytest.approx(0.2)


def test_usage_only_invoices_of_an_annual_contract_do_not_replace_its_license_invoice(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    cus = w.stripe_customer(acme)
    sub = w.subscription(cus, at(D - days(300)), unit_amount=120_000, interval="year")
    w.invoice(cus, at(D - days(300)), subtotal=600_000, subscription_id=sub)  # 5 seats a year
    for back in (60, 30, 1):  # metered usage billed monthly in arrears
        w.invoice(cus, at(D - days(back)), subtotal=4_000, usage_amount=4_000, subscription_id=sub)

    signals = row(signals_of(warehouse_url, w), acme)
    assert (signals["seats"], signals["arr"]) == (5, 6_000.0)
    assert signals["contract_value_change"] == 0.0


def test_seats_and_arr_add_up_live_subscriptions_and_fall_back_to_the_account(warehouse_url):
    w = RawWorld()
    two_plans = w.account(LONG_AGO)
    monthly = w.subscription(cus := w.stripe_customer(two_plans), at(D - days(100)), unit_amount=10_000)
    yearly = w.subscription(cus, at(D - days(100)), unit_amount=20_000, interval="year")
    w.invoice(cus, at(D - days(10)), subtotal=50_000, subscription_id=monthly)
    w.invoice(cus, at(D - days(100)), subtotal=40_000, subscription_id=yearly)
    ended = w.subscription(cus, at(D - days(300)), canceled_at=at(D - days(50)))
    w.invoice(cus, at(D - days(200)), subtotal=900_000, subscription_id=ended)
    crm_only = w.account(LONG_AGO, seats=25, arr=30_000.0)

    frame = signals_of(warehouse_url, w)
    assert row(frame, two_plans)["seats"] == 5 + 2
    assert row(frame, two_plans)["arr"] == pytest.approx(500 * 12 + 400)
    # six months ago only the since-canceled subscription was live: it is the baseline
    assert row(frame, two_plans)["contract_value_change"] == pytest.approx(90_000 / 900_000 - 1)
    assert (row(frame, crm_only)["seats"], row(frame, crm_only)["arr"]) == (25, 30_000.0)
    assert is_nan(row(frame, crm_only)["contract_value_change"])


def test_usage_billing_trend_compares_metered_usage_of_the_last_two_quarters(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    young = w.account(D - days(120))
    for account in (acme, young):
        cus = w.stripe_customer(account)
        for back, usage in ((10, 3000), (40, 3000), (100, 2000), (130, 2000)):
            w.invoice(cus, at(D - days(back)), usage_amount=usage, paid_at=at(D - days(back), 13))
        w.invoice(cus, at(D + days(1)), usage_amount=99_999)

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["usage_billing_trend"] == pytest.approx(6000 / 4000 - 1)
    assert is_nan(row(frame, young)["usage_billing_trend"])  # not a customer for a whole baseline


# --------------------------------------------------------------------------- sentiment
def test_nps_averages_each_contacts_latest_response_of_the_last_year(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    silent = w.account(LONG_AGO)
    w.nps(acme, 9, at(D - days(40)), contact_id="c1")
    w.nps(acme, 3, at(D - days(10)), contact_id="c1")  # c1's latest
    w.nps(acme, 8, at(D - days(100)), contact_id="c2")
    w.nps(acme, 0, at(D + days(1)), contact_id="c2")  # after D
    w.nps(acme, 10, at(D - days(400)), contact_id="c3")  # older than a year

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["nps"] == pytest.approx((3 + 8) / 2)
    assert is_nan(row(frame, silent)["nps"])


def test_exec_sponsor_recency_is_days_since_the_last_touch_capped_at_a_year(warehouse_url):
    w = RawWorld()
    touched = w.account(LONG_AGO)
    w.task(touched, D - days(12), is_executive_touch=True)
    w.task(touched, D - days(3), is_executive_touch=True, status="Not Started")  # only planned
    w.task(touched, D - days(1), is_executive_touch=True, created_at=at(D + days(1)))  # logged after D
    w.task(touched, D - days(2), is_executive_touch=False)
    long_ago = w.account(LONG_AGO)
    w.task(long_ago, D - days(500), is_executive_touch=True)
    never_new = w.account(D - days(40))
    never_old = w.account(LONG_AGO)

    frame = signals_of(warehouse_url, w)
    assert row(frame, touched)["exec_sponsor_recency"] == 12
    assert row(frame, long_ago)["exec_sponsor_recency"] == 365
    # never touched: no touch on record is missing, not the tenure (documented decision)
    assert is_nan(row(frame, never_new)["exec_sponsor_recency"])
    assert is_nan(row(frame, never_old)["exec_sponsor_recency"])


def test_outreach_response_is_the_share_of_outreach_emails_of_90_days_answered(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    unreached = w.account(LONG_AGO)
    for answered in (True, True, False):
        w.task(acme, D - days(30), outreach_responded=answered, task_type="Email")
    w.task(acme, D - days(30), outreach_responded=None)  # not an outreach e-mail
    w.task(acme, D - days(95), outreach_responded=False, task_type="Email")  # older than 90 days
    w.task(acme, D + days(1), outreach_responded=False, task_type="Email")  # after D
    w.task(unreached, D - days(30))

    frame = signals_of(warehouse_url, w)
    assert row(frame, acme)["outreach_response"] == pytest.approx(2 / 3)
    assert is_nan(row(frame, unreached)["outreach_response"])


def test_an_outreach_reply_logged_after_d_is_not_yet_an_answer_at_d(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    w.task(acme, D - days(2), outreach_responded=True, modified_at=at(D - days(1)))
    w.task(acme, D - days(1), outreach_responded=True, modified_at=at(D + days(1)))  # reply came later

    assert row(signals_of(warehouse_url, w), acme)["outreach_response"] == pytest.approx(1 / 2)


# --------------------------------------------------------------------------- who is a customer
def test_only_accounts_that_are_customers_at_d_get_a_row(warehouse_url):
    w = RawWorld()
    keys = {}

    def with_subscription(name: str, **sub) -> None:
        keys[name] = w.account(LONG_AGO)
        w.subscription(w.stripe_customer(keys[name]), at(LONG_AGO), **sub)

    with_subscription("live")
    with_subscription("canceled_before_d", canceled_at=at(D - days(10)))
    with_subscription("canceled_on_d", canceled_at=at(D, 9))
    with_subscription("canceled_after_d", canceled_at=at(D + days(1)))
    with_subscription(
        "canceled_at_period_end_after_d",
        canceled_at=at(D - days(10)),
        cancel_at_period_end=True,
        current_period_end=at(D + days(20)),
    )
    with_subscription("resubscribed", canceled_at=at(D - days(50)))
    w.subscription(w.stripe_customer(keys["resubscribed"]), at(D - days(40)))
    keys["not_in_stripe"] = w.account(LONG_AGO)
    keys["starts_after_d"] = w.account(D + days(1))
    keys["deleted_before_d"] = w.account(LONG_AGO)
    keys["deleted_after_d"] = w.account(LONG_AGO)
    w.update(raw_sf_account, (keys["deleted_before_d"],), is_deleted=True, source_updated_at=at(D - days(5)))
    w.update(raw_sf_account, (keys["deleted_after_d"],), is_deleted=True, source_updated_at=at(D + days(5)))

    present = set(signals_of(warehouse_url, w)["account_key"])
    expected = {"live", "canceled_after_d", "canceled_at_period_end_after_d", "resubscribed", "not_in_stripe"}
    expected |= {"deleted_after_d"}
    assert {name for name, key in keys.items() if key in present} == expected


def test_an_account_with_no_data_gets_nan_not_zero_where_the_spec_says_missing(warehouse_url):
    w = RawWorld()
    bare = w.account(D - days(100), plan="starter", seats=4, arr=4800.0, parent_id="001PARENT000000AAA")

    signals = row(signals_of(warehouse_url, w), bare)
    assert (signals["plan"], signals["seats"], signals["arr"]) == ("starter", 4, 4800.0)
    assert signals["customer_since"] == D - days(100)
    assert signals["tenure_days"] == 100
    assert signals["parent_account_key"] == "001PARENT000000AAA"
    assert signals["as_of_date"] == D
    # no source system connected, no record anywhere: every signal is missing
    assert [key for key in SIGNAL_COLUMNS if not is_nan(signals[key])] == []


def test_the_frame_has_the_account_columns_then_one_float_column_per_signal(warehouse_url):
    w = RawWorld()
    w.account(LONG_AGO)
    frame = signals_of(warehouse_url, w)
    assert list(frame.columns) == list(ACCOUNT_COLUMNS) + list(SIGNALS)
    assert all(frame[key].dtype == float for key in SIGNALS)


def test_account_keys_restrict_the_computation_to_a_shard(warehouse_url):
    w = RawWorld()
    keys = [w.account(LONG_AGO) for _ in range(4)]
    w.save(engine_for(warehouse_url))

    frame = both_ways(engine_for(warehouse_url), D, account_keys=keys[1:3])
    assert list(frame["account_key"]) == keys[1:3]
    assert compute_signals(engine_for(warehouse_url), D, account_keys=[]).empty
    assert compute_signals_range(engine_for(warehouse_url), D, D, account_keys=[]).empty


def test_as_of_must_be_a_date_not_a_datetime(warehouse_url):
    with pytest.raises(TypeError, match="as_of must be a datetime.date"):
        compute_signals(engine_for(warehouse_url), at(D))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- point in time
def rich_world() -> tuple[RawWorld, dict[str, object]]:
    """One account with data for every signal, and handles to its records for later edits."""
    w = RawWorld()
    return w, rich_account(w, D, LONG_AGO)


def test_the_rich_world_has_a_value_for_every_signal(warehouse_url):
    world, handles = rich_world()
    signals = row(signals_of(warehouse_url, world), handles["acme"])
    assert [key for key in SIGNALS if is_nan(signals[key])] == []


FUTURE_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "usage", "feature_use", "ticket", "solve_open_ticket", "rating", "invoice", "pay_late",
                "dispute", "nps", "backdated_task", "cancel_subscription", "new_subscription",
                "delete_ticket", "new_account", "new_product_account", "late_reply",
            ]
        ),
        st.integers(min_value=0, max_value=400),  # days after D+1 00:00
        st.integers(min_value=0, max_value=23),  # hour
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=FUTURE_EVENTS)
def test_nothing_dated_after_d_changes_the_signals_for_d(warehouse_url, events):
    engine = engine_for(warehouse_url)
    world, h = rich_world()
    world.save(engine)  # re-saving resets the edits an earlier example made
    before = both_ways(engine, D)

    later = RawWorld(id_offset=1_000_000)
    for kind, offset, hour in events:
        when = at(D + days(1 + offset), hour)
        day = when.date()
        if kind == "usage":
            later.usage(h["product"], day, active_users=50, logins=500)
        elif kind == "feature_use":
            later.feature_use(h["product"], day, "alerts", events=99)
        elif kind == "ticket":
            later.ticket(h["org"], when, priority="urgent", category="complaint")
        elif kind == "solve_open_ticket":
            world.update(raw_zd_ticket, (h["open_ticket"],), solved_at=when, status="solved", reopens=3,
                         full_resolution_minutes=99_999)
        elif kind == "rating":
            later.rating(h["org"], "bad", when)
        elif kind == "invoice":
            later.invoice(h["customer"], when, subtotal=1, usage_amount=99_999, subscription_id=h["subscription"])
        elif kind == "pay_late":
            for invoice in h["unpaid_invoices"]:
                world.update(raw_stripe_invoice, (invoice,), paid_at=when, status="paid", attempt_count=5)
        elif kind == "dispute":
            later.dispute(f"ch_{h['acme']}_5", when)
        elif kind == "nps":
            later.nps(h["acme"], 0, when, contact_id=contact_of(h["acme"], 1))
        elif kind == "backdated_task":
            later.task(h["acme"], D - days(offset % 30), created_at=when, is_executive_touch=True,
                       outreach_responded=False)
        elif kind == "cancel_subscription":
            world.update(raw_stripe_subscription, (h["subscription"],), canceled_at=when, status="canceled")
        elif kind == "new_subscription":
            later.subscription(h["customer"], when, unit_amount=1)
        elif kind == "delete_ticket":
            world.update(raw_zd_ticket, (h["open_ticket"],), is_deleted=True, source_updated_at=when)
        elif kind == "new_account":
            later.account(day)
        elif kind == "new_product_account":
            later.product_account(h["acme"], created_at=when)
        elif kind == "late_reply":
            world.update(raw_sf_task, (h["unanswered_outreach"],), outreach_responded=True, source_updated_at=when)
    world.save(engine)
    later.save(engine)

    pd.testing.assert_frame_equal(both_ways(engine, D), before)


def test_records_stamped_late_on_d_do_count(warehouse_url):
    """The control for the property above: the boundary is the end of D, not its start."""
    w = RawWorld()
    acme = w.account(LONG_AGO)
    org = w.zendesk_org(acme)
    w.ticket(org, at(D, 23, 59))
    w.nps(acme, 7, at(D, 23, 59))

    signals = row(signals_of(warehouse_url, w), acme)
    assert (signals["open_tickets"], signals["nps"]) == (1, 7)


def test_a_ticket_deleted_before_d_is_gone_and_one_deleted_after_d_still_counts(warehouse_url):
    w = RawWorld()
    acme = w.account(LONG_AGO)
    org = w.zendesk_org(acme)
    gone = w.ticket(org, at(D - days(10)))
    later = w.ticket(org, at(D - days(10)))
    w.update(raw_zd_ticket, (gone,), is_deleted=True, source_updated_at=at(D - days(1)))
    w.update(raw_zd_ticket, (later,), is_deleted=True, source_updated_at=at(D + days(1)))

    assert row(signals_of(warehouse_url, w), acme)["open_tickets"] == 1


# --------------------------------------------------------------------------- history and storage
def test_a_history_range_equals_the_daily_runs(warehouse_url):
    engine = engine_for(warehouse_url)
    world, _ = rich_world()
    world.account(D - days(1))  # becomes a customer inside the range
    world.save(engine)

    history = compute_signals_range(engine, D - days(2), D)
    daily = pd.concat([compute_signals(engine, D - days(back)) for back in (2, 1, 0)], ignore_index=True)
    pd.testing.assert_frame_equal(history, daily)
    assert history.groupby("as_of_date").size().to_dict() == {D - days(2): 1, D - days(1): 2, D: 2}


def test_a_history_range_that_ends_before_it_starts_is_refused(warehouse_url):
    with pytest.raises(ValueError, match="end 2026-06-29 is before start 2026-06-30"):
        compute_signals_range(engine_for(warehouse_url), D, D - days(1))


def test_signal_input_is_stored_one_row_per_account_with_nulls_and_overwritten_on_rerun(warehouse_url):
    engine = engine_for(warehouse_url)
    world, handles = rich_world()
    bare = world.account(LONG_AGO)
    world.save(engine)
    frame = compute_signals(engine, D)

    assert write_signal_frame(engine, frame) == 2
    rerun = frame.copy()
    rerun.loc[rerun["account_key"] == handles["acme"], "nps"] = 1.5
    assert write_signal_frame(engine, rerun) == 2

    with engine.connect() as conn:
        stored = {r.account_key: r for r in conn.execute(select(signal_values).where(signal_values.c.as_of_date == D))}
    assert set(stored) == {handles["acme"], bare}
    assert stored[handles["acme"]].nps == 1.5
    assert stored[bare].nps is None
    assert stored[bare].open_tickets is None  # no Zendesk organization: missing, stored NULL
    assert stored[handles["acme"]].open_tickets == 1.0
    back = read_signal_frame(engine, D)
    expected = rerun.sort_values("account_key").reset_index(drop=True)[back.columns]
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)


def test_writing_a_frame_without_its_keys_names_the_missing_columns(warehouse_url):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['as_of_date'\]"):
        write_signal_frame(engine_for(warehouse_url), pd.DataFrame({"account_key": ["x"], "nps": [1.0]}))
