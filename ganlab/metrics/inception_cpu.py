"""A faster CPU forward pass of torch-fidelity's InceptionV3, computing the same features.

torch-fidelity's ``FeatureExtractorInceptionV3`` runs eagerly in NCHW: every conv is followed by a
separate batch norm, PyTorch's NCHW max/avg pooling kernels are slow on one core, and the
TF1-compatible resize gathers four 299x299 neighbour tensors. :class:`FastInceptionV3` wraps the
same loaded module and changes only how the arithmetic is laid out (measured in
``experiments/metrics_cost``, ``--part cpu-speed``):

* each conv's batch norm (eval statistics, eps 1e-3) is folded into the conv's weight and bias
  (``torch.nn.utils.fusion.fuse_conv_bn_eval``);
* weights and activations are channels_last, so oneDNN convolves without reordering the activations
  and the pools/concatenations run on their vectorised NHWC kernels;
* the stem (resize to ``Mixed_5d``, where the maps are 299-35 px wide) runs ``stem_batch`` images
  at a time so its activations stay in the CPU caches (the rest runs on the whole batch, which
  reuses the larger late-stage weights better);
* the resize is the same TF1 bilinear map (``align_corners=False``, no half-pixel offset, edge
  clamped) written as two small matrix products, ``R_h @ x @ R_w^T``, applied after ``(x - 128) / 128``
  (the rows of R sum to 1, so normalising before or after the resize is the same map).

Only the floating-point rounding differs from torch-fidelity's module: pool3 features agree to
about 1e-5 absolute (features are 0-10), which moves FID/KID/precision-recall by far less than
0.1 % (tests/test_metrics_inception_cpu.py, experiments/metrics_cost/README.md).
The pool3 (2048) features and, when the weights have a logits layer, torch-fidelity's
``logits_unbiased`` are provided. Why hand-written: torch-fidelity and torchmetrics offer only the
eager NCHW module; ``torch.compile`` of it measured ~10 % faster than this for ~2 minutes of
compilation per process.
"""

from __future__ import annotations

import copy

import torch

INPUT_SIZE = 299
#: the stages of torch-fidelity's ``FeatureExtractorInceptionV3.forward`` up to pool3, in order
STAGES = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool",
)
#: stages run ``stem_batch`` images at a time (large maps), then the rest on the whole batch
STEM = STAGES[: STAGES.index("Mixed_5d") + 1]
#: measured on the 2-core AMD EPYC (1 thread, batch 32 and 64): 4 was as fast as any of 1-16 and
#: ~10 % faster than no chunks
STEM_BATCH = 4


def tf1_bilinear_matrix(n_in: int, n_out: int = INPUT_SIZE) -> torch.Tensor:
    """``(n_out, n_in)`` float32 matrix of TF1 ``resize_bilinear`` along one axis.

    Output pixel i samples the input at ``i * n_in / n_out`` (no half-pixel offset, TF1 with
    ``align_corners=False``), between ``floor`` and ``floor + 1`` clamped to the last pixel; the
    source positions are computed in float32 as torch-fidelity does, so both pick the same pixels.
    """
    src = torch.arange(n_out, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
    lo = src.long()
    hi = (lo + 1).clamp_max(n_in - 1)
    frac = (src - lo.float()).double()
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m.float()


def fold_batch_norms(module: torch.nn.Module) -> torch.nn.Module:
    """Each torch-fidelity ``BasicConv2d`` (conv, BN, ReLU) becomes conv-with-bias, identity, ReLU."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    for m in module.modules():
        if isinstance(m, BasicConv2d) and isinstance(m.bn, torch.nn.BatchNorm2d):
            m.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(m.conv, m.bn)
            m.bn = torch.nn.Identity()
    return module


class FastInceptionV3(torch.nn.Module):
    """A copy of a loaded torch-fidelity ``FeatureExtractorInceptionV3`` for CPU inference.

    ``forward(x)``: uint8 ``(N, 3, H, W)`` -> ``(features (N, 2048),)`` or, with ``logits=True``,
    ``(features, logits_unbiased (N, 1008))``, like torch-fidelity's module with those layers.
    """

    def __init__(self, fidelity_module: torch.nn.Module, stem_batch: int = STEM_BATCH) -> None:
        super().__init__()
        self.stem_batch = int(stem_batch)
        net = fold_batch_norms(copy.deepcopy(fidelity_module).float().eval())
        self.net = net.to(memory_format=torch.channels_last).requires_grad_(False)
        self._resize: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` -> float ``(N, C, 299, 299)`` of ``(x - 128) / 128``, TF1 bilinear."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        mats = self._resize.get((h, w))
        if mats is None:
            mats = self._resize[(h, w)] = (tf1_bilinear_matrix(h), tf1_bilinear_matrix(w).T.contiguous())
        rows, cols_t = mats
        x = (x.float() - 128) / 128
        return torch.matmul(rows, torch.matmul(x, cols_t))

    @torch.no_grad()
    def forward(self, x: torch.Tensor, logits: bool = False):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W) images, got {x.dtype} {tuple(x.shape)}")
        chunks = []
        for start in range(0, len(x), self.stem_batch):
            y = self.resize(x[start : start + self.stem_batch]).contiguous(memory_format=torch.channels_last)
            for name in STEM:
                y = getattr(self.net, name)(y)
            chunks.append(y)
        y = torch.cat(chunks) if len(chunks) != 1 else chunks[0]
        for name in STAGES[len(STEM) :]:
            y = getattr(self.net, name)(y)
        feats = torch.flatten(y, 1).contiguous()
        if not logits:
            return (feats,)
        return feats, feats.mm(self.net.fc.weight.T)  # torch-fidelity's logits_unbiased (no bias)


__all__ = ["FastInceptionV3", "fold_batch_norms", "tf1_bilinear_matrix", "STAGES", "STEM"]
