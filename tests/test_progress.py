"""Progress a user sees: the training bar counts generator steps (with n_critic > 1 and across a
resume); an evaluation on CPU says how many images it runs and how long that takes."""

import logging
import re

import lightning as L
from _metrics_helpers import StubExtractor

from ganlab.callbacks.metrics import Metrics

from ganlab.callbacks.rich_progress_bar import RichProgressBar
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
    bar = RichProgressBar()
    watch = Watch(bar)
    _, trainer = train(cfg, extra_callbacks=[bar, watch])
    return watch.seen, trainer


def test_bar_counts_generator_steps_and_resumes(tmp_path, make_cfg):
    ckpt = ("+callbacks.ckpt={_target_: ganlab.callbacks.model_checkpoint.ModelCheckpoint,"
            f"dirpath: '{tmp_path}/ckpt', save_last: true}}")
    cfg = make_cfg(tmp_path / "run", "model.n_critic=2", "generator_steps=3", *QUIET, ckpt)
    seen, trainer = run(cfg)
    assert trainer.global_step == 9  # 3 x (2 D steps + 1 G step)
    assert seen == [(1, 3, "G step"), (2, 3, "G step"), (3, 3, "G step")]
    cfg = make_cfg(tmp_path / "run", "model.n_critic=2", "generator_steps=5", f"ckpt_path={tmp_path}/ckpt/last.ckpt",
                   *QUIET, ckpt)
    seen, _ = run(cfg)
    assert seen == [(4, 5, "G step"), (5, 5, "G step")]


def test_bar_keeps_its_clock_over_epochs_and_ends_finished(tmp_path, make_cfg):
    # 96 images / batch 16 = 6 batches per epoch: 14 generator steps span 3 epochs
    cfg = make_cfg(tmp_path / "run", "generator_steps=14", *QUIET)
    bar = RichProgressBar()
    starts = []

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            starts.append(bar.train_progress_bar.start_time)

    _, trainer = train(cfg, extra_callbacks=[bar, Clock()])
    assert trainer.current_epoch >= 2 and len(starts) == 14
    assert len(set(starts)) == 1  # Lightning's bar restarted its clock (and lost its ETA) every epoch
    task = bar.train_progress_bar
    assert task.finished and (task.completed, task.total) == (14, 14) and task.time_remaining == 0
    time_column = next(c for c in bar.progress.columns if type(c).__name__ == "CustomTimeColumn")
    shown = str(time_column.render(task))  # Lightning's "elapsed • remaining" column
    assert shown.endswith("• 0:00:00") and "-:--:--" not in shown


def test_cpu_evaluation_announces_images_rate_and_time(tiny_cfg, caplog):
    cfg = tiny_cfg("callbacks=none", "logger=[]", "trainer.enable_progress_bar=false", "generator_steps=1")
    cb = Metrics(every_n_steps=0, n_fake=24, n_real=16, batch_size=8, metrics=["fid"], save_best=False,
                         extractor=StubExtractor(), cache_dir=str(cfg.paths.cache_dir), run_dir=str(cfg.paths.output_dir))
    with caplog.at_level(logging.INFO, logger="ganlab.metrics.evaluator"):
        train(cfg, extra_callbacks=[cb])
    said = [r.getMessage() for r in caplog.records if r.name == "ganlab.metrics.evaluator"]
    assert said[0] == ("metrics (generator step 1): 24 generated and 16 real images through InceptionV3 on CPU; "
                       "CPU sizes (sizes=auto, device cpu): n_fake 24 -> 24, n_real 16 -> 16; sizes=full keeps the "
                       "configured counts; rate and time follow after the first batch")
    assert re.fullmatch(r"metrics \(generator step 1\): InceptionV3 on CPU at [0-9.]+ images/s, about \d+ s for all "
                        r"40 images", said[1])
    assert len(said) == 2
