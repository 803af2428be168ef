"""What every `pplang` verb shares: the argument parser class, common arguments, picking a model
or guide of a file, reading data and writing outputs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from pplang.compiler.diagnostics import did_you_mean, error

EPILOG = "Data files use Stan's JSON data format: one object mapping argument and choice names to values."
# pplang.inference.variational's OPTIMIZERS and LR_SCHEDULES, named here so that building the parser
# does not import JAX (a test checks they agree).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
LR_SCHEDULES = ("constant", "cosine", "exponential", "linear", "warmup_cosine")


class Parser(argparse.ArgumentParser):
    """Command-line mistakes are user errors: exit code 1, not argparse's 2 (ours means internal)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(1)


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type for a whole number >= `low`."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {n}")
        return n

    return parse


positive_int = at_least(1)


def fraction(low_open: bool) -> Callable[[str], float]:
    """An argparse type for a number in [0, 1] (or (0, 1) when `low_open`)."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (0.0 < x < 1.0 if low_open else 0.0 <= x <= 1.0):
            raise argparse.ArgumentTypeError(f"must be in {'(0, 1)' if low_open else '[0, 1]'}, got {x:g}")
        return x

    return parse


def add_precision_arg(c: argparse.ArgumentParser, top: bool = False) -> None:
    """`--x64`, which every command takes (before or after the verb): float64 instead of JAX's float32.
    On a subcommand its default is left unset, so it cannot undo a `--x64` given before the verb."""
    c.add_argument("--x64", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="compute in float64 (also: PPLANG_X64=1); see docs/precision.md")


def add_run_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("file")
    c.add_argument("--model", help="model to run (default: the first model in the file)")
    c.add_argument("--data", help="JSON data file (arguments and observations)")
    c.add_argument("--seed", type=int, default=0)


def add_optimizer_args(c: argparse.ArgumentParser, lr: float) -> None:
    """--optimizer, --lr and its schedule, shared by the verbs that train (fit, amortize)."""
    c.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="optax optimizer (default adam)")
    c.add_argument("--lr", type=float, default=lr, help=f"learning rate, the peak of a schedule (default {lr:g})")
    c.add_argument("--lr-schedule", default="constant", choices=LR_SCHEDULES,
                   help="learning rate over the training: constant (default), or decaying from --lr to --lr-end "
                   "(warmup_cosine first rises to --lr over a tenth of it)")
    c.add_argument("--lr-end", type=float, help="final learning rate of a decaying schedule (default --lr / 1000)")


def optimizer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of pp.fit and pp.amortize that --optimizer, --lr and its schedule give."""
    return {"optimizer": args.optimizer, "learning_rate": args.lr, "lr_schedule": args.lr_schedule,
            "lr_end": args.lr_end}


def add_host_arg(c: argparse.ArgumentParser) -> None:
    c.add_argument("--host", action="append", default=[], metavar="NAME",
                   help="declare NAME as a host function the file calls (bound from Python when it runs)")


class UnboundHost:
    """Stands for a host function named on the command line: enough to check and compile a file;
    running needs the real function, bound from Python with pp.load(file, hosts={...})."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise error(f"host function `{self.name}` is only declared, not bound",
                    hint="run the model from Python: pp.load(file, hosts={...})")


def declared_hosts(args: argparse.Namespace) -> dict[str, Any]:
    return {n: UnboundHost(n) for n in getattr(args, "host", [])}


def pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name or not value:
            raise error(f"expected NAME=VALUE for {what}, got `{item}`", hint=f"for example {what} k=8")
        out[name.strip()] = value.strip()
    return out


def number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise error(f"`{text}` is not a number", hint="objective arguments are numbers, e.g. --arg k=8") from None


def objective_of(module: Any, name: str, args: list[str]) -> Any:
    """An objective declared in the file, else a standard one, with its --arg values."""
    declared = {d.name for d in module.compiled.program.decls if d.kind == "objective"}
    target = module.objective(name) if name in declared else name
    values = {k: number(v) for k, v in pairs(args, "--arg").items()}
    return (target, values) if values else target


def pick_model(module: Any, name: str | None) -> Any:
    if name is None:  # the first model that is not another's ODE right-hand side
        from pplang.compiler.analysis import called_declarations
        from pplang.compiler.names import py_name

        called = {v for fn in module.compiled.functions.values() for v in called_declarations(fn)}
        models = [d.name for d in module.compiled.program.decls if d.kind == "model" and py_name(d.name) not in called]
        if not models:
            raise error(f"{module.compiled.program.file} declares no model")
        name = models[0]
    got = module[name]
    if got.fn.kind == "objective":
        raise error(f"`{name}` is an objective; objectives are used by `pplang fit --objective {name}`",
                    got.fn.span, got.source, hint="name a model or guide here")
    return got


def pick_guide(module: Any, spec: str) -> Any:
    """`--guide`: a guide of the file, `OTHER.ppl:NAME` (a guide of another file, e.g. a variational
    autoencoder's encoder beside the file of its decoder), or an automatic guide's name."""
    if spec in module.names:
        return module[spec]
    path, sep, name = spec.rpartition(":")
    if sep and path.endswith(".ppl"):
        import pplang as pp

        other = pp.load(path)
        if name not in other.names:
            raise error(f"{path} declares no guide `{name}`", hint=did_you_mean(name, other.names)
                        or f"declared: {', '.join(other.names)}")
        return other[name]
    return spec


def read_data(path: str | None) -> dict[str, Any]:
    from pplang.data import load_data

    return load_data(path) if path else {}


def add_force_arg(c: argparse.ArgumentParser) -> None:
    """`--force`, which every verb that writes files takes: without it, an existing output file or a
    non-empty output folder is refused (before anything runs) rather than replaced."""
    c.add_argument("--force", action="store_true",
                   help="replace existing output files and folders (without it they are refused, before anything runs)")


def check_file(path: str | None, args: argparse.Namespace) -> None:
    """Before a command runs: that writing its output file `path` (if given) replaces nothing
    without --force, so a long run is not lost to a name that was taken."""
    if path is not None:
        from pplang.files import check_parent, check_target

        check_parent(check_target(path, "file", args.force), "output")


def check_folder(path: str | None, args: argparse.Namespace, names: tuple[str, ...] = ()) -> None:
    """The same for an output folder: replaced whole (without `names`), or written into (the files
    `names`, the others left alone)."""
    if path is None:
        return
    from pplang.files import check_target

    folder = check_target(path, "folder", args.force if not names else True)
    for name in names:
        check_target(folder / name, "file", args.force, "plot")


def write_json(path: str, obj: Any, overwrite: bool = False) -> None:
    write_text(path, json.dumps(obj), overwrite)


def write_text(path: str, text: str, overwrite: bool = False) -> None:
    """Write `path` whole (a temporary file renamed into place), replacing an existing file only
    with `overwrite` (--force)."""
    from pplang.files import write_file

    write_file(path, text, overwrite)
    print(f"wrote {path}")


# Exit codes of a run that stopped early, keeping its last good state (documented in
# pplang/cli/__init__.py and docs/getting-started.md).
EXIT_NOT_FINITE = 3
EXIT_INTERRUPTED = 130


def stopped_early(status: str | None, what: str, message: str, kept: list[str],
                  keep_with: str = "--checkpoint DIR") -> int:
    """The exit code of a run that ended with `status`, after saying on stderr why it stopped
    early and where its last good state is (`kept`: the folders written; else how to keep it)."""
    if status in ("done", "converged", None):
        return 0
    where = f"; the last good state is saved in {' and '.join(kept)}" if kept else \
        f" (nothing was saved: pass {keep_with} to keep it)"
    reason = {"nan": "a non-finite value", "interrupted": "Ctrl-C"}.get(status, status)
    print(f"warning: {what} stopped early ({status}: {reason}){where}"
          + (f"\n{message}" if message else ""), file=sys.stderr)
    return EXIT_INTERRUPTED if status == "interrupted" else EXIT_NOT_FINITE


def add_computed_arg(c: argparse.ArgumentParser) -> None:
    c.add_argument("--computed", default="all", metavar="all|none|NAME,...",
                   help="which values the model computes to keep beside the draws (default: all)")


def add_marginalize_arg(c: Any) -> None:
    """`--marginalize`: which discrete latent choices to sum out of the density (read by computed_choice)."""
    c.add_argument("--marginalize", default="all", metavar="all|none|NAME,...",
                   help="discrete latent choices with finite support to sum out of the density and recover per draw "
                   "as z, p(z) and map(z) (default: all)")


def computed_choice(text: str) -> bool | list[str]:
    """`--computed`: all, none, or names separated by commas."""
    return {"all": True, "none": False}.get(text) if text in ("all", "none") else \
        [n.strip() for n in text.split(",") if n.strip()]
