"""Explain every score: its top drivers, what changed, and one sentence a CSM can act on.

*Drivers.* Each present signal contributes ``weight * (normalized - 50)`` points relative
to a neutral 50, where ``weight`` is its effective weight after missing-data reweighting;
the contributions of an account add up exactly to ``score - 50`` (before rounding). The most
negative are the signals pulling the score down, the most positive those holding it up.

*Changes.* The biggest changes since ``explanations.change_window_days`` ago are the signals
whose weighted normalized value moved most, where the earlier raw values (from
``signal_values`` of that date) are normalized against *today's* baselines. Decision: the
change then measures what the account did, not how the population's yardstick drifted, and
it needs only that date's raw values - no normalized history has to be stored.

*Text.* Only the top drivers are turned into words, with the signal catalogue's description
templates (``"active users {value:.0%} of seats"``). Formatting is vectorized: each template
formats the distinct values once (rounded to its precision) and the strings are assembled
with array concatenation, so a million accounts cost a few hundred milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from customer_health.scoring.model_config import ModelConfig
from customer_health.scoring.score import zones
from customer_health.scoring.signal_catalog import SIGNALS, fill_template, value_spec

_FIXED_SPEC = re.compile(r"[^.]*\.(\d+)([f%])")


def signal_templates(config: ModelConfig) -> dict[str, str]:
    """Description template per model signal, from the signal catalogue.

    A signal the catalogue does not know reads as its key and value (``"login frequency 3.2"``).
    """
    templates = {}
    for key in config.signal_keys:
        spec = SIGNALS.get(key)
        template = getattr(spec, "description", None) if spec is not None else None
        templates[key] = template if isinstance(template, str) and "{value" in template else key.replace("_", " ") + " {value:.3g}"
    return templates


@dataclass(frozen=True)
class Drivers:
    """Ranked drivers per account (accounts x slots; index -1 / NaN points = empty slot)."""

    down_index: np.ndarray
    down_points: np.ndarray
    up_index: np.ndarray
    up_points: np.ndarray
    change_index: np.ndarray
    change_points: np.ndarray


# Rows per block of the row-wise passes: a block's (rows x signals) temporaries stay in the CPU
# cache, and a million accounts never hold more than a few blocks' worth of scratch memory.
BLOCK_ROWS = 1 << 16


def _top_k(values: np.ndarray, k: int, *, largest: bool = True) -> np.ndarray:
    """Column indices of the k largest (or smallest) values per row, best first.

    ``values`` is a row-major block of finite values (callers replace NaN first). ``argmax``
    and ``argmin`` return the first of equal values, so ties go to the signal listed first in
    the config; each pick is then masked with -inf/+inf so the next pass skips it.
    """
    m = values.shape[0]
    work = np.array(values, order="C")
    out = np.empty((m, k), dtype=np.intp)
    rows = np.arange(m)
    fill = -np.inf if largest else np.inf
    for slot in range(k):
        index = work.argmax(axis=1) if largest else work.argmin(axis=1)
        out[:, slot] = index
        work[rows, index] = fill
    return out


def rank_drivers(
    weights: np.ndarray,
    normalized: np.ndarray,
    previous_normalized: np.ndarray | None,
    config: ModelConfig,
) -> Drivers:
    """Top contributions down/up and the biggest weighted changes, per account (vectorized).

    Contributions and changes are computed in float64 and stored in float32 (ample for
    ranking and for points shown to 0.1), one block of rows at a time.
    """
    ec = config.explanations
    n, s = normalized.shape
    k = min(ec.driver_count, s)
    kc = min(ec.change_count, s)
    with_changes = previous_normalized is not None and kc > 0
    threshold = max(ec.min_change_points, 1e-9)
    down_index = np.empty((n, k), dtype=np.intp)
    down_points = np.empty((n, k))
    up_index = np.empty((n, k), dtype=np.intp)
    up_points = np.empty((n, k))
    change_index = np.full((n, kc), -1, dtype=np.intp)
    change_points = np.full((n, kc), np.nan)
    for start in range(0, n, BLOCK_ROWS):
        block = slice(start, min(n, start + BLOCK_ROWS))
        w = weights[block]
        # weights are 0 for missing signals, so their contribution is 0 without a mask.
        contributions = ((np.nan_to_num(normalized[block], nan=50.0) - 50.0) * w).astype(np.float32, order="C")
        index = _top_k(contributions, k, largest=True)
        up_index[block] = index
        up_points[block] = np.take_along_axis(contributions, index, axis=1)
        index = _top_k(contributions, k, largest=False)
        down_index[block] = index
        down_points[block] = np.take_along_axis(contributions, index, axis=1)
        if with_changes:
            change = ((normalized[block] - previous_normalized[block]) * w).astype(np.float32, order="C")
            magnitude = np.abs(change)
            magnitude[np.isnan(magnitude)] = -1.0
            order = _top_k(magnitude, kc)
            ok = np.take_along_axis(magnitude, order, axis=1) >= threshold
            change_index[block] = np.where(ok, order, -1)
            change_points[block] = np.where(ok, np.take_along_axis(change, order, axis=1), np.nan)
    # Rounded to the 0.1 point we print: a -0.04 "driver" is noise.
    down_ok = np.round(down_points, 1) < 0
    up_ok = np.round(up_points, 1) > 0
    return Drivers(
        down_index=np.where(down_ok, down_index, -1),
        down_points=np.where(down_ok, down_points, np.nan),
        up_index=np.where(up_ok, up_index, -1),
        up_points=np.where(up_ok, up_points, np.nan),
        change_index=change_index,
        change_points=change_points,
    )


# --------------------------------------------------------------------------- vectorized text
# Row separator of the bulk string assembly; any table text holding it takes the slow path.
_SEP = "\x00"
# Rows per bulk join: bounds the transient list and buffer to a few tens of MB.
JOIN_ROWS = 1 << 17


def _factorize(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and distinct values of ``codes`` in order of first appearance (pandas hash table)."""
    import pandas as pd

    return pd.factorize(codes)


def _factorized(codes: np.ndarray, render) -> tuple[np.ndarray, np.ndarray]:
    """Render each distinct code once (``render(code) -> str``): the (table, labels) pair.

    Driver items and sentence fragments repeat heavily across accounts (15 signals, scores
    0-100, points in 0.1 steps), so a million rows need only thousands of Python formats.
    """
    labels, uniques = _factorize(codes)
    return np.array([render(int(u)) for u in uniques], dtype=object), labels


def join_rows(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Row-wise concatenation of string pieces given as (table, labels) pairs.

    Row ``i`` is ``table_0[labels_0[i]] + table_1[labels_1[i]] + ...``. Instead of one Python
    join per row, a block of rows is laid out as one flat list (pieces, then a separator),
    joined once and split once: two C loops per block, about half the cost of a row-by-row
    join of a million rows.
    """
    tables = [np.asarray(table, dtype=object) for table, _ in parts]
    out = np.empty(n, dtype=object)
    if not n:
        return out
    if any(_SEP in text for table in tables for text in table):  # never with the shipped templates
        gathered = [table[labels] for table, (_, labels) in zip(tables, parts, strict=True)]
        out[:] = list(map("".join, zip(*gathered, strict=True)))
        return out
    width = len(parts) + 1
    for start in range(0, n, JOIN_ROWS):
        stop = min(n, start + JOIN_ROWS)
        layout = np.empty((stop - start, width), dtype=object)
        for i, (table, (_, labels)) in enumerate(zip(tables, parts, strict=True)):
            layout[:, i] = table[labels[start:stop]]
        layout[:, -1] = _SEP
        texts = "".join(layout.ravel().tolist()).split(_SEP)
        texts.pop()  # after the last separator
        out[start:stop] = texts
    return out


def _decimals(spec: str) -> int | None:
    """Decimals a fixed-point spec prints (a percentage prints two more), None otherwise."""
    match = _FIXED_SPEC.fullmatch(spec)
    return int(match.group(1)) + (2 if match.group(2) == "%" else 0) if match else None


def _rounding_key(values: np.ndarray, spec: str) -> np.ndarray:
    decimals = _decimals(spec)
    return np.round(values, decimals) if decimals is not None else values


def _value_codes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (-1 for NaN) and distinct values of float keys, told apart by their bits.

    By bits, not by ``==``: -0.0 and 0.0 print differently ("-0%" vs "0%"), and each value
    must print as itself, whatever other accounts hold (a float factorize would give every
    zero the sign of the first one it met, so an account's text would depend on its batch).
    """
    keys = np.asarray(keys, dtype=float)
    missing = np.isnan(keys)
    bits = keys.view(np.int64).copy()
    bits[missing] = 0
    labels, uniques = _factorize(bits)
    labels[missing] = -1
    return labels, uniques.view(float)


def format_values(values: np.ndarray, spec: str) -> np.ndarray:
    """``format(value, spec)`` for an array, formatting each distinct printed value once.

    Fixed-point specs (``.0%``, ``+.0%``, ``.1f``) round first, so a million ratios become at
    most a few hundred distinct strings; NaN prints as ``n/a``.
    """
    labels, uniques = _value_codes(_rounding_key(np.asarray(values, dtype=float), spec))
    table = np.array([format(float(u), spec) for u in uniques] + ["n/a"], dtype=object)
    return table[labels]


def _fill(template: str, value: float) -> str:
    if np.isnan(value):
        return "no data"
    try:
        return fill_template(template, value)
    except (KeyError, IndexError, ValueError):  # a template we cannot fill stays readable
        return f"{template} ({value:.3g})"


def describe_values(values: np.ndarray, template: str) -> np.ndarray:
    """The template filled with each value (``"active users 34% of seats"``), vectorized."""
    labels, uniques = _value_codes(_rounding_key(np.asarray(values, dtype=float), value_spec(template)))
    table = np.array([_fill(template, float(u)) for u in uniques] + ["no data"], dtype=object)
    return table[labels]


def _signal_piece(
    signal: np.ndarray, with_was: np.ndarray, comma: np.ndarray, raw: np.ndarray, previous_raw: np.ndarray | None,
    templates: Mapping[str, str], keys: list[str],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One sentence slot as two (table, labels) pieces: the driver's text, then "(was ...)".

    ``signal`` is each row's driver column (-1: none, both pieces ""); ``with_was`` adds
    " (was <earlier value>)"; ``comma`` prefixes ", ". Values are rounded as their template
    prints them, and each distinct (signal, printed value) is rendered once per piece: the
    two pieces are kept apart so that the pairs of today's and earlier values, nearly one
    per account, never need a Python format each.
    """
    n = len(signal)
    rows = np.flatnonzero(signal >= 0)
    text_labels = np.zeros(n, dtype=np.intp)  # 0 = the empty piece
    was_labels = np.zeros(n, dtype=np.intp)
    empty = np.array([""], dtype=object)
    if not len(rows):
        return [(empty, text_labels), (empty, was_labels)]
    sig = signal[rows]
    specs = [value_spec(templates[key]) for key in keys]
    value = raw[rows, sig]
    has_was = with_was[rows] if previous_raw is not None else np.zeros(len(rows), dtype=bool)
    was_rows, was_sig = rows[has_was], sig[has_was]
    was = previous_raw[was_rows, was_sig] if len(was_rows) else np.zeros(0)
    for j in np.flatnonzero(np.bincount(sig)):  # the signals this slot names
        decimals = _decimals(specs[j])
        if decimals is not None:
            at = sig == j
            value[at] = np.round(value[at], decimals)
            at = was_sig == j
            was[at] = np.round(was[at], decimals)

    value_label, value_uniques = _value_codes(value)
    n_values = len(value_uniques) + 1
    code = (sig.astype(np.int64) * n_values + value_label + 1) * 2 + comma[rows]

    def render_text(c: int) -> str:
        c, with_comma = divmod(c, 2)
        j, v = divmod(c, n_values)
        return (", " if with_comma else "") + _fill(templates[keys[j]], float(value_uniques[v - 1]) if v else np.nan)

    table, labels = _factorized(code, render_text)
    text_labels[rows] = labels + 1
    pieces = [(np.concatenate([empty, table]), text_labels)]

    was_label, was_uniques = _value_codes(was)
    n_was = len(was_uniques) + 1
    code = was_sig.astype(np.int64) * n_was + was_label + 1

    def render_was(c: int) -> str:
        j, w = divmod(c, n_was)
        return " (was " + (format(float(was_uniques[w - 1]), specs[j]) if w else "n/a") + ")"

    table, labels = _factorized(code, render_was)
    was_labels[was_rows] = labels + 1
    pieces.append((np.concatenate([empty, table]), was_labels))
    return pieces


def _items(
    index: np.ndarray, points: np.ndarray, now: np.ndarray | None,
    keys: list[str], comma: bool, lead: str = "", trail: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """JSON item per row for one driver slot: ``["signal", points(, score)]``, as (table, labels).

    ``lead``/``trail`` are constant JSON glue attached to every row (valid slot or not), so
    the whole document is one join of the slot pieces.
    """
    valid = index >= 0
    pts = np.clip(np.nan_to_num(np.round(points * 10.0)), -1000, 1000).astype(np.int64) + 1000
    code = (index.astype(np.int64) + 1) * 2001 + pts
    if now is not None:
        code = code * 101 + np.clip(np.nan_to_num(np.round(now)), 0, 100).astype(np.int64)
    code = np.where(valid, code, -1)
    sep = "," if comma else ""

    def render(c: int) -> str:
        if c < 0:
            return lead + trail
        now_text = ""
        if now is not None:
            c, now_i = divmod(c, 101)
            now_text = f",{now_i}"
        sig, p = divmod(c, 2001)
        return f'{lead}{sep}["{keys[sig - 1]}",{(p - 1000) / 10:.1f}{now_text}]{trail}'

    return _factorized(code, render)


@dataclass(frozen=True)
class Explanations:
    """Per-account drivers JSON and explanation sentence."""

    drivers_json: np.ndarray
    sentence: np.ndarray


def drivers_document(
    drivers: Drivers, normalized: np.ndarray, previous_normalized: np.ndarray | None, keys: list[str]
) -> np.ndarray:
    """The ``health_scores.drivers`` JSON of every row.

    ``{"down": [[signal, points, score], ...], "up": [...], "changes": [[signal, points],
    ...]}`` - points are score points versus a neutral 50 (changes: gained or lost over the
    change window), score the signal's normalized 0-100 value.
    """
    n = normalized.shape[0]
    rows = np.arange(n)

    def norm_at(matrix: np.ndarray | None, index: np.ndarray) -> np.ndarray:
        if matrix is None or not matrix.shape[1]:
            return np.full(n, np.nan)
        return matrix[rows, np.clip(index, 0, None)]

    slots: list[tuple[np.ndarray, np.ndarray]] = []
    groups = (
        ("down", drivers.down_index, drivers.down_points, False),
        ("up", drivers.up_index, drivers.up_points, False),
        ("changes", drivers.change_index, drivers.change_points, True),
    )
    del previous_normalized  # changes carry their points; the text says what the values were
    constant = np.zeros(n, dtype=np.intp)
    for g, (kind, index, points, is_change) in enumerate(groups):
        opening = ("{" if g == 0 else "],") + f'"{kind}":['
        k = index.shape[1]
        if k == 0:
            slots.append((np.array([opening], dtype=object), constant))
        for slot in range(k):
            idx = index[:, slot]
            slots.append(
                _items(
                    idx, points[:, slot], None if is_change else norm_at(normalized, idx),
                    keys, comma=slot > 0, lead=opening if slot == 0 else "",
                )
            )
    slots.append((np.array(["]}"], dtype=object), constant))
    return join_rows(slots, n)


def _coverage_notes(
    absent_dimensions: np.ndarray | None, constant: np.ndarray | None, keys: list[str], n: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sentence's coverage notes: dimensions without data, and signals constant that day."""
    from customer_health.scoring.model_config import DIMENSIONS

    notes: list[tuple[np.ndarray, np.ndarray]] = []
    if absent_dimensions is not None and absent_dimensions.size:
        mask = (np.asarray(absent_dimensions, dtype=np.int64) << np.arange(absent_dimensions.shape[1])).sum(axis=1)

        def missing(code: int) -> str:
            names = [d for i, d in enumerate(DIMENSIONS) if code >> i & 1]
            if not names:
                return ""
            listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
            return f"; no {listed} data (weight moved to the rest)"

        notes.append(_factorized(mask, missing))
    if constant is not None and np.any(constant):
        labels = [SIGNALS[k].label if k in SIGNALS else k.replace("_", " ") for k, c in zip(keys, constant, strict=True) if c]
        text = "; not weighted today, the same for every account: " + ", ".join(labels)
        notes.append((np.array([text], dtype=object), np.zeros(n, dtype=np.intp)))
    return notes


def explain(
    drivers: Drivers,
    normalized: np.ndarray,
    previous_normalized: np.ndarray | None,
    raw: np.ndarray,
    previous_raw: np.ndarray | None,
    score: np.ndarray,
    delta: np.ndarray,
    coverage: np.ndarray,
    low_coverage: np.ndarray,
    config: ModelConfig,
    templates: Mapping[str, str] | None = None,
    *,
    absent_dimensions: np.ndarray | None = None,
    constant: np.ndarray | None = None,
) -> Explanations:
    """Drivers JSON and one sentence per account, built only from the top drivers.

    The sentence tells the change story when the score moved at least
    ``explanations.min_delta_for_change_story`` points over the change window and some
    signal changed the same way ("Score 82 -> 61 in 30 days: active users 34% of seats (was
    71%), ..."); otherwise what holds the score down ("Score 41 (At Risk), held down by:
    ..."), or for an account with nothing pulling down, what lifts it. Texts are rendered
    only for the drivers a row's sentence uses, once per distinct text.

    The coverage is said at the end: the weighted dimensions the account had no data in
    (``absent_dimensions``, accounts x dimensions: their weight went to the others), the
    signals not weighted that day because every account had the same value (``constant``, one
    flag per signal), and low coverage.
    """
    keys = config.signal_keys
    templates = templates or signal_templates(config)
    ec = config.explanations
    n = len(score)
    score = np.asarray(score, dtype=np.int64)
    delta = np.asarray(delta, dtype=float)
    coverage = np.asarray(coverage, dtype=float)
    zone_names = np.asarray(zones(np.arange(101), config), dtype=object)

    # Which story each row tells: 1 change, 2 held down, 3 lifted, 4 bare, 0 no data.
    has_down = drivers.down_index[:, 0] >= 0 if drivers.down_index.shape[1] else np.zeros(n, bool)
    has_up = drivers.up_index[:, 0] >= 0 if drivers.up_index.shape[1] else np.zeros(n, bool)
    falling = delta < 0
    change_ok = [
        (drivers.change_index[:, k] >= 0) & ((drivers.change_points[:, k] < 0) == falling)
        for k in range(drivers.change_index.shape[1])
    ]
    any_change = np.logical_or.reduce(change_ok) if change_ok else np.zeros(n, bool)
    moved = ~np.isnan(delta) & (np.abs(delta) >= ec.min_delta_for_change_story) & any_change
    if previous_raw is None:
        moved[:] = False
    story = np.select([coverage == 0, moved, has_down, has_up], [0, 1, 2, 3], default=4)

    # Slot k of every row: the signal its story names there (-1: none). A row tells one story,
    # so one pass per slot covers all three; a comma goes only between the fragments a row has.
    stories = (
        (1, drivers.change_index, change_ok),
        (2, drivers.down_index, None),
        (3, drivers.up_index, None),
    )
    width = max(index.shape[1] for _, index, _ in stories)
    pieces: list[tuple[np.ndarray, np.ndarray]] = []
    any_before = np.zeros(n, dtype=bool)
    for k in range(width):
        signal = np.full(n, -1, dtype=np.intp)
        with_was = np.zeros(n, dtype=bool)
        for kind, index, oks in stories:
            if k >= index.shape[1]:
                continue
            ok = (story == kind) & (index[:, k] >= 0)
            if oks is not None:
                ok &= oks[k]
                with_was |= ok
            signal[ok] = index[ok, k]
        present = signal >= 0
        pieces += _signal_piece(signal, with_was, present & any_before, raw, previous_raw, templates, keys)
        any_before |= present

    window = ec.change_window_days
    was = np.clip(score - np.round(np.nan_to_num(delta)).astype(np.int64), 0, 100)
    prefix_code = story * 10201 + np.where(story == 1, was, 0) * 101 + score

    def prefix(c: int) -> str:
        kind, rest = divmod(c, 10201)
        before, now = divmod(rest, 101)
        head = f"Score {now} ({zone_names[now]})"
        return {
            0: f"{head}: no signal data",
            1: f"Score {before} -> {now} in {window} days: ",
            2: f"{head}, held down by: ",
            3: f"{head}, lifted by: ",
        }.get(kind, head)

    low = np.asarray(low_coverage, dtype=bool) & (story != 0)
    coverage_pct = np.clip(np.round(coverage * 100.0), 0, 100).astype(np.int64)
    suffix = _factorized(
        np.where(low, coverage_pct, -1),
        lambda c: "" if c < 0 else f"; low data coverage ({c}% of the model's weight)",
    )
    sentence = join_rows([_factorized(prefix_code, prefix), *pieces, *_coverage_notes(absent_dimensions, constant, keys, n), suffix], n)
    return Explanations(
        drivers_json=drivers_document(drivers, normalized, previous_normalized, keys), sentence=sentence
    )
