"""Has D memorised its training faces?  D's score on the faces it trained on vs faces it never saw.

    OMP_NUM_THREADS=1 python experiments/limited_data/overfit.py [--work /tmp/ganlab_limited_data]

The direct overfitting check of Karras et al. 2020 (ADA, Fig. 1): for every finished job of run.py
trained on N < 6,000 faces, the final discriminator scores ``--n`` of its N training faces and ``--n``
of the 6,000 - N shared faces it never saw (the rows ``data.max_images=N`` leaves out), un-augmented,
plus ``--n`` fakes of the raw generator (noise seed 0; not the EMA). G and D run in training mode on batches of 64 of one
kind, as in its training step (its batch norm uses the batch statistics), under ``no_grad``. A score
(``loss.score``: the sigmoid for BCE) much higher on training faces than on unseen ones means D has
memorised them; equal scores mean it has not. Writes ``results/overfit.json`` and ``results/overfit.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
BATCH = 64


def all_faces():
    """The 6,000 shared faces as run.py's jobs decode them (crop 178, Lanczos, 64 px), natural order."""
    import os

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    with initialize_config_dir(str(HERE.parents[1] / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=["data=celeba", "data.crop=178", "data.resize_filter=lanczos",
                                             "data.resolution=64", "data.split=all", "metrics.split=all",
                                             "fake_dir=unused"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    view = dm.split_images("all")
    assert len(view) == 6000, f"expected the 6,000 shared faces under {os.environ.get('GANLAB_DATA')}, got {len(view)}"
    return view


@torch.no_grad()
def scores(model, images: torch.Tensor) -> torch.Tensor:
    from ganlab.utils.pixels import to_float

    d = model.discriminator.train()
    out = [model.loss.score(d(to_float(images[i:i + BATCH]), None)).flatten()
              for i in range(0, len(images) - BATCH + 1, BATCH)]
    return torch.cat(out)


def check(ckpt: Path, n_images: int, faces, n: int) -> dict:
    from ganlab.data.annotations import evenly_spaced
    from ganlab.utils.pixels import to_uint8
    from ganlab.models import load_gan

    model = load_gan(str(ckpt), map_location="cpu")
    trained = evenly_spaced(len(faces), n_images)
    unseen = np.setdiff1d(np.arange(len(faces)), trained)
    rng = np.random.default_rng(0)
    pick = lambda rows: torch.from_numpy(np.asarray(faces[np.sort(rng.choice(rows, min(n, len(rows)), replace=False))]))
    with torch.no_grad():  # the raw generator D trained against, in training mode like D
        z = torch.randn(n, model.generator.z_dim, generator=torch.Generator().manual_seed(0))
        fakes = torch.cat([to_uint8(model.generator.train()(z[i:i + BATCH])) for i in range(0, n, BATCH)])
    tr, un = scores(model, pick(trained)), scores(model, pick(unseen))
    out = {"d_train_faces": float(tr.mean()), "d_unseen_faces": float(un.mean()),
           "d_fakes": float(scores(model, fakes).mean()), "n_each": n, "gap": float(tr.mean() - un.mean()),
           "gap_stderr": float((tr.var() / len(tr) + un.var() / len(un)).sqrt())}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/ganlab_limited_data")
    ap.add_argument("--n", type=int, default=960, help="faces of each kind (a multiple of 64)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    torch.manual_seed(0)
    faces = all_faces()
    rows = []
    for res in sorted(Path(args.work).glob("*/result.json")):
        r = json.load(open(res))
        if r["n_images"] >= len(faces):
            continue
        ck = res.parent / "train" / "checkpoints" / "last.ckpt"
        rows.append({"n_images": r["n_images"], "arm": r["arm"], "seed": r["seed"], "steps": r["steps"],
                     **check(ck, r["n_images"], faces, args.n)})
        print(rows[-1], flush=True)
    out = Path(args.out)
    json.dump(rows, open(out / "overfit.json", "w"), indent=2)
    md = ["# D's score on its training faces vs unseen faces (experiments/limited_data/overfit.py)", "",
          f"{args.n} of each kind; D in training mode on batches of 64 of one kind, un-augmented; "
          "score = the loss's score (sigmoid for BCE).", "",
          "| images | arm | seed | steps | D(training faces) | D(unseen faces) | gap (± std. error) | D(fakes) |",
          "|---:|---|---:|---:|---:|---:|---:|---:|"]
    md += [f"| {r['n_images']} | {r['arm']} | {r['seed']} | {r['steps']} | {r['d_train_faces']:.3f} | "
           f"{r['d_unseen_faces']:.3f} | {r['gap']:+.3f} ± {r['gap_stderr']:.3f} | {r['d_fakes']:.3f} |"
           for r in sorted(rows, key=lambda r: (r["n_images"], r["arm"], r["seed"]))]
    (out / "overfit.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
