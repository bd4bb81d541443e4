"""GPU training throughput of each experiment's networks, through the real `ganlab.train`
(Lightning Trainer, data module, callbacks off), on the procedural faces at the experiment's
resolution and batch size: generator steps/s and images/s for precision x channels_last x compile.

    python experiments/gpu/bench.py [--steps 300] [--experiments dcgan_celeba sngan_celeba ...]

Timing: seconds between generator step `warmup` and the last step (CUDA synchronised),
so start-up, data preparation and compilation are excluded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from conftest import compose_cfg  # noqa: E402

from ganlab.train import train  # noqa: E402


class Clock(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1, self.n = warmup, None, None, 0

    def on_train_batch_end(self, trainer, pl_module, *args):
        if pl_module.generator_step == self.warmup:
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()
        elif pl_module.generator_step > self.warmup:
            self.n += 1

    def on_train_end(self, trainer, pl_module):
        torch.cuda.synchronize()
        self.t1 = time.perf_counter()


VARIANTS = [
    ("32-true", False, False),
    ("bf16-mixed", False, False),
    ("16-mixed", False, False),
    ("bf16-mixed", True, False),
    ("bf16-mixed", False, True),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--experiments", nargs="+", default=["dcgan_celeba", "dcgan_celeba128", "sngan_celeba", "mlp_celeba"])
    args = p.parse_args()
    print(f"| experiment | res | batch | precision | channels_last | compile | G steps/s | img/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.experiments:
        for precision, cl, comp in VARIANTS:
            if comp and name.startswith("mlp"):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                cfg = compose_cfg(Path(tmp), f"experiment={name}", "data=faces", "data.source.num_images=8192",
                                  "trainer=gpu", f"trainer.precision={precision}", f"model.channels_last={cl}",
                                  f"model.compile={comp}", f"generator_steps={args.warmup + args.steps}",
                                  "callbacks=none", "logger=[]", "trainer.enable_progress_bar=false",
                                  "trainer.enable_model_summary=false", tiny=False)
                if name.startswith("mlp"):
                    cfg.model.channels_last = False
                clock = Clock(args.warmup)
                train(cfg, extra_callbacks=[clock])
                rate = clock.n / (clock.t1 - clock.t0)
                bs, res = cfg.data.batch_size, cfg.data.resolution
                print(f"| {name} | {res} | {bs} | {precision} | {cl} | {comp} | {rate:.1f} | {rate * bs:.0f} |", flush=True)
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, lightning {L.__version__}")


if __name__ == "__main__":
    main()
