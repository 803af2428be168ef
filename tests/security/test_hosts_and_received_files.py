"""A model file, a results folder and a checkpoint are data: none of them can reach Python the user
did not hand over. Host values expose only their public attributes (never `_` names, in either
front end, at check time and again at run time); a results folder's saved source is compiled with
no hosts and only when it matches its hash; every field read from a folder or checkpoint is checked.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from pplang.runtime import Context
from pplang.runtime.archives import load_npz
from pplang.runtime.optimize import CheckpointError, optimize

import pplang as pp


class Host:
    """A bound host with a public method, a private one and the usual dunders."""

    def scale(self, x: object) -> object:
        return 2.0 * x

    def _secret(self, x: object) -> object:  # pragma: no cover - must never be reached
        raise AssertionError("a model reached a private attribute")


HIDDEN = ["h._secret", "h.__class__", "h.__init__.__globals__", "h.scale.__globals__", "h.__dict__",
          "_h", "h.__setattr__", "h.scale.__func__"]


@pytest.mark.parametrize("name", HIDDEN)
def test_a_file_cannot_reach_a_hosts_private_attributes(name: str) -> None:
    src = f"model m():\n    x ~ normal(0.0, 1.0)\n    y = {name}(x)\n"
    with pytest.raises(pp.PplError, match="names beginning with `_` are not reachable") as info:
        pp.loads(src, hosts={"h": Host(), "_h": Host()}, file="evil.ppl")
    assert "evil.ppl:3" in str(info.value)


def test_a_public_attribute_of_a_host_still_works() -> None:
    src = "model m():\n    x ~ normal(0.0, 1.0)\n    return h.scale(x)\n"
    m = pp.loads(src, hosts={"h": Host()}, file="ok.ppl")["m"]
    tr = m.simulate({}, seed=0)
    assert float(tr.retval) == pytest.approx(2.0 * float(tr["x"]))


def test_the_python_front_end_has_the_same_rule() -> None:
    h = Host()

    def m():  # noqa: ANN202 - a decorated model
        x = pp.sample(pp.normal(0.0, 1.0))
        return h._secret(x)

    with pytest.raises(pp.PplError, match="names beginning with `_` are not reachable"):
        pp.model(m)


@given(st.lists(st.from_regex(r"_[A-Za-z_]{0,8}", fullmatch=True), min_size=1, max_size=3),
       st.integers(min_value=0, max_value=3))
@settings(max_examples=40, deadline=None)
def test_no_underscore_path_compiles(private: list[str], at: int) -> None:
    parts = ["scale", "real"][: at % 2 + 1]
    parts.insert(at % (len(parts) + 1), private[0])
    src = f"model m():\n    x ~ normal(0.0, 1.0)\n    y = h.{'.'.join(parts + private[1:])}(x)\n"
    with pytest.raises(pp.PplError):
        pp.loads(src, hosts={"h": Host()}, file="f.ppl")


def test_the_runtime_refuses_private_attributes_too() -> None:
    ctx = Context({}, {}, {"h": Host()})
    assert ctx.host("h", "scale")(1.0) == 2.0
    with pytest.raises(AttributeError, match="not reachable"):
        ctx.host("h", "__class__")


# ---------------------------------------------------------------- received results folders

AMORTIZED = Path(__file__).resolve().parents[2] / "examples" / "amortized_normal.ppl"


@pytest.fixture(scope="module")
def saved_posterior(tmp_path_factory: pytest.TempPathFactory) -> Path:
    module = pp.load(str(AMORTIZED))
    collection = json.loads((AMORTIZED.parent / "amortized_normal.collection.json").read_text())
    result = pp.amortize(module["repeated"], module["repeated_q"], collection, shared={"N": 5}, epochs=1,
                         progress=False)
    folder = tmp_path_factory.mktemp("posterior") / "saved"
    result.save(folder)
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    return out


def test_a_saved_posterior_loads_from_its_own_source(saved_posterior: Path) -> None:
    from pplang.stdlib.networks import Network

    post = pp.AmortizedPosterior.load(saved_posterior)
    # no host functions: only the networks the file itself declares
    for program in (post.model, post.guide):
        assert set(program.hosts) <= {"encoder"}
        assert all(isinstance(v, Network) for v in program.hosts.values())


def test_hosts_are_never_bound_to_a_received_source(saved_posterior: Path) -> None:
    with pytest.raises(pp.PplError, match="hosts are bound only to programs compiled from your own source"):
        pp.AmortizedPosterior.load(saved_posterior, hosts={"h": Host()})


def test_a_changed_source_is_refused(saved_posterior: Path, tmp_path: Path) -> None:
    folder = copy_of(saved_posterior, tmp_path)
    info = json.loads((folder / "info.json").read_text())
    info["programs"]["model"]["source"] += "\nmodel extra():\n    z ~ normal(0.0, 1.0)\n"
    (folder / "info.json").write_text(json.dumps(info))
    with pytest.raises(pp.PplError, match="does not match its hash"):
        pp.AmortizedPosterior.load(folder)


@pytest.mark.parametrize("damage", [
    lambda info: info.update(programs=[1, 2]),
    lambda info: info["programs"].update(model="not a record"),
    lambda info: info["programs"]["guide"].update(name=7),
    lambda info: info.update(shared=[1]),
])
def test_damaged_records_are_clear_errors(saved_posterior: Path, tmp_path: Path, damage: object) -> None:
    folder = copy_of(saved_posterior, tmp_path)
    info = json.loads((folder / "info.json").read_text())
    damage(info)
    (folder / "info.json").write_text(json.dumps(info))
    with pytest.raises(pp.PplError, match="damaged"):
        pp.AmortizedPosterior.load(folder)


def test_info_that_is_not_an_object_is_a_clear_error(saved_posterior: Path, tmp_path: Path) -> None:
    folder = copy_of(saved_posterior, tmp_path)
    (folder / "info.json").write_text("[1, 2, 3]")
    with pytest.raises(pp.PplError, match="info.json does not hold an object"):
        pp.AmortizedPosterior.load(folder)


def test_an_archive_that_would_inflate_too_far_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    np.savez_compressed(path, a=np.zeros(2_000_000))  # 16 MB of zeros in a few kilobytes
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match="would take"):
        load_npz(path, limit=1_000_000)
    assert load_npz(path)["a"].shape == (2_000_000,)
    (tmp_path / "not.npz").write_bytes(b"PK\x03\x04 but not a zip")
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_npz(tmp_path / "not.npz")


# ---------------------------------------------------------------- checkpoints


def quadratic(params: dict, key: object, state: dict) -> tuple:
    return -jnp.sum(params["x"] ** 2), {"x": -2.0 * params["x"]}, state


def rewrite(path: Path, change: object) -> None:
    with zipfile.ZipFile(path) as z:
        arrays = {n[:-4]: np.load(z.open(n), allow_pickle=False) for n in z.namelist()}
    meta = json.loads(str(arrays["meta"]))
    change(meta, arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


@pytest.mark.parametrize("change", [
    lambda meta, arrays: meta.update(step=10**12),
    lambda meta, arrays: meta.update(step=-50),
    lambda meta, arrays: meta.update(step="40"),
    lambda meta, arrays: meta.pop("skipped"),
    lambda meta, arrays: meta.update(params={"path": "x"}),
    lambda meta, arrays: meta.update(params=[["x"]]),
    lambda meta, arrays: meta.update(first_bad_step=99),
    lambda meta, arrays: arrays.update({"params/0": np.zeros(5)}),
])
def test_a_damaged_fit_checkpoint_is_refused(tmp_path: Path, change: object) -> None:
    args = dict(steps=40, key=__import__("jax").random.key(0), chunk=20, progress=False, checkpoint=tmp_path)
    optimize(quadratic, {"x": jnp.ones(3)}, {}, optax.sgd(0.1), **args)
    rewrite(tmp_path / "checkpoint.npz", change)
    with pytest.raises(CheckpointError):
        optimize(quadratic, {"x": jnp.ones(3)}, {}, optax.sgd(0.1), **{**args, "steps": 60}, resume=True)


def test_a_damaged_mcmc_checkpoint_is_refused(tmp_path: Path) -> None:
    m = pp.loads("model m():\n    a ~ normal(0.0, 1.0)\n", file="m.ppl")["m"]
    kw = dict(chains=2, warmup=20, draws=20, seed=0, progress=False, chunk=10, checkpoint=tmp_path)
    first = pp.sample(m, {}, **kw)
    path = tmp_path / "mcmc_checkpoint.npz"
    rewrite(path, lambda meta, arrays: meta.update(done=10**9))
    with pytest.raises(pp.PplError, match="damaged"):
        pp.sample(m, {}, **kw)
    rewrite(path, lambda meta, arrays: meta.update(done=40))
    rewrite(path, lambda meta, arrays: arrays.update({"carry/0": np.zeros((7, 7))}))
    with pytest.raises(pp.PplError, match="damaged"):
        pp.sample(m, {}, **kw)
    assert first.draws["a"].shape == (2, 20)
