"""Label cells as people and tools write them: a list of names, a JSON array (CSV), or one plain name."""

from __future__ import annotations

import json
import math
from typing import Any


def label_list(value: Any) -> list[str] | None:
    """A multi-label cell as a list of names: a list (Parquet), a JSON array (CSV), or a plain string (one label).

    None, NaN and "" mean "no labels given" (None); `[]` is an image with none of the classes.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return [text]
        else:
            return [text]
    if isinstance(value, (str, int, float)):
        return [str(value).strip()]
    names = (str(v).strip() for v in value if v is not None)
    return list(dict.fromkeys(n for n in names if n))


def clean(value: Any) -> str | None:
    """A single-label cell as one name: stripped text; None, NaN and "" mean "no label given" (None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None
