"""Literature-standard GAN metrics (FID, KID, precision/recall, density/coverage, IS).

Features come from torch-fidelity's TF-ported InceptionV3 (:mod:`ganlab.metrics.inception`, with
offline weight resolution); the metric maths is torch-fidelity's, applied to feature arrays by the
plain function :func:`compute_metrics` (:mod:`ganlab.metrics.core`); real-data features are cached
per data split (:mod:`ganlab.metrics.reference`). One evaluator (:mod:`ganlab.metrics.evaluator`, its
protocol from ``conf/metrics/``, :mod:`ganlab.metrics.protocol`) serves :class:`ganlab.callbacks.metrics.Metrics`
during training and ``python -m ganlab.evaluate`` afterwards (notebooks: ``ganlab.evaluate_checkpoint``,
``ganlab.evaluate_folder``, defined in :mod:`ganlab.evaluate`).
"""

from ganlab.metrics.core import (
    MAXIMIZE,
    METRIC_KEYS,
    compute_metrics,
    density_coverage,
    fid_from_statistics,
    fid_statistics,
    kid_subset_size_used,
    metric_mode,
    normalize_metric_names,
)
from ganlab.metrics.evaluator import Evaluator
from ganlab.metrics.protocol import Protocol
from ganlab.metrics.inception import (
    InceptionExtractor,
    InceptionWeights,
    InceptionWeightsError,
    get_inception_extractor,
    resolve_inception_weights,
)
from ganlab.metrics.memorization import memorization_stats, nearest_neighbors, save_pairs_grid
from ganlab.metrics.reference import ReferenceFeatures, reference_features
from ganlab.metrics.fakes import GanSamples, ImageFolder, features_of_batches, gan_fake_features

__all__ = [
    "MAXIMIZE",
    "METRIC_KEYS",
    "Evaluator",
    "Protocol",
    "GanSamples",
    "ImageFolder",
    "InceptionExtractor",
    "InceptionWeights",
    "InceptionWeightsError",
    "ReferenceFeatures",
    "compute_metrics",
    "density_coverage",
    "features_of_batches",
    "fid_from_statistics",
    "fid_statistics",
    "gan_fake_features",
    "get_inception_extractor",
    "kid_subset_size_used",
    "memorization_stats",
    "metric_mode",
    "nearest_neighbors",
    "normalize_metric_names",
    "reference_features",
    "resolve_inception_weights",
    "save_pairs_grid",
]
