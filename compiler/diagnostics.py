"""User-facing diagnostics: located, with the source line, a caret and a hint.

Every user error in pplang is a `PplError`. Its text is what the CLI prints; the CLI maps it to
exit code 1. Anything else escaping is an internal error (exit code 2).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pplang.compiler.frontend.syntax import NO_SPAN, Span


@dataclass
class Diagnostic:
    message: str
    span: Span = NO_SPAN
    source: str = ""
    expected: str | None = None
    found: str | None = None
    hint: str | None = None

    def render(self) -> str:
        """`file:line:col: error: ...`, the source line, a caret under the span, then details."""
        head = f"{self.span}: error: {self.message}" if self.span.line else f"error: {self.message}"
        lines = [head]
        text = source_line(self.source, self.span.line)
        if text is not None:
            width = 1
            if self.span.end_line == self.span.line and self.span.end_col > self.span.col:
                width = self.span.end_col - self.span.col
            col = self.span.col
            if len(text) > MAX_LINE:  # a long line (a data file on one line): the part around the span
                start = max(col - 1 - MAX_LINE // 2, 0)
                end = min(start + MAX_LINE, len(text))
                head, tail = ("... " if start else ""), (" ..." if end < len(text) else "")
                text = head + text[start:end] + tail
                col += len(head) - start
                width = max(min(width, end - (col - len(head) - 1 + start)), 1)
            lines.append(f"    {text}")
            pad = "".join(ch if ch == "\t" else " " for ch in text[: col - 1])  # tabs line up
            lines.append("    " + pad + "^" * width)
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.found is not None:
            lines.append(f"  found:    {self.found}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


MAX_LINE = 160  # longer source lines are shown clipped around the span


def source_line(source: str, line: int) -> str | None:
    if not source or line <= 0:
        return None
    rows = source.splitlines()
    return rows[line - 1] if line <= len(rows) else None


class PplError(Exception):
    """A user error: one or more diagnostics. Never shown with a traceback."""

    def __init__(self, diagnostics: Diagnostic | list[Diagnostic]):
        self.diagnostics = diagnostics if isinstance(diagnostics, list) else [diagnostics]
        super().__init__(self.render())

    def render(self) -> str:
        return "\n\n".join(d.render() for d in self.diagnostics)

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show for this exception in place of a traceback: the
        diagnostics alone (they point at the user's own line; the frames inside pplang do not)."""
        return self.render().splitlines()

    @property
    def span(self) -> Span:
        return self.diagnostics[0].span


class DataNote(UserWarning):
    """Something in the data that is ignored (an entry the declaration does not use): not an
    error, since data files often carry extras, but said, since a typo shows up this way."""


def show_notes(previous: Callable[..., None]) -> Callable[..., None]:
    """A `warnings.showwarning` for the command line: a `DataNote` prints as `note: ...`, pplang's
    own warnings (a set size outside the trained range, a resumed schedule) as `warning: ...`
    without the line of pplang that raised them, anything else as `previous` would show it."""

    def show(message: Warning | str, category: type[Warning], *rest: Any) -> None:
        if issubclass(category, DataNote):
            print(f"note: {message}", file=sys.stderr)
        elif category.__module__.split(".")[0] == "pplang":
            print(f"warning: {message}", file=sys.stderr)
        else:
            previous(message, category, *rest)

    return show


def error(message: str, span: Span = NO_SPAN, source: str = "", *, expected: str | None = None,
          found: str | None = None, hint: str | None = None) -> PplError:
    """Build (not raise) a one-diagnostic error; callers write `raise error(...)`."""
    return PplError(Diagnostic(message, span, source, expected, found, hint))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A `did you mean x?` hint for a near-miss name, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
