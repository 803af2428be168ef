"""The marginalize transformation: discrete latent choices with finite support summed out of a
model's log density, exactly, as an IR-to-IR rewrite that the ordinary code generator then turns
into JAX.

A summed-out choice `z` disappears from the model's choices. The choices, factors and values that
depend on it (its *dependents*) are rewritten as expressions of one value `k` of `z`; the choices
among them stay choices (their values are bound as before) but count zero in place (`unscored`),
and their log densities enter the sum over `k` instead. Four patterns, each compiled to what one
would write by hand:

* **single**: `z ~ d` at the top level with dependents at the top level:
  `factor(logsumexp([log d(k) + dependents(k) for k in support(d)]))`;
* **mixture**: `z[i] ~ d` in a loop whose iterations are independent, its dependents in the same
  iteration (mixture assignments): the same log-sum-exp per iteration, vectorized like the loop;
* **chain**: `z[0] ~ d0` before a loop over `t` from 1 and `z[t] ~ d(z[t - 1])` in it, each with
  its dependents beside it (hidden Markov models, regime switching, change points written as a
  carried state): the forward algorithm, a vector `alpha` of K log probabilities carried through
  the loop's `lax.scan`, `alpha[k] = logsumexp(alpha + [log d(j)(k) for j]) + dependents(k)`, and
  `factor(logsumexp(alpha))` after it: O(T K^2), one scan whatever T;
* **elimination**: several top-level choices that interact (one drawn from another, or read
  together): summed out together by variable elimination (`transforms.elimination`).

The patterns nest: choices drawn in loops are summed out first, so that what they leave (a
mixture's log-sum-exp that reads a top-level choice) is a dependent of the choice it reads. A
branch on a summed-out choice counts both arms' densities, selected by its condition. Every table
built has at most `MAX_FACTOR` entries. Anything else that reads a summed-out choice (a value kept
after the loop, a choice read at another index) is a located error naming the choice and the
statement, with a hint.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pplang.compiler import ir
from pplang.compiler.analysis import expr_key, reads, sub_exprs, walk, writes
from pplang.compiler.check.shapes import dim_code
from pplang.compiler.check.sizes import BUDGET_HINT
from pplang.compiler.diagnostics import error

REAL = ir.Ty("real", ())
LOGSUMEXP = "logsumexp"
MAX_FACTOR = int(os.environ.get("PPLANG_MAX_FACTOR_ENTRIES", 2**20))  # entries of one table of log factors


@dataclass(frozen=True)
class Marginal:
    """A model with discrete choices summed out: the rewritten function, and for each summed-out
    address the pattern it was compiled as ("single", "mixture", "chain" or "elimination")."""

    fn: ir.Function
    patterns: dict[str, str]


def unscored(fn: ir.Function) -> set[str]:
    """The choices of a marginalized function whose densities count in a summed-out choice's term."""
    return {s.address for s in walk(fn.body) if isinstance(s, ir.Sample) and s.dist.unscored}


def summable(fn: ir.Function, observed: Iterable[str]) -> list[str]:
    """The latent choices of `fn` that marginalize would sum out by default: every enumerable
    (finite-support) choice that is not observed."""
    seen = set(observed)
    return [a for a, info in fn.sites.items() if info.enumerable and a not in seen]


def marginalize(fn: ir.Function, addresses: Iterable[str], observed: Iterable[str], source: str,
                budget: int | None = None) -> Marginal:
    """`fn` with the choices at `addresses` summed out of its log density (see the module's doc).
    Choices drawn in loops are summed out first, the later drawn first, so that what they leave
    behind (a factor that reads an earlier choice) is summed with that choice; then the top-level
    choices, alone (`single`) or, where several interact, together by variable elimination
    (`elimination`, whose tables may have at most `budget` entries)."""
    from pplang.compiler.transforms.elimination import Elimination, groups

    seen = set(observed)
    addresses = list(addresses)
    for address in addresses:
        check_summable(fn, address, seen, source)
    drawn = [s for s in walk(fn.body) if isinstance(s, ir.Sample)]
    first = {a: min(i for i, s in enumerate(drawn) if s.address == a) for a in addresses}
    tags = {a: f"_m{n}" for n, a in enumerate(addresses)}
    top = [s.address for s in fn.body if isinstance(s, ir.Sample) and s.address in first and s.index is None
           and sum(1 for d in drawn if d.address == s.address) == 1]
    body = list(fn.body)
    patterns: dict[str, str] = {}
    dropped: set[str] = set()
    added: dict[str, ir.ArrayInfo] = {}
    kept: list[tuple[str, str]] = []  # the posterior probabilities of the summed-out choices
    checks: list[ir.SizeCheck] = []

    def done(rewrite: Rewrite | Elimination, lets: set[str]) -> None:
        nonlocal dropped
        dropped |= lets | rewrite.dropped
        added.update(rewrite.arrays)
        kept.extend(rewrite.values)

    budget = MAX_FACTOR if budget is None else budget

    def alone(address: str) -> None:
        nonlocal body
        rewrite = Rewrite(fn, address, source, tags[address], seen, {v for v, _ in kept})
        body, patterns[address], lets = rewrite.apply(body)
        size = support_dim(rewrite.samples[-1].dist)
        dims, what = ([size, size], "pairs of its values") if patterns[address] == "chain" else ([size], "its values")
        checks.extend(entries(dims, budget, f"summing out `{address}` needs a table over {what}",
                              rewrite.samples[0].span, source))
        done(rewrite, lets)

    top_vars = {s.name: s.address for s in fn.body if isinstance(s, ir.Sample) and s.address in top}
    for address in sorted(set(addresses) - set(top), key=first.__getitem__, reverse=True):
        alone(address)
        if patterns[address] == "chain":
            chain_alone(fn, address, top_vars, source)
    for group in groups(body, top):
        if len(group) == 1:
            alone(group[0])
            continue
        elimination = Elimination(fn, group, source, tags[group[0]], seen, {v for v, _ in kept}, budget)
        body, lets = elimination.apply(body)
        patterns.update({a: "elimination" for a in group})
        checks += elimination.checks
        done(elimination, lets)
    patterns = {a: patterns[a] for a in addresses}
    sites = {a: i for a, i in fn.sites.items() if a not in patterns}
    arrays = {a: i for a, i in (fn.arrays | added).items() if i.address not in patterns and a not in dropped}
    values = [(v, name) for v, name in fn.values if v not in dropped and name not in patterns]
    values += [(v, name) for v, name in kept if v not in dropped]
    out = dataclasses.replace(fn, body=body, sites=sites, arrays=arrays, values=values, checks=fn.checks + checks)
    return Marginal(out, patterns)


def check_summable(fn: ir.Function, address: str, observed: set[str], source: str) -> None:
    """A located error unless `address` is a latent choice with finite support."""
    info = fn.sites.get(address)
    if info is None:
        raise error(f"{fn.kind} `{fn.name}` has no random choice `{address}` to sum out", fn.span, source,
                    hint=f"its choices: {', '.join(fn.sites)}")
    if address in observed:
        raise error(f"`{address}` is observed in the data, so there is nothing to sum out", info.span, source,
                    hint="leave it out of the data to sum it out, or do not ask to marginalize it")
    if not info.enumerable:
        raise error(f"`{address}` ({info.dist}) has no finite support to sum over", info.span, source,
                    hint="only bernoulli, categorical and binomial choices are summed out; infer this one "
                    "with `pplang smc` or `pplang infer --method is`")


def chain_alone(fn: ir.Function, address: str, later: dict[str, str], source: str) -> None:
    """A located error when the chain at `address` reads a top-level choice summed out after it
    (`later`: variable -> address): its forward algorithm runs once, for no value of that choice."""
    start = next(i for i, s in enumerate(fn.body) if isinstance(s, ir.Sample) and s.address == address)
    stop = next(i for i, s in enumerate(fn.body) if isinstance(s, ir.Loop)
                and any(isinstance(x, ir.Sample) and x.address == address for x in walk(s.body)))
    hit = sorted({n for n, _ in reads(fn.body[start:stop + 1])} & later.keys())
    if hit:
        other = later[hit[0]]
        raise error(f"cannot sum out both `{address}` and `{other}`: the chain `{address}` reads `{other}`",
                    fn.body[stop].span, source, hint=f"sum out the chain alone (marginalize=['{address}']) and "
                    f"sample `{other}` with `pplang smc` or `pplang infer --method is`")


class Rewrite:
    """Sums one choice out of a function body."""

    def __init__(self, fn: ir.Function, address: str, source: str, tag: str, observed: set[str],
                 derived: set[str] = frozenset()):
        self.fn, self.address, self.source, self.tag, self.observed = fn, address, source, tag, observed
        self.derived = derived  # what choices summed out before it keep (probabilities, draws)
        self.dropped: set[str] = set()  # those of them computed from it, or from those (dropped with it)
        self.samples = [s for s in walk(fn.body) if isinstance(s, ir.Sample) and s.address == address]
        self.var = self.samples[0].name
        self.kind = fn.sites[address].kind
        self.term = f"marginal:{address}"  # the name of its log-sum-exp among the score's terms
        self.arrays: dict[str, ir.ArrayInfo] = {}  # per-iteration sums of loops that depend on it
        self.values: list[tuple[str, str]] = []  # what it keeps: its posterior probabilities, `p(z)`

    def fail(self, message: str, span: object, hint: str) -> Exception:
        return error(f"cannot sum out `{self.address}`: {message}", span, self.source, hint=hint)

    # ---------------------------------------------------------------- which pattern

    def apply(self, body: list[ir.Stmt]) -> tuple[list[ir.Stmt], str, set[str]]:
        site = self.samples[0]
        if len(self.samples) == 1 and site.index is None and site in body:
            out, lets = self.single(body)
            return out, "single", lets
        if len(self.samples) == 1 and site.index is not None:
            loop = next((s for s in walk(body) if isinstance(s, ir.Loop) and site in s.body), None)
            if loop is not None and loop in body and len(site.index) == 1 \
                    and expr_key(site.index[0]) == ("v", loop.var):
                out, lets = self.mixture(body, loop)
                return out, "mixture", lets
        if len(self.samples) == 2 and self.samples[0] in body:
            loop = next((s for s in body if isinstance(s, ir.Loop) and self.samples[1] in s.body), None)
            if loop is not None:
                out, lets = self.chain(body, loop)
                return out, "chain", lets
        raise self.fail("it is drawn in a way that none of the patterns covers", site.span,
                        "draw it once at the top level (`z ~ d`), once per iteration of a loop (`z[i] ~ d`), or "
                        "as a chain (`z[0] ~ d0` before `for t in range(1, T)` and `z[t] ~ d(z[t - 1])` in it)")

    # ---------------------------------------------------------------- patterns

    def single(self, body: list[ir.Stmt]) -> tuple[list[ir.Stmt], set[str]]:
        site = self.samples[0]
        p = body.index(site)
        self.only_after(body, p)
        k = self.value_var()
        out, terms, lets = self.dependents(body[p + 1:], lambda e: self.put(e, None, k), loops=True)
        total = self.summed(site.dist, k, terms)
        vec = total.ty
        for acc in list(self.arrays):  # each dependent loop's terms, one vector over the values per iteration
            total = ir.Op("+", (total, ir.Call("sum", (ir.Var(acc, ir.Ty("real", None)),
                                                       ir.Const(0, ir.STATIC_INT)), vec)), vec)
        joint = ir.Var(f"{self.tag}_lp", vec)
        probs = f"{self.tag}_p"
        self.values.append((probs, f"p({self.address})"))
        done = [ir.Let(joint.name, total, site.span), ir.Factor(logsumexp(joint), site.span, self.term),
                ir.Let(probs, softmax(joint), site.span)]
        return body[:p] + out + done + self.recovered(probs, site), lets

    def mixture(self, body: list[ir.Stmt], loop: ir.Loop) -> tuple[list[ir.Stmt], set[str]]:
        site = self.samples[0]
        self.unused_outside(body, loop)
        p = loop.body.index(site)
        self.only_after(loop.body, p)
        k = self.value_var()
        out, terms, lets = self.dependents(loop.body[p + 1:], lambda e: self.put(e, site.index, k))
        total = self.summed(site.dist, k, terms)
        joint = ir.Var(f"{self.tag}_lp", total.ty)
        probs = f"{self.tag}_p"
        self.arrays[probs] = ir.ArrayInfo(probs, (dim_code(loop.stop), support_size(site.dist)), "real")
        self.values.append((probs, f"p({self.address})"))
        done = [ir.Let(joint.name, total, site.span), ir.Factor(logsumexp(joint), site.span, self.term),
                ir.Store(probs, site.index, softmax(joint), site.span)]
        new_loop = dataclasses.replace(loop, body=loop.body[:p] + out + done)
        at = body.index(loop)
        return body[:at] + [new_loop] + self.recovered(probs, site) + body[at + 1:], lets

    def chain(self, body: list[ir.Stmt], loop: ir.Loop) -> tuple[list[ir.Stmt], set[str]]:
        first, step = self.samples
        if not (first.index is not None and len(first.index) == 1 and expr_key(first.index[0]) == ("c", 0)
                and step.index is not None and len(step.index) == 1 and expr_key(step.index[0]) == ("v", loop.var)
                and expr_key(loop.start) == ("c", 1)):
            raise self.fail("a chain draws `z[0]` before a loop `for t in range(1, T)` and `z[t]` in it",
                            step.span, "index the chain by the loop variable, starting the loop at 1")
        p0, q = body.index(first), loop.body.index(step)
        at_loop = body.index(loop)
        before = body[p0 + 1:at_loop]
        for s in body[at_loop + 1:]:
            self.no_read(s, "after the loop that draws it")
        previous = ir.Op("-", (ir.Var(loop.var, ir.STATIC_INT), ir.Const(1, ir.STATIC_INT)), ir.INT)
        for s in loop.body[:q]:
            self.no_read(s, "before it is drawn in the loop")
        for key in self.read_keys(step.dist):
            if key != ("op", "-", ("v", loop.var), ("c", 1)):
                raise self.fail("its step may read only the previous state `z[t - 1]`", step.span,
                                "write the transition as `z[t] ~ d(z[t - 1])`")
        alpha = f"{self.tag}_alpha"
        k, j = self.value_var(), f"{self.tag}_j"
        size = support_size(step.dist)
        vec = ir.Ty("real", (size,))
        # before the loop: alpha[k] = log d0(k) + the first state's dependents
        out0, terms0, lets0 = self.dependents(before, lambda e: self.put(e, first.index, k))
        alpha0 = ir.Enumerate(k, first.dist, self.summed_terms(first.dist, k, terms0), vec)
        # in the loop: alpha[k] = logsumexp(alpha + [log d(j)(k) for j]) + dependents(k)
        out, terms, lets = self.dependents(loop.body[q + 1:], lambda e: self.put(e, step.index, k))
        support = self.at(step.dist, previous, ir.Const(0 if self.kind != "bool" else False, ir.INT))
        transition = self.at(step.dist, previous, ir.Var(j, ir.INT))
        column = ir.Enumerate(j, support, ir.DistLogProb(transition, ir.Var(k, ir.INT), REAL), vec)
        hoisted: list[ir.Stmt] = []
        per_step: list[ir.Stmt] = []  # in the recursion's loop, before alpha is updated
        written = {n for n, _ in writes(loop.body)} | {loop.var}
        matrix = f"{self.tag}_log_transition"  # [k, j] = log p(z[t] = k | z[t - 1] = j)
        mty = ir.Ty("real", (size, size))
        if not {n for n, _ in reads_of(transition)} & written:
            # the transition does not change along the chain: its log matrix is computed once, before
            # the loop, as a hand-written forward algorithm would (XLA does not hoist out of a scan)
            hoisted = [ir.Let(matrix, ir.Enumerate(k, support, column, mty), step.span)]
            trans: ir.Expr = ir.Var(matrix, mty)
        else:  # one matrix per step, kept (row 0 unused) for the recovery after the loop
            steps = f"{self.tag}_log_transitions"
            self.arrays[steps] = ir.ArrayInfo(steps, (dim_code(loop.stop), size, size), "real")
            per_step = [ir.Let(matrix, ir.Enumerate(k, support, column, mty), step.span),
                        ir.Store(steps, step.index, ir.Var(matrix, mty), step.span)]
            trans = ir.Var(steps, ir.Ty("real", None))
        row = ir.Var(k, ir.INT) if self.kind != "bool" else ir.Call("to_int", (ir.Var(k, ir.INT),), ir.INT)
        column = ir.Index(ir.Var(matrix, mty), (row,), vec)  # row k: log p(k | j) over j
        carried = logsumexp(ir.Op("+", (ir.Var(alpha, vec), column), vec))
        alphas = f"{self.tag}_alphas"  # the filtered log probabilities of every step, for the recovery
        self.arrays[alphas] = ir.ArrayInfo(alphas, (dim_code(loop.stop), size), "real")
        keep = ir.Store(alphas, step.index, ir.Var(alpha, vec), step.span)
        done = [ir.Factor(logsumexp(ir.Var(alpha, vec)), loop.span, self.term),
                *self.chain_recovered(ir.Var(alphas, ir.Ty("real", None)), trans, first.span)]
        start = [ir.Let(alpha, alpha0, first.span), ir.Store(alphas, first.index, ir.Var(alpha, vec), first.span),
                 *hoisted]
        if self.movable([*terms, support, transition], loop, {k, j}):
            # the emissions read only what the loop leaves behind: all of them are computed at once, in
            # a vectorized loop, and the scan does the recursion alone, as a hand-written forward
            # algorithm does (the original loop, no longer carrying a state, is vectorized too)
            emit = f"{self.tag}_emit"
            self.arrays[emit] = ir.ArrayInfo(emit, (dim_code(loop.stop), size), "real")
            t = ir.Var(loop.var, ir.INT)
            emissions = ir.Loop(loop.var, loop.start, loop.stop, [ir.Store(
                emit, (t,), ir.Enumerate(k, support, plus(ir.Const(0.0, REAL), terms), vec), step.span)], loop.span)
            moved = ir.Enumerate(k, support, carried, vec)
            if hoisted:  # logsumexp(log A + alpha, 1): one broadcast add and one reduction per step
                matrix = hoisted[0]
                mty = matrix.value.ty
                moved = ir.Call(LOGSUMEXP, (ir.Op("+", (ir.Var(matrix.name, mty), ir.Var(alpha, vec)), mty),
                                            ir.Const(1, ir.STATIC_INT)), vec)
            recursion = ir.Op("+", (moved, ir.Index(ir.Var(emit, ir.Ty("real", None)), (t,), vec)), vec)
            forward = ir.Loop(loop.var, loop.start, loop.stop,
                              [*per_step, ir.Let(alpha, recursion, step.span), keep], loop.span)
            rest = [dataclasses.replace(loop, body=loop.body[:q] + out), emissions, *start, forward, *done]
            return body[:p0] + out0 + rest + body[at_loop + 1:], lets0 | lets
        alpha_t = ir.Enumerate(k, support, plus(carried, terms), vec)
        new_loop = dataclasses.replace(loop, body=loop.body[:q] + out + [*per_step, ir.Let(alpha, alpha_t, step.span),
                                                                         keep])
        return body[:p0] + out0 + start + [new_loop, *done] + body[at_loop + 1:], lets0 | lets

    def chain_recovered(self, alphas: ir.Expr, trans: ir.Expr, span: object) -> list[ir.Stmt]:
        """After the forward algorithm: the chain's posterior marginals (forward-backward), a path drawn
        from its posterior (backward sampling) and its most probable path (Viterbi), kept as `p(z)`,
        `z` and `map(z)`."""
        out = []
        for what, name, kind in (("chain_marginals", f"p({self.address})", "real"),
                                 ("chain_draw", self.address, self.kind),
                                 ("chain_most_probable", f"map({self.address})", self.kind)):
            var = f"{self.tag}_{what.removeprefix('chain_')}"
            out.append(ir.Let(var, ir.Recover(what, (alphas, trans), ir.Ty(kind, None)), span))
            self.values.append((var, name))
        return out

    def movable(self, exprs: list, loop: ir.Loop, local: set[str]) -> bool:
        """Whether expressions of one iteration read only what the loop leaves behind: values from
        before it, its variable, and pieces written at the iteration's own index (`y[t]`)."""
        own = (("v", loop.var),)
        pieces = {n for n, key in writes(loop.body) if key == own}
        written = {n for n, _ in writes(loop.body)}
        roots = [ir.Vec((*e.args, *(v for _, v in e.kwargs)), REAL) if isinstance(e, ir.Dist) else e for e in exprs]
        for name, key in reads([ir.Factor(ir.Vec(tuple(roots), REAL))]):
            if name in local or name == loop.var or name not in written:
                continue
            if name not in pieces or key != own:
                return False
        return True

    def recovered(self, probs: str, site: ir.Sample) -> list[ir.Stmt]:
        """After the choice's posterior probabilities: a joint draw and the most probable value,
        kept as `z` and `map(z)` (given the other choices, the summed-out values are independent)."""
        out = []
        for what, name in (("draw", self.address), ("most_probable", f"map({self.address})")):
            var = f"{self.tag}_{what}"
            out.append(ir.Let(var, ir.Recover(what, (ir.Var(probs, ir.Ty("real", None)),),
                                              ir.Ty(self.kind, None)), site.span))
            self.values.append((var, name))
        return out

    # ---------------------------------------------------------------- dependents

    def dependents(self, stmts: list[ir.Stmt], put: Callable[[ir.Expr], ir.Expr], loops: bool = False,
                   every: bool = False, inlined: dict[str, ir.Expr] | None = None
                   ) -> tuple[list[ir.Stmt], list[ir.Expr], set[str]]:
        """The statements after the choice: those that do not read it unchanged, the choices that do
        kept unscored, and the log densities of everything that reads it as expressions of its value
        (values computed from it inlined into their readers, added to `inlined`). With `loops`, a
        loop whose body reads it keeps, per iteration, the vector of its body's log densities over
        the choice's values in an array of its own (`self.arrays`), which the caller sums. With
        `every` (an arm of a branch that depends on it), every value, choice and factor is a
        dependent."""
        out: list[ir.Stmt] = []
        terms: list[ir.Expr] = []
        inlined = {} if inlined is None else inlined

        def rewrite(e: ir.Expr) -> ir.Expr:
            return put(replace_vars(e, inlined))

        def depends(s: ir.Stmt) -> bool:
            if every and isinstance(s, (ir.Let, ir.Sample, ir.Factor, ir.Branch, ir.Loop)):
                return True
            names = {n for n, _ in reads([s])}
            return self.var in names or bool(names & (inlined.keys() | self.dropped))

        for s in stmts:
            if not depends(s):
                out.append(s)
            elif isinstance(s, (ir.Let, ir.Store)) and s.name in self.derived:
                self.dropped.add(s.name)  # an earlier choice's probabilities given this one: not kept
            elif isinstance(s, ir.Let):
                inlined[s.name] = replace_vars(s.value, inlined)
            elif isinstance(s, ir.Branch) and not s.static:  # both arms' densities, selected for each value
                cond = replace_vars(s.cond, inlined)
                then_values, else_values = dict(inlined), dict(inlined)
                then, then_terms, _ = self.dependents(s.then, put, every=True, inlined=then_values)
                orelse, else_terms, _ = self.dependents(s.orelse, put, every=True, inlined=else_values)
                inlined.update(merged(cond, inlined, then_values, else_values, lambda name, at=s.span: self.fail(
                    f"`{name}` is computed in one arm of a branch only", at, "compute it in both arms")))
                terms.append(ir.Select(put(cond), total(then_terms), total(else_terms), REAL))
                out.append(dataclasses.replace(s, cond=self.put(cond, None, None), then=then, orelse=orelse))
            elif isinstance(s, ir.Sample):
                if s.address in self.fn.sites and self.fn.sites[s.address].kind in ("int", "bool") \
                        and s.address not in self.observed and s.address != self.address:
                    raise self.fail(f"the discrete choice `{s.address}` depends on it", s.span,
                                    "sum it out too (leave it out of the data and of marginalize=[...]), or draw a "
                                    "chain one link at a time: each state from the previous one")
                dist = rewrite_dist(s.dist, rewrite)
                terms.append(ir.DistLogProb(dist, value_of(s), REAL))
                placeholder = rewrite_dist(s.dist, lambda e: self.put(replace_vars(e, inlined), None, None))
                out.append(dataclasses.replace(s, dist=dataclasses.replace(placeholder, unscored=True)))
            elif isinstance(s, ir.Factor):
                terms.append(ir.Call("sum", (rewrite(s.value),), REAL))
            elif isinstance(s, ir.Loop) and loops:
                out.append(self.loop_terms(s, put, inlined))
            else:
                what = {ir.Store: "an array piece", ir.Loop: "a loop", ir.Branch: "a branch",
                        ir.Ret: "the return value", ir.ParamDef: "a parameter"}.get(type(s), "a statement")
                raise self.fail(f"{what} is computed from it", s.span,
                                "only choices, factors and values they use may depend on a summed-out choice; "
                                "compute what you need from the other choices")
        used_later = {n for n, _ in reads(out)} & inlined.keys()
        if used_later:
            name = sorted(used_later)[0]
            raise self.fail(f"`{name}`, computed from it, is used elsewhere", self.samples[0].span,
                            "only the choices and factors beside it may use values computed from it")
        return out, terms, set(inlined)

    def loop_terms(self, loop: ir.Loop, put: Callable[[ir.Expr], ir.Expr], inlined: dict[str, ir.Expr]) -> ir.Loop:
        """A loop after a single choice whose body reads it: its body with the dependents rewritten,
        storing in iteration i the vector over the choice's values of the iteration's log densities."""
        body = [replace_in_stmt(s, inlined) for s in loop.body]
        out, terms, lets = self.dependents(body, put)
        carried = set(loop.carried) | carried_names(loop.body)
        if set(lets) & carried:
            raise self.fail(f"`{sorted(set(lets) & carried)[0]}`, computed from it, is carried from one "
                            "iteration to the next", loop.span, "only values used within one iteration may depend "
                            "on a summed-out choice")
        site = self.samples[0]
        size = support_size(site.dist)
        acc = f"{self.tag}_acc{len(self.arrays)}"
        vec = ir.Ty("real", (size,))
        value = ir.Enumerate(self.value_var(), site.dist, plus(ir.Const(0.0, REAL), terms), vec)
        self.arrays[acc] = ir.ArrayInfo(acc, (dim_code(loop.stop), size), "real")
        return dataclasses.replace(loop, body=out + [ir.Store(acc, (ir.Var(loop.var, ir.INT),), value, loop.span)])

    # ---------------------------------------------------------------- pieces

    def value_var(self) -> str:
        return f"{self.tag}_k"

    def summed(self, dist: ir.Dist, k: str, terms: list[ir.Expr]) -> ir.Expr:
        return ir.Enumerate(k, dist, self.summed_terms(dist, k, terms), ir.Ty("real", (support_size(dist),)))

    def summed_terms(self, dist: ir.Dist, k: str, terms: list[ir.Expr]) -> ir.Expr:
        return plus(ir.DistLogProb(dist, ir.Var(k, ir.INT), REAL), terms)

    def put(self, e: ir.Expr, index: tuple | None, k: str | None) -> ir.Expr:
        """`e` with the choice (at `index`) replaced by the variable `k` (by its first value, 0,
        where k is None: a placeholder that fixes shapes only)."""
        want = None if index is None else tuple(expr_key(i) for i in index)
        value = ir.Var(k, ir.INT) if k is not None else ir.Const(False if self.kind == "bool" else 0, ir.INT)

        def visit(x: ir.Expr) -> ir.Expr | None:
            if isinstance(x, ir.Index) and isinstance(x.base, ir.Var) and x.base.name == self.var:
                if k is None or (want is not None and tuple(expr_key(i) for i in x.indices) == want):
                    return value
                raise self.fail("it is read at another index than it is drawn at", self.samples[0].span,
                                "read it where it is drawn (`z[i]` in the iteration that draws it)")
            if isinstance(x, ir.Var) and x.name == self.var:
                if want is None or k is None:
                    return value
                raise self.fail("it is read whole", self.samples[0].span, "read one element where it is drawn")
            return None

        return map_expr(e, visit)

    def at(self, dist: ir.Dist, previous: ir.Expr, value: ir.Expr) -> ir.Dist:
        """The chain's step distribution with the previous state `z[t - 1]` replaced by `value`."""
        want = (expr_key(previous),)

        def visit(x: ir.Expr) -> ir.Expr | None:
            if isinstance(x, ir.Index) and isinstance(x.base, ir.Var) and x.base.name == self.var \
                    and tuple(expr_key(i) for i in x.indices) == want:
                return value
            return None

        return rewrite_dist(dist, lambda e: map_expr(e, visit))

    def read_keys(self, dist: ir.Dist) -> list[object]:
        keys = []
        for root in (*dist.args, *(v for _, v in dist.kwargs)):
            for x in sub_exprs(root):
                if isinstance(x, ir.Index) and isinstance(x.base, ir.Var) and x.base.name == self.var:
                    keys.append(expr_key(x.indices[0]) if len(x.indices) == 1 else ("many",))
        return keys

    def only_after(self, stmts: list[ir.Stmt], p: int) -> None:
        for s in stmts[:p]:
            self.no_read(s, "before it is drawn")

    def unused_outside(self, body: list[ir.Stmt], loop: ir.Loop) -> None:
        for s in body:
            if s is not loop:
                self.no_read(s, "outside the loop that draws it")

    def no_read(self, s: ir.Stmt, where: str) -> None:
        if any(n == self.var for n, _ in reads([s])):
            raise self.fail(f"it is read {where}", s.span, "use it only in the statements after it, in the same "
                            "iteration")


# ---------------------------------------------------------------- expressions


def carried_names(body: list[ir.Stmt]) -> set[str]:
    """The values a loop body reads before it writes them: carried from one iteration to the next."""
    written: set[str] = set()
    found: set[str] = set()
    everything = {n for n, _ in writes(body)}
    for s in body:
        found |= {n for n, _ in reads([s]) if n in everything and n not in written}
        written |= {n for n, _ in writes([s])}
    return found


def merged(cond: ir.Expr, before: dict[str, ir.Expr], then: dict[str, ir.Expr], orelse: dict[str, ir.Expr],
           fail: Callable[[str], Exception]) -> dict[str, ir.Expr]:
    """The values the arms of a branch compute (inlined), selected by its condition."""
    out = {}
    for name in then.keys() | orelse.keys():
        a, b = then.get(name), orelse.get(name)
        if a is before.get(name) and b is before.get(name):
            continue
        if a is None or b is None:
            raise fail(name)
        out[name] = ir.Select(cond, a, b, a.ty)
    return out


def total(terms: list[ir.Expr]) -> ir.Expr:
    """The sum of log densities (0 for none)."""
    return plus(terms[0], terms[1:]) if terms else ir.Const(0.0, REAL)


def plus(first: ir.Expr, rest: list[ir.Expr]) -> ir.Expr:
    out = first
    for t in rest:
        out = ir.Op("+", (out, t), REAL)
    return out


def logsumexp(x: ir.Expr) -> ir.Expr:
    return ir.Call(LOGSUMEXP, (x,), REAL)


def softmax(x: ir.Expr) -> ir.Expr:
    return ir.Call("softmax", (x,), x.ty)


def value_of(s: ir.Sample) -> ir.Expr:
    """The value a choice statement binds (its variable, or its piece)."""
    if s.index is None:
        return ir.Var(s.name, s.dist.value_ty)
    return ir.Index(ir.Var(s.name, ir.Ty(s.dist.value_ty.kind, None)), s.index, s.dist.value_ty)


def support_size(dist: ir.Dist) -> ir.Dim:
    """The number of values of a scalar discrete distribution when the checker knows it."""
    if dist.name in ("bernoulli", "bernoulli_logit"):
        return 2
    if dist.name in ("categorical", "categorical_logit"):
        arg = dist.args[0] if dist.args else dict(dist.kwargs).get("probs", dict(dist.kwargs).get("logits"))
        shape = None if arg is None else arg.ty.shape
        return shape[-1] if shape else None
    return None


def support_dim(dist: ir.Dist) -> ir.Dim:
    """The number of values of a scalar discrete distribution, where the program fixes it: also a
    binomial's, from a total count that is a number or a size."""
    if dist.name in ("binomial", "binomial_logit"):
        count = dist.args[0] if dist.args else dict(dist.kwargs).get("total_count")
        if isinstance(count, ir.Const):
            return int(count.value) + 1
        if count is not None and count.ty.static:
            return dim_code(ir.Op("+", (count, ir.Const(1, ir.STATIC_INT)), ir.STATIC_INT))
        return None
    return support_size(dist)


def entries(dims: list[ir.Dim], budget: int, message: str, span: object, source: str) -> list[ir.SizeCheck]:
    """A located error when a table with axes of sizes `dims` would have more than `budget`
    entries; where a size comes from the data, the check data binding makes; nothing where a size
    cannot be known before running."""
    if any(d is None for d in dims):
        return []
    if all(isinstance(d, int) for d in dims):
        if math.prod(dims) > budget:
            raise error(f"{message}: {math.prod(dims)} entries, more than the budget of {budget}", span, source,
                        hint=BUDGET_HINT)
        return []
    return [ir.SizeCheck("entries", " * ".join(f"({d})" for d in dims), budget, message, span)]


def reads_of(d: ir.Dist) -> list[tuple[str, object]]:
    """The variables a distribution's arguments read."""
    return list(reads([ir.Factor(ir.Vec((*d.args, *(v for _, v in d.kwargs)), REAL))]))


def rewrite_dist(d: ir.Dist, f: Callable[[ir.Expr], ir.Expr]) -> ir.Dist:
    return dataclasses.replace(d, args=tuple(f(a) for a in d.args), kwargs=tuple((n, f(v)) for n, v in d.kwargs))


def replace_in_stmt(s: ir.Stmt, values: dict[str, ir.Expr]) -> ir.Stmt:
    """A simple statement with the values computed from a summed-out choice inlined (loop bodies are
    rewritten statement by statement by `dependents`)."""
    if not values:
        return s
    if isinstance(s, ir.Let):
        return dataclasses.replace(s, value=replace_vars(s.value, values))
    if isinstance(s, ir.Sample):
        return dataclasses.replace(s, dist=rewrite_dist(s.dist, lambda e: replace_vars(e, values)))
    if isinstance(s, ir.Factor):
        return dataclasses.replace(s, value=replace_vars(s.value, values))
    return s


def replace_vars(e: ir.Expr, values: dict[str, ir.Expr]) -> ir.Expr:
    if not values:
        return e
    return map_expr(e, lambda x: values.get(x.name) if isinstance(x, ir.Var) else None)


def map_expr(e: ir.Expr, visit: Callable[[ir.Expr], ir.Expr | None]) -> ir.Expr:
    """`e` rebuilt bottom-up with `visit(x)` replacing each node `x` where it returns an expression."""
    hit = visit(e)
    if hit is not None:
        return hit

    def m(x: ir.Expr) -> ir.Expr:
        return map_expr(x, visit)

    if isinstance(e, (ir.Op, ir.Call)):
        return dataclasses.replace(e, args=tuple(m(a) for a in e.args))
    if isinstance(e, ir.HostCall):
        return dataclasses.replace(e, args=tuple(m(a) for a in e.args), kwargs=tuple((n, m(v)) for n, v in e.kwargs))
    if isinstance(e, ir.Vec):
        return dataclasses.replace(e, items=tuple(m(a) for a in e.items))
    if isinstance(e, ir.Index):
        ix = tuple(ir.SliceIx(None if i.lo is None else m(i.lo), None if i.hi is None else m(i.hi))
                   if isinstance(i, ir.SliceIx) else m(i) for i in e.indices)
        return dataclasses.replace(e, base=m(e.base), indices=ix)
    if isinstance(e, ir.Select):
        return dataclasses.replace(e, cond=m(e.cond), then=m(e.then), orelse=m(e.orelse))
    if isinstance(e, ir.Shape_):
        return dataclasses.replace(e, value=m(e.value))
    if isinstance(e, ir.DistLogProb):
        return dataclasses.replace(e, dist=rewrite_dist(e.dist, m), value=m(e.value))
    if isinstance(e, ir.Enumerate):
        return dataclasses.replace(e, support=rewrite_dist(e.support, m), body=m(e.body))
    return e


__all__ = ["Marginal", "marginalize", "summable", "unscored"]
