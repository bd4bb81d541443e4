"""Human "real or fake?" studies scored with HYPE-infinity (Zhou et al., NeurIPS 2019).

``python -m ganlab.humaneval serve|report|export key=value ...``; modules: :mod:`.images`
(identical re-encoding of real and generated images), :mod:`.study` (the SQLite study db),
:mod:`.app` (the Starlette rater page), :mod:`.scores` (HYPE scores, bootstrap CIs, their report files, CSV export),
:mod:`.cli` (the Hydra entry point).
"""
