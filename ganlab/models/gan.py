"""The one GAN training loop: a LightningModule with manual optimization.

Per batch: ``n_critic`` discriminator steps, then one generator step. Networks, loss,
regularizers and optimizers are pluggable parts (Hydra instantiates them), so the MLP GAN,
DCGAN, SNGAN/hinge, WGAN-GP, LSGAN and conditional variants are all this same class.
Labels flow through G and D whenever the networks are conditional (``num_classes > 0``).

Lightning pitfalls handled here:
- ``trainer.global_step`` counts *every* optimizer step (``n_critic + 1`` per batch), so the
  module keeps ``generator_step`` (saved in checkpoints) and callbacks count with it;
- gradient clipping goes through ``self.clip_gradients`` (``gradient_clip_val`` is rejected
  under manual optimization), backward through ``manual_backward`` (AMP loss scaling);
- the generator EMA is a submodule, so it is in every checkpoint; all samples and evaluation
  use it. It averages parameters and *copies* buffers (BatchNorm running statistics), as
  StyleGAN2-ADA does: averaging running statistics with a slow decay leaves them far from the
  current weights' activations and the EMA generator then outputs flat grey images. The decay
  warms up as ``min(decay, (1+t)/(10+t))`` so short runs get a useful EMA too;
- discriminator augmentation (``augment``: DiffAugment, ADA) is one child module applied to every
  image D sees - reals and fakes, D step, G step and regularizers - so its state (ADA's p) is
  in the state_dict; with ``augment=None`` the loop is exactly the unaugmented one;
- conditional GANs may add ADC-GAN's classifier terms (``class_loss``, with a discriminator of
  conditioning ``adc``), G-side terms (``mode_seeking``; ``guidance``: frozen label classifiers trained on
  the real images, prepared in ``setup``) and transitional conditioning (``transition``: the label paths weighted by
  lambda(generator step), 0 -> 1; set before every step and every sample, so resume is exact);
- RNG states and counters are checkpointed, so a resumed run continues bit-for-bit;
- a non-finite loss stops the run before any checkpoint is written from that step, and a
  checkpoint is never written from non-finite weights, so ``last.ckpt`` stays the last good
  state (one host sync per batch for this check, or with ``model.speed.finite_check_every=N``
  a device flag read without waiting, and before every checkpoint: ``ganlab.models.finite``).
"""

from __future__ import annotations

import copy
import random
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch import nn

from ganlab.models.augment import Augmentation
from ganlab.models.finite import FiniteGuard, NonFiniteLossError
from ganlab.models.losses import AdversarialLoss
from ganlab.models.regularizers import warn_batch_norm_critic
from ganlab.models.speed import Speed, build_optimizer, check_layout

__all__ = ["GAN", "NonFiniteLossError"]


class GAN(L.LightningModule):
    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: AdversarialLoss,
        g_optimizer: Callable[..., torch.optim.Optimizer],
        d_optimizer: Callable[..., torch.optim.Optimizer],
        g_scheduler: Callable | None = None,
        d_scheduler: Callable | None = None,
        n_critic: int = 1,
        regularizers: Sequence[Callable] = (),
        instance_noise: float = 0.0,
        instance_noise_steps: int = 0,
        augment: Augmentation | None = None,
        lecam: nn.Module | None = None,
        ema_decay: float | None = 0.999,
        ema_start: int = 0,
        d_weight_clip: float | None = None,
        g_grad_clip: float | None = None,
        d_grad_clip: float | None = None,
        channels_last: bool = False,
        compile: bool = False,
        speed: Speed | None = None,
        class_loss: Any = None,
        transition: Any = None,
        mode_seeking: Any = None,
        guidance: Any = None,
    ) -> None:
        super().__init__()
        # the parts given as Hydra configs (ganlab.train) are the hyperparameters: they rebuild the
        # model in GAN.load_from_checkpoint; parts given as objects (Python API) are not recorded
        self.save_hyperparameters(ignore=[k for k, v in locals().items() if not _is_plain(v)], logger=False)
        generator, discriminator, loss, augment, lecam, class_loss, transition, mode_seeking, guidance = map(
            _built, (generator, discriminator, loss, augment, lecam, class_loss, transition, mode_seeking, guidance))
        g_optimizer, d_optimizer, g_scheduler, d_scheduler = map(_built, (g_optimizer, d_optimizer, g_scheduler,
                                                                          d_scheduler))
        regularizers = [_built(r) for r in regularizers or ()]
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.g_scheduler, self.d_scheduler = g_scheduler, d_scheduler
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        self.n_critic = n_critic
        self.regularizers = list(regularizers or ())
        warn_batch_norm_critic(self.regularizers, discriminator)
        self.lecam = lecam  # a child module: its EMAs are in the state_dict
        has_classifier = hasattr(discriminator, "classify")
        if has_classifier != (class_loss is not None):
            raise ValueError("an ADC discriminator (discriminator.conditioning=adc) and a class_loss go together "
                             f"(model/class_loss=adc sets both); got conditioning "
                             f"{getattr(discriminator, 'conditioning', None)!r} and class_loss={class_loss!r}")
        self.class_loss, self.transition = class_loss, transition
        self.mode_seeking = mode_seeking  # a G-side term (MSGAN), or None
        if guidance is not None and not getattr(generator, "num_classes", 0):
            raise ValueError("classifier guidance (model/guidance=classifier) needs a conditional generator "
                             "(model=cgan with data.labels)")
        self.guidance = guidance  # a G-side term from frozen real-data label classifiers, or None
        self.instance_noise, self.instance_noise_steps = instance_noise, instance_noise_steps
        self.augment = augment
        self.ema_decay, self.ema_start = ema_decay, ema_start
        self.d_weight_clip = d_weight_clip
        self.g_grad_clip, self.d_grad_clip = g_grad_clip, d_grad_clip
        self.channels_last, self.compile_networks = channels_last, compile
        self.speed = Speed.of(speed)  # fused optimizers, how often the non-finite flag is read
        self._finite = FiniteGuard(self.speed.finite_check_every)
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False) if ema_decay else None
        self.generator_step = 0
        self.discriminator_step = 0
        self._rng_to_restore: dict | None = None

    # -- what callbacks, metrics and generate use ------------------------------------
    @property
    def z_dim(self) -> int:
        return self.generator.z_dim

    @property
    def num_classes(self) -> int:
        return getattr(self.generator, "num_classes", 0)

    @property
    def label_kind(self) -> str | None:
        return getattr(self.generator, "label_kind", None) if self.num_classes else None

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=self.device)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, labels: torch.Tensor | None = None, ema: bool = True) -> torch.Tensor:
        """Images in ``[-1, 1]`` from the EMA generator (or the raw one), in eval mode."""
        g = self.generator_ema if (ema and self.generator_ema is not None) else self.generator
        self._apply_condition_weight()
        was_training = g.training
        g.eval()
        try:
            return g(z, labels if self.num_classes else None)
        finally:
            g.train(was_training)

    # -- setup --------------------------------------------------------------------------
    def configure_optimizers(self):
        fused = self.speed.fused_optimizer  # only on CUDA
        opt_g = build_optimizer(self.g_optimizer, self.generator.parameters(), fused)
        opt_d = build_optimizer(self.d_optimizer, self.discriminator.parameters(), fused)
        schedulers = [s(o) for s, o in ((self.g_scheduler, opt_g), (self.d_scheduler, opt_d)) if s]
        return [opt_g, opt_d], schedulers

    def setup(self, stage: str) -> None:
        check_layout(self.channels_last, self.compile_networks)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.compile_networks:
            self.generator.compile()
            self.discriminator.compile()
        if self.guidance is not None and stage == "fit":
            # the strategy moves the module to its device after setup: the classifiers go there now
            self.guidance.prepare(self.trainer.datamodule, self.trainer.strategy.root_device)

    def on_train_start(self) -> None:
        if self._rng_to_restore is not None:
            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None

    # -- the loop --------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        real, labels = batch
        if self.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        labels = labels if self.num_classes else None
        opt_g, opt_d = self.optimizers()
        n = real.shape[0]
        self._apply_condition_weight()

        for i in range(self.n_critic):
            # the last critic step's fakes are made with a graph and reused for the G step
            last = i == self.n_critic - 1
            with torch.set_grad_enabled(last):
                z = self.noise(n)
                fake = self.generator(z, labels)
            d_stats = self._discriminator_step(opt_d, real, fake.detach(), labels)
        g_stats = self._generator_step(opt_g, fake, labels, z)
        self._check_finite(d_stats["loss/d_total"], g_stats["loss/g"])
        self.generator_step += 1
        self._update_ema()
        for sched in self._schedulers():
            sched.step()

        stats = {**d_stats, **g_stats}
        if self._should_log():
            self.log_dict({"loss/d": stats["loss/d"], "loss/g": stats["loss/g"]}, prog_bar=True)
            self.log_dict({k: v for k, v in stats.items() if not k.startswith("loss/")})
        self.log("generator_step", float(self.generator_step))  # ModelCheckpoint monitors it
        return stats

    def _should_log(self) -> bool:
        """``self.log`` costs about a millisecond per call on CPU, so scalars are handed to
        Lightning only on the steps its loggers write (``trainer.log_every_n_steps``); the
        LossHistory callback still records every step from the returned stats."""
        trainer = self.trainer
        return bool(trainer.fast_dev_run) or self.generator_step % max(1, trainer.log_every_n_steps) == 0

    def _discriminator_step(self, opt, real, fake, labels) -> dict[str, torch.Tensor]:
        self.toggle_optimizer(opt)
        real_in, fake_in = self._d_input(real), self._d_input(fake)
        d_real, c_real = self._discriminate(real_in, labels)
        d_fake, c_fake = self._discriminate(fake_in, labels)
        adv = self.loss.discriminator(d_real, d_fake)
        stats = {"d/real_score": self.loss.score(d_real).mean().detach(),
                 "d/fake_score": self.loss.score(d_fake).mean().detach()}
        total = adv
        if c_real is not None:  # ADC-GAN: classify reals as their class, fakes as "generated class"
            cls = self.condition_weight * self.class_loss.discriminator(c_real, c_fake, labels)
            stats["class/d_loss"] = cls.detach()
            total = total + cls
        for reg in self.regularizers + ([self.lecam] if self.lecam is not None else []):
            penalty = reg(self.discriminator, real_in, fake_in, labels, self.discriminator_step,
                          d_real=d_real, d_fake=d_fake)
            stats[f"reg/{type(reg).__name__}"] = penalty.detach()
            total = total + penalty
        self._step(opt, total, self.d_grad_clip)
        if self.d_weight_clip:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.d_weight_clip, self.d_weight_clip)
        self.untoggle_optimizer(opt)
        self.discriminator_step += 1
        if self.augment is not None:  # ADA steers p from D's outputs on the (augmented) reals
            stats.update(self.augment.update(d_real.detach() - self.loss.decision_boundary))
        stats["loss/d"] = adv.detach()
        stats["loss/d_total"] = total.detach()
        return stats

    def _step(self, opt, loss: torch.Tensor, grad_clip: float | None) -> None:
        """One optimizer step: backward through Lightning (AMP scaling), optional norm clipping
        (``self.clip_gradients``: ``gradient_clip_val`` is rejected under manual optimization)."""
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if grad_clip:
            self.clip_gradients(opt, gradient_clip_val=grad_clip, gradient_clip_algorithm="norm")
        opt.step()

    def _generator_step(self, opt, fake, labels, z) -> dict[str, torch.Tensor]:
        self.toggle_optimizer(opt)
        d_fake, c_fake = self._discriminate(self._d_input(fake), labels)
        loss = self.loss.generator(d_fake)
        stats = {}
        if c_fake is not None:
            cls = self.condition_weight * self.class_loss.generator(c_fake, labels)
            stats["class/g_loss"] = cls.detach()
            loss = loss + cls
        if self.mode_seeking is not None:  # MSGAN: images must differ when z does
            ms = self.mode_seeking(self.generator, fake, z, labels)
            stats["reg/ModeSeeking"] = ms.detach()
            loss = loss + ms
        if self.guidance is not None:  # frozen real-data classifiers read every fake as its class
            guide = self.guidance(fake, labels)
            stats["class/guidance"] = guide.detach()
            loss = loss + guide
        self._step(opt, loss, self.g_grad_clip)
        self.untoggle_optimizer(opt)
        return {"loss/g": loss.detach(), **stats}

    def _discriminate(self, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's logits, and its ADC class logits when it has that head (else ``None``)."""
        if self.class_loss is None:
            return self.discriminator(x, labels), None
        return self.discriminator(x, labels, with_classes=True)

    @property
    def condition_weight(self) -> float:
        """Transitional conditioning's lambda at the current generator step (1 without a transition)."""
        return 1.0 if self.transition is None else self.transition.weight(self.generator_step)

    def _apply_condition_weight(self) -> None:
        if self.transition is None:
            return
        from ganlab.models.networks.conditioning import set_condition_weight

        for net in (self.generator, self.discriminator, self.generator_ema):
            if net is not None:
                set_condition_weight(net, self.condition_weight)

    def _d_input(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees: the augmented image (gradients flow through to G), plus instance noise."""
        return self._instance_noise(self.augment(x) if self.augment is not None else x)

    def _instance_noise(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian instance noise (Sønderby et al. 2017), annealed linearly to 0."""
        sigma = self.instance_noise
        if sigma and self.instance_noise_steps:
            sigma *= max(0.0, 1.0 - self.generator_step / self.instance_noise_steps)
        return x + sigma * torch.randn_like(x) if sigma else x

    def ema_decay_at(self, step: int) -> float:
        """0 (copy) until ``ema_start``, then ``min(ema_decay, (1+t)/(10+t))``."""
        t = step - self.ema_start
        return 0.0 if t <= 0 else min(self.ema_decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        weight = 1.0 - self.ema_decay_at(self.generator_step)
        ema, raw = list(self.generator_ema.parameters()), list(self.generator.parameters())
        torch._foreach_lerp_(ema, raw, weight)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

    def _schedulers(self) -> list:
        s = self.lr_schedulers()
        return [] if s is None else (s if isinstance(s, list) else [s])

    def _check_finite(self, d_loss: torch.Tensor, g_loss: torch.Tensor) -> None:
        """Raising here, before any ``on_train_batch_end`` hook, means no checkpoint is written from
        this step's weights (``ganlab.models.finite``: each batch with ``model.speed.finite_check_every=1``,
        else from a flag read without waiting, and always before a checkpoint and at the last step)."""
        step, trainer = self.generator_step + 1, self._trainer
        self._finite.record(step, d_loss, g_loss)
        self._finite.after_step(self, step, last=trainer is not None and 0 < trainer.max_steps <= trainer.global_step)

    def on_train_end(self) -> None:
        self._finite.check(self, self.generator_step)

    # -- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._finite.check(self, self.generator_step)  # a loss that went non-finite since the last read
        bad = [name for name, p in self.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(f"refusing to write a checkpoint with non-finite weights: {bad[:5]}")
        from ganlab import __version__

        checkpoint["ganlab"] = {
            "version": __version__,
            "generator_step": self.generator_step,
            "discriminator_step": self.discriminator_step,
            "rng": _get_rng_states(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ganlab", {})
        self.generator_step = state.get("generator_step", 0)
        self.discriminator_step = state.get("discriminator_step", 0)
        self._rng_to_restore = state.get("rng")

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location: Any = "cpu", *, trust: bool = False,
                             checkpoint: dict[str, Any] | None = None, **kwargs: Any) -> "GAN":
        """Lightning's rebuild (``GAN(**hyper_parameters)``, weights, ``on_load_checkpoint``), read
        safely: ``weights_only``, the stored sha256 and the ``_target_`` allowlist of
        :mod:`ganlab.checkpoints` (``trust=True`` lifts them for a file you trust). Checkpoints of
        ganlab <= 0.x (model config in ``checkpoint["ganlab"]``) load too. ``checkpoint``: the
        already-loaded dict of ``checkpoint_path``. Raises one ``CheckpointError`` naming the file."""
        from ganlab.checkpoints import load_checkpoint, rebuild_module

        ckpt = checkpoint if checkpoint is not None else load_checkpoint(checkpoint_path, map_location, trust=trust)
        return rebuild_module(cls, ckpt, path=checkpoint_path, trust=trust, **kwargs)


def _is_plain(value: Any) -> bool:
    """Numbers, strings, None and (nested) configs: what a checkpoint may hold as a hyperparameter."""
    from omegaconf import DictConfig, ListConfig

    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (dict, DictConfig)):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple, ListConfig)):
        return all(_is_plain(v) for v in value)
    return False


def _built(part: Any) -> Any:
    """A part given as a Hydra config (``_target_``) -> the object; objects pass through."""
    from omegaconf import DictConfig

    if isinstance(part, (dict, DictConfig)) and "_target_" in part:
        import hydra

        return hydra.utils.instantiate(part)
    return part


def _get_rng_states() -> dict[str, Any]:
    """Global RNG states in types that ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
