"""Object detection tasks: a Faster R-CNN whose KAN head (fc7 and the class / box predictor)
is built from the method's layer factory; VOC mAP@0.5 and COCO mAP in-domain and zero-shot
on a second dataset over the mapped classes.

    shapes_voc    synthetic shapes in the VOC layout (tasks.shapes), transfer to shapes_coco
    shapes_coco   synthetic shapes in the COCO layout
    voc           PASCAL VOC (VOCdevkit/VOC2007, VOC2012) under the data root, transfer to
                  COCO val2017 when `transfer` is on
    coco          COCO 2017 (coco/{train2017,val2017,annotations}) under the data root

A cell's network is the KAN head alone (tasks.detection_model): it trains on fc6 features of
the ROIs of a trunk (backbone, RPN, fc6) that is trained once per task settings and
`trunk_seed`, and cached with those features under <cache>/detection/, so the five methods
and three seeds of a grid share one trunk, as heads compressed on one pretrained detector
would. Seeds vary the head (its initialization and the order of its training ROIs). `n_val` training
images, picked by `split_seed`, are held out of trunk and head training as the validation
split (the first n_train + n_val images are the pool when n_train is set); records
itemize the head as the KAN bytes and the trunk's parts under `storage.frozen`, and time the
trunk and the features under `timing` (with whether they came from the cache).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from safetensors.torch import load_file, save_file
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights
from torchvision.models.detection.roi_heads import fastrcnn_loss

from kanbench.suite.cache import ContentCache
from kanbench.suite.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, SEED, Range, content_hash
from kanbench.suite.errors import KanbenchError
from kanbench.suite.interfaces import Task
from kanbench.suite.registry import TASKS
from kanbench.tasks import shapes
from kanbench.tasks.detection_data import (
    RoiFeatureData,
    head_inputs,
    read_coco,
    read_voc,
    train_trunk,
)
from kanbench.tasks.detection_map import VOC_VARIANTS, DetectionMetrics
from kanbench.tasks.detection_model import BACKBONES, KANHead, build_trunk, trunk_parts

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
VOC_TO_COCO = {"aeroplane": "airplane", "diningtable": "dining table",
               "motorbike": "motorcycle", "pottedplant": "potted plant", "sofa": "couch",
               "tvmonitor": "tv"}  # the other 14 VOC classes have the same name in COCO
COCO_CLASSES = tuple(c for c in FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
                     if c not in ("__background__", "N/A"))          # the 80 COCO categories
SHAPES_SIZES = {"voc": (800, 300), "coco": (400, 300)}  # (train, test) images written
TRUNK_VERSION = 2  # in the trunk cache key: bump when the trunk, feature or entry format changes


class DetectionTask(Task):
    metric, higher_is_better = "map50", True
    classes: tuple[str, ...] = ()
    defaults = {"backbone": "small", "backbone_weights": "", "head_width": 128,
                "image_size": 128, "detections_per_img": 20, "n_train": 0, "n_test": 0,
                "voc_variant": "area", "trunk_epochs": 14, "trunk_batch_size": 16,
                "trunk_lr": 4e-3, "trunk_seed": 0, "n_val": 100, "split_seed": 0,
                "predictor": None}   # None: cls_score and bbox_pred are KAN layers too
    ranges = {"head_width": AT_LEAST_ONE, "image_size": Range(32),
              "detections_per_img": AT_LEAST_ONE, "n_train": NON_NEGATIVE,
              "n_test": NON_NEGATIVE, "n_transfer": NON_NEGATIVE,
              "trunk_epochs": AT_LEAST_ONE, "trunk_batch_size": AT_LEAST_ONE,
              "trunk_lr": POSITIVE, "trunk_seed": SEED, "n_val": AT_LEAST_ONE,
              "split_seed": SEED}
    choices = {"backbone": tuple(BACKBONES), "voc_variant": tuple(VOC_VARIANTS),
               "predictor": ("linear",)}
    train_defaults = {"max_epochs": 4, "batch_size": 256, "lr": 4e-3}

    # --- data: subclasses say where it is and how to read it ------------------------------

    def locate(self, args: dict, data_root: Path) -> None:
        """Raise the one-line missing-data error (or write the data where it can be made)."""
        raise NotImplementedError

    def read(self, args: dict, data_root: Path, split: str) -> list:
        """[(image, target)] of `train` (the first `train_pool(args)` images; all when 0),
        `test` or `transfer` (tasks.detection_data)."""
        raise NotImplementedError

    @staticmethod
    def train_pool(args: dict) -> int:
        """How many training images to read: n_train plus the validation images (0: all)."""
        return args["n_train"] + args["n_val"] if args["n_train"] else 0

    @staticmethod
    def holdout(images: list, args: dict) -> tuple[list, list]:
        """(train, val): `n_val` images picked by `split_seed` held out, both in file order."""
        if not 0 < args["n_val"] < len(images):
            raise KanbenchError(f"task.n_val must be in [1, {len(images) - 1}] for "
                                f"{len(images)} training images, got {args['n_val']}")
        generator = torch.Generator().manual_seed(args["split_seed"])
        held = set(torch.randperm(len(images), generator=generator)[:args["n_val"]].tolist())
        return ([e for i, e in enumerate(images) if i not in held],
                [e for i, e in enumerate(images) if i in held])

    def has_transfer(self, args: dict) -> bool:
        """Whether a zero-shot transfer set is evaluated (tasks with `transfer` in defaults)."""
        return args.get("transfer", False)

    def check_data(self, args, data_root):
        self.locate(args, Path(data_root))

    def check_args(self, args: dict) -> None:
        weights = args["backbone_weights"]
        if weights and args["backbone"] != "resnet50_fpn":
            raise KanbenchError("task.backbone_weights applies to the resnet50_fpn backbone "
                                "only")
        if weights not in ("", "imagenet") and not Path(weights).is_file():
            raise KanbenchError(f"detection backbone weights not found at {weights}")

    # --- the trunk and the head's inputs, cached -----------------------------------------

    def trunk(self, args: dict):
        return build_trunk(args["backbone"], len(self.classes), args["head_width"],
                           args["image_size"], args["detections_per_img"],
                           args["backbone_weights"])

    def datamodule(self, args, data_root, batch_size, seed, cache_dir=None):
        self.check_data(args, data_root)
        tensors, timing = self.head_inputs(args, Path(data_root), cache_dir)
        return RoiFeatureData(tensors, batch_size, seed, timing)

    def prepare_shared(self, args, data_root, cache_dir):
        self.head_inputs(args, Path(data_root), cache_dir)
        return True

    def head_inputs(self, args: dict, data_root: Path, cache_dir) -> tuple[dict, dict]:
        """The trunk and its fc6 features from cache_dir/detection/<key>, made and saved on
        first use (made every time without a cache_dir): (tensors by name, timing)."""
        if cache_dir is None:
            return self.prepare(args, data_root)
        made_from = {k: v for k, v in args.items() if v is not None}  # unset: as before it was
        key = content_hash({"task": self.name, "args": made_from, "version": TRUNK_VERSION,
                            "shapes": shapes.VERSION, "data_root": str(data_root.resolve())},
                           length=24)
        cache = ContentCache(cache_dir, "detection", "detection trunk cache")
        with cache.making(key):  # cells running at once train one trunk
            meta = cache.lookup(key)
            if meta is not None:
                timing = {k: {**v, "cached": True} for k, v in meta["timing"].items()}
                return load_file(str(cache.tensors_path(key))), timing
            tensors, timing = self.prepare(args, data_root, cache.root / "checkpoints" / key)
            cache.store(key, lambda path: save_file(tensors, path), {"timing": timing})
            return tensors, timing

    def prepare(self, args: dict, data_root: Path, checkpoint_dir: Path | None = None
                ) -> tuple[dict, dict]:
        """Train the trunk (resuming from `checkpoint_dir`'s last epoch, if a killed run left
        one), then compute the head's inputs: (tensors by name, timing)."""
        L.seed_everything(args["trunk_seed"], workers=True, verbose=False)
        start = time.perf_counter()
        train, val = self.holdout(self.read(args, data_root, "train"), args)
        trunk = train_trunk(self.trunk(args), train, args["trunk_epochs"],
                            args["trunk_batch_size"], args["trunk_lr"], args["trunk_seed"],
                            checkpoint_dir)
        trained = time.perf_counter()
        tensors = {f"trunk.{k}": v.contiguous() for k, v in trunk.state_dict().items()}
        tensors.update({f"train.{k}": v for k, v in head_inputs(trunk, train, True).items()})
        tensors.update({f"val.{k}": v for k, v in head_inputs(trunk, val, False).items()})
        for split in ["test"] + (["transfer"] if self.has_transfer(args) else []):
            inputs = head_inputs(trunk, self.read(args, data_root, split), False)
            tensors.update({f"{split}.{k}": v for k, v in inputs.items()})
        return tensors, {"trunk": {"seconds": trained - start, "cached": False},
                         "features": {"seconds": time.perf_counter() - trained,
                                      "cached": False}}

    def frozen_storage(self, args):
        return trunk_parts(self.trunk({**args, "backbone_weights": ""}))  # sizes, not values

    # --- the head ---------------------------------------------------------------------------

    def build(self, args, factory):
        self.check_args(args)
        return KANHead(args["head_width"], len(self.classes), factory,
                       linear_predictor=args["predictor"] == "linear")

    def loss(self, output, target):
        """torchvision's Fast R-CNN loss; target (rois, 5): label, then the box deltas."""
        classes = len(self.classes) + 1
        logits, deltas = output.split([classes, 4 * classes], -1)
        classification, regression = fastrcnn_loss(logits, deltas, [target[:, 0].long()],
                                                    [target[:, 1:]])
        return classification + regression

    def metrics(self, args):
        return torchmetrics.MetricCollection({"detection": DetectionMetrics(
            len(self.classes), args["voc_variant"],
            detections_per_img=args["detections_per_img"])})

    def example_input(self, args, batch):
        return F.relu(torch.randn(batch, args["head_width"]))      # fc6 features are >= 0


def coco_paths(root: Path, split: str) -> tuple[Path, Path]:
    """(images folder, instances JSON) of a COCO 2017 split under root."""
    return root / split, root / "annotations" / f"instances_{split}.json"


def read_coco_split(root: Path, split: str, args: dict, classes: tuple[str, ...]) -> list:
    """A COCO-layout task's own data: train2017 for `train`, val2017 for `test`, its
    categories labelled in the order of `classes`."""
    coco_split, limit = ("train2017", DetectionTask.train_pool(args)) if split == "train" else \
        ("val2017", args["n_test"])
    return read_coco(*coco_paths(root, coco_split), {c: i + 1 for i, c in enumerate(classes)},
                     limit)


def check_coco(name: str, root: Path, split: str) -> None:
    images, annotations = coco_paths(root, split)
    if not (images.is_dir() and annotations.exists()):
        raise KanbenchError(f"{name}: dataset not found at {images} and {annotations}; "
                            f"download COCO 2017 there")


def check_voc(name: str, root: Path, year: str, image_set: str) -> None:
    listing = root / "VOCdevkit" / f"VOC{year}" / "ImageSets" / "Main" / f"{image_set}.txt"
    if not listing.exists():
        raise KanbenchError(f"{name}: dataset not found at {listing.parents[2]} (needs "
                            f"ImageSets/Main/{image_set}.txt); download PASCAL VOC{year} there")


@TASKS.register("voc")
class VOC(DetectionTask):
    """PASCAL VOC under the data root: train on VOC2007 trainval (+ VOC2012 trainval when
    present), test on VOC2007 test; with `transfer`, zero-shot on COCO val2017 (data_root/coco)
    over the 20 VOC classes. Defaults are the paper preset: ResNet-50 FPN, a 1024-wide KAN fc7
    under a linear predictor (the head whose dense bytes are SHARe-KAN's 58.67 MB)."""

    classes = VOC_CLASSES
    defaults = {**DetectionTask.defaults, "backbone": "resnet50_fpn",
                "backbone_weights": "imagenet", "head_width": 1024, "image_size": 800,
                "detections_per_img": 100, "trunk_epochs": 12, "trunk_batch_size": 2,
                "trunk_lr": 1e-4, "transfer": False, "n_transfer": 0, "predictor": "linear"}
    # a one-epoch trunk on 8 images with the small backbone
    presets = {"smoke": {"task": {"backbone": "small", "backbone_weights": "", "image_size": 128,
                                  "head_width": 16, "detections_per_img": 20, "n_train": 8,
                                  "n_val": 4, "n_test": 4, "transfer": True, "n_transfer": 4,
                                  "trunk_epochs": 1, "trunk_batch_size": 4, "trunk_lr": 2.0e-3},
                         "train": {"batch_size": 64}}}

    def locate(self, args, data_root):
        check_voc(self.name, data_root, "2007", "trainval")
        check_voc(self.name, data_root, "2007", "test")
        if args["transfer"]:
            check_coco(self.name, data_root / "coco", "val2017")

    def read(self, args, data_root, split):
        if split == "transfer":
            label_of_name = {VOC_TO_COCO.get(c, c): i + 1 for i, c in enumerate(self.classes)}
            return read_coco(*coco_paths(data_root / "coco", "val2017"), label_of_name,
                             args["n_transfer"])
        if split == "test":
            return read_voc(data_root, "2007", "test", self.classes, args["n_test"])
        years = ["2007"] + (["2012"] if (data_root / "VOCdevkit" / "VOC2012").is_dir() else [])
        train = [e for y in years for e in read_voc(data_root, y, "trainval", self.classes)]
        return train[:self.train_pool(args)] if args["n_train"] else train


@TASKS.register("coco")
class COCO(DetectionTask):
    """COCO 2017 under data_root/coco: train on train2017, test on val2017 (80 categories)."""

    classes = COCO_CLASSES
    metric = "coco_map"
    defaults = {k: v for k, v in VOC.defaults.items() if k not in ("transfer", "n_transfer")}
    presets = {"smoke": {"task": {k: v for k, v in VOC.presets["smoke"]["task"].items()
                                  if k not in ("transfer", "n_transfer")},
                         "train": {"batch_size": 64}}}

    def locate(self, args, data_root):
        for split in ("train2017", "val2017"):
            check_coco(self.name, data_root / "coco", split)

    def read(self, args, data_root, split):
        return read_coco_split(data_root / "coco", split, args, self.classes)


def ensure_shapes(data_root: Path) -> tuple[Path, Path]:
    """The synthetic shapes datasets under data_root/shapes/v<VERSION>/{voc,coco}, written on
    first use (deterministic; into a temporary folder renamed into place, so a reader never
    sees half of one)."""
    folders = {domain: data_root / "shapes" / f"v{shapes.VERSION}" / domain
               for domain in SHAPES_SIZES}
    writers = {"voc": shapes.write_voc, "coco": shapes.write_coco}
    for domain, folder in folders.items():
        if not folder.is_dir():
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = folder.with_name(f".{domain}.{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            writers[domain](tmp, *SHAPES_SIZES[domain])
            try:
                tmp.rename(folder)
            except OSError:                              # another process wrote it first
                shutil.rmtree(tmp, ignore_errors=True)
    return folders["voc"], folders["coco"]


@TASKS.register("shapes_voc")
class ShapesVOC(DetectionTask):
    """Synthetic shapes in the VOC layout (train 800, test 300 images of 128 pixels), read by
    VOCDetection; zero-shot transfer to shapes_coco's val2017 through the class mapping."""

    classes = shapes.VOC_CLASSES
    defaults = {**DetectionTask.defaults, "transfer": True, "n_transfer": 0}
    presets = {"smoke": {"task": {"n_train": 8, "n_val": 4, "n_test": 4, "n_transfer": 4,
                                  "head_width": 16, "trunk_epochs": 1, "trunk_batch_size": 4},
                         "train": {"batch_size": 64}}}

    def locate(self, args, data_root):
        ensure_shapes(data_root)

    def read(self, args, data_root, split):
        voc, coco = ensure_shapes(data_root)
        if split == "transfer":
            label_of_name = {shapes.VOC_TO_COCO[c]: i + 1 for i, c in enumerate(self.classes)}
            return read_coco(*coco_paths(coco, "val2017"), label_of_name, args["n_transfer"])
        image_set, limit = ("train", self.train_pool(args)) if split == "train" else \
            ("test", args["n_test"])
        return read_voc(voc, "2007", image_set, self.classes, limit)


@TASKS.register("shapes_coco")
class ShapesCOCO(DetectionTask):
    """Synthetic shapes in the COCO layout (train2017 400, val2017 300 images), read by
    CocoDetection; in-domain only."""

    classes = tuple(shapes.COCO_CATEGORIES)
    metric = "coco_map"
    presets = {"smoke": {"task": {"n_train": 8, "n_val": 4, "n_test": 4, "head_width": 16,
                                  "trunk_epochs": 1, "trunk_batch_size": 4},
                         "train": {"batch_size": 64}}}

    def locate(self, args, data_root):
        ensure_shapes(data_root)

    def read(self, args, data_root, split):
        _, coco = ensure_shapes(data_root)
        return read_coco_split(coco, split, args, self.classes)
