"""The tiny warm-started policy: recipe hashing, synthetic SFT data, the SFT build, the atomic cache."""
from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from metarl.models import warmstart as ws
from metarl.models.warmstart import (TinyRecipe, load_tiny_policy, make_recipe, policy_dir, sft_examples,
                                     tiny_policy_path)
from metarl.prover import TAG_PROVER
from metarl.tasks.subset_sum import parse_problem

#: A recipe small enough to build in a few seconds (the real one takes about a minute).
SMALL = dict(n_examples=320, batch_size=8, hidden_size=32, num_layers=1, num_heads=2, learning_rate=1e-2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One small policy built through the cache (module-scoped: built once)."""
    cache = tmp_path_factory.mktemp("metarl-cache")
    path = tiny_policy_path(cache_dir=cache, **SMALL)
    return cache, path


# ---------------------------------------------------------------- recipe and cache key


def test_cache_key_changes_with_every_recipe_field_but_threads(monkeypatch):
    base = TinyRecipe()
    keys = {base.key()}
    for f in dataclasses.fields(TinyRecipe):
        v = getattr(base, f.name)
        if f.name == "threads":
            assert make_recipe(threads=2).key() == base.key()
            continue
        if f.name in ("forced_final", "forced_rule", "forced_mid_blocks"):
            new = {"forced_final": 0.5, "forced_rule": "believed", "forced_mid_blocks": "verify"}[f.name]
        elif not v:
            new = type(v)(1) if f.name != "weight_decay" else 0.1
        elif f.name == "difficulty":
            new = 3
        elif isinstance(v, float):
            new = v / 2  # stays a valid probability / fraction
        else:
            new = v * 2
        keys.add(make_recipe(**{f.name: new}).key())
    assert len(keys) == len(dataclasses.fields(TinyRecipe))  # every field but threads gave a new key
    monkeypatch.setattr(ws, "RECIPE_VERSION", ws.RECIPE_VERSION + 1)
    assert TinyRecipe().key() not in keys  # a code-version bump rebuilds too


def test_cache_key_follows_the_data_format(monkeypatch):
    """An edit to the task's prompt (or the solver's traces) changes the data, hence the key."""
    from metarl.tasks import subset_sum

    key = TinyRecipe().key()
    monkeypatch.setattr(subset_sum, "format_prompt", lambda numbers, target: f"Sum to {target}: {numbers}\n")
    ws._train_problems.cache_clear()
    try:
        assert TinyRecipe().key() != key
    finally:
        ws._train_problems.cache_clear()


def test_cache_location_honours_metarl_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("METARL_CACHE", str(tmp_path))
    r = make_recipe(seed=3)
    assert policy_dir(r) == tmp_path / f"tiny-{r.key()}"
    monkeypatch.delenv("METARL_CACHE")
    assert str(policy_dir(r)).startswith(str(ws.Path("~/.cache/metarl").expanduser()))


def test_bad_recipes_are_rejected():
    with pytest.raises(TypeError, match="unknown tiny-policy recipe field.*hidden"):
        make_recipe(hiden_size=32)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        make_recipe(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="p_slip"):
        make_recipe(p_slip=2.0)


# ---------------------------------------------------------------- synthetic SFT data


def test_sft_examples_are_deterministic_train_only_and_well_formed():
    r = make_recipe(n_examples=300, forced_fraction=0.3)
    ex = sft_examples(r)
    assert ex == sft_examples(r) and ex != sft_examples(make_recipe(n_examples=300, forced_fraction=0.3, seed=1))
    task = r.task()
    n_forced = 0
    for e in ex:
        numbers, target = parse_problem(e["prompt"])
        assert task.split_of(numbers, target) == "train"  # never a held-out problem
        if e["prompt"].endswith(TAG_PROVER.suffix):  # forced answer: the completion is only the answer
            n_forced += 1
            answer = task.extract_answer(e["completion"])
            assert e["completion"] == answer + TAG_PROVER.answer_stop[0]
            assert set(map(abs, map(int, answer.replace("-", "+").split("+")))) <= set(numbers)
        else:
            assert task.follows_format(e["completion"]), e["completion"]
            assert e["completion"].count("<verify>") <= r.max_attempts
    assert 60 < n_forced < 120
    revised = sum("<revise>" in e["completion"] for e in ex)
    assert revised > 50  # wrong first attempts followed by revisions are common


# ---------------------------------------------------------------- the SFT build and the cache


def test_sft_lowers_the_loss_and_saves_a_loadable_policy(built):
    cache, path = built
    assert path == policy_dir(make_recipe(**SMALL), cache) and path.is_dir()
    metrics = json.loads((path / "metrics.json").read_text())
    losses = [loss for _, loss in metrics["loss_history"]]
    assert len(losses) >= 5 and losses[-1] < 0.6 * losses[0]  # 40 steps of SFT already cut the loss a lot
    saved = json.loads((path / "recipe.json").read_text())
    assert saved["hidden_size"] == 32 and saved["version"] == ws.RECIPE_VERSION
    model, tok = load_tiny_policy(path)
    assert model.config.hidden_size == 32 and not model.training
    text = "Target: 9. Numbers: 1 2 4 7.\n<attempt>2+7</attempt>"
    assert tok.decode(tok(text)["input_ids"]) == text
    enc = tok([text], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (1, enc["input_ids"].shape[1] + 5) or out[0, -1].item() == tok.eos_token_id


def test_sft_changes_the_initial_weights(built):
    _, path = built
    from metarl.models.tiny import build_char_tokenizer, build_tiny_model

    r = make_recipe(**SMALL)
    tok = build_char_tokenizer()
    init = build_tiny_model(len(tok), hidden_size=32, num_layers=1, num_heads=2, tokenizer=tok)
    ws.reinit_weights(init, r.init_std, r.seed)
    trained, _ = load_tiny_policy(path)
    init_sd, trained_sd = init.state_dict(), trained.state_dict()
    changed = [k for k in trained_sd if not torch.equal(trained_sd[k], init_sd[k])]
    assert "model.embed_tokens.weight" in changed and len(changed) >= 0.8 * len(trained_sd)


def test_cached_policy_is_reused_not_rebuilt(built, monkeypatch):
    cache, path = built

    def fail(*a, **k):
        raise AssertionError("rebuilt a cached policy")

    monkeypatch.setattr(ws, "train_tiny_policy", fail)
    assert tiny_policy_path(cache_dir=cache, **SMALL) == path
    assert tiny_policy_path(cache_dir=cache, threads=2, **SMALL) == path  # threads are not in the key
    with pytest.raises(AssertionError, match="rebuilt"):  # a changed recipe is a new policy
        tiny_policy_path(cache_dir=cache, **{**SMALL, "seed": 1})


def test_interrupted_build_leaves_no_policy_and_no_temp_dir(tmp_path, monkeypatch):
    def interrupted(recipe, out_dir, **kwargs):
        (ws.Path(out_dir) / "config.json").write_text("{}")  # half a policy
        raise KeyboardInterrupt

    monkeypatch.setattr(ws, "train_tiny_policy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tiny_policy_path(cache_dir=tmp_path, **SMALL)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="no saved policy"):
        load_tiny_policy(tmp_path / "nothing-here")


def test_build_is_deterministic_given_the_seed(built, tmp_path):
    _, path = built
    again = tiny_policy_path(cache_dir=tmp_path, **SMALL)
    a, _ = load_tiny_policy(path)
    b, _ = load_tiny_policy(again)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_forced_answer_knobs_cut_at_the_end_and_state_the_last_candidate():
    """forced_final=1 cuts every forced example after the whole trace; forced_rule='last' answers the last
    candidate stated even when the prefix rejected it; the defaults give the same data as before the knobs."""
    r = make_recipe(n_examples=200, forced_fraction=1.0, forced_final=1.0, forced_rule="last")
    task = r.task()
    for e in sft_examples(r):
        prefix = e["prompt"][: -len(TAG_PROVER.suffix)]
        assert prefix.endswith("</verify>")  # the whole trace: it always ends with a verification
        assert e["completion"] == task.extract_answer(prefix) + TAG_PROVER.answer_stop[0]  # the last one stated
    from metarl.tasks.subset_sum_traces import NoisySolver, SolverConfig

    solver = NoisySolver(task.level(), SolverConfig())
    p = {"prompt": "Numbers: 1 2 4 7. Target: 9.\n", "numbers": [1, 2, 4, 7], "target": 9}
    rejected = "<attempt>1+2</attempt><verify>1+2=3!=9 incorrect</verify>"
    assert solver.forced_answer(rejected, p, random.Random(0), rule="last") == "1+2"
    assert solver.forced_answer(rejected, p, random.Random(0)) != "1+2"
    with pytest.raises(ValueError, match="forced_final"):
        make_recipe(forced_final=1.5)
    with pytest.raises(ValueError, match="forced_rule"):
        make_recipe(forced_rule="newest")
