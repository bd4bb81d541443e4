"""Resumable Optuna sweeps (``hydra.callbacks.resume_study`` in ``conf/hparams_search/*optuna*.yaml``).

Hydra's Optuna sweeper reopens a study kept in SQL storage (``hydra.sweeper.storage``) but then
runs ``n_trials`` *more* trials, numbers their job folders from 0 again (over the first run's
folders when ``hydra.sweep.dir`` is fixed) and leaves the trial that was running when the sweep
process died ``RUNNING`` for ever. Before the sweeper starts, this callback makes running the same
command again continue the study instead:

* finished trials (complete or pruned) are kept and count towards ``n_trials``: only the rest run;
* a trial left running by a killed sweep is marked failed and its parameters are queued, so it is
  tried again first;
* job folders continue the numbering, so folder ``N`` holds trial ``N``, the same sweep folder
  gathers every trial and ``python -m ganlab.report`` reads them together.

One sweep process per study at a time: a trial another live process is running would look
interrupted. (Hand-written: the sweeper plugin has no resume option, and Hydra only loads sweeper
classes from its ``hydra_plugins`` package, so a callback adjusts the sweep's config.)
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)


class ResumeStudy(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if "optuna" not in str(sweeper.get("_target_", "")).lower() or not sweeper.get("storage"):
            return
        import optuna
        from optuna.trial import TrialState

        try:
            study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage)
        except KeyError:  # a new study
            return
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        interrupted = [t for t in trials if t.state == TrialState.RUNNING]
        for t in interrupted:
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params)
        todo = max(0, int(sweeper.n_trials) - finished)
        log.info("resuming study %r: %d finished trial(s) kept, %d interrupted one(s) run again, %d trial(s) to run",
                 sweeper.study_name, finished, len(interrupted), todo)
        with read_write(config.hydra), open_dict(config.hydra):
            sweeper.n_trials = todo
            # job N of this run asks trial len(trials) + N (the queued re-runs come first); jobs
            # recompose their config from the overrides, so the folder goes there
            config.hydra.overrides.hydra.append("hydra.sweep.subdir='${add:${hydra.job.num}," + str(len(trials)) + "}'")


__all__ = ["ResumeStudy"]
