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
import string
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from customer_health.scoring.model_config import ModelConfig
from customer_health.scoring.score import zones

_FIXED_SPEC = re.compile(r"[^.]*\.(\d+)([f%])")


def signal_templates(config: ModelConfig) -> dict[str, str]:
    """Description template per model signal, from the signal catalogue when available.

    Imported lazily: the scoring engine works on a frame and does not need the catalogue;
    without it a signal reads as its key and value (``"login frequency 3.2"``).
    """
    try:
        from customer_health.scoring.signal_catalog import SIGNALS
    except ImportError:
        SIGNALS = {}  # noqa: N806 - same name as the catalogue's constant
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


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest values per row, largest first (column-major input).

    k passes of vector compares over the (15) signal columns: for a handful of drivers this
    is cheaper than sorting a million rows, and needs no row-major copy. Ties go to the
    signal listed first in the config. NaN never wins.
    """
    n, s = values.shape
    out = np.zeros((n, k), dtype=np.intp)
    taken = np.zeros((s, n), dtype=bool)
    best = np.empty(n, dtype=values.dtype)
    better = np.empty(n, dtype=bool)
    rows = np.arange(n)
    for slot in range(k):
        best.fill(-np.inf)
        index = out[:, slot]
        for j in range(s):
            np.greater(values[:, j], best, out=better)
            better &= ~taken[j]
            np.copyto(best, values[:, j], where=better)
            np.copyto(index, j, where=better)
        taken[index, rows] = True
    return out


def rank_drivers(
    weights: np.ndarray,
    normalized: np.ndarray,
    previous_normalized: np.ndarray | None,
    config: ModelConfig,
) -> Drivers:
    """Top contributions down/up and the biggest weighted changes, per account (vectorized).

    Computed in float32: ample for ranking and for points shown to 0.1.
    """
    ec = config.explanations
    n, s = normalized.shape
    k = min(ec.driver_count, s)
    contributions = np.empty((n, s), dtype=np.float32, order="F")
    for j in range(s):
        # weights are 0 for missing signals, so their contribution is 0 without a mask.
        np.multiply(np.nan_to_num(normalized[:, j], nan=50.0) - 50.0, weights[:, j], out=contributions[:, j], casting="unsafe")
    rows = np.arange(n)[:, None]
    up_index = _top_k(contributions, k)
    up_points = contributions[rows, up_index].astype(float)
    np.negative(contributions, out=contributions)
    down_index = _top_k(contributions, k)
    down_points = -contributions[rows, down_index].astype(float)
    del contributions
    # Rounded to the 0.1 point we print: a -0.04 "driver" is noise.
    down_ok = np.round(down_points, 1) < 0
    up_ok = np.round(up_points, 1) > 0
    kc = min(ec.change_count, s)
    if previous_normalized is None or kc == 0:
        change_index = np.full((n, kc), -1, dtype=np.intp)
        change_points = np.full((n, kc), np.nan)
    else:
        change = np.empty((n, s), dtype=np.float32, order="F")
        for j in range(s):
            np.multiply(normalized[:, j] - previous_normalized[:, j], weights[:, j], out=change[:, j], casting="unsafe")
        magnitude = np.abs(change)
        magnitude[np.isnan(magnitude)] = -1.0
        corder = _top_k(magnitude, kc)
        change_points = change[rows, corder].astype(float)
        change_ok = magnitude[rows, corder] >= max(ec.min_change_points, 1e-9)
        change_index = np.where(change_ok, corder, -1)
        change_points = np.where(change_ok, change_points, np.nan)
    return Drivers(
        down_index=np.where(down_ok, down_index, -1),
        down_points=np.where(down_ok, down_points, np.nan),
        up_index=np.where(up_ok, up_index, -1),
        up_points=np.where(up_ok, up_points, np.nan),
        change_index=change_index,
        change_points=change_points,
    )


# --------------------------------------------------------------------------- vectorized text
def _factorized(codes: np.ndarray, render) -> np.ndarray:
    """Render each distinct code once (``render(code) -> str``) and gather per row.

    Driver items and sentence fragments repeat heavily across accounts (15 signals, scores
    0-100, points in 0.1 steps), so a million rows need only thousands of Python formats.
    """
    import pandas as pd

    labels, uniques = pd.factorize(codes)
    table = np.array([render(int(u)) for u in uniques], dtype=object)
    return table[labels] if len(labels) else np.zeros(0, dtype=object)


def _spec_of(template: str) -> str:
    for _literal, field, spec, _conv in string.Formatter().parse(template):
        if field == "value":
            return spec or ""
    return ".3g"


def _rounding_key(values: np.ndarray, spec: str) -> np.ndarray:
    match = _FIXED_SPEC.fullmatch(spec)
    return np.round(values, int(match.group(1)) + (2 if match.group(2) == "%" else 0)) if match else values


def format_values(values: np.ndarray, spec: str) -> np.ndarray:
    """``format(value, spec)`` for an array, formatting each distinct printed value once.

    Fixed-point specs (``.0%``, ``+.0%``, ``.1f``) round first, so a million ratios become at
    most a few hundred distinct strings; NaN prints as ``n/a``.
    """
    import pandas as pd

    values = np.asarray(values, dtype=float)
    labels, uniques = pd.factorize(_rounding_key(values, spec), use_na_sentinel=True)
    table = np.array([format(float(u), spec) for u in uniques] + ["n/a"], dtype=object)
    return table[labels]


def describe_values(values: np.ndarray, template: str) -> np.ndarray:
    """The template filled with each value (``"active users 34% of seats"``), vectorized."""
    import pandas as pd

    values = np.asarray(values, dtype=float)
    labels, uniques = pd.factorize(_rounding_key(values, _spec_of(template)), use_na_sentinel=True)

    def fill(u: float) -> str:
        try:
            return template.format(value=u)
        except (KeyError, IndexError, ValueError):  # a template we cannot fill stays readable
            return f"{template} ({u:.3g})"

    table = np.array([fill(float(u)) for u in uniques] + ["no data"], dtype=object)
    return table[labels]


def _signal_texts(
    index: np.ndarray, raw: np.ndarray, need: np.ndarray, templates: Mapping[str, str], keys: list[str],
    previous_raw: np.ndarray | None = None,
) -> np.ndarray:
    """Text of each needed row's driver ("" elsewhere); with ``previous_raw``, "now (was then)"."""
    out = np.full(len(index), "", dtype=object)
    for j, key in enumerate(keys):
        rows = np.flatnonzero(need & (index == j))
        if not len(rows):
            continue
        text = describe_values(raw[rows, j], templates[key])
        if previous_raw is not None:
            text = text + " (was " + format_values(previous_raw[rows, j], _spec_of(templates[key])) + ")"
        out[rows] = text
    return out


def _items(
    index: np.ndarray, points: np.ndarray, now: np.ndarray | None,
    keys: list[str], comma: bool, lead: str = "", trail: str = "",
) -> np.ndarray:
    """JSON item per row for one driver slot: ``["signal", points(, score)]``.

    ``lead``/``trail`` are constant JSON glue attached to every row (valid slot or not), so
    the whole document is one join of the slot arrays.
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

    slots: list[np.ndarray] = []
    groups = (
        ("down", drivers.down_index, drivers.down_points, False),
        ("up", drivers.up_index, drivers.up_points, False),
        ("changes", drivers.change_index, drivers.change_points, True),
    )
    del previous_normalized  # changes carry their points; the text says what the values were
    for g, (kind, index, points, is_change) in enumerate(groups):
        opening = ("{" if g == 0 else "],") + f'"{kind}":['
        k = index.shape[1]
        if k == 0:
            slots.append(np.full(n, opening, dtype=object))
        for slot in range(k):
            idx = index[:, slot]
            slots.append(
                _items(
                    idx, points[:, slot], None if is_change else norm_at(normalized, idx),
                    keys, comma=slot > 0, lead=opening if slot == 0 else "",
                )
            )
    closing = np.full(n, "]}", dtype=object)
    return np.array(list(map("".join, zip(*slots, closing, strict=True))), dtype=object)


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
) -> Explanations:
    """Drivers JSON and one sentence per account, built only from the top drivers.

    The sentence tells the change story when the score moved at least
    ``explanations.min_delta_for_change_story`` points over the change window and some
    signal changed the same way ("Score 82 -> 61 in 30 days: active users 34% of seats (was
    71%), ..."); otherwise what holds the score down ("Score 41 (At Risk), held down by:
    ..."), or for an account with nothing pulling down, what lifts it. Texts are rendered
    only for the drivers a row's sentence uses.
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

    pieces: list[np.ndarray] = []
    for kind_story, index, oks, prev in (
        (1, drivers.change_index, change_ok, previous_raw),
        (2, drivers.down_index, None, None),
        (3, drivers.up_index, None, None),
    ):
        need_story = story == kind_story
        any_before = np.zeros(n, dtype=bool)
        for k in range(index.shape[1]):
            ok = need_story & (index[:, k] >= 0)
            if oks is not None:
                ok &= oks[k]
            text = _signal_texts(index[:, k], raw, ok, templates, keys, prev)
            # Comma only between fragments, whichever slots a row's story skips.
            comma = ok & any_before
            text[comma] = ", " + text[comma]
            any_before |= ok
            if len(pieces) <= k:
                pieces.append(text)
            else:
                pieces[k] = np.where(ok, text, pieces[k])

    window = ec.change_window_days
    was = np.clip(score - np.round(np.nan_to_num(delta)).astype(np.int64), 0, 100)
    prefix_code = story * 10201 + np.where(story == 1, was, 0) * 101 + score

    def prefix(c: int) -> str:
        kind, rest = divmod(c, 10201)
        before, now = divmod(rest, 101)
        head = f"Score {now} ({zone_names[now]})"
        return {
            0: f"{head}: no signal data, neutral default",
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
    sentence = np.array(
        list(map("".join, zip(_factorized(prefix_code, prefix), *pieces, suffix, strict=True))), dtype=object
    )
    return Explanations(
        drivers_json=drivers_document(drivers, normalized, previous_normalized, keys), sentence=sentence
    )
