"""Verdicts of mlpstudy.claims on crafted worlds whose truth is known.

* "for": every claim of the study built in (accuracy up with learning rate, down with batch
  size and most at small learning rates, backends within 1 pp, NumPy time flat, TensorFlow
  time falling with batch size, NumPy faster at batch 32 and 3.4x slower at 512, NumPy
  accuracy 4x as spread, TensorFlow loss curves smoother and lower).
* "against": every claim reversed.
* "noise": no structure at all, with noise too large for any effect or equivalence to be
  established on a 3 x 3 grid with 3 trials.
"""

import collections

import numpy as np
import pandas as pd
import pytest

from mlpstudy import claims, stats

LRS = [0.001, 0.003, 0.01, 0.03, 0.1]
BATCHES = [32, 64, 128, 256, 512]
NOISE_GRID = dict(lrs=[0.01, 0.03, 0.1], batches=[32, 128, 512], trials=3)
CLAIM_IDS = list(range(1, 10))


def world(
    kind, lrs=LRS, batches=BATCHES, trials=5, epochs=10, seed=0, backends=("numpy", "tensorflow")
):
    """(runs table, histories) in the formats of results/tf_vs_np.csv and histories.parquet."""
    rng = np.random.default_rng(seed)
    runs, hist = [], []
    for lr in lrs:
        for bs in batches:
            L, B = np.log10(lr / 0.001), np.log2(bs / 32)
            for t in range(trials):
                shared = rng.normal(0, 0.002)  # what a shared start gives both backends
                for m in backends:
                    is_np = m == "numpy"
                    if kind == "for":
                        acc = (
                            0.85
                            + 0.04 * L
                            - (0.012 - 0.005 * L) * B
                            + shared
                            + rng.normal(0, 0.004 if is_np else 0.001)
                        )
                        time = 15.0 if is_np else 40 * (32 / bs) ** 0.8
                        time *= np.exp(rng.normal(0, 0.01))
                        rate, jitter = (0.30, 0.05) if is_np else (0.35, 0.01)
                    elif kind == "against":
                        acc = (
                            0.80
                            - 0.04 * L
                            + (0.012 - 0.005 * L) * B
                            + shared
                            + (0.0 if is_np else 0.05)
                            + rng.normal(0, 0.001 if is_np else 0.004)
                        )
                        time = 20.0 * 32 / bs if is_np else 10 * (bs / 32) ** 0.3
                        time *= np.exp(rng.normal(0, 0.01))
                        rate, jitter = (0.35, 0.01) if is_np else (0.30, 0.05)
                    else:  # spread itself varies at random from run to run
                        acc = 0.9 + rng.normal(0, 0.05) * np.exp(rng.normal(0, 1.0))
                        time = 10 * np.exp(rng.normal(0, 2.0))
                        rate, jitter = 0.3, 0.2
                    runs.append(
                        dict(
                            model=m,
                            learning_rate=lr,
                            batch_size=bs,
                            trial=t,
                            training_time_s=time,
                            test_accuracy=acc,
                            final_train_loss=0.1,
                            final_train_accuracy=acc,
                            epochs=epochs,
                            seed=t,
                            diverged=False,
                        )
                    )
                    e = np.arange(1, epochs + 1)
                    loss = np.exp(np.log(2.0) - rate * e + rng.normal(0, jitter, e.size))
                    hist += [
                        dict(
                            model=m,
                            learning_rate=lr,
                            batch_size=bs,
                            trial=t,
                            epoch=int(k),
                            train_loss=v,
                            train_accuracy=np.nan,
                            test_accuracy=np.nan,
                            epoch_s=1.0,
                        )
                        for k, v in zip(e, loss, strict=False)
                    ]
    return pd.DataFrame(runs), pd.DataFrame(hist)


def noise_world(seed=0):
    # any single seed can fire a test by chance (alpha = 0.05 per one-sided test);
    # test_noise_rarely_decides checks the rate over many seeds
    return world(
        "noise",
        lrs=NOISE_GRID["lrs"],
        batches=NOISE_GRID["batches"],
        trials=NOISE_GRID["trials"],
        seed=seed,
    )


@pytest.fixture(scope="module")
def verdicts():
    out = {}
    for kind in ("for", "against"):
        out[kind] = {r.id: r for r in claims.evaluate_claims(*world(kind))}
    out["noise"] = {r.id: r for r in claims.evaluate_claims(*noise_world())}
    return out


@pytest.mark.parametrize("claim", CLAIM_IDS)
@pytest.mark.parametrize(
    "kind, expected", [("for", "supported"), ("against", "contradicted"), ("noise", "inconclusive")]
)
def test_every_claim_gets_the_built_in_verdict(verdicts, kind, expected, claim):
    r = verdicts[kind][claim]
    assert r.verdict == expected, f"claim {claim} on {kind!r}: {r.reason}"
    if kind == "for":  # against: one contradicted part suffices; noise: one part may fire
        assert [p.verdict for p in r.parts] == [expected] * len(r.parts)
    assert r.reason


def test_noise_rarely_decides():
    """Over 40 noise worlds each claim is decided (either way) in few of them."""
    decided = collections.Counter()
    seeds = range(40)
    for seed in seeds:
        for r in claims.evaluate_claims(*noise_world(seed)):
            decided[r.id] += r.verdict != "inconclusive"
    # about two one-sided tests at alpha 0.05 per claim: up to 10 % expected per claim
    assert max(decided.values()) <= 0.2 * len(seeds), decided
    assert sum(decided.values()) <= 0.1 * len(seeds) * len(CLAIM_IDS), decided


def test_estimates_recover_the_built_in_effects(verdicts):
    r = verdicts["for"]
    by = {p.name: p for c in r.values() for p in c.parts}
    # accuracy per 10x lr: 0.04 + 0.005 x mean log2(batch / 32) = 0.05
    assert by["numpy"].estimate == pytest.approx(0.05, abs=0.005)
    assert by["tensorflow: falls with batch size"].estimate == pytest.approx(
        -0.8 * np.log(2), abs=0.01
    )  # log time per doubling
    assert np.exp(by["batch size 512"].estimate) == pytest.approx(15 / (40 / 16**0.8), rel=0.02)
    assert np.exp(by["batch size 32"].estimate) == pytest.approx(40 / 15, rel=0.02)
    # sd over trials: sqrt(0.002^2 + 0.004^2) / sqrt(0.002^2 + 0.001^2) = 2 (shared part counts)
    assert np.exp(by["test accuracy"].estimate) == pytest.approx(2, rel=0.25)


def test_claim_3_summary_numbers(verdicts):
    nums = verdicts["against"][3].numbers
    assert nums["numpy vs tensorflow: cells with a difference beyond +-0.01 (Holm)"] == "25 of 25"
    assert nums["numpy vs tensorflow: largest |mean difference| in a cell"] == pytest.approx(
        0.05, abs=0.01
    )
    nums = verdicts["for"][3].numbers
    assert nums["numpy vs tensorflow: cells equivalent within +-0.01 (TOST)"] == "25 of 25"


def test_equal_variance_measured_precisely_contradicts_claim_8():
    """Same spread in both backends, on a grid big enough to measure it."""
    runs, _ = world("for", trials=5)
    rng = np.random.default_rng(1)
    runs["test_accuracy"] = 0.9 + rng.normal(0, 0.01, len(runs))
    r = claims.claim_numpy_higher_variance(stats.check_runs(runs))
    assert r.verdict == "contradicted"
    assert abs(r.parts[0].estimate) < np.log(claims.SD_RATIO_MARGIN)


def test_margins_are_settings_that_change_verdicts():
    runs, hist = world("for")
    r = claims.evaluate_claims(runs, hist, accuracy_margin=0.0005)[2]
    assert r.verdict != "supported"  # 0.05 pp is far below the noise of 0.4 pp
    r = claims.evaluate_claims(runs, hist, marked_speedup=10.0)[6]
    assert r.verdict == "contradicted"  # 3.4x is significantly below 10x
    with pytest.raises(TypeError):
        claims.evaluate_claims(runs, hist, no_such_setting=1)


def test_one_trial_is_inconclusive_everywhere_and_says_why():
    runs, hist = world("for", trials=1)
    for r in claims.evaluate_claims(runs, hist):
        assert r.verdict == "inconclusive", r.id
        assert "trials: 1" in r.reason, (r.id, r.reason)


def test_missing_backend_is_inconclusive_not_a_crash():
    runs, hist = world("for", backends=("numpy",))
    res = {r.id: r for r in claims.evaluate_claims(runs, hist)}
    assert res[1].verdict == "supported" and res[4].verdict == "supported"
    assert res[3].verdict == "inconclusive" and "fewer than 2 backends" in res[3].reason
    for cid in (5, 6, 7, 8, 9):
        assert res[cid].verdict == "inconclusive"
        assert "backend tensorflow not in this run" in res[cid].reason, cid
    runs, hist = world("for", backends=("tensorflow",))
    res = {r.id: r for r in claims.evaluate_claims(runs, hist)}
    assert res[5].verdict == "supported"
    assert "backend numpy not in this run" in res[4].reason


def test_three_backends_every_pair_in_claim_3():
    runs, hist = world("for")
    third = runs[runs.model == "tensorflow"].assign(model="jax")
    r = claims.evaluate_claims(pd.concat([runs, third]), hist)[2]
    assert [p.name for p in r.parts] == ["jax vs numpy", "jax vs tensorflow", "numpy vs tensorflow"]
    assert r.verdict == "supported"


def test_single_level_grids_and_too_few_epochs():
    runs, hist = world("for", lrs=[0.1], batches=[64], trials=3, epochs=2)
    res = {r.id: r for r in claims.evaluate_claims(runs, hist)}
    assert "only one learning rate" in res[1].reason
    assert "only one batch size" in res[2].reason
    assert "roughness needs >= 3" in res[9].reason
    assert res[9].verdict == "inconclusive"


def test_diverged_runs_do_not_crash_and_are_counted():
    runs, hist = world("for")
    bad = (hist.model == "numpy") & (hist.learning_rate == 0.1) & (hist.batch_size == 32)
    hist.loc[bad & (hist.epoch > 3), "train_loss"] = np.nan
    sel = (runs.model == "numpy") & (runs.learning_rate == 0.1) & (runs.batch_size == 32)
    runs.loc[sel, "diverged"] = True
    runs.loc[sel & (runs.trial == 0), "test_accuracy"] = np.nan
    res = {r.id: r for r in claims.evaluate_claims(runs, hist)}
    assert res[9].numbers["runs left out (non-finite loss: diverged)"] == 5
    assert res[9].verdict == "supported"
    assert res[1].verdict == "supported"


def test_no_histories_is_inconclusive():
    runs, _ = world("for")
    assert claims.evaluate_claims(runs, None)[8].verdict == "inconclusive"


def test_curve_features_by_hand():
    h = pd.DataFrame(
        dict(
            model="numpy",
            learning_rate=0.1,
            batch_size=32,
            trial=0,
            epoch=[1, 2, 3, 4],
            train_loss=np.exp([0.0, -1.0, -1.5, -2.5]),
        )
    )
    f = claims.curve_features(h).iloc[0]
    # log loss 0, -1, -1.5, -2.5: second differences 0.5, -0.5
    assert f.roughness == pytest.approx(0.5)
    assert f.mean_log_loss == pytest.approx(-5.0 / 4)


def test_markdown_and_html_report(verdicts, tmp_path):
    results = list(verdicts["for"].values())
    md = claims.render_markdown(results)
    html = claims.render_html(results)
    for r in results:
        assert f"Claim {r.id}: {r.title}" in md
        assert f"{r.quote} — study, section {r.section}" in md
        assert f"| {r.id} | {r.title} | {r.section} | SUPPORTED |" in md
        for fig in r.figures:
            assert fig in md and fig in html
    assert "results/figures/loss_curves.png" in md
    assert "accuracy_margin | 0.01" in md
    assert html.startswith("<!DOCTYPE html>") and html.count("<table>") == html.count("</table>")
    assert "&lt;" not in md and "<h2>Claim 9" in html


def test_write_claims_from_files(tmp_path):
    runs, hist = world("against", trials=3)
    runs.to_csv(tmp_path / "tf_vs_np.csv", index=False)
    hist.to_parquet(tmp_path / "histories.parquet")
    stats.write_comparison(tmp_path / "tf_vs_np.csv", tmp_path / "comparison.csv")
    res = claims.write_claims(
        tmp_path / "tf_vs_np.csv",
        tmp_path / "histories.parquet",
        tmp_path / "comparison.csv",
        tmp_path / "out" / "claims.md",
        tmp_path / "out" / "claims.html",
    )
    md = (tmp_path / "out" / "claims.md").read_text()
    assert md == claims.render_markdown(res)
    assert (tmp_path / "out" / "claims.html").read_text().count("CONTRADICTED") >= 9
    assert "NumPy significantly faster in 0, TensorFlow significantly faster in 5" in md
