"""`pplang sample FILE --model M --data D`: NUTS or HMC (blackjax) from the command line.

`register(sub)` adds the subcommand to the `pplang` parser's subparsers; the command prints the
diagnostics warnings (what to do about each problem), then the summary table, and can save the
result (`--output DIR`) and trace, rank and posterior predictive plots (`--plots DIR`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pplang.cli import common

PLOTS = ("trace.png", "rank.png", "ppc.png")  # what --plots writes


def register(sub: Any) -> None:
    """Add the `sample` subcommand (dispatched through `func`)."""

    c = sub.add_parser("sample", help="MCMC (NUTS or HMC) with Stan's warmup: posterior draws, R-hat, ESS and "
                                      "divergence diagnostics")
    common.add_run_args(c)
    c.add_argument("--method", choices=["nuts", "hmc"], default="nuts", help="sampler")
    c.add_argument("--chains", type=common.positive_int, default=4, help="chains, run together (default 4)")
    c.add_argument("--warmup", type=common.at_least(0), default=1000,
                   help="adaptation steps per chain (default 1000; 0: none)")
    c.add_argument("--draws", type=common.positive_int, default=1000, help="draws kept per chain (default 1000)")
    c.add_argument("--target-accept", type=common.fraction(True), default=0.8,
                   help="target acceptance rate (default 0.8)")
    c.add_argument("--max-tree-depth", type=common.positive_int, default=10,
                   help="NUTS maximum tree depth (default 10)")
    c.add_argument("--num-integration-steps", type=common.positive_int, default=16,
                   help="HMC leapfrog steps per draw (default 16)")
    c.add_argument("--mass-matrix", choices=["diag", "dense"], default="diag", help="adapted (inverse) mass matrix")
    c.add_argument("--init", default=None, metavar="JSON",
                   help="initial values: uniform (default), prior, or a JSON object of values by choice")
    c.add_argument("--thin", type=common.positive_int, default=1, metavar="N", help="keep every N-th draw")
    common.add_marginalize_arg(c)
    c.add_argument("--output", metavar="DIR", help="save draws, sample statistics and the summary to this folder "
                   "(written whole at the end; an existing one is refused without --force)")
    c.add_argument("--plots", metavar="DIR", help="write trace.png, rank.png and ppc.png (a posterior predictive "
                   "check) to this folder")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--checkpoint", metavar="DIR", help="save the state after each chunk; rerun to resume")
    common.add_computed_arg(c)
    common.add_summary_args(c)
    common.add_strict_arg(c)
    common.add_force_arg(c)
    c.set_defaults(func=cmd_sample)


def parse_init(text: str | None) -> Any:
    from pplang.compiler.diagnostics import error

    if text is None or text in ("uniform", "prior"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"--init is not JSON: {exc}", hint='--init uniform, --init prior or --init \'{"tau": 1.0}\'') \
            from None
    if not isinstance(value, dict):
        raise error("--init must be a JSON object of initial values by choice", hint='for example \'{"tau": 1.0}\'')
    return value


def cmd_sample(args: argparse.Namespace) -> int:
    import pplang as pp
    from pplang.inference.mcmc import sample

    common.check_folder(args.output, args)
    common.check_folder(args.plots, args, PLOTS)
    model = common.pick_model(pp.load(args.file), args.model)
    try:
        res = sample(model, common.read_data(args.data), method=args.method, chains=args.chains,
                     warmup=args.warmup, draws=args.draws, seed=args.seed, target_accept=args.target_accept,
                     max_tree_depth=args.max_tree_depth, mass_matrix=args.mass_matrix, init=parse_init(args.init),
                     thin=args.thin, num_integration_steps=args.num_integration_steps,
                     progress=not args.no_progress, checkpoint=args.checkpoint,
                     computed=common.computed_choice(args.computed),
                     marginalize=common.computed_choice(args.marginalize))
    except KeyboardInterrupt:
        return common.stopped_early("interrupted", "sampling", "", [f"{args.checkpoint} (checkpoint: rerun the same "
                                                                    "command to resume)"] if args.checkpoint else [])
    print(res.summary(**common.summary_options(args)))  # the warnings, then the table
    if args.output:
        print(f"saved to {res.save(args.output, overwrite=args.force)}")
    if args.plots:
        for path in res.plot(args.plots, args.force):
            print(f"wrote {path}")
    return common.strict_exit(args, res.problems())
