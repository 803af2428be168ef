"""`pp.infer` / `pplang infer` pick the best applicable method and say which: NUTS when every latent
choice is continuous, SMC when discrete choices sit in a loop over time, importance sampling
otherwise or when asked for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pplang as pp
from pplang.cli import main
from pplang.inference.choose import choose_method

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str, model: str) -> tuple[pp.Model, dict]:
    return pp.load(str(EXAMPLES / f"{name}.ppl"))[model], json.loads((EXAMPLES / f"{name}.data.json").read_text())


@pytest.mark.parametrize(("name", "model", "method", "words"), [
    ("coin", "coin", "nuts", "every latent choice is continuous"),
    ("hmm", "hmm", "nuts", "the discrete choices `z` are summed out of the density (marginalize)"),
    ("hmm", "hmm_forward", "nuts", "every latent choice is continuous"),
    ("mixture", "mixture", "nuts", "the discrete choices `z` are summed out of the density (marginalize)"),
])
def test_the_choice_and_its_reason(name: str, model: str, method: str, words: str) -> None:
    m, data = load(name, model)
    choice = choose_method(m, data)
    assert choice.method == method and words in choice.reason, choice


def test_importance_sampling_is_chosen_for_a_choice_with_infinite_support() -> None:
    m = pp.loads("model m():\n    k ~ poisson(3.0)\n    y ~ normal(to_real(k), 1.0)\n", file="m.ppl")["m"]
    choice = choose_method(m, {"y": 2.5})
    assert choice.method == "is" and "no loop over time allows SMC" in choice.reason, choice


def test_importance_sampling_is_chosen_when_summing_out_needs_too_large_a_table() -> None:
    src = "model m(K: int):\n" + "".join(f"    {c} ~ categorical(ones(K) / K)\n" for c in "abc") \
        + "    y ~ normal(to_real(a * b + c), 1.0)\n"
    m = pp.loads(src, file="m.ppl")["m"]
    assert choose_method(m, {"K": 3, "y": 2.5}).method == "nuts"
    assert choose_method(m, {"K": 200, "y": 2.5}).method == "is"  # a table of 200^3 entries


def test_the_default_answer_is_nuts_on_a_continuous_model(capsys: pytest.CaptureFixture) -> None:
    """coin: p ~ beta(1, 1), 8 heads in 10 flips: the posterior is beta(9, 3), mean 0.75."""
    assert main(["infer", str(EXAMPLES / "coin.ppl"), "--data", str(EXAMPLES / "coin.data.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("method: NUTS (every latent choice is continuous)")
    row = next(line.split() for line in out.splitlines() if line.startswith("p "))
    mean, mcse, r_hat = float(row[1]), float(row[6]), float(row[9])
    assert abs(mean - 0.75) < 4 * mcse + 1e-3 and r_hat < 1.01


def test_python_infer_returns_the_methods_result() -> None:
    m, data = load("coin", "coin")
    res = pp.infer(m, data, draws=300, warmup=300, progress=False)
    assert isinstance(res, pp.SampleResult) and res.draws["p"].shape == (4, 300)
    post = pp.infer(m, data, method="is", num_samples=2000)
    assert isinstance(post, pp.ImportanceResult)
    assert abs(float(post.mean("p")) - 0.75) < 0.03
    with pytest.raises(pp.PplError, match="unknown inference method"):
        pp.infer(m, data, method="nut")


def test_smc_is_chosen_for_discrete_states_over_time(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Counts carried through time (a poisson state has no finite support to sum over): a particle filter."""
    (tmp_path / "counts.ppl").write_text("""
model counts(T: int):
    r ~ gamma(2.0, 2.0)
    n[0] ~ poisson(5.0)
    y[0] ~ normal(n[0], 1.0)
    for t in range(1, T):
        n[t] ~ poisson(r * n[t - 1] + 1.0)
        y[t] ~ normal(n[t], 1.0)
""")
    (tmp_path / "counts.json").write_text(json.dumps({"T": 5, "y": [5.2, 6.1, 6.8, 7.9, 9.1]}))
    code = main(["infer", str(tmp_path / "counts.ppl"), "--data", str(tmp_path / "counts.json"), "-n", "2000"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("method: a particle filter (SMC)") and "log marginal likelihood" in out


def test_a_proposal_means_importance_sampling(capsys: pytest.CaptureFixture) -> None:
    code = main(["infer", str(EXAMPLES / "linreg.ppl"), "--model", "linreg", "--data",
                 str(EXAMPLES / "linreg.data.json"), "--proposal", "ols_proposal", "-n", "2000"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("method: importance sampling (asked for)")
    assert np.isfinite(float(out.split("log marginal likelihood ")[1].split()[0]))
