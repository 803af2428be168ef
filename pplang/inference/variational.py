"""Variational fitting: a model, a guide (written, or automatic), an objective program and data, to a
`FitResult`.

`Problem` binds the programs to the objective's arguments, resolves each choice's gradient strategy
(compiler.adev), generates the estimator and exposes `value_and_grad`; `fit` runs it under optax in
chunks of `lax.scan` (runtime.optimize) and collects draws from the fitted guide.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pplang import runtime as rt
from pplang.compiler.diagnostics import PplError, did_you_mean, error
from pplang.compiler.transforms import adev as adev_compiler
from pplang.data import bind, fingerprint
from pplang.embed import Objective, loads
from pplang.files import check_target, inside
from pplang.inference.importance import importance_sampling
from pplang.models import Model, as_key, nan_origin
from pplang.precision import float64_hint
from pplang.results import FitResult
from pplang.runtime import adev
from pplang.runtime.optimize import CHECKPOINT_FILE, CheckpointError, CheckpointExists, OptimizeResult, optimize
from pplang.stdlib.constraints import CONSTRAINTS

AUTO_GUIDES = ("mean_field", "full_rank", "low_rank", "delta")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")  # optax optimizers by name
LR_SCHEDULES = ("constant", "cosine", "exponential", "linear", "warmup_cosine")
WARMUP = 0.1  # warmup_cosine rises to the peak rate over this fraction of the steps
BASELINES = ("ema", "learned")
EMA_DECAY = 0.9


_STANDARD: dict[str, Objective] = {}

# Values a standard objective's argument cannot take, with the reason (checked before fitting).
# Besides these, every int argument of a standard objective counts draws and must be at least 1.
ARGUMENT_DOMAINS: dict[tuple[str, str], tuple[Callable[[float], bool], str]] = {
    ("renyi", "alpha"): (lambda a: a != 1.0, "the Renyi bound divides by 1 - alpha; its limit at alpha = 1 is the "
                         "ELBO: use objective='elbo'"),
}


def standard_objectives() -> dict[str, Objective]:
    """The objectives of the standard library (stdlib/objectives.ppl), compiled once."""
    if not _STANDARD:
        text = resources.files("pplang.stdlib").joinpath("objectives.ppl").read_text()
        module = loads(text, file="<pplang objectives>")
        for name in module.compiled.functions:
            _STANDARD[name] = module.objective(name)
    return _STANDARD


def resolve_objective(objective: Any) -> tuple[Objective, dict[str, Any]]:
    """An objective and its value arguments from a name, (name, args), or an Objective."""
    args: dict[str, Any] = {}
    if isinstance(objective, tuple) and len(objective) == 2 and isinstance(objective[1], Mapping):
        objective, args = objective[0], dict(objective[1])
    if isinstance(objective, str):
        table = standard_objectives()
        if objective not in table:
            raise error(f"no standard objective named `{objective}`",
                        hint=did_you_mean(objective, table) or f"objectives: {', '.join(table)}")
        objective = table[objective]
    if not isinstance(objective, Objective):
        raise error(f"objective must be a name, (name, args) or an objective, not {type(objective).__name__}",
                    hint="for example objective='elbo' or objective=('iwelbo', {'k': 8})")
    defaults = {"k": 8, "alpha": 0.5, "m": 4}
    values = []
    for name, ty in objective.fn.args:
        if name not in args and name not in defaults:
            raise error(f"objective `{objective.name}` needs a value for `{name}` ({ty})", objective.fn.span,
                        objective.source, hint=f"pass objective=('{objective.name}', {{'{name}': ...}})")
        v = args.pop(name, defaults.get(name))
        values.append(int(v) if ty.kind == "int" else float(v))
    standard = objective is standard_objectives().get(objective.name)
    for (name, ty), v in zip(objective.fn.args, values):
        domain = ARGUMENT_DOMAINS.get((objective.name, name)) or (
            (lambda n: n >= 1, f"{name} counts draws: at least 1") if ty.kind == "int" else None)
        if standard and domain is not None and not domain[0](v):
            raise error(f"objective `{objective.name}` cannot take {name} = {v:g}", objective.fn.span,
                        objective.source, hint=domain[1])
    if args:
        extra = next(iter(args))
        raise error(f"objective `{objective.name}` has no argument `{extra}`", objective.fn.span, objective.source,
                    hint=f"its arguments: {', '.join(a for a, _ in objective.fn.args) or 'none'}")
    return objective, dict(zip([a for a, _ in objective.fn.args], values))


@dataclass
class Problem:
    """An objective with its programs bound: the generated estimator and what it needs."""

    objective: Objective
    roles: dict[str, Model]  # objective argument -> program
    data: dict[str, Any]
    plan: adev_compiler.Plan
    estimator_code: str
    runner: adev.ObjectiveRunner
    estimate: Callable
    baseline: Any = None
    bound: dict[str, Any] = field(default_factory=dict)
    collectors: dict[str, Callable] = field(default_factory=dict)  # jitted initializers by role, "constrain"
    loops: dict[tuple, dict] = field(default_factory=dict)  # compiled optimization loops, by optimizer and settings

    @classmethod
    def build(cls, model: Model, guide: Model, objective: Any, data: Mapping[str, Any] | None,
              programs: Mapping[str, Model] | None = None, strategies: Mapping[str, str] | None = None,
              baseline: Any = None) -> Problem:
        obj, obj_args = resolve_objective(objective)
        data = dict(data or {})
        roles = bind_roles(obj, model, guide, dict(programs or {}))
        bound, runtime_programs, static = {}, {}, {}
        overrides = dict(strategies or {})
        for role, m in roles.items():
            # arguments named like another program's choice and absent from the data come from traces
            # (a reverse model r(z) scored by log_density(r, tr) takes z from tr)
            from_traces = {a for a, _ in m.fn.args if a not in data
                           and any(a in o.fn.sites for o in roles.values() if o is not m)}
            fn = dataclasses.replace(m.fn, args=[(a, t) for a, t in m.fn.args if a not in from_traces])
            b = bind(fn, data, m.source, strict=False, observations=m is model or m.kind == "model")
            bound[role] = b
            static[role] = adev_compiler.Bound(m.fn, m.source, frozenset(b.observed))
        plan = adev_compiler.make_plan(obj.fn, obj.source, static, overrides)
        chosen = {(s.program, s.address): s.strategy for s in plan.sites}
        for role, m in roles.items():
            b = bound[role]
            strat = {}
            for a, info in m.fn.sites.items():
                strat[a] = chosen.get((role, a)) or overrides.get(a) or info.strategy or (
                    "reparam" if info.reparameterized else "reinforce")
            runtime_programs[role] = adev.Program(m.impl, [a for a, _ in m.fn.args], {**b.static, **b.arrays},
                                                  dict(b.observed), m.hosts, frozenset(m.fn.sites), strat)
        obj_strategies = {a: overrides.get(a) or info.strategy or "reparam" for a, info in obj.fn.sites.items()}
        hosts = dict(model.hosts)
        runner = adev.ObjectiveRunner(obj.impl, tuple(obj_args.values()), runtime_programs, hosts, obj_strategies)
        code = adev_compiler.estimator_module(plan, static, [a for a, _ in obj.fn.args])
        ns: dict[str, Any] = {"__name__": f"pplang_estimator_{obj.name}"}
        exec(compile(code, f"<pplang estimator {obj.name}>", "exec"), ns)  # noqa: S102 - generated code
        check_baseline(baseline, plan)
        return cls(obj, roles, data, plan, code, runner, ns["estimate"], baseline, bound)

    # ------------------------------------------------------------ parameters

    def init_params(self, seed: Any = 0) -> dict[str, dict[str, Any]]:
        """Unconstrained initial values of every program's parameters (and learned baselines)."""
        key = as_key(seed)
        out: dict[str, dict[str, Any]] = {}
        for role, m in self.roles.items():
            if not m.fn.params and not m.fn.networks:
                out[role] = {}
                continue
            found = self.collector(role)(key, self.trace_arguments(role, key))
            out[role] = {a: jnp.asarray(v) for a, v in found.items()}
        if self.objective.fn.params:
            out["_objective"] = self.collector("_objective")(key, out)
        if self.baseline == "learned":
            out["_baselines"] = {k: jnp.zeros(()) for k in self.plan.baseline_keys()}
        return out

    def collector(self, role: str) -> Callable:
        """A jitted `(key, given) -> initial parameters` of one program (`given`: values its arguments
        take from other programs' traces), or of the objective ("_objective"; `given`: the programs'
        parameters). Built once per problem, so a repeated fit does not trace it again."""
        if role in self.collectors:
            return self.collectors[role]
        if role == "_objective":
            def collect(k: Any, params: dict) -> dict:
                found: dict = {}
                ctx = adev.ObjectiveContext(self.runner.programs, params, self.runner.hosts, self.runner.strategies,
                                            {}, collect=found)
                self.runner.impl(ctx, k, *self.runner.args)
                return dict(found)
        else:
            prog = self.runner.programs[role]

            def collect(k: Any, given: dict) -> dict:
                found: dict = {}
                prog.impl(rt.Context(prog.observed, {}, prog.hosts, collect=found), k, *prog.arguments(given))
                return found

        self.collectors[role] = jax.jit(collect)
        return self.collectors[role]

    def trace_arguments(self, role: str, key: Any) -> dict[str, Any]:
        """Values for a program's arguments that come from another program's traces (a reverse
        model's `z`): drawn from the program that makes that choice, to initialize parameters."""
        prog = self.runner.programs[role]
        missing = [a for a in prog.arg_names if a not in prog.data]
        out: dict[str, Any] = {}
        for other, m in self.roles.items():
            want = [a for a in missing if a in m.fn.sites and a not in out]
            if other != role and want:
                src = self.runner.programs[other]
                _, tr, _ = src.impl(rt.Context(src.observed, {}, src.hosts), key, *src.arguments(None))
                out |= {a: tr[a] for a in want}
        return out

    def init_state(self) -> dict[str, Any]:
        return {"ema": {k: jnp.zeros(()) for k in self.plan.baseline_keys()}} if self.baseline == "ema" else {}

    def baselines(self, params: Mapping, state: Mapping) -> dict[str, Any]:
        keys = self.plan.baseline_keys()
        if self.baseline is None:
            return {k: 0.0 for k in keys}
        if self.baseline == "ema":
            return dict(state["ema"])
        if self.baseline == "learned":
            return {k: params["_baselines"][k] for k in keys}
        return {k: float(self.baseline) for k in keys}

    # ------------------------------------------------------------ estimates

    def with_data(self, values: Mapping[str, Any], masks: Mapping[str, Any] | None = None) -> adev.ObjectiveRunner:
        """The runner with some arguments and observations replaced (one data set of a collection
        during amortized training; values may be traced). Names neither takes are ignored. `masks`
        marks the real points of sets padded to a longer length, by `size` argument."""
        programs = {}
        for role, prog in self.runner.programs.items():
            data = {a: values.get(a, v) for a, v in prog.data.items()}
            observed = {a: values.get(a, v) for a, v in prog.observed.items()}
            programs[role] = dataclasses.replace(prog, data=data, observed=observed, masks=dict(masks or prog.masks))
        return dataclasses.replace(self.runner, programs=programs)

    def surrogate(self, params: Mapping, key: Any, state: Mapping, particles: int = 1,
                  runner: adev.ObjectiveRunner | None = None) -> tuple:
        """(surrogate, (value, costs)) averaged over `particles` independent estimates (of the
        problem's own data, or of the data `runner` was made for by `with_data`)."""
        base = self.baselines(params, state)
        keys = jax.random.split(key, particles)
        run = self.runner if runner is None else runner

        def one(k: Any) -> tuple:
            v, sur, costs, _ = self.estimate(run, k, params, base)
            return v, sur, costs

        if particles == 1:  # no particle axis: vmap over one key would give every array a leading 1
            v, sur, costs = one(keys[0])
        else:
            v, sur, costs = jax.vmap(one)(keys)
        costs = jax.tree.map(jnp.mean, costs)
        total = jnp.mean(sur)
        if self.baseline == "learned":  # each learned baseline regresses on its cost
            total = total - sum(jnp.square(jax.lax.stop_gradient(c) - params["_baselines"][k])
                                for k, c in costs.items())
        return total, (jnp.mean(v), costs)

    def step(self, particles: int = 1) -> Callable:
        """`step(params, key, state) -> (value, grads, state)` for runtime.optimize."""
        grad = jax.grad(self.surrogate, has_aux=True)

        def step(params: Any, key: Any, state: Any) -> tuple:
            g, (v, costs) = grad(params, key, state, particles)
            return v, g, self.next_state(state, costs)

        return step

    def next_state(self, state: Any, costs: Mapping[str, Any]) -> Any:
        """The state after a step whose reinforce costs were `costs` (moving-average baselines)."""
        if self.baseline != "ema":
            return state
        return {"ema": {k: EMA_DECAY * state["ema"][k] + (1 - EMA_DECAY) * jax.lax.stop_gradient(costs[k])
                        for k in state["ema"]}}

    def value_and_grad(self, params: Mapping, key: Any, particles: int = 1) -> tuple[Any, Any]:
        """One estimate of the objective and of its gradient with respect to the (unconstrained) params."""
        key = as_key(key)
        g, (v, _) = jax.grad(self.surrogate, has_aux=True)(params, key, self.init_state(), particles)
        return v, g

    def describe_nan(self, params: Any, key: Any, state: Any) -> str:
        """Which parameter, choice or factor first turned non-finite, and where it is in the source."""
        for role, ps in params.items():
            for a, v in ps.items():
                if not np.all(np.isfinite(np.asarray(v))):
                    return f"parameter `{a}` of `{role}` is not finite"
        keys = jax.random.split(key, 1)
        origin = nan_origin(lambda: self.runner(keys[0], params, {}))
        if origin is not None:
            return f"a NaN first appeared at {origin}"
        with jax.disable_jit():
            _, _, records = self.runner(keys[0], params, {})
        for cid, terms in sorted((records or {}).items()):
            call = self.plan.calls.get(cid)
            if call is None or terms is None:
                continue
            m = self.roles[call.program]
            for a, t in terms.items():
                if ":" in a or np.all(np.isfinite(np.asarray(t))):
                    continue
                info = m.fn.sites.get(a)
                where = f" ({m.fn.span.file}:{info.span.line})" if info is not None else ""
                what = "log density" if call.kind == "log_density" else "log density of the draw"
                return (f"the {what} of `{a}` in {m.kind} `{m.name}`{where} is not finite "
                        f"(objective line {call.span.line if call.span else '?'})")
        return "the objective's value or gradient is not finite; no single term was found to be"


def hold(problem: Problem, params: dict, opt: optax.GradientTransformation,
         fixed: Mapping[str, Mapping[str, Any]]) -> tuple[dict, optax.GradientTransformation]:
    """Parameters with the `fixed` programs' values set, and an optimizer that leaves them alone."""
    names = {m.name: r for r, m in problem.roles.items()}
    for name, values in fixed.items():
        if name not in names:
            raise error(f"fixed names `{name}`, which is none of the fitted programs",
                        hint=did_you_mean(name, names) or f"programs: {', '.join(names)}")
        role = names[name]
        unknown = [a for a in values if a not in params.get(role, {})]
        if unknown:
            raise error(f"{problem.roles[role].kind} `{name}` has no parameter `{unknown[0]}`",
                        hint=did_you_mean(unknown[0], params.get(role, {})) or "check the fixed values")
        params[role] = {**params[role], **{a: jnp.asarray(v) for a, v in values.items()}}
    held = {names[n] for n in fixed}
    labels = {r: jax.tree.map(lambda _, r=r: "held" if r in held else "fitted", ps) for r, ps in params.items()}
    return params, optax.multi_transform({"fitted": opt, "held": optax.set_to_zero()}, labels)


def model_role(problem: Problem, model: Model) -> str | None:
    return next((r for r, m in problem.roles.items() if m is model), None)


def bind_roles(obj: Objective, model: Model, guide: Model, programs: dict[str, Model]) -> dict[str, Model]:
    names = obj.fn.programs
    if len(names) < 2 and not programs:
        return {names[0]: model} if names else {}
    roles = {}
    for k, role in enumerate(names):
        if role in programs:
            roles[role] = programs.pop(role)
        elif k == 0:
            roles[role] = model
        elif k == 1:
            roles[role] = guide
        else:
            raise error(f"objective `{obj.name}` needs a program for `{role}`", obj.fn.span, obj.source,
                        hint=f"pass programs={{'{role}': ...}} (for example a reverse model)")
    if programs:
        extra = next(iter(programs))
        raise error(f"objective `{obj.name}` has no program argument `{extra}`", obj.fn.span, obj.source,
                    hint=f"its programs: {', '.join(names)}")
    return roles


def check_baseline(baseline: Any, plan: adev_compiler.Plan) -> None:
    if baseline is None or baseline in BASELINES:
        return
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return
    raise error(f"unknown baseline {baseline!r}", hint="baseline=None, a number, 'ema' (moving average) or 'learned'")


def make_guide(model: Model, guide: Any, data: Mapping[str, Any]) -> Model:
    if isinstance(guide, Model):
        return guide
    if isinstance(guide, str):
        if guide not in AUTO_GUIDES:
            raise error(f"unknown automatic guide `{guide}`",
                        hint=did_you_mean(guide, AUTO_GUIDES) or f"automatic guides: {', '.join(AUTO_GUIDES)}")
        from pplang.inference.autoguide import auto_guide

        fp = fingerprint(data)  # the same data again: the same guide, nothing rebuilt
        return model.reuse(None if fp is None else ("guide", guide, fp), lambda: auto_guide(model, guide, data),
                           keep=dict(data))
    raise error(f"guide must be a guide or the name of an automatic one, not {type(guide).__name__}",
                hint="for example guide='mean_field', or a guide from pp.load(...)")


def without_unguided_discrete(model: Model, guide: Any, bound: Any) -> Model:
    """The model to fit: with the discrete latent choices the guide does not draw summed out of its
    density (all of them for an automatic guide, whose families are continuous), so a guide of the
    continuous choices alone fits a model with mixture assignments or hidden states."""
    return model.summed_out(bound.observed, True, guide.sites if isinstance(guide, Model) else ())


def problem_for(model: Model, guide: Model, objective: Any, data: Mapping[str, Any],
                programs: Mapping[str, Model] | None, strategies: Mapping[str, str] | None,
                baseline: Any) -> Problem:
    """The problem of these programs, objective and data: built on the first fit and reused by later
    fits with equal arguments, together with the loops they compiled (`Problem.loops`)."""
    fp = fingerprint(data)
    if isinstance(objective, str):
        obj_key: Any = objective
    elif isinstance(objective, tuple) and len(objective) == 2 and isinstance(objective[1], Mapping):
        obj_key = (objective[0], tuple(sorted(objective[1].items())))
    else:
        obj_key = ("object", id(objective))
    key = None if fp is None else ("fit", id(guide), obj_key, fp,
                                   tuple(sorted((r, id(m)) for r, m in (programs or {}).items())),
                                   tuple(sorted((strategies or {}).items())), baseline)
    return model.reuse(key, lambda: Problem.build(model, guide, objective, data, programs, strategies, baseline),
                       keep=(guide, objective, dict(programs or {}), dict(data)))


def optimizer_key(optimizer: Any, learning_rate: Any, steps: int, lr_schedule: str, lr_end: float | None,
                  fixed: Mapping | None) -> tuple:
    """What the optimizer `make_optimizer` builds from these arguments depends on: equal keys, the
    same updates, so a compiled loop serves both. An optax optimizer or schedule counts by identity."""
    opt = ("object", id(optimizer)) if isinstance(optimizer, optax.GradientTransformation) else optimizer
    rate = ("object", id(learning_rate)) if callable(learning_rate) else learning_rate
    return opt, rate, lr_schedule, lr_end, None if lr_schedule == "constant" else steps, tuple(sorted(fixed or {}))


def learning_rate_schedule(kind: str, learning_rate: float, steps: int, end: float | None = None) -> Any:
    """The learning rate over `steps` steps: `learning_rate` throughout ("constant"), or from it (the
    peak, after a linear warmup over the first tenth for "warmup_cosine") down to `end` (default a
    thousandth of it). A rate that decays lets a stochastic fit settle where a constant one keeps
    jittering around the optimum by about the rate itself."""
    if kind not in LR_SCHEDULES:
        raise error(f"unknown learning-rate schedule `{kind}`",
                    hint=did_you_mean(kind, LR_SCHEDULES) or f"schedules: {', '.join(LR_SCHEDULES)}")
    if not learning_rate > 0:
        raise error(f"the learning rate must be positive, got {learning_rate:g}", hint="for example 0.01")
    if kind == "constant":
        if end is not None:
            raise error("an end learning rate needs a decaying schedule", hint="add --lr-schedule cosine (or "
                        "lr_schedule='cosine'), or drop the end rate")
        return learning_rate
    end = learning_rate / 1000 if end is None else end
    if not end > 0:
        raise error(f"the end learning rate must be positive, got {end:g}",
                    hint=f"for example {learning_rate / 1000:g}")
    if kind == "cosine":
        return optax.cosine_decay_schedule(learning_rate, steps, alpha=end / learning_rate)
    if kind == "exponential":
        return optax.exponential_decay(learning_rate, steps, end / learning_rate)
    if kind == "linear":
        return optax.linear_schedule(learning_rate, end, steps)
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, int(WARMUP * steps)), steps, end)


def make_optimizer(optimizer: Any, learning_rate: Any, steps: int, lr_schedule: str = "constant",
                   lr_end: float | None = None) -> optax.GradientTransformation:
    """`optimizer` if it is an optax optimizer (whose own schedule, if any, is kept), else the optax
    optimizer of that name (default adam) at `learning_rate` (a number or an optax schedule), or at
    the named `lr_schedule` over `steps`."""
    if isinstance(optimizer, optax.GradientTransformation):
        if lr_schedule != "constant" or lr_end is not None:
            raise error("lr_schedule and lr_end build the optimizer, but an optax optimizer was given",
                        hint="give the optimizer its schedule: optax.adam(optax.cosine_decay_schedule(0.05, steps))")
        return optimizer
    name = "adam" if optimizer is None else optimizer
    if name not in OPTIMIZERS:
        raise error(f"unknown optimizer {name!r}", hint=did_you_mean(str(name), OPTIMIZERS)
                    or f"an optax optimizer, or one of {', '.join(OPTIMIZERS)}")
    if callable(learning_rate):
        if lr_schedule != "constant" or lr_end is not None:
            raise error("learning_rate is already a schedule", hint="pass lr_schedule or a schedule, not both")
        return getattr(optax, name)(learning_rate)
    return getattr(optax, name)(learning_rate_schedule(lr_schedule, learning_rate, steps, lr_end))


def schedule_text(optimizer: Any, learning_rate: Any, steps: int, lr_schedule: str, lr_end: float | None) -> str:
    """What the learning rate does over the steps, for checkpoints (empty when it is constant, or
    when an optax optimizer or schedule carries its own, which checkpoints cannot describe)."""
    if lr_schedule == "constant" or isinstance(optimizer, optax.GradientTransformation) or callable(learning_rate):
        return ""
    end = learning_rate / 1000 if lr_end is None else lr_end
    return f"{lr_schedule} from {learning_rate:g} to {end:g} over {steps} steps"


def nan_message(out: OptimizeResult) -> str:
    """The optimizer's account of how the fit ended, with the float64 advice when a step was not
    finite in float32 (where rounding alone can make a log density or its gradient overflow)."""
    hint = float64_hint() if out.status == "nan" or out.skipped else None
    return out.message + (f"\n{hint}" if hint else "")


def constrained(m: Model, params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values mapped to their constraints (network weights are unconstrained)."""
    out = {}
    for a, v in params.items():
        p = m.params.get(a)
        c = "real" if p is None else {"vector": "real", "matrix": "real"}.get(p.constraint, p.constraint)
        out[a] = CONSTRAINTS[c].forward(v)
    return out


def named_params(problem: Problem, params: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """The fitted parameters by program name, constrained (objective and baseline entries as they
    are), mapped in one compiled call per problem."""
    if "constrain" not in problem.collectors:
        def constrain(params: Mapping) -> dict:
            return {problem.roles[r].name if r in problem.roles else r:
                    constrained(problem.roles[r], p) if r in problem.roles else dict(p) for r, p in params.items()}
        problem.collectors["constrain"] = jax.jit(constrain)
    return jax.tree.map(np.asarray, problem.collectors["constrain"](params))


def fit(model: Model, guide: Any = "mean_field", objective: Any = "elbo", data: Mapping[str, Any] | None = None, *,
        optimizer: optax.GradientTransformation | str | None = None, learning_rate: Any = 0.01,
        lr_schedule: str = "constant", lr_end: float | None = None, steps: int = 2000,
        particles: int = 1, seed: int = 0, strategies: Mapping[str, str] | None = None, baseline: Any = None,
        programs: Mapping[str, Model] | None = None, on_nan: str = "stop", tol: float | None = None,
        tol_window: int | None = None, patience: int = 10, chunk: int = 100, checkpoint: str | None = None,
        checkpoint_every: int = 1000, resume: bool = False, progress: bool = True, num_draws: int = 1000,
        results: str | None = None, overwrite: bool = False, fixed: Mapping[str, Mapping[str, Any]] | None = None,
        computed: bool | Sequence[str] = True, **data_kwargs: Any) -> FitResult:
    """Fit `guide` to `model` given `data` by maximizing `objective` with optax (default Adam).

    guide: a guide, or "mean_field" / "full_rank" / "low_rank" / "delta" (automatic, in unconstrained
    space). objective: a standard objective's name ("elbo", "iwelbo", "renyi", "rws", ...), a
    (name, args) pair such as ("iwelbo", {"k": 8}), or an objective of your own. optimizer: an optax
    optimizer (with any schedule of its own), or a name ("adam", "sgd", ...) built at
    `learning_rate` under `lr_schedule` ("constant", "cosine", "exponential", "linear",
    "warmup_cosine"), which decays from learning_rate to `lr_end` (default learning_rate / 1000)
    over the steps. strategies: gradient strategies by address, overriding `via` in the guide.
    baseline for reinforce: None, a number, "ema" or "learned". particles: independent estimates
    averaged per step. The fit stops on NaN ("stop") or skips such steps ("skip"), keeping the last
    good parameters. `tol` stops on convergence: when the mean objective of the last `tol_window`
    steps (default steps / 10) is within tol (relative) of the mean of the window before it, at
    `patience` chunk ends in a row. `checkpoint` is a folder for periodic checkpoints, `resume`
    continues from one; `results` a folder to save the result to (with plots), written whole at the
    end (see `FitResult.save`). An existing results folder or another run's checkpoint is replaced
    only with `overwrite` (checked before the fit starts); a results folder that holds the checkpoint
    being resumed is this run's own. `chunk` steps run
    per compiled call (the progress bar, convergence test and NaN check happen between calls); with
    `steps` not a multiple of it, the last call compiles a second, checked loop. `fixed` holds
    programs' parameters at given unconstrained values, by program name (e.g. a decoder's trained
    weights: fixed={"vae": trained}); they are not optimized. The result's draws hold the guide's
    draws of the latent choices and the named values the model computes from them (`computed`: all,
    none or a list of names). Discrete latent choices the guide does not draw (all of them, for an
    automatic guide) are summed out of the model's density (the marginalize transformation)."""
    for name, v in (("steps", steps), ("particles", particles), ("num_draws", num_draws), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise error(f"{name} must be a positive int, got {v!r}", hint=f"for example {name}=1000")
    called = time.perf_counter()
    keep = check_outputs(results, checkpoint, resume, overwrite)
    data = {**dict(data or {}), **data_kwargs}
    bound = model.bind(data)  # data errors first, located at the model
    model = without_unguided_discrete(model, guide, bound)
    q = make_guide(model, guide, data)
    problem = problem_for(model, q, objective, data, programs, strategies, baseline)
    params = problem.init_params(seed)
    opt = make_optimizer(optimizer, learning_rate, steps, lr_schedule, lr_end)
    if fixed:
        params, opt = hold(problem, params, opt, fixed)
    # a repeated fit (same problem, optimizer settings, particles and chunk) runs the loop it compiled
    loop_key = (optimizer_key(optimizer, learning_rate, steps, lr_schedule, lr_end, fixed), particles,
                min(chunk, steps))
    if loop_key not in problem.loops:
        problem.loops[loop_key] = {"step": problem.step(particles), "optimizer": opt,
                                   "keep": (optimizer, learning_rate)}  # ids in the key stay valid
    loop = problem.loops[loop_key]
    t0 = time.perf_counter()
    try:
        out = optimize(loop["step"], params, problem.init_state(), loop["optimizer"], steps=steps,
                       key=jax.random.key(seed), chunk=min(chunk, steps), on_nan=on_nan, tol=tol, tol_window=tol_window,
                       patience=patience, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                       overwrite=overwrite, progress=progress, describe_nan=problem.describe_nan, cache=loop,
                       schedule=schedule_text(optimizer, learning_rate, steps, lr_schedule, lr_end))
    except CheckpointExists:
        raise checkpoint_exists(checkpoint) from None
    except CheckpointError as e:
        raise error(f"cannot resume: {e}", hint="resume with the same model, guide, objective, optimizer and seed, "
                    "or start afresh without resume") from None
    except ValueError as e:
        raise error(str(e), hint="check the arguments of fit") from None
    guide_role = next((r for r, m in problem.roles.items() if m is q), None)
    gparams = out.params.get(guide_role, {}) if guide_role else {}
    draws = {}
    if guide_role is not None:
        q_data = {a: data[a] for a, _ in q.fn.args if a in data}
        tr = q.simulate(q_data, seed=seed + 1, num_samples=num_draws, params=gparams)
        draws = {a: np.asarray(v) for a, v in tr.values.items() if a in model.sites}
        draws = model.with_computed(draws, data, computed, out.params.get(model_role(problem, model), {}), seed + 2)
    result = FitResult(
        named_params(problem, out.params),
        np.asarray(out.values), draws,
        {"model": model.name, "guide": q.name, "objective": problem.objective.name, "steps": out.steps,
         "status": out.status, "message": nan_message(out), "particles": particles, "seed": seed,
         "timings": out.timings, "wall_s": time.perf_counter() - t0,
         "setup_s": t0 - called,  # binding, the guide and the estimator (cached for the same model and data)
         "strategies": {f"{s.program}/{s.address}": s.strategy for s in problem.plan.sites},
         "computed": [n for n in draws if n not in (model.full or model).fn.sites],
         "order": [*(model.full or model).fn.sites, *model.computed_names]},  # the summary's row order
    )
    result.unconstrained = out.params
    result.problem = problem
    result.model = model
    extra = [a for a in q.sites if a not in model.sites]
    if extra:
        def refuse(n: int, s: int) -> Any:
            raise error(f"guide `{q.name}` draws auxiliary choices ({', '.join(extra)}) the model does not have, so "
                        "its density over the model's choices is a marginal that importance sampling cannot use",
                        q.fn.span, q.source, hint="correct a guide without auxiliary choices (e.g. full_rank)")
        result.corrector = refuse
    elif guide_role is not None:
        result.corrector = lambda n, s: importance_sampling(model, data, num_samples=n, seed=s, proposal=q,
                                                            proposal_params=gparams,
                                                            params=out.params.get(model_role(problem, model), {}))
    if results is not None:
        result.save(results, plots=True, overwrite=may_replace(results, keep, overwrite or resume), keep=keep)
    return result


def check_outputs(results: str | None, checkpoint: str | None, resume: bool, overwrite: bool) -> tuple[str, ...]:
    """Before a fit (or training) runs: that its results folder and checkpoint folder name folders,
    and that neither holds another run's files unless `overwrite`. A results folder that holds the
    checkpoint being resumed is this run's. Returns the entries of the results folder its saved
    result keeps (the checkpoint, when it is inside)."""
    if checkpoint is not None:
        check_target(checkpoint, "folder", True, "checkpoint folder")
    saved = checkpoint is not None and (Path(checkpoint) / CHECKPOINT_FILE).exists()
    within = None if checkpoint is None or results is None else inside(checkpoint, results)
    if results is not None:
        check_target(results, "folder", True, "results folder")
        if not overwrite and not (resume and saved and within is not None) and Path(results).is_dir() \
                and any(Path(results).iterdir()):
            raise error(f"the results folder {results} already exists and would be replaced",
                        hint=("it holds the checkpoint of an earlier run: continue that run with --resume "
                              "(resume=True), " if saved and within is not None else "")
                        + "choose another folder, or replace it: --force on the command line, overwrite=True "
                        "from Python")
    if saved and not resume and not overwrite:
        raise checkpoint_exists(checkpoint)
    if within is None:
        return ()
    return (CHECKPOINT_FILE,) if within == "." else (within,)


def may_replace(results: str, keep: Sequence[str], allowed: bool) -> bool:
    """Whether saving may replace what is at `results` now: when allowed (overwrite, or resuming
    the run it holds), or when it holds nothing but what this run wrote there (its checkpoint)."""
    folder = Path(results)
    return allowed or not folder.is_dir() or all(p.name in keep for p in folder.iterdir())


def checkpoint_exists(checkpoint: Any) -> PplError:
    return error(f"the checkpoint folder {checkpoint} holds another run's checkpoint, which this fit would replace",
                 hint="continue that run with --resume (resume=True), start afresh over it with --force "
                 "(overwrite=True), or choose another checkpoint folder")


__all__ = ["fit", "Problem", "Objective", "standard_objectives", "PplError"]
