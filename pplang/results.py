"""What a variational fit returns: fitted parameters, the objective trace and posterior draws from
the fitted guide, with a summary table, plots, ArviZ export, and saving to / loading from a folder."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pplang import html, plots
from pplang.compiler.diagnostics import error
from pplang.files import new_folder
from pplang.inference import predictive
from pplang.runtime.archives import load_npz
from pplang.summary import QUANTILES, SiteRows, check_hdi, check_quantiles, display_order, format_table, site_rows

FILES = ("params.npz", "values.npy", "info.json")  # what every saved result has (a fit adds draws.npz)


@dataclass
class FitResult:
    """A fitted guide. `params[program][address]` are constrained parameter values; `values` the
    objective estimate at every step (NaN where a step was skipped); `draws[address]` posterior
    draws from the fitted guide, constrained, with a leading draw axis; `info` JSON-able facts
    (model, guide, objective, steps, status, message, timings, ...)."""

    params: dict[str, dict[str, np.ndarray]]
    values: np.ndarray
    draws: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    # set by pp.fit (not saved): `num_samples, seed -> ImportanceResult` with the fitted guide as proposal,
    # the unconstrained parameters by objective argument, and the fitted problem (estimator, programs)
    corrector: Any = field(default=None, repr=False, compare=False)
    unconstrained: dict[str, dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    problem: Any = field(default=None, repr=False, compare=False)
    model: Any = field(default=None, repr=False, compare=False)  # the fitted model (pp.fit sets it)

    def importance_resample(self, num_samples: int = 10_000, seed: int = 0) -> Any:
        """Correct the fitted guide by importance sampling with it as the proposal (as Pathfinder
        does): weighted draws that are asymptotically exact, with a Pareto-k diagnostic of how
        well the guide covers the posterior (above 0.7: too poor to correct; see pplang.pareto)."""
        if self.corrector is None:
            raise error("this result has no model attached (it was loaded from disk)",
                        hint="refit, or run pp.importance_sampling(model, data, proposal=guide, proposal_params=...)")
        return self.corrector(num_samples, seed)

    def __repr__(self) -> str:
        n = next(iter(self.draws.values())).shape[0] if self.draws else 0
        facts = ", ".join(f"{k}={self.info[k]!r}" for k in ("model", "guide", "objective", "status") if k in self.info)
        return f"FitResult({facts}{', ' if facts else ''}steps={len(self.values)}, draws={n} x {len(self.draws)})"

    def rows(self, quantiles: Sequence[float] = QUANTILES, hdi_prob: float | None = None) -> list[SiteRows]:
        """The summary's row data (pplang.summary.site_rows) of the draws from the fitted guide."""
        return site_rows(self.draws, order=self.info.get("order", ()), computed=self.info.get("computed", ()),
                         quantiles=check_quantiles(quantiles), hdi_prob=check_hdi(hdi_prob))

    def summary(self, quantiles: Sequence[float] = QUANTILES, max_rows: int | None = 40,
                hdi_prob: float | None = None) -> str:
        """A header (what was fitted, how it ended, the final objective; see `facts`) and a table of
        the draws: mean, sd and the given quantiles (and HDI) of every continuous element, in model
        order (array choices' entries under their name), value probabilities of every discrete one."""
        return "\n".join(self.facts()) + "\n\n" + format_table(self.rows(quantiles, hdi_prob), max_rows)

    def facts(self) -> list[str]:
        """The summary's header lines: what was fitted, how it ended, the final objective."""
        head = [f"{k}: {self.info[k]}" for k in ("model", "guide", "objective") if k in self.info]
        if "status" in self.info:
            head.append(f"status: {self.info['status']} after {len(self.values)} steps")
        tail = self.values[-max(1, len(self.values) // 10):]
        if np.isfinite(tail).any():
            head.append(f"objective (mean of the last {len(tail)} steps): {np.nanmean(tail):.6g}")
        n = next(iter(self.draws.values())).shape[0] if self.draws else 0
        head.append(f"{n} draws from the fitted guide")
        return head

    def sample(self, n: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """The draws (copies). With `n`, n of them chosen at random (seeded): without replacement
        when there are at least n draws, with replacement otherwise."""
        if n is None or not self.draws:
            return {k: np.array(v) for k, v in self.draws.items()}
        total = next(iter(self.draws.values())).shape[0]
        if total == 0:
            raise error("this fit has no draws to sample from")
        index = np.random.default_rng(seed).choice(total, size=n, replace=n > total)
        return {k: np.asarray(v)[index] for k, v in self.draws.items()}

    def _repr_html_(self) -> str:
        title = f"fit of {self.info['model']}" if "model" in self.info else "fit"
        return html.sites_table(title, self.facts(), self.rows())

    def posterior_predictive(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Replicated observations: each observed choice drawn anew given each draw (a leading draw
        axis), with the model's fitted parameters."""
        model = self.attached("posterior predictive simulation")
        return predictive.replicate(model, self.problem.data, self.draws, self.model_params(), seed)

    def attached(self, what: str) -> Any:
        if self.model is None or self.problem is None:
            raise error(f"{what} needs the model, and this result has none (it was loaded from disk)",
                        hint="fit again with pp.fit(model, guide, data)")
        return self.model

    def model_params(self) -> dict[str, Any]:
        role = next((r for r, m in self.problem.roles.items() if m is self.model), None)
        return dict((self.unconstrained or {}).get(role, {}))

    def sections(self) -> list[tuple[str, Any, float]]:
        out = [("objective.png", plots.objective(self.values, str(self.info.get("objective", "objective"))), 3.2)]
        if self.draws:
            out.append(("marginals.png", plots.marginals(self.draws, last=self.info.get("computed", ())),
                        plots.marginal_height(self.draws)))
        if self.model is not None and self.problem is not None and self.draws:
            observed = predictive.observed_data(self.model, self.problem.data)
            if observed and self.model.replicable:
                out.append(("ppc.png", plots.ppc(observed, self.posterior_predictive()), 2.8))
        return out

    def plot(self, folder: str | Path | None = None, overwrite: bool = False) -> Any:
        """A matplotlib Figure: the objective per step with its moving average, the marginals of
        the draws (discrete choices as probabilities) and, when the model is attached, a posterior
        predictive check. With `folder`, the same as objective.png, marginals.png and ppc.png
        written there (existing ones replaced only with `overwrite`), and the paths returned."""
        title = f"fit of {self.info['model']}" if "model" in self.info else "fit"
        if folder is not None:
            return plots.write(folder, title, self.sections(), overwrite)
        return plots.combined(title, self.sections())

    def to_arviz(self) -> Any:
        """An arviz.InferenceData: posterior (the draws, one chain) and, when the model is attached,
        observed_data, posterior_predictive, prior and prior_predictive."""
        groups: dict[str, Any] = {"posterior": predictive.one_chain(self.draws)}
        if self.model is not None and self.problem is not None and self.draws:
            n = next(iter(self.draws.values())).shape[0]
            data, params = self.problem.data, self.model_params()
            groups["observed_data"] = predictive.observed_data(self.model, data)
            if self.model.replicable:
                groups["posterior_predictive"] = predictive.one_chain(self.posterior_predictive())
            before, implied = predictive.prior(self.model, self.model.bind(data), n, params, seed=1)
            groups["prior"], groups["prior_predictive"] = predictive.one_chain(before), predictive.one_chain(implied)
        return predictive.inference_data(self.info, **groups)

    def save(self, folder: str | Path, plots: bool = False, overwrite: bool = False,
             keep: Sequence[str] = ()) -> Path:
        """Write params.npz (keys `program/address`), draws.npz, values.npy and info.json to `folder`
        (and the plots, if asked), all at once: into a temporary folder beside it that then takes
        its place, so a failure leaves any previous folder whole. An existing folder is replaced
        only with `overwrite`; `keep` names entries of it the new one takes over (a checkpoint)."""
        with new_folder(folder, overwrite, keep) as tmp:
            write_files(tmp, self.params, self.values, self.info)
            np.savez(tmp / "draws.npz", **{k: np.asarray(v) for k, v in self.draws.items()})
            if plots:
                self.plot(tmp)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> FitResult:
        """Read back what `save` wrote."""
        params, values, info, folder = load_folder(folder, "fit", "pplang fit ... --results folder", ("draws.npz",))
        try:
            draws = load_npz(folder / "draws.npz")
        except (OSError, ValueError) as exc:
            raise error(f"cannot read the saved fit at {folder}: {exc}",
                        hint="save it again with `result.save(folder)`") from None
        return cls(params, values, draws, info)


def write_files(folder: Path, params: Mapping[str, Mapping[str, Any]], values: Any,
                info: Mapping[str, Any]) -> Path:
    """The files every saved result has: params.npz (keys `program/address`), values.npy (the
    objective per step) and info.json, written into `folder` (the temporary folder of
    `pplang.files.new_folder`, which puts the whole result in place at once)."""
    for program in params:
        if "/" in program:
            raise error(f"cannot save parameters of a program named {program!r}: the name contains '/'")
    np.savez(folder / "params.npz", **{f"{p}/{a}": np.asarray(v) for p, ps in params.items() for a, v in ps.items()})
    np.save(folder / "values.npy", np.asarray(values))
    (folder / "info.json").write_text(json_text(info, indent=2) + "\n")
    return folder


def load_folder(folder: str | Path, what: str, command: str,
                extra: Sequence[str] = ()) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray, dict, Path]:
    """(params by program, values, info, folder) from what `write_files` wrote, after checking that
    the folder and its files (and the `extra` ones) exist; errors name `what` was saved and the
    `command` that saves one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise error(f"no saved {what} at {folder}: it is a file, not a folder",
                    hint=f"name the folder that `result.save(folder)` or `{command}` wrote")
    if not folder.is_dir():
        raise error(f"no saved {what} at {folder}: the folder does not exist",
                    hint=f"save one with `result.save(folder)` or `{command}`")
    missing = [name for name in (*FILES, *extra) if not (folder / name).is_file()]
    if missing:
        raise error(f"the saved {what} at {folder} is incomplete: {', '.join(missing)} missing",
                    hint="save it again with `result.save(folder)`")
    params: dict[str, dict[str, np.ndarray]] = {}
    damaged = f"the saved {what} at {folder} is damaged"
    try:
        for key, value in load_npz(folder / "params.npz").items():
            program, _, address = key.partition("/")
            params.setdefault(program, {})[address] = value
        values = np.load(folder / "values.npy", allow_pickle=False)
        info = json.loads((folder / "info.json").read_text())
    except (OSError, ValueError, EOFError, RecursionError) as exc:
        raise error(f"cannot read the saved {what} at {folder}: {exc}",
                    hint="save it again with `result.save(folder)`") from None
    again = "save it again with `result.save(folder)`"
    if not isinstance(info, dict):
        raise error(f"{damaged}: info.json does not hold an object", hint=again)
    if values.dtype.kind not in "fiu":
        raise error(f"{damaged}: values.npy does not hold numbers", hint=again)
    return params, values, info, folder



def columns(draws: Mapping[str, np.ndarray], per_array: int | None = None,
            last: Collection[str] = (), order: Sequence[str] = ()) -> Iterator[tuple[str, np.ndarray]]:
    """(`name` or `name[i, j]`, draws of that element) for each scalar element of each address, in
    model order (`order`; see pplang.summary.display_order) with the computed values (`last`) after;
    with `per_array`, only the first that many elements of each."""
    for address in display_order(draws, last, order):
        v = np.asarray(draws[address], dtype=float)
        flat = v.reshape(v.shape[0], -1)
        count = flat.shape[1] if per_array is None else min(per_array, flat.shape[1])
        for j in range(count):
            index = np.unravel_index(j, v.shape[1:]) if v.ndim > 1 else ()
            yield (address + (f"[{', '.join(str(int(i)) for i in index)}]" if index else "")), flat[:, j]


def json_text(obj: Any, indent: int | None = None) -> str:
    """`obj` as valid JSON: NaN and infinities (which JSON has no words for) as null."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


def finite(x: Any) -> Any:
    """`x` with numpy values, paths and dataclasses as JSON's types (see `jsonable`) and every
    non-finite number as None."""
    if isinstance(x, bool | int | str) or x is None:
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return finite(jsonable(x))


def jsonable(x: Any) -> Any:
    """JSON for the numpy scalars, arrays, paths and dataclasses (timings) that end up in `info`."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        return np.asarray(x).tolist()
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    return str(x)
