"""What the synthetic images lack: within-class variety, per class, for finished study jobs.

    python experiments/augmentation/variety.py k10_s0 k50_s0 [--work /tmp/ganlab-augmentation]

For each job: the mean over pixels of the per-pixel standard deviation (images in [-1, 1]) across
the k real training images of each class, and across that class's plain synthetic images; and
what the full-data label classifier calls the synthetic images of each class (its most frequent
prediction and that prediction's share). Writes ``results/variety.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def read_idx(path: Path) -> np.ndarray:
    import gzip
    import struct

    raw = gzip.decompress(path.read_bytes())
    nd = raw[3]
    shape = struct.unpack(f">{nd}I", raw[4 : 4 + 4 * nd])
    return np.frombuffer(raw[4 + 4 * nd :], dtype=np.uint8).reshape(shape)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("jobs", nargs="+")
    p.add_argument("--work", default="/tmp/ganlab-augmentation")
    p.add_argument("--out", default=str(HERE / "results" / "variety.json"))
    args = p.parse_args()
    import sys

    sys.path.insert(0, str(HERE))
    from run import data_root, full_datamodule  # noqa: E402

    from ganlab.metrics.classifier import get_label_classifier, predict

    dm = full_datamodule(data_root(None), Path(args.work) / "cache")
    clf, _ = get_label_classifier(dm, cache_dir=str(Path(args.work) / "cache" / "classifier"), steps=800)
    names = list(dm.class_names)
    out = {}
    for job in args.jobs:
        d = Path(args.work) / job
        xr = read_idx(d / "fashion-subset" / "train-images-idx3-ubyte.gz") / 127.5 - 1
        yr = read_idx(d / "fashion-subset" / "train-labels-idx1-ubyte.gz")
        with np.load(d / "synthetic_plain.npz") as z:
            xs, ys = z["x"], z["y"]
        pred = predict(clf, xs)
        rows = {}
        for c, n in enumerate(names):
            pc = pred[ys == c]
            top = int(np.bincount(pc, minlength=10).argmax())
            rows[n] = {"real_std": float(xr[yr == c].std(0).mean()),
                       "synthetic_std": float((xs[ys == c, 0] / 127.5 - 1).std(0).mean()),
                       "classified_as": names[top], "share": float((pc == top).mean())}
        out[job] = rows
        print(f"\n{job}\n| class | pixel std real | pixel std synthetic | full-data classifier calls it |")
        print("| --- | ---: | ---: | --- |")
        for n, r in rows.items():
            print(f"| {n} | {r['real_std']:.3f} | {r['synthetic_std']:.3f} | {r['classified_as']} ({100 * r['share']:.0f} %) |")
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
