"""pplang: a probabilistic programming language for JAX.

    import pplang as pp
    m = pp.load("examples/coin.ppl")["coin"]
    post = pp.importance_sampling(m, pp.load_data("examples/coin.data.json"), num_samples=10_000)
    print(post.summary())

The public names load on first use, so a generated module that imports only `pplang.runtime` and
`pplang.stdlib` does not load the compiler or the parser. With PPLANG_X64=1 in the environment,
importing pplang switches JAX to float64 (see pplang.precision).
"""

from importlib import import_module
from typing import Any

from pplang import precision as _precision

_EXPORTS = {
    "PplError": "pplang.compiler.diagnostics",
    "Module": "pplang.embed",
    "guide": "pplang.embed",
    "load": "pplang.embed",
    "loads": "pplang.embed",
    "model": "pplang.embed",
    "objective": "pplang.embed",
    "ImportanceResult": "pplang.inference.importance",
    "importance_sampling": "pplang.inference.importance",
    "posterior_predictive": "pplang.inference.importance",
    "prior_predictive": "pplang.inference.importance",
    "Model": "pplang.models",
    "fit": "pplang.inference.variational",
    "smc": "pplang.inference.filtering",
    "SMCResult": "pplang.inference.filtering_result",
    "smc_log_marginal_fn": "pplang.inference.filtering",
    "Problem": "pplang.inference.variational",
    "standard_objectives": "pplang.inference.variational",
    "FitResult": "pplang.results",
    "auto_guide": "pplang.inference.autoguide",
    "check_gradient": "pplang.gradcheck",
    "AutoGuide": "pplang.inference.autoguide",
    "Trace": "pplang.models",
    "amortize": "pplang.inference.amortized",
    "AmortizedPosterior": "pplang.inference.amortized_result",
    "network": "pplang.stdlib.networks",
    "deep_sets": "pplang.stdlib.networks",
    "set_transformer": "pplang.stdlib.networks",
    "set_network": "pplang.stdlib.networks",
    "load_data": "pplang.data",
    "sample": "pplang.inference.mcmc",
    "infer": "pplang.inference.choose",
    "choose_method": "pplang.inference.choose",
    "SampleResult": "pplang.inference.mcmc_result",
    "enable_x64": "pplang.precision",
}

__all__ = sorted(_EXPORTS)

if _precision.requested_by_environment():  # PPLANG_X64=1: float64 before the first array is made
    _precision.enable_x64()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name == "__version__":  # the installed distribution's version, read on first use
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pplang")
        except PackageNotFoundError:  # run from a source tree that was not installed
            return "unknown"
    raise AttributeError(f"module 'pplang' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
