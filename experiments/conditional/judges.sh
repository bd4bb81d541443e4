#!/bin/bash
# The kept checkpoint read by classifiers that did not choose it (README.md, "The kept checkpoint read by
# classifiers that did not choose it"). Resumable: a trained variant (diagnosis.json) is not retrained, a
# finished recheck (marker file) is not redone.
#   usage: experiments/conditional/judges.sh WORK PREFIX SEED [SEED ...] -- OVERRIDE [OVERRIDE ...]
#   e.g.   experiments/conditional/judges.sh /work/judges faithful_8k 0 1 2 3 4 -- experiment=cgan_fashion_faithful
# Trains PREFIX_sSEED for 8,000 steps (class_fidelity every 500 steps keeping best_class_fidelity.ckpt), then
# rereads the kept checkpoint on noise 7, 400 images per class, by the selection classifier, the same network
# trained 3,000 steps, two held-out classifiers of other seeds and widths, and two readers of other families: a
# 5-nearest-neighbour vote in pixel space over the real training images and a fully connected network on the
# pixels (784-512-256-10, 3,000 steps). One torch thread per job.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$1 PREFIX=$2; shift 2
SEEDS=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do SEEDS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
export OMP_NUM_THREADS=1
D=experiments/conditional/diagnose.py
JUDGES=("selection:--classifier-steps 1500" "longer:--classifier-steps 3000"
        "heldout_a:--classifier-steps 1500 --classifier-seed 1 --classifier-widths 32 64 128"
        "heldout_b:--classifier-steps 3000 --classifier-seed 5 --classifier-widths 24 48 96"
        "knn:--classifier-knn 5" "mlp:--classifier-mlp --classifier-steps 3000")
mkdir -p "$WORK"
for S in "${SEEDS[@]}"; do
  N=${PREFIX}_s$S
  [ -f "$WORK/$N/diagnosis.json" ] || python $D --work "$WORK" --classifier-steps 1500 --checkpoint-every 2000 \
      --keep-best 500 --steps 8000 --seed "$S" "$N" "$@" > "$WORK/$N.log" 2>&1
  for J in "${JUDGES[@]}"; do
    K=${J%%:*}
    [ -f "$WORK/$N.$K.done" ] && continue
    # shellcheck disable=SC2086  # the judge's options are words
    python $D --work "$WORK" --per-class 400 --recheck 7 ${J#*:} "$N" > "$WORK/$N.$K.log" 2>&1
    touch "$WORK/$N.$K.done"
  done
done
