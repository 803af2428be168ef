"""The `adev` transformation: an objective program, with the programs bound to its arguments, to an
estimator whose `jax.grad` is an unbiased estimate of the gradient of the objective's expectation.

The static half lives here. For every random choice an objective draws through `simulate(q)` it
resolves the gradient strategy (`via` in the program, an override by address, or the default
`reparam`), refuses strategies that cannot apply, with a located message, and finds the cost terms
each choice can influence: a choice's own log density and those of everything downstream of it in
the dependency graphs of the programs, joined through the traces the objective passes between them.
Where the objective's value is a linear combination of `log_density` calls (the ELBO family), the
score-function cost of a choice is pruned to those terms, and, for a choice drawn in a vectorized
loop, to the same iteration's entries wherever every path between them stays within one iteration.

The result is Python source (`estimator_source`): a function of the objective's runner that runs the
objective, re-runs it with choices fixed where `enum` and `mvd` need the rest of the program (the
generated code of the programs is the continuation), and assembles a surrogate whose value is the
estimate and whose gradient is the unbiased gradient estimate. The run-time half is
`pplang.runtime.adev`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
from pplang.compiler import ir
from pplang.compiler.analysis import dependency_graph, stmt_exprs, sub_exprs, walk, walk_with_conditions, writes
from pplang.compiler.diagnostics import PplError, error
from pplang.compiler.frontend.syntax import Span
from pplang.compiler.names import address_var

STRATEGY_HELP = {
    "reparam": "differentiate through the draw (needs a reparameterizable distribution)",
    "reinforce": "score function: works for any distribution; higher variance",
    "mvd": "measure-valued derivative: normal, exponential, bernoulli, binomial, categorical, poisson, geometric",
    "enum": "exact sum over the finite support: bernoulli, categorical, binomial",
}


@dataclass
class CallInfo:
    """A `simulate` or `log_density` call of the objective."""

    cid: int
    kind: str  # "simulate" | "log_density"
    program: str  # the objective's argument naming the program
    top: bool  # at the top level, outside loops and traced branches: its terms are visible
    stop: bool = False
    trace_from: int | None = None  # the simulate call whose trace a log_density call scores
    span: Span | None = None


@dataclass(frozen=True)
class Coef:
    """A coefficient of the linear form: `value` times a product of the objective's value arguments,
    each to a power (`beta * log_density(p, z)` has Coef(1.0, (("beta", 1),))). The arguments are
    fixed for a fit, so the coefficient is a constant the estimator reads from the runner's args."""

    value: float
    factors: tuple[tuple[str, int], ...] = ()

    def times(self, other: Coef) -> Coef:
        powers = dict(self.factors)
        for name, k in other.factors:
            powers[name] = powers.get(name, 0) + k
        return Coef(self.value * other.value, tuple(sorted((n, k) for n, k in powers.items() if k)))

    def inverse(self) -> Coef | None:
        return None if self.value == 0.0 else Coef(1.0 / self.value, tuple((n, -k) for n, k in self.factors))

    def code(self, args: list[str]) -> str:
        """A Python expression of the coefficient inside the generated estimator."""
        parts = [repr(self.value)]
        for name, k in self.factors:
            parts += [f"{'*' if k > 0 else '/'} _run.args[{args.index(name)}]"] * abs(k)
        return " ".join(parts)

    def text(self) -> str:
        """The sign and, where it is not 1, the size: "+", "-0.5 * ", "+beta * "."""
        size = abs(self.value)
        parts = ([] if size == 1.0 else [f"{size:g}"]) + [n if k == 1 else f"{n}^{k}" for n, k in self.factors]
        return ("-" if self.value < 0 else "+") + (" * ".join(parts) + " * " if parts else "")


@dataclass
class Cost:
    """A term a choice can influence: entry `node` of the terms of log_density call `cid`."""

    cid: int
    node: str
    coef: Coef
    aligned: bool  # one entry per iteration, each depending only on the same iteration of the choice


@dataclass
class StrategySite:
    cid: int
    program: str
    address: str
    strategy: str
    lead: int  # loop dimensions of the address (0: drawn once)
    dist: str
    span: Span
    costs: list[Cost] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.cid}:{self.address}"


@dataclass
class Plan:
    """Everything the estimator needs to know about one objective with its programs bound."""

    objective: str
    calls: dict[int, CallInfo]
    linear: dict[int, Coef] | None
    sites: list[StrategySite]
    loop_reinforce: bool  # score-function terms summed in the objective's own score (loops, own choices)
    roles: dict[str, str]  # objective argument -> program name

    def baseline_keys(self) -> list[str]:
        keys = [s.key for s in self.sites if s.strategy == "reinforce"]
        return keys + (["loop"] if self.loop_reinforce else [])


# ---------------------------------------------------------------- the objective's calls


def objective_calls(fn: ir.Function) -> dict[int, CallInfo]:
    out: dict[int, CallInfo] = {}
    source: dict[str, int] = {}  # trace variable -> the top-level simulate call that drew it

    def visit(stmts: list[ir.Stmt], top: bool) -> None:
        for s in stmts:
            if isinstance(s, ir.Loop):
                visit(s.body, False)
                continue
            if isinstance(s, ir.Branch):
                visit(s.then, top and s.static)
                visit(s.orelse, top and s.static)
                continue
            for root in stmt_exprs(s):
                for e in sub_exprs(root):
                    if isinstance(e, ir.Simulate):
                        out[e.cid] = CallInfo(e.cid, "simulate", e.program, top, e.stop, span=s.span)
                    elif isinstance(e, ir.LogDensity):
                        frm = source.get(e.trace.name) if isinstance(e.trace, ir.Var) else None
                        out[e.cid] = CallInfo(e.cid, "log_density", e.program, top, trace_from=frm, span=s.span)
            if isinstance(s, ir.Let):
                if isinstance(s.value, ir.Simulate) and top:
                    source[s.name] = s.value.cid
                else:
                    source.pop(s.name, None)

    visit(fn.body, True)
    return out


def linear_form(fn: ir.Function, calls: dict[int, CallInfo]) -> dict[int, Coef] | None:
    """Coefficients c_j when the objective returns a constant plus sum_j c_j * log_density_j over
    top-level calls whose traces come from top-level simulate calls, each c_j a number times
    powers of the objective's value arguments; None otherwise."""
    lets: dict[str, ir.Expr | None] = {}
    for s in fn.body:
        if isinstance(s, ir.Let):
            lets[s.name] = None if s.name in lets else s.value  # assigned twice: not substituted
        elif isinstance(s, (ir.Loop, ir.Branch)):
            for name, _ in writes([s]):
                lets[name] = None
    ret = next((s for s in fn.body if isinstance(s, ir.Ret)), None)
    if ret is None or ret.value is None:
        return None
    arguments = {a for a, ty in fn.args if ty.kind in ("real", "int") and not ty.shape and a not in lets}
    Form = dict[int | None, Coef]  # None: the constant term

    def add(a: Form, b: Form, sign: float) -> Form | None:
        out = dict(a)
        for k, v in b.items():
            v = v.times(Coef(sign))
            if k not in out:
                out[k] = v
            elif out[k].factors == v.factors:
                out[k] = Coef(out[k].value + v.value, v.factors)
            else:
                return None  # a sum of different monomials: not one coefficient
        return out

    def lin(e: ir.Expr) -> Form | None:
        if isinstance(e, ir.Const) and not isinstance(e.value, bool):
            return {None: Coef(float(e.value))}
        if isinstance(e, ir.Var) and e.name in arguments:
            return {None: Coef(1.0, ((e.name, 1),))}
        if isinstance(e, ir.Var) and lets.get(e.name) is not None:
            return lin(lets[e.name])  # type: ignore[arg-type]
        if isinstance(e, ir.LogDensity):
            c = calls[e.cid]
            return {e.cid: Coef(1.0)} if c.top and c.trace_from is not None else None
        if isinstance(e, ir.Op) and e.op in ("+", "-") and len(e.args) == 2:
            a, b = lin(e.args[0]), lin(e.args[1])
            return None if a is None or b is None else add(a, b, 1.0 if e.op == "+" else -1.0)
        if isinstance(e, ir.Op) and e.op in ("neg", "pos"):
            a = lin(e.args[0])
            return None if a is None else {k: v.times(Coef(-1.0 if e.op == "neg" else 1.0)) for k, v in a.items()}
        if isinstance(e, ir.Op) and e.op in ("*", "/") and len(e.args) == 2:
            a, b = lin(e.args[0]), lin(e.args[1])
            if a is None or b is None:
                return None
            if list(b) == [None]:  # times or divided by a coefficient
                k = b[None] if e.op == "*" else b[None].inverse()
                return None if k is None else {x: v.times(k) for x, v in a.items()}
            if e.op == "*" and list(a) == [None]:
                return {x: v.times(a[None]) for x, v in b.items()}
        return None

    form = lin(ret.value)
    if form is None:
        return None
    return {k: v for k, v in form.items() if k is not None and v.value != 0.0}


# ---------------------------------------------------------------- per-iteration alignment


def aligned_edges(fn: ir.Function) -> set[tuple[str, str]]:
    """Edges (src, dst) of the dependency graph along which iteration i of the outermost vectorized
    loop reads only iteration i: `x[i] ~ normal(z[i], 1)` in a loop from 0, where `z` is written at
    `[j]` by a loop from 0, or reads of values local to the iteration."""
    site_of = {address_var(a): a for a in fn.sites}
    written_at_loop_var: set[str] = set()
    for s in walk(fn.body):
        if isinstance(s, ir.Loop) and s.mode == "vector" and _is_zero(s.start):
            for st in s.body:
                for inner in walk([st]):
                    idx = getattr(inner, "index", None)
                    if isinstance(inner, (ir.Sample, ir.Store)) and idx and _is_var(idx[0], s.var):
                        written_at_loop_var.add(inner.name)
    factor_name = {id(f): f"factor{k}" for k, f in enumerate(x for x in walk(fn.body) if isinstance(x, ir.Factor))}
    out: set[tuple[str, str]] = set()
    for s in fn.body:
        if not (isinstance(s, ir.Loop) and s.mode == "vector" and _is_zero(s.start)):
            continue
        local = {n for n, key in writes(s.body) if key is None}
        for st, conds in walk_with_conditions(s.body):
            node = factor_name.get(id(st)) or _node(st, site_of)
            if node is None:
                continue
            idx = getattr(st, "index", None)
            if isinstance(st, (ir.Sample, ir.Store)) and not (idx and _is_var(idx[0], s.var)):
                continue
            reads: dict[str, bool] = {}
            for root in [*stmt_exprs(st), *conds]:
                indexed: set[int] = set()
                for e in sub_exprs(root):
                    if isinstance(e, ir.Index) and isinstance(e.base, ir.Var):
                        indexed.add(id(e.base))
                        ok = bool(e.indices) and _is_var(e.indices[0], s.var) and e.base.name in written_at_loop_var
                        reads[e.base.name] = reads.get(e.base.name, True) and ok
                    elif isinstance(e, ir.Var) and id(e) not in indexed and e.name != s.var:
                        reads[e.name] = reads.get(e.name, True) and e.name in local
            for name, ok in reads.items():
                if ok:
                    out.add((site_of.get(name, name), node))
    return out


def _node(s: ir.Stmt, site_of: dict[str, str]) -> str | None:
    if isinstance(s, ir.Sample):
        return s.address
    if isinstance(s, (ir.Let, ir.Store)):
        return s.name
    return None


def _is_zero(e: ir.Expr) -> bool:
    return isinstance(e, ir.Const) and e.value == 0


def _is_var(e: object, var: str) -> bool:
    return isinstance(e, ir.Var) and e.name == var


def factor_nodes(fn: ir.Function) -> list[str]:
    return [f"factor{k}" for k, _ in enumerate(s for s in walk(fn.body) if isinstance(s, ir.Factor))]


# ---------------------------------------------------------------- the plan


@dataclass
class Bound:
    """A program bound to an objective argument: its IR and the source for messages."""

    fn: ir.Function
    source: str
    observed: frozenset[str]


def make_plan(objective: ir.Function, obj_source: str, programs: dict[str, Bound],
              overrides: dict[str, str]) -> Plan:
    calls = objective_calls(objective)
    linear = linear_form(objective, calls)
    graph = influence_graph(calls, programs)
    sites: list[StrategySite] = []
    loop_reinforce = False
    for info in objective.sites.values():  # the objective's own choices
        strategy = resolve(info, overrides.get(info.address), obj_source, "objective", objective.name)
        if strategy in ("enum", "mvd"):
            raise error(f"`{info.address}` is drawn by the objective itself, where `{strategy}` cannot apply",
                        info.span, obj_source, hint="use `via reparam` or `via reinforce` here, or move the "
                        "choice into the guide")
        loop_reinforce |= strategy == "reinforce"
    for c in calls.values():
        if c.kind != "simulate" or c.stop:
            continue
        b = programs[c.program]
        scan_sites = sites_in_scans(b.fn)
        for info in b.fn.sites.values():
            if info.address in b.observed:
                continue
            strategy = resolve(info, overrides.get(info.address), b.source, b.fn.kind, b.fn.name)
            if strategy == "reparam":
                continue
            if not c.top:
                if strategy != "reinforce":
                    raise error(f"`{info.address}` of {b.fn.kind} `{b.fn.name}` uses `{strategy}`, but the objective "
                                f"draws it inside a loop or a branch (line {c.span.line if c.span else '?'})",
                                info.span, b.source, hint="enum and mvd re-run the rest of the objective, which they "
                                "can do only for calls at its top level; use `via reinforce` or `via reparam`")
                loop_reinforce = True
                continue
            lead = len(info.shape or ()) - len(_event_shape(b.fn, info.address))
            site = StrategySite(c.cid, c.program, info.address, strategy, lead, info.dist, info.span)
            if strategy in ("enum", "mvd"):
                check_continuation(site, info, b, scan_sites, linear)
            site.costs = costs_of(site, graph, calls, linear, programs)
            if strategy in ("enum", "mvd") and site.lead:
                check_factorizes(site, graph, b, overrides)
            sites.append(site)
    roles = {r: b.fn.name for r, b in programs.items()}
    return Plan(objective.name, calls, linear, sites, loop_reinforce, roles)


def _event_shape(fn: ir.Function, address: str) -> tuple:
    """The shape of one draw of `address` (without the loop dimensions)."""
    for s in walk(fn.body):
        if isinstance(s, ir.Sample) and s.address == address:
            return s.dist.value_ty.shape or ()
    return ()


def resolve(info: ir.SiteInfo, override: str | None, source: str, kind: str, name: str) -> str:
    strategy = override or info.strategy
    if strategy is None:
        if info.reparameterized:
            return "reparam"
        options = ["reinforce", "mvd"] if info.dist in MVD_DISTS else ["reinforce"]
        if info.enumerable:
            options.insert(0, "enum")
        listing = "; ".join(f"`via {o}`: {STRATEGY_HELP[o]}" for o in options)
        raise error(f"`{info.address}` ~ {info.dist} in {kind} `{name}` has no sound default gradient strategy",
                    info.span, source, hint=f"{info.dist} cannot be reparameterized; choose one: {listing} "
                    f"(write it after the draw, or pass strategies={{'{info.address}': ...}})")
    if strategy not in STRATEGY_HELP:
        raise error(f"unknown gradient strategy `{strategy}` for `{info.address}`", info.span, source,
                    hint="strategies: " + ", ".join(STRATEGY_HELP))
    if strategy == "reparam" and not info.reparameterized:
        raise error(f"`{info.dist}` cannot be reparameterized (choice `{info.address}`)", info.span, source,
                    hint="use reinforce, mvd or (finite supports) enum")
    if strategy == "enum" and not info.enumerable:
        raise error(f"`{info.dist}` has no finite support to enumerate (choice `{info.address}`)", info.span, source,
                    hint="use reinforce or mvd")
    if strategy == "mvd" and info.dist not in MVD_DISTS:
        raise error(f"no measure-valued derivative for `{info.dist}` (choice `{info.address}`)", info.span, source,
                    hint="mvd is available for " + ", ".join(sorted(MVD_DISTS)) + "; use reinforce")
    return strategy


def _mvd_dists() -> frozenset[str]:
    from pplang.stdlib import distributions as D

    return frozenset(n for n, sigs in D.SIGNATURES.items()
                     if any(getattr(s.constructor, "has_mvd", False) for s in sigs))


MVD_DISTS = _mvd_dists()


def sites_in_scans(fn: ir.Function) -> set[str]:
    out: set[str] = set()
    for s in walk(fn.body):
        if isinstance(s, ir.Loop) and s.mode == "scan":
            out |= {x.address for x in walk(s.body) if isinstance(x, ir.Sample)}
    return out


def check_continuation(site: StrategySite, info: ir.SiteInfo, b: Bound, scan_sites: set[str],
                       linear: dict[int, Coef] | None) -> None:
    where = f"{b.fn.kind} `{b.fn.name}`"
    if site.address in scan_sites:
        raise error(f"`{site.strategy}` cannot apply to `{site.address}`: it is drawn in a sequential loop "
                    f"(lax.scan) of {where}", info.span, b.source,
                    hint="each step depends on the previous one, so fixing one step's choice would need the "
                    "rest of the scan re-run for every step; use `via reinforce`, or `via reparam` where possible")
    if _event_shape(b.fn, site.address) != ():
        raise error(f"`{site.strategy}` needs a single-valued choice; `{site.address}` draws a vector", info.span,
                    b.source, hint="draw the components in a loop, one choice per iteration")
    if site.lead and linear is None:
        raise error(f"`{site.strategy}` of `{site.address}`, drawn in a loop, needs the objective's costs per "
                    "iteration, but this objective's value is not a sum of log_density terms", info.span, b.source,
                    hint="use `via reinforce` here, or an objective of the ELBO family")


def check_factorizes(site: StrategySite, graph: nx.DiGraph, b: Bound, overrides: dict[str, str]) -> None:
    bad = [c.node for c in site.costs if not c.aligned]
    if bad:
        raise error(f"`{site.strategy}` of `{site.address}` needs costs that factorize per iteration, but "
                    f"`{bad[0]}` depends on more than one iteration of `{site.address}`",
                    b.fn.sites[site.address].span, b.source, hint="use `via reinforce` for this choice")
    start = f"{site.cid}:{site.address}"
    for n in nx.descendants(graph, start):
        cid, _, node = n.partition(":")
        strategy = overrides.get(node) or (b.fn.sites[node].strategy if node in b.fn.sites else None)
        if int(cid) == site.cid and node in b.fn.sites and node != site.address and strategy not in (None, "reparam"):
            raise error(f"`{site.strategy}` of `{site.address}`: the choice `{node}` drawn after it uses "
                        f"`{strategy}`", b.fn.sites[node].span, b.source,
                        hint="choices downstream of an enumerated or mvd choice in a loop must be reparameterized")


def influence_graph(calls: dict[int, CallInfo], programs: dict[str, Bound]) -> nx.DiGraph:
    """One graph over every top-level call: node `cid:name` for each node of the program's
    dependency graph; traces join a simulate call's choices to the same addresses of the calls
    that score them. Edge attribute `aligned` as in `aligned_edges`."""
    g = nx.DiGraph()
    for c in calls.values():
        if not c.top:
            continue
        b = programs[c.program]
        dg = dependency_graph(b.fn)
        al = aligned_edges(b.fn)
        for n in dg.nodes:
            g.add_node(f"{c.cid}:{n}", program=c.program)
        for u, v in dg.edges:
            g.add_edge(f"{c.cid}:{u}", f"{c.cid}:{v}", aligned=(u, v) in al)
        for a in b.fn.sites:  # a choice's term depends on its own value
            g.add_node(f"{c.cid}:{a}", program=c.program)
    for c in calls.values():
        if c.kind == "log_density" and c.top and c.trace_from is not None:
            src, dst = programs[calls[c.trace_from].program], programs[c.program]
            for a in dst.fn.sites:
                if a in src.fn.sites:
                    g.add_edge(f"{c.trace_from}:{a}", f"{c.cid}:{a}", aligned=True)
            for arg, _ in dst.fn.args:
                if arg in src.fn.sites:
                    g.add_edge(f"{c.trace_from}:{arg}", f"{c.cid}:{arg}", aligned=False)
    return g


def costs_of(site: StrategySite, graph: nx.DiGraph, calls: dict[int, CallInfo], linear: dict[int, Coef] | None,
             programs: dict[str, Bound]) -> list[Cost]:
    """The log_density terms a choice can influence, each marked aligned when every path to it
    stays within one iteration. Empty when the objective is not linear (the whole value is the cost)."""
    if linear is None:
        return []
    start = f"{site.cid}:{site.address}"
    reach = nx.descendants(graph, start) | {start}
    via_cross: set[str] = set()
    for u, v, d in graph.edges(data=True):
        if u in reach and not d.get("aligned", False):
            via_cross |= nx.descendants(graph, v) | {v}
    out = []
    for cid, coef in sorted(linear.items()):
        b = programs[calls[cid].program]
        for node in [*b.fn.sites, *factor_nodes(b.fn)]:
            n = f"{cid}:{node}"
            if n in reach:
                out.append(Cost(cid, node, coef, aligned=site.lead > 0 and n not in via_cross))
    return out


# ---------------------------------------------------------------- the generated estimator


def estimator_source(plan: Plan, programs: dict[str, Bound], args: list[str]) -> str:
    """Python source of `estimate(_run, _key, _params, _base) -> (value, surrogate, costs)`; `args`
    are the objective's value arguments, in the order of the runner's `args`."""
    top_enum = [s for s in plan.sites if s.strategy == "enum" and s.lead == 0]
    lines = ["def estimate(_run, _key, _params, _base):",
             f"    \"\"\"Objective `{plan.objective}` with " + ", ".join(f"{r} = `{n}`" for r, n in plan.roles.items())
             + ".",
             "    Returns the estimate, a surrogate whose gradient is an unbiased estimate of the gradient",
             "    of the objective's expectation, and the score-function costs (for baselines).\"\"\"",
             "    return _level0(_run, _key, _params, _base, {})", ""]
    for k, site in enumerate(top_enum):
        lines += [f"def _level{k}(_run, _key, _params, _base, _fixed):",
                  f"    # {describe(site, programs)}: the rest of the objective is averaged over its values exactly,",
                  "    # re-running the objective with the choice fixed to each value (the same randomness elsewhere)",
                  "    _v, _s, _r = _run(_key, _params, _fixed)",
                  f"    _values = _r[{site.cid}]['enum:{site.address}']",
                  f"    _vs, _surs, _cs, _rs = jax.vmap(lambda x: _level{k + 1}(_run, _key, _params, _base, "
                  f"{{**_fixed, ({site.cid}, {site.address!r}): x}}))(_values)",
                  f"    _w = jnp.exp(_rs[{site.cid}][{site.address!r}])  # q(value), differentiable",
                  "    return jnp.sum(_w * _vs), jnp.sum(_w * _surs), adev.expect_tree(_w, _cs), _r", ""]
    lines += [f"def _level{len(top_enum)}(_run, _key, _params, _base, _fixed):",
              "    _v, _s, _r = _run(_key, _params, _fixed)  # one run: each choice drawn by its strategy",
              "    _sur, _costs = _v, {}"]
    body = lines
    terms: dict[tuple[int, str], str] = {}

    def term(cid: int, node: str) -> str:
        return terms.get((cid, node), f"_r[{cid}][{node!r}]")

    for site in plan.sites:
        if site.strategy == "enum" and site.lead:
            body += [f"    # {describe(site, programs)}: each iteration's costs summed over its values exactly",
                     f"    _values = _r[{site.cid}]['enum:{site.address}']",
                     f"    _rs = jax.vmap(lambda k: _run(_key, _params, {{**_fixed, ({site.cid}, {site.address!r}): "
                     f"adev.take(_values, k, {site.lead})}})[2])(jnp.arange(_values.shape[{site.lead}]))",
                     f"    _w = jnp.exp(_rs[{site.cid}][{site.address!r}])  # q(value) per iteration, differentiable"]
            for c in site.costs:
                var = f"_t{c.cid}_{c.node.replace('/', '_')}"
                body += [f"    {var} = adev.expect(_w, _rs[{c.cid}][{c.node!r}])",
                         f"    _v = _v + {c.coef.code(args)} * (jnp.sum({var}) - jnp.sum({term(c.cid, c.node)}))"]
                terms[(c.cid, c.node)] = var
            body += ["    _sur = _v"]
    for site in plan.sites:
        if site.strategy != "mvd":
            continue
        rec = f"_r[{site.cid}]"
        body += [f"    # {describe(site, programs)}: measure-valued derivative, the objective re-run with the choice",
                 "    # at the coupled positive and negative draws of each parameter's weak derivative",
                 f"    _p, _c = {rec}['mvd.p:{site.address}'], {rec}['mvd.c:{site.address}']"]
        for sign in "+-":
            arr = f"{rec}['mvd.{sign}:{site.address}']"
            var = "_vp" if sign == "+" else "_vm"
            if site.lead == 0:
                body += [f"    {var} = jax.vmap(lambda x: _run(_key, _params, {{**_fixed, ({site.cid}, "
                         f"{site.address!r}): x}})[0])({arr})"]
            else:
                cost = " + ".join(f"{c.coef.code(args)} * _rk[{c.cid}][{c.node!r}]" for c in site.costs) or "0.0"
                body += [f"    {var} = jax.vmap(lambda k: (lambda _rk: {cost})(_run(_key, _params, {{**_fixed, "
                         f"({site.cid}, {site.address!r}): adev.take({arr}, k, {site.lead})}})[2]))"
                         f"(jnp.arange({arr}.shape[{site.lead}]))"]
        body += [f"    _sur = _sur + adev.mvd(_p, _c, _vp, _vm, {site.lead})"]
    for site in plan.sites:
        if site.strategy != "reinforce":
            continue
        body += [f"    # {describe(site, programs)}: score function"
                 + ("; costs it can influence: " + ", ".join(cost_text(c, plan) for c in site.costs)
                    if plan.linear is not None else "; the cost is the whole value (the objective is not a sum)")]
        like = f"_r[{site.cid}][{site.address!r}]"
        if plan.linear is None:
            body += ["    _cost = _v"]
        else:
            parts = [f"{c.coef.code(args)} * adev.{'per_iteration' if c.aligned else 'whole'}"
                     f"({term(c.cid, c.node)}, {like})" for c in site.costs]
            body += [f"    _cost = {' + '.join(parts) or '0.0'}"]
        body += [f"    _sur = _sur + adev.reinforce({like}, _cost, _base[{site.key!r}])",
                 f"    _costs[{site.key!r}] = jnp.mean(_cost)"]
    if plan.loop_reinforce:
        body += ["    # choices drawn inside the objective's loops (or by the objective) with reinforce: the cost",
                 "    # is the whole value; their log densities were summed into the objective's score",
                 "    _sur = _sur + adev.reinforce(_s.lp, _v, _base['loop'])",
                 "    _costs['loop'] = _v"]
    body += ["    return _v, _sur, _costs, _r", ""]
    return "\n".join(body)


def describe(site: StrategySite, programs: dict[str, Bound]) -> str:
    b = programs[site.program]
    where = f"{b.fn.span.file.split('/')[-1]}:{site.span.line}" if site.span.line else b.fn.name
    idx = "[i]" if site.lead else ""
    return f"{site.program}/{site.address}{idx} ~ {site.dist} ({where}) via {site.strategy}"


def cost_text(c: Cost, plan: Plan) -> str:
    role = plan.calls[c.cid].program
    return f"{c.coef.text()}{role}/{c.node}{' (same iteration)' if c.aligned else ''}"


ESTIMATOR_HEADER = '''# The gradient estimator generated by pplang's adev transformation.
import jax
import jax.numpy as jnp

from pplang.runtime import adev
'''


def estimator_module(plan: Plan, programs: dict[str, Bound], args: list[str]) -> str:
    return ESTIMATOR_HEADER + "\n\n" + estimator_source(plan, programs, args)


__all__ = ["Plan", "make_plan", "estimator_module", "Bound", "PplError"]
