"""Detection data: the VOC / COCO readers, the trunk trained once, and the cached fc6 features
that every method's KAN head trains and is tested on.

    read_voc / read_coco      images and targets through torchvision's VOCDetection and
                              CocoDetection (`difficult` kept; COCO crowd boxes become
                              difficult, i.e. ignored by both metrics)
    train_trunk               the Faster R-CNN with its linear head, through the suite's one
                              LightningModule (`trunk_loss` is its loss)
    head_inputs               fc6 features of a set of images, with what training (labels and
                              box targets) or evaluation (proposals, sizes, truths) needs
    RoiFeatureData            the LightningDataModule over those features

Training ROIs are every RPN proposal of an image plus its ground-truth boxes, labelled and
encoded by torchvision's own matcher and box coder (what `select_training_samples` does,
without its random subsampling). Test ROIs are the RPN's test-time proposals.
"""

from __future__ import annotations

import contextlib
import io
from collections import OrderedDict
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import CocoDetection, VOCDetection
from torchvision.models.detection import FasterRCNN
from torchvision.transforms.functional import pil_to_tensor

from kanbench.suite.config import TRAIN_DEFAULTS
from kanbench.suite.errors import KanbenchError, regular_file
from kanbench.suite.lit import KanbenchModule, fit
from kanbench.tasks.common import TensorDataModule

Example = tuple[torch.Tensor, dict]  # image (3, H, W) in [0, 1], target

# --- the real readers -------------------------------------------------------------------------


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
    """CocoDetection annotations -> the same target form; unmapped categories and empty
    boxes dropped, crowd boxes kept as difficult (both metrics ignore detections on them)."""
    kept = [a for a in annotations if a["category_id"] in label_of_category
            and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in kept)]
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([label_of_category[a["category_id"]] for a in kept],
                                   dtype=torch.int64),
            "difficult": torch.tensor([bool(a.get("iscrowd")) for a in kept], dtype=torch.bool)}


def read_voc(root: Path, year: str, image_set: str, classes: tuple[str, ...],
             limit: int = 0) -> list[Example]:
    """The first `limit` (all when 0) images of a VOC image set through VOCDetection."""
    folder = root / "VOCdevkit" / f"VOC{year}"
    if not (folder / "ImageSets" / "Main" / f"{image_set}.txt").exists():
        raise KanbenchError(f"voc: dataset not found at {folder} (VOCdevkit/VOC{year} with "
                            f"ImageSets/Main/{image_set}.txt); download PASCAL VOC there")
    try:
        reader = VOCDetection(str(root), year=year, image_set=image_set, download=False)
    except Exception as err:  # noqa: BLE001 - an unreadable image set
        raise KanbenchError(f"voc: cannot read {folder} ({type(err).__name__}: {err})") \
            from None
    examples = []
    for i in range(min(limit, len(reader)) if limit else len(reader)):
        regular_file(Path(reader.annotations[i]), "voc")
        regular_file(Path(reader.images[i]), "voc")
        try:
            image, target = reader[i]
            examples.append((pil_to_tensor(image).float() / 255, voc_target(target, classes)))
        except Exception as err:  # noqa: BLE001 - any unreadable image or annotation
            raise KanbenchError(f"voc: cannot read {reader.annotations[i]} or its image "
                                f"({type(err).__name__}: {err})") from None
    return examples


def read_coco(images: Path, annotations: Path, label_of_name: dict[str, int],
              limit: int = 0) -> list[Example]:
    """The first `limit` (all when 0) images through CocoDetection; `label_of_name` maps COCO
    category names to this model's labels (the zero-shot class mapping)."""
    if not annotations.exists() or not images.is_dir():
        raise KanbenchError(f"coco: dataset not found at {images} and {annotations}; "
                            f"download COCO there")
    regular_file(annotations, "coco")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
            reader = CocoDetection(str(images), str(annotations))
        missing = [k for k in ("images", "annotations", "categories")
                   if k not in reader.coco.dataset]
        if missing:
            raise ValueError(f"no {missing[0]!r} list")
        label_of_category = {c["id"]: label_of_name[c["name"]]
                             for c in reader.coco.loadCats(reader.coco.getCatIds())
                             if c["name"] in label_of_name}
        count = min(limit, len(reader)) if limit else len(reader)
        for i in range(count):
            regular_file(images / reader.coco.loadImgs(reader.ids[i])[0]["file_name"], "coco")
        return [(pil_to_tensor(image.convert("RGB")).float() / 255,
                 coco_target(anns, label_of_category))
                for image, anns in (reader[i] for i in range(count))]
    except KanbenchError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable image or annotation file
        raise KanbenchError(f"coco: cannot read {annotations} / {images} "
                            f"({type(err).__name__}: {err})") from None


# --- the trunk --------------------------------------------------------------------------------


def trunk_loss(net: FasterRCNN, batch) -> torch.Tensor:
    """The trunk's loss: the sum of torchvision's four detector losses."""
    images, targets = batch
    return sum(net(list(images), [{"boxes": t["boxes"], "labels": t["labels"]}
                                  for t in targets]).values())


def collate(batch: list[Example]) -> tuple[list[torch.Tensor], list[dict]]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def train_trunk(trunk: FasterRCNN, train: list[Example], epochs: int, batch_size: int,
                lr: float, seed: int, checkpoint_dir: Path | None = None) -> FasterRCNN:
    """Train the whole detector (linear head) on the examples; cosine lr, AdamW; with a
    checkpoint each epoch in `checkpoint_dir` to resume from."""
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    settings = {**TRAIN_DEFAULTS, "lr": lr, "weight_decay": 1e-4, "scheduler": "cosine",
                "gradient_clip": 10.0}
    module = KanbenchModule(trunk, settings, "trunk", loss=trunk_loss)
    fit(module, epochs, checkpoint_dir=checkpoint_dir, train_dataloaders=loader)
    return trunk.eval()


# --- fc6 features -----------------------------------------------------------------------------


def proposals_and_features(trunk: FasterRCNN, images: list[torch.Tensor],
                           targets: list[dict] | None):
    """Test-time RPN proposals, with the ground-truth boxes appended when targets are given,
    in the resized image's coordinates; their fc6 features; the resized sizes and targets."""
    image_list, resized = trunk.transform(images, targets)
    features = trunk.backbone(image_list.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    proposals, _ = trunk.rpn(image_list, features)                     # [(P_i, 4)]
    if resized is not None:
        proposals = [torch.cat([p, t["boxes"]]) for p, t in zip(proposals, resized, strict=True)]
    pooled = trunk.roi_heads.box_roi_pool(features, proposals, image_list.image_sizes)
    fc6 = torch.relu(trunk.roi_heads.box_head.fc6(pooled.flatten(1)))  # (sum P_i, width)
    return proposals, fc6, image_list.image_sizes, resized


@torch.no_grad()
def head_inputs(trunk: FasterRCNN, examples: list[Example], train: bool,
                chunk: int = 16) -> dict[str, torch.Tensor]:
    """fc6 features of the examples' ROIs and, for training, their labels and box targets
    {"features" (R, width), "targets" (R, 5): label, dx, dy, dw, dh}; for evaluation
    {"features", "proposals" (R, 4), "roi_image" (R,), "image_size" (n, 2) resized (h, w),
    "original_size" (n, 2), "truth" (G, 6): box, label, difficult, "truth_image" (G,)}."""
    trunk.eval()
    heads = trunk.roi_heads
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(examples), chunk):
        part = examples[start:start + chunk]
        images = [image for image, _ in part]
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in part]
        proposals, fc6, sizes, resized = proposals_and_features(trunk, images,
                                                                targets if train else None)
        pieces = {"features": fc6}
        if train:
            matched, labels = heads.assign_targets_to_proposals(
                proposals, [t["boxes"] for t in resized], [t["labels"] for t in resized])
            matched_boxes = [t["boxes"][m] if len(t["boxes"]) else torch.zeros_like(p)
                             for t, m, p in zip(resized, matched, proposals, strict=True)]
            deltas = heads.box_coder.encode(matched_boxes, proposals)  # [(P_i, 4)]
            pieces["targets"] = torch.cat([torch.cat(labels)[:, None].float(),
                                           torch.cat(deltas)], 1)
        else:
            pieces["proposals"] = torch.cat(proposals)
            pieces["roi_image"] = torch.cat([torch.full((len(p),), start + i)
                                             for i, p in enumerate(proposals)])
            pieces["image_size"] = torch.tensor(sizes)
            pieces["original_size"] = torch.tensor([list(im.shape[-2:]) for im in images])
            pieces["truth"] = torch.cat([torch.cat([t["boxes"], t["labels"][:, None].float(),
                                                    t["difficult"][:, None].float()], 1)
                                         for _, t in part])
            pieces["truth_image"] = torch.cat([torch.full((len(t["labels"]),), start + i)
                                               for i, (_, t) in enumerate(part)])
        for name, value in pieces.items():
            out.setdefault(name, []).append(value)
    return {name: torch.cat(values) for name, values in out.items()}


# --- the datamodule ---------------------------------------------------------------------------

SPLITS = ("test", "transfer")  # evaluation sets: in-domain, zero-shot on the mapped classes


def image_batches(split: int, inputs: dict[str, torch.Tensor], images_per_batch: int):
    """One evaluation set as test batches of whole images: (features (R, width), info) with
    image indices local to the set, so the metric can decode and match per image."""
    count = len(inputs["image_size"])
    for start in range(0, count, images_per_batch):
        stop = min(start + images_per_batch, count)
        rois = (inputs["roi_image"] >= start) & (inputs["roi_image"] < stop)
        truths = (inputs["truth_image"] >= start) & (inputs["truth_image"] < stop)
        yield inputs["features"][rois], {
            "split": torch.tensor(split), "first_image": torch.tensor(start),
            "proposals": inputs["proposals"][rois], "roi_image": inputs["roi_image"][rois],
            "image_size": inputs["image_size"][start:stop],
            "original_size": inputs["original_size"][start:stop],
            "truth": inputs["truth"][truths], "truth_image": inputs["truth_image"][truths]}


class RoiFeatureData(TensorDataModule):
    """Training ROIs (fc6 features, targets) shuffled in batches of `batch_size`; validation
    batches of whole held-out training images (scored as in-domain); test batches of whole
    images from the in-domain set, then the transfer set when there is one.
    `timing` holds how long the trunk and the features took (or that they came from cache)."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int,
                 timing: dict, images_per_batch: int = 64):
        super().__init__((tensors["train.features"], tensors["train.targets"]), None, None,
                         batch_size, seed)
        self.evaluation = [(i, self.split(tensors, name)) for i, name in enumerate(SPLITS)
                           if f"{name}.features" in tensors]
        self.validation = [(SPLITS.index("test"), self.split(tensors, "val"))]
        self.images_per_batch, self.timing = images_per_batch, timing

    @staticmethod
    def split(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
        return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{name}.")}

    def val_dataloader(self) -> DataLoader:
        return self.image_loader(self.validation)

    def test_dataloader(self) -> DataLoader:
        return self.image_loader(self.evaluation)

    def image_loader(self, sets: list[tuple[int, dict]]) -> DataLoader:
        batches = [batch for split, inputs in sets
                   for batch in image_batches(split, inputs, self.images_per_batch)]
        return DataLoader(batches, batch_size=None)
