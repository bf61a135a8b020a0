"""The KAN-headed Faster R-CNN and the VOC/COCO readers (on the shapes data's real layouts)."""

import pytest
import torch

from methods.kan import DenseKANFactory, KANLinear, KANSpec
from methods.metakan import MetaKANFactory
from suite.errors import KanbenchError
from suite.measure import storage
from tasks import detection, shapes


def test_the_paper_preset_builds_its_model_and_reports_head_bytes():
    spec = KANSpec(grid_size=10, spline_order=3)
    model = detection.build_detector("resnet50_fpn", 20, DenseKANFactory(spec), 1024, 800)
    head = detection.head_modules(model)
    assert all(isinstance(m, KANLinear) for m in head)
    edges = 1024 * 1024 + 1024 * 21 + 1024 * 84
    head_bytes = sum(storage(m)["kan_bytes"] for m in head)
    assert head_bytes == edges * (spec.n_coef + 2) * 4                # coef, base, scaler
    print(f"paper preset dense KAN head: {head_bytes / 1e6:.2f} MB")  # README reports it


@pytest.mark.parametrize("factory", [DenseKANFactory(KANSpec()), MetaKANFactory(KANSpec(), 1, 8)],
                         ids=["dense", "metakan"])
def test_the_small_detector_trains_and_detects_with_any_layer_factory(factory):
    torch.manual_seed(0)
    model = detection.build_detector("small", 5, factory, 32, 128)
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.tensor([[30.0, 40.0, 90.0, 100.0]]), "labels": torch.tensor([5])}]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness",
                           "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert model.roi_heads.box_predictor.cls_score.edge_shape == (6, 32)
    model.eval()
    with torch.no_grad():
        (found, _) = model(images)
    assert set(found) == {"boxes", "scores", "labels"} and found["boxes"].shape[1] == 4


def test_unknown_backbone_and_missing_weights_are_one_line_errors(tmp_path):
    with pytest.raises(KanbenchError, match="resnet50_fpn or small"):
        detection.build_detector("vgg", 5, DenseKANFactory(KANSpec()), 32, 128)
    with pytest.raises(KanbenchError, match="not found"):
        detection.build_detector("resnet50_fpn", 5, DenseKANFactory(KANSpec()), 32, 128,
                                 weights=str(tmp_path / "none.pth"))


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    return shapes.write_voc(root / "voc", 4, 3), shapes.write_coco(root / "coco", 2, 3)


def test_voc_reader_keeps_difficult_flags_and_converts_boxes(shapes_data):
    voc, _ = shapes_data
    data = detection.read_voc(voc, "2007", "test", shapes.VOC_CLASSES)
    assert len(data) == 3
    for image, target in data:
        assert image.shape == (3, 128, 128) and 0 <= image.min() and image.max() <= 1
        n = len(target["labels"])
        assert target["boxes"].shape == (n, 4) and target["difficult"].shape == (n,)
        assert ((target["labels"] >= 1) & (target["labels"] <= len(shapes.VOC_CLASSES))).all()
        assert (target["boxes"][:, :2] >= 0).all() and (target["boxes"][:, 2:] <= 128).all()


def test_coco_reader_maps_categories_onto_the_voc_labels(shapes_data):
    _, coco = shapes_data
    label_of_name = {shapes.VOC_TO_COCO[c]: i + 1 for i, c in enumerate(shapes.VOC_CLASSES)}
    data = detection.read_coco(coco / "val2017", coco / "annotations" /
                               "instances_val2017.json", label_of_name)
    assert len(data) == 3 and sum(len(t["labels"]) for _, t in data) > 0
    partial = detection.read_coco(coco / "val2017", coco / "annotations" /
                                  "instances_val2017.json", {"disc": 1})
    assert all((t["labels"] == 1).all() for _, t in partial)


def test_missing_detection_data_is_one_line(tmp_path):
    with pytest.raises(KanbenchError, match="voc: dataset not found") as err:
        detection.read_voc(tmp_path, "2007", "test", shapes.VOC_CLASSES)
    assert "\n" not in str(err.value)
    with pytest.raises(KanbenchError, match="coco: dataset not found"):
        detection.read_coco(tmp_path / "val2017", tmp_path / "x.json", {})
