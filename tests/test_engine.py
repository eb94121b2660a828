"""The generation engine: the backend contract on transformers, branches, and the stream rules (the cap,
episodes, feedback, continuations, forced answers) shared by training, held-out evaluation and metarl-eval."""
from __future__ import annotations

import copy

import pytest
import torch
from scipy.stats import chisquare

from metarl.engine import GREEDY, Engine, Prefix, Request, Sampling, StreamSpec, prompt_ids_for
from metarl.engine.hf import HFBackend
from metarl.eval.heldout import evaluate_policy
from metarl.eval.sampling import PARALLEL, Generation, PolicySampler
from metarl.models.tiny import build_char_tokenizer, build_tiny_model, sharpen
from metarl.prover import ProverConfig, answer_distribution
from metarl.scoring import Scorer
from metarl.segmenters import TokenChunkSegmenter
from metarl.trainer.rollout import Rollout
from tests.scripted import ScriptedBackend

TAGS = ProverConfig(suffix="<answer>", answer_tokens=4, answer_stop=("</answer>",))


@pytest.fixture(scope="module")
def eosy(tiny):
    """The tiny random model with a heavy end-of-sequence logit: streams of any length end on their own."""
    model, tok = tiny
    model = copy.deepcopy(model)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tok.eos_token_id] = 3.0
    model.lm_head = head
    return model.eval(), tok


def ids_of(tok, text: str) -> tuple[int, ...]:
    return tuple(tok(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------- the transformers backend

def test_hf_backend_keeps_the_contract(eosy):
    model, tok = eosy
    be = HFBackend(model, tok, batch_size=4)
    eos = tok.eos_token_id
    reqs = [Request(ids_of(tok, f"Q{i}: {i}+{i}="), max_tokens=3 + 4 * i, n=3, stop=tuple("abcdefghijklm") if i % 2 else ())
            for i in range(5)]
    out = be.generate(reqs, Sampling(1.0), seed=0)
    seen_eos = seen_stop = 0
    for r, conts in zip(reqs, out):
        assert len(conts) == r.n
        for toks in conts:
            assert 1 <= len(toks) <= r.max_tokens
            assert eos not in toks[:-1]  # nothing after an EOS
            text = tok.decode(toks, skip_special_tokens=True)
            before = tok.decode(toks[:-1], skip_special_tokens=True)
            assert not any(s in before for s in r.stop)  # nothing after the token completing a stop string
            seen_eos += toks[-1] == eos
            seen_stop += any(s in text for s in r.stop)
    assert seen_eos >= 3 and seen_stop >= 2  # both endings happen in this batch
    assert be.generate(reqs, Sampling(1.0), seed=0) == out  # seeded: reproducible
    state = torch.get_rng_state()
    be.generate(reqs[:1], Sampling(1.0), seed=5)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is untouched
    assert be.generate([Request(ids_of(tok, "x"), 0)], GREEDY) == [[[]]]


def test_stop_string_padding_is_not_kept_when_pad_is_eos(tiny):
    """A stream finished by a stop string is followed by padding; with pad == EOS it must not read as EOS."""
    model, tok = tiny
    contexts = [ids_of(tok, "Q1: 1+1="), ids_of(tok, "Q7: 3+4=")]
    free = [tok.decode(c[0]) for c in HFBackend(model, tok).generate([Request(c, 16) for c in contexts],
                                                                      Sampling(1.0), seed=5)]
    # a two-character stop string that ends stream 0 early and never occurs in stream 1 (which keeps going)
    stop = next(free[0][i:i + 2] for i in range(1, 10)
                if free[0].find(free[0][i:i + 2]) == i and free[0][i:i + 2] not in free[1])
    reqs = [Request(c, 16, 1, (stop,)) for c in contexts]
    own_pad = HFBackend(model, tok).generate(reqs, Sampling(1.0), seed=5)
    assert tok.decode(own_pad[0][0]).endswith(stop) and tok.eos_token_id not in own_pad[0][0]
    pad_is_eos = copy.deepcopy(tok)
    pad_is_eos.pad_token = pad_is_eos.eos_token
    assert HFBackend(model, pad_is_eos).generate(reqs, Sampling(1.0), seed=5) == own_pad


@pytest.fixture(scope="module")
def sharp():
    """A random tiny Llama over the full character vocabulary, sharpened (answers that tell prefixes apart)."""
    tok = build_char_tokenizer()
    return sharpen(build_tiny_model(len(tok), seed=3, tokenizer=tok)), tok


@pytest.mark.parametrize("batch_size", [3, 8])  # 8: two sequences share a (left-padded) prefill
def test_branch_shares_the_prefill_and_matches_explicit_contexts(batch_size, sharp, monkeypatch):
    """One prefill per sequence, its KV cache masked per prefix: the same greedy answers as fresh contexts,
    each prefix with its own suffix (intermediate or final)."""
    model, tok = sharp
    be = HFBackend(model, tok, batch_size)
    sequences = [tok(s)["input_ids"] for s in ["Q: 12+5? A: 12+5 is 17 ok", "short one", "mid length text"]]
    mid, end = ids_of(tok, " "), ids_of(tok, "\n</think>")
    prefixes = [[Prefix(0, mid), Prefix(3, mid), Prefix(10, end), Prefix(25, mid)], [Prefix(9, end), Prefix(2, mid)], []]
    explicit = be.generate([Request(tuple(seq[:p.length]) + p.suffix, 6) for seq, ps in zip(sequences, prefixes)
                            for p in ps], GREEDY)
    assert len({tuple(c[0]) for c in explicit}) >= 4  # answers that tell prefixes apart

    def no_fallback(*args, **kwargs):
        raise AssertionError("the shared-cache path fell back to one prefill per prefix")

    with monkeypatch.context() as patch:
        patch.setattr(HFBackend, "generate", no_fallback)
        shared = be.branch(sequences, prefixes, 1, 6, (), GREEDY)
    assert [c for per_seq in shared for c in per_seq] == explicit
    assert shared[2] == []
    empty = be.branch(sequences[:1], [[Prefix(3), Prefix(10)]], 1, 4, (), GREEDY)  # no suffix: explicit contexts
    assert empty == [be.generate([Request(tuple(sequences[0][:3]), 4), Request(tuple(sequences[0][:10]), 4)], GREEDY)]
    with pytest.raises(ValueError, match="prefix lengths"):
        be.branch(sequences[:1], [[Prefix(30, mid)]], 1, 4, (), GREEDY)


def test_branch_sampler_matches_exact_distribution():
    tok = build_char_tokenizer(list("0123456789 \n"))
    model = build_tiny_model(len(tok), seed=4, tokenizer=tok)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(10)  # embeddings only: a distribution with many likely answers
    model.eval()
    prover = ProverConfig(suffix=" ", answer_tokens=1, answer_stop=(), temperature=0.7)
    sequences = [list(ids_of(tok, s)) for s in ["3 1 4 1 5 9 2 6", "27"]]
    m = 600  # both sequences in one left-padded prefill and one generate batch
    engine = Engine(HFBackend(model, tok, batch_size=3 * m), prover)
    (first, second), (third,) = engine.branch(sequences, [[(4, False), (11, False)], [(2, False)]], m, seed=2)
    for samples, context in [(first, sequences[0][:4]), (second, sequences[0][:11]), (third, sequences[1])]:
        exact = answer_distribution(model, tok, context, prover)
        texts = sorted(exact)
        observed = [samples.count(t) for t in texts]
        assert sum(observed) == len(samples) == m
        assert chisquare(observed, [exact[t] * m for t in texts]).pvalue > 1e-3


def test_greedy_is_batch_invariant_and_the_argmax(sharp):
    model, tok = sharp
    contexts = [tuple(tok(p)["input_ids"]) for p in ["Q: 1+1", "abc", "A much longer prompt to pad against", "z"]]
    big = HFBackend(model, tok, 64).generate([Request(c, 6) for c in contexts], GREEDY)
    small = HFBackend(model, tok, 1).generate([Request(c, 6) for c in contexts], GREEDY)
    assert big == small
    ids, greedy = list(contexts[1]), []
    with torch.no_grad():
        for _ in range(6):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            ids, greedy = ids + [nxt], greedy + [nxt]
            if nxt == tok.eos_token_id:
                break
    assert big[1][0] == greedy


# --------------------------------------------------------------------------- streams (scripted backend)

def count_rule(cue: str):
    """After "<answer>" answer "42</answer>"; otherwise write "a<k>" (k = occurrences of ``cue``) and stop."""
    return lambda ctx: "42</answer>" if ctx.endswith("<answer>") else f"a{ctx.count(cue)}"


@pytest.mark.parametrize("cap, text, thinking, rounds, forced", [
    (20, "a0<r>a1<r>a2", 13, 2, False),             # 2 rounds, the cue tokens count: 3+2+3+2+3 incl. EOS
    (9, "a0<r>a1", 8, 1, False),                    # no room for the second cue and a token after it
    (7, "a0<r>a1<answer>42</answer>", 7, 1, True),  # the cap cuts round 1: answer forced
])
def test_continuations_count_against_the_cap(tiny, cap, text, thinking, rounds, forced):
    _, tok = tiny
    backend = ScriptedBackend(tok, count_rule("<r>"))
    (s,) = Engine(backend, ProverConfig()).run([ids_of(tok, "P:")],
                                               StreamSpec(cap, continuation="<r>", max_continuations=2), GREEDY)
    assert (s.text, s.thinking, s.continuations, s.forced) == (text, thinking, rounds, forced)
    policy = [t for t, k in zip(s.ids, s.mask) if k]
    cue = list(ids_of(tok, "<r>"))
    inserted = [t for t, k in zip(s.ids, s.mask) if not k]
    assert inserted == cue * rounds + (list(ids_of(tok, "<answer>")) if forced else [])
    assert len(policy) + len(cue) * rounds == thinking + (len(s.ids) - thinking - len(ids_of(tok, "<answer>"))
                                                          if forced else 0)


def test_single_streams_cut_at_the_cap_get_a_forced_answer(tiny):
    _, tok = tiny
    backend = ScriptedBackend(tok, lambda ctx: "42</answer>" if ctx.endswith("<answer>") else
                              ("short" if "1" in ctx else "a much longer thought"))
    s_long, s_short = Engine(backend, TAGS).run([ids_of(tok, "P0:"), ids_of(tok, "P1:")], StreamSpec(8), GREEDY)
    assert (s_long.thinking, s_long.forced, s_long.ended) == (8, True, False)
    assert s_long.text == "a much l<answer>42</"  # forced answer bounded by prover.answer_tokens = 4
    assert s_long.mask == [1] * 8 + [0] * len("<answer>") + [1] * 4
    assert (s_short.thinking, s_short.forced, s_short.ended, s_short.text) == (6, False, True, "short")
    assert backend.calls == [2, 1]  # one call for the whole batch, then one for the forced answers


def test_episodes_with_feedback_and_the_episode_limit(tiny):
    _, tok = tiny
    backend = ScriptedBackend(tok, lambda ctx: "42</answer>" if ctx.endswith("<answer>") else "<a>x</a>y", eos=False)
    spec = StreamSpec(cap=40, episode_stop=("</a>",), max_episodes=3, feedback=lambda i, text: f"[{i}]")
    streams = Engine(backend, TAGS).run([ids_of(tok, "P:"), ids_of(tok, "Q:")], spec, GREEDY)
    for i, s in enumerate(streams):
        assert s.text == f"<a>x</a>[{i}]<a>x</a>[{i}]<a>x</a><answer>42</"  # 3 episodes, then a forced answer
        assert s.episodes == 3 and s.forced and not s.ended
        assert s.thinking == 3 * len("<a>x</a>") + 2 * len("[0]")  # feedback counts against C
        assert s.mask[8:11] == [0, 0, 0] and sum(s.mask) == 3 * 8 + 4
    assert backend.calls == [2, 2, 2, 2]  # one call per episode step for the whole batch, then the answers
    # feedback that leaves no room for a policy token cuts the stream (then an answer is forced)
    (cut,) = Engine(backend, TAGS).run([ids_of(tok, "P:")], StreamSpec(cap=10, episode_stop=("</a>",),
                                                                       feedback=lambda i, t: "[fb]"), GREEDY)
    assert cut.text == "<a>x</a><answer>42</" and cut.thinking == 8 and cut.forced


def test_the_same_stream_is_counted_alike_in_training_evaluation_and_metarl_eval(tiny):
    """One rule for the cap: a training rollout, the held-out evaluation and metarl-eval's sampler give the
    same ids, thinking tokens and forced answers for the same stream."""
    _, tok = tiny
    rule = lambda ctx: "42</answer>" if ctx.endswith("<answer>") else ("ok" if "7" in ctx else "x" * 30)  # noqa: E731
    prompts = ["Q7: ", "Q1: "]
    backend = ScriptedBackend(tok, rule)

    ids = [prompt_ids_for(tok, p) for p in prompts]
    train = Rollout(mode="single", cap=12, force_answer=True, prover=TAGS).generate(backend, ids, Sampling(0.0))
    scorer = Scorer(TokenChunkSegmenter(k=4), [], lambda p, a, q="": False, lambda t: t, lambda t: None,
                    tokenizer=tok, prover=TAGS)
    held = evaluate_policy(backend, [{"prompt": p, "answer": "1"} for p in prompts], cap=12, scorer=scorer,
                           return_traces=True)["traces"]
    (e7,), (e1,) = PolicySampler(backend, TAGS, temperature=0.0)(prompts, 12, 1, PARALLEL, seed=0)
    assert [s.thinking for s in train] == [t.thinking_tokens for t in held] == [e7.thinking_tokens,
                                                                                 e1.thinking_tokens] == [3, 12]
    assert [s.forced for s in train] == [t.forced for t in held] == [e7.forced, e1.forced] == [False, True]
    assert [s.ids for s in train] == [t.completion_ids for t in held]
    assert [s.text for s in train] == [t.completion for t in held] == [e7.completion, e1.completion]
    assert e1.tokens == len(train[1].ids) and e1.completion == "x" * 12 + "<answer>42</"
    # budget forcing counts its continuation text the same way in training and in metarl-eval
    bf = Rollout(mode="budget_forcing", cap=12, continuation="W", max_continuations=2, prover=TAGS).generate(
        backend, ids[:1], Sampling(0.0))
    (ev,), = PolicySampler(backend, TAGS, temperature=0.0)(prompts[:1], 12, 1, Generation("bf", "W", 2), seed=0)
    assert [s.thinking for s in bf] == [ev.thinking_tokens] == [len("okWokWok") + 1]
