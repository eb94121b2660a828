"""Robustness: untrusted model output through the whole scoring pipeline, and estimator faults in training.

Model output is untrusted input to segmenters, answer/verdict parsers, graders and rewards. An adversarial
corpus (huge exponents, deep nesting, giant numbers, control characters, lone surrogates, 1 MB lines,
LaTeX bombs, code-execution attempts) and hypothesis fuzz go through ``metarl.scoring.Scorer`` with every
built-in segmenter, the Obj-1 rewards and the math / number / exact graders and the subset-sum verifier,
and through ``metarl-score`` on a JSONL file: nothing raises, every trace returns within a safety bound
(enforced: a hung call fails the test instead of hanging it), nothing is executed, the outcome is 0 where
the text cannot be graded, and the episodes partition the completion. Then a real 2-step CPU training run
with an estimator that raises / loops / returns NaN / inf on single samples finishes and counts each fault
in ``metrics.jsonl``; an estimator failing on every sample stops the run with a message naming it.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import threading
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metarl.config import conf_dir
from metarl.grading import MathGrader, build_grader, extract_answer, grade_exact, grade_number, parse_verdict
from metarl.rewards import RewardError, build_rewards, reward
from metarl.rewards.obj1 import generation_correctness, outcome, verification_correctness
from metarl.analysis.io import read_jsonl
from metarl.runlog import RunLog
from metarl.scoring import Objective, Scorer
from metarl.segmenters import MRTSegmenter, ParagraphSegmenter, RegexSegmenter, TagSegmenter, TokenChunkSegmenter
from metarl.tasks import SubsetSumTask
from metarl.types import Trace, check_partition

MB = 1_000_000
SAFETY_BOUND_S = 15.0  # per trace, 1 MB inputs included: "returns and does not hang", not a speed claim
OBJ1 = [outcome, generation_correctness, verification_correctness]
# A problem no corpus text solves (no subset of the numbers reaches the target) and gold answers no text states.
SUBSET_SUM_PROMPT = "Target: 9999. Numbers: 1 2 4 7.\n"
GOLD = {"math": "\\frac{-29}{4}", "number": "-7.25", "exact": "-7.25", "subset_sum": "2+7"}
TRIED = {"corpus traces": 0, "fuzz traces": 0, "metarl-score lines": 0, "training runs": 0}


def rows_of(path):
    """The JSON objects of a JSONL file, as metarl.analysis reads them (every line must be one)."""
    rows, problems = read_jsonl(path)
    assert not problems, problems
    return [{k: v for k, v in r.items() if k != "_source"} for r in rows]


def adversarial_corpus(canary: Path) -> list[tuple[str, str]]:
    """(name, completion) pairs. ``canary`` is a file that any executed payload would create."""
    c = str(canary)
    small = [
        ("power tower", "9**9**9**9"),
        ("power tower latex", "<attempt>\\boxed{2^{2^{2^{2^{100}}}}}</attempt><verify>correct</verify>"),
        ("exponent 10^10^10", "The answer is $10^{10^{10}}$."),
        ("tiny exponent", "\\boxed{2^{-10000000000}}"),
        ("factorial", "<answer>\\boxed{(10^{6})!}</answer>"),
        ("binomial", "\\boxed{\\binom{1000000000}{500000000}}"),
        ("float overflow", "<attempt>1e999999999</attempt>"),
        ("deep parens", "(" * 10_000 + "1" + ")" * 10_000),
        ("deep frac", "\\boxed{" + "\\frac{" * 2000 + "1" + "}{2}" * 2000 + "}"),
        ("deep sqrt", "\\boxed{" + "\\sqrt{" * 5000 + "2" + "}" * 5000 + "}"),
        ("left bomb", "\\boxed{\\left(" * 3000 + "1"),
        ("unclosed boxes", "\\boxed{" * 20_000),
        ("matrix bomb", "$\\begin{pmatrix}" * 500 + "1" + "\\end{pmatrix}" * 500 + "$"),
        ("macro bomb", "\\def\\a{\\a\\a}\\a \\newcommand{\\b}{\\b\\b}\\b \\boxed{\\a}"),
        ("nested tags", "<attempt>" * 300 + "1+2" + "</attempt>" * 300),
        ("tag soup", "<attempt><verify></attempt></verify><revise><verify>correct</revise>" * 200),
        ("unclosed answer", "<answer>" * 5_000),
        ("control chars", "\x00\x01\x1b[31m\x7f<attempt>\x00 2+7 \x00</attempt>\x1b<verify>\x00correct</verify>"),
        ("nul flood", "\x00" * 1000 + "\\boxed{5}"),
        ("bidi and zero width", "\u202e\u200b\ufeff<attempt>\\boxed{\u0661\u0662}</attempt>"),
        ("lone surrogates", "<attempt>\ud800</attempt><verify>\udfff correct \ud800</verify>\ud800\udfff"),
        ("crlf paragraphs", "Step 1\r\n\r\nWait\r\n\r\nBut wait\r\n\r\n" * 100),
        ("mrt keyword storm", "Wait\n\nBut wait\n\nAlternatively\n\n" * 2_000),
        ("verdict storm", "not incorrect not correct isn't wrong " * 3_000),
        ("empty", ""),
        ("whitespace", " \n\n \t\n\n\n\n"),
        ("code exec os.system", f"__import__('os').system('touch {c}')"),
        ("code exec boxed", f"\\boxed{{__import__('os').system('touch {c}')}}"),
        ("code exec answer tag", f"<answer>__import__('pathlib').Path('{c}').touch()</answer>"),
        ("code exec phrase", f"The answer is exec(\"open('{c}', 'w')\")"),
        ("code exec eval", f"<attempt>eval(\"open('{c}', 'w')\")</attempt><verify>correct</verify>"),
        ("code exec lambda", f"\\boxed{{(lambda: open('{c}', 'w'))()}}"),
        ("code exec subclasses", "\\boxed{().__class__.__base__.__subclasses__()}"),
        ("code exec sympify", f"\\boxed{{Symbol('x').__init__.__globals__['os'].system('touch {c}')}}"),
    ]
    big = [  # ~1 MB each
        ("1 MB of x", "x" * MB),
        ("1 MB number", "\\boxed{" + "9" * MB + "}"),
        ("1 MB digits with commas", "1" + ",000" * 250_000),
        ("1 MB newlines", "\n" * MB),
        ("1 MB paragraphs", "a\n\n" * (MB // 3)),
        ("1 MB attempt tags", "<attempt>1</attempt><verify>incorrect</verify>" * (MB // 45)),
        ("1 MB opening tags", "<attempt>" * (MB // 9)),
        ("1 MB Wait paragraphs", "Wait\n\n" * (MB // 6)),
        ("1 MB answer phrases", "the answer is " * (MB // 14)),
        ("1 MB dollars", "$" * MB),
    ]
    return small + big


# ---- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def report_what_was_tried(request):
    """After the module: print how many adversarial inputs went through (shown even when output is captured)."""
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[robustness] inputs tried: {TRIED}")


def bounded(fn, *args, limit: float = SAFETY_BOUND_S):
    """Run ``fn(*args)`` in a daemon thread; fail (not hang) if it does not return within ``limit`` s."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e

    th = threading.Thread(target=target, daemon=True)
    t0 = time.perf_counter()
    th.start()
    th.join(limit)
    elapsed = time.perf_counter() - t0
    assert not th.is_alive(), f"still running after {limit} s on {str(args)[:100]!r}"
    if "error" in out:
        raise AssertionError(f"raised {out['error']!r} on {str(args)[:100]!r}") from out["error"]
    return out["value"], elapsed


@pytest.fixture(scope="module")
def math_grader():
    g = MathGrader(timeout=1.0)
    assert g.warm_up(30.0)
    return g


@pytest.fixture(scope="module")
def char_tok():
    from metarl.models.tiny import build_char_tokenizer

    return build_char_tokenizer()


def make_scorer(segmenter, grader_name: str, math_grader=None, tokenizer=None, **kw) -> Scorer:
    """A Scorer with the Obj-1 rewards and one grader (``subset_sum``: the task's verifier and extractor)."""
    if grader_name == "subset_sum":
        task = SubsetSumTask()
        grader, extract = build_grader(task.verify), task.extract_answer
    else:
        graders = {"number": grade_number, "exact": grade_exact, "math": math_grader or MathGrader()}
        grader = build_grader(graders[grader_name])
        extract = functools.partial(extract_answer, style="auto")
    return Scorer(segmenter=segmenter, rewards=build_rewards(OBJ1), grader=grader, extract_answer=extract,
                  parse_verdict=parse_verdict, objective=Objective(), tokenizer=tokenizer, **kw)


def make_trace(text: str, grader_name: str, tokenizer=None) -> Trace:
    """A trace to grade. With a tokenizer it carries token ids and the text decoded from them, as the trainer's
    traces do (characters the tokenizer cannot represent, such as lone surrogates, are not in such text)."""
    prompt = SUBSET_SUM_PROMPT if grader_name == "subset_sum" else "What is -29/4?"
    ids = None
    if tokenizer is not None:
        ids = tokenizer(text.encode("utf-8", "replace").decode("utf-8"), add_special_tokens=False)["input_ids"]
        text = tokenizer.decode(ids, skip_special_tokens=True)
    return Trace(prompt=prompt, completion=text, answer=GOLD[grader_name], completion_ids=ids)


def check_scored(t: Trace, tokenized: bool) -> None:
    """The invariants every scored trace keeps, whatever the text."""
    check_partition(t.completion, t.episodes, len(t.completion_ids) if tokenized else None)
    assert t.outcome == 0.0, "an ungradable or wrong completion must be graded incorrect"
    for e in t.episodes:
        for name, v in e.rewards.items():
            assert isinstance(v, float) and math.isfinite(v), (name, v)
    assert math.isfinite(t.rewards["total"]) and math.isfinite(t.rewards["dense"])
    assert t.rewards["total"] == t.rewards["dense"] + t.outcome  # alpha = 1


SEGMENTERS = {
    "tags": TagSegmenter,
    "mrt": MRTSegmenter,
    "paragraphs": ParagraphSegmenter,
    "regex": lambda: RegexSegmenter(r"(?m)^(?:Wait|Alternatively|Let me verify)"),
    "tokens": lambda: TokenChunkSegmenter(256),
}


# ---- 1. adversarial corpus through the whole pipeline ------------------------------------------

TOKENIZED = {"tags", "tokens"}  # scored with token ids too, as in training
TOKENIZED_BIG = {"1 MB of x", "1 MB attempt tags"}  # the 1 MB inputs also given to the tokenized runs


@pytest.mark.parametrize("seg_name", list(SEGMENTERS))
def test_adversarial_corpus_through_the_scoring_pipeline(seg_name, math_grader, char_tok, tmp_path):
    canary = tmp_path / "PWNED"
    corpus = adversarial_corpus(canary)
    tokenized = seg_name in TOKENIZED
    tok = char_tok if tokenized else None
    graders = ("math", "number", "exact", "subset_sum")
    # the per-trace segmentation bound; token-span mapping of 100k+ chars is slow, and the bound must cut it
    limit = 1.0 if tokenized else 3.0
    scorers = {g: make_scorer(SEGMENTERS[seg_name](), g, math_grader, tokenizer=tok, segment_timeout=limit)
               for g in graders}
    worst, tried, fallbacks = 0.0, 0, []
    for i, (name, text) in enumerate(corpus):
        if tokenized and len(text) >= 100_000 and name not in TOKENIZED_BIG:
            continue
        # every grader on the short inputs; the long ones rotate through the graders
        chosen = graders if len(text) < 10_000 else (graders[i % len(graders)],)
        for g in chosen:
            trace = make_trace(text, g, tok)
            (scored,), elapsed = bounded(scorers[g].score, [trace])
            check_scored(scored, tokenized)
            if scored.meta.get("segment_fault"):
                fallbacks.append((name, len(text), scored.meta["segment_fault"]))
            worst = max(worst, elapsed)
            tried += 1
    assert not canary.exists(), "a payload in the model output was executed"
    live = tmp_path / "LIVE"  # the payloads are live: evaluated (here, on purpose) one creates its file
    payload = dict(adversarial_corpus(live))["code exec answer tag"].removeprefix("<answer>").removesuffix("</answer>")
    eval(payload)  # noqa: S307 - trusted test code proving the canary check is not vacuous
    assert live.exists()
    # a trace falls back to one episode only when its segmentation overran the bound, on long inputs only
    assert all(kind == "timeout" and n >= 10_000 for _, n, kind in fallbacks), fallbacks
    for g, s in scorers.items():
        assert all(r.stats["errors"] == 0 and r.stats["nonfinite"] == 0 for r in s.rewards), (g, s.rewards)
    TRIED["corpus traces"] += tried
    print(f"\n[{seg_name}] adversarial traces scored: {tried} ({len(corpus)} texts x graders); "
          f"slowest {worst:.2f} s; fell back to one episode at the {limit} s bound: {len(fallbacks)}")


def test_episode_limit_bounds_work_and_keeps_the_partition(char_tok):
    text = "<attempt>1</attempt><verify>incorrect</verify>" * 3000  # 6000 episodes
    s = make_scorer(TagSegmenter(), "number", tokenizer=char_tok, max_episodes_per_trace=100)
    (t,), elapsed = bounded(s.score, [make_trace(text, "number", char_tok)], limit=SAFETY_BOUND_S)
    assert len(t.episodes) == 100 and t.meta["episodes_merged"] == 5900
    check_partition(text, t.episodes, len(t.completion_ids))
    assert t.episodes[-1].info["merged_episodes"] == 5901 and t.episodes[-1].kind == "verify"
    assert [e.kind for e in t.episodes[:4]] == ["attempt", "verify", "attempt", "verify"]
    # below the limit nothing changes
    small = "<attempt>1</attempt><verify>incorrect</verify>" * 10
    t2 = make_scorer(TagSegmenter(), "number", max_episodes_per_trace=100).score([make_trace(small, "number")])[0]
    t3 = make_scorer(TagSegmenter(), "number", max_episodes_per_trace=None).score([make_trace(small, "number")])[0]
    assert [(e.start, e.end, e.kind) for e in t2.episodes] == [(e.start, e.end, e.kind) for e in t3.episodes]
    assert "episodes_merged" not in t2.meta


def hangs_on_wait(text):
    if "Wait" in text:
        while True:
            pass
    return [(0, len(text), "attempt")]


def raises_on_wait(text):
    if "Wait" in text:
        raise RuntimeError("segmenter bug")
    return [(0, len(text), "attempt")]


def test_a_segmenter_that_hangs_or_raises_on_one_trace_is_isolated_and_counted():
    for seg, fault in ((hangs_on_wait, "timeout"), (raises_on_wait, "error")):
        s = make_scorer(seg, "number", segment_timeout=0.3)
        traces = [make_trace("fine", "number"), make_trace("Wait, what", "number")]
        (a, b), elapsed = bounded(s.score, traces, limit=5.0)
        assert a.meta.get("segment_fault") is None and a.episodes[0].kind == "attempt"
        assert b.meta["segment_fault"] == fault and b.meta["reward_faults"] == {"segment": 1}
        assert [(e.kind, e.text) for e in b.episodes] == [("other", "Wait, what")]
        assert b.meta["reward_errors"][0].startswith("segmenter: ")
    with pytest.raises(RewardError, match="segmenter 'raises_on_wait' raised on every one of the 2 traces"):
        make_scorer(raises_on_wait, "number").score([make_trace("Wait", "number"), make_trace("Wait!", "number")])


def test_lone_surrogates_are_written_and_read_back_by_the_run_log(tmp_path):
    log = RunLog(tmp_path)
    rec = {"step": 1, "completion": "a\ud800b\\\udfff", "reward": float("nan")}
    log.append("rollouts.jsonl", rec)
    assert rows_of(tmp_path / "rollouts.jsonl") == [{"step": 1, "completion": "a\ud800b\\\udfff", "reward": None}]


# ---- 2. hypothesis fuzz through the pipeline -----------------------------------------------------

_FRAGMENTS = st.sampled_from([
    "<attempt>", "</attempt>", "<verify>", "</verify>", "<revise>", "</revise>", "<answer>", "</answer>",
    "\n\n", "\n", "\r\n\r\n", "Wait", "But wait", "Alternatively", "But let me double-check", " ", "\t",
    "correct", "incorrect", "not ", "wrong", "\\boxed{", "}", "{", "\\frac", "^", "**", "9" * 40, "1+2",
    "2+7", "=", "the answer is ", "####", "\\left(", "\\sqrt{", "$", "e999", ",000",
    "\ud800", "\udfff", "\x00", "\x1b", "\u202e", "\u0661", "\ufeff", "😀",
])
_TEXT = st.lists(st.one_of(_FRAGMENTS, st.characters(codec=None)), max_size=80).map("".join)
_CHEAP_SCORERS = {(seg, g): make_scorer(SEGMENTERS[seg](), g, segment_timeout=3.0)
                  for seg in ("tags", "mrt", "paragraphs", "regex") for g in ("number", "exact", "subset_sum")}


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=_TEXT, seg=st.sampled_from(["tags", "mrt", "paragraphs", "regex"]),
       grader=st.sampled_from(["number", "exact", "subset_sum"]))
def test_fuzz_pipeline_cheap_graders(text, seg, grader):
    (t,), elapsed = bounded(_CHEAP_SCORERS[seg, grader].score, [make_trace(text, grader)], limit=5.0)
    check_scored(t, tokenized=False)
    TRIED["fuzz traces"] += 1


_FUZZ_MATH = MathGrader(timeout=0.5)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT)
def test_fuzz_pipeline_math_grader_with_token_spans(text, char_tok):
    s = make_scorer(TagSegmenter(), "math", _FUZZ_MATH, tokenizer=char_tok, segment_timeout=3.0)
    (t,), elapsed = bounded(s.score, [make_trace(text, "math", char_tok)], limit=2 * SAFETY_BOUND_S)
    check_scored(t, tokenized=True)
    TRIED["fuzz traces"] += 1


# ---- 3. metarl-score on a hostile JSONL file ----------------------------------------------------

def _score(src: Path, out: Path, *extra: str):
    from metarl.cli.score import score_file

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("score", overrides=[f"input={src}", f"output={out}", "verifier=subset_sum",
                                          "rewards=[outcome,generation_correctness,verification_correctness]",
                                          "batch_size=4", *extra])
    counts, elapsed = bounded(score_file, cfg, limit=120.0)
    return counts, elapsed, [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_metarl_score_on_a_hostile_file(tmp_path, capsys):
    canary = tmp_path / "PWNED"
    corpus = [(n, t) for n, t in adversarial_corpus(canary) if len(t) < 100_000 or n == "1 MB attempt tags"]
    lines: list[bytes] = []
    for name, text in corpus:
        lines.append(json.dumps({"prompt": SUBSET_SUM_PROMPT, "completion": text, "answer": "2+7",
                                 "name": name}).encode())
    n = len(lines)
    surrogate_line = 1 + next(i for i, (name, _) in enumerate(corpus) if name == "lone surrogates")
    lines.append(b'{"prompt": "p", "completion": "<attempt>\xff\xfe bad bytes 2+7</attempt>", "answer": "2+7"}')
    lines.append(b'{"prompt": "p", "completion": "trunc')  # a line cut off mid-write
    lines.append(b"\xc3\x28 not json at all")
    lines.append(json.dumps({"prompt": SUBSET_SUM_PROMPT, "completion": "x" * MB, "answer": 7}).encode())  # 1 MB
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")

    # with a tokenizer (token spans from the text): a lone surrogate is no text a tokenizer takes -> a bad line
    counts, elapsed, rows = _score(src, tmp_path / "scored.jsonl", "tokenizer=char")
    err = capsys.readouterr().err
    assert [r["line"] for r in rows] == list(range(1, len(lines) + 1)), "one output line per input line"
    assert counts["lines"] == len(lines) and counts["bad"] == 3 and counts["scored"] == len(lines) - 3
    assert f"line {n + 1}: invalid UTF-8" in err
    assert f"line {n + 2}: not valid JSON" in err and f"line {n + 3}: not valid JSON" in err
    assert f"line {surrogate_line}: the completion holds a lone surrogate" in err
    bad = {surrogate_line, n + 2, n + 3}
    assert {r["line"] for r in rows if "error" in r} == bad
    assert "\ufffd" in rows[n]["completion"]
    for r in rows:
        if r["line"] in bad:
            continue
        if r["prompt"] == "p":  # no subset-sum problem in the prompt: the verifier cannot tell, and says so
            assert r["outcome"] is None and "verify" in r["meta"]["ungraded"], r["meta"]
            continue
        assert r["outcome"] == 0.0
        eps = r["episodes"]
        assert "".join(e["text"] for e in eps) == r["completion"]
        assert all(r["completion"][e["start"]:e["end"]] == e["text"] for e in eps)
        assert eps[0]["token_start"] == 0 and all(a["token_end"] == b["token_start"] for a, b in zip(eps, eps[1:]))
    assert len(rows[[name for name, _ in corpus].index("1 MB attempt tags")]["episodes"]) == 1024  # the limit

    # without a tokenizer lone surrogates are scored and written back as the same JSON escapes
    counts2, _, rows2 = _score(src, tmp_path / "scored2.jsonl")
    read = json.loads(lines[surrogate_line - 1])["completion"]  # JSON joins an escaped pair into one char
    assert "\ud800" in read and rows2[surrogate_line - 1]["completion"] == read and counts2["bad"] == 2
    assert not canary.exists()
    TRIED["metarl-score lines"] += 2 * len(lines)
    print(f"\nmetarl-score: {len(lines)} hostile lines in {elapsed:.1f} s: {counts}")


# ---- 4. estimator faults during a real training run ---------------------------------------------

_CALLS = itertools.count()
BATCH = 8  # completions per step (2 prompts x 4 generations)


@reward("trace")
def flaky_estimator(completion: str) -> float:
    """Per batch of 8 calls: sample 1 raises, 3 loops forever, 5 returns NaN, 6 returns inf, others 0.5."""
    k = next(_CALLS) % BATCH
    if k == 1:
        raise RuntimeError("estimator bug on this sample")
    if k == 3:
        while True:
            pass
    if k == 5:
        return math.nan
    if k == 6:
        return math.inf
    return 0.5


@reward("episode")
def always_raises(episode) -> float:
    raise ValueError("broken estimator")


TRAIN = ["recipe=obj1_verify", "model=random-tiny", "trainer.max_steps=2", "evaluate.enabled=false",
         "task.n_train=16", f"trainer.per_device_train_batch_size={BATCH}", "trainer.num_generations=4",
         "budget.cap=24", "rollouts_every=1"]


def _train(tmp_path, *extra):
    from metarl.trainer.run import run

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=[*TRAIN, "name=faults", f"run_dir={tmp_path / 'run'}", *extra])
    return run(cfg)


def test_estimator_faults_on_single_samples_do_not_stop_training_and_are_counted(tmp_path):
    global _CALLS
    _CALLS = itertools.count()
    summary = _train(tmp_path, "+rewards.flaky._target_=test_robustness.flaky_estimator", "+rewards.flaky._partial_=true", "+rewards.flaky.timeout=0.3")
    TRIED["training runs"] += 1
    assert summary["steps"] == 2
    metrics = rows_of(Path(summary["run_dir"]) / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:  # per step: 1 exception + 1 timeout + 2 non-finite values, all isolated
        assert m["metarl/reward_errors"] == 4.0
        assert m["metarl/reward_timeouts"] == 1.0
        assert m["metarl/reward_nonfinite"] == 2.0
        assert m["metarl/segment_fallbacks"] == 0.0
        assert m["metarl/reward/flaky"] == 0.5 * 4 / 8  # failed samples count as 0 (on_reward_error=zero)
    rollouts = rows_of(Path(summary["run_dir"]) / "rollouts.jsonl")
    flagged = [r for r in rollouts if r["meta"].get("reward_errors")]
    assert len(flagged) == 4 * 2 and all(r["rewards"]["flaky"] == 0.0 for r in flagged)
    messages = " ".join(m for r in flagged for m in r["meta"]["reward_errors"])
    assert "estimator bug" in messages and "exceeded" in messages and "non-finite" in messages


def test_an_estimator_failing_on_every_sample_stops_the_run_naming_it(tmp_path):
    with pytest.raises(RewardError, match="reward 'broken' failed on every one of .* samples.*broken estimator"):
        _train(tmp_path, "+rewards.broken._target_=test_robustness.always_raises", "+rewards.broken._partial_=true")
    TRIED["training runs"] += 1
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert not metrics.exists() or not metrics.read_text().strip(), "it stops at the first step"


