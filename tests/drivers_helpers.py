"""Drivers documents for hand-built score rows, written by the engine's own writer.

Where a test needs a score row with particular drivers (a precise zone path, say), the
``drivers`` JSON still comes from ``scoring.explain.drivers_document`` - the function the
engine writes every score with - and is read back through ``scoring.drivers.read_drivers``,
so a test can never store a shape the product would not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from customer_health.scoring.drivers import read_drivers
from customer_health.scoring.explain import Drivers, drivers_document
from customer_health.scoring.signal_catalog import SIGNALS

KEYS = list(SIGNALS)


def _slots(entries: Sequence[tuple], width: int) -> tuple[np.ndarray, np.ndarray]:
    index = np.full((1, width), -1, dtype=np.intp)
    points = np.full((1, width), np.nan)
    for slot, (signal, pts, *_rest) in enumerate(entries):
        index[0, slot] = KEYS.index(signal)
        points[0, slot] = pts
    return index, points


def engine_drivers(
    down: Sequence[tuple[str, float, float]] = (),
    up: Sequence[tuple[str, float, float]] = (),
    changes: Sequence[tuple[str, float]] = (),
) -> str:
    """The stored drivers JSON of one score: ``down``/``up`` as (signal, points, normalized score),
    ``changes`` as (signal, points)."""
    normalized = np.full((1, len(KEYS)), 50.0)
    for signal, _points, score in (*down, *up):
        normalized[0, KEYS.index(signal)] = score
    width = max(len(down), len(up), 1)
    down_index, down_points = _slots(down, width)
    up_index, up_points = _slots(up, width)
    change_index, change_points = _slots(changes, max(len(changes), 1))
    document = drivers_document(
        Drivers(down_index, down_points, up_index, up_points, change_index, change_points), normalized, None, KEYS
    )[0]
    read_drivers(document)  # the documented shape, or a DriversFormatError naming the entry
    return document
