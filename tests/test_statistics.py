"""The evidence report's statistics (tasks/reports/statistics.py) on hand-computed samples: every
verdict in docs/evidence.md rests on these numbers. Expected values are worked out by hand in the
comments; scipy's t distribution (not our code) gives the p-values of those t and df."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from scipy.stats import t as student_t

from tasks.reports.statistics import (
    against_constant,
    by_arch,
    fmt,
    mean_sd,
    per_seed,
    seeds_note,
    values_of,
    welch,
)


def test_welch_on_equal_variances():
    # means 5 and 2; variances 1 and 1; se = sqrt(1/3 + 1/3) = 0.8165; t = 3 / 0.8165 = 3.6742; df = 4
    result = welch([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert result.advantage == pytest.approx(3.0)
    assert result.se == pytest.approx(math.sqrt(2 / 3))
    assert result.t == pytest.approx(3 / math.sqrt(2 / 3))
    assert result.df == pytest.approx(4.0)
    assert result.p == pytest.approx(2 * student_t.sf(3 / math.sqrt(2 / 3), 4))  # 0.0213
    assert result.verdict == "supported"
    assert result.describe() == "difference +3.0, standard error 0.8, t = 3.67, df 4.0, two-sided p = 0.021"
    assert result.describe(scale=100, digits=0).startswith("difference +300, standard error 82,")
    against = welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert against.advantage == pytest.approx(-3.0) and against.p == pytest.approx(result.p)
    assert against.verdict == "contradicted"
    with pytest.raises(ValueError, match="one-sided test"):
        _ = result.confirmation


def test_welch_uses_the_welch_satterthwaite_degrees_of_freedom():
    # variances 5/3 (n 4) and 50 (n 2): v1 = 5/12, v2 = 25; df = (v1 + v2)^2 / (v1^2 / 3 + v2^2 / 1) = 1.0335
    # (a pooled-variance test would have df 4)
    result = welch([1.0, 2.0, 3.0, 4.0], [10.0, 20.0])
    v1, v2 = 5 / 12, 25.0
    assert result.se == pytest.approx(math.sqrt(v1 + v2))
    assert result.df == pytest.approx((v1 + v2) ** 2 / (v1**2 / 3 + v2**2 / 1))
    assert result.t == pytest.approx((2.5 - 15.0) / math.sqrt(v1 + v2))


def test_one_sided_tests_and_their_confirmation():
    # t = 3.6742, df 4: one-sided p = 0.0107 on the claim's side, 0.9893 on the other
    greater = welch([4.0, 5.0, 6.0], [1.0, 2.0, 3.0], alternative="greater")
    assert greater.p == pytest.approx(student_t.sf(3 / math.sqrt(2 / 3), 4))
    assert greater.confirmation == "confirmed"
    assert greater.describe().endswith("t = 3.67, df 4.0, one-sided p = 0.011")
    wrong_side = welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], alternative="greater")
    assert wrong_side.p == pytest.approx(1 - greater.p)
    assert wrong_side.confirmation == "not confirmed"


def test_against_a_constant():
    # mean 4, reference 1: advantage 3; sd 2, se = 2 / sqrt(3) = 1.1547; t = 2.5981; df 2
    result = against_constant([2.0, 4.0, 6.0], 1.0)
    assert (result.advantage, result.df) == (pytest.approx(3.0), pytest.approx(2.0))
    assert result.se == pytest.approx(2 / math.sqrt(3))
    assert result.t == pytest.approx(3 / (2 / math.sqrt(3)))
    assert result.p == pytest.approx(2 * student_t.sf(3 / (2 / math.sqrt(3)), 2))  # 0.1217
    assert result.verdict == "not shown at this scale"
    one_sided = against_constant([2.0, 4.0, 6.0], 1.0, alternative="greater")
    assert one_sided.p == pytest.approx(result.p / 2)
    assert one_sided.confirmation == "not confirmed"
    below = against_constant([2.0, 4.0, 6.0], 7.0)  # t = -2.5981: the same p, the other side
    assert below.p == pytest.approx(result.p) and below.verdict == "not shown at this scale"
    assert against_constant([2.0, 4.0, 6.0], 10.0).verdict == "contradicted"  # t = -5.196, df 2: p = 0.035


@pytest.mark.parametrize("favoured, other", [([1.0], [2.0, 3.0]), ([1.0, 2.0], [5.0]), ([2.0, 2.0], [3.0, 3.0])],
                         ids=["one seed", "one seed on the other side", "no spread"])
def test_no_test_without_two_seeds_and_some_spread(favoured, other):
    result = welch(favoured, other, alternative="greater")
    assert math.isnan(result.p) and math.isnan(result.t)
    assert result.advantage == pytest.approx(sum(favoured) / len(favoured) - sum(other) / len(other))
    assert result.verdict == "not shown at this scale" and result.confirmation == "not confirmed"
    assert result.describe().endswith(": no test (a group of one seed, or no spread over seeds)")
    single = against_constant(favoured[:1], 0.0)
    assert math.isnan(single.p) and single.advantage == favoured[0]
    assert math.isnan(against_constant([2.0, 2.0], 1.0).p)
    assert math.isnan(welch([], [1.0, 2.0]).advantage) and math.isnan(against_constant([], 1.0).advantage)
    assert math.isnan(result.df)
    # a pre-registered question with one run, or runs without spread, is "not confirmed", never an error
    for untested in (against_constant([1.0], 0.0, alternative="greater"),
                     against_constant([2.0, 2.0], 1.0, alternative="greater")):
        assert untested.alternative == "greater" and untested.confirmation == "not confirmed"


def test_two_seeds_are_enough_for_a_test():
    # [1, 3] against [2, 4, 6]: variances 2 and 4; se = sqrt(2/2 + 4/3); df = (1 + 4/3)^2 / (1/1 + (4/3)^2/2) = 2.82
    pair = welch([1.0, 3.0], [2.0, 4.0, 6.0])
    assert pair.df == pytest.approx((1 + 4 / 3) ** 2 / (1 / 1 + (4 / 3) ** 2 / 2))
    assert not math.isnan(welch([2.0, 4.0, 6.0], [1.0, 3.0]).p)
    assert against_constant([1.0, 3.0], 0.0).df == pytest.approx(1.0)  # t = 2 / 1 = 2


def test_means_sds_and_their_text():
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    mean, sd = mean_sd([5.0])
    assert mean == 5.0 and math.isnan(sd)
    assert all(math.isnan(v) for v in mean_sd([]))
    assert fmt([0.1, 0.3], scale=100) == "20.0 ± 14.1 (n=2)"
    assert fmt([1.23456, 1.23456, 1.23456], digits=3) == "1.235 ± 0.000 (n=3)"
    assert fmt([2.0]) == "2.0 (n=1)"
    assert fmt([]) == "-"


def test_per_seed_groups_and_the_short_groups_note():
    runs = [SimpleNamespace(seed=3, arch="lstm", metrics={"acc": 0.5}),
            SimpleNamespace(seed=1, arch="onlstm", metrics={"acc": 0.25}),
            SimpleNamespace(seed=2, arch="gru", metrics={})]
    assert per_seed(runs, lambda r: r.metrics.get("acc"), digits=2, scale=2) == "1: 0.50, 2: -, 3: 1.00"
    assert values_of(runs, "acc") == [0.5, 0.25]
    groups = by_arch(runs)
    assert list(groups) == ["onlstm", "lstm", "gru"] and [r.seed for r in groups["lstm"]] == [3]
    assert by_arch([]) == {"onlstm": [], "lstm": []}
    assert seeds_note({"onlstm": [1, 2, 3], "lstm": [1, 2]}) == "fewer than 3 finished seeds (LSTM 2)"
    assert seeds_note({"onlstm": [1], "lstm": []}) == "fewer than 3 finished seeds (ON-LSTM 1, LSTM 0)"
    assert seeds_note({"onlstm": [1, 2, 3], "lstm": [4, 5, 6]}) is None
    assert seeds_note({"gru": [1]}) == "fewer than 3 finished seeds (gru 1)"  # a model without a display name


def test_a_p_value_below_a_thousandth_is_printed_as_such_not_as_zero():
    # difference 10, standard error sqrt(1/3 + 1/3) = 0.816: t = 12.25 at df 4, two-sided p = 0.00026
    result = welch([10.0, 11.0, 12.0], [0.0, 1.0, 2.0])
    assert result.describe() == "difference +10.0, standard error 0.8, t = 12.25, df 4.0, two-sided p < 0.001"
    # above 0.0005 it still rounds to three decimals: t = 7.96 at df 4 is one-sided p = 0.00067
    assert welch([6.5, 7.5, 8.5], [0.0, 1.0, 2.0], alternative="greater").describe().endswith(
        "t = 7.96, df 4.0, one-sided p = 0.001")
