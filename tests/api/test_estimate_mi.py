"""pdlightning.estimate_mi(x, y): the held-out MI of two arrays on the CLI's module, datamodule and trainer; what it
returns (pooled over seeds, intervals, units, per-seed values, the PMI of new pairs, plain data) and the errors that
name the argument at fault."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import pdlightning
from pdlightning.api import EstimatorResult, MIEstimate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gaussian(n: int, dim: int, mi: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``y = rho x + sqrt(1 - rho^2) eps`` per coordinate: ``I(X; Y) = -dim / 2 log(1 - rho^2) = mi`` nats."""
    rng = np.random.default_rng(seed)
    rho = math.sqrt(1.0 - math.exp(-2.0 * mi / dim))
    x = rng.normal(size=(n, dim))
    return x, rho * x + math.sqrt(1.0 - rho**2) * rng.normal(size=(n, dim))


@pytest.fixture(scope="module")
def small() -> MIEstimate:
    """A short fit of two estimators (one with in-batch negatives, one plug-in) on 400 pairs."""
    x, y = gaussian(400, 3, 0.5)
    return pdlightning.estimate_mi(x, y, ("smile_tau5", "pd_classifier"), steps=40, eval_batch_size=26, progress=False)


def test_recovers_the_closed_form_mi_of_a_gaussian_within_its_interval():
    x, y = gaussian(2000, 5, 1.0)
    start = time.perf_counter()
    result = pdlightning.estimate_mi(x, y, progress=False)  # the defaults: 2,000 steps, smile_tau5 and infonce
    seconds = time.perf_counter() - start
    assert result.estimators == ("smile_tau5", "infonce")
    for key in result.estimators:
        r = result[key]
        assert r.status == "ok" and r.unit == "batch" and r.n == 3, r  # 400 held-out pairs in 3 batches
        assert r.low < 1.0 < r.high, (key, r.estimate, r.interval)
        assert abs(r.estimate - 1.0) < 0.2, (key, r.estimate)
        assert r.high - r.low < 1.0
    assert result.estimate == result["smile_tau5"].estimate
    print(f"estimate_mi, 5-d Gaussian, I = 1 nat, n = 2000: {result!r}\n({seconds:.1f} s)")


def test_seed_replicates_pool_to_the_mean_over_seeds_with_the_shared_held_out_error():
    x, y = gaussian(1500, 2, 0.5)  # 300 held-out pairs: several batches, so each seed has a held-out stderr
    result = pdlightning.estimate_mi(x, y, ("infonce",), steps=30, seeds=3, seed=5, progress=False)
    r = result["infonce"]
    assert (r.unit, r.n, r.units) == ("seed", 3, "3 seeds") and "Welch-Satterthwaite" in r.method
    values = list(r.per_seed.values())
    assert sorted(r.per_seed) == [5, 6, 7] and len(set(values)) == 3  # each seed its own critic and batch order
    assert r.estimate == pytest.approx(np.mean(values), abs=1e-9)
    # se^2 = the seeds' spread / 3 + the mean of the seeds' held-out se^2 (shared held-out pairs: not divided by 3)
    members = [row for row in result.rows if row.group is None]
    within = np.mean([row.interval.stderr**2 for row in members])
    assert all(row.interval.n >= 2 for row in members) and within > 0
    assert r.stderr == pytest.approx(math.sqrt(np.var(values, ddof=1) / 3 + within), rel=1e-9)
    assert r.low < r.estimate - 2 * r.stderr and r.high > r.estimate + 2 * r.stderr  # t with few dof: beyond 2 se
    assert result._module.data_mode == "replicas" and result._datamodule.replicas == 3
    # the module's own rows: one per seed and the across-seed row (its interval over the seeds alone)
    assert [row.member for row in result.rows] == ["infonce_s5", "infonce_s6", "infonce_s7", None]
    assert result.rows[-1].group == "infonce" and result.rows[-1].interval.estimate == pytest.approx(r.estimate)


def test_one_seed_reports_the_fits_own_held_out_interval(small):
    smile, plug_in = small["smile_tau5"], small["pd_classifier"]
    assert (smile.unit, smile.n, smile.units) == ("batch", 3, "3 held-out batches")  # 80 held-out pairs, batches of 26+
    assert (plug_in.unit, plug_in.n, plug_in.units) == ("pair", 80, "80 held-out pairs")
    assert smile.low < smile.estimate < smile.high and plug_in.low < plug_in.estimate < plug_in.high
    member = {row.key: row for row in small.rows}
    assert member["pd_classifier"].interval.estimate == plug_in.estimate
    assert list(plug_in.per_seed) == [0] and plug_in.per_seed[0] == plug_in.estimate
    assert small.data == {"rows": 400, "n_train": 320, "n_test": 80, "x_dim": 3, "y_dim": 3}


def test_pmi_of_new_pairs_has_one_column_per_estimator_and_is_the_plug_in_estimate_on_the_held_out_pairs(small):
    x, y = gaussian(400, 3, 0.5)
    held_out = small._datamodule.test_rows
    pmi = small.pmi(x[held_out], y[held_out])
    assert pmi.shape == (80, 2) and pmi.dtype == np.float64 and np.isfinite(pmi).all()
    # a plug-in estimator's held-out MI is the mean PMI of the held-out pairs, so scoring the raw held-out rows
    # (standardised here with the training statistics, as the fit saw them) gives it back
    assert pmi[:, 1].mean() == pytest.approx(small["pd_classifier"].estimate, abs=1e-5)
    one = small.pmi(x[held_out], y[held_out], estimator="smile_tau5")
    assert one.shape == (80,) and np.array_equal(one, pmi[:, 0])
    # a function of the pair alone: the same pair scores the same alone or among others (SMILE's log-partition
    # from a fixed held-out reference)
    assert small.pmi(x[held_out[:1]], y[held_out[:1]])[0] == pytest.approx(pmi[0], abs=1e-5)
    assert small.pmi(x[:1, 0:3].tolist(), torch.tensor(y[:1])).shape == (1, 2)
    with pytest.raises(ValueError, match=r"x: has 2 features per row; the training data's x has 3"):
        small.pmi(x[:5, :2], y[:5])
    with pytest.raises(ValueError, match=r"x and y: the arrays must be aligned row by row, got 5 rows of x and 4"):
        small.pmi(x[:5], y[:4])
    with pytest.raises(ValueError, match=r"estimator: 'infonce' was not estimated"):
        small.pmi(x[:5], y[:5], estimator="infonce")


def test_the_same_standardisation_is_applied_to_new_pairs():
    """A fit on rescaled data (x in other units) reports the same MI and gives new pairs in those units the same PMI:
    both come through the training rows' statistics."""
    x, y = gaussian(300, 2, 0.5)
    options = {"estimators": ("pd_classifier",), "steps": 25, "progress": False}
    plain = pdlightning.estimate_mi(x, y, **options)
    scaled = pdlightning.estimate_mi(1000.0 * x - 7.0, y * 1e-3, **options)
    assert scaled.estimate == pytest.approx(plain.estimate, abs=1e-4)
    new_x, new_y = gaussian(50, 2, 0.5, seed=9)
    expected = plain.pmi(new_x, new_y)
    assert expected.shape == (50,)
    assert np.allclose(scaled.pmi(1000.0 * new_x - 7.0, new_y * 1e-3), expected, atol=1e-4)
    assert not np.allclose(scaled.pmi(new_x, new_y), expected, atol=1e-2)  # raw units would be another input


def test_to_dict_is_plain_json_and_the_repr_is_the_table(small):
    data = small.to_dict()
    assert json.loads(json.dumps(data)) == data
    first = data["estimators"][0]
    assert first["key"] == "smile_tau5" and first["estimate"] == small["smile_tau5"].estimate
    assert (first["low"], first["high"], first["n"], first["unit"]) == (*small["smile_tau5"].interval, 3, "batch")
    assert first["per_seed"] == {"0": small["smile_tau5"].estimate}
    assert data["settings"]["critic"] == "joint" and data["settings"]["steps"] == 40 and data["data"]["n_test"] == 80
    text = repr(small)
    lines = text.splitlines()
    assert lines[0].startswith("MIEstimate: held-out MI in nats on 80 of 400 pairs (3 x 3 features; joint critic")
    assert lines[1].split() == ["estimator", "estimate", "95%", "interval", "units"]
    r = small["pd_classifier"]
    assert lines[3].split() == [
        "pd_classifier",
        f"{r.estimate:.3f}",
        f"[{r.low:.3f},",
        f"{r.high:.3f}]",
        "80",
        "held-out",
        "pairs",
    ]


@pytest.mark.parametrize(
    "x, y, kwargs",
    [
        (np.arange(200).reshape(100, 2), np.arange(100) % 7, {}),  # integers; 1-d y is one feature
        (np.random.default_rng(0).normal(size=(100, 2)).astype(np.float16), torch.randn(100, 1), {}),
        (np.random.default_rng(0).normal(size=100), np.random.default_rng(1).normal(size=100), {"critic": "separable"}),
        (torch.randn(100, 2, dtype=torch.bfloat16), [[float(i % 5)] for i in range(100)], {"estimators": "nwj"}),
    ],
)
def test_integer_float16_bfloat16_list_and_one_dimensional_inputs_work(x, y, kwargs):
    result = pdlightning.estimate_mi(x, y, steps=3, progress=False, **kwargs)
    assert result.data["rows"] == 100 and result.data["y_dim"] == 1
    assert all(np.isfinite(r.estimate) for r in result.results.values())
    assert result.pmi(x[:4], y[:4]).shape[0] == 4


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (
            ("x", "y99"),
            {},
            ValueError,
            r"x and y: the arrays must be aligned row by row .* 100 rows of x and 99 rows of y",
        ),
        (
            ("x7", "y7"),
            {},
            ValueError,
            r"x, y: 7 rows split by test_fraction=0.2 leave 6 training and 1 held-out pairs; each side needs at least 2 "
            r"pairs .*give at least 8 rows",
        ),
        (
            ("x_nan", "y"),
            {},
            ValueError,
            r"x: holds NaN or infinite values in 1 row\(s\), the first at row 15, column 2",
        ),
        (
            ("x", "y_inf"),
            {},
            ValueError,
            r"y: holds NaN or infinite values in 1 row\(s\), the first at row 99, column 0",
        ),
        (("x_str", "y"), {}, ValueError, r"x: holds <U\d+ values; expected numbers"),
        (("x_obj", "y"), {}, TypeError, r"x: holds Python objects"),
        (("x_3d", "y"), {}, ValueError, r"x: expected a \[n, d\] feature array, got shape \(100, 3, 1\)"),
        (("none", "y"), {}, TypeError, r"x: expected an array \(numpy, torch, a list of rows\) or a file path"),
        (("x", "y"), {"steps": 0}, ValueError, r"steps: expected an integer >= 1, got 0"),
        (("x", "y"), {"steps": -3}, ValueError, r"steps: expected an integer >= 1, got -3"),
        (("x", "y"), {"steps": 10.5}, TypeError, r"steps: expected an integer >= 1, got float 10.5"),
        (
            ("x", "y"),
            {"estimators": ["smile_tau"]},
            ValueError,
            r"estimators\[0\]: unknown estimator key 'smile_tau' .*did you mean 'smile_tau5'",
        ),
        (
            ("x", "y"),
            {"estimators": "infonse"},
            ValueError,
            r"estimators\[0\]: unknown estimator key 'infonse'.*did you mean 'infonce'",
        ),
        (("x", "y"), {"estimators": ["nwj", "nwj"]}, ValueError, r"estimators: \['nwj'\] listed twice"),
        (("x", "y"), {"estimators": []}, ValueError, r"estimators: expected one or more estimator keys"),
        (("x", "y"), {"critic": "mlp"}, ValueError, r"critic: expected one of \['joint', 'separable'\], got 'mlp'"),
        (("x", "y"), {"device": "tpu"}, ValueError, r"device: expected one of \['auto', 'cpu', 'cuda'\], got 'tpu'"),
        (("x", "y"), {"seeds": 0}, ValueError, r"seeds: expected an integer >= 1, got 0"),
        (("x", "y"), {"batch_size": 1}, ValueError, r"batch_size: expected an integer >= 2"),
        (
            ("x", "y"),
            {"test_fraction": 1.0},
            ValueError,
            r"test_fraction: expected the held-out share of the rows in \(0, 1\)",
        ),
        (("x", "y"), {"lr": -1}, ValueError, r"lr: expected a learning rate > 0"),
        (("x", "y"), {"hidden_dims": []}, ValueError, r"hidden_dims: expected a list of layer widths"),
        (("missing.npy", "y"), {}, FileNotFoundError, r"x: no such file 'missing.npy'"),
    ],
)
def test_bad_input_is_one_error_naming_the_argument(args, kwargs, error, message):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    arrays = {
        "x": x,
        "y": x[:, :1] + rng.normal(size=(100, 1)),
        "y99": x[:99],
        "x7": x[:7],
        "y7": x[:7],
        "x_nan": np.where(np.arange(300).reshape(100, 3) == 47, np.nan, x),
        "y_inf": np.where(np.arange(100)[:, None] == 99, np.inf, x[:, :1]),
        "x_str": x.astype(str),
        "x_obj": np.array([[1.0, None]] * 100, dtype=object),
        "x_3d": x.reshape(100, 3, 1),
        "none": None,
    }
    values = [arrays.get(a, a) for a in args]
    with pytest.raises(error, match=message):
        pdlightning.estimate_mi(*values, progress=False, **kwargs)


def test_cuda_asked_for_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device: 'cuda' was asked for, but torch sees no CUDA device"):
        pdlightning.estimate_mi(np.zeros((20, 1)), np.zeros((20, 1)), device="cuda")


def test_a_fit_prints_no_lightning_banners(capfd):
    x, y = gaussian(100, 2, 0.5)
    result = pdlightning.estimate_mi(x, y, "nwj", steps=2, progress=False)
    out, err = capfd.readouterr()
    assert result.settings["device"] in ("cpu", "cuda")
    for banner in ("GPU available", "TPU available", "Tip", "max_steps", "Seed set", "LOCAL_RANK", "Held-out MI"):
        assert banner not in out + err, (banner, out + err)


def test_results_json_goes_to_output_dir(tmp_path):
    x, y = gaussian(100, 2, 0.5)
    result = pdlightning.estimate_mi(x, y, "infonce", steps=2, progress=False, output_dir=str(tmp_path))
    (path,) = tmp_path.glob("results*.json")
    rows = json.loads(path.read_text())["results"]
    assert [(r["key"], r["true_mi"], r["estimate"]) for r in rows] == [("infonce", None, result.estimate)]


def test_import_is_light_and_the_one_liner_runs():
    light = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pdlightning; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'lightning' not in sys.modules; print(sorted(pdlightning.__all__))",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert light.returncode == 0, light.stderr
    assert "estimate_mi" in light.stdout
    one_liner = (
        "import numpy as np, pdlightning as p; r = np.random.default_rng(0); x = r.normal(size=(300, 2)); "
        "print(p.estimate_mi(x, x + r.normal(size=(300, 2)), steps=20, progress=False))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", one_liner], capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("MIEstimate: held-out MI in nats on 60 of 300 pairs"), run.stdout
    assert [line.split()[0] for line in lines[2:]] == ["smile_tau5", "infonce"], run.stdout
    assert "GPU available" not in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_estimator_result_units_in_words():
    r = EstimatorResult("nwj", "NWJ", 1.0, 0.1, 0.8, 1.2, 1, "batch", "n = 1: no interval", {0: 1.0})
    assert r.units == "1 held-out batch"
    assert EstimatorResult("nwj", "NWJ", 1.0, 0.1, 0.8, 1.2, 5, "seed", "t", {}).units == "5 seeds"
