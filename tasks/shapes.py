"""A deterministic synthetic detection dataset, written in the real PASCAL VOC and COCO
on-disk layouts so the offline tasks read it through exactly the readers real VOC and COCO
go through (torchvision's VOCDetection, CocoDetection and pycocotools).

Images hold 1-4 coloured shapes on a textured background; shapes may overlap and may run
off the image (VOC `truncated`); visible boxes under MIN_EASY_SIDE pixels are VOC
`difficult`. The two domains differ the way VOC and COCO photographs differ to a detector:

    voc   smooth noise backgrounds, warm colours (and one green), large shapes
    coco  striped backgrounds, two shifted warm colours and two cool ones, smaller shapes

(A trunk trained on voc keeps roughly half its mAP@0.5 on coco: enough shift to measure
what compression does to zero-shot transfer, not so much that nothing transfers.)

The class names differ too, joined by a mapping, as VOC's "aeroplane" is COCO's "airplane";
COCO category ids are sparse, as COCO's are.

    write_voc(root, n_train, n_test, seed)   root/VOCdevkit/VOC2007/{JPEGImages,Annotations,
                                             ImageSets/Main/{train,test,trainval}.txt}
    write_coco(root, n_train, n_val, seed)   root/{train2017,val2017}/*.jpg and
                                             root/annotations/instances_{train,val}2017.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw

VERSION = 2  # bump when images or annotations change: the tasks then write a fresh copy
VOC_CLASSES = ("circle", "square", "triangle", "cross", "ring")
COCO_CATEGORIES = {"disc": 1, "box": 3, "wedge": 7, "plus": 8, "hoop": 11}  # sparse, as COCO's
VOC_TO_COCO = {"circle": "disc", "square": "box", "triangle": "wedge", "cross": "plus",
               "ring": "hoop"}
IMAGE_SIZE = 128
MIN_EASY_SIDE = 10   # visible boxes narrower or shorter than this are `difficult`
MIN_VISIBLE = 4      # shapes showing fewer pixels than this per side are not annotated
TRUNCATED_SHARE = 0.2  # shapes placed anywhere, possibly off the image; the rest well inside


@dataclass(frozen=True)
class Domain:
    name: str
    background: str                          # "noise" or "stripes"
    palette: tuple[tuple[int, int, int], ...]
    scale: tuple[float, float]               # shape size as a fraction of the image side
    contrast: float = 45.0                   # stripes' amplitude (0-255 scale)


VOC_DOMAIN = Domain("voc", "noise", ((220, 60, 40), (240, 170, 30), (200, 40, 140),
                                     (150, 90, 30), (60, 140, 60)), (0.22, 0.45))
COCO_DOMAIN = Domain("coco", "stripes", ((220, 110, 60), (230, 190, 40), (40, 90, 220),
                                         (110, 60, 200)), (0.18, 0.40), contrast=25.0)


def background(rng: np.random.Generator, domain: Domain) -> np.ndarray:
    """(H, W, 3) uint8 texture."""
    size = IMAGE_SIZE
    if domain.background == "noise":  # smooth blobs: coarse noise, bilinearly upsampled
        coarse = Image.fromarray(rng.uniform(90, 200, (6, 6, 3)).astype(np.uint8))
        image = np.asarray(coarse.resize((size, size), Image.BILINEAR), dtype=np.float64)
    else:                             # stripes at a random angle and period
        yy, xx = np.mgrid[0:size, 0:size]
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 18)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        base = rng.uniform(100, 180, 3)
        image = base + domain.contrast * wave[..., None]
    image = image + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[float, ...], colour) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "triangle":
        draw.polygon([(x0 + w / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    elif kind == "cross":
        draw.rectangle((x0 + w / 3, y0, x1 - w / 3, y1), fill=colour)
        draw.rectangle((x0, y0 + h / 3, x1, y1 - h / 3), fill=colour)
    elif kind == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(w / 5)))
    else:
        raise ValueError(kind)


def render(seed: int, domain: Domain) -> tuple[Image.Image, list[dict]]:
    """One image and its objects: name (VOC class), box (x0, y0, x1, y1) in continuous pixel
    coordinates clipped to the image, truncated, difficult."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(background(rng, domain))
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.integers(1, 5)):
        kind = VOC_CLASSES[rng.integers(len(VOC_CLASSES))]
        side = rng.uniform(*domain.scale) * IMAGE_SIZE
        aspect = rng.uniform(0.75, 1.33)
        w, h = side * aspect, side / aspect
        off_edge = rng.random() < TRUNCATED_SHARE                  # may run off the image
        cx, cy = rng.uniform(*((-0.1, 1.1) if off_edge else (0.2, 0.8)), 2) * IMAGE_SIZE
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        colour = domain.palette[rng.integers(len(domain.palette))]
        draw_shape(draw, kind, box, tuple(int(c) for c in colour + rng.integers(-25, 26, 3)))
        clipped = tuple(float(np.clip(v, 0, IMAGE_SIZE)) for v in box)
        vis_w, vis_h = clipped[2] - clipped[0], clipped[3] - clipped[1]
        if min(vis_w, vis_h) < MIN_VISIBLE:
            continue
        objects.append({"name": kind, "box": clipped, "truncated": clipped != box,
                        "difficult": min(vis_w, vis_h) < MIN_EASY_SIDE})
    return image, objects


def image_seed(seed: int, domain: Domain, split: str, index: int) -> int:
    """Each image's own seed, so a dataset's images do not depend on how many are written."""
    words = [seed, index, *f"{domain.name}/{split}".encode()]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def voc_xml(filename: str, objects: list[dict], names: dict[str, str]) -> ET.ElementTree:
    """A VOC annotation (class names through `names`): boxes in VOC's 1-based inclusive
    integer pixels."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", IMAGE_SIZE), ("height", IMAGE_SIZE), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = names[obj["name"]]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj["truncated"]))
        ET.SubElement(node, "difficult").text = str(int(obj["difficult"]))
        bndbox = ET.SubElement(node, "bndbox")
        x0, y0, x1, y1 = obj["box"]
        pixels = (int(x0) + 1, int(y0) + 1, max(int(x0) + 1, round(x1)),
                  max(int(y0) + 1, round(y1)))
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), pixels, strict=True):
            ET.SubElement(bndbox, tag).text = str(value)
    return ET.ElementTree(root)


def write_voc(root: str | Path, n_train: int, n_test: int, seed: int = 0,
              names: dict[str, str] | None = None) -> Path:
    """VOCdevkit/VOC2007 under root with train, test and trainval image sets; returns root.
    `names` renames the classes (tests write real VOC class names with it)."""
    names = names or {c: c for c in VOC_CLASSES}
    base = Path(root) / "VOCdevkit" / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    ids = {"train": [], "test": []}
    for split, count in (("train", n_train), ("test", n_test)):
        for index in range(count):
            image_id = f"{'0' if split == 'train' else '1'}{index:05d}"
            image, objects = render(image_seed(seed, VOC_DOMAIN, split, index), VOC_DOMAIN)
            image.save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
            annotation = voc_xml(f"{image_id}.jpg", objects, names)
            annotation.write(base / "Annotations" / f"{image_id}.xml")
            ids[split].append(image_id)
    ids["trainval"] = ids["train"]
    for split, listed in ids.items():
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in listed))
    return Path(root)


def write_coco(root: str | Path, n_train: int, n_val: int, seed: int = 0,
               categories: dict[str, tuple[str, int]] | None = None) -> Path:
    """COCO 2017 layout under root (images folders + instances JSON); returns root.
    `categories` maps each shape class to the (name, id) written (default: the mapped
    COCO-side names and sparse ids)."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = categories or {c: (VOC_TO_COCO[c], COCO_CATEGORIES[VOC_TO_COCO[c]])
                                for c in VOC_CLASSES}
    listing = [{"id": i, "name": n, "supercategory": "shape"}
               for n, i in sorted(categories.values(), key=lambda c: c[1])]
    annotation_id = 1
    for split, count in (("train2017", n_train), ("val2017", n_val)):
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image_id = index + 1
            image, objects = render(image_seed(seed, COCO_DOMAIN, split, index), COCO_DOMAIN)
            file_name = f"{image_id:012d}.jpg"
            image.save(root / split / file_name, quality=95)
            images.append({"id": image_id, "file_name": file_name, "width": IMAGE_SIZE,
                           "height": IMAGE_SIZE})
            for obj in objects:
                x0, y0, x1, y1 = obj["box"]
                annotations.append({
                    "id": annotation_id, "image_id": image_id, "iscrowd": 0,
                    "category_id": categories[obj["name"]][1],
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "area": round((x1 - x0) * (y1 - y0), 2)})
                annotation_id += 1
        instances = {"info": {"description": "kanbench shapes (COCO layout)"}, "licenses": [],
                     "images": images, "annotations": annotations, "categories": listing}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(instances))
    return root
