"""What every `pplang` verb shares: the argument parser class, common arguments, picking a model
or guide of a file, reading data and writing outputs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pplang.compiler.diagnostics import did_you_mean, error

EPILOG = "Data files use Stan's JSON data format: one object mapping argument and choice names to values."
# pplang.inference.variational's OPTIMIZERS and LR_SCHEDULES, named here so that building the parser
# does not import JAX (a test checks they agree).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
LR_SCHEDULES = ("constant", "cosine", "exponential", "linear", "warmup_cosine")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it says it already or has none to say
    (a flag, an optional value left out, a repeatable option)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if "default" in text or nothing or action.default == [] or not action.option_strings:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Command-line mistakes are user errors: exit code 1, not argparse's 2 (ours means internal).
    Help shows each option's default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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


def add_file_arg(c: argparse.ArgumentParser) -> None:
    c.add_argument("file", help="model file (.ppl)")


def add_run_args(c: argparse.ArgumentParser) -> None:
    add_file_arg(c)
    c.add_argument("--model", help="model to run (default: the first model in the file)")
    c.add_argument("--data", help="JSON data file (arguments and observations)")
    add_seed_arg(c)


def add_seed_arg(c: argparse.ArgumentParser) -> None:
    c.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same draws")


def quantile_list(text: str) -> tuple[float, ...]:
    """An argparse type for `--quantiles`: numbers in [0, 1] separated by commas."""
    try:
        qs = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers separated by commas") from None
    if not qs or any(not 0.0 <= q <= 1.0 for q in qs):
        raise argparse.ArgumentTypeError(f"quantiles are numbers in [0, 1], e.g. 0.025,0.5,0.975; got {text!r}")
    return qs


def add_summary_args(c: argparse.ArgumentParser) -> None:
    """--quantiles, --hdi and --max-rows: what the summary table shows."""
    c.add_argument("--quantiles", type=quantile_list, default=(0.05, 0.5, 0.95), metavar="Q,Q,...",
                   help="quantiles the table shows, separated by commas (default: 0.05,0.5,0.95)")
    c.add_argument("--hdi", type=fraction(True), metavar="PROB",
                   help="also show the highest-density interval of this probability (e.g. 0.9; ArviZ's hdi)")
    c.add_argument("--max-rows", type=at_least(0), default=40, metavar="N",
                   help="show at most N rows of the table (0: all)")


def summary_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of a result's summary() that --quantiles, --hdi and --max-rows give."""
    return {"quantiles": args.quantiles, "hdi_prob": args.hdi, "max_rows": args.max_rows or None}


def add_devices_arg(c: argparse.ArgumentParser, what: str) -> None:
    c.add_argument("--devices", type=positive_int, metavar="N",
                   help=f"{what} (default: one device; at most the number JAX sees, e.g. GPUs)")


def add_strict_arg(c: argparse.ArgumentParser) -> None:
    c.add_argument("--strict", action="store_true",
                   help=f"exit with code {EXIT_UNRELIABLE} when the diagnostics say the result is unreliable "
                   "(Pareto k > 0.7, R-hat > 1.01, too few effective draws, divergences), after writing its outputs")


def strict_exit(args: argparse.Namespace, problems: list[str]) -> int:
    """With --strict, the exit code of a result with these reliability `problems` (after saying
    them on stderr); 0 without --strict or without problems."""
    if not getattr(args, "strict", False) or not problems:
        return 0
    print(f"error: --strict: the result is unreliable ({'; '.join(problems)}); exit code {EXIT_UNRELIABLE}",
          file=sys.stderr)
    return EXIT_UNRELIABLE


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
                   help="declare NAME as a host function the file calls (bound from Python when it runs); "
                   "repeat for several")


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


def checked_file(args: argparse.Namespace) -> Any:
    """`args.file` parsed and checked, without generating code: what check, info, graph and
    compile --emit ast|ir need, so that they do not import JAX."""
    from pplang.compiler.pipeline import check_program, parse_file

    return check_program(parse_file(args.file), declared_hosts(args))


def pick_function(checked: Any, name: str | None) -> Any:
    """The IR of the model or guide `name` of a checked (or compiled) program; by default the first
    model that is not another's ODE right-hand side."""
    if name is None:
        from pplang.compiler.analysis import called_declarations
        from pplang.compiler.names import py_name

        called = {v for fn in checked.functions.values() for v in called_declarations(fn)}
        models = [d.name for d in checked.program.decls if d.kind == "model" and py_name(d.name) not in called]
        if not models:
            raise error(f"{checked.program.file} declares no model")
        name = models[0]
    names = list(checked.functions)
    if name not in checked.functions:
        raise error(f"no model, guide or objective named `{name}` in {checked.program.file}",
                    hint=did_you_mean(name, names) or f"declared: {', '.join(names) or 'nothing'}")
    fn = checked.functions[name]
    if fn.kind == "objective":
        raise error(f"`{name}` is an objective; objectives are used by `pplang fit --objective {name}`",
                    fn.span, checked.program.source, hint="name a model or guide here")
    return fn


def pick_model(module: Any, name: str | None) -> Any:
    return module[pick_function(module.compiled, name).name]


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
    """Write `obj` as JSON (NaN and infinities as null, so that any JSON reader takes the file)."""
    from pplang.results import json_text

    write_text(path, json_text(obj), overwrite)


def write_text(path: str, text: str, overwrite: bool = False) -> None:
    """Write `path` whole (a temporary file renamed into place), replacing an existing file only
    with `overwrite` (--force)."""
    from pplang.files import write_file

    write_file(path, text, overwrite)
    print(f"wrote {path}")


# Exit codes (documented in pplang/cli/__init__.py and docs/getting-started.md): a run that stopped
# early, keeping its last good state; a result --strict refuses.
EXIT_NOT_FINITE = 3
EXIT_UNRELIABLE = 4
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
