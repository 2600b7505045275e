"""Label-spec YAML → frozen, validated dataclasses, with precise error messages."""

from __future__ import annotations

import difflib
import errno
import math
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from autolabel.core.errors import SpecError
from autolabel.core.fileio import InputError, read_text
from autolabel.core.prompts import expand, has_placeholder, template_sets

DEFAULT_TEMPLATES = "default"
TOP_KEYS = ("model", "templates", "classes", "threshold", "min_margin", "other", "multi_label", "review_band")
CLASS_KEYS = ("name", "synonyms", "prompts", "threshold", "examples")
OTHER_KEYS = ("name", "threshold")
DEFAULT_REVIEW_BAND = 1.0  # multi-label: log-odds distance to a threshold inside which a class is uncertain


@dataclass(frozen=True)
class ClassSpec:
    """One class: its name, extra names put through every template, literal prompts, own threshold."""

    name: str
    synonyms: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    threshold: float | None = None
    examples: tuple[str, ...] = ()  # reviewed images of this class: paths or globs, relative to the spec file


@dataclass(frozen=True)
class OtherSpec:
    """The open-set label for images that match none of the classes, and its acceptance threshold."""

    name: str
    threshold: float | None = None


@dataclass(frozen=True)
class LabelSpec:
    """A validated label spec."""

    classes: tuple[ClassSpec, ...]
    templates: tuple[str, ...]
    model: str | None = None
    threshold: float = 0.5
    min_margin: float = 0.0
    other: OtherSpec | None = None
    multi_label: bool = False  # every class decided on its own (classify.MultiLabel)
    review_band: float = DEFAULT_REVIEW_BAND  # multi-label only
    source: str = "<spec>"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def class_names(self) -> list[str]:
        """Class names in spec order (the order of probability columns)."""
        return [c.name for c in self.classes]

    def thresholds(self) -> list[float]:
        """Acceptance threshold per class, in class order (then `other`'s, when the spec has one)."""
        own = [self.threshold if c.threshold is None else c.threshold for c in self.classes]
        if self.other is not None:
            own.append(self.threshold if self.other.threshold is None else self.other.threshold)
        return own

    @property
    def label_names(self) -> list[str]:
        """Every label a row may get: the classes, then the `other` name."""
        return self.class_names + ([self.other.name] if self.other is not None else [])

    def example_paths(self) -> dict[str, list[str]]:
        """Per class, its `examples:` patterns resolved against the spec file's folder."""
        base = Path(self.source).parent
        return {c.name: [str(p if Path(p).is_absolute() else base / p) for p in c.examples]
                for c in self.classes if c.examples}

    def prompts_for(self, cls: ClassSpec) -> list[str]:
        """Every prompt of a class: templates × (name and synonyms), then its literal prompts."""
        names = (cls.name, *cls.synonyms)
        return [expand(t, n) for n in names for t in self.templates] + list(cls.prompts)

    def model_location(self) -> str | None:
        """The spec's `model:`, with a path relative to the spec file's folder resolved against it."""
        if self.model is None:
            return None
        beside = Path(self.source).parent / self.model
        return str(beside) if beside.is_dir() else self.model

    def model_for(self, folder: str | Path) -> str | None:
        """`model:` as a spec saved in `folder` must write it: a local path relative to this spec is rewritten."""
        location = self.model_location()
        if location is None or location == self.model or Path(self.model).is_absolute():  # type: ignore[arg-type]
            return self.model
        model, there = os.path.abspath(location), os.path.abspath(folder)
        if os.path.commonpath([model, there]) == os.sep:
            return model  # nothing shared but the root (a spec written to /tmp): a relative path would be fragile
        return os.path.relpath(model, there)

    def with_threshold(self, threshold: float | None) -> LabelSpec:
        """A copy with the global threshold overridden (per-class thresholds still apply)."""
        if threshold is None:
            return self
        return replace(self, threshold=_probability(threshold, f"{self.source}: --threshold"))


def _fail(where: str, what: str) -> SpecError:
    return SpecError(f"{where}: {what}")


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise _fail(where, f"must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise _fail(where, f"must be between 0 and 1, got {value}")
    return float(value)


def _unknown_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise _fail(where, f"unknown key '{key}'; {hint}allowed keys: {', '.join(allowed)}")


MAX_NAME = 200


def _plain(text: str, where: str) -> str:
    """A name that every output can carry: no control characters (XML, CSV, folder names) and no lone surrogates."""
    if len(text) > MAX_NAME:  # a text tower reads ~77 tokens; longer names only flood every message and file
        raise _fail(where, f"{text[:40]!r}… is {len(text):,} characters long; a name is at most {MAX_NAME} "
                           "(put descriptions in prompts)")
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise _fail(where, f"{text!r} contains a control character (U+{ord(bad):04X}); use plain text")
    return text


def _string_list(value: Any, where: str, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _fail(where, f"must be a list of {what}, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, (str, int, float)) or isinstance(item, bool) or not str(item).strip():
            raise _fail(f"{where}[{i}]", f"must be a non-empty string, got {item!r}")
        out.append(str(item).strip())
    return tuple(out)


def _templates(value: Any, src: str) -> tuple[str, ...]:
    where = f"{src}: templates"
    if value is None:
        value = DEFAULT_TEMPLATES
    if isinstance(value, str) and not has_placeholder(value):
        sets = template_sets()
        if value not in sets:
            raise _fail(
                where,
                f"no shipped template set named '{value}'; use one of {', '.join(sets)} "
                "(see `autolabel prompts`) or a list of templates containing {label}",
            )
        return sets[value].templates
    templates = _string_list(value, where, "templates")
    if not templates:
        raise _fail(where, "is empty; give at least one template such as 'a photo of a {label}.'")
    for i, template in enumerate(templates):
        if not has_placeholder(template):
            raise _fail(
                f"{where}[{i}]",
                f"template '{template}' has no {{label}} placeholder; write e.g. 'a photo of a {{label}}.'",
            )
    return templates


def _class(item: Any, i: int, src: str) -> ClassSpec:
    where = f"{src}: classes[{i}]"
    if isinstance(item, (str, int, float)) and not isinstance(item, bool):
        item = {"name": item}
    if not isinstance(item, Mapping):
        raise _fail(where, f"must be a class name or a mapping with 'name', got {item!r}")
    name = item.get("name")
    if name is None or isinstance(name, bool) or not str(name).strip() or isinstance(name, (list, dict)):
        raise _fail(where, "needs a non-empty 'name' (e.g. `- name: dog`)")
    name = str(name).strip()
    _plain(name, f"{where}: name")
    where = f"{src}: classes[{i}] ({name})"
    _unknown_keys(item, CLASS_KEYS, where)
    threshold = item.get("threshold")
    synonyms = _string_list(item.get("synonyms") or [], f"{where}: synonyms", "names")
    for j, synonym in enumerate(synonyms):
        _plain(synonym, f"{where}: synonyms[{j}]")
    return ClassSpec(
        name=name,
        synonyms=synonyms,
        prompts=_string_list(item.get("prompts") or [], f"{where}: prompts", "prompts"),
        threshold=None if threshold is None else _probability(threshold, f"{where}: threshold"),
        examples=_string_list(item.get("examples") or [], f"{where}: examples", "image paths or globs"),
    )


def _other(value: Any, src: str) -> OtherSpec | None:
    where = f"{src}: other"
    if value is None:
        return None
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise _fail(where, f"must be a label name such as \"none of these\" or a mapping with 'name', got {value!r}")
    _unknown_keys(value, OTHER_KEYS, where)
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, "needs a non-empty name (e.g. `other: none of these`)")
    threshold = value.get("threshold")
    return OtherSpec(_plain(name.strip(), f"{where}: name"),
                     None if threshold is None else _probability(threshold, f"{where}: threshold"))


def _multi_label(data: Mapping[str, Any], src: str) -> tuple[bool, float]:
    """`multi_label:` and its `review_band:` (a non-negative log-odds distance); each rule's own key only."""
    multi = data.get("multi_label", False)
    if not isinstance(multi, bool):
        raise _fail(f"{src}: multi_label", f"must be true or false, got {multi!r}")
    if multi and data.get("other") is not None:
        raise _fail(f"{src}: other", "is the single-label open-set label; with multi_label: true an image that "
                                     "matches none of the classes simply gets an empty `labels` list: remove other:")
    if multi and "min_margin" in data:
        raise _fail(f"{src}: min_margin", "is the single-label top-1 minus top-2 rule; with multi_label: true "
                                          "use review_band (log-odds distance to a threshold) instead")
    band = data.get("review_band", DEFAULT_REVIEW_BAND)
    if "review_band" in data and not multi:
        raise _fail(f"{src}: review_band", "applies only with multi_label: true; remove it or add multi_label: true")
    if isinstance(band, bool) or not isinstance(band, (int, float)) or not 0.0 <= band < math.inf:
        raise _fail(f"{src}: review_band", f"must be a number ≥ 0 (log-odds, e.g. 1.0), got {band!r}")
    return multi, float(band)


def parse_spec(data: Any, source: str = "<spec>") -> LabelSpec:
    """Validate an already-parsed YAML document into a LabelSpec."""
    if not isinstance(data, Mapping):
        raise _fail(source, "must be a YAML mapping with at least a 'classes:' list")
    _unknown_keys(data, TOP_KEYS, source)
    raw_classes = data.get("classes")
    if not isinstance(raw_classes, list) or len(raw_classes) < 2:
        got = repr(raw_classes) if not isinstance(raw_classes, list) else str(len(raw_classes))
        raise _fail(f"{source}: classes", f"needs a list of at least two classes, got {got}")
    classes = tuple(_class(item, i, source) for i, item in enumerate(raw_classes))
    seen: dict[str, str] = {}
    for cls in classes:
        for name in (cls.name, *cls.synonyms):
            key = name.casefold()
            if key in seen:
                raise _fail(
                    f"{source}: classes ({cls.name})",
                    f"'{name}' is already used by class '{seen[key]}'; class names and synonyms must be unique",
                )
            seen[key] = cls.name
    other = _other(data.get("other"), source)
    if other is not None and other.name.casefold() in seen:
        raise _fail(f"{source}: other", f"'{other.name}' is already used by class '{seen[other.name.casefold()]}'; "
                                        "the open-set label must differ from every class name and synonym")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise _fail(f"{source}: model", f"must be a model id or path, got {model!r}")
    multi_label, review_band = _multi_label(data, source)
    return LabelSpec(
        classes=classes,
        templates=_templates(data.get("templates"), source),
        model=model.strip() if model else None,
        threshold=_probability(data.get("threshold", 0.5), f"{source}: threshold"),
        min_margin=_probability(data.get("min_margin", 0.0), f"{source}: min_margin"),
        other=other,
        multi_label=multi_label,
        review_band=review_band,
        source=source,
        raw=data,
    )


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (YAML 1.2 says keys are
    unique; PyYAML keeps the last silently, so `classes:` written twice would drop the first list)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by the keys beside it
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML's own error follows
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_spec(path: str | Path) -> LabelSpec:
    """Read and validate a label-spec YAML file (a regular file: a FIFO or a device is refused, never waited on)."""
    path = Path(path)
    try:
        text = read_text(path, "the label spec")
    except InputError as exc:
        if exc.errno == errno.ENOENT:
            raise SpecError(f"{path}: label spec not found; give the path of an existing YAML file") from None
        raise SpecError(f"{path}: cannot read label spec ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # PyYAML builds dates and numbers with Python's own checks
        raise SpecError(f"{path}: invalid YAML: {' '.join(str(exc).split())[:200]}") from None
    return parse_spec(data, str(path))
