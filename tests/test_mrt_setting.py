"""The setting where MRT predicts a difference (conf/setting/mrt_long.yaml, conf/model/tiny_mrt.yaml;
docs/results_mrt_setting.md): it composes and validates, the warm start's recipe matches the task's level and split,
and exact J (the exact-progress oracle) is computable on its level. Cheap: no warm start is built."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from metarl.config import compose, validated
from metarl.models.warmstart import TinyRecipe, make_recipe, sft_examples
from metarl.rewards.exact import ExactProgress
from metarl.tasks import LEVELS, build_task
from metarl.tasks.subset_sum import format_expression
from metarl.tasks.subset_sum_traces import candidates
from metarl.types import Episode, Trace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import compare_learning as cl  # noqa: E402

LEVEL = 3
CAP = 320


def setting(*extra: str):
    return compose("train", ["recipe=outcome_grpo", "+setting=mrt_long", *extra])


def test_the_setting_composes_validates_and_matches_its_warm_start():
    cfg = setting()
    validated(cfg, "train")  # every section's range and choice checks
    assert cfg.budget.cap == CAP and list(cfg.evaluate.budgets) == [CAP // 2]
    assert build_task(cfg.task.task).level() == LEVELS[LEVEL]
    tiny = OmegaConf.to_container(cfg.model.tiny, resolve=True)
    assert str(cfg.model.name_or_path) == "tiny"
    recipe = make_recipe(**tiny)  # the warm start's recipe: known fields, valid solver probabilities
    assert recipe.difficulty == LEVEL and recipe != TinyRecipe()
    task, warm = build_task(cfg.task.task), recipe.task()
    # the held-out problems are the warm start's held-out split, disjoint from its SFT problems
    assert task.test_fraction == warm.test_fraction
    test = task.generate("test", cfg.task.n_test, seed=0, allow_fewer=True)
    assert len(test) >= cfg.evaluate.n
    train = {p["id"] for p in warm.generate("train", 20_000, seed=recipe.seed, allow_fewer=True)}
    assert not train & {p["id"] for p in test}
    assert cfg.task.n_train <= len(train)
    # a prompt, the cap and a forced answer fit the model's positions
    assert max(len(p["prompt"]) for p in test) + CAP + 32 <= recipe.max_position_embeddings


def test_the_comparison_resolves_the_setting_and_hands_its_warm_start_to_metarl_eval():
    s = cl.resolve(cl.Settings(setting="mrt_long"))
    assert (s.steps, s.cap, s.eval_n, s.eval_every) == (100, CAP, 180, 25)
    assert s.warm_start["difficulty"] == LEVEL and s.task["difficulty"] == LEVEL
    train = compose("train", cl.train_overrides(s, cl.INITIAL, 0, Path("/tmp/x")))
    ev = compose("eval", [*cl.setting_of(train), "model=tiny"])
    assert ev.task.task == train.task.task and ev.model.tiny == train.model.tiny


def test_the_warm_start_teaches_long_streams_that_fit_its_sft_length():
    recipe = make_recipe(**OmegaConf.to_container(setting().model.tiny, resolve=True))
    examples = sft_examples(TinyRecipe(**{**recipe.__dict__, "n_examples": 400}))
    whole = [e["completion"] for e in examples if "<answer>" not in e["prompt"]]
    episodes = [len(re.findall(r"</(?:attempt|verify|revise)>", c)) for c in whole]
    assert sum(episodes) / len(episodes) >= 6  # the solver it imitates writes >= 6 episodes on average
    assert max(len(e["prompt"]) + len(e["completion"]) for e in examples) <= recipe.max_length  # nothing truncated
    assert sum(len(c) > CAP for c in whole) / len(whole) >= 0.15  # and the cap binds on its streams


@pytest.mark.parametrize("rule", ["believed", "last"])
def test_exact_j_is_computable_on_the_level(rule):
    """Exact progress on a constructed level-3 prefix: wrong attempts rejected one by one, then the right one."""
    cfg = setting("rewards=[exact_progress]", f"rewards.exact_progress.rule={rule}")
    reward = ExactProgress(OmegaConf.to_container(cfg.task.task, resolve=True), rule=rule)
    problem = build_task(cfg.task.task).generate("test", 1, seed=3)[0]
    pool = candidates(problem["numbers"], LEVELS[LEVEL])
    right = [c for c in pool if sum(c) == problem["target"]]
    wrong = [c for c in pool if sum(c) != problem["target"]][:3]
    text, cuts = "", [0]
    for i, terms in enumerate(wrong):
        e = format_expression(terms)
        tag = "attempt" if i == 0 else "revise"
        text += f"<{tag}>{e}</{tag}>"
        cuts.append(len(text))
        text += f"<verify>{e}={sum(terms)}!={problem['target']} incorrect</verify>"
        cuts.append(len(text))
    e = format_expression(right[0])
    text += f"<revise>{e}</revise>"
    cuts.append(len(text))
    text += f"<verify>{e}={problem['target']} correct</verify>"
    cuts.append(len(text))
    trace = Trace(problem["prompt"], text, answer=problem["answer"],
                  episodes=[Episode("other", a, b, text[a:b]) for a, b in zip(cuts, cuts[1:])])
    deltas = reward.score_batch([trace])[0]
    js = [trace.meta["J_init"], *(ep.info["J"] for ep in trace.episodes)]
    assert len(js) == 9 and all(0.0 <= j <= 1.0 for j in js)
    assert js[0] == pytest.approx(len(right) / len(pool))  # the prompt alone: a uniform guess
    assert js[-2:] == [1.0, 1.0]  # the right answer stated, then verified
    if rule == "believed":  # each rejection leaves one candidate fewer to guess among
        assert js[2] == pytest.approx(len(right) / (len(pool) - 1))
        assert js[6] == pytest.approx(len(right) / (len(pool) - 3))
    else:  # the last answer stated, whatever its verdict
        assert js[1:7] == [0.0] * 6
    assert sum(deltas) == pytest.approx(js[-1] - js[0])
