"""The KAN-headed Faster R-CNN: the paper preset's head bytes, training and detecting with any
layer factory, the trunk's parts, and backbone weights from local files."""

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet50

from kanbench.methods.layers.kan import DenseKANFactory, KANLinear, KANSpec
from kanbench.methods.layers.metakan import MetaKANFactory
from kanbench.suite.errors import KanbenchError
from kanbench.suite.measure import storage
from kanbench.tasks import detection_model as dm


def test_the_paper_preset_builds_its_model_and_reports_head_bytes():
    spec = KANSpec(grid_size=10, spline_order=3)
    model = dm.build_detector("resnet50_fpn", 20, DenseKANFactory(spec), 1024, 800)
    head = model.roi_heads.box_predictor.head
    assert all(isinstance(m, KANLinear) for m in (head.fc7, head.cls_score, head.bbox_pred))
    edges = 1024 * 1024 + 1024 * 21 + 1024 * 84
    head_bytes = storage(head)["kan_bytes"]
    assert head_bytes == edges * (spec.n_coef + 2) * 4                # coef, base, scaler
    parts = dm.trunk_parts(model)
    assert parts["fc6"] == (256 * 7 * 7 * 1024 + 1024) * 4
    assert parts["backbone"] > 100e6 and parts["rpn"] > 0             # ResNet-50 + FPN, fp32
    print(f"paper preset dense KAN head: {head_bytes / 1e6:.2f} MB")  # README reports it


@pytest.mark.parametrize("factory", [DenseKANFactory(KANSpec()), MetaKANFactory(KANSpec(), 1, 8)],
                         ids=["dense", "metakan"])
def test_the_small_detector_trains_and_detects_with_any_layer_factory(factory):
    torch.manual_seed(0)
    model = dm.build_detector("small", 5, factory, 32, 128)
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.tensor([[30.0, 40.0, 90.0, 100.0]]), "labels": torch.tensor([5])}]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness",
                           "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    head = model.roi_heads.box_predictor.head
    assert head.cls_score.edge_shape == (6, 32) and head.bbox_pred.edge_shape == (24, 32)
    assert all(p.grad is not None for p in head.parameters())
    model.eval()
    with torch.no_grad():
        (found, _) = model(images)
    assert set(found) == {"boxes", "scores", "labels"} and found["boxes"].shape[1] == 4


def test_the_head_concatenates_logits_and_deltas():
    head = dm.KANHead(8, 3, DenseKANFactory(KANSpec()))
    x = torch.rand(5, 8)
    logits, deltas = head.split(head(x))
    hidden = head.fc7(x)
    assert torch.equal(logits, head.cls_score(hidden)) and logits.shape == (5, 4)
    assert torch.equal(deltas, head.bbox_pred(hidden)) and deltas.shape == (5, 16)


def test_unknown_backbone_and_bad_weights_files_are_one_line_errors(tmp_path):
    with pytest.raises(KanbenchError, match="small, resnet50_fpn"):
        dm.build_trunk("vgg", 5, 32, 128)
    with pytest.raises(KanbenchError, match="not found"):
        dm.build_trunk("resnet50_fpn", 5, 32, 128, weights=str(tmp_path / "none.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(KanbenchError, match="cannot read") as err:
        dm.build_trunk("resnet50_fpn", 5, 32, 128, weights=str(garbage))
    assert "\n" not in str(err.value)
    stranger = tmp_path / "stranger.safetensors"
    save_file({"something.weight": torch.zeros(3)}, str(stranger))
    with pytest.raises(KanbenchError, match="do not fit"):
        dm.build_trunk("resnet50_fpn", 5, 32, 128, weights=str(stranger))


def test_a_resnet50_classification_checkpoint_loads_into_the_backbone(tmp_path):
    torch.manual_seed(0)
    classifier = resnet50()
    path = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(path))
    trunk = dm.build_trunk("resnet50_fpn", 5, 32, 128, weights=str(path))
    body = trunk.backbone.body
    assert torch.equal(body.conv1.weight, classifier.conv1.weight)
    assert torch.equal(body.layer4[2].conv3.weight, classifier.layer4[2].conv3.weight)
