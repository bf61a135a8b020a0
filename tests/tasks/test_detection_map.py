"""VOC mAP on hand-made cases with known answers, and the COCO wrapper against pycocotools."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kanbench.tasks import shapes
from kanbench.tasks.detection_data import read_coco
from kanbench.tasks.detection_map import (
    DetectionMetrics,
    ImageDetections,
    ImageTruth,
    average_precision,
    coco_detections,
    coco_ground_truth,
    coco_map,
    voc_map,
)


def truth(boxes, labels, difficult=None):
    n = len(boxes)
    return ImageTruth(torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
                      torch.tensor(labels, dtype=torch.long),
                      torch.tensor(difficult or [False] * n))


def dets(boxes, scores, labels):
    return ImageDetections(torch.tensor(boxes, dtype=torch.float32).reshape(len(boxes), 4),
                           torch.tensor(scores), torch.tensor(labels, dtype=torch.long))


TRUTHS = [truth([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]), truth([[5, 5, 25, 25]], [0])]


@pytest.mark.parametrize("variant", ["area", "11point"])
def test_perfect_detections_score_one(variant):
    found = [dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1]),
             dets([[5, 5, 25, 25]], [0.7], [0])]
    result = voc_map(found, TRUTHS, [0, 1], variant)
    assert result["map"] == pytest.approx(1.0) and result["ap"] == {0: 1.0, 1: 1.0}


def test_a_duplicate_is_a_false_positive():
    two = [truth([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])]
    # hit A, A again, hit B: recall 1/2 at precision 1, then recall 1 at precision 2/3
    found = [dets([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.7],
                  [0, 0, 0])]
    assert voc_map(found, two, [0])["map"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    without_duplicate = [dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.7], [0, 0])]
    assert voc_map(without_duplicate, two, [0])["map"] == pytest.approx(1.0)


def test_missing_a_difficult_object_costs_nothing_and_finding_it_earns_nothing():
    truths = [truth([[0, 0, 10, 10], [30, 30, 34, 34]], [0, 0], [False, True])]
    found = [dets([[0, 0, 10, 10]], [0.9], [0])]
    assert voc_map(found, truths, [0])["map"] == pytest.approx(1.0)
    found = [dets([[30, 30, 34, 34], [0, 0, 10, 10]], [0.99, 0.9], [0, 0])]
    assert voc_map(found, truths, [0])["map"] == pytest.approx(1.0)  # not a false positive
    only_difficult = [truth([[30, 30, 34, 34]], [1], [True])]
    assert voc_map([dets([], [], [])], only_difficult, [1])["ap"] == {1: None}


def test_low_overlap_is_a_miss_and_wrong_class_does_not_count():
    one = [truth([[0, 0, 10, 10]], [0])]
    shifted = [dets([[6, 0, 16, 10]], [0.9], [0])]                   # IoU 4/16 < 0.5
    assert voc_map(shifted, one, [0])["map"] == 0.0
    other_class = [dets([[0, 0, 10, 10]], [0.9], [1])]
    assert voc_map(other_class, one, [0, 1])["ap"] == {0: 0.0, 1: None}


def test_11point_and_area_differ_where_recall_stops_short():
    # one of two objects found, at precision 1: area = 0.5; 11-point = 6/11 (t = 0 .. 0.5)
    recall, precision = np.array([0.5]), np.array([1.0])
    assert average_precision(recall, precision, "area") == pytest.approx(0.5)
    assert average_precision(recall, precision, "11point") == pytest.approx(6 / 11)
    # and agree on a full-recall perfect curve
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0]), "11point") == 1.0


def test_coco_map_equals_pycocotools_on_the_same_detections(tmp_path):
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100}
              for i in range(1, 6)]
    annotations, detections = [], []
    for i in range(1, 6):
        for _ in range(3):
            x, y = rng.uniform(0, 60, 2)
            w, h = rng.uniform(10, 40, 2)
            category = int(rng.choice([1, 3]))
            annotations.append({"id": len(annotations) + 1, "image_id": i, "iscrowd": 0,
                                "category_id": category, "bbox": [x, y, w, h],
                                "area": w * h})
            jitter = rng.normal(0, 3, 4)
            detections.append({"image_id": i, "category_id": category,
                               "bbox": [x + jitter[0], y + jitter[1], w + jitter[2],
                                        h + jitter[3]], "score": float(rng.uniform())})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "a"}, {"id": 3, "name": "b"}]}))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        direct = COCOeval(coco, coco.loadRes(detections), "bbox")
        direct.evaluate(), direct.accumulate(), direct.summarize()
    ours = coco_map(coco, detections)
    assert ours == {"map": direct.stats[0], "ap50": direct.stats[1]}
    assert 0 < ours["map"] < ours["ap50"] <= 1
    assert coco_map(coco, []) == {"map": 0.0, "ap50": 0.0}


def test_the_metrics_coco_index_scores_like_pycocotools_on_the_instances_file(tmp_path):
    root = shapes.write_coco(tmp_path, 0, 6)
    annotations = root / "annotations" / "instances_val2017.json"
    label_of_name = {name: i + 1 for i, name in enumerate(shapes.COCO_CATEGORIES)}
    data = read_coco(root / "val2017", annotations, label_of_name)
    rng = np.random.default_rng(0)
    detections = []
    for _, target in data:   # jittered truths, a wrong-class copy, a random box
        boxes = target["boxes"] + torch.tensor(rng.normal(0, 2, target["boxes"].shape)).float()
        labels = target["labels"]
        boxes = torch.cat([boxes, boxes[:1], torch.tensor([[5.0, 5.0, 40.0, 40.0]])])
        labels = torch.cat([labels, labels[:1] % 5 + 1, torch.tensor([2])])
        detections.append(ImageDetections(boxes, torch.tensor(rng.uniform(size=len(boxes))),
                                          labels))
    truths = [ImageTruth(t["boxes"], t["labels"], t["difficult"]) for _, t in data]
    ours = coco_map(coco_ground_truth(truths, [(128, 128)] * len(data), [1, 2, 3, 4, 5]),
                    coco_detections(detections))
    category_of_label = {label: shapes.COCO_CATEGORIES[name]
                         for name, label in label_of_name.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    image_ids = sorted(coco.imgs)                      # CocoDetection's order
    results = [{**d, "image_id": image_ids[d["image_id"] - 1],
                "category_id": category_of_label[d["category_id"]]}
               for d in coco_detections(detections)]
    assert ours == coco_map(coco, results)
    assert 0 < ours["map"] < ours["ap50"] < 1


def test_detection_metrics_decode_perfect_outputs_to_perfect_scores_per_split():
    boxes = torch.tensor([[10.0, 10.0, 40.0, 50.0], [60.0, 20.0, 100.0, 90.0]])
    labels = torch.tensor([1, 3])
    logits = torch.full((2, 4), -10.0)
    logits[0, 1] = logits[1, 3] = 10.0                                # sure of the right class
    output = torch.cat([logits, torch.zeros(2, 16)], 1)              # zero deltas: the proposal
    info = {"first_image": torch.tensor(0), "proposals": boxes / 2,  # resized by 1/2
            "roi_image": torch.tensor([0, 0]), "image_size": torch.tensor([[64, 64]]),
            "original_size": torch.tensor([[128, 128]]),
            "truth": torch.cat([boxes, labels[:, None].float(), torch.zeros(2, 1)], 1),
            "truth_image": torch.tensor([0, 0])}
    metric = DetectionMetrics(3, "11point")
    for split in (0, 1):
        metric.update(output, {**info, "split": torch.tensor(split)})
    result = {k: float(v) for k, v in metric.compute().items()}
    for prefix in ("", "transfer_"):
        assert result[f"{prefix}map50"] == result[f"{prefix}map50_11point"] == 1.0
        assert result[f"{prefix}map50_area"] == 1.0
        assert result[f"{prefix}coco_map"] == pytest.approx(1.0)
    (found,) = metric.detections
    assert torch.allclose(found[:, :4], boxes) and found[:, 5].tolist() == [1.0, 3.0]
