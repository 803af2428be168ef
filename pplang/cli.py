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

from pplang.diagnostics import PplError, did_you_mean, error

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
    c.add_argument("--emit", choices=["ast", "ir", "jax", "adev"], default="jax",
                   help="stage to print (default: jax); adev: the gradient estimator of --objective for --model "
                   "and --guide")
    c.add_argument("--model", help="only this model or guide (with --emit adev: the model)")
    c.add_argument("--guide", help="with --emit adev: the guide")
    c.add_argument("--objective", default="elbo", help="with --emit adev: the objective (default: elbo)")
    c.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="an objective argument")
    c.add_argument("--strategy", action="append", default=[], metavar="ADDRESS=STRATEGY",
                   help="gradient strategy of a guide choice (reparam, reinforce, mvd, enum)")
    c.add_argument("--data", help="with --emit adev: data (needed for automatic guides)")
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

    c = sub.add_parser("fit", help="variational inference: fit a guide by maximizing an objective")
    add_run_args(c)
    c.add_argument("--guide", default="mean_field",
                   help="a guide in the file, OTHER.ppl:NAME, or mean_field | full_rank | low_rank | delta "
                   "(default: mean_field)")
    c.add_argument("--objective", default="elbo",
                   help="an objective in the file or a standard one: elbo, iwelbo, renyi, rws, ... (default: elbo)")
    c.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="an objective argument, e.g. --arg k=8")
    c.add_argument("--program", action="append", default=[], metavar="ARG=NAME",
                   help="bind another program of the file to an objective argument, e.g. --program r=reverse")
    c.add_argument("--strategy", action="append", default=[], metavar="ADDRESS=STRATEGY",
                   help="gradient strategy of a guide choice (reparam, reinforce, mvd, enum)")
    c.add_argument("--baseline", help="reinforce baseline: ema, learned or a number")
    c.add_argument("--steps", type=positive_int, default=2000)
    c.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    c.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="optax optimizer (default adam)")
    c.add_argument("--particles", type=positive_int, default=1, help="estimates averaged per step")
    c.add_argument("--on-nan", choices=["stop", "skip"], default="stop")
    c.add_argument("--tol", type=float, help="stop when the objective changes by less than this (relative)")
    c.add_argument("--checkpoint", help="folder for periodic checkpoints (default: RESULTS/checkpoint)")
    c.add_argument("--checkpoint-every", type=positive_int, default=1000)
    c.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    c.add_argument("--results", help="folder to save parameters, draws, objective trace and plots to")
    c.add_argument("--draws", type=positive_int, default=1000, help="posterior draws from the fitted guide")
    c.add_argument("--correct", type=int, default=0, metavar="N",
                   help="importance-resample N draws with the fitted guide as proposal (Pareto-k diagnostic)")
    c.add_argument("--no-progress", action="store_true")

    from pplang.amortize_cli import register as register_amortize
    from pplang.smc_cli import register as register_smc

    register_smc(sub)
    register_amortize(sub)

    c = sub.add_parser("graph", help="print the dependency graph of a model (Graphviz DOT)")
    c.add_argument("file")
    c.add_argument("--model", help="model or guide (default: the first)")
    c.add_argument("--data", help="shade the choices this data observes")
    add_host_arg(c)

    c = sub.add_parser("info", help="list declarations, their arguments and random choices")
    c.add_argument("file")
    add_host_arg(c)
    return p


OPTIMIZERS = {"adam": "adam", "adamw": "adamw", "sgd": "sgd", "rmsprop": "rmsprop", "adagrad": "adagrad"}


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
        (getattr(args, "func", None) or COMMANDS[args.command])(args)
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
    if args.emit == "adev":
        emit_adev(args)
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


def emit_adev(args: argparse.Namespace) -> None:
    """The objective's generated code and the estimator the adev transformation generated for it."""
    import pplang as pp
    from pplang.variational import Problem, make_guide

    module = pp.load(args.file)
    model = pick_model(module, args.model)
    data = read_data(args.data)
    if args.guide is None:
        raise error("--emit adev needs --guide", hint="name a guide of the file, or mean_field, full_rank, ...")
    guide = pick_guide(module, args.guide)
    guide = guide if isinstance(guide, pp.Model) else make_guide(model, guide, data)
    objective = objective_of(module, args.objective, args.arg)
    problem = Problem.build(model, guide, objective, data, strategies=pairs(args.strategy, "--strategy"))
    obj = problem.objective
    from pplang.compiler import codegen

    print(f"# objective `{obj.name}`: its generated code (simulate and log_density run the programs bound to "
          f"{', '.join(f'{r} = {m.name}' for r, m in problem.roles.items())}; see `pplang compile {args.file}`)")
    print(codegen.generate_module([obj.fn], obj.fn.span.file, obj.source).split("\n", 6)[-1])
    print(problem.estimator_code)


def cmd_fit(args: argparse.Namespace) -> None:
    import optax

    import pplang as pp

    module = pp.load(args.file)
    model = pick_model(module, args.model)
    data = read_data(args.data)
    guide = pick_guide(module, args.guide)
    objective = objective_of(module, args.objective, args.arg)
    programs = {r: module[n] for r, n in pairs(args.program, "--program").items()}
    baseline: Any = args.baseline
    if baseline not in (None, "ema", "learned"):
        baseline = number(baseline)
    optimizer = getattr(optax, OPTIMIZERS[args.optimizer])(args.lr)
    checkpoint = args.checkpoint or (str(Path(args.results) / "checkpoint") if args.results else None)
    if args.resume and checkpoint is None:
        raise error("--resume needs --checkpoint or --results", hint="resume from the folder the fit wrote to")
    result = pp.fit(model, guide, objective, data, optimizer=optimizer, steps=args.steps, particles=args.particles,
                    seed=args.seed, strategies=pairs(args.strategy, "--strategy"), baseline=baseline,
                    programs=programs, on_nan=args.on_nan, tol=args.tol, checkpoint=checkpoint,
                    checkpoint_every=args.checkpoint_every, resume=args.resume, progress=not args.no_progress,
                    num_draws=args.draws, results=args.results)
    print(result.summary())
    status = result.info.get("status")
    if status not in ("done", "converged"):
        print(f"warning: the fit ended early ({status}): {result.info.get('message', '')}", file=sys.stderr)
    if args.correct:
        post = result.importance_resample(args.correct, seed=args.seed)
        print(f"\nimportance-resampled with the fitted guide as proposal ({args.correct} draws)")
        print(post.summary())
        if post.pareto_k > 0.7:
            print(f"warning: Pareto k {post.pareto_k:.2f} > 0.7: the guide is too far from the posterior for "
                  "importance resampling to correct it; try a richer guide (full_rank) or more steps.", file=sys.stderr)
    if args.results:
        print(f"\nresults saved to {args.results} (load with pp.FitResult.load)")


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
            "fit": cmd_fit, "graph": cmd_graph, "info": cmd_info}


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
