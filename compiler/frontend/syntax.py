"""Surface syntax tree shared by both front-ends (model files and decorated Python).

Every node carries a `Span` so that the checker can point at the user's own source,
whether that is a `.ppl` file or a Python file holding `@pp.model` functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of source text; lines and columns are 1-based, end is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_SPAN = Span("<generated>", 0, 0, 0, 0)


# ---------------------------------------------------------------- expressions


@dataclass
class Num:
    value: int | float
    span: Span = NO_SPAN


@dataclass
class Bool:
    value: bool
    span: Span = NO_SPAN


@dataclass
class Name:
    id: str
    span: Span = NO_SPAN


@dataclass
class BinOp:
    """Arithmetic: + - * / // % ** @ ."""

    op: str
    left: Expr
    right: Expr
    span: Span = NO_SPAN


@dataclass
class UnaryOp:
    """`-x`, `+x` or `not x`."""

    op: str
    operand: Expr
    span: Span = NO_SPAN


@dataclass
class Compare:
    """A single comparison `left op right`; chains are rejected by the front-ends."""

    op: str  # one of < <= > >= == !=
    left: Expr
    right: Expr
    span: Span = NO_SPAN


@dataclass
class BoolOp:
    op: str  # "and" | "or"
    left: Expr
    right: Expr
    span: Span = NO_SPAN


@dataclass
class IfExp:
    """`a if cond else b`."""

    cond: Expr
    then: Expr
    orelse: Expr
    span: Span = NO_SPAN


@dataclass
class Keyword:
    name: str
    value: Expr
    span: Span = NO_SPAN


@dataclass
class Call:
    """A call of a math function, a distribution, a host function or a model."""

    func: str
    args: list[Expr]
    kwargs: list[Keyword] = field(default_factory=list)
    span: Span = NO_SPAN
    func_span: Span = NO_SPAN


@dataclass
class Slice:
    """`lo:hi` inside an index; either bound may be missing."""

    lo: Expr | None
    hi: Expr | None
    span: Span = NO_SPAN


@dataclass
class Index:
    """`value[i, j]`; each index is an expression or a `Slice`."""

    value: Expr
    indices: list[Expr | Slice]
    span: Span = NO_SPAN


@dataclass
class VectorLit:
    """`[a, b, c]`: a vector (or, of vectors, a matrix)."""

    items: list[Expr]
    span: Span = NO_SPAN


@dataclass
class Attribute:
    """`x.shape` style access; only a few attributes are allowed by the checker."""

    value: Expr
    attr: str
    span: Span = NO_SPAN


Expr = Num | Bool | Name | BinOp | UnaryOp | Compare | BoolOp | IfExp | Call | Index | VectorLit | Attribute


# ---------------------------------------------------------------- types


@dataclass
class TypeExpr:
    """A declared type: `real`, `int`, `bool`, `vector[N]`, `matrix[N, K]`, `positive`,
    `unit`, `simplex[K]`, `int[N]` (array of ints), ... `dims` are size expressions."""

    base: str
    dims: list[Expr] = field(default_factory=list)
    span: Span = NO_SPAN


# ---------------------------------------------------------------- statements


Target = Name | Index


@dataclass
class Assign:
    target: Target
    value: Expr
    span: Span = NO_SPAN


@dataclass
class Sample:
    """`target [: support] ~ dist(args) [via strategy]` (a random choice addressed by its target;
    a declared support restricts the distribution's density to it, as Stan's declarations do)."""

    target: Target
    dist: Call
    via: str | None = None
    span: Span = NO_SPAN
    declared: TypeExpr | None = None


@dataclass
class Param:
    """`param name: constraint = init` (a learnable parameter)."""

    name: str
    constraint: TypeExpr | None
    init: Expr
    span: Span = NO_SPAN


@dataclass
class Factor:
    """`factor(expr)`: adds a custom term to the log density."""

    value: Expr
    span: Span = NO_SPAN


@dataclass
class For:
    """`for var in range(start, stop)`."""

    var: str
    start: Expr
    stop: Expr
    body: list[Stmt]
    span: Span = NO_SPAN


@dataclass
class If:
    cond: Expr
    then: list[Stmt]
    orelse: list[Stmt]
    span: Span = NO_SPAN


@dataclass
class Return:
    value: Expr | None
    span: Span = NO_SPAN


Stmt = Assign | Sample | Param | Factor | For | If | Return


# ---------------------------------------------------------------- declarations


@dataclass
class Arg:
    name: str
    type: TypeExpr | None
    span: Span = NO_SPAN


@dataclass
class Decl:
    """A `model`, `guide` or `objective` declaration."""

    kind: str  # "model" | "guide" | "objective"
    name: str
    args: list[Arg]
    body: list[Stmt]
    span: Span = NO_SPAN


@dataclass
class NetworkDecl:
    """`network name = block(options)`: a neural network the file's programs call by name."""

    name: str
    value: Expr
    span: Span = NO_SPAN


@dataclass
class Program:
    decls: list[Decl]
    file: str = "<string>"
    source: str = ""
    networks: list[NetworkDecl] = field(default_factory=list)
