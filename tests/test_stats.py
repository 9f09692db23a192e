"""Per-cell statistics (mlpstudy.stats) against values computed by hand.

The t-distribution with 2 degrees of freedom has closed forms, so the expected numbers
below do not come from SciPy: P(|T| > t) = 1 - t / sqrt(t^2 + 2) and the upper quantile
u is (2u - 1) / sqrt(2 u (1 - u)).
"""

import math

import numpy as np
import pandas as pd
import pytest

from mlpstudy import comparison, spread, stats


def t2_two_sided_p(t):
    return 1 - abs(t) / math.sqrt(t * t + 2)


def t2_quantile(u):
    return (2 * u - 1) / math.sqrt(2 * u * (1 - u))


def run(backend, lr, bs, trial, acc, time=10.0, diverged=False):
    return dict(
        backend=backend,
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
        rows.append(run("tensorflow", 0.1, 32, t, b, time=(30, 33, 33)[t]))
    for t, (a, b) in enumerate([(0.80, 0.70), (0.81, 0.72), (0.82, 0.71)]):
        rows.append(run("numpy", 0.01, 32, t, a))
        rows.append(run("tensorflow", 0.01, 32, t, b))
    return pd.DataFrame(rows)


def row(cmp, lr, metric="test_accuracy"):
    sel = cmp[(cmp.learning_rate == lr) & (cmp.metric == metric)]
    assert len(sel) == 1
    return sel.iloc[0]


def compare(table, **kw):
    """The comparison at the real resolution of accuracy (10 000 test images)."""
    return comparison.compare_cells(table, step=1e-4, **kw)


def test_columns_and_one_row_per_cell_metric_pair():
    cmp = compare(small_table())
    assert list(cmp.columns) == list(comparison.COLUMNS)
    assert set(cmp.start) == {"not recorded"}  # the table has no start column
    assert set(compare(small_table().assign(start="shared")).start) == {"shared"}
    assert len(cmp) == 2 * 2  # 2 cells x 2 metrics (no step time in this table) x 1 pair
    assert set(cmp.backend_a) == {"numpy"} and set(cmp.backend_b) == {"tensorflow"}
    assert set(cmp.test) == {comparison.TEST_NAME}
    assert set(cmp.correction) == {"Holm across the 2 cells"}
    assert dict(zip(cmp.metric, cmp.scale)) == {
        "test_accuracy": "difference",
        "training_time_s": "log",
    }


def test_per_backend_mean_sd_and_t_interval_by_hand():
    r = row(compare(small_table()), 0.1)
    assert r.n_a == 3 and r.n_b == 3
    assert r.mean_a == pytest.approx(0.92)
    assert r.sd_a == pytest.approx(0.02)
    half = t2_quantile(0.975) * 0.02 / math.sqrt(3)
    assert t2_quantile(0.975) == pytest.approx(4.302653, rel=1e-6)
    assert (r.ci_low_a, r.ci_high_a) == pytest.approx((0.92 - half, 0.92 + half))
    assert r.mean_b == pytest.approx(0.93)
    assert r.sd_b == pytest.approx(math.sqrt(((0.02**2) + (0.01**2) + (0.03**2)) / 2))


def test_paired_difference_t_and_p_by_hand():
    r = row(compare(small_table()), 0.1)
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
    assert np.isnan(r.ratio)  # accuracy is compared as a difference


def test_time_is_compared_as_a_ratio_on_the_log_scale():
    r = row(compare(small_table()), 0.1, "training_time_s")
    # numpy 15, 16, 17; tensorflow 30, 33, 33
    d = np.log([15 / 30, 16 / 33, 17 / 33])
    assert r.scale == "log"
    assert r.mean_diff == pytest.approx(d.mean())
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    assert r.t_stat == pytest.approx(t)
    assert r.p_value == pytest.approx(t2_two_sided_p(t))
    assert r.ratio == pytest.approx(np.exp(d.mean()))  # geometric mean of the ratios
    half = t2_quantile(0.975) * d.std(ddof=1) / math.sqrt(3)
    assert (r.ci_low_ratio, r.ci_high_ratio) == pytest.approx(
        (np.exp(d.mean() - half), np.exp(d.mean() + half))
    )
    assert r.mean_a == pytest.approx(16) and r.sd_floor == 0


def test_holm_across_the_grid_per_metric_and_pair():
    cmp = compare(small_table())
    acc = cmp[cmp.metric == "test_accuracy"].set_index("learning_rate")
    p = acc.p_value.to_dict()
    # two cells: the smaller p is doubled, the larger stays (but not below the first)
    lo, hi = sorted(p.values())
    expected = {k: min(1, 2 * lo) if v == lo else max(min(1, 2 * lo), hi) for k, v in p.items()}
    assert acc.p_adjusted.to_dict() == pytest.approx(expected)
    assert (acc.significant == (acc.p_adjusted < 0.05)).all()
    # the strictest Holm step, alpha / 2 two-sided on 2 df, is the |t| a cell needs
    assert list(acc.t_critical) == pytest.approx([t2_quantile(1 - 0.05 / 4)] * 2)


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


def test_the_resolution_floor_of_the_standard_deviation():
    # three identical values: no spread measured, but one step of resolution assumed
    x = [0.0003, 0.0003, 0.0003]
    t = 0.0003 / (0.0001 / math.sqrt(3))
    assert stats.one_sample_p(x, 0.0, "two-sided", sd_floor=1e-4) == pytest.approx(
        t2_two_sided_p(t)
    )
    assert np.isnan(stats.one_sample_p(x, 0.0))  # no floor, no spread: undefined, not p = 0
    # a spread above the floor is left alone
    y = [0.0, 0.001, 0.002]
    assert stats.one_sample_p(y, 0.0, sd_floor=1e-4) == stats.one_sample_p(y, 0.0)


def test_accuracy_step_is_one_test_image():
    assert stats.accuracy_step([0.9123, 0.5, 0.25]) == pytest.approx(1e-4)
    sixty = [round(k / 60, 6) for k in (7, 13, 59, 31)]  # 60 test images, rounded
    assert stats.accuracy_step(sixty) == pytest.approx(1 / 60)
    assert np.isnan(stats.accuracy_step([np.nan]))
    cmp = comparison.compare_cells(small_table())  # 0.90, 0.91, ...: steps of 0.01 at most
    floors = cmp.loc[cmp.metric == "test_accuracy", "sd_floor"]
    assert list(floors) == pytest.approx([math.sqrt(2) * 0.01] * 2)


def test_one_trial_gives_no_variance_and_no_crash():
    t = small_table()
    cmp = compare(t[t.trial == 0])
    assert (cmp.n_pairs == 1).all()
    assert cmp.sd_a.isna().all() and cmp.ci_low_a.isna().all()
    assert cmp.p_value.isna().all() and cmp.p_adjusted.isna().all()
    assert not cmp.significant.any()
    assert cmp.mean_a.notna().all()


def test_identical_runs_and_constant_shifts():
    rows = [run(m, 0.1, 32, t, 0.9) for t in range(3) for m in ("numpy", "tensorflow")]
    r = row(compare(pd.DataFrame(rows)), 0.1)
    assert (r.t_stat, r.p_value, r.sd_diff) == (0.0, 1.0, pytest.approx(math.sqrt(2) * 1e-4))
    # a constant shift of time has no spread and time has no resolution floor: no test
    rows = [
        run(m, 0.1, 32, t, 0.9, time=10.0 * (2 if m == "numpy" else 1))
        for t in range(3)
        for m in ("numpy", "tensorflow")
    ]
    r = row(compare(pd.DataFrame(rows)), 0.1, "training_time_s")
    assert r.ratio == pytest.approx(2.0) and np.isnan(r.p_value) and not r.significant


def test_diverged_runs_are_kept_and_nan_dropped_pairwise():
    rows = [
        run("numpy", 0.1, 32, 0, 0.098, diverged=True),
        run("numpy", 0.1, 32, 1, 0.95),
        run("numpy", 0.1, 32, 2, float("nan"), diverged=True),
        run("tensorflow", 0.1, 32, 0, 0.96),
        run("tensorflow", 0.1, 32, 1, 0.95),
        run("tensorflow", 0.1, 32, 2, 0.97),
    ]
    cmp = compare(pd.DataFrame(rows))
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
    out = comparison.write_comparison(tmp_path / "runs.csv", tmp_path / "out" / "comparison.csv")
    back = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert list(back.columns) == list(comparison.COLUMNS) and len(back) == len(out)
    assert set(back.n_diverged_a) == {3} and set(back.n_diverged_b) == {0}


def test_every_pair_of_three_backends_and_step_time():
    t = small_table().assign(step_time_s=lambda d: d.training_time_s * 0.7)
    third = t[t.backend == "numpy"].assign(backend="another")  # any registry name
    cmp = compare(pd.concat([t, third]))
    pairs = set(zip(cmp.backend_a, cmp.backend_b, strict=False))
    assert pairs == {("another", "numpy"), ("another", "tensorflow"), ("numpy", "tensorflow")}
    assert set(cmp.metric) == {"test_accuracy", "training_time_s", "step_time_s"}
    jn = cmp[(cmp.backend_a == "another") & (cmp.backend_b == "numpy")]
    assert (jn.mean_diff == 0).all()
    assert (jn.loc[jn.metric == "test_accuracy", "p_value"] == 1).all()


def test_bad_tables_fail_with_the_column_or_run_named():
    t = small_table()
    with pytest.raises(ValueError, match="test_accuracy"):
        comparison.compare_cells(t.drop(columns="test_accuracy"))
    with pytest.raises(ValueError, match="same run"):
        comparison.compare_cells(pd.concat([t, t.iloc[:1]]))
    with pytest.raises(ValueError, match="mixes studies: threads"):
        comparison.compare_cells(t.assign(threads=[1, 2] * (len(t) // 2)))


def test_float32_rounding_of_the_same_accuracy_is_no_difference():
    rows = [run("numpy", 0.1, 32, t, a) for t, a in enumerate([0.6416666666666666, 0.5, 0.7])]
    rows += [
        run("tensorflow", 0.1, 32, t, float(np.float32(a)))
        for t, a in enumerate([0.6416666666666666, 0.5, 0.7])
    ]
    r = row(comparison.compare_cells(pd.DataFrame(rows)), 0.1)
    assert r.mean_diff == 0 and r.p_value == 1.0


# --------------------------------------------------------------------------- power


def test_power_functions_by_known_values():
    assert stats.power_one_sided(0.0, 1.0, 10, 0.05) == pytest.approx(0.05)
    assert stats.power_tost(0.0, 0.01, 200, 0.01, 0.05)[0] == pytest.approx(1.0)
    # at the margin: exactly alpha with many trials (the upper test alone binds)
    assert stats.power_tost(0.01, 0.01, 200, 0.01, 0.05)[0] == pytest.approx(0.05, abs=1e-4)
    fn = lambda n: stats.power_one_sided(0.5, 1.0, n, 0.05)  # noqa: E731
    n = stats.trials_needed(fn, 0.8)
    assert fn(np.array([n]))[0] >= 0.8 > fn(np.array([n - 1]))[0]
    assert n == 27  # one-sided t-test, d = 0.5, 80 % (Cohen's table: 26-27)
    assert stats.trials_needed(lambda n: np.zeros(np.size(n)), 0.8) is None
    # every n from 2 to 60 where the target is first reached, found on the coarse grid or
    # by bisection
    for target_n in (2, 3, 17, 60):
        assert stats.trials_needed(lambda n, k=target_n: np.asarray(n) >= k, 0.8) == target_n


def test_sd_interval_with_two_degrees_of_freedom_by_hand():
    # chi-square with 2 df: quantile u is -2 log(1 - u)
    lo, hi = stats.sd_interval(1.0, 2, 0.9)
    assert lo == pytest.approx(math.sqrt(2 / (-2 * math.log(0.05))))
    assert hi == pytest.approx(math.sqrt(2 / (-2 * math.log(0.95))))
    assert (lo, hi) == pytest.approx((0.578, 4.42), abs=0.01)


# --------------------------------------------------------------------------- spread


def test_variance_components_by_hand():
    # 2 cells x 3 trials: cell means 1 and 4, trial effects -1, 0, +1, no interaction
    y = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    a, b, c, t = spread.variance_components(y)
    # MS_trial = 2 * (1 + 0 + 1) / 2 = 2, a = MS_trial / C = 1; residual 0
    assert (a, b, c, t) == (pytest.approx(1.0), pytest.approx(0.0), 2, 3)
    assert a + b == pytest.approx(np.mean([np.var(r, ddof=1) for r in y]))  # pooled variance
    assert spread.satterthwaite_df(a, b, c, t) == pytest.approx(2.0)  # all trial-level
    assert spread.satterthwaite_df(0.0, 1.0, 25, 3) == pytest.approx(48.0)  # all cell-level


def test_spread_ratio_and_its_f_tests():
    rng = np.random.default_rng(0)
    y1 = rng.normal(0, 2, (25, 3))
    y2 = rng.normal(0, 1, (25, 3))
    ratio, (df1, df2), det = spread.spread_ratio(y1, y2)
    assert ratio == pytest.approx(det["var1"] / det["var2"])
    assert (det["df1"], det["df2"]) == (df1, df2)
    tests = spread.f_ratio_tests(ratio, df1, df2, 1.5**2, 0.9)
    from scipy import stats as sps

    assert tests["p_above"] == pytest.approx(sps.f.sf(ratio / 2.25, df1, df2))
    assert tests["p_below"] == pytest.approx(sps.f.cdf(ratio / 2.25, df1, df2))
    lo, hi = tests["ci"]
    assert lo < 4 < hi and lo == pytest.approx(ratio / sps.f.ppf(0.95, df1, df2))
    same, _, _ = spread.spread_ratio(y1, y1.copy())
    assert same == 1.0
    # no spread at all: the floor, as a trial-level component (df of T - 1)
    flat, dfs, _ = spread.spread_ratio(np.ones((4, 3)), np.ones((4, 3)), 0.1, 0.1)
    assert flat == 1.0 and dfs == pytest.approx((2.0, 2.0))


def test_each_layouts_df_comes_from_its_own_components():
    """A pure trial effect gives T - 1 degrees of freedom, pure cell noise many more; the
    trial mean square is taken at its upper 90 % bound, so no more than Satterthwaite's
    from the point estimate, and the vectorised form agrees with the one-layout form."""
    rng = np.random.default_rng(1)
    trial = rng.normal(0, 1, (1, 3)) + 0.01 * rng.normal(0, 1, (25, 3))
    cells = rng.normal(0, 1, (200, 25, 3))  # 200 layouts without a trial effect
    _, df_trial, share, _ = spread.spread_of(trial)
    _, df_cells, _, _ = spread.spread_of(cells)
    assert df_trial == pytest.approx(2.0, abs=0.1) and share > 0.99
    a, b, c, t = spread.variance_components(cells)
    assert np.median(df_cells) > 15 and np.all(df_cells <= spread.satterthwaite_df(a, b, c, t))
    one = [spread.spread_of(y)[1] for y in cells[:5]]
    assert one == pytest.approx(list(df_cells[:5]))


def test_steady_epoch_time_is_compared_and_contended_times_are_left_out():
    """steady_epoch_s (median epoch time after the first, issue 21) is compared like step
    time; a run whose timed loop was contended loses its times (not its accuracy)."""
    t = small_table().assign(steady_epoch_s=lambda d: d.training_time_s / 10, contended=False)
    t.loc[(t.backend == "numpy") & (t.trial == 2), "contended"] = True
    cmp = compare(t)
    assert "steady_epoch_s" in set(cmp.metric)
    r = row(cmp, 0.1, "steady_epoch_s")
    assert r.scale == "log" and (r.n_a, r.n_b, r.n_pairs) == (2, 3, 2)
    assert row(cmp, 0.1, "training_time_s").n_a == 2
    assert row(cmp, 0.1).n_a == 3  # accuracy kept
    # without the column, every time counts, as before
    assert row(compare(small_table()), 0.1, "training_time_s").n_a == 3
