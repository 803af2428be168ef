"""The Pareto-k diagnostic: the tail fit recovers known shapes, and on importance sampling it
separates proposals with light-tailed weights from ones whose weights have infinite variance."""

import numpy as np
import pytest
from scipy import stats

import pplang as pp
from pplang.pareto import gpd_fit, pareto_k, verdict


@pytest.mark.parametrize("k", [0.1, 0.4, 0.8])
def test_tail_fit_recovers_the_shape_of_a_generalized_pareto(k: float) -> None:
    n = 4000
    x = stats.genpareto.rvs(k, size=n, random_state=np.random.default_rng(1))
    k_hat, sigma = gpd_fit(x)
    se = (1 + k) / np.sqrt(n)  # asymptotic sd of the maximum-likelihood estimate of k
    assert abs(k_hat - k) < 4 * se + 0.02  # plus the small pull of the prior towards 0.5
    assert sigma > 0


def normal_target_log_weights(proposal_sd: float, n: int = 20_000, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0.0, proposal_sd, n)
    return stats.norm.logpdf(x) - stats.norm.logpdf(x, 0.0, proposal_sd)


def test_narrow_proposal_is_flagged_and_wide_one_is_not() -> None:
    """Target N(0, 1). A proposal with sd 0.5 gives weights whose tail index is k = 0.75 (infinite
    variance); sd 0.8 gives k = 0.36; sd 2 gives bounded weights (k < 0)."""
    assert pareto_k(normal_target_log_weights(0.5)) > 0.6
    assert 0.2 < pareto_k(normal_target_log_weights(0.8)) < 0.55
    assert pareto_k(normal_target_log_weights(2.0)) < 0.3


def test_too_few_draws_give_nan_and_say_so() -> None:
    k = pareto_k(np.zeros(10))
    assert np.isnan(k) and "too few" in verdict(k)


def test_importance_result_reports_k_and_the_cli_warns(capsys: pytest.CaptureFixture) -> None:
    mixture = pp.load("examples/mixture.ppl")["mixture"]
    post = pp.importance_sampling(mixture, pp.load_data("examples/mixture.data.json"), num_samples=5000)
    assert post.pareto_k > 0.7 and "Pareto k" in post.summary()
    from pplang.cli import main

    assert main(["infer", "--method", "is", "examples/mixture.ppl", "--data", "examples/mixture.data.json",
                 "-n", "5000"]) == 0
    out = capsys.readouterr().out
    assert out.index("warning: Pareto k") < out.index("\nw ")  # before the table


def test_exact_posterior_proposal_has_constant_weights() -> None:
    """A guide equal to the posterior gives equal weights: nothing to fit, no warning."""
    src = """
model coin(n: int):
    p ~ beta(1.0, 1.0)
    for i in range(n):
        flips[i] ~ bernoulli(p)
guide exact(n: int):
    p ~ beta(9.0, 3.0)
"""
    mod = pp.loads(src)
    data = {"n": 10, "flips": [1, 1, 1, 0, 1, 1, 0, 1, 1, 1]}
    post = pp.importance_sampling(mod["coin"], data, num_samples=4000, proposal=mod["exact"])
    assert not post.pareto_k > 0.5


def test_verdicts_read_k_as_vehtari_et_al() -> None:
    """k <= 0.5 good; 0.5 < k <= 0.7 means usable, sds and tails doubtful (sample with NUTS);
    k > 0.7 unreliable. The warning of the middle band names the command that samples instead."""
    from pplang.pareto import sample_command, warning

    assert verdict(0.5) == "good" and warning(0.5, "fix it") is None and warning(float("nan"), "fix it") is None
    assert "sds and tails may be off" in verdict(0.6) and "sds and tails may be off" in verdict(0.7)
    assert verdict(0.71).startswith("unreliable")
    command = sample_command("m.ppl", "m", "d.json")
    middle = warning(0.6, "fix it", command)
    assert "between 0.5 and 0.7" in middle and "pplang sample m.ppl --model m --data d.json" in middle
    assert "fix it" not in middle
    high = warning(0.9, "fix it", command)
    assert "> 0.7" in high and high.endswith("fix it")


def test_fit_warning_suggests_a_step_beyond_the_guide_in_use() -> None:
    from pplang.cli.fit import next_step

    sample = "pplang sample m.ppl --model m"
    assert "full_rank" in next_step("mean_field", sample) and sample not in next_step("mean_field", sample)
    assert "full_rank" not in next_step("full_rank", sample)
    assert "--lr-schedule" in next_step("full_rank", sample) and sample in next_step("full_rank", sample)
    assert "full_rank" in next_step("my_guide", sample) and "low_rank" not in next_step("low_rank", sample)
