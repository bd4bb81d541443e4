"""The faces table's baseline: a plain hand-written PyTorch DCGAN loop with ganlab's networks' shapes.

    OMP_NUM_THREADS=1 python experiments/benchmark/plain_loop.py --out DIR --cpu-hours 0.5 1 2 4 [--seed 0]

What a user writes by hand (as experiments/cpu_budget/plain_dcgan.py, whose loop this is): non-saturating
BCE, Adam(2e-4, 0.5/0.999), batch 64, z ~ N(0, 1) of 100, N(0, 0.02) init, no EMA, no flips, no
Lightning. The networks are those of ganlab's CPU face recipe (experiment=faces_cpu30: DCGAN at base
width 16, 64 px: G 128-64-32-16, D 16-32-64-128), layer for layer, so the comparison measures what
ganlab's techniques add and not a width choice (tests/test_benchmark.py checks the parameter counts).

Budget in CPU time of this process (``time.process_time``). At each mark ``h`` it writes 3,000 generated
PNGs (generator in eval mode, noise seed = ``--seed``) into ``DIR/marks/cpu_{h}h/`` for ganlab.evaluate;
``DIR/state.pt`` (weights, optimizers, step, CPU seconds, RNG) every 5 CPU-minutes makes it resumable:
the same command continues where a killed run stopped. Data: the 6,000 shared faces, crop 178, Lanczos,
64 px (ganlab's decoded cache, only read here), ``$GANLAB_DATA/celeba-subset``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image
from torch import nn


def init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def networks(base: int = 16, z_dim: int = 100, channels: int = 3) -> tuple[nn.Module, nn.Module]:
    """DCGAN G and D at 64 px with widths ``8b-4b-2b-b`` (G) and ``b-2b-4b-8b`` (D)."""
    w = [8 * base, 4 * base, 2 * base, base]

    def up(i, o, k, s, p):
        return [nn.ConvTranspose2d(i, o, k, s, p, bias=False), nn.BatchNorm2d(o), nn.ReLU(True)]

    def down(i, o):
        return [nn.Conv2d(i, o, 4, 2, 1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.2, True)]

    g = nn.Sequential(*up(z_dim, w[0], 4, 1, 0), *up(w[0], w[1], 4, 2, 1), *up(w[1], w[2], 4, 2, 1),
                      *up(w[2], w[3], 4, 2, 1), nn.ConvTranspose2d(w[3], channels, 4, 2, 1), nn.Tanh())
    d = nn.Sequential(nn.Conv2d(channels, w[3], 4, 2, 1), nn.LeakyReLU(0.2, True), *down(w[3], w[2]),
                      *down(w[2], w[1]), *down(w[1], w[0]), nn.Conv2d(w[0], 1, 4, 1, 0))
    g.apply(init), d.apply(init)
    return g, d


def save_fakes(g: nn.Module, folder: str, n: int, seed: int, z_dim: int) -> None:
    os.makedirs(folder, exist_ok=True)
    z = torch.randn(n, z_dim, 1, 1, generator=torch.Generator().manual_seed(seed))
    g.eval()  # BN running statistics, as a user's sampling script would
    with torch.no_grad():
        for s in range(0, n, 100):
            x = ((g(z[s:s + 100]) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            for i, im in enumerate(x.permute(0, 2, 3, 1).numpy()):
                Image.fromarray(im).save(os.path.join(folder, f"{s + i:05d}.png"))
    g.train()


def save_state(path: str, **state) -> None:
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # complete or absent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--cpu-hours", type=float, nargs="+", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-width", type=int, default=16)
    p.add_argument("--n-fake", type=int, default=3000)
    p.add_argument("--save-every-cpu-s", type=float, default=300.0)
    args = p.parse_args()
    marks, z_dim = sorted(args.cpu_hours), 100
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)

    from ganlab.data.sources import CelebA, prepare  # only to read the same decoded images as ganlab

    data = prepare(CelebA, os.path.join(os.environ.get("GANLAB_DATA", "/work/shared/data"), "celeba-subset"),
                   resolution=64, crop=178, resize_filter="lanczos", progress=False)
    reals = torch.from_numpy(np.asarray(data.images[data.splits["all"]]))  # (6000, 3, 64, 64) uint8

    G, D = networks(args.base_width, z_dim)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    step, cpu0, done = 0, 0.0, []
    state_path = os.path.join(args.out, "state.pt")
    if os.path.exists(state_path):  # resume
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        G.load_state_dict(st["G"]), D.load_state_dict(st["D"])
        opt_g.load_state_dict(st["opt_g"]), opt_d.load_state_dict(st["opt_d"])
        step, cpu0, done = int(st["step"]), float(st["cpu_seconds"]), [float(h) for h in st["done"]]
        torch.set_rng_state(st["rng"])
        print(f"resumed at step {step}, {cpu0:.0f} CPU-s", flush=True)
    t0 = time.process_time() if cpu0 else 0.0  # a fresh run counts from the process start, as cpu_marks.py
    cpu = lambda: cpu0 + time.process_time() - t0  # noqa: E731
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(64), torch.zeros(64)
    last_save = cpu()

    def checkpoint() -> None:
        save_state(state_path, G=G.state_dict(), D=D.state_dict(), opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict(),
                   step=step, cpu_seconds=cpu(), done=done, rng=torch.get_rng_state())

    while len(done) < len(marks):
        for idx in torch.randperm(len(reals)).split(64):
            if len(idx) < 64:
                continue
            real = reals[idx].float() / 127.5 - 1.0
            fake = G(torch.randn(64, z_dim, 1, 1))
            loss_d = bce(D(real).view(-1), ones) + bce(D(fake.detach()).view(-1), zeros)
            opt_d.zero_grad(), loss_d.backward(), opt_d.step()
            loss_g = bce(D(fake).view(-1), ones)
            opt_g.zero_grad(), loss_g.backward(), opt_g.step()
            step += 1
            if step % 100 == 0:
                print(f"step {step} {cpu():.0f} CPU-s loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f}", flush=True)
            due = [h for h in marks if h not in done and cpu() >= 3600 * h]
            if due:
                for h in due:
                    save_fakes(G, os.path.join(args.out, "marks", f"cpu_{h:g}h"), args.n_fake, args.seed, z_dim)
                    done.append(h)
                    print(f"mark {h:g} CPU-h: step {step}", flush=True)
                checkpoint()
                last_save = cpu()
                if len(done) == len(marks):
                    break
            elif cpu() - last_save >= args.save_every_cpu_s:
                checkpoint()
                last_save = cpu()
    json.dump({"generator_steps": step, "cpu_seconds": round(cpu(), 1), "batch": 64, "marks": marks},
              open(os.path.join(args.out, "train.json"), "w"))
    print(f"done: {step} generator steps in {cpu():.0f} CPU-s", flush=True)


if __name__ == "__main__":
    main()
