"""`pplang smc FILE --model M --data D --particles N`: run a particle filter from the command line.

`register(sub)` adds the subcommand to the `pplang` parser's subparsers; the command prints the
filter's summary (log marginal likelihood, effective sample sizes, filtering means), and can write
the results as JSON (`--output`) and plots (`--plots DIR`), and print the generated filter before it
runs (`--show-code`).
"""

from __future__ import annotations

import argparse
from typing import Any

from pplang.cli import common

# The resampling schemes of pplang.runtime.smc.SCHEMES, named here so that building the parser does
# not import JAX (a test checks the two agree).
SCHEMES = ("multinomial", "stratified", "systematic", "residual")
PLOTS = ("filtering.png", "ess.png", "ppc.png")  # pplang.inference.filtering_result.PLOTS (a test checks they agree)


def register(sub: Any) -> None:
    """Add the `smc` subcommand (dispatched through `func`)."""

    c = sub.add_parser("smc", help="particle filter (SMC) over a sequential model: log marginal likelihood, "
                                   "filtering means, effective sample size")
    common.add_run_args(c)
    c.add_argument("-n", "--particles", type=common.positive_int, default=1000,
                   help="number of particles (default 1000)")
    c.add_argument("--resample", choices=list(SCHEMES), default="systematic", help="resampling scheme")
    common.add_devices_arg(c, "shard the particles over this many devices")
    c.add_argument("--ess-threshold", type=common.fraction(False), default=0.5, metavar="F",
                   help="resample when the effective sample size is below F * particles (1: every step, 0: never)")
    c.add_argument("--anneal", type=common.fraction(True), default=None, metavar="H",
                   help="entropy-guided annealing: resample from tempered weights of normalized entropy H")
    c.add_argument("--proposal", help="a guide in the same file to propose from (default: the prior)")
    c.add_argument("--output", help="write the results (log Z, ESS, filtering means and quantiles) to this JSON file")
    c.add_argument("--plots", metavar="DIR", help="write filtering.png, ess.png and ppc.png (a posterior "
                   "predictive check) to this folder")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_computed_arg(c)
    c.add_argument("--show-code", action="store_true", help="print the generated particle filter, then run it")
    common.add_strict_arg(c)
    common.add_force_arg(c)
    c.set_defaults(func=cmd_smc)


def cmd_smc(args: argparse.Namespace) -> int:
    import pplang as pp
    from pplang.inference.filtering import filter_code, smc

    common.check_file(args.output, args)
    common.check_folder(args.plots, args, PLOTS)
    module = pp.load(args.file)
    model = common.pick_model(module, args.model)
    proposal = module[args.proposal] if args.proposal else None
    if args.show_code:
        print(filter_code(model, proposal))
    res = smc(model, common.read_data(args.data), particles=args.particles, proposal=proposal, resample=args.resample,
              ess_threshold=args.ess_threshold, anneal=args.anneal, seed=args.seed, progress=not args.no_progress,
              computed=common.computed_choice(args.computed), devices=args.devices)
    print(res.summary())  # the warnings, then the tables
    if args.output:
        common.write_json(args.output, res.to_json(), args.force)
    if args.plots:
        for path in res.plot(args.plots, args.force):
            print(f"wrote {path}")
    return common.strict_exit(args, res.problems())
