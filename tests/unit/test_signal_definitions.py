"""Every signal is defined once, and missing is missing - for every signal, on SQLite and
PostgreSQL, evaluated both ways (for the date in SQL, and as a range of one date).

* The catalog, the ``signal_values`` columns and the signals a model may weight are the
  definitions, in their order.
* Without the source system a signal ``requires``, the signal is NULL however much other data
  the account has.
* Connected but quiet (no record in any window), a signal is its declared ``when_quiet``: a
  real 0 for counts, NULL for shares of nothing.
* A signal whose window must lie inside the tenure (``needs_tenure_days``) is NULL one day
  short of it and present on the day the window fits.
"""

from __future__ import annotations

from datetime import date

import pytest

from customer_health.scoring.explain import signal_templates
from customer_health.scoring.model_config import known_signals, load_model_config
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signals import DEFINITIONS, PRODUCT, STRIPE, ZENDESK, signal_keys
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import SIGNAL_VALUE_COLUMNS, signal_values
from tests.unit.signal_fixtures import RawWorld, both_ways, days, is_nan, rich_account, row

D = date(2026, 6, 30)
LONG_AGO = date(2024, 1, 1)
BY_KEY = {signal.key: signal for signal in DEFINITIONS}
SYSTEMS = {PRODUCT.name: "product", ZENDESK.name: "zendesk", STRIPE.name: "stripe"}


def test_the_catalog_the_storage_and_the_model_take_their_signals_from_the_definitions():
    keys = [signal.key for signal in DEFINITIONS]
    assert list(SIGNALS) == keys == list(signal_keys())
    assert list(SIGNAL_VALUE_COLUMNS) == keys
    assert [c.name for c in signal_values.columns][-len(keys):] == keys
    assert list(known_signals()) == keys
    templates = signal_templates(load_model_config())
    assert all(templates[key] == BY_KEY[key].reading for key in templates)


def test_every_signal_states_its_missing_data_rule():
    for signal in DEFINITIONS:
        assert signal.dimension == "sentiment" or signal.requires is not None, signal.key
        if signal.when_quiet is not None:
            assert signal.when_quiet == 0.0 and signal.unit in (
                "tickets", "failures", "logins per seat per week", "share of seats", "share of core features",
            ), signal.key  # fmt: skip


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_a_signal_is_missing_without_the_source_system_it_requires(warehouse_url, system):
    w = RawWorld()
    handles = rich_account(w, D, LONG_AGO, **{SYSTEMS[system]: False})
    frame = both_ways(_saved(warehouse_url, w), D)

    signals = row(frame, handles["acme"])
    needing = [s.key for s in DEFINITIONS if s.requires is not None and s.requires.name == system]
    assert needing
    assert {key: signals[key] for key in needing if not is_nan(signals[key])} == {}
    others = [s.key for s in DEFINITIONS if s.requires is None or s.requires.name != system]
    assert [key for key in others if is_nan(signals[key])] == []


def test_a_connected_account_without_any_record_gets_each_signals_declared_quiet_value(warehouse_url):
    w = RawWorld()
    w.feature("reports")
    quiet = w.account(LONG_AGO, seats=10)
    w.product_account(quiet)
    w.zendesk_org(quiet)
    w.stripe_customer(quiet)
    signals = row(both_ways(_saved(warehouse_url, w), D), quiet)

    for signal in DEFINITIONS:
        if signal.when_quiet is None:
            assert is_nan(signals[signal.key]), signal.key
        else:
            assert signals[signal.key] == signal.when_quiet, signal.key


@pytest.mark.parametrize("key", [s.key for s in DEFINITIONS if s.needs_tenure_days])
def test_a_signal_whose_window_must_fit_the_tenure_is_missing_one_day_short_of_it(warehouse_url, key):
    needed = BY_KEY[key].needs_tenure_days
    w = RawWorld()
    fits = rich_account(w, D, D - days(needed))["acme"]
    short = rich_account(w, D, D - days(needed - 1))["acme"]
    frame = both_ways(_saved(warehouse_url, w), D)

    assert row(frame, fits)["tenure_days"] == needed
    assert not is_nan(row(frame, fits)[key])
    assert is_nan(row(frame, short)[key])


def _saved(url: str, world: RawWorld):
    engine = engine_for(url)
    world.save(engine)
    return engine
