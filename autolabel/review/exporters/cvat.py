"""CVAT for images 1.1: annotations.xml with image-level tags and a score attribute, images beside it."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from PIL import Image

from autolabel.core.errors import SourceError
from autolabel.core.fileio import MAX_TEXT_BYTES, InputError, read_regular
from autolabel.review.exporters.base import ExportContext, xml_document
from autolabel.task import SINGLE, Task


def _size(path: Path) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():  # only the header is read: a huge image is no bomb here
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.size
    except (OSError, Image.DecompressionBombError):
        return (0, 0)


def export(ctx: ExportContext) -> None:
    """annotations.xml + images/ (linked per --link) under the names the XML uses."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = f"autolabel {ctx.results.path.name}"
    ET.SubElement(task, "size").text = str(len(ctx.rows))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    for name in ctx.classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "tag"
        attribute = ET.SubElement(ET.SubElement(label, "attributes"), "attribute")
        for key, value in (("name", "score"), ("mutable", "True"), ("input_type", "number"),
                           ("default_value", "0"), ("values", "0\n1\n0.0001")):
            ET.SubElement(attribute, key).text = value
    for i, row in enumerate(ctx.rows):
        if not ctx.place(row, "images", row.name):
            continue
        width, height = _size(row.source)
        image = ET.SubElement(root, "image", {"id": str(i), "name": row.name, "width": str(width),
                                              "height": str(height)})
        for label, score in row.labels:
            tag = ET.SubElement(image, "tag", {"label": label, "source": "manual" if row.human else "auto"})
            if score is not None:
                ET.SubElement(tag, "attribute", {"name": "score"}).text = f"{score:.6f}"
    ctx.write_text("annotations.xml", xml_document(root))


def read_review(path: Path, task: Task = SINGLE) -> dict[str, Any]:
    """A CVAT 1.1 XML export → {image name: label} from human (non-`auto`) tags: the last one, or (multi-label)
    for an image a person tagged, every tag it has (the auto ones they kept too), as a list (Task.tagged).
    """
    try:
        root = ET.fromstring(read_regular(path, MAX_TEXT_BYTES))
    except InputError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror})") from None
    except ET.ParseError as exc:
        raise SourceError(f"{path}: not a CVAT XML export ({exc})") from None
    reviewed = {}
    for image in root.iter("image"):
        tags = [t for t in image.findall("tag") if t.get("source", "manual") != "auto"]
        if tags and image.get("name"):
            every = [str(t.get("label")) for t in image.findall("tag") if t.get("label") is not None]
            value = task.tagged(every, tags[-1].get("label"))
            if value is not None:
                reviewed[image.get("name")] = value
    return reviewed
