"""Model-file front-end: text -> `syntax.Program`, with every syntax error a located `PplError`.

The grammar lives in `grammar.lark` (LALR); indentation is turned into `_INDENT`/`_DEDENT` tokens by
`_Indenter`, and the lark parse tree is turned into the surface AST by `_Builder`.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import Indenter
from lark.parsers.lalr_parser_state import ParseConf, ParserState
from lark.tree import Meta
from pplang.compiler.diagnostics import PplError, did_you_mean, error
from pplang.compiler.frontend.syntax import (
    Arg,
    Assign,
    Attribute,
    BinOp,
    Bool,
    BoolOp,
    Call,
    Compare,
    Decl,
    Expr,
    Factor,
    For,
    If,
    IfExp,
    Index,
    Keyword,
    Name,
    NetworkDecl,
    Num,
    Param,
    Program,
    Return,
    Sample,
    Slice,
    Span,
    Stmt,
    Target,
    TypeExpr,
    UnaryOp,
    VectorLit,
)

# The type names a declaration may use. How many sizes each takes (`vector` or `vector[N]`,
# `matrix` or `matrix[N, K]`, arrays `int[N]`, ...) is the checker's to judge.
TYPE_BASES = frozenset({"int", "size", "real", "bool", "positive", "unit", "vector", "simplex", "ordered",
                        "positive_ordered", "cholesky_corr", "matrix"})

_STATEMENT_WORDS = {"param", "factor", "for", "if", "return", "pass"}
_HEADER_WORDS = {"model", "guide", "objective", "for", "if", "elif", "else"}
_UNSUPPORTED_WORDS = {
    "while": "pplang has no `while`; loop with `for i in range(n):`",
    "def": "declare a model with `model name(args):` (or decorate a Python function with @pp.model)",
    "import": "model files cannot import; call distributions and math functions by name",
    "from": "model files cannot import; call distributions and math functions by name",
    "lambda": "pplang has no lambdas; write the expression inline",
    "class": "pplang has no classes; declare a `model`, `guide` or `objective`",
    "with": "pplang has no `with` blocks",
    "try": "pplang has no exceptions",
}
_CHAR_HINTS = {
    '"': "pplang model files have no strings",
    "'": "pplang model files have no strings",
    ";": "put each statement on its own line",
    "&": "use `and`",
    "|": "use `or`",
    "!": "use `not`",
    "^": "use `**` for powers",
    "{": "write vectors as [a, b, c]",
    "}": "write vectors as [a, b, c]",
}
_OPENERS = {"(": ")", "[": "]"}
_CLOSERS = {")": "(", "]": "["}

# Readable names of the token kinds lark reports; string terminals are quoted from their pattern.
_TERMINAL_TEXT = {
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "COMP_OP": "a comparison",
    "_NL": "end of line",
    "_INDENT": "an indented block",
    "_DEDENT": "end of block",
    "$END": "end of file",
}
_EXPR_START = {"a name", "a number", "'('", "'['", "'+'", "'-'", "'not'", "'true'", "'True'", "'false'",
               "'False'"}
_STMT_START = _EXPR_START | {f"'{w}'" for w in _STATEMENT_WORDS} | {"end of block"}
_OPERATORS = {"'+'", "'-'", "'*'", "'/'", "'//'", "'%'", "'@'", "'**'", "a comparison", "'and'", "'or'",
              "'if'", "'('", "'['", "'.'"}
_GENERIC_ORDER = ["a statement", "an expression", "a name", "a number", "an operator", "a comparison",
                  "an indented block", "end of line", "end of block", "end of file"]


class _LayoutToken(Token):
    """A newline/indent/dedent token that also remembers where the new line's text starts (`at`)
    and how to name it in messages (`what`).

    Layout tokens are placed at the end of the previous real token so that rule spans stop there;
    `at` is where an error about them should point instead."""

    at: tuple[int, int]
    what: str


MAX_SOURCE_CHARS = int(os.environ.get("PPLANG_MAX_SOURCE_CHARS", 1_000_000))  # larger files are refused
MAX_NESTING = 100  # brackets nested deeper than this are an error where they go too deep


class _IndentError(LarkError):
    """Raised by `_Indenter` (and for a name that is not one after normalization); carries its own
    position because lark's DedentError has none."""

    def __init__(self, message: str, line: int, col: int, hint: str):
        super().__init__(message)
        self.message, self.line, self.col, self.hint = message, line, col, hint


def _normalize_name(token: Token) -> Token:
    """Every identifier in the NFKC form Python gives it when it compiles the generated code, so
    that two spellings Python would merge (a ligature and its letters, full-width or mathematical
    letters, the micro sign and mu) are one name to the checker too: duplicates and reserved names
    are then found after normalization, and generated code can never be shadowed by a user name."""
    name = unicodedata.normalize("NFKC", token.value)
    if not name.isidentifier():
        raise _IndentError(f"`{token.value}` is not a valid name (it reads as `{name}` once Unicode-normalized)",
                           token.line, token.column, "use letters, digits and underscores")
    return token.update(value=name) if name != token.value else token


class _Indenter(Indenter):
    """Python-style layout with positioned layout tokens, bracket-aware and tab/space-consistent."""

    NL_type = "_NL"
    OPEN_PAREN_types: ClassVar[list[str]] = ["LPAR", "LSQB"]
    CLOSE_PAREN_types: ClassVar[list[str]] = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        """Like lark's Indenter, but with all state local, so one parser can serve several threads."""
        end = (1, 1, 0)  # line, column, offset just after the last real token
        style: str | None = None  # the indentation character the file uses
        parens = 0
        levels = [0]
        for token in stream:
            if token.type != self.NL_type:
                yield token
                end = (token.end_line, token.end_column, token.end_pos)
                if token.type in self.OPEN_PAREN_types:
                    parens += 1
                elif token.type in self.CLOSE_PAREN_types:
                    parens = max(0, parens - 1)
                continue
            if parens > 0:
                continue
            at = (token.end_line, token.end_column)
            indent_str = token.rsplit("\n", 1)[-1].rsplit("\f", 1)[-1]  # a form feed resets the column
            kinds = set(indent_str)
            if len(kinds) > 1 or (style is not None and kinds and kinds != {style}):
                raise _IndentError("inconsistent use of tabs and spaces in indentation", *at,
                                   "indent with spaces only (4 per level)")
            if kinds:
                style = indent_str[0]
            yield self._layout(self.NL_type, token, end, at, "end of line")
            indent = len(indent_str)  # a single kind of character, so its count is the depth
            if indent > levels[-1]:
                levels.append(indent)
                yield self._layout(self.INDENT_type, indent_str, (*at, token.end_pos), at, "indentation")
                continue
            while indent < levels[-1]:
                levels.pop()
                yield self._layout(self.DEDENT_type, indent_str, end, at, "end of block")
            if indent != levels[-1]:
                raise _IndentError("unindent does not match any outer indentation level", *at,
                                   "line up this line with the block it belongs to")
        for _ in levels[1:]:
            yield self._layout(self.DEDENT_type, "", end, end[:2], "end of file")

    @staticmethod
    def _layout(kind: str, value: str, end: tuple[int, int, int], at: tuple[int, int], what: str) -> _LayoutToken:
        line, col, pos = end
        token = _LayoutToken(kind, value, pos, line, col, line, col, pos)
        token.at, token.what = at, what
        return token


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """The LALR parser, built once per process. The basic lexer keeps keywords reserved everywhere
    (the contextual one would lex `model` as a name where the keyword cannot appear). Building its
    tables takes most of a short command's time, so lark keeps them in the user's pplang cache
    (checked against the grammar's hash; rebuilt when missing, stale, damaged or unwritable)."""
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="basic", postlex=_Indenter(), propagate_positions=True,
                maybe_placeholders=True, start=["start", "type_only"], lexer_callbacks={"NAME": _normalize_name},
                cache=_grammar_cache())


def _grammar_cache() -> str | bool:
    """Where lark keeps the parser tables: $PPLANG_CACHE_DIR or ~/.cache/pplang (the folder JAX's
    compilation cache is in), never a shared temporary folder, since lark reads it with pickle."""
    import sys

    import lark

    try:
        folder = Path(os.environ.get("PPLANG_CACHE_DIR") or Path.home() / ".cache" / "pplang")
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # no home, or not writable: build the tables every time
        return False
    return str(folder / f"grammar-lark{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}.cache")


# ---------------------------------------------------------------- public API


def parse_program(source: str, file: str = "<string>") -> Program:
    """Parse a model file; raises `PplError` (never anything else) for malformed input."""
    if len(source) > MAX_SOURCE_CHARS:
        raise error(f"the file has {len(source):,} characters, more than the {MAX_SOURCE_CHARS:,} a model file may "
                    "have", Span(file, 1, 1, 1, 2), source, hint="a model is a few pages: data belongs in a data file "
                    "(to allow more, set PPLANG_MAX_SOURCE_CHARS)")
    text = source if source.endswith("\n") else source + "\n"
    _check_first_indent(text, file, source)
    _check_nesting(text, _Builder(file, source))
    tree = _run_parser(text, "start", _Builder(file, source))
    return Program(decls=[d for d in tree if isinstance(d, Decl)], file=file, source=source,
                   networks=[d for d in tree if isinstance(d, NetworkDecl)])


def parse_type(text: str, file: str, line: int, col: int, source: str = "") -> TypeExpr:
    """Parse a type written inside another file (a Python string annotation) starting at
    `line`:`col` of `file`, so spans and errors point into that file; `source` is its whole text."""
    return _run_parser(text, "type_only", _Builder(file, source or text, line - 1, col - 1, text))


def validate_type(t: TypeExpr, source: str) -> TypeExpr:
    """Reject unknown type names where they are written (shared with the Python front-end)."""
    if t.base not in TYPE_BASES:
        raise error(f"unknown type '{t.base}'", t.span, source, expected="a type such as real, int, "
                    "vector[N], matrix[N, K], simplex[K]", hint=did_you_mean(t.base, TYPE_BASES))
    return t


def check_target(node: Expr, source: str) -> Target:
    """Only `x` and `x[i, j]` (expression indices of a plain name) can be assigned or sampled."""
    if isinstance(node, Name):
        return node
    if isinstance(node, Index):
        if not isinstance(node.value, Name):
            raise error("cannot assign to a nested index or attribute", node.span, source,
                        hint="index a plain name, with all indices in one pair of brackets: x[i, j]")
        for index in node.indices:
            if isinstance(index, Slice):
                raise error("cannot assign to a slice", index.span, source,
                            hint="assign element by element inside a for loop")
        return node
    raise error(f"cannot assign to {_TARGET_NAMES.get(type(node), 'this expression')}", node.span, source,
                hint="the left side must be a name or an indexed name such as x[i]")


def dotted_name(node: Expr) -> str | None:
    """`a.b.c` as a string when the expression is a chain of plain names, else None."""
    if isinstance(node, Name):
        return node.id
    if isinstance(node, Attribute):
        base = dotted_name(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


_TARGET_NAMES = {Call: "a function call", Num: "a number", Bool: "a boolean", BinOp: "an operator expression",
                 UnaryOp: "an operator expression", Compare: "a comparison", BoolOp: "a boolean expression",
                 IfExp: "a conditional expression", VectorLit: "a vector literal", Attribute: "an attribute"}


# ---------------------------------------------------------------- running lark, translating its errors


def _run_parser(text: str, start: str, builder: _Builder) -> object:
    """Parse and build, turning every lark failure into a `PplError`."""
    try:
        tree = _lark().parse(text, start=start)
        return builder.transform(tree)
    except _IndentError as e:
        raise builder.fail(e.message, builder.point(e.line, e.col), hint=e.hint) from None
    except UnexpectedToken as e:
        raise _unexpected_token(e, text, builder) from None
    except UnexpectedCharacters as e:
        raise _unexpected_char(e, text, builder) from None
    except UnexpectedInput:  # end of input in any other form
        raise builder.fail("unexpected end of file", _end_span(text, builder)) from None
    except VisitError as e:
        if isinstance(e.orig_exc, PplError):
            raise e.orig_exc from None
        if isinstance(e.orig_exc, RecursionError):
            raise _too_deep(text, builder) from None
        raise
    except RecursionError:
        raise _too_deep(text, builder) from None


def _too_deep(text: str, builder: _Builder) -> PplError:
    """An expression too deep for the parser (a chain of operators: brackets are checked first),
    located at its longest line, where such a chain is."""
    rows = text.splitlines() or [""]
    line = max(range(len(rows)), key=lambda i: len(rows[i])) + 1
    return builder.fail("expression is nested too deeply", builder.point(line, 1),
                        hint="split the expression into named parts, or use sum(...) over a vector")


def _check_nesting(text: str, builder: _Builder) -> None:
    """Brackets nested deeper than MAX_NESTING: an error at the bracket that goes too deep (the
    parser would otherwise exhaust Python's stack with no position to report)."""
    depth = 0
    for line_no, row in enumerate(text.splitlines(), 1):
        code = row.split("#", 1)[0]
        for col, ch in enumerate(code, 1):
            if ch in "([":
                depth += 1
                if depth > MAX_NESTING:
                    raise builder.fail(f"brackets are nested more than {MAX_NESTING} deep here",
                                       builder.point(line_no, col), hint="name the inner parts: `a = (...)`")
            elif ch in ")]":
                depth = max(depth - 1, 0)


def _check_first_indent(text: str, file: str, source: str) -> None:
    """Lark ignores indentation before the first line; Python-style layout rejects it."""
    for number, row in enumerate(_rows(text), 1):
        stripped = row.lstrip(" \t\f")
        if stripped and not stripped.startswith("#"):
            if row[: len(row) - len(stripped)].rsplit("\f", 1)[-1]:  # a form feed resets the column
                col = len(row) - len(stripped) + 1
                raise error("unexpected indentation", Span(file, number, col, number, col + 1), source,
                            hint="top-level declarations start at column 1")
            return


def _unexpected_token(e: UnexpectedToken, text: str, builder: _Builder) -> PplError:
    """Message, expected-list and hint for a token the grammar does not allow here."""
    token = e.token
    accepted = _acceptable(e.state) or set(e.expected)
    expected = _readable_expected(accepted)
    if token.type == "$END":
        span = _end_span(text, builder)
    elif isinstance(token, _LayoutToken) and token.type != "_NL":
        span = builder.point(*token.at)
    else:
        span = builder.token_span(token)
    line_text = _line(text, span.line - builder.line_offset)
    first = _first_word(line_text)
    found = _describe(token)
    hint = _bracket_hint(text, token, span.line - builder.line_offset)
    if first in _UNSUPPORTED_WORDS and token.line == span.line - builder.line_offset:
        hint = _UNSUPPORTED_WORDS[first]
    if "MODEL" in accepted and (token.type == "NAME" or token.value in _STATEMENT_WORDS):
        return builder.fail("statements must be inside a model, guide or objective", span,
                            expected=expected, found=found, hint=hint if token.value == "def" else
                            "start a declaration such as `model name(args):` and indent the statements under it")
    if token.type == "_INDENT":
        tabs = "\t" in line_text[: span.col - 1]
        return builder.fail("unexpected indentation", span, hint=(
            "this line is indented with tabs; indent with spaces only" if tabs else
            "indent every statement of a block by the same amount"))
    if "_INDENT" in accepted:
        header = _previous_code_line(text, span.line - builder.line_offset)
        word = _first_word(_line(text, header))
        return builder.fail("expected an indented block", span, expected=expected, found=found,
                            hint=f"indent the body of the `{word}` on line {header + builder.line_offset}")
    if hint is None and "COLON" in accepted and token.type == "_NL" and first in _HEADER_WORDS:
        hint = f"add ':' at the end of the `{first}` header"
    if hint is None and token.type == "EQUAL" and first in {"if", "elif"}:
        hint = "use '==' to compare values; '=' assigns"
    if hint is None and token.type in _keyword_terminals() and "NAME" in accepted:
        hint = f"'{token.value}' is a reserved word; choose another name"
    return builder.fail(f"unexpected {found}", span, expected=expected, hint=hint)


def _unexpected_char(e: UnexpectedCharacters, text: str, builder: _Builder) -> PplError:
    """An input character that starts no token at all."""
    span = builder.point(e.line, e.column)
    hint = _CHAR_HINTS.get(e.char) or _bracket_hint(text, None, e.line)
    return builder.fail(f"unexpected character {e.char!r}", span,
                        expected=_readable_expected(_acceptable(e.state) or set()), hint=hint)


def _acceptable(state: object) -> set[str] | None:
    """The terminals that really let the parser go on from `state` (lark's own expected-set is the
    state's LALR lookaheads, which after merged states lists tokens that would fail a step later)."""
    if not isinstance(state, ParserState):
        return None
    conf = ParseConf(state.parse_conf.parse_table, {}, state.parse_conf.start)
    accepted = set()
    for name in state.parse_conf.states[state.position]:
        if not name.isupper():
            continue
        trial = ParserState(conf, state.lexer, list(state.state_stack), list(state.value_stack))
        try:
            trial.feed_token(Token(name, ""), is_end=name == "$END")
        except UnexpectedToken:
            continue
        accepted.add(name)
    return accepted


@lru_cache(maxsize=1)
def _terminal_texts() -> dict[str, str]:
    """Terminal name -> readable text (`')'`, `a name`, ...)."""
    texts = dict(_TERMINAL_TEXT)
    for term in _lark().terminals:
        if term.name not in texts and term.pattern.type == "str":
            texts[term.name] = f"'{term.pattern.value}'"
    return texts


@lru_cache(maxsize=1)
def _keyword_terminals() -> frozenset[str]:
    """Names of the terminals that are reserved words."""
    return frozenset(t.name for t in _lark().terminals if t.pattern.type == "str" and t.pattern.value.isalpha())


def _readable_expected(names: set[str]) -> str | None:
    """A short human list of what the parser would have accepted."""
    texts = _terminal_texts()
    items = {texts.get(n, n) for n in names if not n.startswith("__IGNORE")}
    if "'model'" in items:
        items -= {"end of line", "end of file"}
    if {"'param'", "'factor'"} <= items:
        items = (items - _STMT_START) | {"a statement"}
    elif {"a name", "a number"} <= items:
        items = (items - _EXPR_START) | {"an expression"}
    if {"'*'", "'/'"} <= items:
        items = (items - _OPERATORS) | {"an operator"}
    if not items:
        return None
    order = sorted(items, key=lambda s: (s in _GENERIC_ORDER, _GENERIC_ORDER.index(s) if s in _GENERIC_ORDER
                                         else 0, s))
    return order[0] if len(order) == 1 else ", ".join(order[:-1]) + " or " + order[-1]


def _describe(token: Token) -> str:
    """How a token is named in `unexpected ...` messages."""
    if isinstance(token, _LayoutToken):
        return token.what
    if token.type == "$END":
        return "end of file"
    if token.type == "NAME":
        return f"name '{token.value}'"
    if token.type in {"INT", "FLOAT"}:
        return f"number {token.value}"
    if token.type in _keyword_terminals():
        return f"keyword '{token.value}'"
    return f"'{token.value}'"


def _bracket_hint(text: str, token: Token | None, line: int) -> str | None:
    """Explain an error caused by a bracket that is never closed or never opened."""
    stack: list[tuple[str, int, int]] = []
    for number, row in enumerate(_rows(text)[:line], 1):
        for col, char in enumerate(row.split("#", 1)[0], 1):
            at_token = token is not None and (number, col) == (token.line, token.column)
            if at_token and char in _CLOSERS and (not stack or stack[-1][0] != _CLOSERS[char]):
                return f"this '{char}' has no matching '{_CLOSERS[char]}'"
            if char in _OPENERS:
                stack.append((char, number, col))
            elif char in _CLOSERS and stack and stack[-1][0] == _CLOSERS[char]:
                stack.pop()
    if stack and (stack[-1][1] < line or (token is not None and token.type in {"$END", "_NL", "_DEDENT"})):
        char, number, col = stack[-1]
        return f"the '{char}' opened on line {number}, column {col} is never closed"
    return None


def _rows(text: str) -> list[str]:
    """The lines of `text` numbered as lark numbers them (only `\n` ends a line)."""
    rows = text.split("\n")
    if len(rows) > 1 and rows[-1] == "":
        rows.pop()
    return [row.removesuffix("\r") for row in rows]


def _line(text: str, number: int) -> str:
    rows = _rows(text)
    return rows[number - 1] if 1 <= number <= len(rows) else ""


def _first_word(row: str) -> str | None:
    match = re.match(r"\s*([^\W\d]\w*)", row)
    return match.group(1) if match else None


def _previous_code_line(text: str, line: int) -> int:
    """The nearest line before `line` holding code (the header a missing block belongs to)."""
    rows = _rows(text)
    for number in range(min(line, len(rows) + 1) - 1, 0, -1):
        stripped = rows[number - 1].strip()
        if stripped and not stripped.startswith("#"):
            return number
    return 1


def _end_span(text: str, builder: _Builder) -> Span:
    """Just after the last character of code: where an `unexpected end of file` points."""
    rows = _rows(text.rstrip())
    return builder.point(len(rows), len(rows[-1]) + 1)


# ---------------------------------------------------------------- parse tree -> surface AST


@v_args(meta=True)
class _Builder(Transformer):
    """Builds syntax nodes with spans; positions are shifted by the offsets for embedded types."""

    def __init__(self, file: str, source: str, line_offset: int = 0, col_offset: int = 0, text: str = ""):
        super().__init__()
        self.file, self.source = file, source
        self.line_offset, self.col_offset = line_offset, col_offset
        self.rows = _rows(text or source)

    # -- spans and errors

    def point(self, line: int, col: int) -> Span:
        """A one-character span, clamped into the text so that it always names a real line."""
        line = max(1, min(line, len(self.rows)))
        col = max(1, min(col, len(self.rows[line - 1]) + 1))
        return self._shift(line, col, line, col + 1)

    def _shift(self, line: int, col: int, end_line: int, end_col: int) -> Span:
        def c(ln: int, cl: int) -> int:
            return cl + self.col_offset if ln == 1 else cl
        return Span(self.file, line + self.line_offset, c(line, col), end_line + self.line_offset,
                    c(end_line, end_col))

    def span(self, meta: Meta) -> Span:
        return self._shift(meta.line, meta.column, meta.end_line, meta.end_column)

    def token_span(self, token: Token) -> Span:
        if token.line is None:
            return self.point(len(self.rows), len(self.rows[-1]) + 1)
        if token.end_line is None or (token.end_line, token.end_column) <= (token.line, token.column):
            return self.point(token.line, token.column)
        return self._shift(token.line, token.column, token.end_line, token.end_column)

    def fail(self, message: str, span: Span, **details: str | None) -> PplError:
        return error(message, span, self.source, **details)

    # -- declarations and statements

    def start(self, meta: Meta, children: list) -> list[Decl | NetworkDecl]:
        return [c for c in children if isinstance(c, Decl | NetworkDecl)]

    def network_decl(self, meta: Meta, children: list) -> NetworkDecl:
        name, value = children
        return NetworkDecl(str(name), value, self.span(meta))

    def type_only(self, meta: Meta, children: list) -> TypeExpr:
        return children[0]

    def decl(self, meta: Meta, children: list) -> Decl:
        kind, name, args, body = children
        return Decl(kind, str(name), args or [], body, self.span(meta))

    def decl_kind(self, meta: Meta, children: list) -> str:
        return str(children[0])

    def args(self, meta: Meta, children: list) -> list[Arg]:
        return [c for c in children if c is not None]

    def arg(self, meta: Meta, children: list) -> Arg:
        return Arg(str(children[0]), children[1], self.span(meta))

    def type(self, meta: Meta, children: list) -> TypeExpr:
        name, dims = children
        return validate_type(TypeExpr(str(name), dims or [], self.span(meta)), self.source)

    def exprs(self, meta: Meta, children: list) -> list[Expr]:
        return [c for c in children if c is not None]

    def suite(self, meta: Meta, children: list) -> list[Stmt]:
        return [c for c in children if c is not None]

    def assign(self, meta: Meta, children: list) -> Assign:
        target, value = children
        return Assign(check_target(target, self.source), value, self.span(meta))

    def sample(self, meta: Meta, children: list) -> Sample:
        target, declared, dist, via = children
        if not isinstance(dist, Call):
            raise self.fail("the right side of `~` must be a distribution call", dist.span,
                            hint="write e.g. `x ~ normal(0.0, 1.0)`")
        return Sample(check_target(target, self.source), dist, None if via is None else str(via), self.span(meta),
                      declared)

    def param(self, meta: Meta, children: list) -> Param:
        name, constraint, init = children
        return Param(str(name), constraint, init, self.span(meta))

    def factor(self, meta: Meta, children: list) -> Factor:
        return Factor(children[0], self.span(meta))

    def return_stmt(self, meta: Meta, children: list) -> Return:
        return Return(children[0], self.span(meta))

    def pass_stmt(self, meta: Meta, children: list) -> None:
        return None

    def for_stmt(self, meta: Meta, children: list) -> For:
        var, iterable, body = children
        start, stop = self._range(iterable)
        return For(str(var), start, stop, body, self.span(meta))

    def if_stmt(self, meta: Meta, children: list) -> If:
        cond, then, *elifs, orelse = children
        orelse = orelse or []
        end = self.span(meta)  # layout tokens sit at the end of the last real token, so this is exact
        for clause_span, clause_cond, clause_body in reversed(elifs):
            orelse = [If(clause_cond, clause_body, orelse, Span(
                self.file, clause_span.line, clause_span.col, end.end_line, end.end_col))]
        return If(cond, then, orelse, end)

    def elif_clause(self, meta: Meta, children: list) -> tuple[Span, Expr, list[Stmt]]:
        return self.span(meta), children[0], children[1]

    def _range(self, node: Expr) -> tuple[Expr, Expr]:
        """`range(stop)` or `range(start, stop)`, the only loops pplang has."""
        if not isinstance(node, Call) or node.func != "range" or node.kwargs or not 1 <= len(node.args) <= 2:
            raise self.fail("for loops must iterate over range(stop) or range(start, stop)", node.span,
                            hint="write `for i in range(n):`")
        if len(node.args) == 1:
            return Num(0, node.span), node.args[0]
        return node.args[0], node.args[1]

    # -- expressions

    def ifexp(self, meta: Meta, children: list) -> IfExp:
        then, cond, orelse = children
        return IfExp(cond, then, orelse, self.span(meta))

    def or_op(self, meta: Meta, children: list) -> BoolOp:
        return BoolOp("or", children[0], children[1], self.span(meta))

    def and_op(self, meta: Meta, children: list) -> BoolOp:
        return BoolOp("and", children[0], children[1], self.span(meta))

    def not_op(self, meta: Meta, children: list) -> UnaryOp:
        return UnaryOp("not", children[0], self.span(meta))

    def compare(self, meta: Meta, children: list) -> Compare:
        if len(children) > 3:
            raise self.fail("chained comparisons are not supported", self.span(meta),
                            hint="split the chain with `and`, e.g. `a < b and b < c`")
        left, op, right = children
        return Compare(str(op), left, right, self.span(meta))

    def binop(self, meta: Meta, children: list) -> BinOp:
        left, op, right = children
        return BinOp(str(op), left, right, self.span(meta))

    def pow(self, meta: Meta, children: list) -> BinOp:
        return BinOp("**", children[0], children[1], self.span(meta))

    def unary(self, meta: Meta, children: list) -> UnaryOp:
        return UnaryOp(str(children[0]), children[1], self.span(meta))

    def call(self, meta: Meta, children: list) -> Call:
        func, items = children
        name = dotted_name(func)
        if name is None:
            raise self.fail("only named functions can be called", func.span,
                            hint="call a function, distribution or model by its name, e.g. normal(0.0, 1.0)")
        args: list[Expr] = []
        kwargs: list[Keyword] = []
        for item in items or []:
            if isinstance(item, Keyword):
                if any(k.name == item.name for k in kwargs):
                    raise self.fail(f"keyword argument '{item.name}' repeated", item.span)
                kwargs.append(item)
            elif kwargs:
                raise self.fail("positional argument follows keyword argument", item.span,
                                hint="put positional arguments before keyword arguments")
            else:
                args.append(item)
        return Call(name, args, kwargs, self.span(meta), func.span)

    def callargs(self, meta: Meta, children: list) -> list[Expr | Keyword]:
        return [c for c in children if c is not None]

    def kwarg(self, meta: Meta, children: list) -> Keyword:
        return Keyword(str(children[0]), children[1], self.span(meta))

    def index(self, meta: Meta, children: list) -> Index:
        return Index(children[0], children[1], self.span(meta))

    def subscripts(self, meta: Meta, children: list) -> list[Expr | Slice]:
        return [c for c in children if c is not None]

    def slice(self, meta: Meta, children: list) -> Slice:
        return Slice(children[0], children[1], self.span(meta))

    def attr(self, meta: Meta, children: list) -> Attribute:
        return Attribute(children[0], str(children[1]), self.span(meta))

    def name(self, meta: Meta, children: list) -> Name:
        return Name(str(children[0]), self.span(meta))

    def int(self, meta: Meta, children: list) -> Num:
        try:
            value = int(children[0])
        except ValueError:  # beyond Python's limit on digits in an int literal
            raise self.fail("integer literal is too long", self.span(meta)) from None
        if value > 2**31 - 1:  # ints are 32-bit in JAX: a larger literal would fail (or wrap) when it runs
            raise self.fail(f"the integer {children[0]} does not fit in 32 bits", self.span(meta),
                            hint=f"write it as a real ({float(value):.6g}), or rescale the quantity")
        return Num(value, self.span(meta))

    def float(self, meta: Meta, children: list) -> Num:
        value = float(children[0])
        if not math.isfinite(value):  # 1e999: a literal must be a number, never the name `inf`
            raise self.fail(f"the number {children[0]} is too large for a real (at most about 1.8e308)",
                            self.span(meta), hint="write a smaller number, or rescale the quantity")
        return Num(value, self.span(meta))

    def true(self, meta: Meta, children: list) -> Bool:
        return Bool(True, self.span(meta))

    def false(self, meta: Meta, children: list) -> Bool:
        return Bool(False, self.span(meta))

    def vector(self, meta: Meta, children: list) -> VectorLit:
        return VectorLit(children[0] or [], self.span(meta))

    def paren(self, meta: Meta, children: list) -> Expr:
        return children[0]


