"""Write the reference summaries of the posteriordb posteriors that the tests read.

For each of the posteriors in `examples/posteriordb/`, read posteriordb's reference draws (10 chains
of 1,000 draws, long Stan runs) and write `tests/data/posteriordb/<posterior>.reference.json`:
per parameter, its posteriordb name (`theta[1]`), pplang's address and 0-based index
(`theta`, `[0]`), the mean, the sd and the Monte Carlo standard error of the mean, plus a thinned
set of reference draws (every 50th draw of every chain: 200 draws) that the density tests
evaluate the models at.

    .venv/bin/python examples/posteriordb/make_reference.py [POSTERIOR_DATABASE] [--out DIR]

POSTERIOR_DATABASE defaults to `../shared/validation/posteriordb/posterior_database` (relative
to the repository root); the output folder to `tests/data/posteriordb`.
"""

from __future__ import annotations

import argparse
import json
import re
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DB = ROOT.parent / "shared" / "validation" / "posteriordb" / "posterior_database"
DEFAULT_OUT = ROOT / "tests" / "data" / "posteriordb"
THIN = 50  # keep every 50th draw of each chain: 10 chains x 20 draws

POSTERIORS = [
    "eight_schools-eight_schools_noncentered",
    "eight_schools-eight_schools_centered",
    "kidiq-kidscore_momiq",
    "arK-arK",
    "hmm_example-hmm_example",
    "arma-arma11",
    "garch-garch11",
    "bball_drive_event_0-hmm_drive_0",
    "diamonds-diamonds",
    "earnings-earn_height",
    "earnings-logearn_interaction_z",
    "kidiq_with_mom_work-kidscore_interaction_c",
    "kilpisjarvi_mod-kilpisjarvi",
    "mesquite-logmesquite_logvas",
    "nes2000-nes",
    "hudson_lynx_hare-lotka_volterra",
    "one_comp_mm_elim_abs-one_comp_mm_elim_abs",
]

# Reference quantities that the pplang model computes rather than draws (by posterior).
COMPUTED = {"eight_schools-eight_schools_noncentered": {"theta"}}


def read_zipped_json(path: Path) -> object:
    """The one JSON document inside a posteriordb zip file."""
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read(z.namelist()[0]))


def pplang_name(name: str) -> tuple[str, list[int]]:
    """posteriordb's 1-based `theta[1]` / `z[2,1]` as pplang's address and 0-based index."""
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9, ]+)\])?", name)
    if m is None:
        raise ValueError(f"unexpected parameter name {name!r}")
    index = [int(i) - 1 for i in m.group(2).split(",")] if m.group(2) else []
    return m.group(1), index


def ess_mean(chains: np.ndarray) -> float:
    """Effective sample size of the mean of `chains` (shape (chains, draws)), rank-free version of
    Stan's multi-chain estimate: split chains, autocorrelations combined across chains with the
    between-chain variance, Geyer's initial monotone positive sequence."""
    m, n = chains.shape
    half = n // 2
    x = np.concatenate([chains[:, :half], chains[:, half:2 * half]])  # split chains
    m, n = x.shape
    centred = x - x.mean(axis=1, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(centred, size, axis=1)
    acov = np.fft.irfft(f * np.conj(f), size, axis=1)[:, :n] / n  # biased autocovariance per chain
    chain_var = acov[:, 0] * n / (n - 1)
    w = chain_var.mean()
    var_plus = w * (n - 1) / n + (x.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    rho = 1.0 - (w - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # Geyer: sums of adjacent pairs, positive and monotone.
    pairs = []
    t = 0
    while t + 1 < n:
        p = rho[t] + rho[t + 1]
        if p <= 0:
            break
        pairs.append(min(p, pairs[-1]) if pairs else p)
        t += 2
    tau = -1.0 + 2.0 * sum(pairs)
    return float(m * n / max(tau, 1.0 / np.log10(m * n)))


def summarize(posterior: str, draws: list[dict[str, list[float]]], reference_name: str) -> dict:
    names = list(draws[0])
    params = []
    thinned: dict[str, list[float]] = {}
    for name in names:
        chains = np.array([chain[name] for chain in draws], dtype=float)
        address, index = pplang_name(name)
        ess = ess_mean(chains)
        sd = float(chains.std(ddof=1))
        params.append({
            "name": name,
            "address": address,
            "index": index,
            "computed": address in COMPUTED.get(posterior, set()),
            "mean": float(chains.mean()),
            "sd": sd,
            "mcse_mean": sd / np.sqrt(ess),
            "ess_mean": ess,
        })
        thinned[name] = [float(v) for v in chains[:, THIN - 1::THIN].reshape(-1)]
    return {
        "posterior": posterior,
        "reference_posterior": reference_name,
        "source": f"posteriordb posterior_database/reference_posteriors/draws/draws/{reference_name}.json.zip",
        "chains": len(draws),
        "draws_per_chain": len(draws[0][names[0]]),
        "thin": THIN,
        "parameters": params,
        "draws": thinned,
    }


def to_json(summary: dict) -> str:
    """The summary as JSON with one line per parameter and per parameter's draws."""
    head = {k: v for k, v in summary.items() if k not in ("parameters", "draws")}
    lines = [json.dumps(head)[:-1] + ","]
    lines.append(' "parameters": [')
    lines.append(",\n".join("  " + json.dumps(p) for p in summary["parameters"]))
    lines.append(' ],')
    lines.append(' "draws": {')
    lines.append(",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in summary["draws"].items()))
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", nargs="?", type=Path, default=DEFAULT_DB,
                        help="posteriordb's posterior_database folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for posterior in POSTERIORS:
        info = json.loads((args.database / "posteriors" / f"{posterior}.json").read_text())
        reference = info["reference_posterior_name"]
        draws = read_zipped_json(args.database / "reference_posteriors" / "draws" / "draws" / f"{reference}.json.zip")
        summary = summarize(posterior, draws, reference)
        path = args.out / f"{posterior}.reference.json"
        path.write_text(to_json(summary))
        print(f"{path}: {len(summary['parameters'])} parameters")


if __name__ == "__main__":
    main()
