"""`pplang amortize` trains an amortized guide; `pplang posterior` answers with a saved one.

    pplang amortize FILE --model M --guide Q --data COLLECTION.json --set J=5 --results DIR
    pplang amortize FILE --model M --guide Q --simulate 10000 --set J=5 --results DIR
    pplang posterior DIR --data NEW.json [--correct N] [--compare STEPS]

A collection file (JSON, or .npz for large ones) maps each name to an array with one entry per data
set along its first axis; `--set` and `--shared` give values common to all of them. `--arg` sets
an objective's argument, as in `pplang fit`. `pplang posterior` reads a data set (or a batch, one
more leading axis) in the same form the guide takes and prints the amortized posterior.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pplang.cli import common
from pplang.compiler.diagnostics import error


def register(sub: Any) -> None:
    """Add the `amortize` and `posterior` subcommands (dispatched through `func`)."""

    c = sub.add_parser("amortize", help="train a guide driven by a neural network on many data sets or on "
                                        "simulations, to answer for new data in one pass")
    common.add_file_arg(c)
    c.add_argument("--model", help="model to train on (default: the first model in the file)")
    c.add_argument("--guide", required=True, help="the amortized guide, in the file or OTHER.ppl:NAME (its "
                                                  "arguments are named after the model's observations)")
    source = c.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="collection (JSON or .npz): each entry an array with one value per data set "
                                       "along its first axis")
    source.add_argument("--simulate", type=common.positive_int, metavar="N",
                        help="train on N simulations from the model (neural posterior estimation)")
    c.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a value common to every data set (a size or a known constant), e.g. --set J=5")
    c.add_argument("--sizes", type=size_range, metavar="LOW:HIGH",
                   help="with --simulate and a model with `size` arguments: the range of set sizes to simulate, "
                   "for every set, or per size argument: NA=2:64,NB=5:30")
    c.add_argument("--queries", type=common.positive_int, default=8,
                   help="held-out points per simulated set, for a guide that predicts new points (default 8)")
    c.add_argument("--shared", help="JSON file of values common to every data set")
    c.add_argument("--objective", default="elbo", help="objective when training on data (default: elbo)")
    c.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="an objective argument, e.g. --arg k=8")
    c.add_argument("--epochs", type=common.positive_int, default=10, help="passes over the data sets or simulations")
    c.add_argument("--batch-size", type=common.positive_int, default=64, help="data sets per step (default 64)")
    common.add_optimizer_args(c, lr=1e-3)
    c.add_argument("--particles", type=common.positive_int, default=1, help="estimates per data set and step")
    c.add_argument("--strategy", action="append", default=[], metavar="ADDRESS=STRATEGY",
                   help="gradient strategy of a guide choice (reparam, reinforce, mvd, enum)")
    c.add_argument("--on-nan", choices=["stop", "skip"], default="stop",
                   help="at a non-finite objective or gradient: stop (keeping the last good parameters, exit code 3) "
                   "or skip the step")
    common.add_seed_arg(c)
    c.add_argument("--checkpoint", help="folder for periodic checkpoints (default: RESULTS/checkpoint)")
    c.add_argument("--checkpoint-every", type=common.positive_int, default=1000, metavar="STEPS",
                   help="steps between checkpoints")
    c.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    c.add_argument("--results", help="folder to save the trained guide to (load with pp.AmortizedPosterior.load; "
                   "an existing one is refused without --force, unless --resume continues the checkpoint it holds)")
    c.add_argument("--query", metavar="JSON", help="after training, print the posterior for this data set")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_summary_args(c)
    common.add_force_arg(c)
    c.set_defaults(func=cmd_amortize)

    c = sub.add_parser("posterior", help="the posterior of a saved amortized guide for new data (no training)")
    c.add_argument("results", help="folder written by `pplang amortize --results`")
    c.add_argument("--data", required=True, help="JSON data set (the guide's inputs), or a batch of them")
    c.add_argument("--draws", type=common.positive_int, default=1000, help="draws from the amortized guide")
    c.add_argument("--correct", type=int, default=0, metavar="N",
                   help="importance-sample N draws with the amortized guide as proposal (Pareto-k diagnostic)")
    c.add_argument("--compare", type=int, default=0, metavar="STEPS",
                   help="also fit a full-rank guide to this data set alone for STEPS steps and report the "
                   "amortization gap and the time each answer took")
    c.add_argument("--new", metavar="JSON", help="new points' inputs (NAME_new, one value per point): print the "
                   "posterior predictive of each new point")
    c.add_argument("--output", help="write the draws to this JSON file")
    common.add_seed_arg(c)
    common.add_summary_args(c)
    common.add_strict_arg(c)
    common.add_force_arg(c)
    c.set_defaults(func=cmd_posterior)


def size_range(text: str) -> tuple[int, int] | dict[str, tuple[int, int]]:
    """`LOW:HIGH` (or one size) as an inclusive range of set sizes for every `size` argument, or
    `NAME=LOW:HIGH,...` one range per size argument by name."""
    if "=" not in text:
        return one_range(text, text)
    out = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise argparse.ArgumentTypeError(f"expected NAME=LOW:HIGH,..., e.g. NA=2:64,NB=5:30, got {text!r}")
        if name in out:
            raise argparse.ArgumentTypeError(f"`{name}` has two ranges in {text!r}")
        out[name] = one_range(value.strip(), text)
    return out


def one_range(value: str, text: str) -> tuple[int, int]:
    lo, _, hi = value.partition(":")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH, e.g. 5:200 (or NAME=LOW:HIGH,... per size), "
                                         f"got {text!r}") from None
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected 1 <= LOW <= HIGH, got {text!r}")
    return low, high


def shared_values(args: argparse.Namespace) -> dict[str, Any]:


    shared = common.read_data(args.shared) if args.shared else {}
    shared |= {k: common.number(v) for k, v in common.pairs(args.set, "--set").items()}
    return shared


def cmd_amortize(args: argparse.Namespace) -> int:
    import pplang as pp


    module = pp.load(args.file)
    model = common.pick_model(module, args.model)
    guide = common.pick_guide(module, args.guide)
    objective = common.objective_of(module, args.objective, args.arg)
    checkpoint = args.checkpoint or (str(Path(args.results) / "checkpoint") if args.results else None)
    if args.resume and checkpoint is None:
        raise error("--resume needs --checkpoint or --results", hint="resume from the folder training wrote to")
    result = pp.amortize(model, guide, common.read_data(args.data) if args.data else None, simulate=args.simulate,
                         shared=shared_values(args), objective=objective, epochs=args.epochs,
                         batch_size=args.batch_size, **common.optimizer_options(args),
                         particles=args.particles, seed=args.seed, strategies=common.pairs(args.strategy, "--strategy"),
                         on_nan=args.on_nan, checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
                         resume=args.resume, progress=not args.no_progress, results=args.results,
                         overwrite=args.force, sizes=args.sizes, queries=args.queries)
    print(result.summary())
    if args.query and result.info.get("target") != "predictive":
        print(f"\nposterior for {args.query}:")
        print(result.posterior(common.read_data(args.query), seed=args.seed).summary(**common.summary_options(args)))
    if args.results:
        print(f"\nsaved to {args.results}: answer new data with `pplang posterior {args.results} --data NEW.json`")
    kept = [f"{folder} ({what})" for folder, what in ((args.results, "results"), (checkpoint, "checkpoint")) if folder]
    return common.stopped_early(result.info.get("status"), "training", result.info.get("message", ""), kept,
                                "--results DIR or --checkpoint DIR")


def cmd_posterior(args: argparse.Namespace) -> int:
    import pplang as pp


    if args.strict and not args.correct:
        raise error("--strict judges an amortized answer by importance sampling with the guide",
                    hint="add --correct N, e.g. --correct 1000")
    common.check_file(args.output, args)
    result = pp.AmortizedPosterior.load(args.results)
    data = common.read_data(args.data)
    if args.new:
        draws = result.predictive(data, common.read_data(args.new), num_samples=args.draws, seed=args.seed)
        print(predictive_table(draws))
        if args.output:
            common.write_json(args.output, {a: v.tolist() for a, v in draws.items()}, args.force)
        return
    post = result.posterior(data, num_samples=args.draws, seed=args.seed)
    if post.batched:
        n = next(iter(post.draws.values())).shape[0] if post.draws else 0
        for i in range(n):
            print(f"data set {i}:\n{post.summary(i, **common.summary_options(args))}\n")
    else:
        print(post.summary(**common.summary_options(args)))
    problems = []
    if args.correct:
        if post.batched:
            raise error("--correct takes one data set, not a batch", hint="pass a single data set with --data")
        corrected = result.importance_sampling(data, num_samples=args.correct, seed=args.seed)
        print(f"\nimportance sampling with the amortized guide as proposal ({args.correct} draws)")
        print(corrected.summary(**common.summary_options(args), remedy="the amortized guide is too far from this "
                                "data set's posterior for importance sampling to correct it; fit this data set "
                                "(pplang fit)"))
        problems = corrected.problems()
    if args.compare:
        if post.batched:
            raise error("--compare takes one data set, not a batch", hint="pass a single data set with --data")
        print(f"\nagainst a full-rank guide fitted to this data set alone ({args.compare} steps):")
        print(result.compare(data, steps=args.compare, seed=args.seed).summary())
    if args.output:
        common.write_json(args.output, {a: v.tolist() for a, v in post.draws.items()}, args.force)
    return common.strict_exit(args, problems)


def predictive_table(draws: dict[str, Any]) -> str:
    """Mean, sd and 5/50/95% quantiles of each new point (of one data set: draws, points)."""
    import numpy as np

    lines = [f"{'':12}{'mean':>11}{'sd':>11}{'5%':>11}{'50%':>11}{'95%':>11}"]
    for a, v in draws.items():
        v = np.asarray(v)
        if v.ndim != 2:
            raise error("--new answers for one data set at a time", hint="pass a single data set with --data")
        for j in range(v.shape[1]):
            q = np.quantile(v[:, j], [0.05, 0.5, 0.95])
            lines.append(f"{f'{a}[{j}]':12}" + "".join(f"{x:>11.4g}" for x in (v[:, j].mean(), v[:, j].std(), *q)))
    return "\n".join(lines)
