"""math-verify equality, in-process or as a worker process speaking JSON lines.

Imported, :func:`mv_equal` is the one call both paths make. Run as a script
(``python mathworker.py [memory_limit_bytes]``), it is the killable worker of
:mod:`metarl.grading.math_grader`: it caps its address space, imports math-verify, prints
``{"ready": true}``, then answers one request per line::

    -> {"id": 3, "gold": "\\\\boxed{1/2}", "pred": "\\\\boxed{0.5}", "opts": {...}}
    <- {"id": 3, "ok": true}

Requests and replies are ASCII JSON, so lone surrogates and control characters travel
safely. The worker exits at end of input (e.g. when its parent dies). It imports nothing
from metarl, so it starts in about half a second.
"""
from __future__ import annotations

import sys

if __name__ == "__main__":  # keep this folder's modules from shadowing the standard library
    import os

    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import json  # noqa: E402
import logging  # noqa: E402
from typing import Any  # noqa: E402

DEFAULT_OPTS: dict[str, Any] = {"float_rounding": 6, "numeric_precision": 15, "strict": True}


class _NoTimeoutWarning(logging.Filter):
    """math-verify warns once when its signal-based timeouts are off; ours replace them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


def _quiet_math_verify() -> None:
    for name in ("math_verify.grader", "math_verify.parser", "math_verify"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTimeoutWarning) for f in logger.filters):
            logger.addFilter(_NoTimeoutWarning())


def mv_equal(gold: str, pred: str, opts: dict[str, Any] | None = None) -> bool:
    """``math_verify.verify(parse(gold), parse(pred))`` with math-verify's own (signal-based,
    main-thread-only) timeouts switched off: the caller bounds the time."""
    from math_verify import parse, verify

    _quiet_math_verify()
    o = {**DEFAULT_OPTS, **(opts or {})}
    gold_parsed = parse(gold, parsing_timeout=None)
    if not gold_parsed:
        return False
    pred_parsed = parse(pred, parsing_timeout=None)
    if not pred_parsed:
        return False
    return bool(
        verify(
            gold_parsed,
            pred_parsed,
            float_rounding=int(o["float_rounding"]),
            numeric_precision=int(o["numeric_precision"]),
            strict=bool(o["strict"]),
            timeout_seconds=None,
        )
    )


def _serve(memory_limit: int) -> None:
    if memory_limit > 0:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        except (ImportError, ValueError, OSError):
            pass
    logging.disable(logging.CRITICAL)
    import math_verify  # noqa: F401  (import before announcing readiness)

    mv_equal("$1$", "$1$")  # warm the parser
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for raw in sys.stdin.buffer:
        try:
            req = json.loads(raw)
        except ValueError:
            continue
        reply: dict[str, Any] = {"id": req.get("id")}
        try:
            reply["ok"] = mv_equal(str(req["gold"]), str(req["pred"]), req.get("opts"))
        except Exception as e:  # noqa: BLE001 - MemoryError, RecursionError: answer, keep serving
            reply["ok"] = False
            reply["error"] = type(e).__name__
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
