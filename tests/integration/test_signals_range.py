"""The signal definitions evaluated over a range of dates equal their evaluation per date.

The test company (120 accounts, 400 days) is extracted with the real extraction functions and
loaded into SQLite and PostgreSQL (``tests/history_helpers.py``); ``compute_signals_range``
(the rebuild's vectorized evaluation) then computes a 45-day range in chunks of 10 dates (so
chunk boundaries fall inside the range) and every date is compared with ``compute_signals``
(the daily run's SQL push-down): same accounts in the same order, same account columns, every
signal equal within 1e-9 with NaN equal to NaN.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from customer_health.scoring.signals import (
    ACCOUNT_COLUMNS,
    SIGNAL_COLUMNS,
    compute_signals,
    compute_signals_range,
    iter_signal_chunks,
)
from customer_health.warehouse.engine import engine_for
from tests.conftest import TEST_END_DATE
from tests.history_helpers import extracted_template, load_warehouse

pytestmark = pytest.mark.slow

LAST = TEST_END_DATE
FIRST = LAST - timedelta(days=44)


def assert_same_signals(expected: pd.DataFrame, actual: pd.DataFrame, day) -> None:
    assert actual["account_key"].tolist() == expected["account_key"].tolist(), day
    for column in ACCOUNT_COLUMNS:
        left, right = expected[column].to_numpy(dtype=object), actual[column].to_numpy(dtype=object)
        same = [a == b or (pd.isna(a) and pd.isna(b)) for a, b in zip(left, right, strict=True)]
        assert all(same), (day, column, left[~np.array(same)][:3], right[~np.array(same)][:3])
    for column in SIGNAL_COLUMNS:
        left, right = expected[column].to_numpy(dtype=float), actual[column].to_numpy(dtype=float)
        same = (np.isnan(left) & np.isnan(right)) | (np.abs(left - right) <= 1e-9)
        assert same.all(), (day, column, left[~same][:3], right[~same][:3])


@pytest.fixture(scope="module")
def template(sandbox, tmp_path_factory):
    """The test company extracted up to its last day (once for the module)."""
    return extracted_template(sandbox, tmp_path_factory.mktemp("extracted"), LAST)


def test_signals_of_a_range_equal_the_daily_signals_of_every_date(template, warehouse_url):
    load_warehouse(template, warehouse_url)
    engine = engine_for(warehouse_url)

    history = compute_signals_range(engine, FIRST, LAST, chunk_days=10)

    assert sorted(set(history["as_of_date"])) == [FIRST + timedelta(days=k) for k in range(45)]
    for k in range(45):
        day = FIRST + timedelta(days=k)
        expected = compute_signals(engine, day)
        assert len(expected) > 0
        assert_same_signals(expected, history[history["as_of_date"] == day].reset_index(drop=True), day)


def test_a_shard_of_the_range_equals_the_daily_signals_of_that_shard(template, sqlite_warehouse_url):
    load_warehouse(template, sqlite_warehouse_url)
    engine = engine_for(sqlite_warehouse_url)
    keys = sorted(compute_signals(engine, LAST)["account_key"])[1::3]

    chunks = list(iter_signal_chunks(engine, LAST - timedelta(days=2), LAST, keys, chunk_days=2))

    assert len(chunks) == 2
    history = pd.concat(chunks, ignore_index=True)
    for back in range(3):
        day = LAST - timedelta(days=back)
        assert_same_signals(
            compute_signals(engine, day, keys), history[history["as_of_date"] == day].reset_index(drop=True), day
        )


def test_a_range_frame_as_stored_equals_what_the_store_reads_back(template, warehouse_url):
    """The one-pass rebuild scores ``as_stored(frame)`` instead of reading its own write back:
    it must be the very frame ``read_signal_frames`` returns - same dates, rows, columns,
    dtypes and values (NaN and None where the database gives them)."""
    from customer_health.scoring.signal_store import as_stored, read_signal_frames, write_signal_frame

    load_warehouse(template, warehouse_url)
    engine = engine_for(warehouse_url)
    frame = compute_signals_range(engine, FIRST, FIRST + timedelta(days=9), chunk_days=10)
    # Values the store must round-trip: a context column the frame lacks, NaN signals and text.
    frame = frame.drop(columns=["owner_id"])
    frame.loc[frame.index[::7], "seats"] = np.nan
    write_signal_frame(engine, frame)

    expected = read_signal_frames(engine, FIRST, FIRST + timedelta(days=9))
    actual = as_stored(frame, engine.dialect.name)

    assert list(actual) == list(expected) and len(expected) == 10
    for day, stored in expected.items():
        pd.testing.assert_frame_equal(actual[day], stored, check_exact=True, obj=str(day))
