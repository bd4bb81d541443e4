"""The evaluation protocol: what is measured, on how many images, how (:class:`Protocol`).

Its defaults live in one file, ``conf/metrics/default.yaml`` (:func:`protocol_defaults`), which the
in-training callback (:class:`ganlab.callbacks.metrics.Metrics`, keys ``callbacks.metrics.*``) and
``python -m ganlab.evaluate`` (keys ``metrics.*``) compose, and which Python reads: the
:class:`Protocol` defaults and the metric parameters' defaults of :mod:`ganlab.metrics.core`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Mapping

from ganlab.utils.conf_dir import conf_dir

SIZES = ("auto", "full", "cpu")


# -- the protocol -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def protocol_defaults() -> dict[str, Any]:
    """``conf/metrics/default.yaml`` as a dict: the single source of every protocol default."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(os.path.join(conf_dir(), "metrics", "default.yaml")))


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Everything that decides an evaluation's numbers (see ``conf/metrics/default.yaml``)."""

    metrics: tuple[str, ...]
    n_fake: int | None
    n_real: int | None
    split: str
    batch_size: int
    seed: int
    ema: bool
    kid_subsets: int
    kid_subset_size: int
    prc_neighborhood: int
    dc_neighborhood: int
    metric_seed: int
    reference_subset_seed: int
    weights_path: str | None
    cpu_path: str | None
    cache_dir: str | None
    use_cache: bool
    sizes: str
    cpu_n_fake: int
    cpu_n_real: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None = None, **overrides: Any) -> "Protocol":
        """The defaults, then the protocol keys of ``cfg`` (other keys are ignored: a callback's or a
        CLI's own), then ``overrides`` (which must all be protocol keys)."""
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise TypeError(f"unknown evaluation protocol key(s) {bad}; the keys are {sorted(names)}")
        if cfg is not None and not isinstance(cfg, Mapping):
            raise TypeError(f"an evaluation protocol must be a mapping, got {type(cfg).__name__}")
        values = {**protocol_defaults(), **{k: v for k, v in dict(cfg or {}).items() if k in names}, **overrides}
        from ganlab.metrics.core import normalize_metric_names  # core reads protocol_defaults at import

        values["metrics"] = tuple(normalize_metric_names(list(values["metrics"] or [])))
        if values["sizes"] not in SIZES:
            raise ValueError(f"sizes={values['sizes']!r}: expected one of {', '.join(SIZES)}")
        opt = lambda v: None if v is None else int(v)  # noqa: E731
        for k in ("batch_size", "seed", "kid_subsets", "kid_subset_size", "prc_neighborhood", "dc_neighborhood",
                  "metric_seed", "reference_subset_seed", "cpu_n_fake", "cpu_n_real"):
            values[k] = int(values[k])
        values["n_fake"], values["n_real"] = opt(values["n_fake"]), opt(values["n_real"])
        return cls(**values)

    def sized_for(self, device: str) -> tuple["Protocol", str]:
        """The protocol with the counts used on ``device``, and a sentence saying which they are."""
        cap = self.sizes == "cpu" or (self.sizes == "auto" and str(device).startswith("cpu"))
        if not cap:
            return self, f"as configured (sizes={self.sizes}, device {device})"
        n_fake = self.cpu_n_fake if self.n_fake is None else min(self.n_fake, self.cpu_n_fake)
        n_real = self.cpu_n_real if self.n_real is None else min(self.n_real, self.cpu_n_real)
        shown = lambda n: "all" if n is None else str(n)  # noqa: E731
        note = (f"CPU sizes (sizes={self.sizes}, device {device}): n_fake {shown(self.n_fake)} -> {n_fake}, "
                f"n_real {shown(self.n_real)} -> {n_real}; sizes=full keeps the configured counts")
        kid = min(self.kid_subset_size, n_fake, n_real)  # KID's subsets cannot exceed the samples
        return dataclasses.replace(self, n_fake=n_fake, n_real=n_real, kid_subset_size=kid), note




__all__ = ["Protocol", "SIZES", "protocol_defaults"]
