"""No lost files and honest exit codes: results folders, `--output` files, plots and checkpoints
never replace existing files without --force (overwrite=True), a results folder is written whole
(a crash while saving leaves the previous one as it was, and no temporary folder), a path of the
wrong kind is a user error, and a run that stops early keeps its last good state and exits with
the documented code (3: a non-finite value, 130: Ctrl-C)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pplang.compiler.diagnostics import PplError

import pplang as pp
import pplang.inference.variational as variational
import pplang.results as results_module
from pplang.cli import common, main
from pplang.files import new_file, new_folder, write_file
from pplang.results import FitResult

ROOT = Path(__file__).resolve().parents[2]
COIN = str(ROOT / "examples" / "coin.ppl")
COIN_DATA = str(ROOT / "examples" / "coin.data.json")
HIERARCHICAL_DATA = str(ROOT / "examples" / "vi_hierarchical.data.json")

# docs/vi-tutorial.md, "NaNs": a variance declared `real` that a learning rate of 0.1 pushes below zero
LINE_VAR = """
model line(N: int, x: vector[N]):
    a ~ normal(0.0, 2.0)
    b ~ normal(0.0, 2.0)
    for i in range(N):
        y[i] ~ normal(a + b * x[i], 0.5)

guide line_var(N: int):
    param ma: real = 0.0
    param mb: real = 0.0
    param sa: positive = 0.5
    param vb: real = 0.25
    a ~ normal(ma, sa)
    b ~ normal(mb, sqrt(vb))
"""


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def fit_coin(capsys: pytest.CaptureFixture, folder: Path, *extra: str, steps: str = "200") -> tuple[int, str, str]:
    return run(capsys, "fit", COIN, "--data", COIN_DATA, "--steps", steps, "--draws", "50", "--no-progress",
               "--results", str(folder), *extra)


def contents(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under `folder` (but those under `skip`) by relative path, as a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).parts[0] not in skip}


def leftovers(parent: Path) -> list[str]:
    """Temporary or set-aside folders and files a save leaves beside its target."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- results folders


def test_an_existing_results_folder_is_refused_before_the_fit_and_kept(capsys: pytest.CaptureFixture,
                                                                       tmp_path: Path) -> None:
    folder = tmp_path / "res"
    assert fit_coin(capsys, folder)[0] == 0
    before = contents(folder)
    assert "params.npz" in before and "checkpoint/checkpoint.npz" in before
    code, out, err = fit_coin(capsys, folder, "--seed", "1")
    assert code == 1
    assert f"the results folder {folder} already exists and would be replaced" in err
    assert "--force" in err and "--resume" in err  # it holds a checkpoint: both ways on are offered
    assert "status:" not in out  # refused before fitting
    assert contents(folder) == before and leftovers(tmp_path) == []


def test_force_replaces_a_results_folder_whole(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    folder = tmp_path / "res"
    assert fit_coin(capsys, folder)[0] == 0
    (folder / "notes.txt").write_text("mine")
    code, _, err = fit_coin(capsys, folder, "--seed", "1", "--force")
    assert code == 0, err
    assert pp.FitResult.load(folder).info["seed"] == 1
    assert not (folder / "notes.txt").exists()  # replaced whole, not written over file by file
    assert (folder / "checkpoint" / "checkpoint.npz").exists() and leftovers(tmp_path) == []


def test_an_empty_folder_is_written_into(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    folder = tmp_path / "res"
    folder.mkdir()
    assert fit_coin(capsys, folder)[0] == 0
    assert pp.FitResult.load(folder).info["steps"] == 200


def test_a_crash_while_saving_leaves_the_previous_results_whole(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "res"
    assert fit_coin(capsys, folder)[0] == 0
    old = pp.FitResult.load(folder)
    before = contents(folder, skip=("checkpoint",))  # the checkpoint is the live state of the newest run
    write = results_module.write_files

    def crash(*args: object) -> None:  # params.npz, values.npy and info.json are written, then the crash
        write(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(results_module, "write_files", crash)
    code, _, err = fit_coin(capsys, folder, "--seed", "1", "--force")
    assert code == 130 and "interrupted" in err
    assert contents(folder, skip=("checkpoint",)) == before
    again = pp.FitResult.load(folder)
    assert again.info == old.info and np.array_equal(again.draws["p"], old.draws["p"])
    assert leftovers(tmp_path) == []

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module, "write_files", full)
    code, _, err = fit_coin(capsys, folder, "--seed", "1", "--force")
    assert code == 1 and "No space left on device" in err
    assert contents(folder, skip=("checkpoint",)) == before and leftovers(tmp_path) == []


def test_save_from_python_refuses_replaces_and_survives_a_failure(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    r = FitResult({"q": {"m": np.arange(3.0)}}, np.zeros(5), {"x": np.ones(4)}, {"model": "m", "seed": 0})
    folder = r.save(tmp_path / "fit")
    before = contents(folder)
    other = FitResult({"q": {"m": -np.arange(3.0)}}, np.ones(5), {"x": np.zeros(4)}, {"model": "m", "seed": 1})
    with pytest.raises(PplError, match="already exists"):
        other.save(folder)

    def half(file: object, **arrays: object) -> None:  # draws.npz half written, then the failure
        Path(file).write_bytes(b"PK\x03\x04 half")
        raise RuntimeError("killed")

    monkeypatch.setattr(results_module.np, "savez", half)
    with pytest.raises(RuntimeError, match="killed"):
        other.save(folder, overwrite=True)
    monkeypatch.undo()
    assert contents(folder) == before and leftovers(tmp_path) == []
    other.save(folder, overwrite=True)
    assert pp.FitResult.load(folder).info["seed"] == 1 and leftovers(tmp_path) == []


def test_paths_of_the_wrong_kind_are_user_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    for extra in ((), ("--force",)):
        code, _, err = fit_coin(capsys, taken, *extra)
        assert code == 1 and f"{taken} is a file, not a folder" in err and "hint:" in err
    code, _, err = fit_coin(capsys, taken / "res")
    assert code == 1 and f"{taken} is a file, not a folder" in err
    code, _, err = run(capsys, "fit", COIN, "--data", COIN_DATA, "--steps", "10", "--checkpoint", str(taken))
    assert code == 1 and "checkpoint folder" in err and "is a file" in err
    code, _, err = run(capsys, "sample", COIN, "--data", COIN_DATA, "--output", str(taken), "--force")
    assert code == 1 and "is a file, not a folder" in err
    code, _, err = run(capsys, "simulate", COIN, "--data", COIN_DATA, "-n", "5", "--output", str(tmp_path))
    assert code == 1 and f"{tmp_path} is a folder, not a file" in err
    code, _, err = run(capsys, "posterior", str(taken), "--data", COIN_DATA)
    assert code == 1 and "is a file, not a folder" in err
    assert taken.read_text() == "keep me"


# ---------------------------------------------------------------- output files and plots


@pytest.mark.parametrize("argv", [
    ["simulate", COIN, "--data", COIN_DATA, "-n", "5", "--output", "{out}"],
    ["infer", "--method", "is", COIN, "--data", COIN_DATA, "-n", "5", "--output", "{out}"],
    ["compile", COIN, "-o", "{out}"],
], ids=["simulate", "infer", "compile"])
def test_an_existing_output_file_is_replaced_only_with_force(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                             argv: list[str]) -> None:
    out = tmp_path / "out.txt"
    out.write_text("mine")
    code, stdout, err = run(capsys, *[a.format(out=out) for a in argv])
    assert code == 1 and f"{out} already exists" in err and "--force" in err
    assert out.read_text() == "mine" and "wrote" not in stdout
    code, _, err = run(capsys, *[a.format(out=out) for a in argv], "--force")
    assert code == 0, err
    assert out.read_text() != "mine" and leftovers(tmp_path) == []


def test_sample_refuses_its_outputs_before_sampling(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import pplang.inference.mcmc as mcmc

    monkeypatch.setattr(mcmc, "sample", lambda *a, **k: pytest.fail("sampled although the output is taken"))
    taken = tmp_path / "run"
    taken.mkdir()
    (taken / "draws.npz").write_bytes(b"mine")
    code, _, err = run(capsys, "sample", COIN, "--data", COIN_DATA, "--output", str(taken))
    assert code == 1 and "already exists" in err
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "rank.png").write_bytes(b"mine")
    (plots / "other.png").write_bytes(b"mine")
    code, _, err = run(capsys, "sample", COIN, "--data", COIN_DATA, "--plots", str(plots))
    assert code == 1 and "rank.png already exists" in err
    assert (taken / "draws.npz").read_bytes() == (plots / "rank.png").read_bytes() == b"mine"


def test_plots_are_not_replaced_unless_asked(tmp_path: Path) -> None:
    r = FitResult({}, np.linspace(-3, -1, 50), {"x": np.random.default_rng(0).normal(size=200)}, {})
    written = r.plot(tmp_path)
    assert [p.name for p in written] == ["objective.png", "marginals.png"]
    (tmp_path / "objective.png").unlink()
    (tmp_path / "marginals.png").write_bytes(b"mine")
    with pytest.raises(PplError, match="marginals.png already exists"):
        r.plot(tmp_path)
    assert (tmp_path / "marginals.png").read_bytes() == b"mine"
    assert not (tmp_path / "objective.png").exists()  # every name is checked before any plot is written
    r.plot(tmp_path, overwrite=True)
    assert (tmp_path / "marginals.png").read_bytes().startswith(b"\x89PNG")


def test_the_cli_names_the_plots_the_results_write() -> None:
    from pplang.cli import sample, smc
    from pplang.inference.filtering_result import PLOTS

    assert smc.PLOTS == PLOTS
    assert sample.PLOTS == ("trace.png", "rank.png", "ppc.png")


def test_a_file_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_file(path, "old")
    with pytest.raises(PplError, match="already exists"):
        write_file(path, "new")
    with pytest.raises(KeyboardInterrupt), new_file(path, overwrite=True) as f:
        f.write(b"ha")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and leftovers(tmp_path) == []
    write_file(path, "new", overwrite=True)
    assert path.read_text() == "new"
    with pytest.raises(PplError, match="does not exist"):
        write_file(tmp_path / "no" / "out.json", "x")
    with pytest.raises(RuntimeError), new_folder(tmp_path / "f") as tmp:
        (tmp / "a").write_text("a")
        raise RuntimeError
    assert not (tmp_path / "f").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- checkpoints


def test_a_fit_does_not_write_over_another_runs_checkpoint(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    args = ["fit", COIN, "--data", COIN_DATA, "--steps", "100", "--draws", "50", "--no-progress",
            "--checkpoint", str(ckpt)]
    assert run(capsys, *args)[0] == 0
    before = contents(ckpt)
    code, out, err = run(capsys, *args, "--seed", "1")
    assert code == 1 and "another run's checkpoint" in err and "--resume" in err and "--force" in err
    assert "status:" not in out and contents(ckpt) == before
    code, out, err = run(capsys, *args, "--steps", "200", "--resume")
    assert code == 0 and "after 200 steps" in out, err
    code, out, err = run(capsys, *args, "--seed", "1", "--force")
    assert code == 0 and "after 100 steps" in out, err
    with pytest.raises(PplError, match="another run's checkpoint"):
        variational.check_outputs(None, str(ckpt), False, False)


def test_resume_replaces_the_results_folder_whose_checkpoint_it_continues(capsys: pytest.CaptureFixture,
                                                                          tmp_path: Path) -> None:
    folder = tmp_path / "res"
    assert fit_coin(capsys, folder, "--checkpoint-every", "100")[0] == 0
    code, out, err = fit_coin(capsys, folder, "--checkpoint-every", "100", "--resume", steps="300")
    assert code == 0, err
    assert pp.FitResult.load(folder).info["steps"] == 300 and leftovers(tmp_path) == []
    with np.load(folder / "checkpoint" / "checkpoint.npz") as z:
        assert json.loads(str(z["meta"]))["step"] == 300
    # a checkpoint elsewhere does not make an existing results folder this run's
    code, _, err = fit_coin(capsys, folder, "--checkpoint", str(tmp_path / "ckpt"), "--resume", steps="400")
    assert code == 1 and "already exists" in err


# ---------------------------------------------------------------- runs that stop early


def test_a_fit_stopped_by_a_non_finite_value_exits_3_and_keeps_the_last_good_state(
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = tmp_path / "line_var.ppl"
    src.write_text(LINE_VAR)
    folder = tmp_path / "res"
    code, out, err = run(capsys, "fit", str(src), "--model", "line", "--guide", "line_var", "--data",
                         HIERARCHICAL_DATA, "--lr", "0.1", "--steps", "500", "--draws", "50", "--no-progress",
                         "--results", str(folder))
    assert code == common.EXIT_NOT_FINITE == 3
    assert "stopped early (nan" in err and f"{folder} (results)" in err and "checkpoint" in err
    assert "stopped at step 19" in err
    saved = pp.FitResult.load(folder)
    assert saved.info["status"] == "nan" and saved.info["steps"] == 19 and len(saved.values) == 19
    module = pp.load(str(src))
    good = pp.fit(module["line"], module["line_var"], data=pp.load_data(HIERARCHICAL_DATA), learning_rate=0.1,
                  steps=19, progress=False)
    assert good.info["status"] == "done"
    for name, value in good.params["line_var"].items():
        assert np.isfinite(saved.params["line_var"][name]).all()
        np.testing.assert_allclose(saved.params["line_var"][name], value, rtol=1e-5, atol=1e-6)
    with np.load(folder / "checkpoint" / "checkpoint.npz") as z:
        assert json.loads(str(z["meta"]))["step"] == 19
        assert all(np.isfinite(z[k]).all() for k in z.files if k.startswith("params/"))


def test_an_interrupted_fit_exits_130_and_says_where_its_state_is(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real = variational.optimize

    def interrupted(*args: object, **kwargs: object) -> object:  # Ctrl-C after the first 100 steps
        out = real(*args, **{**kwargs, "steps": 100})
        out.status, out.message = "interrupted", "interrupted after 100 of 200 steps"
        return out

    monkeypatch.setattr(variational, "optimize", interrupted)
    folder = tmp_path / "res"
    code, _, err = fit_coin(capsys, folder)
    assert code == common.EXIT_INTERRUPTED == 130
    assert "stopped early (interrupted" in err and f"{folder} (results)" in err
    assert pp.FitResult.load(folder).info["status"] == "interrupted"
    code, _, err = run(capsys, "fit", COIN, "--data", COIN_DATA, "--steps", "200", "--no-progress")
    assert code == 130 and "nothing was saved" in err


def test_an_interrupted_sample_exits_130_and_names_its_checkpoint(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import pplang.inference.mcmc as mcmc

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mcmc, "sample", interrupted)
    code, _, err = run(capsys, "sample", COIN, "--data", COIN_DATA, "--checkpoint", str(tmp_path / "c"))
    assert code == 130 and "stopped early (interrupted" in err and "rerun the same command to resume" in err


def test_amortize_refuses_an_existing_results_folder_before_training(capsys: pytest.CaptureFixture,
                                                                     tmp_path: Path) -> None:
    folder = tmp_path / "res"
    folder.mkdir()
    (folder / "params.npz").write_bytes(b"mine")
    code, out, err = run(capsys, "amortize", str(ROOT / "examples" / "amortized_normal.ppl"), "--model", "repeated",
                         "--guide", "repeated_q", "--simulate", "64", "--set", "N=5", "--epochs", "1",
                         "--no-progress", "--results", str(folder))
    assert code == 1 and "already exists" in err and out == ""
    assert (folder / "params.npz").read_bytes() == b"mine"
