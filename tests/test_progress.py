"""Obj-2 progress estimators: meta-prover μ, Monte Carlo progress, likelihood progress.

Checked against ground truth: one-pass block-mask scoring against one plain forward per prefix and
against a hand computation; the Monte Carlo estimate and the sampler against the exact answer
distribution enumerated on a model with a 16-token vocabulary.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from scipy.stats import chisquare

from metarl.models.tiny import build_char_tokenizer, build_tiny_model, sharpen
from metarl.engine import Engine
from metarl.engine.hf import HFBackend
from metarl.prover import (
    R1_TERMINATION_SUFFIX,
    ProverConfig,
    answer_distribution,
    extract_auto,
    extract_boxed,
    extract_raw,
    success_probability,
    warp_logits,
)
from metarl.rewards.progress import LikelihoodProgress, MCProgress, trace_tokens
from metarl.types import Episode, Trace

SUFFIX = "\nTime is up.\n<answer>"
P = ProverConfig(suffix=SUFFIX)
P0 = ProverConfig(suffix="")


def engine(model, tok, batch_size: int = 64, **prover) -> Engine:
    """The transformers engine on ``model`` with a meta-prover of the given fields."""
    return Engine(HFBackend(model, tok, batch_size), ProverConfig(**{"suffix": SUFFIX, "answer_stop": (), **prover}))


def make_trace(tok, prompt: str, parts: list[str], answer: str, with_ids: bool = True) -> Trace:
    """A trace whose episodes are ``parts`` (character tokenizer: one token per character)."""
    completion = "".join(parts)
    episodes, pos = [], 0
    for p in parts:
        ep = Episode("other", pos, pos + len(p), p)
        if with_ids:
            ep.token_start, ep.token_end = pos, pos + len(p)
        episodes.append(ep)
        pos += len(p)
    trace = Trace(prompt, completion, answer=answer, episodes=episodes)
    if with_ids:
        trace.prompt_ids = [tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]
        trace.completion_ids = tok(completion, add_special_tokens=False)["input_ids"]
    return trace


def varied_traces(tok, digits: bool = False) -> list[Trace]:
    """Traces with 1..8 episodes of different lengths (padding inside every batch)."""
    gen = torch.Generator().manual_seed(0)
    alphabet = "0123456789 " if digits else "abcdefgh 0123456789+=.\n"
    traces = []
    for n in range(1, 9):
        parts = []
        for _ in range(n):
            k = int(torch.randint(1, 9, (1,), generator=gen))
            parts.append("".join(alphabet[int(i)] for i in torch.randint(len(alphabet), (k,), generator=gen)))
        prompt = "".join(alphabet[int(i)] for i in torch.randint(len(alphabet), (3 + n,), generator=gen))
        traces.append(make_trace(tok, prompt, parts, answer=str(n * 7)))
    return traces


@pytest.fixture(scope="module")
def sharp():
    """A random tiny Llama over the full character vocabulary, sharpened."""
    tok = build_char_tokenizer()
    return sharpen(build_tiny_model(len(tok), seed=3, tokenizer=tok)), tok


@pytest.fixture(scope="module")
def digits():
    """A sharpened tiny Llama over a 16-token vocabulary (digits, space, newline + 4 specials)."""
    tok = build_char_tokenizer(list("0123456789 \n"))
    return sharpen(build_tiny_model(len(tok), seed=4, tokenizer=tok)), tok


def direct_logp(model, context: list[int], suffix_ids: list[int], answer_ids: list[int]) -> float:
    """log p(answer | context + suffix) from one plain unpadded forward pass."""
    ids = torch.tensor([context + suffix_ids + answer_ids])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
    first = len(context) + len(suffix_ids)
    return sum(float(logp[first + i - 1, t]) for i, t in enumerate(answer_ids))


# --------------------------------------------------------------------------- likelihood progress

@pytest.mark.parametrize("mode", ["one_pass", "cached"])
@pytest.mark.parametrize("which", ["tiny", "sharp"])
def test_packed_modes_agree_with_naive(mode, which, tiny, sharp):
    model, tok = tiny if which == "tiny" else sharp
    traces = varied_traces(tok)
    packed = LikelihoodProgress(mode=mode, batch_size=3).log_likelihoods(traces, model, tok, P)
    naive = LikelihoodProgress(mode="naive", batch_size=5).log_likelihoods(traces, model, tok, P)
    assert [len(x) for x in packed] == [n + 1 for n in range(1, 9)]
    for a, b in zip(packed, naive):
        assert a == pytest.approx(b, abs=1e-4)
    # the values are not all alike: a wrong mask or position would show
    assert max(abs(x - y) for ls in packed for x, y in zip(ls, ls[1:])) > 1e-2


@pytest.mark.parametrize("mode", ["one_pass", "cached", "naive"])
def test_empty_suffix_scores_from_the_prefix(mode, sharp):
    """Without a suffix the first answer token is predicted by the last prefix token."""
    model, tok = sharp
    trace = make_trace(tok, "Q: 5-2", ["5-2=", "3"], answer="3.")
    values = LikelihoodProgress(mode=mode).log_likelihoods([trace], model, tok, P0)[0]
    answer_ids = tok("3.", add_special_tokens=False)["input_ids"]
    for k, value in zip([0, 4, 5], values):
        expected = direct_logp(model, trace.prompt_ids + trace.completion_ids[:k], [], answer_ids)
        assert value == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("mode", ["one_pass", "cached"])
def test_packed_equals_hand_computation(mode, sharp):
    model, tok = sharp
    trace = make_trace(tok, "Compute 3+4.", ["3+4 is 8. ", "Wait, 3+4=7.", " So 7."], answer="7")
    template = "{answer}</answer>"
    est = LikelihoodProgress(answer_template=template, mode=mode)
    values = est.log_likelihoods([trace], model, tok, P)[0]
    suffix_ids = tok(SUFFIX, add_special_tokens=False)["input_ids"]
    answer_ids = tok("7</answer>", add_special_tokens=False)["input_ids"]
    for k, value in zip([0, 10, 22, 28], values):
        assert value == pytest.approx(direct_logp(model, trace.prompt_ids + trace.completion_ids[:k], suffix_ids,
                                                  answer_ids), abs=1e-4)
    assert trace.meta["logp_init"] == values[0]
    assert [e.info["logp"] for e in trace.episodes] == values[1:]


@pytest.mark.parametrize("mode", ["one_pass", "cached"])
def test_max_length_splits_packs_exactly(mode, sharp):
    model, tok = sharp
    traces = varied_traces(tok)
    full = LikelihoodProgress(mode=mode).log_likelihoods(traces, model, tok, P)
    split = LikelihoodProgress(mode=mode, max_length=90, batch_size=4).log_likelihoods(traces, model, tok, P)
    for a, b in zip(full, split):
        assert a == pytest.approx(b, abs=1e-4)
    with pytest.raises(ValueError, match="max_length"):
        LikelihoodProgress(max_length=20).log_likelihoods(traces, model, tok, P)


def _other_architecture(name: str, vocab: int, sliding_window: int | None = None):
    import transformers as tf

    torch.manual_seed(0)
    if name == "gpt2":  # absolute position embeddings
        model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                                 bos_token_id=1, eos_token_id=2))
    else:  # grouped-query attention; Mistral applies a sliding window when one is set
        model = tf.MistralForCausalLM(tf.MistralConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, sliding_window=sliding_window, bos_token_id=1, eos_token_id=2))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8)
    return model.eval()


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
def test_other_architectures(arch, sharp):
    _, tok = sharp
    model = _other_architecture(arch, len(tok))
    traces = varied_traces(tok)
    naive = LikelihoodProgress(mode="naive").log_likelihoods(traces, model, tok, P)
    for mode in ("one_pass", "cached"):
        packed = LikelihoodProgress(mode=mode, batch_size=3).log_likelihoods(traces, model, tok, P)
        for a, b in zip(packed, naive):
            assert a == pytest.approx(b, abs=1e-4)


def test_sliding_window_refused_for_block_masks(sharp):
    _, tok = sharp
    model = _other_architecture("mistral", len(tok), sliding_window=16)
    traces = varied_traces(tok)[:2]
    for mode in ("one_pass", "cached"):
        with pytest.raises(ValueError, match="sliding window 16"):
            LikelihoodProgress(mode=mode).score_batch(traces, model, tok, P)
    assert len(LikelihoodProgress(mode="naive").score_batch(traces, model, tok, P)[1]) == 2


def test_scales_and_telescoping(sharp):
    model, tok = sharp
    traces = varied_traces(tok)[2:6]
    log_d = LikelihoodProgress(scale="log").score_batch(traces, model, tok, P)
    logp = [[t.meta["logp_init"]] + [e.info["logp"] for e in t.episodes] for t in traces]
    prob_d = LikelihoodProgress(scale="prob").score_batch(traces, model, tok, P)
    for d_log, d_prob, ls, t in zip(log_d, prob_d, logp, traces):
        assert len(d_log) == len(t.episodes)
        assert d_log == pytest.approx([b - a for a, b in zip(ls, ls[1:])], abs=1e-12)
        assert d_prob == pytest.approx([math.exp(b) - math.exp(a) for a, b in zip(ls, ls[1:])], abs=1e-12)
        assert sum(d_log) == pytest.approx(ls[-1] - ls[0], abs=1e-9)
        assert sum(d_prob) == pytest.approx(math.exp(ls[-1]) - math.exp(ls[0]), abs=1e-9)


@pytest.mark.parametrize("mode", ["one_pass", "cached", "naive"])
def test_likelihood_batching_invariance_and_eager(mode, sharp):
    model, tok = sharp
    traces = varied_traces(tok)
    ref = LikelihoodProgress(mode=mode, batch_size=64).log_likelihoods(traces, model, tok, P)
    one = LikelihoodProgress(mode=mode, batch_size=1).log_likelihoods(traces, model, tok, P)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert eager.config._attn_implementation == "eager"
    via_eager = LikelihoodProgress(mode=mode, batch_size=3).log_likelihoods(traces, eager, tok, P)
    for a, b, c in zip(ref, one, via_eager):
        assert a == pytest.approx(b, abs=1e-5)
        assert a == pytest.approx(c, abs=1e-4)


def test_char_span_fallback_and_empty_completion(sharp):
    model, tok = sharp
    with_ids = make_trace(tok, "Q: 2*3?", ["2*3", " = 6", "\nanswer 6"], "6")
    without = make_trace(tok, "Q: 2*3?", ["2*3", " = 6", "\nanswer 6"], "6", with_ids=False)
    with_ids.prompt_ids = tok("Q: 2*3?")["input_ids"]
    tt = trace_tokens(without, tok)
    assert tt.ends == [3, 7, 16] and tt.prompt_ids == with_ids.prompt_ids
    assert tt.completion_ids == with_ids.completion_ids
    est = LikelihoodProgress()
    (a,), (b,) = est.score_batch([without], model, tok, P), est.score_batch([with_ids], model, tok, P)
    assert a == pytest.approx(b, abs=1e-6)
    empty = make_trace(tok, "Q: 2*3?", [""], "6")
    (delta,) = est.score_batch([empty], model, tok, P)
    assert delta == pytest.approx([0.0], abs=1e-5)


def test_model_mode_and_grad_restored(tiny):
    model, tok = tiny
    trace = make_trace(tok, "Q", ["ab", "cd"], "1")
    model.train()
    try:
        LikelihoodProgress().score_batch([trace], model, tok, P)
        MCProgress(m=2, seed=0).score_batch([trace], engine(model, tok, suffix=SUFFIX, answer_tokens=2),
                                            lambda p, a, q: True)
        assert model.training
    finally:
        model.eval()
    assert all(p.grad is None for p in model.parameters())


def test_bad_input_errors(tiny):
    model, tok = tiny
    est = LikelihoodProgress()
    with pytest.raises(ValueError, match="no episodes"):
        est.score_batch([Trace("q", "abc", answer="1")], model, tok, P)
    with pytest.raises(ValueError, match="trace 1: trace.answer is None"):
        est.score_batch([make_trace(tok, "q", ["a"], "1"), make_trace(tok, "q", ["a"], None)], model, tok, P)
    bad = make_trace(tok, "q", ["ab", "c"], "1")
    bad.episodes[0].token_end = 1
    with pytest.raises(ValueError, match="token span"):
        est.score_batch([bad], model, tok, P)
    with pytest.raises(ValueError, match="scale"):
        LikelihoodProgress(scale="linear")
    with pytest.raises(ValueError, match="mode"):
        LikelihoodProgress(mode="fast")
    with pytest.raises(ValueError, match="answer_template"):
        LikelihoodProgress(answer_template="{solution}")
    with pytest.raises(ValueError, match="grader"):
        MCProgress().score_batch([make_trace(tok, "q", ["a"], "1")], engine(model, tok), None)
    with pytest.raises(ValueError, match="temperature"):
        ProverConfig(temperature=0)
    with pytest.raises(ValueError, match="m=0"):
        MCProgress(m=0)


def test_attention_implementation_switch():
    """Implementations that ignore 4-D masks are switched to sdpa for the call, or refused clearly."""
    from types import SimpleNamespace

    from metarl.rewards.progress import block_mask_attention

    class Switchable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(_attn_implementation="flash_attention_2")
            self.seen: list[str] = []

        def set_attn_implementation(self, impl: str) -> None:
            self.seen.append(impl)
            self.config._attn_implementation = impl

    model = Switchable()
    with block_mask_attention(model):
        assert model.config._attn_implementation == "sdpa"
    assert model.seen == ["sdpa", "flash_attention_2"]
    fixed = torch.nn.Module()
    fixed.config = SimpleNamespace(_attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="mode='naive'"):
        with block_mask_attention(fixed):
            pass


def test_nothing_to_condition_on(sharp):
    model, tok = sharp
    trace = make_trace(tok, "", ["ab"], "1")
    trace.prompt_ids = []
    for mode in ("one_pass", "naive"):
        with pytest.raises(ValueError, match="nothing to predict"):
            LikelihoodProgress(mode=mode).score_batch([trace], model, tok, P0)
    with pytest.raises(ValueError, match="nothing to condition on"):
        engine(model, tok, suffix="").branch([[]], [[(0, False)]], 1)


# --------------------------------------------------------------------------- meta-prover and MC progress

def test_suffix_constant():
    assert R1_TERMINATION_SUFFIX.startswith("Time is up.\n\nGiven the time I've spent")
    assert R1_TERMINATION_SUFFIX.endswith("</think>\n\n**Step-by-Step Explanation and Answer:**\n\n1. **")


def test_warp_logits_matches_hf_warpers():
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    logits = torch.randn(3, 17, generator=torch.Generator().manual_seed(0)) * 3
    for temperature, top_p in [(0.7, 1.0), (1.3, 0.8), (0.5, 0.3)]:
        hf = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits.clone()))
        assert torch.allclose(warp_logits(logits, temperature, top_p).float(), hf.softmax(-1), atol=1e-6)


def test_sampler_matches_exact_distribution(digits):
    """μ's sampler draws from softmax(logits / T) with nucleus top_p, whatever the model's defaults say."""
    model, tok = digits
    model = copy.deepcopy(model)
    model.generation_config.top_k = 3  # must be overridden: μ's distribution is fixed by its own arguments
    model.generation_config.repetition_penalty = 1.3
    context = tok("12 7", add_special_tokens=False)["input_ids"]
    for temperature, top_p in [(0.7, 1.0), (1.0, 0.9)]:
        eng = engine(model, tok, suffix=" ", answer_tokens=1, temperature=temperature, top_p=top_p, batch_size=1000)
        exact = answer_distribution(model, tok, context, eng.prover)
        assert sum(exact.values()) == pytest.approx(1.0, abs=1e-9)
        assert max(exact.values()) > 0.3 and len(exact) >= 3  # a peaked, non-trivial distribution
        ((samples,),) = eng.branch([context], [[(len(context), False)]], 3000, seed=1)
        texts = sorted(exact)
        observed = [samples.count(t) for t in texts]
        assert sum(observed) == len(samples)  # nothing outside the support
        expected = [exact[t] * len(samples) for t in texts]
        assert chisquare(observed, expected).pvalue > 1e-3


def grader_low_digit(prediction: str, answer: str, prompt: str) -> bool:
    """Correct when the prediction starts with a digit <= the gold answer digit."""
    return prediction[:1].isdigit() and int(prediction[0]) <= int(answer)


def test_mc_progress_within_standard_error_of_exact(digits):
    model, tok = digits
    traces = [make_trace(tok, "3 1 4", ["1 5 9", " 2 6", "5\n3 5", " 8"], "4"),
              make_trace(tok, "27 18", ["2", "8 4 5 9", "0"], "6")]
    m = 256
    eng = engine(model, tok, suffix=" ", answer_tokens=2, temperature=0.7)
    est = MCProgress(m=m, extract="raw", seed=5)
    rates = est.success_rates(traces, eng, grader_low_digit)
    checked = 0
    for trace, js in zip(traces, rates):
        tt = trace_tokens(trace, tok)
        for k, j_hat in zip(tt.prefix_lengths(), js):
            exact = success_probability(
                model, tok, tt.context(k), eng.prover,
                lambda text: (p := extract_raw(text)) is not None and grader_low_digit(p, trace.answer, trace.prompt))
            se = math.sqrt(exact * (1 - exact) / m)
            assert abs(j_hat - exact) <= 3 * se + 1e-9, (k, j_hat, exact)
            checked += 0.2 < exact < 0.8
    assert checked >= 6  # most prefixes have a non-degenerate success probability
    # side outputs and ΔI
    for trace, js in zip(traces, rates):
        assert trace.meta["J_init"] == js[0]
        assert [e.info["J"] for e in trace.episodes] == js[1:]
        for e in trace.episodes:
            assert e.info["J_se"] == pytest.approx(math.sqrt(e.info["J"] * (1 - e.info["J"]) / m))
    deltas = MCProgress(m=m, extract="raw", seed=5).score_batch(traces, eng, grader_low_digit)
    assert deltas == [[b - a for a, b in zip(js, js[1:])] for js in rates]  # same seed, same draw


def test_mc_determinism_and_shared_prefixes(digits):
    model, tok = digits
    traces = [make_trace(tok, "5 5", ["1 2", "3"], "5"), make_trace(tok, "5 5", ["9 9 9"], "5")]
    eng = engine(model, tok, suffix=" ", answer_tokens=2)
    a = MCProgress(m=16, extract="raw", seed=0)
    b = MCProgress(m=16, extract="raw", seed=0)
    first = a.success_rates(traces, eng, grader_low_digit)
    assert first == b.success_rates(traces, eng, grader_low_digit)
    assert first[0][0] == first[1][0]  # the shared prompt is sampled once
    assert 0 < first[0][0] < 1
    assert a.success_rates(traces, eng, grader_low_digit) != first  # next call, next seed


def test_extract_from_scorer_context(digits):
    """extract='context' grades the scorer's extractor applied to suffix + forced answer text."""
    model, tok = digits
    traces = [make_trace(tok, "3 1 4", ["1 5", " 9"], "4")]
    seen: list[str] = []

    def scorer_extract(completion: str) -> str | None:
        seen.append(completion)
        return extract_raw(completion[len("1 "):])

    eng = engine(model, tok, suffix="1 ", answer_tokens=2)
    ctx = MCProgress(m=32, extract="context", seed=9)
    raw = MCProgress(m=32, extract="raw", seed=9)
    got = ctx.success_rates(traces, eng, grader_low_digit, extract_answer=scorer_extract)
    assert got == raw.success_rates(traces, eng, grader_low_digit)
    assert seen and all(text.startswith("1 ") for text in seen)
    with pytest.raises(ValueError, match="extract_answer"):
        ctx.score_batch(traces, eng, grader_low_digit)


def test_answer_distribution_respects_stop_strings(digits):
    model, tok = digits
    eng = engine(model, tok, suffix=" ", answer_tokens=3, answer_stop=["\n", "0"])
    context = tok("1 2", add_special_tokens=False)["input_ids"]
    ((samples,),) = eng.branch([context], [[(len(context), False)]], 40, seed=0)
    exact = answer_distribution(model, tok, context, eng.prover)
    assert not any("\n" in t or "0" in t for t in [*samples, *exact])
    assert set(samples) <= set(exact)


def test_extractors():
    assert extract_boxed(r"so \boxed{\frac{1}{2}} and \boxed{ 3 }") == "3"
    assert extract_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{unclosed") is None
    assert extract_raw("  42 \nmore") == "42" and extract_raw("\n") is None
    assert extract_auto(" 17</answer> junk") == "17"
    assert extract_auto(r"x \boxed{5}") == "5"
    assert extract_auto("9 apples\n") == "9 apples"


@pytest.mark.parametrize("mode", ["one_pass", "cached", "naive"])
def test_last_prefix_ends_before_a_trailing_eos(mode, sharp, monkeypatch):
    """μ answers after the text, not after the EOS that ended it: a trailing EOS changes no L_j."""
    import metarl.rewards.progress as progress

    model, tok = sharp
    plain = make_trace(tok, "Q: 12+5?", ["A: 12", "+5 is", " 17"], "17")
    ended = make_trace(tok, "Q: 12+5?", ["A: 12", "+5 is", " 17"], "17")
    ended.completion_ids = ended.completion_ids + [tok.eos_token_id]
    ended.episodes[-1].token_end += 1  # the EOS belongs to the last episode (as segment() assigns it)
    est = LikelihoodProgress(mode=mode)
    with_eos, without = est.log_likelihoods([ended, plain], model, tok, P)
    assert with_eos == pytest.approx(without, abs=1e-5)
    # answering after the EOS (what the last prefix was before) is a different context with another value
    monkeypatch.setattr(progress, "_before_stop_tokens", lambda ends, ids, tokenizer: ends)
    after_eos = est.log_likelihoods([ended], model, tok, P)[0]
    assert after_eos[:-1] == pytest.approx(without[:-1], abs=1e-5)
    assert abs(after_eos[-1] - without[-1]) > 1e-3
