"""The `pplang` command line.

Exit codes: 0 success, 1 a user error (printed as a located diagnostic), 2 an internal error
(printed with a request to report it). No user error is shown as a Python traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from pplang.diagnostics import PplError, error

EPILOG = "Data files use Stan's JSON data format: one object mapping argument and choice names to values."


class Parser(argparse.ArgumentParser):
    """Command-line mistakes are user errors: exit code 1, not argparse's 2 (ours means internal)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(1)


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pplang", description="Compile and run pplang model files.", epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    c = sub.add_parser("check", help="parse and check a model file (names, types, shapes)")
    c.add_argument("file")
    add_host_arg(c)

    c = sub.add_parser("compile", help="show a compilation stage or write the generated module")
    c.add_argument("file")
    c.add_argument("--emit", choices=["ast", "ir", "jax"], default="jax", help="stage to print (default: jax)")
    c.add_argument("--model", help="only this model or guide")
    c.add_argument("-o", "--output", help="write the generated JAX module to this file")
    add_host_arg(c)

    c = sub.add_parser("simulate", help="draw from the prior (prior predictive simulation)")
    add_run_args(c)
    c.add_argument("-n", "--num-samples", type=positive_int, default=1000)
    c.add_argument("--output", help="write the draws to this JSON file")

    c = sub.add_parser("infer", help="posterior by importance sampling, with log marginal likelihood")
    add_run_args(c)
    c.add_argument("-n", "--num-samples", type=positive_int, default=10_000)
    c.add_argument("--proposal", help="a guide in the same file to propose from (default: the prior)")
    c.add_argument("--predictive", action="store_true", help="also summarize posterior predictive draws")
    c.add_argument("--output", help="write the weighted draws to this JSON file")

    c = sub.add_parser("graph", help="print the dependency graph of a model (Graphviz DOT)")
    c.add_argument("file")
    c.add_argument("--model", help="model or guide (default: the first)")
    c.add_argument("--data", help="shade the choices this data observes")
    add_host_arg(c)

    c = sub.add_parser("info", help="list declarations, their arguments and random choices")
    c.add_argument("file")
    add_host_arg(c)
    return p


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


def add_run_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("file")
    c.add_argument("--model", help="model to run (default: the first model in the file)")
    c.add_argument("--data", help="JSON data file (arguments and observations)")
    c.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage mistake (1)
        return int(e.code or 0)
    try:
        COMMANDS[args.command](args)
        return 0
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


# ---------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace) -> None:
    import pplang as pp

    module = pp.load(args.file, hosts=declared_hosts(args))
    decls = module.compiled.program.decls
    print(f"{args.file}: ok ({len(decls)} declaration{'s' if len(decls) != 1 else ''}: "
          + ", ".join(f"{d.kind} {d.name}" for d in decls) + ")")


def cmd_compile(args: argparse.Namespace) -> None:
    from pplang.compiler import printer
    from pplang.program import compile_program, parse_file

    program = parse_file(args.file)
    if args.emit == "ast":
        print(show_ast(program))
        return
    compiled = compile_program(program, declared_hosts(args))
    if args.emit == "ir":
        names = [args.model] if args.model else list(compiled.functions)
        for n in names:
            if n not in compiled.functions:
                raise error(f"no model or guide named `{n}`", hint=f"declared: {', '.join(compiled.functions)}")
            print(printer.function(compiled.functions[n]) + "\n")
        return
    code = compiled.source_code
    if args.model:  # just this declaration's function, still a module that runs on its own
        from pplang.compiler import codegen

        if args.model not in compiled.functions:
            raise error(f"no model or guide named `{args.model}`", hint=f"declared: {', '.join(compiled.functions)}")
        code = codegen.generate_module([compiled.functions[args.model]], program.file, program.source)
    if args.output:
        write_text(args.output, code)
    else:
        print(code)


def pick_model(module: Any, name: str | None) -> Any:
    if name is None:
        models = [d.name for d in module.compiled.program.decls if d.kind == "model"]
        if not models:
            raise error(f"{module.compiled.program.file} declares no model")
        name = models[0]
    got = module[name]
    if got.fn.kind == "objective":
        raise error(f"`{name}` is an objective; objectives are used by `pplang fit --objective {name}`",
                    got.fn.span, got.source, hint="name a model or guide here")
    return got


def read_data(path: str | None) -> dict[str, Any]:
    from pplang.data import load_json

    return load_json(path) if path else {}


def cmd_simulate(args: argparse.Namespace) -> None:
    import pplang as pp
    from pplang.summary import summarize

    module = pp.load(args.file)
    model = pick_model(module, args.model)
    draws = pp.prior_predictive(model, read_data(args.data), num_samples=args.num_samples, seed=args.seed)
    print(f"prior simulation of {model.name}: {args.num_samples} draws")
    print(summarize(draws))
    if args.output:
        write_json(args.output, {a: v.tolist() for a, v in draws.items()})


def cmd_infer(args: argparse.Namespace) -> None:
    import pplang as pp
    from pplang.summary import summarize

    module = pp.load(args.file)
    model = pick_model(module, args.model)
    data = read_data(args.data)
    proposal = module[args.proposal] if args.proposal else None
    post = pp.importance_sampling(model, data, num_samples=args.num_samples, seed=args.seed, proposal=proposal)
    print(f"posterior of {model.name} ({'proposal ' + args.proposal if proposal else 'prior proposal'})")
    print(post.summary())
    if post.ess < 100:
        print(f"warning: effective sample size {post.ess:.1f} is small; the estimates are unreliable. "
              "Draw more samples or use a better proposal.", file=sys.stderr)
    if post.pareto_k > 0.7:
        print(f"warning: Pareto k {post.pareto_k:.2f} > 0.7: the weights have so heavy a tail that these "
              "estimates are unreliable however many draws are made. Use a proposal (guide) closer to "
              "the posterior.", file=sys.stderr)
    if args.predictive:
        rep = pp.posterior_predictive(model, post, data, seed=args.seed)
        print("\nposterior predictive")
        print(summarize({a: v for a, v in rep.items() if a in post.observed}))
    if args.output:
        write_json(args.output, {"log_weights": post.log_weights.tolist(),
                                 "log_marginal_likelihood": post.log_marginal_likelihood,
                                 "ess": post.ess, "pareto_k": post.pareto_k,
                                 "samples": {a: v.tolist() for a, v in post.samples.items()}})


def cmd_graph(args: argparse.Namespace) -> None:
    import pplang as pp
    from pplang.compiler.analysis import dependency_graph, to_dot

    module = pp.load(args.file, hosts=declared_hosts(args))
    model = pick_model(module, args.model)
    observed = set(model.bind(read_data(args.data)).observed) if args.data else set()
    print(to_dot(dependency_graph(model.fn), model.name, observed))


def cmd_info(args: argparse.Namespace) -> None:
    import pplang as pp

    module = pp.load(args.file, hosts=declared_hosts(args))
    for d in module.compiled.program.decls:
        print(f"{d.kind} {d.name}({', '.join(a.name for a in d.args)})")
        if d.name in module.compiled.functions:
            fn = module.compiled.functions[d.name]
            for a, _ in fn.args:
                print(f"  argument {a}: {fn.arg_types.get(a)}")
            for addr, info in fn.sites.items():
                shape = "scalar" if info.shape == () else "shape (" + ", ".join(
                    "?" if x is None else str(x) for x in (info.shape or ())) + ")"
                print(f"  choice {addr}: {info.dist}, {shape}, support {info.support}"
                      + (", reparameterizable" if info.reparameterized else "")
                      + (", enumerable" if info.enumerable else ""))
            for p in fn.params.values():
                print(f"  param {p.address}: {p.constraint}")


COMMANDS = {"check": cmd_check, "compile": cmd_compile, "simulate": cmd_simulate, "infer": cmd_infer,
            "graph": cmd_graph, "info": cmd_info}


# ---------------------------------------------------------------- helpers


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj))


def write_text(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as e:
        raise error(f"cannot write {path}: {e.strerror}", hint="check that the folder exists and is writable") from None
    print(f"wrote {path}")


def show_ast(node: Any, depth: int = 0) -> str:
    """An indented dump of the surface syntax tree (spans as line:col)."""
    pad = "  " * depth
    if isinstance(node, list):
        return "\n".join(show_ast(n, depth) for n in node)
    if not dataclasses.is_dataclass(node):
        return pad + repr(node)
    fields = [f for f in dataclasses.fields(node) if f.name not in ("span", "func_span", "source")]
    simple = [f"{f.name}={getattr(node, f.name)!r}" for f in fields
              if not dataclasses.is_dataclass(getattr(node, f.name)) and not isinstance(getattr(node, f.name), list)]
    span = getattr(node, "span", None)
    at = f" @{span.line}:{span.col}" if span is not None and span.line else ""
    lines = [f"{pad}{type(node).__name__}({', '.join(simple)}){at}"]
    for f in fields:
        v = getattr(node, f.name)
        if dataclasses.is_dataclass(v) or (isinstance(v, list) and v):
            lines.append(f"{pad}  {f.name}:")
            lines.append(show_ast(v, depth + 2))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
