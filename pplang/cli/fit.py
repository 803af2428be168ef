"""`pplang fit`: variational inference from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pplang import pareto
from pplang.cli.common import (
    add_computed_arg,
    add_force_arg,
    add_optimizer_args,
    add_run_args,
    add_strict_arg,
    add_summary_args,
    computed_choice,
    number,
    objective_of,
    optimizer_options,
    pairs,
    pick_guide,
    pick_model,
    positive_int,
    read_data,
    stopped_early,
    strict_exit,
    summary_options,
)
from pplang.compiler.diagnostics import error


def register(sub: Any) -> None:
    """Add the `fit` subcommand."""
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
    c.add_argument("--steps", type=positive_int, default=2000, help="optimizer steps")
    add_optimizer_args(c, lr=0.01)
    c.add_argument("--particles", type=positive_int, default=1, help="estimates averaged per step")
    c.add_argument("--on-nan", choices=["stop", "skip"], default="stop",
                   help="at a non-finite objective or gradient: stop (keeping the last good parameters, exit code 3) "
                   "or skip the step")
    c.add_argument("--tol", type=float, help="stop when the objective, averaged over --tol-window steps, changes by "
                   "less than this (relative) from the window before")
    c.add_argument("--tol-window", type=positive_int, metavar="STEPS",
                   help="steps averaged for --tol (default a tenth of --steps)")
    c.add_argument("--checkpoint", help="folder for periodic checkpoints (default: RESULTS/checkpoint)")
    c.add_argument("--checkpoint-every", type=positive_int, default=1000, metavar="STEPS",
                   help="steps between checkpoints")
    c.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    c.add_argument("--results", help="folder to save parameters, draws, objective trace and plots to (written "
                   "whole at the end; an existing one is refused without --force, unless --resume continues the "
                   "checkpoint it holds)")
    c.add_argument("--draws", type=positive_int, default=1000, help="posterior draws from the fitted guide")
    c.add_argument("--correct", type=int, default=0, metavar="N",
                   help="importance-resample N draws with the fitted guide as proposal (Pareto-k diagnostic)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_computed_arg(c)
    add_summary_args(c)
    add_strict_arg(c)
    add_force_arg(c)
    c.set_defaults(func=cmd_fit)


def cmd_fit(args: argparse.Namespace) -> int:
    import pplang as pp

    if args.strict and not args.correct:
        raise error("--strict judges a fit by importance resampling with the fitted guide",
                    hint="add --correct N, e.g. --correct 1000")

    module = pp.load(args.file)
    model = pick_model(module, args.model)
    data = read_data(args.data)
    guide = pick_guide(module, args.guide)
    objective = objective_of(module, args.objective, args.arg)
    programs = {r: module[n] for r, n in pairs(args.program, "--program").items()}
    baseline: Any = args.baseline
    if baseline not in (None, "ema", "learned"):
        baseline = number(baseline)
    checkpoint = args.checkpoint or (str(Path(args.results) / "checkpoint") if args.results else None)
    if args.resume and checkpoint is None:
        raise error("--resume needs --checkpoint or --results", hint="resume from the folder the fit wrote to")
    result = pp.fit(model, guide, objective, data, **optimizer_options(args), steps=args.steps,
                    particles=args.particles, seed=args.seed, strategies=pairs(args.strategy, "--strategy"),
                    baseline=baseline, programs=programs, on_nan=args.on_nan, tol=args.tol,
                    tol_window=args.tol_window, checkpoint=checkpoint,
                    checkpoint_every=args.checkpoint_every, resume=args.resume, progress=not args.no_progress,
                    num_draws=args.draws, results=args.results, overwrite=args.force,
                    computed=computed_choice(args.computed))
    print(result.summary(**summary_options(args)))
    problems = []
    if args.correct:
        post = result.importance_resample(args.correct, seed=args.seed)
        print(f"\nimportance-resampled with the fitted guide as proposal ({args.correct} draws)")
        sample = pareto.sample_command(args.file, model.name, args.data)
        print(post.summary(**summary_options(args), sample=sample, remedy="the guide is too far from the posterior "
                           f"for importance resampling to correct it; {next_step(args.guide, sample)}"))
        problems = post.problems()
    if args.results:
        print(f"\nresults saved to {args.results} (load with pp.FitResult.load)")
    kept = [f"{folder} ({what})" for folder, what in ((args.results, "results"), (checkpoint, "checkpoint")) if folder]
    return stopped_early(result.info.get("status"), "the fit", result.info.get("message", ""), kept,
                         "--results DIR or --checkpoint DIR") or strict_exit(args, problems)


def next_step(guide: str, sample: str) -> str:
    """What to try after a guide too poor to correct: a step beyond the guide in use, never that guide."""
    if guide == "delta":
        return "a point estimate has no spread to correct with: fit --guide mean_field or full_rank"
    if guide == "mean_field":
        return "try a guide that captures correlations (--guide full_rank or low_rank) or more steps"
    if guide == "low_rank":
        return "try --guide full_rank or more steps"
    richer = "" if guide == "full_rank" else "a richer guide (--guide full_rank), "
    return f"try {richer}more steps, a decaying learning rate (--lr-schedule cosine), or sample with NUTS: {sample}"
