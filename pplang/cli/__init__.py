"""The `pplang` command line: one module per verb family, each adding its subcommands with
`register(sub)`; `common` holds what they share.

Exit codes: 0 success, 1 a user error (printed as a located diagnostic; an output that would
replace existing files without --force is one), 2 an internal error (printed with a request to
report it), 3 a fit or training stopped at a non-finite value (status "nan"), 4 a result that
--strict refuses as unreliable (its outputs are written first), 130 stopped by Ctrl-C (status
"interrupted"). A run that stops early keeps its last good state (results, checkpoint) and says on
stderr where. No user error is shown as a Python traceback.

Building the parser imports none of JAX, equinox or networkx; the verbs import what they run.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from typing import Any

from pplang.cli import amortize, fit, graph, importance, program, sample, smc
from pplang.cli.common import EPILOG, Parser, add_precision_arg
from pplang.compiler.diagnostics import PplError, show_notes

# In the order `pplang --help` lists them.
VERBS = (program, importance, sample, fit, smc, amortize, graph)


class Version(argparse.Action):
    """`--version`: the installed package's version (read only when asked for)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print pplang's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        import pplang

        print(f"pplang {pplang.__version__}")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pplang", description="Compile and run pplang model files.", epilog=EPILOG)
    p.add_argument("--version", action=Version)
    add_precision_arg(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for verb in VERBS:
        verb.register(sub)
    for command in {id(c): c for c in sub.choices.values()}.values():  # every verb, aliases once
        add_precision_arg(command)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage mistake (1)
        return int(e.code or 0)
    if args.x64:
        from pplang.precision import enable_x64

        enable_x64()  # before the verb makes any array
    shown, warnings.showwarning = warnings.showwarning, show_notes(warnings.showwarning)
    try:
        return int(args.func(args) or 0)  # a verb returns its exit code when it is not 0 (common.stopped_early)
    except PplError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception:  # noqa: BLE001 - anything else is our bug, not the user's
        print("internal error in pplang; please report it with the input that caused it:\n", file=sys.stderr)
        traceback.print_exc()
        return 2
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
