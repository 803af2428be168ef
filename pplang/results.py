"""What a variational fit returns: fitted parameters, the objective trace and posterior draws from
the fitted guide, with a summary table, plots, ArviZ export, and saving to / loading from a folder."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pplang.compiler.diagnostics import error
from pplang.files import folder_for, new_folder, save_figure
from pplang.runtime.archives import load_npz
from pplang.summary import QUANTILES, SiteRows, check_hdi, check_quantiles, display_order, format_table, site_rows

FILES = ("params.npz", "values.npy", "info.json")  # what every saved result has (a fit adds draws.npz)
MARGINAL_PANELS = 16  # at most this many histograms in marginals.png
ARRAY_PANELS = 4  # and at most this many elements of one array choice


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
        """A header (what was fitted, how it ended, the final objective) and a table of the draws:
        mean, sd and the given quantiles (and HDI) of every continuous element, in model order (array
        choices' entries under their name), value probabilities of every discrete one."""
        head = [f"{k}: {self.info[k]}" for k in ("model", "guide", "objective") if k in self.info]
        if "status" in self.info:
            head.append(f"status: {self.info['status']} after {len(self.values)} steps")
        tail = self.values[-max(1, len(self.values) // 10):]
        if np.isfinite(tail).any():
            head.append(f"objective (mean of the last {len(tail)} steps): {np.nanmean(tail):.6g}")
        n = next(iter(self.draws.values())).shape[0] if self.draws else 0
        head.append(f"{n} draws from the fitted guide")
        return "\n".join(head) + "\n\n" + format_table(self.rows(quantiles, hdi_prob), max_rows)

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

    def plot(self, folder: str | Path, overwrite: bool = False) -> list[Path]:
        """Write objective.png (the objective per step and a moving average) and, when there are
        draws, marginals.png (a histogram per scalar variable and per leading array element).
        Existing plots of those names are replaced only with `overwrite`."""
        Figure, FigureCanvasAgg = matplotlib_figure()
        panels = list(itertools.islice(columns(self.draws, ARRAY_PANELS, self.info.get("computed", ()),
                                               self.info.get("order", ())),
                                       MARGINAL_PANELS))
        folder = folder_for(folder, ["objective.png", *(["marginals.png"] if panels else [])], overwrite)
        written = [plot_objective(self.values, str(self.info.get("objective", "objective")), folder, overwrite)]
        if panels:
            ncols = min(4, len(panels))
            nrows = -(-len(panels) // ncols)
            fig = Figure(figsize=(3 * ncols, 2.4 * nrows), layout="constrained")
            FigureCanvasAgg(fig)
            for i, (name, column) in enumerate(panels):
                ax = fig.add_subplot(nrows, ncols, i + 1)
                finite = column[np.isfinite(column)]
                if finite.size:
                    ax.hist(finite, bins=bins(finite), density=True, alpha=0.7)
                else:
                    ax.text(0.5, 0.5, "no finite draws", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(name, fontsize=9)
                ax.tick_params(labelsize=7)
            written.append(save_figure(fig, folder / "marginals.png", overwrite, dpi=110))
        return written

    def to_arviz(self) -> Any:
        """An arviz.InferenceData whose posterior group holds the draws (one chain)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # arviz announces its refactor on import
                import arviz
        except ImportError:
            raise error("exporting to ArviZ needs arviz, which is not installed", hint="pip install arviz") from None
        attrs = {k: v for k, v in self.info.items() if isinstance(v, str | int | float | bool)}
        return arviz.from_dict(posterior={k: np.asarray(v)[None] for k, v in self.draws.items()}, attrs=attrs)

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


def bins(x: np.ndarray) -> Any:
    """One bin per value for integer draws over a short range (discrete choices), else numpy's 'auto'."""
    if x.size and np.array_equal(x, np.round(x)) and x.max() - x.min() <= 50:
        return np.arange(x.min() - 0.5, x.max() + 1.5)
    return "auto" if x.size > 1 else 1


def matplotlib_figure() -> tuple[Any, Any]:
    """matplotlib's Figure and its Agg canvas (no screen needed), or a located error without it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise error("plotting needs matplotlib, which is not installed", hint="pip install matplotlib") from None
    return Figure, FigureCanvasAgg


def plot_objective(values: np.ndarray, label: str, folder: str | Path, overwrite: bool = False) -> Path:
    """folder/objective.png: the objective per step and its moving average (an existing one is
    replaced only with `overwrite`)."""
    Figure, FigureCanvasAgg = matplotlib_figure()
    folder = folder_for(folder, ["objective.png"], overwrite)
    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = np.arange(len(values))
    ax.plot(steps, values, lw=0.6, alpha=0.35, label="per step")
    if len(values):
        window = max(1, len(values) // 50)
        ax.plot(steps, moving_average(values, window), lw=1.8, label=f"moving average ({window} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.legend(loc="lower right")
    return save_figure(fig, folder / "objective.png", overwrite, dpi=110)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values among the last `window` (NaN where there are none)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    lo = np.maximum(np.arange(1, len(v) + 1) - window, 0)
    n = counts[1:] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[1:] - sums[lo]) / np.maximum(n, 1), np.nan)


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
