"""Analysis of metarl run outputs: training curves, information-gain curves, regret, compute–accuracy.

Reads what ``metarl-train`` / ``metarl-score`` / ``metarl-eval`` write (``metrics.jsonl``, trace JSONL,
``eval/results.jsonl``, ``config.yaml``) and never imports training internals; the numbers come
from ``metarl.metrics``. The one command is ``python -m analysis.report RUN_DIR ... --out DIR``.
"""
