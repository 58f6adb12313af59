"""The model config is versioned, validated on load, and fails with a message that says what to fix."""

from __future__ import annotations

import re

import pytest
import yaml

from customer_health.scoring.model_config import (
    DIMENSIONS,
    ModelConfigError,
    default_model_path,
    load_model_config,
)


def _default_raw() -> dict:
    return yaml.safe_load(default_model_path().read_text())


def _load_changed(change) -> object:
    raw = _default_raw()
    change(raw)
    return load_model_config(yaml.safe_dump(raw, sort_keys=False))


def test_shipped_model_loads_as_version_v1_with_a_sha256():
    config = load_model_config()
    assert config.version == "v1"
    assert re.fullmatch(r"[0-9a-f]{64}", config.sha256)
    assert config.source.endswith("include/customer_health/config/model_v1.yaml")


def test_shipped_model_uses_15_signals_in_all_four_dimensions():
    config = load_model_config()
    assert len(config.signals) == 15
    assert {s.dimension for s in config.signals} == set(DIMENSIONS)


def test_every_segment_models_weights_sum_to_one_and_sit_in_the_seed_ranges():
    config = load_model_config()
    assert {m.name for m in config.models} >= {"new", "established"}
    ranges = {"engagement": (0.35, 0.45), "financial": (0.20, 0.30), "support": (0.15, 0.20), "sentiment": (0.10, 0.15)}
    for row, model in zip(config.weight_matrix(), config.models, strict=True):
        assert row.sum() == pytest.approx(1.0, abs=1e-9)
        for dim, (lo, hi) in ranges.items():
            assert lo <= model.dimension_weights[dim] <= hi


def test_zones_are_the_four_inclusive_bands_of_the_design():
    config = load_model_config()
    assert [(z.name, z.min, z.max) for z in config.zones] == [
        ("Healthy", 75, 100),
        ("Neutral", 50, 74),
        ("At Risk", 25, 49),
        ("Critical", 0, 24),
    ]
    assert config.rounding == "half_up"


def test_new_accounts_are_those_below_the_configured_tenure():
    config = load_model_config()
    new = next(m for m in config.models if m.name == "new")
    assert new.tenure_below_days == 90
    assert config.default_model.name == "established"


def test_loading_the_same_text_twice_gives_the_same_sha256():
    text = default_model_path().read_text()
    assert load_model_config(text).sha256 == load_model_config(text).sha256 == load_model_config().sha256


def test_weights_not_summing_to_one_name_segment_version_and_file(tmp_path):
    raw = _default_raw()
    raw["models"]["new"]["dimension_weights"]["engagement"] = 0.38
    path = tmp_path / "model_bad.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ModelConfigError) as err:
        load_model_config(path)
    message = str(err.value)
    assert "segment 'new'" in message and "sum to 0.93" in message and "expected 1.0" in message
    assert "model v1" in message and "model_bad.yaml" in message


def test_signal_weights_within_a_dimension_must_sum_to_one():
    def change(raw):
        raw["models"]["established"]["signal_weights"]["financial"]["payment_timeliness"] = 0.5

    with pytest.raises(ModelConfigError, match="segment 'established' dimension financial sum to 1.1"):
        _load_changed(change)


def test_unknown_signal_key_is_rejected():
    def change(raw):
        raw["signals"]["logins_per_day"] = raw["signals"]["login_frequency"]

    with pytest.raises(ModelConfigError, match="unknown signal key 'logins_per_day'"):
        _load_changed(change)


@pytest.mark.parametrize(
    ("zones", "problem"),
    [
        ([[75, 100], [50, 75], [25, 49], [0, 24]], "overlap"),
        ([[76, 100], [50, 74], [25, 49], [0, 24]], "gap"),
        ([[75, 99], [50, 74], [25, 49], [0, 24]], "expected exactly 0-100"),
    ],
)
def test_zone_bounds_must_cover_0_to_100_without_gap_or_overlap(zones, problem):
    def change(raw):
        for zone, (lo, hi) in zip(raw["zones"], zones, strict=True):
            zone["min"], zone["max"] = lo, hi

    with pytest.raises(ModelConfigError, match=problem):
        _load_changed(change)


def test_dimension_weight_outside_the_seed_range_needs_an_explicit_opt_in():
    def change(raw):
        weights = raw["models"]["established"]["dimension_weights"]
        weights["engagement"], weights["support"] = 0.50, 0.10

    with pytest.raises(ModelConfigError, match="outside the seeds' range .*allow_out_of_range_weights"):
        _load_changed(change)

    def opt_in(raw):
        change(raw)
        raw["allow_out_of_range_weights"] = True

    assert _load_changed(opt_in).allow_out_of_range_weights is True


def test_a_fixed_range_that_contradicts_the_direction_is_rejected():
    def change(raw):
        raw["signals"]["engagement_trend"]["normalization"].update(worst=0.5, best=-0.5)

    with pytest.raises(ModelConfigError, match="engagement_trend.*best must be above worst"):
        _load_changed(change)


def test_an_unknown_direction_is_rejected():
    def change(raw):
        raw["signals"]["nps"]["direction"] = "up"

    with pytest.raises(ModelConfigError, match="signal 'nps' has direction 'up'"):
        _load_changed(change)


def test_a_direction_contradicting_the_signal_catalogue_is_rejected():
    def change(raw):
        raw["signals"]["open_tickets"]["direction"] = "higher_is_better"
        raw["signals"]["open_tickets"]["normalization"].update(worst_percentile=0.25, best_percentile=0.95)

    with pytest.raises(ModelConfigError, match="open_tickets.*signal catalogue says 'lower_is_better'"):
        _load_changed(change)


def test_a_config_may_leave_dimension_and_direction_to_the_signal_definitions():
    def change(raw):
        for spec in raw["signals"].values():
            spec.pop("dimension")
            spec.pop("direction")

    stated, derived = load_model_config(), _load_changed(change)
    assert [(s.key, s.dimension, s.direction) for s in derived.signals] == [
        (s.key, s.dimension, s.direction) for s in stated.signals
    ]


def test_a_signal_without_a_definition_is_rejected_with_the_known_ones():
    def change(raw):
        raw["signals"]["mood"] = {"normalization": {"method": "fixed_range", "worst": 0.0, "best": 1.0}}

    with pytest.raises(ModelConfigError, match="unknown signal key 'mood'; known signals: .*login_frequency"):
        _load_changed(change)


def test_missing_version_is_rejected():
    with pytest.raises(ModelConfigError, match="'version' is missing"):
        _load_changed(lambda raw: raw.pop("version"))


def test_an_actions_section_is_passed_through_untouched():
    actions = {"at_risk_checkin": {"when": {"zone_entered": "At Risk"}, "due_hours": 48}}
    config = _load_changed(lambda raw: raw.update(actions=actions))
    assert config.actions == actions
