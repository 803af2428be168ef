"""pplang: a probabilistic programming language for JAX.

    import pplang as pp
    m = pp.load("examples/coin.ppl")["coin"]
    post = pp.importance_sampling(m, pp.load_data("examples/coin.data.json"), num_samples=10_000)
    print(post.summary())
"""

from pplang.data import load_json as load_data
from pplang.diagnostics import PplError
from pplang.embed import Module, guide, load, loads, model, objective
from pplang.inference import ImportanceResult, importance_sampling, posterior_predictive, prior_predictive
from pplang.model import Model, Trace

__all__ = ["ImportanceResult", "Model", "Module", "PplError", "Trace", "guide", "importance_sampling", "load",
           "load_data", "loads", "model", "objective", "posterior_predictive", "prior_predictive"]
__version__ = "0.1.0"
