"""Detection data: the VOC / COCO readers on the shapes data's real layouts, and the cached
fc6 features, which must give exactly the detections the full torchvision detector gives."""

import copy
import shutil

import pytest
import torch

from kanbench.methods.layers.kan import DenseKANFactory, KANSpec
from kanbench.suite.errors import KanbenchError
from kanbench.tasks import detection_data as dd
from kanbench.tasks import shapes
from kanbench.tasks.detection_map import DetectionMetrics
from kanbench.tasks.detection_model import KANHead, build_trunk, with_kan_head


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    return shapes.write_voc(root / "voc", 4, 3), shapes.write_coco(root / "coco", 2, 3)


def label_of_name():
    return {shapes.VOC_TO_COCO[c]: i + 1 for i, c in enumerate(shapes.VOC_CLASSES)}


def test_voc_reader_keeps_difficult_flags_and_converts_boxes(shapes_data):
    voc, _ = shapes_data
    data = dd.read_voc(voc, "2007", "test", shapes.VOC_CLASSES)
    assert len(data) == 3 and len(dd.read_voc(voc, "2007", "test", shapes.VOC_CLASSES, 2)) == 2
    for image, target in data:
        assert image.shape == (3, 128, 128) and 0 <= image.min() and image.max() <= 1
        n = len(target["labels"])
        assert target["boxes"].shape == (n, 4) and target["difficult"].shape == (n,)
        assert ((target["labels"] >= 1) & (target["labels"] <= len(shapes.VOC_CLASSES))).all()
        assert (target["boxes"][:, :2] >= 0).all() and (target["boxes"][:, 2:] <= 128).all()


def test_coco_reader_maps_categories_onto_the_voc_labels(shapes_data):
    _, coco = shapes_data
    files = coco / "val2017", coco / "annotations" / "instances_val2017.json"
    data = dd.read_coco(*files, label_of_name())
    assert len(data) == 3 and sum(len(t["labels"]) for _, t in data) > 0
    partial = dd.read_coco(*files, {"disc": 1})
    assert all((t["labels"] == 1).all() for _, t in partial)


def test_coco_crowd_boxes_become_difficult():
    annotations = [{"category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 1},
                   {"category_id": 3, "bbox": [5, 5, 10, 20], "iscrowd": 0},
                   {"category_id": 9, "bbox": [5, 5, 10, 20], "iscrowd": 0},   # unmapped
                   {"category_id": 3, "bbox": [5, 5, 0, 20], "iscrowd": 0}]    # empty
    target = dd.coco_target(annotations, {3: 2})
    assert target["boxes"].tolist() == [[0, 0, 10, 10], [5, 5, 15, 25]]
    assert target["labels"].tolist() == [2, 2] and target["difficult"].tolist() == [True, False]


def test_missing_or_broken_detection_data_is_one_line(tmp_path, shapes_data):
    with pytest.raises(KanbenchError, match="voc: dataset not found") as err:
        dd.read_voc(tmp_path, "2007", "test", shapes.VOC_CLASSES)
    assert "\n" not in str(err.value)
    with pytest.raises(KanbenchError, match="coco: dataset not found"):
        dd.read_coco(tmp_path / "val2017", tmp_path / "x.json", {})
    broken = tmp_path / "instances.json"
    broken.write_text("{not json")
    (tmp_path / "val2017").mkdir()
    with pytest.raises(KanbenchError, match="coco: cannot read"):
        dd.read_coco(tmp_path / "val2017", broken, {})
    voc, _ = shapes_data
    copy_root = tmp_path / "voc"
    shutil.copytree(voc, copy_root)
    (next((copy_root / "VOCdevkit" / "VOC2007" / "Annotations").glob("1*.xml"))
     .write_text("<annotation><object>"))
    with pytest.raises(KanbenchError, match="voc: cannot read"):
        dd.read_voc(copy_root, "2007", "test", shapes.VOC_CLASSES)


@pytest.fixture(scope="module")
def trunk_and_examples(shapes_data):
    torch.manual_seed(0)
    voc, _ = shapes_data
    examples = dd.read_voc(voc, "2007", "train", shapes.VOC_CLASSES)
    # image_size 96 < 128: the transform resizes, so boxes go through the rescaling too
    return build_trunk("small", 5, 16, 96, 20).eval(), examples


def test_cached_features_give_the_full_detectors_detections(trunk_and_examples):
    trunk, examples = trunk_and_examples
    torch.manual_seed(1)
    head = KANHead(16, 5, DenseKANFactory(KANSpec()))
    inputs = dd.head_inputs(trunk, examples, train=False, chunk=3)
    metric = DetectionMetrics(5, "area", detections_per_img=20)
    with torch.no_grad():
        for features, info in dd.image_batches(0, inputs, images_per_batch=2):
            metric.update(head(features), info)
        detector = with_kan_head(copy.deepcopy(trunk), head).eval()
        expected = detector([image for image, _ in examples])
    assert len(metric.detections) == len(examples)
    found = 0
    for ours, theirs in zip(metric.detections, expected, strict=True):
        assert torch.allclose(ours[:, :4], theirs["boxes"], atol=1e-4)
        assert torch.allclose(ours[:, 4], theirs["scores"], atol=1e-5)
        assert torch.equal(ours[:, 5].long(), theirs["labels"])
        found += len(ours)
    assert found > 0
    for truth, (_, target) in zip(metric.truths, examples, strict=True):
        assert torch.equal(truth[:, :4], target["boxes"])
        assert torch.equal(truth[:, 4].long(), target["labels"])


def test_training_rois_include_the_ground_truth_labelled_with_zero_deltas(trunk_and_examples):
    trunk, examples = trunk_and_examples
    inputs = dd.head_inputs(trunk, examples, train=True, chunk=2)
    assert inputs["features"].shape == (len(inputs["targets"]), 16)
    assert (inputs["features"] >= 0).all()                             # after ReLU
    # each image's block ends with its ground-truth boxes: their own class, deltas 0
    targets, ends = inputs["targets"], []
    with torch.no_grad():
        for image, target in examples:
            proposals, _, _, _ = dd.proposals_and_features(trunk, [image], [
                {"boxes": target["boxes"], "labels": target["labels"]}])
            ends.append(len(proposals[0]))
    stop = 0
    for (_, target), count in zip(examples, ends, strict=True):
        stop += count
        gt = targets[stop - len(target["labels"]):stop]
        assert torch.equal(gt[:, 0].long(), target["labels"])
        assert torch.allclose(gt[:, 1:], torch.zeros_like(gt[:, 1:]), atol=1e-5)
    assert stop == len(targets)
    assert set(targets[:, 0].long().tolist()) <= set(range(6)) and (targets[:, 0] == 0).any()


def test_test_batches_hold_every_image_once(trunk_and_examples):
    trunk, examples = trunk_and_examples
    inputs = dd.head_inputs(trunk, examples, train=False)
    batches = list(dd.image_batches(1, inputs, images_per_batch=3))
    assert [len(info["image_size"]) for _, info in batches] == [3, 1]
    assert sum(len(f) for f, _ in batches) == len(inputs["features"])
    assert sum(len(info["truth"]) for _, info in batches) == len(inputs["truth"])
    assert all(int(info["split"]) == 1 for _, info in batches)
    assert [int(info["first_image"]) for _, info in batches] == [0, 3]
