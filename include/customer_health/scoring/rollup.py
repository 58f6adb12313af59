"""Enterprise rollups: one ARR-weighted score per parent account, beside each child's own.

An enterprise customer is often several Salesforce accounts (subsidiaries, regions) under a
parent. Each child keeps its own score in ``health_scores``; the parent additionally gets a
rollup in ``health_score_rollups``: the ARR-weighted mean of its direct children's effective
scores and, when the parent is itself scored, its own score weighted by its own ARR. When no
member of the group has a positive ARR the members count equally. The rollup is rounded half
up and zoned like any score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from customer_health.scoring.model_config import ModelConfig
from customer_health.scoring.score import round_half_up, zones

ROLLUP_COLUMNS = ["parent_account_key", "as_of_date", "model_version", "score", "zone", "children", "arr"]


def compute_rollups(scores: pd.DataFrame, config: ModelConfig) -> pd.DataFrame:
    """Rollups for every parent with at least one scored child.

    ``scores`` has account_key, parent_account_key, as_of_date, score (effective) and arr.
    Only direct children roll up (a grandchild counts for its own parent, not the top).
    """
    if scores.empty or "parent_account_key" not in scores.columns:
        return pd.DataFrame(columns=ROLLUP_COLUMNS)
    parent = scores["parent_account_key"]
    is_child = parent.notna() & (parent.astype(object) != "") & (parent.astype(object) != scores["account_key"].astype(object))
    children = scores.loc[is_child, ["account_key", "parent_account_key", "as_of_date", "score", "arr"]]
    if children.empty:
        return pd.DataFrame(columns=ROLLUP_COLUMNS)
    parents_scored = scores.loc[scores["account_key"].isin(children["parent_account_key"]), ["account_key", "as_of_date", "score", "arr"]]
    members = pd.concat(
        [
            children.assign(group=children["parent_account_key"], is_child=1),
            parents_scored.assign(group=parents_scored["account_key"], is_child=0),
        ],
        ignore_index=True,
    )
    arr = pd.to_numeric(members["arr"], errors="coerce").fillna(0.0).clip(lower=0.0)
    members = members.assign(arr_value=arr, score_f=members["score"].astype(float))
    grouped = members.groupby("group", sort=True)
    arr_total = grouped["arr_value"].transform("sum")
    # A group without ARR (all missing or zero) weighs its members equally.
    weight = np.where(arr_total > 0, members["arr_value"], 1.0)
    members = members.assign(weight=weight, weighted=weight * members["score_f"])
    grouped = members.groupby("group", sort=True)
    agg = grouped.agg(
        weighted=("weighted", "sum"),
        weight=("weight", "sum"),
        children=("is_child", "sum"),
        arr=("arr_value", "sum"),
        as_of_date=("as_of_date", "first"),
    )
    score = round_half_up(agg["weighted"].to_numpy() / agg["weight"].to_numpy())
    return pd.DataFrame(
        {
            "parent_account_key": agg.index.to_numpy(dtype=object),
            "as_of_date": agg["as_of_date"].to_numpy(),
            "model_version": config.version,
            "score": score,
            "zone": np.asarray(zones(score, config), dtype=object),
            "children": agg["children"].to_numpy(dtype=np.int64),
            "arr": agg["arr"].to_numpy(dtype=float),
        }
    )
