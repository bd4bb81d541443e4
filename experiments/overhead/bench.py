"""ganlab's DCGAN training step vs a plain PyTorch loop doing the same work, in one process.

Both sides use the same networks (DCGAN G and D), loss (non-saturating BCE), optimizers
(Adam 2e-4, betas 0.5/0.999), batch size and images (procedural faces, uint8 -> [-1, 1]).
The plain loop is the textbook one: fakes made once, D step on detached fakes, G step through a
frozen D. EMA is off on the ganlab side (the plain loop has none). ganlab runs through a real
``lightning.Trainer`` with its CSV logger (progress bar and checkpointing off), so the ratio
includes Lightning's loop, hooks, logging and the data module's loader.

Timing: seconds from the start of step ``warmup`` to the start of step ``warmup + steps``;
the two sides alternate ``repeats`` times; the ratio reported is the median of the per-repeat
ratios (each pair runs back to back, so slow drifts in machine load cancel).

    python experiments/overhead/bench.py [--resolution 64 --batch 64 --steps 20 --repeats 3 --device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from functools import partial

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

import ganlab
from ganlab.data.faces import render_faces
from ganlab.utils.pixels import to_float
from ganlab.models.gan import GAN
from ganlab.models.losses import NonSaturatingLoss
from ganlab.models.networks.dcgan import DCGANDiscriminator, DCGANGenerator

ADAM = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))


def networks(args):
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=100, resolution=args.resolution, base_width=args.width)
    d = DCGANDiscriminator(resolution=args.resolution, base_width=args.width)
    return g, d


def plain_step(g, d, opt_g, opt_d, real: torch.Tensor, z: torch.Tensor) -> None:
    """One textbook DCGAN step: fakes made once, D on detached fakes, G through a frozen D."""
    fake = g(z)
    d_real, d_fake = d(real), d(fake.detach())
    loss_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    d.requires_grad_(False)
    out = d(fake)
    loss_g = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    d.requires_grad_(True)


def plain_loop(args, images: torch.Tensor) -> float:
    device = torch.device(args.device)
    g, d = (m.to(device) for m in networks(args))
    opt_g, opt_d = ADAM(g.parameters()), ADAM(d.parameters())
    rng = np.random.default_rng(0)
    stamps = []
    for step in range(args.warmup + args.steps + 1):
        stamps.append(time.perf_counter())
        idx = np.sort(rng.choice(len(images), args.batch, replace=False))
        real = to_float(images[idx].to(device, non_blocking=True))
        plain_step(g, d, opt_g, opt_d, real, torch.randn(args.batch, 100, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return args.steps * args.batch / (stamps[-1] - stamps[args.warmup])


class Stamps(L.Callback):
    def __init__(self):
        self.t = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.t.append(time.perf_counter())


class FacesModule(L.LightningDataModule):
    """The real GANDataModule's loader and device transfer, over the bench's in-memory faces."""

    def __init__(self, images: np.ndarray, batch: int):
        super().__init__()
        from ganlab.data.datamodule import GANDataModule
        from ganlab.data.faces.source import Faces
        from ganlab.data.prepared import PreparedData

        self.dm = GANDataModule(Faces, batch_size=batch, hflip=False)
        self.dm.prepared = PreparedData(images, None, None, [], {"train": np.arange(len(images))}, "bench", {})

    def train_dataloader(self):
        self.dm.trainer = self.trainer
        return self.dm.train_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return self.dm.on_after_batch_transfer(batch, dataloader_idx)


def ganlab_loop(args, images: np.ndarray) -> float:
    g, d = networks(args)
    model = GAN(g, d, NonSaturatingLoss(), ADAM, ADAM, ema_decay=None)
    stamps = Stamps()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
            max_steps=2 * (args.warmup + args.steps + 1), logger=L.pytorch.loggers.CSVLogger(tmp),
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[stamps], log_every_n_steps=10, precision="32-true",
        )
        trainer.fit(model, datamodule=FacesModule(images, args.batch))
    t = stamps.t
    return args.steps * args.batch / (t[args.warmup + args.steps] - t[args.warmup])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for results.json and results.md (the figures the README quotes)")
    args = p.parse_args()
    images, _ = render_faces(2048, resolution=args.resolution, seed=0)
    plain, ours = [], []
    for r in range(args.repeats):
        plain.append(plain_loop(args, torch.from_numpy(images)))
        ours.append(ganlab_loop(args, images))
        print(f"repeat {r}: plain {plain[-1]:.1f} img/s, ganlab {ours[-1]:.1f} img/s", flush=True)
    mp, mo = statistics.median(plain), statistics.median(ours)
    # each repeat runs the two loops back to back: the median of the paired ratios is robust
    # to load that drifts between repeats on a shared machine
    ratio = statistics.median(o / p for o, p in zip(ours, plain))
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    table = "\n".join([
        "| device | resolution | width | batch | plain loop (img/s, median) | ganlab (img/s, median) | ganlab / plain (median of paired ratios) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {dev} | {args.resolution} | {args.width} | {args.batch} | {mp:.1f} | {mo:.1f} | {ratio:.3f} |",
        f"torch {torch.__version__}, lightning {L.__version__}, ganlab {ganlab.__version__}"])
    print("\n" + table)
    if args.out:
        write_results(args.out, vars(args), {"plain_img_s": plain, "ganlab_img_s": ours, "median_paired_ratio": ratio,
                                             "device": dev}, table)


def write_results(out: str, args: dict, result: dict, table: str) -> None:
    """``results.json`` (command, time, load, every repeat) and ``results.md`` (the table)."""
    import json
    import os
    import sys
    import time
    from pathlib import Path

    Path(out).mkdir(parents=True, exist_ok=True)
    meta = {"command": "python " + " ".join(sys.argv), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_after": os.getloadavg(), "cpu_count": os.cpu_count(), "args": args}
    (Path(out) / "results.json").write_text(json.dumps({**meta, **result}, indent=1))
    (Path(out) / "results.md").write_text(f"Command: `{meta['command']}` ({meta['when']}, load average after "
                                          f"{meta['load_average_after'][0]:.1f})\n\n{table}\n")


if __name__ == "__main__":
    main()
