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

from metarl.models.tiny import build_char_tokenizer, build_tiny_model
from metarl.prover import (
    R1_TERMINATION_SUFFIX,
    MetaProver,
    StopOnStrings,
    extract_auto,
    extract_boxed,
    extract_raw,
    warp_logits,
)
from metarl.rewards.progress import LikelihoodProgress, MCProgress, trace_tokens
from metarl.types import Episode, Trace

SUFFIX = "\nTime is up.\n<answer>"


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


def sharpen(model, scale: float = 10.0):
    """Scale embeddings and projections so next-token distributions are far from uniform."""
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(scale)
        for name, p in model.named_parameters():
            if "proj" in name:
                p.mul_(scale / 2)
    return model.eval()


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
    packed = LikelihoodProgress(suffix=SUFFIX, mode=mode, batch_size=3).log_likelihoods(traces, model, tok)
    naive = LikelihoodProgress(suffix=SUFFIX, mode="naive", batch_size=5).log_likelihoods(traces, model, tok)
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
    values = LikelihoodProgress(suffix="", mode=mode).log_likelihoods([trace], model, tok)[0]
    answer_ids = tok("3.", add_special_tokens=False)["input_ids"]
    for k, value in zip([0, 4, 5], values):
        expected = direct_logp(model, trace.prompt_ids + trace.completion_ids[:k], [], answer_ids)
        assert value == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("mode", ["one_pass", "cached"])
def test_packed_equals_hand_computation(mode, sharp):
    model, tok = sharp
    trace = make_trace(tok, "Compute 3+4.", ["3+4 is 8. ", "Wait, 3+4=7.", " So 7."], answer="7")
    template = "{answer}</answer>"
    est = LikelihoodProgress(suffix=SUFFIX, answer_template=template, mode=mode)
    values = est.log_likelihoods([trace], model, tok)[0]
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
    full = LikelihoodProgress(suffix=SUFFIX, mode=mode).log_likelihoods(traces, model, tok)
    split = LikelihoodProgress(suffix=SUFFIX, mode=mode, max_length=90, batch_size=4).log_likelihoods(
        traces, model, tok)
    for a, b in zip(full, split):
        assert a == pytest.approx(b, abs=1e-4)
    with pytest.raises(ValueError, match="max_length"):
        LikelihoodProgress(suffix=SUFFIX, max_length=20).log_likelihoods(traces, model, tok)


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
    naive = LikelihoodProgress(suffix=SUFFIX, mode="naive").log_likelihoods(traces, model, tok)
    for mode in ("one_pass", "cached"):
        packed = LikelihoodProgress(suffix=SUFFIX, mode=mode, batch_size=3).log_likelihoods(traces, model, tok)
        for a, b in zip(packed, naive):
            assert a == pytest.approx(b, abs=1e-4)


def test_sliding_window_refused_for_block_masks(sharp):
    _, tok = sharp
    model = _other_architecture("mistral", len(tok), sliding_window=16)
    traces = varied_traces(tok)[:2]
    for mode in ("one_pass", "cached"):
        with pytest.raises(ValueError, match="sliding window 16"):
            LikelihoodProgress(suffix=SUFFIX, mode=mode).score_batch(traces, model, tok)
    assert len(LikelihoodProgress(suffix=SUFFIX, mode="naive").score_batch(traces, model, tok)[1]) == 2


def test_scales_and_telescoping(sharp):
    model, tok = sharp
    traces = varied_traces(tok)[2:6]
    log_d = LikelihoodProgress(suffix=SUFFIX, scale="log").score_batch(traces, model, tok)
    logp = [[t.meta["logp_init"]] + [e.info["logp"] for e in t.episodes] for t in traces]
    prob_d = LikelihoodProgress(suffix=SUFFIX, scale="prob").score_batch(traces, model, tok)
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
    ref = LikelihoodProgress(suffix=SUFFIX, mode=mode, batch_size=64).log_likelihoods(traces, model, tok)
    one = LikelihoodProgress(suffix=SUFFIX, mode=mode, batch_size=1).log_likelihoods(traces, model, tok)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert eager.config._attn_implementation == "eager"
    via_eager = LikelihoodProgress(suffix=SUFFIX, mode=mode, batch_size=3).log_likelihoods(traces, eager, tok)
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
    est = LikelihoodProgress(suffix=SUFFIX)
    (a,), (b,) = est.score_batch([without], model, tok), est.score_batch([with_ids], model, tok)
    assert a == pytest.approx(b, abs=1e-6)
    empty = make_trace(tok, "Q: 2*3?", [""], "6")
    (delta,) = est.score_batch([empty], model, tok)
    assert delta == pytest.approx([0.0], abs=1e-5)


def test_model_mode_and_grad_restored(tiny):
    model, tok = tiny
    trace = make_trace(tok, "Q", ["ab", "cd"], "1")
    model.train()
    try:
        LikelihoodProgress(suffix=SUFFIX).score_batch([trace], model, tok)
        MCProgress(suffix=SUFFIX, m=2, max_answer_tokens=2, seed=0).score_batch([trace], model, tok,
                                                                                 lambda p, a, q: True)
        assert model.training
    finally:
        model.eval()
    assert all(p.grad is None for p in model.parameters())


def test_bad_input_errors(tiny):
    model, tok = tiny
    est = LikelihoodProgress(suffix=SUFFIX)
    with pytest.raises(ValueError, match="no episodes"):
        est.score_batch([Trace("q", "abc", answer="1")], model, tok)
    with pytest.raises(ValueError, match="trace 1: trace.answer is None"):
        est.score_batch([make_trace(tok, "q", ["a"], "1"), make_trace(tok, "q", ["a"], None)], model, tok)
    bad = make_trace(tok, "q", ["ab", "c"], "1")
    bad.episodes[0].token_end = 1
    with pytest.raises(ValueError, match="token span"):
        est.score_batch([bad], model, tok)
    with pytest.raises(ValueError, match="scale"):
        LikelihoodProgress(scale="linear")
    with pytest.raises(ValueError, match="mode"):
        LikelihoodProgress(mode="fast")
    with pytest.raises(ValueError, match="answer_template"):
        LikelihoodProgress(answer_template="{solution}")
    with pytest.raises(ValueError, match="grader"):
        MCProgress(suffix=SUFFIX).score_batch([make_trace(tok, "q", ["a"], "1")], model, tok, None)
    with pytest.raises(ValueError, match="temperature"):
        MetaProver(temperature=0)


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
            LikelihoodProgress(suffix="", mode=mode).score_batch([trace], model, tok)
    with pytest.raises(ValueError, match="nothing to condition on"):
        MetaProver(suffix="").force(model, tok, [[]])


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
        prover = MetaProver(suffix=" ", m=3000, temperature=temperature, top_p=top_p, max_answer_tokens=1,
                            batch_size=1000)
        exact = prover.answer_distribution(model, tok, context)
        assert sum(exact.values()) == pytest.approx(1.0, abs=1e-9)
        assert max(exact.values()) > 0.3 and len(exact) >= 3  # a peaked, non-trivial distribution
        (samples,) = prover.sample(model, tok, [context], seed=1)
        texts = sorted(exact)
        observed = [samples.count(t) for t in texts]
        assert sum(observed) == len(samples)  # nothing outside the support
        expected = [exact[t] * len(samples) for t in texts]
        assert chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("batch_size", [3, 8])  # 8: two sequences share a (left-padded) prefill
def test_prefix_sharing_matches_explicit_contexts(batch_size, sharp, monkeypatch):
    """One prefill per sequence, its KV cache masked per prefix: same greedy answers as fresh contexts."""
    model, tok = sharp
    sequences = [tok(s)["input_ids"] for s in ["Q: 12+5? A: 12+5 is 17 ok", "short one", "mid length text"]]
    lengths = [[0, 3, 10, 25], [9, 2], []]
    prover = MetaProver(suffix=" ", max_answer_tokens=6, batch_size=batch_size)
    explicit = prover.force(model, tok, [seq[:k] for seq, ks in zip(sequences, lengths) for k in ks])
    assert len(set(explicit)) >= 4  # answers that tell prefixes apart

    def no_fallback(*args, **kwargs):
        raise AssertionError("the shared-cache path fell back to one prefill per prefix")

    with monkeypatch.context() as patch:
        patch.setattr(MetaProver, "_generate", no_fallback)
        shared = prover.force_prefixes(model, tok, sequences, lengths)
    assert [a for per_trace in shared for a in per_trace] == explicit
    assert shared[2] == []
    no_suffix = MetaProver(suffix="", max_answer_tokens=4)  # nothing uncached to feed generate: fallback path
    assert no_suffix.force_prefixes(model, tok, sequences[:1], [[3, 10]]) == [
        no_suffix.force(model, tok, [sequences[0][:3], sequences[0][:10]])]
    with pytest.raises(ValueError, match="prefix lengths"):
        prover.force_prefixes(model, tok, sequences[:1], [[30]])


def test_prefix_sharing_sampler_matches_exact_distribution(digits):
    model, tok = digits
    sequences = [tok(s, add_special_tokens=False)["input_ids"] for s in ["3 1 4 1 5 9 2 6", "27"]]
    m = 600  # both sequences in one left-padded prefill and one generate batch
    prover = MetaProver(suffix=" ", m=m, temperature=0.7, max_answer_tokens=1, batch_size=3 * m)
    (first, second), (third,) = prover.sample_prefixes(model, tok, sequences, [[4, 11], [2]], seed=2)
    for samples, context in [(first, sequences[0][:4]), (second, sequences[0][:11]), (third, sequences[1])]:
        exact = prover.answer_distribution(model, tok, context)
        texts = sorted(exact)
        observed = [samples.count(t) for t in texts]
        assert sum(observed) == len(samples) == m
        assert chisquare(observed, [exact[t] * len(samples) for t in texts]).pvalue > 1e-3


def grader_low_digit(prediction: str, answer: str, prompt: str) -> bool:
    """Correct when the prediction starts with a digit <= the gold answer digit."""
    return prediction[:1].isdigit() and int(prediction[0]) <= int(answer)


def test_mc_progress_within_standard_error_of_exact(digits):
    model, tok = digits
    traces = [make_trace(tok, "3 1 4", ["1 5 9", " 2 6", "5\n3 5", " 8"], "4"),
              make_trace(tok, "27 18", ["2", "8 4 5 9", "0"], "6")]
    m = 256
    est = MCProgress(suffix=" ", m=m, temperature=0.7, max_answer_tokens=2, extract="raw", seed=5)
    rates = est.success_rates(traces, model, tok, grader_low_digit)
    prover = est.prover
    checked = 0
    for trace, js in zip(traces, rates):
        tt = trace_tokens(trace, tok)
        for k, j_hat in zip(tt.prefix_lengths(), js):
            exact = prover.success_probability(
                model, tok, tt.context(k),
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
    deltas = MCProgress(suffix=" ", m=m, max_answer_tokens=2, extract="raw", seed=5).score_batch(
        traces, model, tok, grader_low_digit)
    assert deltas == [[b - a for a, b in zip(js, js[1:])] for js in rates]  # same seed, same draw


def test_mc_determinism_and_shared_prefixes(digits):
    model, tok = digits
    traces = [make_trace(tok, "5 5", ["1 2", "3"], "5"), make_trace(tok, "5 5", ["9 9 9"], "5")]
    a = MCProgress(suffix=" ", m=16, max_answer_tokens=2, extract="raw", seed=0)
    b = MCProgress(suffix=" ", m=16, max_answer_tokens=2, extract="raw", seed=0)
    first = a.success_rates(traces, model, tok, grader_low_digit)
    assert first == b.success_rates(traces, model, tok, grader_low_digit)
    assert first[0][0] == first[1][0]  # the shared prompt is sampled once
    assert 0 < first[0][0] < 1
    assert a.success_rates(traces, model, tok, grader_low_digit) != first  # next call, next seed
    prover = MetaProver(suffix=" ", m=16, max_answer_tokens=2)
    ctx = [tok("5 5")["input_ids"], tok("1")["input_ids"]]
    assert prover.sample(model, tok, ctx, seed=3) == prover.sample(model, tok, ctx, seed=3)
    assert prover.sample(model, tok, ctx, seed=3) != prover.sample(model, tok, ctx, seed=4)


def test_extract_from_scorer_context(digits):
    """extract='context' grades the scorer's extractor applied to suffix + forced answer text."""
    model, tok = digits
    traces = [make_trace(tok, "3 1 4", ["1 5", " 9"], "4")]
    seen: list[str] = []

    def scorer_extract(completion: str) -> str | None:
        seen.append(completion)
        return extract_raw(completion[len("1 "):])

    ctx = MCProgress(suffix="1 ", m=32, max_answer_tokens=2, extract="context", seed=9)
    raw = MCProgress(suffix="1 ", m=32, max_answer_tokens=2, extract="raw", seed=9)
    got = ctx.success_rates(traces, model, tok, grader_low_digit, extract_answer=scorer_extract)
    assert got == raw.success_rates(traces, model, tok, grader_low_digit)
    assert seen and all(text.startswith("1 ") for text in seen)
    with pytest.raises(ValueError, match="extract_answer"):
        ctx.score_batch(traces, model, tok, grader_low_digit)


def test_force_is_greedy_and_batch_invariant(sharp):
    model, tok = sharp
    contexts = [tok(p)["input_ids"] for p in ["Q: 1+1", "abc", "A much longer prompt to pad against", "z"]]
    big = MetaProver(suffix=SUFFIX, max_answer_tokens=6, batch_size=64).force(model, tok, contexts)
    small = MetaProver(suffix=SUFFIX, max_answer_tokens=6, batch_size=1).force(model, tok, contexts)
    assert big == small
    suffix_ids = tok(SUFFIX, add_special_tokens=False)["input_ids"]
    ids = contexts[1] + suffix_ids
    greedy = []
    with torch.no_grad():
        for _ in range(6):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            ids, greedy = ids + [nxt], greedy + [nxt]
    assert big[1] == tok.decode(greedy, skip_special_tokens=True)


def test_stop_strings(digits):
    model, tok = digits
    ids = torch.tensor([tok("7 1\n2", add_special_tokens=False)["input_ids"],
                        tok("7 123", add_special_tokens=False)["input_ids"]])
    assert StopOnStrings(tok, ["\n"], prompt_len=2)(ids, None).tolist() == [True, False]
    assert StopOnStrings(tok, ["\n"], prompt_len=4)(ids, None).tolist() == [False, False]  # only generated text
    prover = MetaProver(suffix=" ", m=40, max_answer_tokens=3, stop_strings=["\n", "0"])
    (samples,) = prover.sample(model, tok, [tok("1 2", add_special_tokens=False)["input_ids"]], seed=0)
    exact = prover.answer_distribution(model, tok, tok("1 2")["input_ids"])
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
    est = LikelihoodProgress(suffix=SUFFIX, mode=mode)
    with_eos, without = est.log_likelihoods([ended, plain], model, tok)
    assert with_eos == pytest.approx(without, abs=1e-5)
    # answering after the EOS (what the last prefix was before) is a different context with another value
    monkeypatch.setattr(progress, "_before_stop_tokens", lambda ends, ids, tokenizer: ends)
    after_eos = est.log_likelihoods([ended], model, tok)[0]
    assert after_eos[:-1] == pytest.approx(without[:-1], abs=1e-5)
    assert abs(after_eos[-1] - without[-1]) > 1e-3
