"""A Label Studio labeling config's Image + Choices pair, matched to the label spec's classes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from autolabel.core.spec import LabelSpec
from autolabel.task import task_for


class ConfigError(ValueError):
    """The labeling config cannot carry this spec's predictions (one line, for Label Studio to show)."""


@dataclass(frozen=True)
class ChoicesTarget:
    """Where a prediction goes: the Choices tag (`from_name`), its Image tag (`to_name`) and the task data key of
    the image; `choice_of` maps each label of the spec to the choice value Label Studio stores."""

    from_name: str
    to_name: str
    data_key: str
    multiple: bool
    choice_of: dict[str, str]

    def label_of(self, choice: str) -> str | None:
        """The spec's label for a choice value an annotation holds (None: not one of ours)."""
        for label, value in self.choice_of.items():
            if value == choice:
                return label
        return None


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def parse(xml: str, spec: LabelSpec) -> ChoicesTarget:
    """The first Choices tag that names an Image tag; its choices must be exactly the spec's labels (compared
    ignoring case and repeated spaces; a choice's alias when it is a label, else its value), else ConfigError names
    the difference."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ConfigError(f"the project's labeling config is not valid XML ({exc})") from None
    images = {tag.get("name"): tag.get("value", "") for tag in root.iter() if tag.tag == "Image"}
    for choices in root.iter("Choices"):
        target = choices.get("toName", "")
        if target in images and choices.get("name"):
            break
    else:
        raise ConfigError("the project's labeling config has no <Choices> tag for an <Image>; autolabel serve predicts "
                          "image classes (e.g. `autolabel export --to label-studio` writes such a config)")
    value = images[target] or ""
    if not value.startswith("$") or len(value) < 2:
        raise ConfigError(f"<Image name=\"{target}\"> takes its URL from value=\"{value}\"; expected a task field "
                          "such as value=\"$image\"")
    wanted = {_key(label): label for label in spec.label_names}
    given: dict[str, str] = {}  # the value an annotation stores (the alias, if any) → what is matched to the spec
    shown: dict[str, str] = {}  # → the choice in words, for the message
    for c in choices.iter("Choice"):
        name, alias = c.get("value") or "", c.get("alias")
        given[alias or name] = _key(alias if alias and _key(alias) in wanted else name)
        shown[alias or name] = f'value "{name}" (alias "{alias}")' if alias else name
    unknown = sorted(shown[v] for v, k in given.items() if k not in wanted)
    missing = sorted(label for k, label in wanted.items() if k not in set(given.values()))
    if unknown or missing:
        raise ConfigError(f"the labeling config's choices do not match {spec.source}: not in the spec: "
                          f"{', '.join(unknown) or '-'}; not in the config: {', '.join(missing) or '-'}")
    multiple = choices.get("choice", "single") == "multiple"
    task = task_for(spec)
    if multiple != task.multiple:
        raise ConfigError(f"<Choices name=\"{choices.get('name')}\"> is choice=\"{choices.get('choice', 'single')}\" "
                          f"but {spec.source} is {task.name}; make them agree")
    choice_of = {wanted[k]: v for v, k in given.items()}
    return ChoicesTarget(str(choices.get("name")), target, value[1:], multiple, choice_of)
