"""Per-cell statistics (mlpstudy.stats) against values computed by hand.

The t-distribution with 2 degrees of freedom has closed forms, so the expected numbers
below do not come from SciPy: P(|T| > t) = 1 - t / sqrt(t^2 + 2) and the upper quantile
u is (2u - 1) / sqrt(2 u (1 - u)).
"""

import math

import numpy as np
import pandas as pd
import pytest

from mlpstudy import stats


def t2_two_sided_p(t):
    return 1 - abs(t) / math.sqrt(t * t + 2)


def t2_quantile(u):
    return (2 * u - 1) / math.sqrt(2 * u * (1 - u))


def run(model, lr, bs, trial, acc, time=10.0, diverged=False):
    return dict(
        model=model,
        learning_rate=lr,
        batch_size=bs,
        trial=trial,
        training_time_s=time,
        test_accuracy=acc,
        final_train_loss=0.1,
        diverged=diverged,
        extra_column="ignored",
    )


def small_table():
    rows = []
    for t, (a, b) in enumerate([(0.90, 0.91), (0.92, 0.92), (0.94, 0.96)]):
        rows.append(run("numpy", 0.1, 32, t, a, time=15 + t))
        rows.append(run("tensorflow", 0.1, 32, t, b, time=30 + 2 * t))
    for t, (a, b) in enumerate([(0.80, 0.70), (0.81, 0.72), (0.82, 0.71)]):
        rows.append(run("numpy", 0.01, 32, t, a))
        rows.append(run("tensorflow", 0.01, 32, t, b))
    return pd.DataFrame(rows)


def row(cmp, lr, metric="test_accuracy"):
    sel = cmp[(cmp.learning_rate == lr) & (cmp.metric == metric)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_columns_and_one_row_per_cell_metric_pair():
    cmp = stats.compare_cells(small_table())
    assert list(cmp.columns) == list(stats.COLUMNS)
    assert len(cmp) == 2 * 2  # 2 cells x 2 metrics x 1 pair
    assert set(cmp.backend_a) == {"numpy"} and set(cmp.backend_b) == {"tensorflow"}
    assert set(cmp.test) == {stats.TEST_NAME} and set(cmp.correction) == {"Holm"}


def test_per_backend_mean_sd_and_t_interval_by_hand():
    r = row(stats.compare_cells(small_table()), 0.1)
    assert r.n_a == 3 and r.n_b == 3
    assert r.mean_a == pytest.approx(0.92)
    assert r.sd_a == pytest.approx(0.02)
    half = t2_quantile(0.975) * 0.02 / math.sqrt(3)
    assert t2_quantile(0.975) == pytest.approx(4.302653, rel=1e-6)
    assert (r.ci_low_a, r.ci_high_a) == pytest.approx((0.92 - half, 0.92 + half))
    assert r.mean_b == pytest.approx(0.93)
    assert r.sd_b == pytest.approx(math.sqrt(((0.02**2) + (0.01**2) + (0.03**2)) / 2))


def test_paired_difference_t_and_p_by_hand():
    r = row(stats.compare_cells(small_table()), 0.1)
    # differences numpy - tensorflow: -0.01, 0.00, -0.02
    assert r.n_pairs == 3 and r.df == 2
    assert r.mean_diff == pytest.approx(-0.01)
    assert r.sd_diff == pytest.approx(0.01)
    t = -0.01 / (0.01 / math.sqrt(3))
    assert r.t_stat == pytest.approx(t)
    assert r.p_value == pytest.approx(t2_two_sided_p(t))  # 0.2254
    assert r.p_value == pytest.approx(0.2254033, rel=1e-6)
    half = t2_quantile(0.975) * 0.01 / math.sqrt(3)
    assert (r.ci_low_diff, r.ci_high_diff) == pytest.approx((-0.01 - half, -0.01 + half))
    assert r.cohen_dz == pytest.approx(-1.0)
    assert r.ratio_of_means == pytest.approx(0.92 / 0.93)


def test_time_is_compared_too():
    r = row(stats.compare_cells(small_table()), 0.1, "training_time_s")
    # numpy 15, 16, 17; tensorflow 30, 32, 34: differences -15, -16, -17
    assert r.mean_diff == pytest.approx(-16)
    assert r.t_stat == pytest.approx(-16 / (1 / math.sqrt(3)))
    assert r.ratio_of_means == pytest.approx(16 / 32)


def test_holm_across_the_grid_per_metric_and_pair():
    cmp = stats.compare_cells(small_table())
    acc = cmp[cmp.metric == "test_accuracy"].set_index("learning_rate")
    p = acc.p_value.to_dict()
    # two cells: the smaller p is doubled, the larger stays (but not below the first)
    lo, hi = sorted(p.values())
    expected = {k: min(1, 2 * lo) if v == lo else max(min(1, 2 * lo), hi) for k, v in p.items()}
    assert acc.p_adjusted.to_dict() == pytest.approx(expected)
    assert (acc.significant == (acc.p_adjusted < 0.05)).all()


def test_holm_on_a_known_vector():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max
    got = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = stats.holm([np.nan, 0.01, 0.02, 0.9])
    assert np.isnan(got[0])
    assert got[1:] == pytest.approx([0.03, 0.04, 0.9])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_benjamini_hochberg_on_a_known_vector():
    # sorted 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4 -> running min from the top
    got = stats.adjust([0.01, 0.04, 0.03, 0.005], "bh")
    assert got == pytest.approx([0.02, 0.04, 0.04, 0.02])
    with pytest.raises(ValueError, match="unknown correction"):
        stats.adjust([0.1], "bonferonni")


def test_tost_by_hand():
    x = [0.001, 0.002, 0.003]  # mean 0.002, se 0.001 / sqrt(3)
    se = 0.001 / math.sqrt(3)
    t_upper = (0.002 - 0.01) / se
    expected = t2_two_sided_p(t_upper) / 2  # one-sided, the binding side
    assert stats.tost_p(x, 0.01) == pytest.approx(expected)
    # mean 0.002 is outside +-0.001: not equivalent, and the "beyond" test sees it
    assert stats.tost_p(x, 0.001) > 0.5
    t_beyond = (0.002 - 0.001) / se
    assert stats.beyond_p(x, 0.001) == pytest.approx(t2_two_sided_p(t_beyond))


def test_one_trial_gives_no_variance_and_no_crash():
    t = small_table()
    cmp = stats.compare_cells(t[t.trial == 0])
    assert (cmp.n_pairs == 1).all()
    assert cmp.sd_a.isna().all() and cmp.ci_low_a.isna().all()
    assert cmp.p_value.isna().all() and cmp.p_adjusted.isna().all()
    assert not cmp.significant.any()
    assert cmp.mean_a.notna().all()


def test_identical_runs_give_p_one_and_constant_shift_p_zero():
    rows = [run(m, 0.1, 32, t, 0.9) for t in range(3) for m in ("numpy", "tensorflow")]
    r = row(stats.compare_cells(pd.DataFrame(rows)), 0.1)
    assert (r.t_stat, r.p_value, r.cohen_dz, r.sd_diff) == (0.0, 1.0, 0.0, 0.0)
    rows = [
        run(m, 0.1, 32, t, 0.9 + t / 100 + (0.01 if m == "numpy" else 0))
        for t in range(3)
        for m in ("numpy", "tensorflow")
    ]
    r = row(stats.compare_cells(pd.DataFrame(rows)), 0.1)
    assert r.mean_diff == pytest.approx(0.01) and r.p_value == 0.0 and r.t_stat == np.inf


def test_diverged_runs_are_kept_and_nan_dropped_pairwise():
    rows = [
        run("numpy", 0.1, 32, 0, 0.098, diverged=True),
        run("numpy", 0.1, 32, 1, 0.95),
        run("numpy", 0.1, 32, 2, float("nan"), diverged=True),
        run("tensorflow", 0.1, 32, 0, 0.96),
        run("tensorflow", 0.1, 32, 1, 0.95),
        run("tensorflow", 0.1, 32, 2, 0.97),
    ]
    cmp = stats.compare_cells(pd.DataFrame(rows))
    r = row(cmp, 0.1)
    assert (r.n_diverged_a, r.n_diverged_b) == (2, 0)
    assert (r.n_a, r.n_b, r.n_pairs) == (2, 3, 2)
    assert r.mean_a == pytest.approx((0.098 + 0.95) / 2)
    assert r.mean_diff == pytest.approx(((0.098 - 0.96) + 0.0) / 2)
    # a diverged run stopped early: its time is not comparable and is left out
    t = row(cmp, 0.1, "training_time_s")
    assert (t.n_a, t.n_b, t.n_pairs, t.n_diverged_a) == (1, 3, 1, 2)


def test_diverged_read_from_csv_strings(tmp_path):
    t = small_table()
    t["diverged"] = ["True", "False"] * (len(t) // 2)
    t.to_csv(tmp_path / "runs.csv", index=False)
    out = stats.write_comparison(tmp_path / "runs.csv", tmp_path / "out" / "comparison.csv")
    back = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert list(back.columns) == list(stats.COLUMNS) and len(back) == len(out)
    assert set(back.n_diverged_a) == {3} and set(back.n_diverged_b) == {0}


def test_every_pair_of_three_backends():
    t = small_table()
    third = t[t.model == "numpy"].assign(model="jax")
    cmp = stats.compare_cells(pd.concat([t, third]))
    pairs = set(zip(cmp.backend_a, cmp.backend_b, strict=False))
    assert pairs == {("jax", "numpy"), ("jax", "tensorflow"), ("numpy", "tensorflow")}
    jn = cmp[(cmp.backend_a == "jax") & (cmp.backend_b == "numpy")]
    assert (jn.mean_diff == 0).all() and (jn.p_value == 1).all()


def test_bad_tables_fail_with_the_column_or_run_named():
    t = small_table()
    with pytest.raises(ValueError, match="test_accuracy"):
        stats.compare_cells(t.drop(columns="test_accuracy"))
    with pytest.raises(ValueError, match="same run"):
        stats.compare_cells(pd.concat([t, t.iloc[:1]]))


def test_float32_rounding_of_the_same_accuracy_is_no_difference():
    rows = [run("numpy", 0.1, 32, t, a) for t, a in enumerate([0.6416666666666666, 0.5, 0.7])]
    rows += [
        run("tensorflow", 0.1, 32, t, float(np.float32(a)))
        for t, a in enumerate([0.6416666666666666, 0.5, 0.7])
    ]
    r = row(stats.compare_cells(pd.DataFrame(rows)), 0.1)
    assert r.mean_diff == 0 and r.p_value == 1.0
