"""The language's math functions, each mapped to the `jax.numpy` / `jax.nn` / `jax.scipy` function
that implements it. The checker reads `rule` to compute result shapes; generated code calls `impl`.

Rules: `elementwise` (broadcast the arguments), `reduce` (to a scalar, or along the axis given as
a second argument: `sum(x, 0)`), `log_mix` (elementwise with three arguments, over the last axis
with two), `same` (shape of the first
argument), `dot`, `matmul`, `outer`, `transpose`, `square` (a KxK matrix from a KxK matrix),
`solve`, `sized` (a new array whose sizes are the static integer arguments), `concat`, `ode` (the
solution of an ODE whose right-hand side is a declaration of the file, one row per time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MathFn:
    impl: str
    arity: tuple[int, int]
    rule: str
    kind: str = "real"  # result kind: "real", "int", "bool" or "arg" (kind of the first argument)
    doc: str = ""


def _ew(impl: str, doc: str, arity: tuple[int, int] = (1, 1), kind: str = "real") -> MathFn:
    return MathFn(impl, arity, "elementwise", kind, doc)


FUNCTIONS: dict[str, MathFn] = {
    "exp": _ew("jnp.exp", "e**x"),
    "log": _ew("jnp.log", "natural logarithm"),
    "log1p": _ew("jnp.log1p", "log(1 + x), accurate near 0"),
    "expm1": _ew("jnp.expm1", "exp(x) - 1, accurate near 0"),
    "log2": _ew("jnp.log2", "base-2 logarithm"),
    "log10": _ew("jnp.log10", "base-10 logarithm"),
    "sqrt": _ew("jnp.sqrt", "square root"),
    "square": _ew("jnp.square", "x * x", kind="arg"),
    "abs": _ew("jnp.abs", "absolute value", kind="arg"),
    "sin": _ew("jnp.sin", "sine"),
    "cos": _ew("jnp.cos", "cosine"),
    "tan": _ew("jnp.tan", "tangent"),
    "tanh": _ew("jnp.tanh", "hyperbolic tangent"),
    "sinh": _ew("jnp.sinh", "hyperbolic sine"),
    "cosh": _ew("jnp.cosh", "hyperbolic cosine"),
    "arctan": _ew("jnp.arctan", "inverse tangent"),
    "floor": _ew("jnp.floor", "round down"),
    "ceil": _ew("jnp.ceil", "round up"),
    "round": _ew("jnp.round", "round to nearest"),
    "sigmoid": _ew("jax.nn.sigmoid", "1 / (1 + exp(-x))"),
    "inv_logit": _ew("jax.nn.sigmoid", "same as sigmoid"),
    "logit": _ew("jax.scipy.special.logit", "log(x / (1 - x))"),
    "log_sigmoid": _ew("jax.nn.log_sigmoid", "log(sigmoid(x)), stable"),
    "softplus": _ew("jax.nn.softplus", "log(1 + exp(x)), stable"),
    "relu": _ew("jax.nn.relu", "max(x, 0)"),
    "erf": _ew("jax.scipy.special.erf", "error function"),
    "Phi": _ew("jax.scipy.stats.norm.cdf", "standard normal CDF"),
    "lgamma": _ew("jax.scipy.special.gammaln", "log Gamma function"),
    "digamma": _ew("jax.scipy.special.digamma", "digamma function"),
    "pow": _ew("jnp.power", "x ** y", (2, 2)),
    "maximum": _ew("jnp.maximum", "elementwise maximum", (2, 2), "arg"),
    "minimum": _ew("jnp.minimum", "elementwise minimum", (2, 2), "arg"),
    "where": MathFn("jnp.where", (3, 3), "where", "arg", "where(cond, a, b)"),
    "sum": MathFn("jnp.sum", (1, 2), "reduce", "arg", "sum of all elements; sum(x, k) along axis k"),
    "prod": MathFn("jnp.prod", (1, 2), "reduce", "arg", "product of all elements; prod(x, k) along axis k"),
    "mean": MathFn("jnp.mean", (1, 2), "reduce", "real", "mean of all elements; mean(x, k) along axis k"),
    "sd": MathFn("jnp.std", (1, 2), "reduce", "real", "standard deviation of all elements; sd(x, k) along axis k"),
    "variance": MathFn("jnp.var", (1, 2), "reduce", "real", "variance of all elements; variance(x, k) along axis k"),
    "max": MathFn("jnp.max", (1, 2), "reduce", "arg", "largest element; max(x, k) along axis k"),
    "min": MathFn("jnp.min", (1, 2), "reduce", "arg", "smallest element; min(x, k) along axis k"),
    "logsumexp": MathFn("jax.scipy.special.logsumexp", (1, 2), "reduce", "real",
                        "log(sum(exp(x))), stable; logsumexp(x, k) along axis k"),
    "log_sum_exp": MathFn("jax.scipy.special.logsumexp", (1, 2), "reduce", "real", "same as logsumexp"),
    "log_mix": MathFn("rt.log_mix", (2, 3), "log_mix", "real",
                      "log_mix(theta, lp1, lp2) = log(theta e^lp1 + (1 - theta) e^lp2); log_mix(w, lps): "
                      "log sum_k w[k] e^lps[..., k]"),
    "norm": MathFn("jnp.linalg.norm", (1, 1), "reduce", "real", "Euclidean norm"),
    "dot": MathFn("jnp.dot", (2, 2), "dot", "real", "inner product of two vectors"),
    "matmul": MathFn("jnp.matmul", (2, 2), "matmul", "real", "matrix product, same as @"),
    "outer": MathFn("jnp.outer", (2, 2), "outer", "real", "outer product of two vectors"),
    "transpose": MathFn("jnp.transpose", (1, 1), "transpose", "arg", "matrix transpose"),
    "cumsum": MathFn("jnp.cumsum", (1, 1), "same", "arg", "running sum of a vector"),
    "stop_gradient": MathFn("rt.stop_gradient", (1, 1), "same", "arg",
                            "the value, with no gradient flowing through it (for objectives)"),
    "softmax": MathFn("jax.nn.softmax", (1, 1), "same", "real", "exp(x) / sum(exp(x))"),
    "log_softmax": MathFn("jax.nn.log_softmax", (1, 1), "same", "real", "x - logsumexp(x)"),
    "sort": MathFn("jnp.sort", (1, 1), "same", "arg", "sorted copy of a vector"),
    "cholesky": MathFn("jnp.linalg.cholesky", (1, 1), "square", "real", "lower Cholesky factor"),
    "inverse": MathFn("jnp.linalg.inv", (1, 1), "square", "real", "matrix inverse"),
    "diag_matrix": MathFn("jnp.diag", (1, 1), "diag", "real", "a diagonal matrix from a vector"),
    "solve": MathFn("jnp.linalg.solve", (2, 2), "solve", "real", "solve(A, b) is A^-1 b"),
    "zeros": MathFn("rt.zeros", (1, 2), "sized", "real", "zeros(n) or zeros(n, m)"),
    "ones": MathFn("rt.ones", (1, 2), "sized", "real", "ones(n) or ones(n, m)"),
    "identity": MathFn("jnp.eye", (1, 1), "sized_square", "real", "identity(n): the n x n identity"),
    "concat": MathFn("rt.concat", (2, 2), "concat", "arg", "concat(a, b): two vectors end to end"),
    "to_real": _ew("rt.to_real", "convert an int or bool to real"),
    "to_int": _ew("rt.to_int", "truncate a real to int", kind="int"),
    "size": MathFn("rt.size", (1, 1), "size", "int", "number of elements along the first axis"),
    "ode_rk45": MathFn("rt.ode_rk45", (4, 24), "ode", "real",
                       "ode_rk45(f, y0, t0, ts, ...): y at times ts, dy/dt = f(t, y, ...), y(t0) = y0 (non-stiff)"),
    "ode_bdf": MathFn("rt.ode_bdf", (4, 24), "ode", "real",
                      "ode_bdf(f, y0, t0, ts, ...): the same for stiff systems"),
}
