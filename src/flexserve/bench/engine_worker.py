"""One engine's measurements, run as ``python -m flexserve.bench.engine_worker ENGINE``.

Prints one JSON object on stdout: per prompt length, lists of TTFT (prefill of the prompt plus
choosing the first token), prefill tokens/s and decode tokens/s (greedy steps after the first
token), plus load time and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Protocol


class EngineUnderTest(Protocol):
    def prefill(self, ids: list[int]) -> int:
        """Reset, run the prompt, return the greedy first token."""

    def step(self, token_id: int) -> int:
        """Run one decode step, return the next greedy token."""


class OursEngine:
    """FlexServe's host engine, driven below the generation loop (no EOS stop)."""

    def __init__(self, model: str, threads: int, max_context: int) -> None:
        import torch

        from flexserve.commands._engine import load_for_generation
        from flexserve.engine.generate import GreedyStepper

        torch.set_num_threads(threads)
        self.loaded = load_for_generation(model)
        # One KV cache for the whole run, reset per prompt, as llama.cpp keeps its context.
        self.session = GreedyStepper(self.loaded.transformer, max_context)

    def prefill(self, ids: list[int]) -> int:
        return self.session.prefill(ids)

    def step(self, token_id: int) -> int:
        return self.session.step(token_id)


class LlamaCppEngine:
    """llama.cpp through llama-cpp-python, same thread count, greedy sampling."""

    def __init__(self, model: str, threads: int, max_context: int) -> None:
        import llama_cpp

        from flexserve.catalog import resolve

        path = resolve(model).path
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=max_context, n_batch=512, n_threads=threads,
            n_threads_batch=threads, verbose=False,
        )

    def prefill(self, ids: list[int]) -> int:
        self.llm.reset()
        self.llm.eval(ids)
        return int(self.llm.sample(temp=0.0))

    def step(self, token_id: int) -> int:
        self.llm.eval([token_id])
        return int(self.llm.sample(temp=0.0))


ENGINES: dict[str, Callable[[str, int, int], EngineUnderTest]] = {
    "ours": OursEngine,
    "llamacpp": LlamaCppEngine,
}


def _tokenize(model: str, n_tokens: int) -> list[int]:
    from flexserve.bench.prompts import prompt_of_length
    from flexserve.catalog import resolve
    from flexserve.engine.gguf_file import GGUFFile
    from flexserve.engine.tokenizer import Tokenizer

    path = resolve(model).path
    tokenizer = Tokenizer.from_metadata(GGUFFile.open(path).metadata)
    return prompt_of_length(tokenizer, n_tokens)


def _measure(engine: EngineUnderTest, ids: list[int], decode_tokens: int) -> dict[str, float]:
    start_s = time.perf_counter()
    token = engine.prefill(ids)
    ttft_s = time.perf_counter() - start_s
    start_s = time.perf_counter()
    for _ in range(decode_tokens):
        token = engine.step(token)
    decode_s = time.perf_counter() - start_s
    return {
        "ttft_s": ttft_s,
        "prefill_tokens_per_s": len(ids) / ttft_s,
        "decode_tokens_per_s": decode_tokens / decode_s,
    }


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(args: argparse.Namespace) -> dict:
    lengths = [int(n) for n in args.lengths.split(",")]
    max_context = max(lengths) + args.decode_tokens + 8
    prompts = {n: _tokenize(args.model, n) for n in lengths}
    start_s = time.perf_counter()
    engine = ENGINES[args.engine](args.model, args.threads, max_context)
    load_s = time.perf_counter() - start_s
    _measure(engine, prompts[lengths[0]], 4)  # warm-up: first-call allocations
    per_length = {}
    for n in lengths:
        rows = [_measure(engine, prompts[n], args.decode_tokens) for _ in range(args.repeats)]
        per_length[n] = {key: [row[key] for row in rows] for key in rows[0]}
    return {"engine": args.engine, "per_length": per_length,
            "peak_rss_bytes": _peak_rss_bytes(), "load_s": load_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flexserve.bench.engine_worker")
    parser.add_argument("engine", choices=sorted(ENGINES))
    parser.add_argument("--model", required=True)
    parser.add_argument("--lengths", default="32,128,512")
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    json.dump(measure(parser.parse_args(argv)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
