"""Detection metrics: PASCAL VOC mAP@0.5 (written here, following the VOC devkit) and COCO
mAP@[.5:.95] / AP50 (pycocotools' COCOeval).

VOC protocol, per class: detections sorted by score; each is a true positive when its best
overlap (IoU) with a ground-truth box of its class in its image is >= 0.5 and that box is
not yet matched, a false positive when that box was already matched (a duplicate) or the
overlap is too small; a match to a `difficult` box counts as neither, and difficult boxes
are not among the positives to find. AP is the area under the precision envelope
(`area`, VOC2010 onwards) or the mean of the envelope at recall 0, 0.1, ..., 1 (`11point`,
VOC2007). Classes with no positives are left out of the mean. Boxes are continuous
(x0, y0, x1, y1) pixel coordinates: VOC's 1-based inclusive integer boxes convert by
(xmin - 1, ymin - 1, xmax, ymax), which makes IoU here equal the devkit's "+1" formula.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch
import torchmetrics
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import box_iou

VOC_VARIANTS = ("area", "11point")
SPLIT_PREFIXES = ("", "transfer_")  # the in-domain test set, the zero-shot transfer set


@dataclass
class ImageTruth:
    boxes: torch.Tensor       # (G, 4) x0, y0, x1, y1
    labels: torch.Tensor      # (G,) int64
    difficult: torch.Tensor   # (G,) bool


@dataclass
class ImageDetections:
    boxes: torch.Tensor       # (D, 4)
    scores: torch.Tensor      # (D,)
    labels: torch.Tensor      # (D,)


def average_precision(recall: np.ndarray, precision: np.ndarray, variant: str) -> float:
    """AP of a precision/recall curve (detections in score order)."""
    if variant == "11point":
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    if variant != "area":
        raise ValueError(f"VOC AP variant must be one of {VOC_VARIANTS}")
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]                          # precision envelope
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def match_image(boxes: torch.Tensor, truth_boxes: torch.Tensor, difficult: torch.Tensor,
                iou_threshold: float) -> np.ndarray:
    """One image and class, detections in descending score order: per detection 1 (true
    positive), 0 (false positive: no overlap >= threshold, or a duplicate) or -1 (matched a
    difficult box: neither)."""
    outcome = np.zeros(len(boxes), dtype=np.int8)
    if len(truth_boxes) == 0:
        return outcome
    overlaps = box_iou(boxes.double(), truth_boxes.double())           # (D, G)
    best_iou, best = overlaps.max(1)
    matched = np.zeros(len(truth_boxes), dtype=bool)
    for d, (iou, g) in enumerate(zip(best_iou.tolist(), best.tolist(), strict=True)):
        if iou < iou_threshold:
            continue
        if difficult[g]:
            outcome[d] = -1
        elif not matched[g]:
            matched[g], outcome[d] = True, 1
    return outcome


def precision_recall(detections: list[ImageDetections], truths: list[ImageTruth], label: int,
                     iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray] | None:
    """One class's (recall, precision) over its detections in descending score order, or None
    when the class has no (non-difficult) positives."""
    positives = sum(int((~t.difficult[t.labels == label]).sum()) for t in truths)
    if positives == 0:
        return None
    scores, outcomes = [], []
    for det, truth in zip(detections, truths, strict=True):
        mine = det.labels == label
        order = torch.argsort(det.scores[mine], descending=True, stable=True)
        theirs = truth.labels == label
        scores.append(det.scores[mine][order].double().numpy())
        outcomes.append(match_image(det.boxes[mine][order], truth.boxes[theirs],
                                    truth.difficult[theirs].numpy(), iou_threshold))
    order = np.argsort(-np.concatenate(scores), kind="stable")       # ties: image order
    outcome = np.concatenate(outcomes)[order]
    outcome = outcome[outcome >= 0]                                    # difficult: neither
    tp_sum, fp_sum = np.cumsum(outcome == 1, dtype=float), np.cumsum(outcome == 0, dtype=float)
    return tp_sum / positives, tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(float).eps)


def voc_map(detections: list[ImageDetections], truths: list[ImageTruth], labels: list[int],
            variant: str = "area", iou_threshold: float = 0.5) -> dict:
    """{"map": mean AP over classes with positives, "ap": {label: AP or None}}."""
    return voc_maps(detections, truths, labels, (variant,), iou_threshold)[variant]


def voc_maps(detections: list[ImageDetections], truths: list[ImageTruth], labels: list[int],
             variants: tuple[str, ...] = VOC_VARIANTS, iou_threshold: float = 0.5) -> dict:
    """voc_map for several AP variants from one matching pass: {variant: {"map", "ap"}}."""
    assert len(detections) == len(truths), (len(detections), len(truths))
    curves = {label: precision_recall(detections, truths, label, iou_threshold)
              for label in labels}
    result = {}
    for variant in variants:
        aps = {label: None if curve is None else average_precision(*curve, variant)
               for label, curve in curves.items()}
        scored = [ap for ap in aps.values() if ap is not None]
        result[variant] = {"map": float(np.mean(scored)) if scored else float("nan"), "ap": aps}
    return result


def coco_map(coco: COCO, detections: list[dict]) -> dict:
    """COCOeval bbox on COCO-format detections ({image_id, category_id, bbox [x, y, w, h],
    score}): {"map": AP@[.5:.95], "ap50": AP@.5}. No detections scores 0."""
    if not detections:
        return {"map": 0.0, "ap50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        results = coco.loadRes(detections)
        evaluator = COCOeval(coco, results, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"map": float(evaluator.stats[0]), "ap50": float(evaluator.stats[1])}


def coco_ground_truth(truths: list[ImageTruth], sizes: list[tuple[int, int]],
                      labels: list[int]) -> COCO:
    """A pycocotools COCO index of the truths (image ids 1.., category id = label; difficult
    boxes are crowd regions, which COCOeval ignores as VOC ignores difficult ones)."""
    images = [{"id": i + 1, "height": h, "width": w} for i, (h, w) in enumerate(sizes)]
    annotations = []
    for i, truth in enumerate(truths):
        for box, label, difficult in zip(truth.boxes.tolist(), truth.labels.tolist(),
                                         truth.difficult.tolist(), strict=True):
            x0, y0, x1, y1 = box
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": label, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": int(difficult)})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": label, "name": str(label)} for label in labels]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_detections(detections: list[ImageDetections]) -> list[dict]:
    """Detections in COCO's result format, for the index coco_ground_truth builds."""
    return [{"image_id": i + 1, "category_id": int(label), "score": float(score),
             "bbox": [x0, y0, x1 - x0, y1 - y0]}
            for i, det in enumerate(detections)
            for (x0, y0, x1, y1), score, label in zip(det.boxes.tolist(), det.scores.tolist(),
                                                      det.labels.tolist(), strict=True)]


class DetectionMetrics(torchmetrics.Metric):
    """The detection metrics of a KAN head's outputs on cached fc6 features.

    update(output (R, 5 (classes+1)), info) takes one test batch of whole images (see
    `tasks.detection_data.image_batches`): it decodes the box deltas against the proposals
    with torchvision's own post-processing (softmax, per-class NMS, score threshold, top-k),
    maps boxes back to the original image size and keeps detections and truths per image.
    compute() gives, for the in-domain set and (prefixed `transfer_`) the transfer set:
    VOC mAP@0.5 by area and by 11 points, `map50` the task's default of the two, and COCO
    mAP@[.5:.95] and AP50.
    """

    full_state_update = False

    def __init__(self, num_classes: int, variant: str, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100):
        super().__init__()
        if variant not in VOC_VARIANTS:
            raise ValueError(f"VOC AP variant must be one of {VOC_VARIANTS}, got {variant!r}")
        self.num_classes, self.variant = num_classes, variant
        self.decoder = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, score_thresh,
                                nms_thresh, detections_per_img)
        for split in SPLIT_PREFIXES:  # per image: (D, 6) box score label, (G, 6) box label diff
            self.add_state(f"{split}detections", default=[], dist_reduce_fx=None)
            self.add_state(f"{split}truths", default=[], dist_reduce_fx=None)
            self.add_state(f"{split}sizes", default=[], dist_reduce_fx=None)

    def update(self, output: torch.Tensor, info: dict) -> None:
        classes = self.num_classes + 1
        logits, deltas = output.float().split([classes, 4 * classes], -1)
        count = len(info["image_size"])
        local = info["roi_image"] - info["first_image"]                # (R,) in 0..count-1
        proposals = [info["proposals"][local == i] for i in range(count)]
        order = torch.cat([torch.nonzero(local == i)[:, 0] for i in range(count)])
        boxes, scores, labels = self.decoder.postprocess_detections(
            logits[order], deltas[order], proposals,
            [tuple(s) for s in info["image_size"].tolist()])
        prefix = SPLIT_PREFIXES[int(info["split"])]
        truth_local = info["truth_image"] - info["first_image"]
        for i in range(count):
            box = resize_boxes(boxes[i], info["image_size"][i].tolist(),
                               info["original_size"][i].tolist())
            getattr(self, f"{prefix}detections").append(
                torch.cat([box, scores[i][:, None], labels[i][:, None].float()], 1))
            getattr(self, f"{prefix}truths").append(info["truth"][truth_local == i])
            getattr(self, f"{prefix}sizes").append(info["original_size"][i])

    def compute(self) -> dict[str, torch.Tensor]:
        labels = list(range(1, self.num_classes + 1))
        result = {}
        for prefix in SPLIT_PREFIXES:
            found = getattr(self, f"{prefix}detections")
            if not found:
                continue
            detections = [ImageDetections(d[:, :4], d[:, 4], d[:, 5].long()) for d in found]
            truths = [ImageTruth(t[:, :4], t[:, 4].long(), t[:, 5].bool())
                      for t in getattr(self, f"{prefix}truths")]
            voc = {v: m["map"] for v, m in voc_maps(detections, truths, labels).items()}
            sizes = [tuple(s.tolist()) for s in getattr(self, f"{prefix}sizes")]
            coco = coco_map(coco_ground_truth(truths, sizes, labels),
                            coco_detections(detections))
            result.update({f"{prefix}map50": voc[self.variant],
                           f"{prefix}map50_area": voc["area"],
                           f"{prefix}map50_11point": voc["11point"],
                           f"{prefix}coco_map": coco["map"], f"{prefix}coco_ap50": coco["ap50"]})
        return {k: torch.tensor(v) for k, v in result.items()}
