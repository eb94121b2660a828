"""Test-wide settings: one intra-op thread (tiny models run ~100x faster than with 2 on CPU)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny():
    """A random tiny Llama (hidden 32, 2 layers) and the character tokenizer."""
    from metarl.models.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer()
    model.eval()
    return model, tok
