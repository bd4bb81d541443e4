#!/usr/bin/env bash
# The CPU-sized 2x2 sweep of experiments/sweep_cpu/README.md: DCGAN on the procedural faces
# (32x32), 150 generator steps per job, FID (200 fakes vs 1000 real images) every 50 steps.
# Usage (from the repository root): bash experiments/sweep_cpu/run.sh [extra overrides]
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEP_DIR=${SWEEP_DIR:-logs/train/multiruns/sweep_cpu}
REPORT_DIR=${REPORT_DIR:-experiments/sweep_cpu}
export WANDB_MODE=offline MPLBACKEND=Agg
python -m ganlab.train -m \
  hydra.sweep.dir="$SWEEP_DIR" \
  data=faces data.source.num_images=4000 data.resolution=32 \
  generator_steps=150 sample_every=50 checkpoint_every=150 \
  'callbacks=[default,metrics]' callbacks.rich_progress_bar=null \
  callbacks.metrics.every_n_steps=50 callbacks.metrics.n_fake=200 callbacks.metrics.n_real=1000 \
  'callbacks.metrics.metrics=[fid]' callbacks.metrics.save_best=false \
  optimized_metric=metrics/fid \
  model.g_optimizer.lr=1e-4,2e-4 data.batch_size=32,64 \
  "$@"
python -m ganlab.report "$SWEEP_DIR" --out "$REPORT_DIR"
