"""``flexserve bench serve``: throughput and latency percentiles of the HTTP server under load."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flexserve.commands import Command
from flexserve.commands._options import positive_ints


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help="a running server (default: start one on a free port)")
    parser.add_argument("--api-key", default=None, help="the server's API key, if any")
    parser.add_argument("--model", "-m", default="smollm2-135m", help="model to request")
    parser.add_argument("--clients", default="1,4,16",
                        help="concurrent clients, comma-separated (default: 1,4,16)")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per request")
    parser.add_argument("--system", default="flexserve", help="system of a started server")
    parser.add_argument("--profile", default="rk3588", help="profile of a started server")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    from flexserve.serve.spawn import spawned_server

    clients = positive_ints(args.clients, "--clients")
    if args.url:
        return _measure(args, args.url, clients)
    options = ["--system", args.system, "--profile", args.profile, "--preload", args.model,
               "--max-queue", str(max(clients) * args.requests)]
    print("starting a server ...", file=sys.stderr)
    with spawned_server(options) as url:
        return _measure(args, url, clients)


def _measure(args: argparse.Namespace, url: str, clients: tuple[int, ...]) -> int:
    from flexserve.bench.serve_load import LoadConfig, format_table, one_request, run_load

    base = LoadConfig(url, args.model, 1, args.requests, args.max_tokens, api_key=args.api_key)
    warm = one_request(base)  # opens the model and fills the cache before timing
    if not warm.ok:
        print(f"flexserve: warm-up request failed: {warm.error}", file=sys.stderr)
        return 1
    results = []
    for count in clients:
        print(f"{count} concurrent clients ...", file=sys.stderr)
        config = LoadConfig(url, args.model, count, args.requests, args.max_tokens,
                            api_key=args.api_key)
        results.append(run_load(config))
    print(f"model {args.model}, {args.requests} streaming requests per client, "
          f"{args.max_tokens} tokens each (host seconds)")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps([r.summary() for r in results], indent=2))
    return 0


SUITE = Command("serve", "HTTP server under load: throughput, TTFT and end-to-end latency "
                         "percentiles for N concurrent streaming clients.", add_arguments, run)
