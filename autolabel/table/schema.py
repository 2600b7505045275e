"""The labels table's Arrow schema: the contract columns, then the multi-label and pass-through columns."""

from __future__ import annotations

import pyarrow as pa

from autolabel.task import SINGLE, Task

OUTPUT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("confidence", pa.float64()),
        ("margin", pa.float64()),
        ("status", pa.string()),
        ("top_labels", pa.list_(pa.string())),
        ("top_scores", pa.list_(pa.float64())),
        ("error", pa.string()),
    ]
)


def output_schema(task: Task = SINGLE) -> pa.Schema:
    """The contract columns: OUTPUT_SCHEMA, then the task's (multi-label: `labels`), before pass-through columns."""
    return pa.schema([*OUTPUT_SCHEMA, *task.fields])


def full_schema(extra: pa.Schema, task: Task = SINGLE) -> pa.Schema:
    """Contract columns, then pass-through columns (renamed `input_<name>` where they clash)."""
    contract = output_schema(task)
    fields = list(contract)
    taken = set(contract.names)
    for f in extra:
        name = f.name
        while name in taken:
            name = f"input_{name}"
        taken.add(name)
        fields.append(pa.field(name, f.type))
    return pa.schema(fields)


def review_types(task: Task) -> dict[str, pa.DataType]:
    """The columns import-review adds to a table: the person's label (the task's type: a list for multi-label), and
    a flag."""
    return {"reviewed_by_human": pa.bool_(), "reviewed_label": task.label_type}
