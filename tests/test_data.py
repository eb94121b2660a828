"""The dataset loader on local files of every supported format, built-in tasks, and bad input."""
from __future__ import annotations

import json

import pytest

from metarl.data import DataError, load_dataset_source

ROWS = [  # numeric answers, as in GSM8K-style files: the loader turns them into strings
    {"question": "What is 2+2?", "solution": 4, "budget": 64, "id": "a"},
    {"question": "What is 3*3?", "solution": 9, "budget": 128, "id": "b"},
    {"question": "What is 5+7?", "solution": 12, "budget": 32, "id": "c"},
]
COLUMNS = {"prompt": "question", "answer": "solution", "target_tokens": "budget"}


def _write(path, fmt, rows=ROWS):
    import pandas as pd

    df = pd.DataFrame(rows)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        df.to_parquet(path)
    elif fmt == "csv":
        df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_local_file_with_column_mapping(tmp_path, fmt):
    path = _write(tmp_path / f"data.{fmt}", fmt)
    ds = load_dataset_source(str(path), columns=COLUMNS)
    assert ds.column_names == ["prompt", "answer", "target_tokens", "id"]
    assert ds["prompt"] == [r["question"] for r in ROWS]
    assert ds["answer"] == ["4", "9", "12"]
    assert ds["target_tokens"] == [64, 128, 32]
    assert all(isinstance(a, str) for a in ds["answer"]) and all(isinstance(t, int) for t in ds["target_tokens"])
    assert len(load_dataset_source(str(path), columns=COLUMNS, limit=2)) == 2


def test_default_column_names_and_optional_target_tokens(tmp_path):
    rows = [{"prompt": "p1", "answer": "a1", "extra": 1}, {"prompt": "p2", "answer": "a2", "extra": 2}]
    path = _write(tmp_path / "d.jsonl", "jsonl", rows)
    ds = load_dataset_source(str(path))
    assert ds.column_names == ["prompt", "answer"]
    assert load_dataset_source(str(path), keep_columns=True)["extra"] == [1, 2]
    rows_tt = [{**r, "target_tokens": 10} for r in rows]
    ds = load_dataset_source(str(_write(tmp_path / "t.jsonl", "jsonl", rows_tt)))
    assert ds["target_tokens"] == [10, 10]  # picked up without a mapping when the column has metarl's name


def test_directory_with_split_files(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    _write(d / "train.jsonl", "jsonl", [{"prompt": "tr", "answer": "1"}] * 3)
    _write(d / "test.jsonl", "jsonl", [{"prompt": "te", "answer": "2"}] * 2)
    assert load_dataset_source(str(d), split="train")["prompt"] == ["tr"] * 3
    assert load_dataset_source(str(d), split="test")["prompt"] == ["te"] * 2
    with pytest.raises(DataError, match="no 'validation' files"):
        load_dataset_source(str(d), split="validation")


def test_builder_name_with_data_files(tmp_path):
    path = _write(tmp_path / "d.jsonl", "jsonl")
    ds = load_dataset_source("json", data_files=str(path), columns=COLUMNS)
    assert ds["answer"] == ["4", "9", "12"]


def test_answer_conversion_to_strings(tmp_path):
    rows = [{"prompt": "p", "answer": 9.0, "target_tokens": 128.0}, {"prompt": "q", "answer": 2.5, "target_tokens": 3}]
    ds = load_dataset_source(str(_write(tmp_path / "f.jsonl", "jsonl", rows)))
    assert ds["answer"] == ["9", "2.5"] and ds["target_tokens"] == [128, 3]  # an integral float loses its ".0"


def test_builtin_task_source():
    ds = load_dataset_source("task:subset_sum", split="test", limit=5, task_options={"difficulty": 3})
    assert len(ds) == 5 and set(ds.column_names) == {"prompt", "answer", "id"}
    from metarl.tasks import SubsetSumTask

    task = SubsetSumTask(difficulty=3)
    assert all(task.verify(a, a, p) for p, a in zip(ds["prompt"], ds["answer"]))
    assert ds["prompt"] == [p["prompt"] for p in task.generate("test", 5)]  # the same problems as the task's


def test_missing_column_names_the_column_and_the_key(tmp_path):
    path = _write(tmp_path / "d.jsonl", "jsonl")
    with pytest.raises(DataError, match=r"no column 'prompt' for 'prompt'.*question.*columns=\{'prompt'"):
        load_dataset_source(str(path))
    with pytest.raises(DataError, match=r"no column 'tokens' for 'target_tokens'"):
        load_dataset_source(str(path), columns={**COLUMNS, "target_tokens": "tokens"})
    with pytest.raises(DataError, match="unknown key"):
        load_dataset_source(str(path), columns={"question": "prompt"})


def test_empty_and_bad_inputs(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty|could not load"):
        load_dataset_source(str(empty))
    with pytest.raises(DataError, match="no such file"):
        load_dataset_source(str(tmp_path / "missing.jsonl"))
    bad = _write(tmp_path / "bad.jsonl", "jsonl", [{"prompt": "p", "answer": None}])
    with pytest.raises(DataError, match="answer .* is missing"):
        load_dataset_source(str(bad))
    frac = _write(tmp_path / "frac.jsonl", "jsonl", [{"prompt": "p", "answer": "a", "target_tokens": 1.5}])
    with pytest.raises(DataError, match="whole number"):
        load_dataset_source(str(frac))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_dataset_source(str(tmp_path / "notes.txt"))
    with pytest.raises(DataError, match="limit"):
        load_dataset_source(str(bad), limit=0)


def test_hub_name_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load dataset"):
        load_dataset_source("no-such-user/no-such-dataset-xyz")
