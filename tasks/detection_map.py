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
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

VOC_VARIANTS = ("area", "11point")


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


def class_ap(detections: list[ImageDetections], truths: list[ImageTruth], label: int,
             iou_threshold: float, variant: str) -> float | None:
    """One class's AP, or None when the class has no (non-difficult) positives."""
    positives = sum(int((~t.difficult[t.labels == label]).sum()) for t in truths)
    if positives == 0:
        return None
    found = []                                                        # (score, image, box)
    for image, det in enumerate(detections):
        keep = det.labels == label
        found += [(float(s), image, b) for s, b in zip(det.scores[keep], det.boxes[keep],
                                                       strict=True)]
    found.sort(key=lambda f: -f[0])
    matched = [torch.zeros(int((t.labels == label).sum()), dtype=torch.bool) for t in truths]
    tp, fp = [], []
    for _, image, box in found:
        truth = truths[image]
        mine = truth.labels == label
        overlaps = box_iou(box[None].double(), truth.boxes[mine].double())[0] \
            if mine.any() else torch.zeros(0)
        best = int(overlaps.argmax()) if len(overlaps) else -1
        if best >= 0 and overlaps[best] >= iou_threshold:
            if truth.difficult[mine][best]:
                continue                                              # neither TP nor FP
            hit = not matched[image][best]
            matched[image][best] = True
            tp.append(hit)
            fp.append(not hit)                                        # a duplicate
        else:
            tp.append(False)
            fp.append(True)
    tp_sum, fp_sum = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
    recall = tp_sum / positives
    precision = tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(float).eps)
    return average_precision(recall, precision, variant)


def voc_map(detections: list[ImageDetections], truths: list[ImageTruth], labels: list[int],
            variant: str = "area", iou_threshold: float = 0.5) -> dict:
    """{"map": mean AP over classes with positives, "ap": {label: AP or None}}."""
    assert len(detections) == len(truths), (len(detections), len(truths))
    aps = {label: class_ap(detections, truths, label, iou_threshold, variant)
           for label in labels}
    scored = [ap for ap in aps.values() if ap is not None]
    return {"map": float(np.mean(scored)) if scored else float("nan"), "ap": aps}


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
