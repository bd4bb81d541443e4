"""The training progress bar counts generator steps: with n_critic > 1 and across a resume."""

import lightning as L

from ganlab.callbacks.progress import GeneratorStepProgressBar
from ganlab.train import train

QUIET = ["callbacks=none", "logger=[]", "trainer.enable_model_summary=false"]


class Watch(L.Callback):
    """Records the bar's (completed, total, description) after every batch (runs after the bar)."""

    def __init__(self, bar):
        self.bar, self.seen = bar, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        task = self.bar.train_progress_bar
        self.seen.append((int(task.completed), task.total, task.description))


def run(cfg):
    bar = GeneratorStepProgressBar()
    watch = Watch(bar)
    _, trainer = train(cfg, extra_callbacks=[bar, watch])
    return watch.seen, trainer


def test_bar_counts_generator_steps_and_resumes(tmp_path, make_cfg):
    cfg = make_cfg(tmp_path / "run", "model.n_critic=2", "generator_steps=3", "checkpoint_every=3", *QUIET,
                   "+callbacks.ckpt={_target_: ganlab.callbacks.checkpoint.RunCheckpoint,"
                   f"dirpath: '{tmp_path}/ckpt', save_last: true}}")
    seen, trainer = run(cfg)
    assert trainer.global_step == 9  # 3 x (2 D steps + 1 G step)
    assert seen == [(1, 3, "G step"), (2, 3, "G step"), (3, 3, "G step")]
    cfg = make_cfg(tmp_path / "run", "model.n_critic=2", "generator_steps=5", f"ckpt_path={tmp_path}/ckpt/last.ckpt",
                   *QUIET)
    seen, _ = run(cfg)
    assert seen == [(4, 5, "G step"), (5, 5, "G step")]
