"""The detector: a torchvision Faster R-CNN whose box head ends in KAN layers.

A detection cell has two parts. The *trunk* (backbone, RPN, ROI pooling and the first box-head
projection fc6) is torchvision's Faster R-CNN with its own linear box head and predictor,
trained once per task and `trunk_seed` and then frozen. The *KAN head* (fc7 and the class /
box predictor, all three KAN layers from the method's layer factory) is what each method
trains and compresses, on the trunk's fc6 features:

    image -> backbone -> RPN proposals -> ROI align -> fc6 + ReLU  (trunk, frozen)
          -> fc7 (KAN) -> cls_score (KAN), bbox_pred (KAN)          (KAN head, the method's)

`with_kan_head` puts a KAN head on a trunk: the torchvision detector a method deploys. fc6
stays linear, as in SHARe-KAN's setup.

Backbones: `resnet50_fpn` (the paper preset: torchvision's ResNet-50 FPN, 1024-wide head) and
`small` (four conv stages at stride 16, for CPU presets on 128-pixel images). The small
trunk's ROI align takes one sample per bin and 32 ROIs per image: profiled on a 2-core
CPU, torchvision's roi_align backward was most of a training step, and this about halved
it without costing mAP in our trials.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from kanbench.suite.errors import KanbenchError

BACKBONES = ("small", "resnet50_fpn")


class KANHead(nn.Module):
    """fc6 features (rois, width) -> (rois, (classes+1) + 4 (classes+1)): class logits, then
    per-class box deltas. fc7 is the factory's KAN layer; cls_score and bbox_pred are too, or
    torchvision's linear predictor with `linear_predictor` (SHARe-KAN's head, whose storage
    counts the 1024 x 1024 KAN layer alone)."""

    def __init__(self, width: int, num_classes: int, factory, linear_predictor: bool = False):
        super().__init__()
        self.num_classes = num_classes                                 # without background
        self.fc7 = factory.linear(width, width)
        predictor = nn.Linear if linear_predictor else factory.linear
        self.cls_score = predictor(width, num_classes + 1)
        self.bbox_pred = predictor(width, 4 * (num_classes + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc7(x)                                           # (rois, width)
        return torch.cat([self.cls_score(hidden), self.bbox_pred(hidden)], -1)

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rois, 5 (classes+1)) -> class logits (rois, classes+1), deltas (rois, 4 (classes+1))."""
        return output.split([self.num_classes + 1, 4 * (self.num_classes + 1)], -1)


class FC6(nn.Module):
    """The trunk's first box-head layer: pooled ROIs (rois, C, P, P) -> relu(fc6) (rois, width)."""

    def __init__(self, fc6: nn.Linear):
        super().__init__()
        self.fc6 = fc6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc6(x.flatten(1)))


class KANPredictor(nn.Module):
    """torchvision's predictor interface over a KANHead: (rois, width) -> (logits, deltas)."""

    def __init__(self, head: KANHead):
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.split(self.head(x))


class SmallBackbone(nn.Sequential):
    """Four conv stages (stride 2 each): (B, 3, H, W) -> (B, channels, H/16, W/16)."""

    def __init__(self, channels: int = 64):
        widths = [3, 16, 32, 48, channels]
        layers = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b),
                       nn.ReLU(inplace=True)]
        super().__init__(*layers)
        self.out_channels = channels


def build_trunk(backbone: str, num_classes: int, head_width: int, image_size: int,
                detections_per_img: int = 100, weights: str = "") -> FasterRCNN:
    """Faster R-CNN with torchvision's linear box head (fc6, fc7) and predictor, which train
    the trunk; `num_classes` excludes the background. `weights` (resnet50_fpn only): "" for
    none, "imagenet" for torchvision's ImageNet ResNet-50 (downloaded where the network
    allows), or the path of a local file (`load_backbone_weights`)."""
    if weights and backbone != "resnet50_fpn":
        raise KanbenchError(f"task.backbone_weights applies to resnet50_fpn only, not "
                            f"{backbone!r}")
    if backbone == "resnet50_fpn":
        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=imagenet_weights(weights),
                                        num_classes=num_classes + 1, min_size=image_size,
                                        box_detections_per_img=detections_per_img)
        if weights not in ("", "imagenet"):
            load_backbone_weights(model, weights)
    elif backbone == "small":
        body = SmallBackbone()
        anchors = AnchorGenerator(sizes=((12, 24, 48, 96),), aspect_ratios=((0.5, 1.0, 2.0),))
        pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=1)
        model = FasterRCNN(body, num_classes=num_classes + 1, min_size=image_size,
                           max_size=image_size, rpn_anchor_generator=anchors,
                           box_roi_pool=pool, rpn_pre_nms_top_n_train=300,
                           rpn_post_nms_top_n_train=150, rpn_pre_nms_top_n_test=150,
                           rpn_post_nms_top_n_test=100, box_batch_size_per_image=32,
                           box_detections_per_img=detections_per_img)
    else:
        raise KanbenchError(f"detection backbone must be one of {', '.join(BACKBONES)}, got "
                            f"{backbone!r}")
    pooled = model.roi_heads.box_roi_pool.output_size[0]
    in_features = model.backbone.out_channels * pooled * pooled
    model.roi_heads.box_head = TwoMLPHead(in_features, head_width)
    model.roi_heads.box_predictor = FastRCNNPredictor(head_width, num_classes + 1)
    return model


def imagenet_weights(weights: str):
    """torchvision's ImageNet ResNet-50 weights when asked for, after checking that they are
    cached or can be downloaded (one clear error otherwise); None otherwise."""
    if weights != "imagenet":
        return None
    try:
        ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # noqa: BLE001 - no network, or a broken download
        raise KanbenchError(f"resnet50_fpn: could not get torchvision's ImageNet weights "
                            f"({type(err).__name__}); put a ResNet-50 checkpoint on disk and "
                            f"pass task.backbone_weights=<its path>") from None
    return ResNet50_Weights.IMAGENET1K_V1


def with_kan_head(trunk: FasterRCNN, head: KANHead) -> FasterRCNN:
    """The trunk (in place) with fc7 and the predictor replaced by the KAN head."""
    trunk.roi_heads.box_head = FC6(trunk.roi_heads.box_head.fc6)
    trunk.roi_heads.box_predictor = KANPredictor(head)
    return trunk


def build_detector(backbone: str, num_classes: int, factory, head_width: int,
                   image_size: int, weights: str = "") -> FasterRCNN:
    """A KAN-headed Faster R-CNN with an untrained trunk (the paper preset's model)."""
    trunk = build_trunk(backbone, num_classes, head_width, image_size, weights=weights)
    return with_kan_head(trunk, KANHead(head_width, num_classes, factory))


def trunk_parts(detector: FasterRCNN) -> dict[str, int]:
    """Bytes of the parts a method does not touch: backbone (with FPN), RPN, fc6."""
    def size(module: nn.Module) -> int:
        return sum(t.numel() * t.element_size() for t in module.state_dict().values())

    return {"backbone": size(detector.backbone), "rpn": size(detector.rpn),
            "fc6": size(detector.roi_heads.box_head.fc6)}


def load_backbone_weights(model: FasterRCNN, path: str) -> None:
    """Backbone weights from a local file: a torchvision Faster R-CNN checkpoint (backbone and
    FPN) or a ResNet-50 classification checkpoint (the FPN stays untrained), as safetensors or
    a torch file read with weights_only=True. A file that is missing, unreadable or does not
    fit the backbone is one clear error."""
    file = Path(path)
    if not file.exists():
        raise KanbenchError(f"detection backbone weights not found at {file}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise KanbenchError(f"detection backbone weights {file}: cannot read "
                            f"({type(err).__name__}: {first_line})") from None
    state = {k.removeprefix("backbone."): v for k, v in state.items()
             if not k.startswith(("roi_heads.", "rpn."))}
    if not any(k.startswith("body.") for k in state):       # a classification checkpoint
        state = {f"body.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    try:
        result = model.backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:                               # a shape mismatch
        raise KanbenchError(f"detection backbone weights {file} do not fit: "
                            f"{str(err).splitlines()[-1].strip()}") from None
    missing = [k for k in result.missing_keys if not k.startswith("fpn.")]
    if result.unexpected_keys or missing:
        name = (result.unexpected_keys or missing)[0]
        raise KanbenchError(f"detection backbone weights {file} do not fit the backbone "
                            f"({len(result.unexpected_keys)} unexpected, {len(missing)} "
                            f"missing keys, e.g. {name!r})")
