"""How many classifier steps the settings study needs: the two classic arms of the imbalanced setting
(7 complete classes of 6,000 images; optionally the classifier on all 60,000 training images), trained for each
of ``--steps`` and scored on the 10,000 real test images (accuracy, balanced accuracy, minority recall,
CPU seconds). Writes ``results/clf_steps.md`` / ``.json`` (resumable: finished rows are kept).

    OMP_NUM_THREADS=1 GANLAB_DATA=/work/shared/data python experiments/augmentation/clf_steps.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE))
    import numpy as np
    import torch

    from run import cpu_seconds, data_root, fit_and_score, full_datamodule
    from settings import class_balanced_weights, imbalanced_split, recall_metrics

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[150, 500, 1500, 3000])
    p.add_argument("--arms", nargs="+", default=["oversample+classic", "class-balanced"],
                   choices=["oversample+classic", "class-balanced", "all 60,000"])
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beta", type=float, default=0.9999)
    p.add_argument("--work", default="/tmp/ganlab-settings")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    torch.set_num_threads(1)
    dm = full_datamodule(data_root(None), Path(args.work) / "cache")
    names = list(dm.class_names)
    x, y = np.asarray(dm.split_images("train")), np.asarray(dm.split_labels("train"))
    test = (np.asarray(dm.split_images("test")), np.asarray(dm.split_labels("test")))
    idx, minority = imbalanced_split(y, args.k, args.seed)
    counts = np.bincount(y[idx], minlength=len(names))
    arms = {"oversample+classic": (x[idx], y[idx], {"sample_weights": 1.0 / counts[y[idx]]}),
            "class-balanced": (x[idx], y[idx], {"class_weights": class_balanced_weights(counts, args.beta)}),
            "all 60,000": (x, y, {})}
    out = Path(args.out)
    record = {"k": args.k, "seed": args.seed, "minority": minority, "beta": args.beta, "rows": []}
    if (out / "clf_steps.json").exists():  # resumable: rows of the same split are kept, not retrained
        old = json.loads((out / "clf_steps.json").read_text())
        if all(old[key] == record[key] for key in ("k", "seed", "minority", "beta")):
            record["rows"] = old["rows"]
    rows = record["rows"]
    for steps in args.steps:
        for arm in args.arms:
            if any(r["arm"] == arm and r["steps"] == steps for r in rows):
                continue
            xa, ya, kw = arms[arm]
            c0 = cpu_seconds()
            _, rep = fit_and_score(xa, ya, test, names, steps=steps, seed=args.seed, classic=True, **kw)
            rows.append({"arm": arm, "steps": steps, **recall_metrics(rep, names, minority),
                         "cpu_seconds": round(cpu_seconds() - c0, 1)})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_class"}), flush=True)
            (out / "clf_steps.json").write_text(json.dumps(record, indent=1) + "\n")
    rows.sort(key=lambda r: (r["arm"], r["steps"]))
    lines = [f"Imbalanced split k = {args.k}, seed {args.seed} (minority: {', '.join(names[c] for c in minority)}); "
             "CompactCNN, batch 128, classic augmentation; % on the 10,000 real test images; one thread.", "",
             "| arm | steps | accuracy | balanced accuracy | minority recall | CPU s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['arm']} | {r['steps']} | {100 * r['accuracy']:.1f} | {100 * r['balanced_accuracy']:.1f} | "
              f"{100 * r['minority_recall']:.1f} | {r['cpu_seconds']:.0f} |" for r in rows]
    (out / "clf_steps.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
