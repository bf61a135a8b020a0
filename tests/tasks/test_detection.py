"""The detection tasks: registered, data written or missing with one line, the trunk and its
features cached once for many cells, the head's loss and metrics."""

import pytest
import torch
from torchvision.models.detection.roi_heads import fastrcnn_loss

from kanbench.suite.config import resolve
from kanbench.suite.errors import KanbenchError
from kanbench.suite.registry import TASKS
from kanbench.tasks import detection, shapes

TINY = {"n_train": 6, "n_test": 4, "head_width": 16, "trunk_epochs": 1, "trunk_batch_size": 3}


def task_args(name: str, **extra) -> dict:
    return resolve("test", name, "dense", 0, {"task": {**TINY, **extra}}).args["task"]


def test_the_detection_tasks_are_registered_with_their_metrics():
    assert {"shapes_voc", "shapes_coco", "voc", "coco"} <= set(TASKS.names())
    assert TASKS.create("shapes_voc").metric == "map50"
    assert TASKS.create("coco").metric == "coco_map"
    assert len(detection.COCO_CLASSES) == 80 and "couch" in detection.COCO_CLASSES
    assert all(detection.VOC_TO_COCO.get(c, c) in detection.COCO_CLASSES
               for c in detection.VOC_CLASSES)
    assert TASKS.create("voc").defaults["backbone"] == "resnet50_fpn"


def test_shapes_data_is_written_once_in_the_real_layouts(tmp_path):
    voc, coco = detection.ensure_shapes(tmp_path)
    assert voc == tmp_path / "shapes" / f"v{shapes.VERSION}" / "voc"
    listing = voc / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "train.txt"
    assert len(listing.read_text().split()) == detection.SHAPES_SIZES["voc"][0]
    assert (coco / "annotations" / "instances_val2017.json").exists()
    stamp = listing.stat().st_mtime_ns
    detection.ensure_shapes(tmp_path)
    assert listing.stat().st_mtime_ns == stamp                          # not rewritten


def test_missing_real_data_is_one_line(tmp_path):
    for name, expected in (("voc", "VOCdevkit/VOC2007"), ("coco", "coco/train2017")):
        task = TASKS.create(name)
        with pytest.raises(KanbenchError, match=f"{name}: dataset not found") as err:
            task.check_data(task_args(name), str(tmp_path))
        assert expected in str(err.value) and "\n" not in str(err.value)
    voc = TASKS.create("voc")
    voc_names = dict(zip(shapes.VOC_CLASSES, detection.VOC_CLASSES[:5], strict=True))
    shapes.write_voc(tmp_path, 2, 2, names=voc_names)
    voc.check_data(task_args("voc"), str(tmp_path))
    with pytest.raises(KanbenchError, match="coco/val2017"):         # transfer needs COCO
        voc.check_data(task_args("voc", transfer=True), str(tmp_path))


def test_bad_task_settings_are_one_line():
    task = TASKS.create("shapes_voc")
    with pytest.raises(KanbenchError, match="task.backbone: 'vgg' is not one of small"):
        task_args("shapes_voc", backbone="vgg")
    with pytest.raises(KanbenchError, match="task.voc_variant: '12point' is not one of"):
        task_args("shapes_voc", voc_variant="12point")
    with pytest.raises(KanbenchError, match="task.backbone_weights applies to the resnet50"):
        task.check_args({**task_args("shapes_voc"), "backbone_weights": "imagenet"})


def test_the_trunk_and_features_are_cached_once_for_every_cell(data_root, tmp_path):
    task = TASKS.create("shapes_voc")
    args = task_args("shapes_voc", n_transfer=3)
    first = task.datamodule(args, str(data_root), 32, seed=0, cache_dir=tmp_path)
    assert {k: v["cached"] for k, v in first.timing.items()} == {"trunk": False,
                                                                 "features": False}
    again = task.datamodule(args, str(data_root), 32, seed=1, cache_dir=tmp_path)
    assert all(v["cached"] for v in again.timing.values())
    assert torch.equal(first.train_set.tensors[0], again.train_set.tensors[0])
    assert [split for split, _ in again.evaluation] == [0, 1]           # test, transfer
    assert len(again.evaluation[1][1]["image_size"]) == 3
    features, targets = next(iter(next(iter(again.train_dataloader()))))  # an epoch's first
    assert features.shape == (32, 16) and targets.shape == (32, 5)
    other = task.datamodule({**args, "trunk_seed": 1}, str(data_root), 32, 0, tmp_path)
    assert not other.timing["trunk"]["cached"]                          # a new key, a new trunk


def test_the_loss_is_torchvisions_fast_rcnn_loss():
    task = TASKS.create("shapes_voc")
    torch.manual_seed(0)
    output = torch.randn(7, 6 + 24)
    target = torch.cat([torch.tensor([0, 1, 2, 0, 5, 3, 0.])[:, None], torch.randn(7, 4)], 1)
    cls, box = fastrcnn_loss(output[:, :6], output[:, 6:], [target[:, 0].long()],
                             [target[:, 1:]])
    assert task.loss(output, target) == pytest.approx(float(cls + box))


def test_frozen_storage_itemizes_the_trunk():
    parts = TASKS.create("shapes_voc").frozen_storage(task_args("shapes_voc"))
    assert set(parts) == {"backbone", "rpn", "fc6"}
    assert parts["fc6"] == (64 * 7 * 7 * 16 + 16) * 4
