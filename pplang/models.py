"""User-facing models and guides: the core transformations `simulate`, `log_density` and
`importance`, each a jitted call of the one generated function under a different `Context`."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang import runtime as rt
from pplang.compiler import ir
from pplang.compiler.diagnostics import did_you_mean, error
from pplang.compiler.frontend.syntax import Span
from pplang.data import Bound, bind, fingerprint, merged

REPR_CHOICES = 12  # random choices listed by repr(model)
BINDINGS_KEPT = 8  # bindings (and fitting problems) kept per model for repeated calls with the same data


@dataclass
class Trace:
    """Values of the random choices by address, the log density of the whole trace, the log weight
    of the choices that were given, and the return value. Batched when several were drawn."""

    values: dict[str, Any]
    log_density: Any
    log_weight: Any
    retval: Any = None

    def __getitem__(self, address: str) -> Any:
        return self.values[address]


def source_line_of(code: str, lineno: int) -> int | None:
    """The model line of a generated line: the nearest `# file:line` comment above it."""
    rows = code.splitlines()
    for k in range(min(lineno, len(rows)) - 1, -1, -1):
        m = re.match(r"\s*# [^:]*:(\d+)  ", rows[k])
        if m:
            return int(m.group(1))
    return None


def generated_comment(exc: BaseException) -> str | None:
    """The `file:line  source` comment above the innermost generated line in `exc`'s traceback: the
    model statement whose code raised it."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_globals.get("__pplang_code__")
        if code is not None and tb.tb_frame.f_code.co_filename.startswith("<pplang"):
            rows = code.splitlines()
            for k in range(min(tb.tb_lineno, len(rows)) - 1, -1, -1):
                m = re.match(r"\s*# ([^:]*:\d+)  (.*)$", rows[k])
                if m:
                    found = f"{m.group(1)}: {m.group(2).strip()}"
                    break
        tb = tb.tb_next
    return found


def nan_origin(run: Callable[[], Any]) -> str | None:
    """Run `run` op by op with JAX's NaN check on and name the model statement whose code made the
    first NaN (`gp.ppl:7: L = cholesky(K)`): where a non-finite value appeared, not the observation
    below it that it spoiled. None when no NaN appears or no model line made it."""
    try:
        with jax.disable_jit(), jax.debug_nans(True):
            run()
    except FloatingPointError as e:
        return generated_comment(e)
    except Exception:  # noqa: BLE001 - this only adds a detail to an error being reported
        return None
    return None


def show_shape(shape: ir.Shape) -> str:
    """A declared shape as the user reads it: `()`, `[N, 4]` (`?` where unknown before data)."""
    if shape is None:
        return "unknown"
    return "()" if not shape else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def first_code_col(source: str, line: int) -> int:
    rows = source.splitlines()
    if not 0 < line <= len(rows):
        return 1
    return len(rows[line - 1]) - len(rows[line - 1].lstrip()) + 1


KEYS: dict[tuple[int, str], Any] = {}  # the keys of int seeds, made once (see as_key)


def as_key(seed: Any) -> Any:
    """An int seed or a JAX key (typed or raw uint32[2])."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        # made once per seed: making a key costs more than a small compiled answer; keys are immutable
        cache = (int(seed), jax.config.jax_default_prng_impl)
        key = KEYS.get(cache)
        if key is None:
            key = jax.random.key(cache[0])
            if not isinstance(key, jax.core.Tracer) and len(KEYS) < 1024:
                KEYS[cache] = key
        return key
    if isinstance(seed, jax.Array) and (jnp.issubdtype(seed.dtype, jax.dtypes.prng_key) or seed.dtype == jnp.uint32):
        return seed
    raise error(f"seed must be an int or a JAX random key, not {type(seed).__name__}", hint="for example seed=0")


@dataclass
class Model:
    """A compiled model or guide. Data is passed by name (arguments and observations together)."""

    fn: ir.Function
    impl: Callable
    hosts: dict[str, Any]
    source: str
    decls: list = field(default_factory=list)  # the declarations it was compiled from (for submodels)
    _jitted: dict[tuple, Callable] = field(default_factory=dict)
    _bound: OrderedDict = field(default_factory=OrderedDict)  # recent bindings, by data fingerprint
    _prepared: OrderedDict = field(default_factory=OrderedDict)  # what recent calls built from their data (reuse)
    _marginals: dict[tuple, Any] = field(default_factory=dict)  # marginalized versions, by observed and choices
    marginalized: dict[str, str] = field(default_factory=dict)  # summed-out choice -> pattern (of a marginal)
    full: Model | None = None  # of a marginal: the model before summing out, which simulation uses
    traces: int = 0  # how many times JAX traced this model (for tests of the cache)

    @property
    def name(self) -> str:
        return self.fn.name

    @property
    def kind(self) -> str:
        return self.fn.kind

    @property
    def sites(self) -> dict[str, ir.SiteInfo]:
        return self.fn.sites

    @property
    def params(self) -> dict[str, ir.ParamDef]:
        return {p.address: p for p in self.fn.params.values()}

    def signature(self) -> str:
        """`model name(arg: type, ...)` as declared."""
        args = ", ".join(f"{a}: {self.fn.arg_types.get(a) or t}" for a, t in self.fn.args)
        return f"{self.kind} {self.name}({args})"

    def choice_rows(self) -> list[tuple[str, str, str, str]]:
        """(address, distribution, shape, support) of each random choice, in program order."""
        return [(s.address, s.dist, show_shape(s.shape), s.support) for s in self.sites.values()]

    def __repr__(self) -> str:
        """The signature, where it was declared, its random choices (distribution, shape, support),
        parameters and the values it computes: a few lines, not the compiled internals."""
        where = f"  ({self.fn.span.file}:{self.fn.span.line})" if self.fn.span.line else ""
        lines = [f"<{self.signature()}{where}"]
        rows = self.choice_rows()
        for address, dist, shape, support in rows[:REPR_CHOICES]:
            lines.append(f"  {address} ~ {dist}: shape {shape}, support {support}")
        if len(rows) > REPR_CHOICES:
            lines.append(f"  ... {len(rows) - REPR_CHOICES} more choices")
        if self.params:
            lines.append(f"  parameters: {', '.join(self.params)}")
        if self.fn.networks:
            lines.append(f"  networks: {', '.join(self.fn.networks)}")
        if self.computed_names:
            lines.append(f"  computes: {', '.join(self.computed_names)}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        from pplang import html

        notes = [f"declared at {self.fn.span.file}:{self.fn.span.line}"] if self.fn.span.line else []
        if self.params:
            notes.append(f"parameters: {', '.join(self.params)}")
        if self.fn.networks:
            notes.append(f"networks: {', '.join(self.fn.networks)}")
        if self.computed_names:
            notes.append(f"computes: {', '.join(self.computed_names)}")
        return html.table(self.signature(), notes, ["choice", "distribution", "shape", "support"], self.choice_rows())

    def bind(self, data: Mapping[str, Any] | None = None, *, observations: bool = True,
             strict: bool = True, **kwargs: Any) -> Bound:
        """The data checked and converted; the same data again returns the same `Bound` (a few
        bindings are kept per model), so repeated calls pay nothing for binding."""
        given = merged(data, kwargs)
        key = fingerprint(given) if isinstance(given, Mapping) else None
        if key is None:
            return bind(self.fn, given, self.source, observations=observations, strict=strict)
        key = (key, observations, strict)
        if key in self._bound:
            self._bound.move_to_end(key)
            return self._bound[key][0]
        bound = bind(self.fn, given, self.source, observations=observations, strict=strict)
        if any(isinstance(v, jax.core.Tracer) for v in (*bound.arrays.values(), *bound.observed.values())):
            return bound  # bound while JAX traces a function: its arrays belong to that trace
        self._bound[key] = (bound, dict(given))  # the data kept alive: JAX arrays are keyed by identity
        if len(self._bound) > BINDINGS_KEPT:
            self._bound.popitem(last=False)
        return bound

    def marginal(self, observed: Iterable[str], addresses: Sequence[str] | None = None) -> Model:
        """This model with discrete latent choices summed out of its log density (the marginalize
        transformation): `addresses`, or every latent choice with finite support when None, given
        which choices are `observed`. Itself when there is nothing to sum out."""
        from pplang.compiler import analysis, codegen
        from pplang.compiler.names import py_name
        from pplang.compiler.pipeline import exec_module
        from pplang.compiler.transforms.marginalize import marginalize, summable

        seen = frozenset(observed)
        chosen = tuple(summable(self.fn, seen) if addresses is None else addresses)
        if not chosen:
            return self
        key = (seen, chosen)
        if key not in self._marginals:
            m = marginalize(self.fn, chosen, seen, self.source)
            analysis.classify_loops(m.fn)
            ns = exec_module(codegen.generate_module([m.fn], self.fn.span.file, self.source))
            for var in analysis.called_declarations(m.fn):  # ODE right-hand sides, from the model's own module
                ns[var] = self.impl.__globals__[var]
            self._marginals[key] = Model(m.fn, ns[py_name(m.fn.name)], self.hosts, self.source, self.decls,
                                         marginalized=dict(m.patterns), full=self)
        return self._marginals[key]

    @property
    def replicable(self) -> bool:
        """Whether data can be simulated given posterior draws: every summed-out choice is recovered
        per draw (a mixture's assignments drawn from a choice summed out too are not)."""
        return self.full is None or all(a in self.computed_names for a in self.marginalized)

    def generative(self, draws: Mapping[str, Any], data: Mapping[str, Any] | None, params: Mapping | None = None,
                   seed: Any = 0) -> tuple[Model, dict[str, Any]]:
        """The model to simulate from given posterior draws (a leading draw axis), with the draws it
        needs: itself, or for a marginal model the full one, whose summed-out choices come from the
        draws (recovered from their posterior where the draws lack them). A marginal model's own
        observations cannot be simulated: their densities are summed into one term."""
        if self.full is None:
            return self, dict(draws)
        if not self.replicable:
            lost = [a for a in self.marginalized if a not in self.computed_names]
            raise error(f"cannot simulate data given these draws: {', '.join(f'`{a}`' for a in lost)}, summed out "
                        "given another summed-out choice, are not recovered per draw", self.fn.span, self.source,
                        hint="sample them instead (marginalize=[...] naming the others, or SMC / importance sampling)")
        missing = [a for a in self.marginalized if a not in draws]
        if missing:
            latents = {a: v for a, v in draws.items() if a in self.sites}
            draws = {**draws, **self.computed(latents, data, names=missing, params=params, seed=seed)}
        return self.full, dict(draws)

    def summed_out(self, observed: Iterable[str], which: bool | Sequence[str] = True,
                   drawn: Iterable[str] = ()) -> Model:
        """The model a method runs on: with the discrete latent choices `which` names summed out (all
        of them for True, except those a proposal or guide draws, `drawn`; none for False). How
        every method's `marginalize=` argument is read."""
        if isinstance(which, bool):
            if not which:
                return self
            from pplang.compiler.transforms.marginalize import summable

            skip = set(drawn)
            return self.marginal(observed, [a for a in summable(self.fn, observed) if a not in skip])
        if isinstance(which, str) or not isinstance(which, Sequence):
            raise error(f"marginalize= takes True, False or a list of choices, not {which!r}",
                        hint="for example marginalize=['z']")
        return self.marginal(observed, list(which))

    def reuse(self, key: tuple | None, build: Callable[[], Any], keep: Any = None) -> Any:
        """What `build()` returns, kept under `key` for later calls with equal arguments (the last
        few per model): an automatic guide, a fit's problem, a particle filter's bound inputs, NUTS's
        layout. `keep` holds the objects whose `id` the key uses, so no other object takes their id
        while the entry lives. A key of None, or one that cannot be hashed, builds afresh."""
        try:
            hit = key is not None and key in self._prepared
        except TypeError:
            return build()
        if hit:
            self._prepared.move_to_end(key)
            return self._prepared[key][0]
        value = build()
        if key is not None:
            self._prepared[key] = (value, keep)
            if len(self._prepared) > BINDINGS_KEPT:
                self._prepared.popitem(last=False)
        return value

    # ------------------------------------------------------------ compiled runners

    def runner(self, bound: Bound, given_addrs: frozenset, unconstrained: frozenset = frozenset(),
               param_addrs: frozenset = frozenset(), batch: bool = False, complete: bool = False,
               computed: bool = False) -> Callable:
        """A jitted `(key, given, params, arrays) -> (retval, trace, score)`, cached per static
        configuration; JAX retraces it only when array shapes change. With `computed`, a fourth
        output holds the named values the program computes (`fn.values`, and `return`)."""
        static = tuple(sorted(bound.static.items()))
        cache_key = (static, given_addrs, unconstrained, param_addrs, batch, complete, computed)
        if cache_key not in self._jitted:
            order = [a for a, _ in self.fn.args]
            hosts, impl, statics = self.hosts, self.impl, dict(static)

            def run(key: Any, given: dict, params: dict, arrays: dict) -> tuple:
                self.traces += 1
                kept: dict | None = {} if computed else None
                ctx = rt.Context(given, params, hosts, unconstrained, complete, computed=kept)
                env = {**statics, **arrays}
                out = impl(ctx, key, *[env[a] for a in order])
                return (*out, kept) if computed else out

            if batch:
                run = jax.vmap(run, in_axes=(0, None, None, None))
            self._jitted[cache_key] = jax.jit(run)
        return self._jitted[cache_key]

    def _call(self, key: Any, bound: Bound, given: Mapping[str, Any], params: Mapping | None = None,
              unconstrained: frozenset = frozenset(), num_samples: int | None = None,
              complete: bool = False) -> tuple:
        params = dict(params or {})
        self.check_addresses(given, params)
        fn = self.runner(bound, frozenset(given), unconstrained, frozenset(params), num_samples is not None,
                         complete)
        key = as_key(key)
        if num_samples is not None:
            key = jax.random.split(key, num_samples)
        try:
            return fn(key, dict(given), params, bound.arrays)
        except rt.MissingValue as e:
            raise error(f"no value for random choice `{e.address}` of {self.kind} `{self.name}`", self.fn.span,
                        self.source, hint="log_density scores a complete trace: pass every choice the model "
                        "makes, e.g. model.simulate(...).values") from None
        except (TypeError, ValueError, IndexError, ZeroDivisionError) as e:
            raise self.located(e) from None

    def located(self, exc: Exception) -> Exception:
        """An error raised while JAX traced the generated code, pointed at the model line whose
        code raised it (generated code carries `# file:line` comments). Other errors pass through."""
        line = None
        tb = exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_globals.get("__pplang_code__")
            if code is not None and tb.tb_frame.f_code.co_filename.startswith("<pplang"):
                line = source_line_of(code, tb.tb_lineno) or line
            tb = tb.tb_next
        if line is None:
            return exc
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        span = Span(self.fn.span.file, line, 1, line, 1)
        col = first_code_col(self.source, line)
        span = Span(span.file, line, col, line, len(self.source.splitlines()[line - 1]) + 1 if col > 1 else 2)
        return error(f"while running {self.kind} `{self.name}`: {type(exc).__name__}: {text}", span, self.source,
                     hint="check the shapes and values that reach this line (host functions included)")

    def check_addresses(self, given: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        for a in given:
            if a not in self.fn.sites:
                raise error(f"{self.kind} `{self.name}` has no random choice `{a}`", self.fn.span, self.source,
                            hint=did_you_mean(a, self.fn.sites) or f"choices: {', '.join(self.fn.sites) or 'none'}")
        for a in params:
            if a not in self.params and not self.network_weight(a):
                raise error(f"{self.kind} `{self.name}` has no parameter `{a}`", self.fn.span, self.source,
                            hint=did_you_mean(a, self.params) or f"parameters: {', '.join(self.params) or 'none'}")

    def network_weight(self, address: str) -> bool:
        """Whether `address` names a weight of a network this program calls (`enc.layers[0].weight`)."""
        return any(address.startswith(n) and address[len(n):len(n) + 1] in (".", "[") for n in self.fn.networks)

    # ------------------------------------------------------------ transformations

    def simulate(self, data: Mapping[str, Any] | None = None, *, seed: Any = 0,
                 num_samples: int | None = None, params: Mapping | None = None, **kwargs: Any) -> Trace:
        """Draw every random choice from the prior (entries of the data that name choices are not
        used). With `num_samples`, a batch of independent traces."""
        bound = self.bind(data, observations=False, **kwargs)
        ret, tr, s = self._call(seed, bound, {}, params, num_samples=num_samples)
        return Trace(tr, s.lp, s.lw, ret)

    def log_density(self, values: Mapping[str, Any], data: Mapping[str, Any] | None = None, *,
                    unconstrained: bool = False, params: Mapping | None = None, **kwargs: Any) -> Any:
        """Log joint density of a complete trace (`values` holds every random choice; data may add
        observations). With `unconstrained=True`, the latent values are unconstrained coordinates and
        the log-Jacobian of each support's bijection is included."""
        bound = self.bind(data, **kwargs)
        given = {**bound.observed, **{a: jnp.asarray(v) for a, v in values.items()}}
        unc = frozenset(values) - frozenset(bound.observed) if unconstrained else frozenset()
        _, _, s = self._call(jax.random.key(0), bound, given, params, unc, complete=True)
        return s.lp

    def importance(self, data: Mapping[str, Any] | None = None, *, seed: Any = 0,
                   num_samples: int | None = None, params: Mapping | None = None,
                   given: Mapping[str, Any] | None = None, **kwargs: Any) -> Trace:
        """Constrain the observed choices to the data, draw the rest from the prior; the trace's
        `log_weight` is the log density of the constrained choices (the importance weight)."""
        bound = self.bind(data, **kwargs)
        fixed = {**bound.observed, **dict(given or {})}
        ret, tr, s = self._call(seed, bound, fixed, params, num_samples=num_samples)
        return Trace(tr, s.lp, s.lw, ret)

    def log_density_fn(self, data: Mapping[str, Any] | None = None, *, unconstrained: bool = False,
                       params: Mapping | None = None, **kwargs: Any) -> Callable[[Mapping[str, Any]], Any]:
        """A pure function `values -> log density` of the latent choices, with the data bound: jit
        it, differentiate it, vmap it. Data is checked once, here."""
        bound = self.bind(data, **kwargs)
        latents = frozenset(self.latent_addresses(bound))
        unc = latents if unconstrained else frozenset()
        params = dict(params or {})
        run = self.runner(bound, latents | frozenset(bound.observed), unc, frozenset(params), complete=True)
        key = jax.random.key(0)

        def log_density(values: Mapping[str, Any]) -> Any:
            given = {a: jnp.asarray(v) for a, v in values.items()}
            return run(key, {**bound.observed, **given}, params, bound.arrays)[2].lp

        return log_density

    def simulate_fn(self, data: Mapping[str, Any] | None = None, *, params: Mapping | None = None,
                    **kwargs: Any) -> Callable[[Any], tuple[dict[str, Any], Any]]:
        """A pure function `key -> (values, log density)` drawing every choice from the prior."""
        bound = self.bind(data, observations=False, **kwargs)
        params = dict(params or {})
        run = self.runner(bound, frozenset(), frozenset(), frozenset(params))

        def simulate(key: Any) -> tuple[dict[str, Any], Any]:
            _, tr, s = run(key, {}, params, bound.arrays)
            return tr, s.lp

        return simulate

    @property
    def computed_names(self) -> list[str]:
        """The named values this program computes and results keep beside the draws; `return` is its
        return value where that is not already a choice or a named value."""
        return [name for _, name in self.fn.values]

    def computed(self, values: Mapping[str, Any], data: Mapping[str, Any] | None = None, *,
                 names: Sequence[str] | None = None, params: Mapping | None = None, seed: Any = 0,
                 count: int | None = None, **kwargs: Any) -> dict[str, np.ndarray]:
        """The named values the model computes (`theta[j] = mu + tau * eta[j]`, its return value as
        `return`) for each draw in `values` (latent choices by address, a leading axis of draws),
        with the data given: what results keep beside the draws. `names` picks some of them. Values
        that draw (a summed-out choice recovered from its posterior) use a key of their own per
        draw, from `seed`. `count` is the number of draws where `values` has no choices (every
        latent choice summed out)."""
        known = self.computed_names
        names = known if names is None else list(names)
        for n in names:
            if n not in known:
                raise error(f"{self.kind} `{self.name}` computes no value named `{n}`", self.fn.span, self.source,
                            hint=did_you_mean(n, known) or f"named values: {', '.join(known) or 'none'}")
        if not names or (not values and count is None):
            return {}
        bound = self.bind(data, **kwargs)
        latents = {a: jnp.asarray(v) for a, v in values.items() if a in self.fn.sites and a not in bound.observed}
        params = dict(params or {})
        run = self.runner(bound, frozenset(latents) | frozenset(bound.observed), frozenset(), frozenset(params),
                          computed=True)
        keys = jax.random.split(as_key(seed), count if count is not None else np.shape(next(iter(values.values())))[0])
        kept = jax.vmap(lambda k, vals: run(k, {**bound.observed, **vals}, params, bound.arrays)[3])(keys, latents)
        return {n: np.asarray(kept[n]) for n in names}

    def with_computed(self, draws: Mapping[str, Any], data: Mapping[str, Any] | None, which: bool | Sequence[str],
                      params: Mapping | None = None, seed: Any = 0, count: int | None = None) -> dict[str, np.ndarray]:
        """`draws` and, beside them, the named values the model computes for each draw: all of them
        (`which=True`), none (`False`) or those named. How every result keeps computed values."""
        if isinstance(which, str) or not isinstance(which, (bool, Sequence)):
            raise error(f"computed= takes True, False or a list of names, not {which!r}",
                        hint=f"for example computed={self.computed_names[:2] or ['theta']}")
        names = None if which is True else list(which or [])
        return {**draws, **self.computed(draws, data, names=names, params=params, seed=seed, count=count)}

    def latent_addresses(self, bound: Bound) -> list[str]:
        return [a for a in self.fn.sites if a not in bound.observed]
