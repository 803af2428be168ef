"""The module `pplang compile FILE -o out.py` writes: it depends only on JAX and pplang's runtime
and standard library (never the compiler or checker), and its functions, run with a
`pplang.runtime.Context`, compute what the Python API computes."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pplang as pp
from pplang import runtime as rt
from pplang.cli import main

SOURCE = """\
model linreg(N: int, x: vector[N]):
    alpha ~ normal(0.0, 10.0)
    beta ~ normal(0.0, 10.0)
    sigma ~ half_normal(5.0)
    for i in range(N):
        mu[i] = alpha + beta * x[i]
        y[i] ~ normal(mu[i], sigma)
    return mu

model ar1(T: int):
    rho ~ uniform(-1.0, 1.0)
    x[0] ~ normal(0.0, 1.0)
    for t in range(1, T):
        x[t] ~ normal(rho * x[t - 1], 1.0)

model mix(N: int):
    w ~ beta(2.0, 2.0)
    for i in range(N):
        z[i] ~ bernoulli(w)
        if z[i] == 1:
            y[i] ~ normal(-2.0, 1.0)
        else:
            y[i] ~ normal(softplus(w) + logit(0.3), 0.5)

model sub(s: real):
    a ~ normal(0.0, s)
    return a * 2.0

model top():
    u ~ sub(3.0)
    v ~ normal(u, 1.0)
    factor(-0.5 * v * v)

guide q(N: int):
    param m: real = 0.5
    param s: positive = 2.0
    w ~ beta(s, s + m)
"""

ARGS = {
    "linreg": {"N": 4, "x": [0.0, 1.0, 2.0, 3.0]},
    "ar1": {"T": 5},
    "mix": {"N": 5},
    "top": {},
}
HOSTED = """\
model hosted(x: vector[3]):
    a ~ normal(f(x), 1.0)
"""
OBSERVED = {"linreg": ["y"], "ar1": ["x"], "mix": ["y"], "top": ["v"]}
ALLOWED = ("jax", "pplang.runtime", "pplang.stdlib")


def host_f(x: jax.Array) -> jax.Array:
    return jnp.sum(x) / 2.0


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, types.ModuleType]:
    d = tmp_path_factory.mktemp("emit")
    src = d / "models.ppl"
    src.write_text(SOURCE)
    out = d / "models_jax.py"
    assert main(["compile", str(src), "-o", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("models_jax", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return out, mod


@pytest.fixture(scope="module")
def api(emitted: tuple[Path, types.ModuleType]) -> pp.Module:
    return pp.load(str(emitted[0].parent / "models.ppl"))


def imported_modules(code: str) -> list[str]:
    """Every module the code imports, including `from a import b` as `a.b`."""
    out = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in a generated module"
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def call(fn: types.FunctionType, name: str, given: dict, key: int = 0, unconstrained: frozenset = frozenset(),
         hosts: dict | None = None) -> tuple:
    args = [jnp.asarray(v) if isinstance(v, list) else v for v in ARGS.get(name, {}).values()]
    ctx = rt.Context(given={a: jnp.asarray(v) for a, v in given.items()}, params={}, hosts=hosts or {},
                     unconstrained=unconstrained)
    return fn(ctx, jax.random.key(key), *args)


def test_compile_writes_the_module_the_api_runs(emitted: tuple[Path, types.ModuleType], api: pp.Module) -> None:
    out, _ = emitted
    assert out.read_text() == api.code


def test_emitted_module_imports_only_jax_and_the_runtime(emitted: tuple[Path, types.ModuleType]) -> None:
    mods = imported_modules(emitted[0].read_text())
    assert "jax" in mods and "pplang.runtime" in mods
    bad = [m for m in mods if not any(m == a or m.startswith(a + ".") for a in ALLOWED)]
    assert not bad, f"the generated module imports {bad}"
    code = emitted[0].read_text()
    for word in ("compiler", "checker", "pyfront", "parser", "exec(", "eval("):
        assert word not in code


def test_emitted_module_defines_every_model_and_guide(emitted: tuple[Path, types.ModuleType]) -> None:
    _, mod = emitted
    for name in ("linreg", "ar1", "mix", "sub", "top", "q"):
        assert callable(getattr(mod, name))


@pytest.mark.parametrize("name", list(ARGS))
def test_emitted_log_density_equals_api(emitted: tuple[Path, types.ModuleType], api: pp.Module, name: str) -> None:
    fn, m = getattr(emitted[1], name), api[name]
    for seed in (0, 1):
        values = m.simulate(ARGS[name], seed=seed).values
        _, trace, score = call(fn, name, values)
        np.testing.assert_allclose(float(score.lp), float(m.log_density(values, ARGS[name])), rtol=1e-5, atol=1e-5)
        # with everything given, the trace holds the given values and the log weight is the whole density
        for a, v in values.items():
            np.testing.assert_allclose(np.asarray(trace[a]), np.asarray(v), rtol=1e-6)
        np.testing.assert_allclose(float(score.lw), float(score.lp), rtol=1e-6)


@pytest.mark.parametrize("name", list(ARGS))
def test_emitted_simulation_equals_api(emitted: tuple[Path, types.ModuleType], api: pp.Module, name: str) -> None:
    retval, trace, score = call(getattr(emitted[1], name), name, {}, key=3)
    tr = api[name].simulate(ARGS[name], seed=3)
    assert set(trace) == set(tr.values)
    for a in trace:
        np.testing.assert_allclose(np.asarray(trace[a]), np.asarray(tr.values[a]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(score.lp), float(tr.log_density), rtol=1e-5, atol=1e-5)
    # nothing is given, so the only weight is the factor's (which the prior does not draw)
    factor = -0.5 * float(trace["v"]) ** 2 if name == "top" else 0.0
    np.testing.assert_allclose(float(score.lw), factor, rtol=1e-5)
    np.testing.assert_allclose(float(tr.log_weight), factor, rtol=1e-5)
    if tr.retval is not None:
        np.testing.assert_allclose(np.asarray(retval), np.asarray(tr.retval), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(ARGS))
def test_emitted_importance_weight_equals_api(emitted: tuple[Path, types.ModuleType], api: pp.Module,
                                              name: str) -> None:
    m = api[name]
    truth = m.simulate(ARGS[name], seed=9).values
    obs = {a: np.asarray(truth[a]) for a in OBSERVED[name]}
    _, trace, score = call(getattr(emitted[1], name), name, obs, key=4)
    tr = m.importance({**ARGS[name], **obs}, seed=4)
    np.testing.assert_allclose(float(score.lw), float(tr.log_weight), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(score.lp), float(tr.log_density), rtol=1e-5, atol=1e-5)


def test_emitted_unconstrained_density_equals_api(emitted: tuple[Path, types.ModuleType], api: pp.Module) -> None:
    m = api["linreg"]
    values = {"alpha": 0.5, "beta": -1.0, "sigma": 0.3, "y": [0.1, -0.2, 0.4, 1.0]}
    _, trace, score = call(emitted[1].linreg, "linreg", values, unconstrained=frozenset({"alpha", "beta", "sigma"}))
    expected = m.log_density(values, ARGS["linreg"], unconstrained=True)
    np.testing.assert_allclose(float(score.lp), float(expected), rtol=1e-5)
    np.testing.assert_allclose(float(trace["sigma"]), np.exp(0.3), rtol=1e-6)


def test_emitted_host_function_comes_from_the_context(tmp_path: Path) -> None:
    """A host function is looked up in the context at run time, not baked into the module."""
    hosted = pp.loads(HOSTED, hosts={"f": host_f})
    out = tmp_path / "hosted_jax.py"
    out.write_text(hosted.code)
    assert "host_f" not in hosted.code
    spec = importlib.util.spec_from_file_location("hosted_jax", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = [1.0, 2.0, 3.0]
    ctx = rt.Context(given={"a": jnp.asarray(0.7)}, params={}, hosts={"f": host_f})
    _, _, score = mod.hosted(ctx, jax.random.key(0), jnp.asarray(x))
    expected = float(hosted["hosted"].log_density({"a": 0.7}, {"x": x}))
    np.testing.assert_allclose(float(score.lp), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, -0.5 * (0.7 - 3.0) ** 2 - 0.5 * np.log(2 * np.pi), rtol=1e-5)
    other = rt.Context(given={"a": jnp.asarray(0.7)}, params={}, hosts={"f": lambda x: jnp.sum(x)})
    _, _, score = mod.hosted(other, jax.random.key(0), jnp.asarray(x))
    np.testing.assert_allclose(float(score.lp), -0.5 * (0.7 - 6.0) ** 2 - 0.5 * np.log(2 * np.pi), rtol=1e-5)


def test_emitted_guide_reads_params_from_the_context(emitted: tuple[Path, types.ModuleType],
                                                     api: pp.Module) -> None:
    params = {"m": jnp.asarray(0.25), "s": jnp.log(jnp.asarray(3.0))}
    ctx = rt.Context(given={"w": jnp.asarray(0.4)}, params=params, hosts={})
    _, _, score = emitted[1].q(ctx, jax.random.key(0), 2)
    expected = api["q"].log_density({"w": 0.4}, {"N": 2}, params=params)
    np.testing.assert_allclose(float(score.lp), float(expected), rtol=1e-6)
    from scipy import stats

    np.testing.assert_allclose(float(score.lp), stats.beta.logpdf(0.4, 3.0, 3.25), rtol=1e-5)


def test_emitted_module_runs_in_a_fresh_interpreter(emitted: tuple[Path, types.ModuleType], api: pp.Module,
                                                    tmp_path: Path) -> None:
    """Imported by path from another directory, with nothing of the test's state around."""
    out, _ = emitted
    values = {"rho": 0.5, "x": [0.3, -0.1, 0.8, 1.2, 0.0]}
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        import jax, jax.numpy as jnp
        from pplang import runtime as rt
        spec = importlib.util.spec_from_file_location("emitted", {str(out)!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        given = {{k: jnp.asarray(v) for k, v in {values!r}.items()}}
        _, _, score = mod.ar1(rt.Context(given=given, params={{}}, hosts={{}}), jax.random.key(0), 5)
        print(json.dumps(float(score.lp)))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lp = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(lp, float(api["ar1"].log_density(values, {"T": 5})), rtol=1e-5)


def test_compile_of_a_bad_file_fails_with_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.ppl"
    bad.write_text("model m():\n    a ~ nromal(0.0, 1.0)\n")
    out = tmp_path / "out.py"
    assert main(["compile", str(bad), "-o", str(out)]) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "bad.ppl:2:" in err and "normal" in err
