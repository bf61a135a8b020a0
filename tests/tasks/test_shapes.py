"""The synthetic detection data: real VOC and COCO layouts, read by the real readers."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from torchvision.datasets import CocoDetection, VOCDetection

from kanbench.tasks import shapes


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return shapes.write_voc(root / "voc", 12, 8), shapes.write_coco(root / "coco", 6, 10)


def test_voc_layout_reads_through_torchvision_with_flags_kept(written):
    voc, _ = written
    train = VOCDetection(str(voc), year="2007", image_set="train", download=False)
    test = VOCDetection(str(voc), year="2007", image_set="test", download=False)
    assert len(train) == 12 and len(test) == 8
    objects = []
    for image, target in [train[i] for i in range(len(train))]:
        assert image.size == (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE)
        objects += target["annotation"]["object"]
    assert {o["name"] for o in objects} <= set(shapes.VOC_CLASSES)
    for o in objects:
        box = [int(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        assert 1 <= box[0] <= box[2] <= shapes.IMAGE_SIZE
        assert 1 <= box[1] <= box[3] <= shapes.IMAGE_SIZE
        assert o["truncated"] in ("0", "1") and o["difficult"] in ("0", "1")


def test_coco_layout_reads_through_cocodetection_and_pycocotools(written):
    _, coco_root = written
    val = CocoDetection(str(coco_root / "val2017"),
                        str(coco_root / "annotations" / "instances_val2017.json"))
    assert len(val) == 10
    image, annotations = val[0]
    assert image.size == (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE) and annotations
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_root / "annotations" / "instances_train2017.json"))
    assert sorted(coco.getCatIds()) == sorted(shapes.COCO_CATEGORIES.values())
    for ann in coco.loadAnns(coco.getAnnIds()):
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and x + w <= shapes.IMAGE_SIZE + 0.01


def test_generation_is_deterministic_and_independent_of_the_count(tmp_path):
    a = shapes.write_voc(tmp_path / "a", 3, 0, seed=5)
    b = shapes.write_voc(tmp_path / "b", 6, 0, seed=5)
    for name in ("000000", "000002"):
        for folder, ext in (("JPEGImages", "jpg"), ("Annotations", "xml")):
            path = f"VOCdevkit/VOC2007/{folder}/{name}.{ext}"
            assert (a / path).read_bytes() == (b / path).read_bytes()
    c = shapes.write_voc(tmp_path / "c", 3, 0, seed=6)
    jpg = "VOCdevkit/VOC2007/JPEGImages/000000.jpg"
    assert (a / jpg).read_bytes() != (c / jpg).read_bytes()


def test_the_dataset_has_overlaps_truncation_and_difficult_objects():
    objects = [o for i in range(200) for o in shapes.render(i, shapes.VOC_DOMAIN)[1]]
    assert any(o["truncated"] for o in objects) and any(o["difficult"] for o in objects)
    assert 0.05 < np.mean([o["truncated"] for o in objects]) < 0.5
    overlapping = 0
    for i in range(200):
        boxes = [o["box"] for o in shapes.render(i, shapes.VOC_DOMAIN)[1]]
        overlapping += any(max(a[0], b[0]) < min(a[2], b[2]) and max(a[1], b[1]) < min(a[3], b[3])
                           for k, a in enumerate(boxes) for b in boxes[k + 1:])
    assert overlapping > 10


def test_the_two_domains_differ_and_share_classes_through_the_mapping():
    assert set(shapes.VOC_TO_COCO) == set(shapes.VOC_CLASSES)
    assert set(shapes.VOC_TO_COCO.values()) == set(shapes.COCO_CATEGORIES)
    voc = [shapes.render(i, shapes.VOC_DOMAIN) for i in range(100)]
    coco = [shapes.render(i, shapes.COCO_DOMAIN) for i in range(100)]

    def mean_side(rendered):
        return np.mean([min(o["box"][2] - o["box"][0], o["box"][3] - o["box"][1])
                        for _, objects in rendered for o in objects if not o["truncated"]])

    assert mean_side(voc) > 1.1 * mean_side(coco)                   # coco shapes are smaller
    voc_pixels = np.stack([np.asarray(image) for image, _ in voc]).reshape(-1, 3).mean(0)
    coco_pixels = np.stack([np.asarray(image) for image, _ in coco]).reshape(-1, 3).mean(0)
    assert np.abs(voc_pixels - coco_pixels).max() > 5                # different colour stats
