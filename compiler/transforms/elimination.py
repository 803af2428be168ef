"""Variable elimination: discrete choices drawn once at the top level that interact (one drawn from
another, or read together by a choice, a factor, a branch or a loop) are summed out together, as
one would by hand for a small Bayesian network.

Each summed-out choice's log probability, and each statement that reads some of them, is a *log
factor* over the choices it reads (its scope): a choice's density reads the choices its arguments
read; a dependent loop contributes, summed over its iterations, a table over the choices its body
reads. The factors' scopes make a graph (networkx) whose nodes are the choices; a greedy min-fill
order eliminates them one at a time: the factors that read the eliminated choice `v` are added and
`v` is summed out with a log-sum-exp, leaving a table over their other choices, kept as a value of
the generated code (built with `jax.vmap` over the values of each choice in its scope, and read by
later steps at their values). What is left at the end is the log of the sum over every
assignment; the log probabilities of the choice summed out last are kept as `p(<address>)`.

The largest table has as many entries as the product of the support sizes of one step's choices; a
step over the budget (`MAX_FACTOR`, `PPLANG_MAX_FACTOR_ENTRIES`, 2**20 by default) is a located
error naming the choices and the size, decided when the model is compiled where the sizes are
numbers and when the data is bound where they come from it.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import networkx as nx
from pplang.compiler import ir
from pplang.compiler.analysis import reads
from pplang.compiler.check.shapes import dim_code
from pplang.compiler.diagnostics import error
from pplang.compiler.transforms.marginalize import (
    REAL,
    carried_names,
    entries,
    logsumexp,
    map_expr,
    merged,
    replace_in_stmt,
    replace_vars,
    rewrite_dist,
    softmax,
    support_dim,
    total,
    value_of,
)


def groups(body: list[ir.Stmt], addresses: list[str]) -> list[list[str]]:
    """The top-level choices at `addresses` split into the sets that interact: the connected
    components of the graph with an edge between two choices that one statement reads (directly or
    through values computed from them), in program order."""
    var_of = {s.name: s.address for s in body if isinstance(s, ir.Sample) and s.address in addresses}
    graph = nx.Graph()
    graph.add_nodes_from(addresses)
    via: dict[str, set[str]] = {}  # a value -> the choices it is computed from
    for s in body:
        names = {n for n, _ in reads([s])}
        scope = {var_of[n] for n in names if n in var_of}.union(*(via.get(n, set()) for n in names))
        if isinstance(s, ir.Sample) and s.address in addresses:
            scope.add(s.address)
        if isinstance(s, ir.Let) and scope:
            via[s.name] = scope
        graph.add_edges_from(itertools.combinations(sorted(scope), 2))
    rank = {a: i for i, a in enumerate(addresses)}
    parts = [sorted(c, key=rank.__getitem__) for c in nx.connected_components(graph)]
    return sorted(parts, key=lambda c: rank[c[0]])


def min_fill_order(graph: nx.Graph, rank: dict[str, int]) -> list[str]:
    """A greedy elimination order: each step eliminates the node whose neighbours need the fewest
    new edges to become a clique (then the fewest neighbours, then the latest drawn)."""
    g = graph.copy()
    order: list[str] = []
    while g:
        def cost(v: str) -> tuple[int, int, int]:
            nbrs = list(g[v])
            fill = sum(1 for a, b in itertools.combinations(nbrs, 2) if not g.has_edge(a, b))
            return fill, len(nbrs), -rank[v]

        v = min(g, key=cost)
        g.add_edges_from(itertools.combinations(list(g[v]), 2))
        g.remove_node(v)
        order.append(v)
    return order


@dataclass(frozen=True)
class Table:
    """A log factor: an expression of the choices' variables (`expr`), or a value of the generated
    code holding a table over `scope` (`name`, one axis per choice in scope order)."""

    scope: tuple[str, ...]  # variables of summed-out choices, in program order
    expr: ir.Expr | None = None
    name: str | None = None


class Elimination:
    """Sums a set of interacting top-level discrete choices out of a function body."""

    def __init__(self, fn: ir.Function, addresses: list[str], source: str, tag: str, observed: set[str],
                 derived: set[str], budget: int):
        self.fn, self.source, self.tag, self.observed, self.derived = fn, source, tag, observed, derived
        self.addresses, self.budget = addresses, budget
        self.term = "marginal:" + "+".join(addresses)
        self.arrays: dict[str, ir.ArrayInfo] = {}
        self.values: list[tuple[str, str]] = []
        self.checks: list[ir.SizeCheck] = []
        self.dropped: set[str] = set()
        self.hidden: set[str] = set()  # values computed from the choices, inlined into their readers
        self.loop_sums: list[ir.Stmt] = []  # the loops' tables, summed over their iterations
        self.vars: list[str] = []  # the choices' variables, in program order
        self.site: dict[str, ir.Sample] = {}
        self.support: dict[str, ir.Dist] = {}  # each choice's distribution, for its values

    def fail(self, message: str, span: object, hint: str) -> Exception:
        names = ", ".join(f"`{a}`" for a in self.addresses)
        return error(f"cannot sum out {names}: {message}", span, self.source, hint=hint)

    def apply(self, body: list[ir.Stmt]) -> tuple[list[ir.Stmt], set[str]]:
        wanted = set(self.addresses)
        positions = [i for i, s in enumerate(body) if isinstance(s, ir.Sample) and s.address in wanted]
        for i in positions:
            self.site[body[i].name] = body[i]
            self.vars.append(body[i].name)
        first = positions[0]
        out, tables, inlined = self.block(body[first:], {}, top=True)
        used_later = {n for n, _ in reads(out)} & self.hidden
        if used_later:
            raise self.fail(f"`{sorted(used_later)[0]}`, computed from them, is used elsewhere",
                            self.site[self.vars[0]].span, "only the choices, factors, branches and loops that "
                            "read them may use values computed from them")
        lets, total = self.eliminate(tables)
        span = self.site[self.vars[0]].span
        done = [*lets, ir.Factor(total, span, self.term)]
        end = next((i for i, s in enumerate(out) if isinstance(s, ir.Ret)), len(out))
        return body[:first] + out[:end] + done + out[end:], self.hidden | self.dropped

    # ---------------------------------------------------------------- factors

    def scope(self, roots: list[object]) -> tuple[str, ...]:
        exprs = [ir.Vec((*e.args, *(v for _, v in e.kwargs)), REAL) if isinstance(e, ir.Dist) else e for e in roots]
        names = {n for n, _ in reads([ir.Factor(ir.Vec(tuple(exprs), REAL))])}
        return tuple(v for v in self.vars if v in names)

    def block(self, stmts: list[ir.Stmt], inlined: dict[str, ir.Expr], top: bool = False, every: bool = False
              ) -> tuple[list[ir.Stmt], list[Table], dict[str, ir.Expr]]:
        """The statements of a block with what reads the choices taken out: the choices' own
        densities and those of the statements that read them (with `every`, of all its choices and
        factors: an arm of a branch on them), as log factors; choices among the readers stay,
        unscored; values computed from them are inlined into their readers."""
        out: list[ir.Stmt] = []
        tables: list[Table] = []
        inlined = dict(inlined)

        def depends(s: ir.Stmt) -> bool:
            if every and isinstance(s, (ir.Let, ir.Sample, ir.Factor, ir.Branch, ir.Loop)):
                return True
            names = {n for n, _ in reads([s])}
            return bool(names & (set(self.vars) | inlined.keys() | self.dropped))

        for s in stmts:
            if top and isinstance(s, ir.Sample) and s.name in self.site:
                dist = rewrite_dist(s.dist, lambda e: replace_vars(e, inlined))
                self.support[s.name] = self.fixed_support(s, dist)
                own = ir.DistLogProb(dist, ir.Var(s.name, s.dist.value_ty), REAL)
                tables.append(Table(self.scope([own]), own))
            elif not depends(s):
                out.append(s)
            elif isinstance(s, (ir.Let, ir.Store)) and s.name in self.derived:
                self.dropped.add(s.name)  # an earlier choice's probabilities given these: not kept
            elif isinstance(s, ir.Let):
                inlined[s.name] = replace_vars(s.value, inlined)
                self.hidden.add(s.name)
            elif isinstance(s, ir.Sample):
                info = self.fn.sites.get(s.address)
                if info is not None and info.kind in ("int", "bool") and s.address not in self.observed:
                    raise self.fail(f"the discrete choice `{s.address}` depends on them", s.span,
                                    "sum it out with them (leave it out of the data and of marginalize=[...])")
                dist = rewrite_dist(s.dist, lambda e: replace_vars(e, inlined))
                term = ir.DistLogProb(dist, value_of(s), REAL)
                tables.append(Table(self.scope([term]), term))
                placeholder = rewrite_dist(dist, lambda e: map_expr(e, self.placeholder))
                out.append(dataclasses.replace(s, dist=dataclasses.replace(placeholder, unscored=True)))
            elif isinstance(s, ir.Factor):
                term = ir.Call("sum", (replace_vars(s.value, inlined),), REAL)
                tables.append(Table(self.scope([term]), term))
            elif isinstance(s, ir.Branch) and not s.static:
                out_b, table, values = self.branch(s, inlined)
                out.append(out_b)
                tables.append(table)
                inlined.update(values)
                self.hidden |= values.keys()
            elif isinstance(s, ir.Loop) and top:
                out_l, table = self.loop(s, inlined)
                out.append(out_l)
                tables.append(table)
            else:
                what = {ir.Store: "an array piece", ir.Loop: "a loop inside a loop or a branch", ir.Branch: "a branch",
                        ir.Ret: "the return value", ir.ParamDef: "a parameter"}.get(type(s), "a statement")
                raise self.fail(f"{what} is computed from them", s.span,
                                "only choices, factors, branches and one level of loops may depend on summed-out "
                                "choices; compute what you need from the other choices")
        return out, tables, inlined

    def branch(self, s: ir.Branch, inlined: dict[str, ir.Expr]) -> tuple[ir.Branch, Table, dict[str, ir.Expr]]:
        """An `if` that depends on the choices: both arms' log densities, selected by the condition
        for each assignment, and the values the arms compute, selected likewise."""
        cond = replace_vars(s.cond, inlined)
        then_out, then_tables, then_values = self.block(s.then, inlined, every=True)
        else_out, else_tables, else_values = self.block(s.orelse, inlined, every=True)
        values = merged(cond, inlined, then_values, else_values, lambda name: self.fail(
            f"`{name}` is computed in one arm of a branch only", s.span, "compute it in both arms"))
        term = ir.Select(cond, total([t.expr for t in then_tables]), total([t.expr for t in else_tables]), REAL)
        placeholder = map_expr(cond, self.placeholder)
        out = dataclasses.replace(s, cond=placeholder, then=then_out, orelse=else_out)
        return out, Table(self.scope([term]), term), values

    def loop(self, loop: ir.Loop, inlined: dict[str, ir.Expr]) -> tuple[ir.Loop, Table]:
        """A loop whose body reads the choices: each iteration stores its log densities for every
        value of the choices it reads; the table is their sum over the iterations."""
        carried = set(loop.carried) | carried_names(loop.body)
        body = [replace_in_stmt(s, inlined) for s in loop.body]
        out, tables, lets = self.block(body, inlined)
        if set(lets) & carried:
            raise self.fail(f"`{sorted(set(lets) & carried)[0]}`, computed from them, is carried from one "
                            "iteration to the next", loop.span, "only values used within one iteration may depend "
                            "on summed-out choices")
        scope = self.scope([t.expr for t in tables])
        acc = f"{self.tag}_acc{len(self.arrays)}"
        table = self.enumerate(scope, total([t.expr for t in tables]))
        self.arrays[acc] = ir.ArrayInfo(acc, (dim_code(loop.stop), *table.ty.shape), "real")
        store = ir.Store(acc, (ir.Var(loop.var, ir.INT),), table, loop.span)
        summed = ir.Call("sum", (ir.Var(acc, ir.Ty("real", None)), ir.Const(0, ir.STATIC_INT)), table.ty)
        name = f"{self.tag}_loop{len(self.arrays) - 1}"
        self.loop_sums.append(ir.Let(name, summed, loop.span))
        return dataclasses.replace(loop, body=out + [store]), Table(scope, name=name)

    # ---------------------------------------------------------------- elimination

    def eliminate(self, tables: list[Table]) -> tuple[list[ir.Stmt], ir.Expr]:
        """The log factors summed over every assignment of the choices, one choice at a time in a
        min-fill order: the statements computing the intermediate tables, and the total; then the
        statements that recover the choices (see `recovered`)."""
        graph = nx.Graph()
        graph.add_nodes_from(self.vars)
        for t in tables:
            graph.add_edges_from(itertools.combinations(t.scope, 2))
        rank = {v: i for i, v in enumerate(self.vars)}
        order = min_fill_order(graph, rank)
        lets: list[ir.Stmt] = list(self.loop_sums)
        summed, total_expr, conditionals = self.elimination_pass(tables, order, "sum")
        most, _, maximal = self.elimination_pass(tables, order, "max")
        return lets + summed + most + self.recovered(order, conditionals, maximal), total_expr

    def elimination_pass(self, tables: list[Table], order: list[str], mode: str
              ) -> tuple[list[ir.Stmt], ir.Expr, dict[str, tuple[str, tuple[str, ...]]]]:
        """One elimination pass: `sum` (log-sum-exp, the marginal) or `max` (max-product, for the most
        probable assignment). Each step keeps the table of the eliminated choice `v` over the choices
        its factors read and `v` itself (the conditional, up to a constant, of `v` given them), then
        reduces it over `v`. Returns the statements, the total, and per choice its table and scope."""
        lets: list[ir.Stmt] = []
        conditionals: dict[str, tuple[str, tuple[str, ...]]] = {}
        pool = list(tables)
        for n, v in enumerate(order):
            mine = [t for t in pool if v in t.scope]
            pool = [t for t in pool if v not in t.scope]
            scope = tuple(u for u in self.vars if u != v and any(u in t.scope for t in mine))
            span = self.site[v].span
            if mode == "sum":
                self.check_size((*scope, v), span)
            inner = self.enumerate((v,), total([self.read(t) for t in mine]))
            if n == len(order) - 1:  # the last choice: its log probabilities given everything else
                joint = f"{self.tag}_{'lp' if mode == 'sum' else 'max_lp'}"
                lets.append(ir.Let(joint, inner, span))
                conditionals[v] = (joint, ())
                if mode == "sum":
                    probs = f"{self.tag}_p"
                    lets.append(ir.Let(probs, softmax(ir.Var(joint, inner.ty))))
                    self.values.append((probs, f"p({self.site[v].address})"))
                reduce = logsumexp if mode == "sum" else (lambda x: ir.Call("max", (x,), REAL))
                pool.append(Table((), reduce(ir.Var(joint, inner.ty))))
                continue
            cond = f"{self.tag}_{mode}_given_{v}"  # [scope..., v]: the factors that read v, before reducing
            table = self.enumerate(scope, inner)
            lets.append(ir.Let(cond, table, span))
            conditionals[v] = (cond, scope)
            name = f"{self.tag}_{mode}_{v}"  # what is left once `v` is summed (or maximized) out
            axis = ir.Const(len(scope), ir.STATIC_INT)
            reduced_ty = ir.Ty("real", table.ty.shape[:-1])
            lets.append(ir.Let(name, ir.Call("logsumexp" if mode == "sum" else "max",
                                             (ir.Var(cond, table.ty), axis), reduced_ty), span))
            pool.append(Table(scope, name=name))
        return lets, total([self.read(t) for t in pool]), conditionals

    def recovered(self, order: list[str], conditionals: dict, maximal: dict) -> list[ir.Stmt]:
        """A joint draw of the choices and their most probable assignment, each in the reverse of the
        elimination order: a choice's table read at the values already chosen for the choices it
        depends on gives its conditional (backward sampling), or the best value (max-product's
        traceback). Kept as `a` and `map(a)` for every address `a`."""
        out: list[ir.Stmt] = []
        for what, tables, label in (("draw", conditionals, "{}"), ("most_probable", maximal, "map({})")):
            chosen: dict[str, str] = {}
            for v in reversed(order):
                name, scope = tables[v]
                ty = ir.Ty("real", None)
                logits = ir.Var(name, ty) if not scope else ir.Index(
                    ir.Var(name, ty), tuple(self.value_at(u, chosen[u]) for u in scope), ty)
                var = f"{self.tag}_{what}_{v}"
                kind = self.site[v].dist.value_ty.kind
                out.append(ir.Let(var, ir.Recover(what, (softmax(logits),), ir.Ty(kind, ())), self.site[v].span))
                chosen[v] = var
            self.values += [(chosen[v], label.format(self.site[v].address)) for v in self.vars]
        return out

    def value_at(self, v: str, var: str) -> ir.Expr:
        """The index of a recovered choice's value (booleans index as 0 and 1)."""
        x = ir.Var(var, self.site[v].dist.value_ty)
        return ir.Call("to_int", (x,), ir.INT) if self.site[v].dist.value_ty.kind == "bool" else x

    def read(self, t: Table) -> ir.Expr:
        """A factor's value at the choices' variables: its expression, or its table indexed by them."""
        if t.expr is not None:
            return t.expr
        ty = ir.Ty("real", tuple(self.size(v) for v in t.scope))
        if not t.scope:
            return ir.Var(t.name, ty)
        return ir.Index(ir.Var(t.name, ty), tuple(self.position(v) for v in t.scope), REAL)

    def enumerate(self, scope: tuple[str, ...], body: ir.Expr) -> ir.Expr:
        """`body` for every assignment of the choices in `scope`: a table with one axis per choice.
        Inside, each choice's variable stands for its value, so the body reads as the model does."""
        out, shape = body, ()
        for v in reversed(scope):
            shape = (self.size(v), *shape)
            out = ir.Enumerate(v, self.support[v], out, ir.Ty("real", shape))
        return out

    def position(self, v: str) -> ir.Expr:
        """The index of a choice's value among its support (booleans index as 0 and 1)."""
        var = ir.Var(v, self.site[v].dist.value_ty)
        return ir.Call("to_int", (var,), ir.INT) if self.site[v].dist.value_ty.kind == "bool" else var

    def size(self, v: str) -> ir.Dim:
        return support_dim(self.support[v])

    def check_size(self, scope: tuple[str, ...], span: object) -> None:
        """A located error when a table over `scope` would exceed the budget (decided now where the
        sizes are numbers, when the data is bound where they come from it)."""
        names = ", ".join(f"`{self.site[v].address}`" for v in scope)
        message = f"summing out {', '.join(f'`{a}`' for a in self.addresses)} needs a table over {names}"
        self.checks += entries([self.size(v) for v in scope], self.budget, message, span, self.source)

    # ---------------------------------------------------------------- pieces

    def fixed_support(self, s: ir.Sample, dist: ir.Dist) -> ir.Dist:
        """The choice's distribution with the other choices fixed at a first value: its support,
        which may not depend on them."""
        if dist.name == "binomial" and self.scope([dist.args[0] if dist.args else dist]):
            raise self.fail(f"the number of values of `{s.address}` depends on another summed-out choice", s.span,
                            "give the binomial a total count that the data fixes")
        return rewrite_dist(dist, lambda e: map_expr(e, self.placeholder))

    def placeholder(self, x: ir.Expr) -> ir.Expr | None:
        """A choice's variable replaced by its first value (shapes only: the density is not scored)."""
        if isinstance(x, ir.Var) and x.name in self.site:
            return ir.Const(False if self.site[x.name].dist.value_ty.kind == "bool" else 0, ir.INT)
        return None

