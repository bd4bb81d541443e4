"""A training budget in CPU-hours: checkpoints at CPU-hour marks, then stop (the faces table).

    python -m ganlab.train experiment=faces_cpu30 ++trainer.max_time=null \
        +callbacks.cpu_marks._target_=experiments.benchmark.cpu_marks.CpuMarks \
        "+callbacks.cpu_marks.hours=[0.5,1,2,4]" +callbacks.cpu_marks.dirpath=RUN/marks

CPU time is the training process's (``time.process_time``: all its threads, so ``OMP_NUM_THREADS=1``
makes it one core's time), counted from the process start (imports and data loading included, as in
``plain_loop.py``) and carried through resumes in the checkpoint
(the callback's state), so a killed and resumed run reaches each mark with the CPU time that its
weights actually cost (work redone after a kill is not counted twice). Lightning's ``max_time`` is
wall-clock, which on a shared machine is not a budget.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import lightning as L


class CpuMarks(L.Callback):
    def __init__(self, hours: Sequence[float], dirpath: str, check_every: int = 10) -> None:
        self.hours = sorted(float(h) for h in hours)
        self.dirpath, self.check_every = str(dirpath), int(check_every)
        self.saved: list[float] = []
        self._offset, self._t0 = 0.0, 0.0  # a fresh run counts from the process start (imports, data)

    def cpu_seconds(self) -> float:
        return self._offset + time.process_time() - self._t0

    def mark_path(self, h: float) -> str:
        return os.path.join(self.dirpath, f"cpu_{h:g}h.ckpt")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if getattr(pl_module, "generator_step", 0) % self.check_every:
            return
        used = self.cpu_seconds()
        for h in self.hours:
            if h not in self.saved and used >= 3600.0 * h:
                self.saved.append(h)
                os.makedirs(self.dirpath, exist_ok=True)
                trainer.save_checkpoint(self.mark_path(h))
        if len(self.saved) == len(self.hours):
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"cpu_seconds": self.cpu_seconds(), "saved": list(self.saved)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset, self._t0 = float(state_dict.get("cpu_seconds", 0.0)), time.process_time()
        self.saved = [float(h) for h in state_dict.get("saved", [])]
