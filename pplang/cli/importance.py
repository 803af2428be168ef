"""`pplang simulate` and `pplang infer`: prior draws and importance sampling."""

from __future__ import annotations

import argparse
from typing import Any

from pplang import pareto
from pplang.cli.common import (
    add_computed_arg,
    add_devices_arg,
    add_force_arg,
    add_marginalize_arg,
    add_run_args,
    add_strict_arg,
    add_summary_args,
    check_file,
    check_folder,
    computed_choice,
    pick_model,
    positive_int,
    read_data,
    strict_exit,
    summary_options,
    write_json,
)
from pplang.compiler.diagnostics import error


def register(sub: Any) -> None:
    """Add the `simulate` and `infer` subcommands."""
    c = sub.add_parser("simulate", help="draw from the prior (prior predictive simulation)")
    add_run_args(c)
    c.add_argument("-n", "--num-samples", type=positive_int, default=1000, help="draws from the prior")
    c.add_argument("--output", help="write the draws to this JSON file")
    add_summary_args(c)
    add_force_arg(c)
    c.set_defaults(func=cmd_simulate)

    c = sub.add_parser("infer", help="the posterior by the best applicable method (NUTS, SMC or importance "
                                     "sampling), which it names")
    add_run_args(c)
    c.add_argument("--method", choices=["auto", "nuts", "smc", "is"], default="auto",
                   help="auto: NUTS if every latent choice is continuous, else SMC for a model with a loop "
                   "over time, else importance sampling; or name one")
    c.add_argument("-n", "--num-samples", type=positive_int, default=10_000,
                   help="draws (importance sampling) or particles (SMC)")
    c.add_argument("--proposal", help="a guide in the same file to propose from (importance sampling; default: "
                   "the prior)")
    c.add_argument("--predictive", action="store_true", help="also summarize posterior predictive draws")
    c.add_argument("--output", help="write the result to this JSON file (importance sampling: the weighted draws)")
    c.add_argument("--plots", metavar="DIR", help="write the method's plots to this folder (NUTS: trace.png, "
                   "rank.png; SMC: filtering.png, ess.png; importance sampling: marginals.png; each: ppc.png)")
    add_devices_arg(c, "SMC: shard the particles over this many devices")
    add_computed_arg(c)
    add_marginalize_arg(c)
    add_summary_args(c)
    add_strict_arg(c)
    add_force_arg(c)
    c.set_defaults(func=cmd_infer)


def cmd_simulate(args: argparse.Namespace) -> None:
    import pplang as pp
    from pplang.summary import summarize

    check_file(args.output, args)
    module = pp.load(args.file)
    model = pick_model(module, args.model)
    draws = pp.prior_predictive(model, read_data(args.data), num_samples=args.num_samples, seed=args.seed)
    print(f"prior simulation of {model.name}: {args.num_samples} draws")
    print(summarize(draws, order=list(model.fn.sites), **summary_options(args)))
    if args.output:
        write_json(args.output, {a: v.tolist() for a, v in draws.items()}, args.force)


def cmd_infer(args: argparse.Namespace) -> int:
    import pplang as pp
    from pplang.inference.choose import pick

    check_file(args.output, args)
    module = pp.load(args.file)
    model = pick_model(module, args.model)
    data = read_data(args.data)
    choice = pick(model, data, "is" if args.proposal and args.method == "auto" else args.method)
    check_folder(args.plots, args, plot_names(choice.method))
    print(choice)
    if choice.method == "nuts":
        res = infer_nuts(args, model, data)
    elif choice.method == "smc":
        res = infer_smc(args, model, data)
    else:
        res = infer_is(args, module, model, data)
    if args.plots:
        for path in res.plot(args.plots, args.force):
            print(f"wrote {path}")
    return strict_exit(args, res.problems())


def plot_names(method: str) -> tuple[str, ...]:
    """The files `--plots` writes for a method."""
    from pplang.cli import sample, smc
    from pplang.inference import importance

    return {"nuts": sample.PLOTS, "smc": smc.PLOTS}.get(method, importance.PLOTS)


def predictive_table(args: argparse.Namespace, model: Any, draws: dict[str, Any]) -> None:
    from pplang.summary import summarize

    print("\nposterior predictive")
    print(summarize(draws, order=list(model.fn.sites), **summary_options(args)))


def infer_nuts(args: argparse.Namespace, model: Any, data: dict) -> Any:
    from pplang.inference.mcmc import sample

    res = sample(model, data, seed=args.seed, computed=computed_choice(args.computed),
                 marginalize=computed_choice(args.marginalize))
    print(res.summary(**summary_options(args)))
    if args.predictive:
        rep = res.posterior_predictive(seed=args.seed)
        predictive_table(args, model, {a: v.reshape(-1, *v.shape[2:]) for a, v in rep.items()})
    if args.output:
        write_json(args.output, res.to_json(), args.force)
    return res


def infer_smc(args: argparse.Namespace, model: Any, data: dict) -> Any:
    from pplang.inference.filtering import smc

    if args.predictive:
        raise error("--predictive is not available with a particle filter",
                    hint="use the filtering means it prints, or --method nuts / is")
    res = smc(model, data, particles=args.num_samples, seed=args.seed, devices=args.devices)
    print(res.summary())
    if args.output:
        write_json(args.output, res.to_json(), args.force)
    return res


def infer_is(args: argparse.Namespace, module: Any, model: Any, data: dict) -> Any:
    import pplang as pp

    proposal = module[args.proposal] if args.proposal else None
    post = pp.importance_sampling(model, data, num_samples=args.num_samples, seed=args.seed, proposal=proposal,
                                  computed=computed_choice(args.computed),
                                  marginalize=computed_choice(args.marginalize))
    print(f"posterior of {model.name} ({'proposal ' + args.proposal if proposal else 'prior proposal'})")
    print(post.summary(**summary_options(args), sample=pareto.sample_command(args.file, model.name, args.data)))
    if args.predictive:
        rep = pp.posterior_predictive(model, post, data, seed=args.seed)
        predictive_table(args, model, {a: v for a, v in rep.items() if a in post.observed})
    if args.output:
        write_json(args.output, {"log_weights": post.log_weights.tolist(),
                                 "log_marginal_likelihood": post.log_marginal_likelihood,
                                 "ess": post.ess, "pareto_k": post.pareto_k,
                                 "samples": {a: v.tolist() for a, v in post.samples.items()}}, args.force)
    return post
