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
    ds = load_dataset_source("task:metarl.tasks.SubsetSumTask", split="test", limit=5, task_options={"difficulty": 3})
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


# ---- math datasets: MATH / NuminaMath / DeepScaleR rows (conf/task/math.yaml) ---------------------

def _math_columns() -> dict:
    """The column mapping of conf/task/math.yaml, as the trainer passes it (``load_rows``: the default
    ``target_tokens`` name means "use the column when present")."""
    from omegaconf import OmegaConf

    from metarl.config import conf_dir

    columns = OmegaConf.to_container(OmegaConf.load(f"{conf_dir()}/task/math.yaml").columns)
    assert columns.pop("target_tokens") == "target_tokens"
    return columns


MATH_ROWS = [  # MATH: problem, solution, level, type; the answer only inside the solution
    {"problem": "Simplify $\\frac{2}{4}$.", "solution": "Divide by 2: $\\frac{2}{4} = \\boxed{\\frac{1}{2}}$.",
     "level": "Level 1", "type": "Prealgebra", "id": "m1"},
    {"problem": "Solve $x^2 = 4$.", "solution": "First $x = \\boxed{2}$? No: both signs, so $x \\in "
     "\\boxed{\\{-2, 2\\}}$.", "level": "Level 2", "type": "Algebra", "id": "m2"},  # the last box counts
    {"problem": "Evaluate $\\sqrt{16}$.", "solution": "It is $\\boxed{4}$.", "level": "Level 1",
     "type": "Algebra", "id": "m3"},
]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_math_rows_take_the_answer_from_the_last_box_of_the_solution(tmp_path, fmt):
    ds = load_dataset_source(str(_write(tmp_path / f"math.{fmt}", fmt, MATH_ROWS)), columns=_math_columns())
    assert ds.column_names == ["prompt", "answer", "id"]
    assert ds["prompt"] == [r["problem"] for r in MATH_ROWS]
    assert ds["answer"] == ["\\frac{1}{2}", "\\{-2, 2\\}", "4"]  # nested braces kept whole
    kept = load_dataset_source(str(tmp_path / f"math.{fmt}"), columns=_math_columns(), keep_columns=True)
    assert kept["level"] == ["Level 1", "Level 2", "Level 1"] and kept["solution"][0] == MATH_ROWS[0]["solution"]


def test_numina_and_deepscaler_rows(tmp_path):
    numina = [{"problem": "What is 6*7?", "solution": "6*7 = \\boxed{42}",
               "messages": [{"role": "user", "content": "What is 6*7?"}, {"role": "assistant", "content": "42"}]}]
    ds = load_dataset_source(str(_write(tmp_path / "numina.parquet", "parquet", numina)), columns=_math_columns())
    assert ds["answer"] == ["42"] and ds.column_names == ["prompt", "answer"]
    deepscaler = [{"problem": "p1", "answer": "\\frac{3}{4}", "solution": "so \\boxed{0.75}"},  # answer column wins
                  {"problem": "p2", "answer": "", "solution": "hence \\boxed{\\sqrt{2}}"}]  # empty: the solution's
    ds = load_dataset_source(str(_write(tmp_path / "dsr.jsonl", "jsonl", deepscaler)), columns=_math_columns())
    assert ds["answer"] == ["\\frac{3}{4}", "\\sqrt{2}"]


def test_math_row_without_a_box_is_an_error_or_skipped_and_counted(tmp_path, caplog):
    rows = [*MATH_ROWS[:1], {"problem": "p", "solution": "The answer is 5.", "id": "nobox"}, MATH_ROWS[2]]
    path = _write(tmp_path / "m.jsonl", "jsonl", rows)
    with pytest.raises(DataError, match=r"row 1: the solution \(column 'solution'\) has no \\boxed\{\} answer.*"
                                        r"The answer is 5.*on_missing_answer='skip'"):
        load_dataset_source(str(path), columns=_math_columns())
    with caplog.at_level("WARNING", logger="metarl.data"):
        ds = load_dataset_source(str(path), columns=_math_columns(), on_missing_answer="skip")
    assert ds["answer"] == ["\\frac{1}{2}", "4"] and ds["id"] == ["m1", "m3"]  # other columns stay aligned
    assert "skipped 1 of 3 rows" in caplog.text and "(rows 1)" in caplog.text
    none = _write(tmp_path / "none.jsonl", "jsonl", [{"problem": "p", "solution": "no box"}])
    with pytest.raises(DataError, match="none of its 1 rows has a"):
        load_dataset_source(str(none), columns=_math_columns(), on_missing_answer="skip")
    with pytest.raises(DataError, match="on_missing_answer='drop'"):
        load_dataset_source(str(path), columns=_math_columns(), on_missing_answer="drop")


def test_math_missing_columns_name_the_column_and_the_columns_available(tmp_path):
    path = _write(tmp_path / "q.jsonl", "jsonl", [{"question": "q", "solution": "\\boxed{1}"}])
    with pytest.raises(DataError, match=r"no column 'problem' for 'prompt'; its columns are \['question', "
                                        r"'solution'\]"):
        load_dataset_source(str(path), columns=_math_columns())
    bare = _write(tmp_path / "b.jsonl", "jsonl", [{"problem": "q", "worked": "\\boxed{1}"}])
    with pytest.raises(DataError, match=r"no column 'solution' for 'solution'; its columns are \['problem', 'worked'\]"):
        load_dataset_source(str(bare), columns=_math_columns())
    with pytest.raises(DataError, match=r"no column 'answer' for 'answer'.*columns=\{'solution'"):
        load_dataset_source(str(bare), columns={**_math_columns(), "solution": None})
    assert load_dataset_source(str(bare), columns={**_math_columns(), "solution": "worked"})["answer"] == ["1"]


def test_task_math_config_through_the_trainer_and_eval_loaders(tmp_path):
    """conf/task/math.yaml as metarl-train and metarl-eval read it (no model is loaded)."""
    from hydra import compose, initialize_config_dir

    from metarl.config import conf_dir
    from metarl.eval.questions import load_questions
    from metarl.trainer.run import validate

    d = tmp_path / "math"
    d.mkdir()
    _write(d / "train.jsonl", "jsonl", MATH_ROWS)
    _write(d / "test.jsonl", "jsonl", MATH_ROWS[2:])
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=["name=m", f"run_dir={tmp_path / 'run'}", "model=random-tiny",
                                          "task=math", f"task.source={d}", "task.test_split=test"])
    plan = validate(cfg)
    assert [r["answer"] for r in plan.train_rows] == ["\\frac{1}{2}", "\\{-2, 2\\}", "4"]
    assert [r["answer"] for r in plan.test_rows] == ["4"]
    assert plan.scorer.grader("so the answer is $\\boxed{0.5}$", plan.train_rows[0]["answer"])  # grader=math
    questions, problems = load_questions(dict(cfg.task), None)
    assert [q.answer for q in questions] == ["4"] and not problems
