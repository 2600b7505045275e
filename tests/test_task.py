"""The task object: resolved once from the spec or the table, both tasks answer the whole interface."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from autolabel.core.spec import parse_spec
from autolabel.table.results import Results
from autolabel.task import MULTI, SINGLE, Task, resolve, task_for, task_of
from autolabel.task.metrics import Threshold


def test_the_spec_or_the_table_metadata_decides_the_task() -> None:
    assert task_for(parse_spec({"classes": ["a", "b"]}, "s")) is SINGLE
    assert task_for(parse_spec({"classes": ["a", "b"], "multi_label": True}, "s")) is MULTI
    assert task_of({"multi_label": True}) is MULTI and task_of({}) is SINGLE
    assert task_of({"multi_label": True}, parse_spec({"classes": ["a", "b"]}, "s")) is SINGLE  # the spec wins
    assert resolve(True) is MULTI and resolve(False) is SINGLE
    frame = pd.DataFrame({"path": [], "label": [], "labels": []})
    assert Results(Path("t.parquet"), frame, ["a"], {"multi_label": True}).task is MULTI


@pytest.mark.parametrize("task", [SINGLE, MULTI])
def test_each_task_has_every_member_of_the_interface(task: Task) -> None:
    members = [name for name in Task.__dict__ if not name.startswith("_")]
    members += list(Task.__annotations__)
    assert [name for name in members if not hasattr(task, name)] == []


def test_single_and_multi_label_cells() -> None:
    assert (SINGLE.cell(["dog", "cat"]), SINGLE.cell([])) == ("dog", None)
    assert (MULTI.cell(["dog", "cat"]), MULTI.cell([])) == (["dog", "cat"], [])
    assert SINGLE.label(" dog ") == "dog" and MULTI.label('["dog", "cat"]') == ("dog", "cat")
    assert SINGLE.combine("cat", "dog") == ("dog", True) and MULTI.combine(("cat",), "dog") == (("cat", "dog"), False)
    assert SINGLE.targets(["b", None], ["a", "b"]).tolist() == [1, -1]
    assert MULTI.targets([("a", "b"), None], ["a", "b"]).tolist() == [[True, True], [False, False]]
    assert SINGLE.extra({"labels": ["a"]}) == {} and MULTI.extra({"labels": ["a"]}) == {"labels": ["a"]}
    assert SINGLE.joined(MULTI) is MULTI and MULTI.joined(SINGLE) is MULTI and SINGLE.joined(SINGLE) is SINGLE


def test_a_result_reads_as_its_json_object() -> None:
    reached = Threshold(0.5, 10, reachable=True, precision=0.9, precision_ci95=(0.6, 0.98), accepted=8, coverage=0.8)
    assert list(reached) == ["threshold", "reachable", "precision", "precision_ci95", "accepted", "coverage", "rows"]
    assert reached["precision_ci95"] == [0.6, 0.98] and json.loads(json.dumps(reached.as_json())) == dict(reached)
    few = Threshold(None, 3, positives=2, reason="only 2")
    assert few.as_json() == {"threshold": None, "rows": 3, "positives": 2, "reason": "only 2"}
