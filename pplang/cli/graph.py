"""`pplang graph` and `pplang info`: what a file declares and how its choices depend on each other."""

from __future__ import annotations

import argparse
from typing import Any

from pplang.cli.common import add_host_arg, checked_file, declared_hosts, pick_function, pick_model, read_data


def register(sub: Any) -> None:
    """Add the `graph` and `info` subcommands."""
    c = sub.add_parser("graph", help="print the dependency graph of a model (Graphviz DOT)")
    c.add_argument("file", help="model file (.ppl)")
    c.add_argument("--model", help="model or guide (default: the first)")
    c.add_argument("--data", help="shade the choices this data observes")
    add_host_arg(c)
    c.set_defaults(func=cmd_graph)

    c = sub.add_parser("info", help="list declarations, their arguments and random choices")
    c.add_argument("file", help="model file (.ppl)")
    add_host_arg(c)
    c.set_defaults(func=cmd_info)


def cmd_graph(args: argparse.Namespace) -> None:
    from pplang.compiler.analysis import dependency_graph, to_dot

    if args.data:  # which choices the data observe: binding them runs the model's data checks (JAX)
        import pplang as pp

        model = pick_model(pp.load(args.file, hosts=declared_hosts(args)), args.model)
        fn, observed = model.fn, set(model.bind(read_data(args.data)).observed)
    else:
        fn, observed = pick_function(checked_file(args), args.model), set()
    print(to_dot(dependency_graph(fn), fn.name, observed))


def cmd_info(args: argparse.Namespace) -> None:
    checked = checked_file(args)
    for d in checked.program.decls:
        print(f"{d.kind} {d.name}({', '.join(a.name for a in d.args)})")
        if d.name in checked.functions:
            fn = checked.functions[d.name]
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
