"""Object detection with a KAN prediction head: a torchvision Faster R-CNN whose box head's
second layer (fc7) and class/box predictor are KAN layers from the method's layer factory.

The first projection of the pooled ROI features (fc6) stays a linear layer, as in the
SHARe-KAN setup the issue follows: methods compress the KAN head only, and records itemize
head and backbone bytes separately.

Backbones: `resnet50_fpn` (the paper preset: torchvision's ResNet-50 FPN, 1024-wide head;
weights from a local file when given) and `small` (a four-stage conv net at stride 16 for
CPU presets on 128-pixel images).

Data goes through the real readers: torchvision's `VOCDetection` (VOCdevkit layouts,
`difficult` flags kept) and `CocoDetection` + its instances JSON; `tasks.shapes` writes
both layouts for the offline tasks.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.datasets import CocoDetection, VOCDetection
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign
from torchvision.transforms.functional import pil_to_tensor

from suite.errors import KanbenchError


class KANBoxHead(nn.Module):
    """Pooled ROI features -> representation: fc6 linear + ReLU, then fc7 a KAN layer.
    (rois, C, P, P) -> (rois, width)."""

    def __init__(self, in_features: int, width: int, factory):
        super().__init__()
        self.fc6 = nn.Linear(in_features, width)
        self.fc7 = factory.linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc7(F.relu(self.fc6(x.flatten(1))))


class KANPredictor(nn.Module):
    """Representation -> class scores (rois, classes+1) and box deltas (rois, 4 (classes+1)),
    both KAN layers."""

    def __init__(self, width: int, num_classes: int, factory):
        super().__init__()
        self.cls_score = factory.linear(width, num_classes + 1)
        self.bbox_pred = factory.linear(width, 4 * (num_classes + 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


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


def build_detector(backbone: str, num_classes: int, factory, head_width: int,
                   image_size: int, weights: str | None = None) -> FasterRCNN:
    """A Faster R-CNN with the KAN box head; `num_classes` excludes the background."""
    if backbone == "resnet50_fpn":
        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                        num_classes=num_classes + 1)
        if weights:
            load_backbone_weights(model, weights)
        pooled = model.roi_heads.box_roi_pool.output_size[0]
        channels = model.backbone.out_channels
    elif backbone == "small":
        body = SmallBackbone()
        anchors = AnchorGenerator(sizes=((12, 24, 48, 96),), aspect_ratios=((0.5, 1.0, 2.0),))
        pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
        model = FasterRCNN(body, num_classes=num_classes + 1, min_size=image_size,
                           max_size=image_size, rpn_anchor_generator=anchors,
                           box_roi_pool=pool, rpn_pre_nms_top_n_train=300,
                           rpn_post_nms_top_n_train=150, rpn_pre_nms_top_n_test=150,
                           rpn_post_nms_top_n_test=100, box_batch_size_per_image=64,
                           box_detections_per_img=20)
        pooled, channels = 7, body.out_channels
    else:
        raise KanbenchError(f"detection backbone must be resnet50_fpn or small, got "
                            f"{backbone!r}")
    model.roi_heads.box_head = KANBoxHead(channels * pooled * pooled, head_width, factory)
    model.roi_heads.box_predictor = KANPredictor(head_width, num_classes, factory)
    return model


def load_backbone_weights(model: FasterRCNN, path: str) -> None:
    """Backbone (and FPN) weights from a local file: safetensors, or a torch checkpoint read
    with weights_only=True. One clear error when it is missing or does not fit."""
    file = Path(path)
    if not file.exists():
        raise KanbenchError(f"detection backbone weights not found at {file}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
        state = {k.removeprefix("backbone."): v for k, v in state.items()
                 if not k.startswith(("roi_heads.", "rpn."))}
        model.backbone.load_state_dict(state, strict=False)
    except Exception as err:  # noqa: BLE001 - any unreadable or mismatched file
        raise KanbenchError(f"detection backbone weights {file}: {err}") from None


def head_modules(model: FasterRCNN) -> list[nn.Module]:
    """The parts methods compress: fc7 and the predictor's two layers."""
    predictor = model.roi_heads.box_predictor
    return [model.roi_heads.box_head.fc7, predictor.cls_score, predictor.bbox_pred]


# --- data through the real readers ------------------------------------------------------------

def voc_target(annotation: dict, classes: tuple[str, ...]) -> dict:
    """A VOCDetection annotation -> {"boxes" (G, 4) continuous x0 y0 x1 y1, "labels" (G,)
    1-based (0 is background), "difficult" (G,) bool}; objects of other classes dropped."""
    objects = [o for o in annotation["annotation"].get("object", []) if o["name"] in classes]
    boxes = [[float(o["bndbox"]["xmin"]) - 1, float(o["bndbox"]["ymin"]) - 1,
              float(o["bndbox"]["xmax"]), float(o["bndbox"]["ymax"])] for o in objects]
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([classes.index(o["name"]) + 1 for o in objects],
                                   dtype=torch.int64),
            "difficult": torch.tensor([o.get("difficult", "0") == "1" for o in objects],
                                      dtype=torch.bool)}


def coco_target(annotations: list[dict], label_of_category: dict[int, int]) -> dict:
    """CocoDetection annotations -> the same target form, crowd boxes and unmapped
    categories dropped; COCO has no difficult flag."""
    kept = [a for a in annotations if not a.get("iscrowd") and a["category_id"] in
            label_of_category and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in kept)]
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([label_of_category[a["category_id"]] for a in kept],
                                   dtype=torch.int64),
            "difficult": torch.zeros(len(kept), dtype=torch.bool)}


def read_voc(root: Path, year: str, image_set: str, classes: tuple[str, ...]):
    """[(image (3, H, W) float in [0, 1], target), ...] through torchvision's VOCDetection."""
    folder = root / "VOCdevkit" / f"VOC{year}"
    if not (folder / "ImageSets" / "Main" / f"{image_set}.txt").exists():
        raise KanbenchError(f"voc: dataset not found at {folder} (VOCdevkit/VOC{year} with "
                            f"ImageSets/Main/{image_set}.txt); download PASCAL VOC there")
    reader = VOCDetection(str(root), year=year, image_set=image_set, download=False)
    return [(pil_to_tensor(image).float() / 255, voc_target(target, classes))
            for image, target in (reader[i] for i in range(len(reader)))]


def read_coco(images: Path, annotations: Path, label_of_name: dict[str, int]):
    """[(image, target), ...] through CocoDetection; `label_of_name` maps COCO category
    names to this model's labels (the zero-shot class mapping)."""
    if not annotations.exists() or not images.is_dir():
        raise KanbenchError(f"coco: dataset not found at {images} and {annotations}; "
                            f"download COCO there")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
        reader = CocoDetection(str(images), str(annotations))
    label_of_category = {c["id"]: label_of_name[c["name"]]
                         for c in reader.coco.loadCats(reader.coco.getCatIds())
                         if c["name"] in label_of_name}
    return [(pil_to_tensor(image).float() / 255, coco_target(anns, label_of_category))
            for image, anns in (reader[i] for i in range(len(reader)))]
