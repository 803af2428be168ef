"""Lesson 11, in Python: a variational autoencoder on handwritten digits (see vae.ppl).

    python examples/vae.py [EPOCHS] [FOLDER]

Trains the model of vae.ppl (decoder) with the guide of vae_guide.ppl (encoder) on the 1,797
digits of examples/digits.npz, then writes FOLDER/digits.png (default results/vae) with what the
model learned:

1. digits the decoder makes from a grid of points on the latent plane (each pixel the average of
   32 draws of its count);
2. twelve images above their reconstructions (each encoded to a point, then decoded);
3. where the encoder puts each image on the plane, coloured by the digit it shows (the labels in
   digits.labels.json; training never sees them).

It also prints the ELBO per image, the reconstruction error against the crudest baseline (the
average image), and, for one image, how far the amortized answer is from a guide fitted to that
image alone with the decoder held fixed (the amortization gap).
"""

import json
import sys
from pathlib import Path

import numpy as np

import pplang as pp

HERE = Path(__file__).resolve().parent


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    folder = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("results/vae")
    x = pp.load_data(str(HERE / "digits.npz"))["x"]
    digit = np.asarray(json.loads((HERE / "digits.labels.json").read_text())["digit"])
    model = pp.load(str(HERE / "vae.ppl"))["vae"]
    guide = pp.load(str(HERE / "vae_guide.ppl"))["vae_q"]

    vae = pp.amortize(model, guide, {"x": x}, epochs=epochs, batch_size=64, learning_rate=3e-3, progress=False)
    print(vae.summary())
    print(f"trained in {vae.info['wall_s']:.1f} s ({vae.info['timings'].compile_s:.1f} s compiling)")

    rec = vae.predictive({"x": x}, num_samples=1)["x"][:, 0]
    print(f"reconstruction error (mean |pixel difference|, pixels 0..16): {np.abs(rec - x).mean():.2f}; "
          f"the average image: {np.abs(x.mean(0) - x).mean():.2f}")

    gap = vae.compare({"x": x[0]}, guide="full_rank", steps=2000, num_samples=4000)
    print(f"image 0, amortized vs fitted to it alone: {gap.summary()}")

    vae.save(folder, plots=True, overwrite=True)  # this script's own folder: each run replaces it
    plot(vae, x, digit, folder / "digits.png")
    print(f"plots and the trained posterior in {folder}")


def plot(vae: "pp.AmortizedPosterior", x: np.ndarray, digit: np.ndarray, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 5), layout="constrained")
    FigureCanvasAgg(fig)
    grid, recon, space = fig.subplots(1, 3)

    side = np.linspace(-2.0, 2.0, 10)
    points = np.array([[a, b] for b in side[::-1] for a in side])
    made = vae.sample(given={"z": np.repeat(points, 32, axis=0)})["x"].reshape(100, 32, 8, 8).mean(1)
    grid.imshow(tiles(made, 10), cmap="gray_r", vmin=0, vmax=16)
    grid.set_title("decoded from a grid of points z in [-2, 2]^2")

    shown = x[:12]
    rec = vae.predictive({"x": shown}, num_samples=1)["x"][:, 0]
    recon.imshow(tiles(np.concatenate([shown, rec]).reshape(24, 8, 8), 12), cmap="gray_r", vmin=0, vmax=16)
    recon.set_title("images (top) and their reconstructions (bottom)")

    loc = vae.posterior({"x": x}, num_samples=16).mean()["z"]
    dots = space.scatter(loc[:, 0], loc[:, 1], c=digit, cmap="tab10", s=6)
    fig.colorbar(dots, ax=space, label="digit")
    space.set_title("posterior mean of z for each image")
    for ax in (grid, recon):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=100)


def tiles(images: np.ndarray, per_row: int) -> np.ndarray:
    """8 x 8 images side by side, `per_row` to a row, one blank pixel between them."""
    padded = np.pad(images, ((0, 0), (1, 0), (1, 0)))
    rows = padded.reshape(-1, per_row, 9, 9).transpose(0, 2, 1, 3)
    return rows.reshape(rows.shape[0] * 9, per_row * 9)


if __name__ == "__main__":
    main()
