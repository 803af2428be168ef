"""The `pplang` command line: every command on the example and on small files; exit code 0 on
success, 1 on a user error (a located diagnostic on stderr, never a traceback), 2 on an internal
error (with a request to report it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pplang as pp
from pplang import cli
from pplang.cli import main

ROOT = Path(__file__).resolve().parents[2]
COIN = str(ROOT / "examples" / "coin.ppl")
COIN_DATA = str(ROOT / "examples" / "coin.data.json")


def coin_line(text: str) -> int:
    """The 1-based line of examples/coin.ppl that starts with `text` (the example's comments change)."""
    for k, line in enumerate(Path(COIN).read_text().splitlines(), 1):
        if line.lstrip().startswith(text):
            return k
    raise AssertionError(f"{text!r} not in {COIN}")

WITH_GUIDE = """\
model coin(n: int):
    p ~ beta(1.0, 1.0)
    for i in range(n):
        flips[i] ~ bernoulli(p)
    return p

guide q(n: int):
    param a: positive = 8.0
    param b: positive = 3.0
    p ~ beta(a, b)

objective elbo(p, q):
    z = simulate(q)
    return log_density(p, z) - log_density(q, z)
"""


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture, *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "Traceback" not in err
    return out


def user_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 1, (out, err)
    assert "error" in err
    assert "Traceback" not in err and "Traceback" not in out
    assert "please report" not in err
    return err


@pytest.fixture
def guide_file(tmp_path: Path) -> Path:
    path = tmp_path / "coin_guide.ppl"
    path.write_text(WITH_GUIDE)
    return path


# ---------------------------------------------------------------- success


def test_check(capsys: pytest.CaptureFixture) -> None:
    out = ok(capsys, "check", COIN)
    assert out.strip() == f"{COIN}: ok (1 declaration: model coin)"


def test_check_counts_declarations(capsys: pytest.CaptureFixture, guide_file: Path) -> None:
    out = ok(capsys, "check", str(guide_file))
    assert "3 declarations: model coin, guide q, objective elbo" in out


def test_compile_ast(capsys: pytest.CaptureFixture) -> None:
    out = ok(capsys, "compile", COIN, "--emit", "ast")
    assert f"Decl(kind='model', name='coin') @{coin_line('model coin')}:1" in out
    assert f"Call(func='bernoulli') @{coin_line('flips[i]')}:20" in out


def test_compile_ir(capsys: pytest.CaptureFixture) -> None:
    out = ok(capsys, "compile", COIN, "--emit", "ir")
    assert out.startswith("model coin(n: int)")
    assert "site 'flips'" in out and "bernoulli" in out


def test_compile_ir_one_model(capsys: pytest.CaptureFixture, guide_file: Path) -> None:
    out = ok(capsys, "compile", str(guide_file), "--emit", "ir", "--model", "q")
    assert out.startswith("guide q(n: int)")
    assert "model coin" not in out


def test_compile_jax_and_output_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = ok(capsys, "compile", COIN, "--emit", "jax")
    assert "def coin(" in code
    compile(code, "generated.py", "exec")  # valid Python
    out_path = tmp_path / "coin_gen.py"
    out = ok(capsys, "compile", COIN, "-o", str(out_path))
    assert out.strip() == f"wrote {out_path}"
    assert out_path.read_text().strip() == code.strip()


def test_default_emit_is_jax(capsys: pytest.CaptureFixture) -> None:
    assert ok(capsys, "compile", COIN) == ok(capsys, "compile", COIN, "--emit", "jax")


def test_simulate(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out_path = tmp_path / "draws.json"
    out = ok(capsys, "simulate", COIN, "--data", COIN_DATA, "-n", "40", "--output", str(out_path))
    assert out.startswith("prior simulation of coin: 40 draws")
    assert "\np " in out and "\nflips (shape 10)\n" in out and "\n  [9] " in out  # entries under their site
    draws = json.loads(out_path.read_text())
    assert set(draws) == {"p", "flips"}
    assert len(draws["p"]) == 40
    assert all(0.0 <= v <= 1.0 for v in draws["p"])
    assert len(draws["flips"]) == 40 and len(draws["flips"][0]) == 10


def test_simulate_seed_is_reproducible(capsys: pytest.CaptureFixture) -> None:
    a = ok(capsys, "simulate", COIN, "--data", COIN_DATA, "-n", "30", "--seed", "3")
    b = ok(capsys, "simulate", COIN, "--data", COIN_DATA, "-n", "30", "--seed", "3")
    c = ok(capsys, "simulate", COIN, "--data", COIN_DATA, "-n", "30", "--seed", "4")
    assert a == b
    assert a != c


def test_infer_with_predictive_and_output(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out_path = tmp_path / "post.json"
    out = ok(capsys, "infer", "--method", "is", COIN, "--data", COIN_DATA, "-n", "500", "--predictive", "--output",
             str(out_path))
    assert out.startswith("method: importance sampling (asked for)\nposterior of coin (prior proposal)")
    assert "log marginal likelihood" in out
    assert "posterior predictive" in out
    post = json.loads(out_path.read_text())
    assert len(post["log_weights"]) == 500
    assert len(post["samples"]["p"]) == 500
    assert 0 < post["ess"] <= 500
    assert post["pareto_k"] < 0.5  # the prior is a fine proposal for ten coin flips
    # 8 heads in 10 flips under a uniform prior: log evidence = log B(9, 3) = log(1/495)
    assert abs(post["log_marginal_likelihood"] - (-6.2046)) < 0.2


def test_infer_with_proposal(capsys: pytest.CaptureFixture, guide_file: Path) -> None:
    out = ok(capsys, "infer", "--method", "is", str(guide_file), "--model", "coin", "--data", COIN_DATA, "-n", "300",
             "--proposal", "q")
    assert out.startswith("method: importance sampling (asked for)\nposterior of coin (proposal q)")


def test_infer_warns_about_small_effective_sample_size_before_the_table(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(capsys, "infer", "--method", "is", COIN, "--data", COIN_DATA, "-n", "20")
    assert code == 0
    warning = out.index("warning: effective sample size")
    assert warning < out.index("\np ")


def test_graph(capsys: pytest.CaptureFixture) -> None:
    out = ok(capsys, "graph", COIN)
    assert out.startswith('digraph "coin" {')
    assert '"p" -> "flips";' in out
    assert "filled" not in out
    shaded = ok(capsys, "graph", COIN, "--data", COIN_DATA)
    flips = [ln for ln in shaded.splitlines() if ln.strip().startswith('"flips" [')]
    assert flips and "filled" in flips[0]


def test_graph_of_a_guide(capsys: pytest.CaptureFixture, guide_file: Path) -> None:
    out = ok(capsys, "graph", str(guide_file), "--model", "q")
    assert out.startswith('digraph "q" {')
    assert '"a" -> "p";' in out


def test_info(capsys: pytest.CaptureFixture, guide_file: Path) -> None:
    out = ok(capsys, "info", COIN)
    assert "model coin(n)" in out
    assert "argument n: int" in out
    assert "choice flips: bernoulli, shape (n)" in out
    out = ok(capsys, "info", str(guide_file))
    assert "guide q(n)" in out and "param a: positive" in out and "objective elbo(p, q)" in out


# ---------------------------------------------------------------- user errors: exit code 1


@pytest.mark.parametrize(("source", "where", "words"), [
    ("model m(:\n    pass\n", "1:9", "unexpected ':'"),
    ("model m():\n    y ~ normal(0.0, sigam)\n", "2:21", "unknown name `sigam`"),
    ("model m():\n    y ~ normall(0.0, 1.0)\n", "2:9", "did you mean `normal`"),
    ("model m(N: int):\n    for i in range(N):\n        y ~ normal(0.0, 1.0)\n", "3:9", "needs an index"),
], ids=["syntax", "name", "distribution", "loop-index"])
@pytest.mark.parametrize("command", ["check", "compile", "info", "simulate", "infer", "graph"])
def test_model_file_errors(capsys: pytest.CaptureFixture, tmp_path: Path, command: str, source: str,
                           where: str, words: str) -> None:
    path = tmp_path / "bad.ppl"
    path.write_text(source)
    err = user_error(capsys, command, str(path))
    assert err.startswith(f"{path}:{where}: error: "), err
    assert words in err
    assert "^" in err  # the caret row


@pytest.mark.parametrize("emit", ["ast", "ir", "jax"])
def test_compile_reports_errors_for_every_stage(capsys: pytest.CaptureFixture, tmp_path: Path, emit: str) -> None:
    path = tmp_path / "bad.ppl"
    path.write_text("model m(:\n")
    err = user_error(capsys, "compile", str(path), "--emit", emit)
    assert err.startswith(f"{path}:1:9: error:")


def test_missing_model_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    err = user_error(capsys, "check", str(tmp_path / "nope.ppl"))
    assert "nope.ppl" in err and "cannot read" in err


def test_unknown_model_name(capsys: pytest.CaptureFixture) -> None:
    err = user_error(capsys, "simulate", COIN, "--model", "con", "--data", COIN_DATA)
    assert "no model, guide or objective named `con`" in err and "did you mean `coin`?" in err


def test_unknown_model_for_ir(capsys: pytest.CaptureFixture) -> None:
    err = user_error(capsys, "compile", COIN, "--emit", "ir", "--model", "nope")
    assert "`nope`" in err and "coin" in err


def test_unknown_proposal(capsys: pytest.CaptureFixture) -> None:
    err = user_error(capsys, "infer", COIN, "--data", COIN_DATA, "--proposal", "qq")
    assert "`qq`" in err


def test_objective_is_not_runnable(capsys: pytest.CaptureFixture, guide_file: Path) -> None:
    err = user_error(capsys, "simulate", str(guide_file), "--model", "elbo", "--data", COIN_DATA)
    assert "`elbo` is an objective" in err


def test_missing_data_for_an_argument(capsys: pytest.CaptureFixture) -> None:
    err = user_error(capsys, "simulate", COIN)
    assert err.startswith(f"{COIN}:{coin_line('model coin')}:12: error: missing data for argument `n`")


def test_data_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"n": 10, "flips": [1, 0]}))
    err = user_error(capsys, "infer", "--method", "is", COIN, "--data", str(data), "-n", "10")
    assert err.startswith(f"{COIN}:{coin_line('flips[i]')}:9: error: observed `flips` has shape (2,)")
    assert "\n    " + Path(COIN).read_text().splitlines()[coin_line("flips[i]") - 1] + "\n" in err
    data.write_text('{"n": 10,, "flips": []}')
    err = user_error(capsys, "graph", COIN, "--data", str(data))
    assert err.startswith(f"{data}:1:10: error: data file is not valid JSON")
    err = user_error(capsys, "simulate", COIN, "--data", str(tmp_path / "absent.json"))
    assert "absent.json" in err


@pytest.mark.parametrize("command", ["simulate", "infer"])
@pytest.mark.parametrize("n", ["0", "-5"])
def test_number_of_samples_must_be_positive(capsys: pytest.CaptureFixture, command: str, n: str) -> None:
    err = user_error(capsys, command, COIN, "--data", COIN_DATA, "-n", n)
    assert "num-samples" in err or "number of samples" in err


@pytest.mark.parametrize("argv", [
    ["compile", COIN, "-o", "{missing}/gen.py"],
    ["simulate", COIN, "--data", COIN_DATA, "-n", "5", "--output", "{missing}/draws.json"],
    ["infer", "--method", "is", COIN, "--data", COIN_DATA, "-n", "5", "--output", "{missing}/post.json"],
], ids=["compile", "simulate", "infer"])
def test_unwritable_output_is_a_user_error(capsys: pytest.CaptureFixture, tmp_path: Path, argv: list[str]) -> None:
    missing = str(tmp_path / "no" / "such" / "dir")
    err = user_error(capsys, *[a.format(missing=missing) for a in argv])
    assert missing in err


def test_impossible_data_is_not_reported_as_a_nan_posterior(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """A flip recorded as 2 cannot come from bernoulli: a user error, not `mean nan` with exit code 0."""
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"n": 3, "flips": [2, 0, 1]}))
    err = user_error(capsys, "infer", "--method", "is", COIN, "--data", str(data), "-n", "50")
    assert "flips" in err


def test_file_without_models(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = tmp_path / "only_guide.ppl"
    path.write_text("guide q():\n    a ~ normal(0.0, 1.0)\n")
    err = user_error(capsys, "simulate", str(path))
    assert "declares no model" in err


@pytest.mark.parametrize("argv", [["frobnicate"], [], ["check"], ["infer", "--method", "is", COIN, "--seed", "x"]],
                         ids=["unknown-command", "no-command", "no-file", "bad-seed"])
def test_usage_errors_are_user_errors(capsys: pytest.CaptureFixture, argv: list[str]) -> None:
    """A mistake on the command line is the user's: exit code 1 (2 means a bug in pplang)."""
    err = user_error(capsys, *argv)
    assert "usage:" in err


def test_help_exits_0(capsys: pytest.CaptureFixture) -> None:
    out = ok(capsys, "--help")
    assert "usage:" in out and "check" in out and "infer" in out


# ---------------------------------------------------------------- internal errors: exit code 2


def test_internal_error_exits_2_and_asks_for_a_report(capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli.program, "cmd_check", broken)
    code, out, err = run(capsys, "check", COIN)
    assert code == 2
    assert "internal error in pplang; please report it" in err
    assert "RuntimeError: boom" in err


def test_internal_error_in_a_lower_layer(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import pplang.compiler.pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(pplang.compiler.pipeline, "exec_module", broken)
    code, _, err = run(capsys, "compile", COIN, "--emit", "jax")
    assert code == 2
    assert "please report" in err


def test_keyboard_interrupt(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.graph, "cmd_info", interrupted)
    code, _, err = run(capsys, "info", COIN)
    assert code == 130
    assert "interrupted" in err and "Traceback" not in err


# ---------------------------------------------------------------- the installed console script


def console_script() -> list[str]:
    exe = Path(sys.executable).parent / "pplang"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pplang.cli"]


def test_console_script_success_and_user_error(tmp_path: Path) -> None:
    done = subprocess.run([*console_script(), "check", COIN], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ok (1 declaration: model coin)" in done.stdout
    bad = tmp_path / "bad.ppl"
    bad.write_text("model m():\n    y ~ normal(0.0, sigam)\n")
    done = subprocess.run([*console_script(), "check", str(bad)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith(f"{bad}:2:21: error: unknown name `sigam`")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_compile_one_declaration(capsys: pytest.CaptureFixture) -> None:
    out = ok(capsys, "compile", "examples/linreg.ppl", "--model", "ols_proposal")
    assert "def ols_proposal(" in out and "def linreg(" not in out


def test_every_command_takes_x64_before_or_after_the_verb() -> None:
    p = cli.parser()
    commands = p._subparsers._group_actions[0].choices  # every registered verb
    assert {"check", "compile", "simulate", "infer", "fit", "smc", "amortize", "posterior", "graph", "info"} <= set(
        commands)
    for name, command in commands.items():
        assert any("--x64" in a.option_strings for a in command._actions), f"`pplang {name}` lacks --x64"
    assert p.parse_args(["check", COIN, "--x64"]).x64 and p.parse_args(["--x64", "check", COIN]).x64
    assert not p.parse_args(["check", COIN]).x64


def test_x64_gives_float64_draws_from_the_command_line_and_the_environment(tmp_path: Path) -> None:
    """Float32 draws survive a round trip through float32; float64 ones (almost all) do not."""
    out = tmp_path / "draws.json"
    done = subprocess.run([*console_script(), "simulate", COIN, "--data", COIN_DATA, "-n", "50", "--x64",
                           "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    p = np.asarray(json.loads(out.read_text())["p"])
    assert np.mean(p.astype(np.float32).astype(np.float64) != p) > 0.9
    code = (f"import pplang as pp; m = pp.load({COIN!r})['coin']; "
            "print(m.simulate({'n': 3}, seed=0)['p'].dtype, 'enable_x64' in dir(pp))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PPLANG_X64": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["float64", "True"]


def test_the_parser_names_the_optimizers_and_schedules_that_fit_builds() -> None:
    from pplang.cli import common
    from pplang.inference import variational

    assert common.OPTIMIZERS == variational.OPTIMIZERS and common.LR_SCHEDULES == variational.LR_SCHEDULES


def test_learning_rate_schedules_run_from_the_peak_to_the_end_rate(capsys: pytest.CaptureFixture) -> None:
    from pplang.inference.variational import learning_rate_schedule

    for kind in ("cosine", "exponential", "linear"):
        f = learning_rate_schedule(kind, 0.1, 1000, 1e-3)
        assert float(f(0)) == pytest.approx(0.1) and float(f(1000)) == pytest.approx(1e-3, rel=1e-3), kind
    f = learning_rate_schedule("warmup_cosine", 0.1, 1000)
    assert float(f(0)) == 0.0 and float(f(100)) == pytest.approx(0.1) and float(f(1000)) == pytest.approx(1e-4)
    assert learning_rate_schedule("constant", 0.1, 1000) == 0.1
    assert main(["fit", COIN, "--data", COIN_DATA, "--lr-end", "0.001", "--steps", "10", "--no-progress"]) == 1
    assert "needs a decaying schedule" in capsys.readouterr().err
    code = main(["fit", COIN, "--data", COIN_DATA, "--lr-schedule", "warmup_cosine", "--steps", "100",
                 "--tol", "1e-3", "--tol-window", "20", "--no-progress"])
    assert code == 0, capsys.readouterr().err


def test_an_optax_optimizer_keeps_its_own_schedule() -> None:
    import optax

    from pplang.inference.variational import make_optimizer

    given = optax.adam(0.1)
    assert make_optimizer(given, 0.01, 100) is given
    with pytest.raises(pp.PplError, match="an optax optimizer was given"):
        make_optimizer(given, 0.01, 100, "cosine")
    with pytest.raises(pp.PplError, match="unknown optimizer"):
        make_optimizer("adma", 0.01, 100)
