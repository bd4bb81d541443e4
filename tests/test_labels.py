"""ganlab.labels: label names -> values -> the tensors G takes, one error type; and the one atomic write."""

from __future__ import annotations

import os

import pytest
import torch

from ganlab.labels import (LabelError, LabelInfo, attribute_tensor, attribute_vector, class_index, combination_name,
                           constant_label_tensor, label_tensor, request_tensor)
from ganlab.models.label_spec import LabelSpecError
from ganlab.utils.files import atomic_write, atomic_write_bytes, remove_stale_temps, temp_path

NAMES = ["T-shirt/top", "Trouser", "Sandal"]


def test_names_to_values():
    assert [class_index(c, NAMES) for c in (2, "Trouser", "sandal", "T-shirt_top")] == [2, 1, 2, 0]
    assert attribute_vector("Eyeglasses+male", ["Male", "Eyeglasses", "Smiling"]) == [1.0, 1.0, 0.0]
    assert attribute_vector([], ["Male"]) == attribute_vector("none", ["Male"]) == [0.0]
    assert combination_name([1, 0, 1], ["Eyeglasses", "Male", "Smiling"]) == "Eyeglasses+Smiling"
    assert combination_name([0, 0], ["a", "b"]) == "none"
    for bad, match in ((lambda: class_index("Sweater", NAMES), "unknown class 'Sweater'.*T-shirt/top"),
                       (lambda: class_index(3, NAMES), "out of range 0..2"),
                       (lambda: attribute_vector(["Bald"], ["Male"]), "unknown attribute 'Bald'"),
                       (lambda: attribute_vector(5, ["Male"]), "list of attribute names")):
        with pytest.raises(LabelError, match=match):
            bad()
    assert issubclass(LabelSpecError, LabelError)  # one label error type


def test_values_to_tensors():
    c = label_tensor("class", [2, 0])
    assert c.dtype == torch.long and c.tolist() == [2, 0]
    m = label_tensor("multi_hot", [[1, 0], [0, 1]])
    assert m.dtype == torch.float32 and torch.equal(m, attribute_tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert label_tensor(None, [1, 2]) is None
    assert constant_label_tensor(1, 2, 3, "multi_hot").tolist() == [[0, 1, 0], [0, 1, 0]]
    assert constant_label_tensor(2, 3, 5, "class").tolist() == [2, 2, 2]


def test_request_tensor_and_label_info():
    cls = LabelInfo(3, "class", NAMES)
    assert cls.is_class and not cls.is_multi_hot and cls.conditional
    assert request_tensor(cls, "Sandal", 2).tolist() == [2, 2]
    assert request_tensor(cls, ["Sandal", 0, "trouser"], 3).tolist() == [2, 0, 1]
    with pytest.raises(LabelError, match="2 labels for 3 images"):
        request_tensor(cls, ["Sandal", 0], 3)
    mh = LabelInfo(2, "multi_hot", ["Smiling", "Eyeglasses"])
    assert request_tensor(mh, "Eyeglasses+Smiling", 2).tolist() == [[1, 1], [1, 1]]
    assert request_tensor(mh, [["Smiling"], []], 2).tolist() == [[1, 0], [0, 0]]
    with pytest.raises(LabelError, match="unconditional"):
        request_tensor(LabelInfo(), 0, 1)

    class Model:
        num_classes, label_kind = 3, "class"

    with pytest.warns(UserWarning, match="no class names"):
        info = LabelInfo.of(Model(), {"label_counts": {"class_0": 4}})
    assert info == LabelInfo(3, "class", ["class_0", "class_1", "class_2"], {"class_0": 4})
    assert LabelInfo.of(object(), {"class_names": ["a"]}) == LabelInfo()  # unconditional: no labels


def test_atomic_write_keeps_the_old_file_and_clears_orphans(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write_bytes(b"old", target)

    def boom(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, boom, durable=True)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]
    # a writer killed mid-write (pid gone) leaves its temp file; the next write of that name removes it
    orphan = tmp_path / ".x.bin.tmp-999999999"
    orphan.write_bytes(b"torn")
    mine = temp_path(target)
    assert os.path.basename(mine) == f".x.bin.tmp-{os.getpid()}"
    atomic_write(target, lambda f: f.write(b"new"), durable=True)
    assert target.read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["x.bin"]
    orphan.write_bytes(b"torn")
    (tmp_path / ".y.bin.tmp-1").write_bytes(b"pid 1 lives")  # a live writer's temp is left alone
    assert remove_stale_temps(tmp_path) == [str(orphan)]
    assert sorted(os.listdir(tmp_path)) == [".y.bin.tmp-1", "x.bin"]
