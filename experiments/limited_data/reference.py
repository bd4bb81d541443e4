"""Compute (once) the InceptionV3 reference features of ALL shared CelebA faces used by both studies.

    OMP_NUM_THREADS=1 python experiments/limited_data/reference.py

Same protocol as every score in experiments/cpu_budget and experiments/limited_data: the 6,000 faces of
``data=celeba`` with ``data.split=all``, centre crop 178, Lanczos, 64 px, fed as uint8 to
torch-fidelity's InceptionV3 (ganlab.metrics). Goes through ganlab's reference cache
(``$GANLAB_CACHE/metrics/reference``), so every later ``python -m ganlab.evaluate ... data=celeba
data.split=all data.crop=178 data.resize_filter=lanczos metrics.split=all`` reuses the file.
"""

from __future__ import annotations

import time

import hydra
from hydra import compose, initialize_config_dir
import os

from ganlab.metrics.inception import get_inception_extractor
from ganlab.metrics.reference import reference_features

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_OVERRIDES = ["data=celeba", "data.crop=178", "data.resize_filter=lanczos", "data.resolution=64",
                  "data.split=all", "metrics.split=all",
                  "metrics.sizes=full"]


def main() -> None:
    with initialize_config_dir(os.path.join(REPO, "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=[*DATA_OVERRIDES, "fake_dir=unused"], return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig
    HydraConfig.instance().set_config(cfg)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    t0 = time.perf_counter()
    ref = reference_features(lambda: dm.split_images("all"), fingerprint=dm.split_digest("all"), split="all",
                             extractor=get_inception_extractor(None, "cpu", 64), n_real=None, subset_seed=0,
                             cache_dir=cfg.metrics.cache_dir, batch_size=64)
    print(f"reference: {ref.n} images, from_cache={ref.from_cache}, {time.perf_counter() - t0:.0f} s -> {ref.path}")


if __name__ == "__main__":
    main()
