"""What ganlab's metrics cost, and how FID depends on the number of generated samples.

    python experiments/metrics_cost/bench.py --device cpu  --n-real 300 --eval-n-fake 150 300 \
        --bias-n-fake 150 300 600 --train-steps 200 --out experiments/metrics_cost/results/cpu
    python experiments/metrics_cost/bench.py --device cuda --eval-n-fake 2000 10000 \
        --bias-n-fake 2000 5000 10000 50000 --train-steps 3000 --fidelity-cached \
        --out experiments/metrics_cost/results/cuda

Everything runs on one data set (``--data``, a ``conf/data`` name; default the procedural faces,
which need no download) and one generator checkpoint (``--ckpt``, or ``--train-steps N`` trains the
demo DCGAN of ``conf/train.yaml`` for N generator steps first). Parts:

1. **throughput**: InceptionV3 feature extraction (uint8 images of the data's resolution, resized
   inside the extractor to 299) in images/s;
2. **in-training evaluation**: what :class:`ganlab.callbacks.metrics.Metrics` does per
   evaluation (sample ``n_fake`` from the EMA generator, extract, FID + KID + precision/recall
   against cached reference features), against torch-fidelity's ``calculate_metrics`` on the same
   uint8 images (real and fake tensors as Datasets, same weights, ``feature_extractor=
   'inception-v3-compat'``), in the same run; with ``--fidelity-cached`` also torch-fidelity with
   its own on-disk cache of the reference (``input2_cache_name``), timed after the cache is filled;
3. **FID bias vs n_fake**: features of ``max(--bias-n-fake)`` samples extracted once; FID and KID
   of the first n samples, and mean +- std over disjoint blocks of n where there are >= 2 blocks.

Writes ``<out>/results.json`` and ``<out>/results.md``. On a CPU the extractor is ganlab's fast path
unless ``--cpu-path fidelity``; ``cpu_speed.py`` (same folder) compares the two paths' speed and
numbers in one run, ``cpu_stages.py`` profiles them stage by stage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ganlab.metrics import compute_metrics  # noqa: E402
from ganlab.metrics.inception import InceptionExtractor  # noqa: E402
from ganlab.utils.device import choose_device  # noqa: E402
from ganlab.metrics.reference import reference_features  # noqa: E402
from ganlab.metrics.fakes import GanSamples, gan_fake_features  # noqa: E402

TF_KEYS = {"fid": "frechet_inception_distance", "kid": "kernel_inception_distance_mean",
           "precision": "precision", "recall": "recall", "f1": "f_score"}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compose(overrides: list[str], config_name: str = "train"):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    import ganlab  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hcompose(config_name, overrides=overrides)


def build_data_and_model(args, work: Path):
    import hydra
    from omegaconf import open_dict

    common = [f"paths.root_dir={work}", f"paths.output_dir={work / 'train_run'}",
              f"paths.cache_dir={work / 'cache'}", f"data={args.data}", *args.data_override]
    if args.ckpt:
        cfg = compose(common)
        dm = hydra.utils.instantiate(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        from ganlab.models import load_gan

        return dm, load_gan(args.ckpt).to(args.device), args.ckpt, 0.0
    from ganlab.train import train

    cfg = compose([*common, f"generator_steps={args.train_steps}", "callbacks=[model_checkpoint]", "logger=csv",
                   f"trainer.accelerator={'gpu' if args.device.startswith('cuda') else 'cpu'}",
                   "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false"])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    t0 = time.perf_counter()
    _, trainer = train(cfg)
    t_train = time.perf_counter() - t0
    ckpt = work / "train_run" / "checkpoints" / "last.ckpt"
    from ganlab.models import load_gan

    return trainer.datamodule, load_gan(ckpt).to(args.device), str(ckpt), t_train


class UInt8Dataset(torch.utils.data.Dataset):
    """uint8 (N, 3, H, W) tensor as the Dataset torch-fidelity expects (one image per item)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1).contiguous()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def fidelity_metrics(fakes, reals, args, weights_path, n_fake, n_real, **extra) -> dict:
    from torch_fidelity import calculate_metrics

    return calculate_metrics(
        input1=UInt8Dataset(fakes), input2=UInt8Dataset(reals), fid=True, kid=True, prc=True,
        cuda=args.device.startswith("cuda"), batch_size=args.batch_size, feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=weights_path, kid_subset_size=min(1000, n_fake, n_real),
        rng_seed=2020, verbose=False, save_cpu_ram=not args.device.startswith("cuda"), **extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", default="faces")
    ap.add_argument("--data-override", nargs="*", default=[], help="extra Hydra overrides, e.g. data.resolution=64")
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--n-real", type=int, default=None, help="reference images (default: the whole train split)")
    ap.add_argument("--eval-n-fake", type=int, nargs="*", default=[2000, 10000])
    ap.add_argument("--bias-n-fake", type=int, nargs="*", default=[2000, 5000, 10000, 50000])
    ap.add_argument("--throughput-n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--fidelity-cached", action="store_true")
    ap.add_argument("--skip-fidelity", action="store_true")
    ap.add_argument("--weights-path", default=None)
    ap.add_argument("--cpu-path", choices=["fast", "fidelity"], default=None,
                    help="InceptionV3 forward on a CPU (default fast; fidelity = torch-fidelity's module as is)")
    ap.add_argument("--breakdown", action="store_true", help="also time FID, KID and PRC separately")
    ap.add_argument("--max-blocks", type=int, default=5, help="disjoint blocks per n_fake in the bias table")
    ap.add_argument("--out", default=str(REPO / "experiments" / "metrics_cost" / "results" / "run"))
    ap.add_argument("--work", default=None,
                    help="data cache / training run / feature caches (default: <tmp>/ganlab_metrics_bench)")
    args = ap.parse_args()
    args.device = str(choose_device(args.device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / "ganlab_metrics_bench"
    res: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(args.device),
                 "args": vars(args)}
    t_all = time.perf_counter()

    dm, model, ckpt, t_train = build_data_and_model(args, work)
    res["checkpoint"] = {"path": ckpt, "generator_step": int(model.generator_step), "train_seconds": round(t_train, 1)}
    split = "train"
    reals_all = np.asarray(dm.split_images(split))
    res["data"] = {"name": args.data, "overrides": args.data_override, "fingerprint": dm.fingerprint,
                   "train_split_size": int(len(reals_all)), "image_shape": list(reals_all.shape[1:])}
    print(json.dumps(res["data"]), flush=True)

    ext = InceptionExtractor(args.weights_path, device=args.device, batch_size=args.batch_size, cpu_path=args.cpu_path)
    res["extractor"] = ext.describe()
    weights_path = ext.weights.path

    # 1. throughput ---------------------------------------------------------------------------
    x = torch.from_numpy(reals_all[: args.throughput_n].copy())
    ext.extract(x[: args.batch_size])  # warm-up (cuDNN autotune, allocator)
    sync(args.device)
    t0 = time.perf_counter()
    ext.extract(x)
    sync(args.device)
    dt = time.perf_counter() - t0
    res["throughput"] = {"images": len(x), "seconds": round(dt, 3), "images_per_s": round(len(x) / dt, 2),
                         "batch_size": args.batch_size, "resolution": list(x.shape[1:])}
    print("throughput", res["throughput"], flush=True)
    save(res, out)

    # 2. reference, once ------------------------------------------------------------------------
    t0 = time.perf_counter()
    ref = reference_features(reals_all, fingerprint=dm.split_digest(split), split=split, extractor=ext, n_real=args.n_real,
                             cache_dir=str(work / "refcache"), batch_size=args.batch_size)
    sync(args.device)
    res["reference"] = {"n_real": ref.n, "seconds": round(time.perf_counter() - t0, 3), "from_cache": ref.from_cache}
    print("reference", res["reference"], flush=True)
    save(res, out)
    res["evaluation"] = []
    reals_t = torch.from_numpy(reals_all[ref.indices].copy())

    # 3. one in-training evaluation vs torch-fidelity ----------------------------------------------
    tf_cache = work / "fidelity_cache"
    for n in args.eval_n_fake:
        row: dict = {"n_fake": n, "n_real": ref.n}
        sync(args.device)
        t0 = time.perf_counter()
        fake, _ = gan_fake_features(model, ext, n, seed=0, batch_size=args.batch_size)
        t_fake = time.perf_counter() - t0
        vals = compute_metrics(ref.features, fake.features, ["fid", "kid", "prc"], real_fid_stats=ref.fid_stats,
                               kid_subset_size=min(1000, n, ref.n), device=args.device)
        sync(args.device)
        row["ganlab_seconds"] = round(time.perf_counter() - t0, 3)
        row["ganlab_sample_extract_seconds"] = round(t_fake, 3)
        row["ganlab_metrics_seconds"] = round(row["ganlab_seconds"] - t_fake, 3)
        if args.breakdown:
            row["ganlab_metric_seconds_by_group"] = {}
            for g in ("fid", "kid", "prc"):
                t0 = time.perf_counter()
                compute_metrics(ref.features, fake.features, [g], real_fid_stats=ref.fid_stats,
                                kid_subset_size=min(1000, n, ref.n), device=args.device)
                sync(args.device)
                row["ganlab_metric_seconds_by_group"][g] = round(time.perf_counter() - t0, 3)
        row["ganlab"] = vals
        if not args.skip_fidelity:
            fakes_u8 = torch.cat(list(GanSamples.create(model, n, seed=0).batches(args.batch_size)))
            t0 = time.perf_counter()
            tf = fidelity_metrics(fakes_u8, reals_t, args, weights_path, n, ref.n, cache=False)
            sync(args.device)
            row["fidelity_seconds"] = round(time.perf_counter() - t0, 3)
            row["fidelity"] = {k: float(tf[v]) for k, v in TF_KEYS.items()}
            row["ratio_fidelity_over_ganlab"] = round(row["fidelity_seconds"] / row["ganlab_seconds"], 2)
            if args.fidelity_cached:
                kw = dict(cache=True, cache_root=str(tf_cache), input2_cache_name=f"bench-ref-{ref.n}")
                fidelity_metrics(fakes_u8, reals_t, args, weights_path, n, ref.n, **kw)  # fills the cache
                t0 = time.perf_counter()
                fidelity_metrics(fakes_u8, reals_t, args, weights_path, n, ref.n, **kw)
                sync(args.device)
                row["fidelity_cached_seconds"] = round(time.perf_counter() - t0, 3)
                row["ratio_fidelity_cached_over_ganlab"] = round(row["fidelity_cached_seconds"] / row["ganlab_seconds"], 2)
        res["evaluation"].append(row)
        print("evaluation", json.dumps(row), flush=True)
        save(res, out)

    # 4. FID bias vs n_fake ------------------------------------------------------------------------
    n_max = max(args.bias_n_fake) if args.bias_n_fake else 0
    if n_max:
        t0 = time.perf_counter()
        big, _ = gan_fake_features(model, ext, n_max, seed=1, batch_size=args.batch_size)
        res["bias_extract_seconds"] = round(time.perf_counter() - t0, 3)
        res["bias"] = []
        for n in sorted(args.bias_n_fake):
            ks = min(1000, n, ref.n)
            first = compute_metrics(ref.features, big.features[:n], ["fid", "kid"], real_fid_stats=ref.fid_stats,
                                    kid_subset_size=ks)
            row = {"n_fake": n, "n_real": ref.n, "fid_first_n": first["fid"], "kid_first_n": first["kid"],
                   "kid_subset_size": ks}
            b = min(n_max // n, args.max_blocks)
            if b >= 2:  # block 0 is the first n
                fids = [first["fid"]] + [
                    compute_metrics(ref.features, big.features[i * n:(i + 1) * n], ["fid"],
                                    real_fid_stats=ref.fid_stats)["fid"] for i in range(1, b)]
                row.update({"blocks": b, "fid_mean": float(np.mean(fids)), "fid_std": float(np.std(fids, ddof=1))})
            res["bias"].append(row)
            print("bias", json.dumps(row), flush=True)
            save(res, out)

        if len(res["bias"]) >= 2:  # FID_n = FID_inf + c / n (Chong & Forsyth 2020), least squares
            inv = np.array([1.0 / r["n_fake"] for r in res["bias"]])
            fid = np.array([r["fid_first_n"] for r in res["bias"]])
            c, fid_inf = np.polyfit(inv, fid, 1)
            res["bias_fit"] = {"fid_infinity": float(fid_inf), "slope_c": float(c)}
            save(res, out)

    res["total_seconds"] = round(time.perf_counter() - t_all, 1)
    res["machine"]["load_average_end"] = machine(args.device).get("load_average")
    save(res, out)
    print(markdown(res))


def save(res: dict, out: Path) -> None:
    """Written after every part: a run cut short still leaves its numbers."""
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    try:
        (out / "results.md").write_text(markdown(res))
    except (KeyError, TypeError):
        pass


def machine(device: str) -> dict:
    m = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
         "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device}
    try:
        m["load_average"] = os.getloadavg()
    except OSError:
        pass
    if device.startswith("cuda"):
        m["gpu"] = torch.cuda.get_device_name(0)
    return m


def markdown(res: dict) -> str:
    L = [f"Command: `{res['command']}`", "",
         f"Machine: {res['machine']}", "",
         f"Data: {res['data']['name']} {res['data']['overrides']}, train split {res['data']['train_split_size']} "
         f"images {res['data']['image_shape']}; checkpoint at generator step {res['checkpoint']['generator_step']}; "
         f"weights sha256 {res['extractor']['weights_sha256'][:16]}...", "",
         "| feature extraction | images | seconds | images/s |", "| --- | --- | --- | --- |",
         f"| InceptionV3, {res['throughput']['resolution']} uint8, batch {res['throughput']['batch_size']} | "
         f"{res['throughput']['images']} | {res['throughput']['seconds']} | {res['throughput']['images_per_s']} |",
         "", f"Reference features (once, then cached): {res['reference']['n_real']} images in "
         f"{res['reference']['seconds']} s.", "",
         "| n_fake | n_real | ganlab eval s (sample+extract / metrics) | torch-fidelity s | ratio | torch-fidelity cached-ref s | ratio | "
         "FID ganlab | FID torch-fidelity | P / R ganlab | P / R torch-fidelity |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["evaluation"]:
        g, f = r["ganlab"], r.get("fidelity", {})
        L.append(f"| {r['n_fake']} | {r['n_real']} | {r['ganlab_seconds']} ({r['ganlab_sample_extract_seconds']} / "
                 f"{r['ganlab_metrics_seconds']}) | {r.get('fidelity_seconds', '-')} | "
                 f"{r.get('ratio_fidelity_over_ganlab', '-')} | {r.get('fidelity_cached_seconds', '-')} | "
                 f"{r.get('ratio_fidelity_cached_over_ganlab', '-')} | {g['fid']:.4f} | "
                 f"{f.get('fid', float('nan')):.4f} | {g['precision']:.3f} / {g['recall']:.3f} | "
                 f"{f.get('precision', float('nan')):.3f} / {f.get('recall', float('nan')):.3f} |")
    if res.get("bias"):
        L += ["", f"FID bias (features of {max(r['n_fake'] for r in res['bias'])} samples extracted in "
              f"{res['bias_extract_seconds']} s; blocks: disjoint sets of n of them, the first being the "
              "first n):", "",
              "| n_fake | n_real | FID (first n) | FID mean +- std over blocks | KID (first n) |",
              "| --- | --- | --- | --- | --- |"]
        for r in res["bias"]:
            blk = f"{r['fid_mean']:.3f} +- {r['fid_std']:.3f} ({r['blocks']} blocks)" if "blocks" in r else "-"
            L.append(f"| {r['n_fake']} | {r['n_real']} | {r['fid_first_n']:.3f} | {blk} | {r['kid_first_n']:.5f} |")
        if res.get("bias_fit"):
            f = res["bias_fit"]
            L += ["", f"Least-squares fit FID_n = FID_inf + c/n over the first-n values: FID_inf = "
                  f"{f['fid_infinity']:.3f}, c = {f['slope_c']:.4g}."]
    br = [r for r in res.get("evaluation", []) if r.get("ganlab_metric_seconds_by_group")]
    if br:
        L += ["", "| n_fake | n_real | FID s | KID s | PRC s (ganlab, each computed alone) |", "| --- | --- | --- | --- | --- |"]
        L += [f"| {r['n_fake']} | {r['n_real']} | " + " | ".join(str(r['ganlab_metric_seconds_by_group'][g])
                                                            for g in ('fid', 'kid', 'prc')) + " |" for r in br]
    L += ["", f"Total: {res.get('total_seconds', '(unfinished)')} s."]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
