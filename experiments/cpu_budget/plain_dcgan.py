"""The baseline a user writes by hand: a plain PyTorch DCGAN loop (Radford et al. 2016), no Lightning.

    OMP_NUM_THREADS=1 python experiments/cpu_budget/plain_dcgan.py --minutes 30 --out DIR

Paper widths (G 512-256-128-64, D 64-128-256-512), BN, ReLU / LeakyReLU(0.2), N(0, 0.02) init,
non-saturating BCE, Adam(2e-4, 0.5/0.999), batch 64, z 100, no EMA, no flips. Trains for a wall-clock
budget on the 6,000 shared faces (crop 178, Lanczos, 64 px: ganlab's decoded uint8 cache, only read
here), then writes DIR/generator.pt, DIR/train.json and --n-fake generated PNGs into DIR/fakes/.
"""
import argparse, json, os, time

import numpy as np
import torch
from PIL import Image
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--minutes", type=float, default=30.0)
p.add_argument("--out", required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--n-fake", type=int, default=3000)
args = p.parse_args()
torch.manual_seed(args.seed)

from ganlab.data.sources import CelebA, prepare  # noqa: E402  (only to read the same decoded images)

data = prepare(CelebA, os.path.join(os.environ.get("GANLAB_DATA", "/work/shared/data"), "celeba-subset"),
               resolution=64, crop=178, resize_filter="lanczos", progress=False)
reals = torch.from_numpy(np.asarray(data.images[data.splits["all"]]))  # (6000, 3, 64, 64) uint8


def init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02), nn.init.zeros_(m.bias)


def up(i, o, *k):
    return [nn.ConvTranspose2d(i, o, *k, bias=False), nn.BatchNorm2d(o), nn.ReLU(True)]


def down(i, o, bn=True):
    return [nn.Conv2d(i, o, 4, 2, 1, bias=False)] + ([nn.BatchNorm2d(o)] if bn else []) + [nn.LeakyReLU(0.2, True)]


G = nn.Sequential(*up(100, 512, 4, 1, 0), *up(512, 256, 4, 2, 1), *up(256, 128, 4, 2, 1), *up(128, 64, 4, 2, 1),
                  nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh())
D = nn.Sequential(*down(3, 64, bn=False), *down(64, 128), *down(128, 256), *down(256, 512), nn.Conv2d(512, 1, 4, 1, 0))
G.apply(init), D.apply(init)
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
ones, zeros = torch.ones(64), torch.zeros(64)

t0, step, deadline = time.time(), 0, time.time() + 60 * args.minutes
while time.time() < deadline:
    for idx in torch.randperm(len(reals)).split(64):
        if len(idx) < 64 or time.time() >= deadline:
            continue
        real = reals[idx].float() / 127.5 - 1.0
        fake = G(torch.randn(64, 100, 1, 1))
        loss_d = bce(D(real).view(-1), ones) + bce(D(fake.detach()).view(-1), zeros)
        opt_d.zero_grad(), loss_d.backward(), opt_d.step()
        loss_g = bce(D(fake).view(-1), ones)
        opt_g.zero_grad(), loss_g.backward(), opt_g.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} {time.time() - t0:.0f}s loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f}", flush=True)

os.makedirs(os.path.join(args.out, "fakes"), exist_ok=True)
torch.save(G.state_dict(), os.path.join(args.out, "generator.pt"))
json.dump({"generator_steps": step, "train_seconds": round(time.time() - t0, 1), "batch": 64},
          open(os.path.join(args.out, "train.json"), "w"))
G.eval()  # BN running statistics, as a user's sampling script would
z = torch.randn(args.n_fake, 100, 1, 1, generator=torch.Generator().manual_seed(args.seed))
with torch.no_grad():
    for s in range(0, args.n_fake, 100):
        x = ((G(z[s:s + 100]) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        for i, im in enumerate(x.permute(0, 2, 3, 1).numpy()):
            Image.fromarray(im).save(os.path.join(args.out, "fakes", f"{s + i:05d}.png"))
print(f"done: {step} generator steps in {time.time() - t0:.0f}s", flush=True)
