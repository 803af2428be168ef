"""`pplang check` and `pplang compile`: the compiler's stages from the command line."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from pplang.cli.common import (
    add_force_arg,
    add_host_arg,
    check_file,
    checked_file,
    declared_hosts,
    objective_of,
    pairs,
    pick_guide,
    pick_model,
    read_data,
    write_text,
)
from pplang.compiler.diagnostics import error
from pplang.compiler.names import py_name


def register(sub: Any) -> None:
    """Add the `check` and `compile` subcommands."""
    c = sub.add_parser("check", help="parse and check a model file (names, types, shapes)")
    c.add_argument("file", help="model file (.ppl)")
    add_host_arg(c)
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("compile", help="show a compilation stage or write the generated module")
    c.add_argument("file", help="model file (.ppl)")
    c.add_argument("--emit", choices=["ast", "ir", "jax", "adev", "marginal"], default="jax",
                   help="stage to print (default: jax); adev: the gradient estimator of --objective for --model "
                   "and --guide; marginal: --model with its discrete latent choices summed out (given --data)")
    c.add_argument("--model", help="only this model or guide (with --emit adev: the model)")
    c.add_argument("--guide", help="with --emit adev: the guide")
    c.add_argument("--objective", default="elbo", help="with --emit adev: the objective (default: elbo)")
    c.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="an objective argument")
    c.add_argument("--strategy", action="append", default=[], metavar="ADDRESS=STRATEGY",
                   help="gradient strategy of a guide choice (reparam, reinforce, mvd, enum)")
    c.add_argument("--data", help="with --emit adev: data (needed for automatic guides); with --emit marginal: which "
                   "choices are observed")
    c.add_argument("-o", "--output", help="write the generated JAX module to this file (an existing one is refused "
                   "without --force)")
    add_host_arg(c)
    add_force_arg(c)
    c.set_defaults(func=cmd_compile)


def cmd_check(args: argparse.Namespace) -> None:
    decls = checked_file(args).program.decls
    print(f"{args.file}: ok ({len(decls)} declaration{'s' if len(decls) != 1 else ''}: "
          + ", ".join(f"{d.kind} {d.name}" for d in decls) + ")")


def cmd_compile(args: argparse.Namespace) -> None:
    from pplang.compiler import printer
    from pplang.compiler.pipeline import check_program, compile_program, parse_file

    check_file(args.output if args.emit == "jax" else None, args)
    program = parse_file(args.file)
    if args.emit == "ast":
        print(show_ast(program))
        return
    if args.emit == "ir":
        checked = check_program(program, declared_hosts(args))
        names = [args.model] if args.model else list(checked.functions)
        for n in names:
            if n not in checked.functions:
                raise error(f"no model or guide named `{n}`", hint=f"declared: {', '.join(checked.functions)}")
            print(printer.function(checked.functions[n]) + "\n")
        return
    if args.emit == "adev":
        emit_adev(args)
        return
    if args.emit == "marginal":
        emit_marginal(args)
        return
    compiled = compile_program(program, declared_hosts(args))
    code = compiled.source_code
    if args.model:  # just this declaration's function, still a module that runs on its own
        from pplang.compiler import codegen

        if args.model not in compiled.functions:
            raise error(f"no model or guide named `{args.model}`", hint=f"declared: {', '.join(compiled.functions)}")
        from pplang.compiler.analysis import called_declarations

        fn = compiled.functions[args.model]
        by_var = {py_name(name): f for name, f in compiled.functions.items()}
        callees = [by_var[v] for v in called_declarations(fn) if v in by_var]
        code = codegen.generate_module([*callees, fn], program.file, program.source)
    if args.output:
        write_text(args.output, code, args.force)
    else:
        print(code)


def emit_marginal(args: argparse.Namespace) -> None:
    """The model with its discrete latent choices summed out: the IR the marginalize transformation
    wrote, then the JAX it compiles to (comments point at the model's lines)."""
    import pplang as pp
    from pplang.compiler import printer

    model = pick_model(pp.load(args.file), args.model)
    observed = model.bind(read_data(args.data)).observed if args.data else {}
    marginal = model.marginal(observed)
    if marginal is model:
        print(f"# {model.kind} `{model.name}` has no latent discrete choice to sum out"
              + ("" if args.data else " (pass --data so that observed choices are known)"))
        return
    summary = ", ".join(f"`{a}` ({p})" for a, p in marginal.marginalized.items())
    print(f"# {model.kind} `{model.name}` with {summary} summed out")
    print("\n".join("# " + line for line in printer.function(marginal.fn).splitlines()))
    print(marginal.impl.__globals__["__pplang_code__"])


def emit_adev(args: argparse.Namespace) -> None:
    """The objective's generated code and the estimator the adev transformation generated for it."""
    import pplang as pp
    from pplang.inference.variational import Problem, make_guide

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
