"""``flexserve serve``: the OpenAI-compatible HTTP server over the emulated secure device."""

from __future__ import annotations

import argparse
import os

from flexserve.commands import Command
from flexserve.serve import config as defaults

API_KEY_ENV = "FLEXSERVE_API_KEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=defaults.DEFAULT_HOST,
                        help=f"address to bind (default: {defaults.DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=defaults.DEFAULT_PORT,
                        help=f"TCP port (default: {defaults.DEFAULT_PORT})")
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    parser.add_argument("--system", default="flexserve",
                        help="system configuration the device runs (default: flexserve)")
    parser.add_argument("--profile", default="rk3588",
                        help="device profile name or TOML file (default: rk3588)")
    parser.add_argument("--max-queue", type=int, default=defaults.DEFAULT_MAX_QUEUE,
                        help="requests that may wait for the device before new ones get 503 "
                             f"(default: {defaults.DEFAULT_MAX_QUEUE})")
    parser.add_argument("--pace", action="store_true",
                        help="stream tokens at the modeled device's speed")
    parser.add_argument("--preload", nargs="+", default=[], metavar="MODEL",
                        help="models to open at startup")
    parser.add_argument("--send-timeout-s", type=float, default=defaults.DEFAULT_SEND_TIMEOUT_S,
                        help="cancel a stream whose client stops reading for this long "
                             f"(default: {defaults.DEFAULT_SEND_TIMEOUT_S:g})")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.DEFAULT_MAX_BODY_BYTES,
                        help=f"largest request body (default: {defaults.DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--default-max-tokens", type=int, default=defaults.DEFAULT_MAX_TOKENS,
                        help="max_tokens of requests that give none "
                             f"(default: {defaults.DEFAULT_MAX_TOKENS})")


def config_from_args(args: argparse.Namespace) -> defaults.ServerConfig:
    return defaults.ServerConfig(
        host=args.host, port=args.port,
        api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV),
        system=args.system, profile=args.profile, max_queue=args.max_queue, pace=args.pace,
        preload=tuple(args.preload), send_timeout_s=args.send_timeout_s,
        max_body_bytes=args.max_body_bytes, default_max_tokens=args.default_max_tokens,
    )


def run(args: argparse.Namespace) -> int:
    from flexserve.serve.server import run_server

    run_server(config_from_args(args))
    return 0


COMMAND = Command("serve", "Serve models over an OpenAI-compatible HTTP API.", add_arguments, run)
