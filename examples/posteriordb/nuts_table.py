"""Run NUTS on every posteriordb posterior here, with the settings the test uses (`settings.py`), and
rewrite the results table of docs/posteriordb.md (between `<!-- nuts-table -->` and
`<!-- /nuts-table -->`), so the documented numbers are the ones a run gives.

    .venv/bin/python examples/posteriordb/nuts_table.py [POSTERIOR ...] [--no-write]

With posteriors named, only their rows are rerun; the other rows are kept as they are.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import settings  # noqa: E402 (the shared settings, next to this file)

DOCS = settings.ROOT / "docs" / "posteriordb.md"
START, END = "<!-- nuts-table -->", "<!-- /nuts-table -->"
HEADER = ("| posterior | parameters | max \\|mean error\\| (ref sd) | max \\|sd error\\| | min bulk ESS | max R-hat "
          "| divergences | time (s) | checks |\n|---|---|---|---|---|---|---|---|---|")


def row(o: settings.Outcome) -> str:
    s = settings.SETTINGS[o.posterior]
    failed = "; ".join(what for _, what in o.failures)
    checks = "pass" if not o.failures else f"fail: {failed}"
    if o.failures and {c for c, _ in o.failures} <= set(s.expected_checks):
        checks = f"expected to fail: {failed}"
    return (f"| `{o.posterior}` | {o.parameters} | {o.max_mean_error_sd:.3f} | {100 * o.max_sd_error:.1f}% "
            f"| {o.min_ess_bulk:.0f} | {o.max_rhat:.3f} | {o.divergences} | {o.seconds:.0f} | {checks} |")


def skipped(posterior: str) -> str:
    reason = settings.SETTINGS[posterior].skip
    return f"| `{posterior}` | | | | | | | | skipped: {reason} |"


def kept_rows(text: str) -> dict[str, str]:
    """The table's current rows, by posterior (kept for the posteriors not rerun)."""
    rows = {}
    for line in text.split(START, 1)[-1].split(END, 1)[0].splitlines():
        m = re.match(r"\| `([^`]+)` \|", line)
        if m:
            rows[m.group(1)] = line
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("posteriors", nargs="*", help="only these (default: all)")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave the docs as they are")
    args = ap.parse_args(argv)
    names = args.posteriors or list(settings.SETTINGS)
    unknown = sorted(set(names) - set(settings.SETTINGS))
    if unknown:
        ap.error(f"unknown posteriors: {', '.join(unknown)}")
    text = DOCS.read_text()
    if START not in text or END not in text:
        sys.exit(f"{DOCS} has no {START} ... {END} section")
    rows = kept_rows(text)
    for name in names:
        if settings.SETTINGS[name].skip:
            rows[name] = skipped(name)
            continue
        try:
            res, seconds = settings.run(name)
        except Exception as e:  # noqa: BLE001 (a posterior NUTS cannot run is a row of the table, not the end of it)
            rows[name] = f"| `{name}` | | | | | | | | error: {str(e).splitlines()[0]} |"
        else:
            rows[name] = row(settings.compare(name, res, seconds))
        print(rows[name], flush=True)
    s = settings
    settings_line = (f"{s.CHAINS} chains; seed, warmup, draws and target_accept per posterior in "
                     "`examples/posteriordb/settings.py`. Time: wall seconds of `pp.sample`, compilation included.")
    table = "\n".join([settings_line, "", HEADER, *(rows[p] for p in settings.SETTINGS if p in rows)])
    if args.no_write:
        print(table)
        return
    before, rest = text.split(START, 1)
    DOCS.write_text(f"{before}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")
    print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
