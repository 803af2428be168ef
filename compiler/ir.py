"""A small typed, structured IR.

The checker lowers the surface syntax to these nodes; analyses annotate loops; code generation
turns them into Python over `jax.numpy`. Every statement keeps the `Span` of the source it came
from so that generated code can point back at model lines.

Shapes are tuples of dimensions. A dimension is an `int`, a `str` holding a Python expression over
the declaration's arguments (for example `"N"` or `"x.shape[0]"`, valid in generated code), or
`None` when it cannot be known before tracing. A shape of `None` means even the rank is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pplang.compiler.frontend.syntax import NO_SPAN, Span

Dim = int | str | None
Shape = tuple[Dim, ...] | None


@dataclass(frozen=True)
class Ty:
    """Kind (`int`, `real`, `bool`, or `unknown` for host results) and shape of a value.

    `static` marks values known while tracing (Python ints such as sizes and loop bounds outside
    vectorized code); only those may size arrays or drive Python-level control flow.
    """

    kind: str
    shape: Shape = ()
    static: bool = False

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.kind}[?]"
        if not self.shape:
            return self.kind
        return f"{self.kind}[{', '.join('?' if d is None else str(d) for d in self.shape)}]"

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)


REAL = Ty("real")
INT = Ty("int")
BOOL = Ty("bool")
STATIC_INT = Ty("int", (), True)
UNKNOWN = Ty("unknown", None)


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Const:
    value: int | float | bool
    ty: Ty


@dataclass(frozen=True)
class Var:
    name: str
    ty: Ty


@dataclass(frozen=True)
class Op:
    """Operators: + - * / // % ** @ neg pos not < <= > >= == != and or."""

    op: str
    args: tuple[Expr, ...]
    ty: Ty


@dataclass(frozen=True)
class Call:
    """A standard-library math function (`fn` is its name in `pplang.stdlib.mathfns`)."""

    fn: str
    args: tuple[Expr, ...]
    ty: Ty


@dataclass(frozen=True)
class HostCall:
    """A caller-bound JAX-traceable callable, opaque to the compiler; with `network`, a neural
    network (declared in the file or bound) whose weights are parameters of the calling program."""

    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...]
    ty: Ty
    network: bool = False
    size: str | None = None  # a set network's input: the `size` argument counting its points
    axis: int = 0  # a set network's input: its axis of points


@dataclass(frozen=True)
class SliceIx:
    lo: Expr | None
    hi: Expr | None


@dataclass(frozen=True)
class Index:
    base: Expr
    indices: tuple[Expr | SliceIx, ...]
    ty: Ty


@dataclass(frozen=True)
class Vec:
    items: tuple[Expr, ...]
    ty: Ty


@dataclass(frozen=True)
class Select:
    cond: Expr
    then: Expr
    orelse: Expr
    ty: Ty


@dataclass(frozen=True)
class Shape_:
    """`x.shape[k]`-style size of a value, static while tracing."""

    value: Expr
    axis: int
    ty: Ty = STATIC_INT


@dataclass(frozen=True)
class Simulate:
    """`simulate(q)` in an objective: a trace of the program bound to `program`, each choice drawn
    by its gradient strategy (or, with `stop`, as a fixed draw that is not differentiated). `args`
    is a trace whose values supply the program's arguments of the same names (`simulate(r, tr)`)."""

    program: str
    args: Expr | None
    stop: bool
    cid: int  # the call's number in the objective, by which the estimator refers to it
    ty: Ty


@dataclass(frozen=True)
class LogDensity:
    """`log_density(p, tr)`: the log density of the program's choices at the trace's values (a model
    conditioned on its data also scores its observations)."""

    program: str
    trace: Expr
    cid: int
    ty: Ty


@dataclass(frozen=True)
class Dist:
    """A distribution expression: `name(args, kwargs)` from `pplang.stdlib.distributions`."""

    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...]
    value_ty: Ty
    support: str | None = None  # a support declared with the choice (`x: positive ~ ...`): its density there
    unscored: bool = False  # its density is counted by a marginalized choice's log-sum-exp (transforms.marginalize)


@dataclass(frozen=True)
class DistLogProb:
    """`normal_lpdf(y, mu, sigma)`: the log density of `value` under `dist`, summed over its
    elements (Stan's `_lpdf` / `_lpmf` functions), for mixtures and custom factors."""

    dist: Dist
    value: Expr
    ty: Ty


@dataclass(frozen=True)
class Enumerate:
    """The vector of `body` with `var` bound to each value of `support`'s support in turn (the
    marginalize transformation's sum over a discrete choice): `jax.vmap` over the values."""

    var: str
    support: Dist
    body: Expr
    ty: Ty


@dataclass(frozen=True)
class Recover:
    """A summed-out choice recovered once the other choices are known (the marginalize
    transformation's results): `what` names the `runtime.recover` function: `marginals`, `draw` or
    `most_probable` of a chain's filtered log probabilities, or `draw` / `most_probable` from a
    choice's posterior probabilities. Draws take a key of their own."""

    what: str
    args: tuple[Expr, ...]
    ty: Ty


Expr = (Const | Var | Op | Call | HostCall | Index | Vec | Select | Shape_ | Simulate | LogDensity | DistLogProb
        | Enumerate | Recover)


# ---------------------------------------------------------------- statements


@dataclass
class Let:
    name: str
    value: Expr
    span: Span = NO_SPAN


@dataclass
class Store:
    """`name[index] = value`: a piece of an array variable."""

    name: str
    index: tuple[Expr, ...]
    value: Expr
    span: Span = NO_SPAN


@dataclass
class Sample:
    """A random choice at `address`, bound to the variable `name` (optionally at `index`)."""

    address: str
    name: str
    index: tuple[Expr, ...] | None
    dist: Dist
    strategy: str | None
    span: Span = NO_SPAN


@dataclass
class Factor:
    value: Expr
    span: Span = NO_SPAN
    name: str | None = None  # its name among a score's terms (default `factor<k>`)


@dataclass
class ParamDef:
    name: str
    address: str
    init: Expr
    constraint: str
    span: Span = NO_SPAN
    shape: tuple[Dim, ...] | None = None  # declared (`param a: real[3] = 0.0`); the init is broadcast


@dataclass
class Loop:
    """`for var in range(start, stop)`. `mode` is set by analysis: `vector` (independent
    iterations, lowered with `jax.vmap`) or `scan` (carried state, lowered with `lax.scan`);
    `carried` lists the variables threaded through a scan."""

    var: str
    start: Expr
    stop: Expr
    body: list[Stmt]
    span: Span = NO_SPAN
    mode: str = "vector"
    carried: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class Branch:
    """`if`; `static` conditions become Python `if`, others evaluate both arms and select."""

    cond: Expr
    then: list[Stmt]
    orelse: list[Stmt]
    static: bool
    span: Span = NO_SPAN


@dataclass
class Ret:
    value: Expr | None
    span: Span = NO_SPAN


Stmt = Let | Store | Sample | Factor | ParamDef | Loop | Branch | Ret


@dataclass
class ArrayInfo:
    """An array variable built from indexed pieces: its full shape and element kind."""

    name: str
    shape: Shape
    kind: str
    address: str | None = None  # set when the pieces are random choices
    lead: tuple[Dim, ...] = ()  # sizes of the indexed axes, known from the writes even when the element is not


@dataclass
class Function:
    """One lowered declaration (submodels are inlined, their addresses prefixed)."""

    kind: str
    name: str
    args: list[tuple[str, Ty]]
    body: list[Stmt]
    sites: dict[str, SiteInfo]
    arrays: dict[str, ArrayInfo]
    params: dict[str, ParamDef]
    returns: Ty | None
    span: Span = NO_SPAN
    arg_constraints: dict[str, str | None] = field(default_factory=dict)
    arg_spans: dict[str, Span] = field(default_factory=dict)
    arg_types: dict[str, str] = field(default_factory=dict)  # as declared, for messages
    checks: list[SizeCheck] = field(default_factory=list)
    programs: list[str] = field(default_factory=list)  # an objective's program arguments (p, q, ...)
    networks: list[str] = field(default_factory=list)  # the networks it calls (their weights are parameters)
    # The named values it computes, kept with the draws (Stan's transformed parameters and generated
    # quantities): (variable, name as the user wrote it); its return value is `("_ret", "return")`.
    values: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class SizeCheck:
    """A size relation the checker could not decide without data, verified when data is bound, so
    that a mismatch is reported rather than silently clamped by JAX. The checker decides the ones
    whose sizes are numbers at once (`pplang.compiler.check.sizes.violation` for both). By `op`:

    * `==`: two symbolic sizes `lhs` and `rhs` must agree;
    * `<=`: the last index a loop reads, plus one (`lhs`), must fit the axis size `rhs`;
    * `index`: a static index `lhs` must address an element of an axis of size `rhs`
      (`-rhs <= lhs < rhs`; a negative index counts from the end);
    * `size`: `lhs` sizes an array and must not be negative (`rhs` is unused);
    * `entries`: a table that summing out discrete choices builds has `lhs` entries, at most `rhs`
      (the budget, `transforms.marginalize.MAX_FACTOR`);
    * `values`: the int array argument `data`, plus the constant `lhs`, indexes an axis of size
      `rhs`: every value read (`region`) must be in `0 .. rhs - 1` (data give no negative indices).

    `loop` (start, stop) limits a check to data for which that loop runs (`start < stop`)."""

    op: str
    lhs: Dim
    rhs: Dim
    message: str
    span: Span
    data: str | None = None  # `values`: the argument, as the user wrote its name
    # `values`: per axis of `data`, the (start, stop) of the part read, or None for all of it
    region: tuple[tuple[Dim, Dim] | None, ...] = ()
    loop: tuple[Dim, Dim] | None = None


@dataclass
class SiteInfo:
    """Static facts about a random choice, used for data checks and transformations."""

    address: str
    shape: Shape
    kind: str
    support: str
    reparameterized: bool
    enumerable: bool
    dist: str
    span: Span
    strategy: str | None = None
