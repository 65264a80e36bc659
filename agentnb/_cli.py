"""``python -m agentnb``: ``demo`` streams a demo agent to the terminal, ``replay`` a recording,
``serve`` runs the web front, ``worker`` runs agents for servers sharing one Redis."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from ._console import ConsoleSink
from ._exceptions import InvalidEvent, RunCancelled, UnknownAgent
from ._record import JsonlRecorder, replay
from ._registry import get_agent, list_agents
from ._sinks import SinkLike
from ._sync import run_sync

__all__ = ["main"]


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command's parser, and its ``demo`` subcommand's (options anywhere in its line)."""
    parser = argparse.ArgumentParser(prog="python -m agentnb", description="Watch AI agents work.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="stream an offline demo agent to the terminal")
    demo.add_argument("agent", nargs="?", default="poet", help="demo agent (default: poet)")
    demo.add_argument("input", nargs="*", help="the agent's input text (options may come anywhere)")
    demo.add_argument("--speed", type=float, default=1.0, help="pacing: 1 model-like, 0 no pauses")
    demo.add_argument("--record", metavar="FILE", help="also record the events as JSON lines")
    demo.add_argument("--list", action="store_true", help="list the demo agents and exit")
    play = sub.add_parser("replay", help="replay a JSON-lines recording to the terminal")
    play.add_argument("file")
    play.add_argument("--timing", action="store_true", help="keep the original pacing")
    play.add_argument("--speed", type=float, default=1.0, help="with --timing: speed factor")
    sub.add_parser(
        "serve",
        help="serve the demo agents over SSE/WebSockets with a page at / (needs agentnb[server])",
        add_help=False,
    )
    sub.add_parser(
        "worker",
        help="run agents for servers sharing one Redis (needs agentnb[server,redis])",
        add_help=False,
    )
    return parser, demo


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        # A worker of servers sharing one Redis (python -m agentnb worker --help).
        try:
            from .server._workers import main as work
        except ImportError as exc:
            print(f"agentnb: {exc}", file=sys.stderr)
            return 2
        return work(argv[1:])
    if argv[:1] == ["serve"]:
        # The web front parses its own options (python -m agentnb serve --help).
        try:
            from .server._serve import main as serve
        except ImportError as exc:
            print(f"agentnb: {exc}", file=sys.stderr)
            return 2
        return serve(argv[1:])
    parser, demo = _parser()
    if argv[:1] == ["demo"]:
        # `demo poet --speed 0 the moon`: options between the input's words are options.
        args = demo.parse_intermixed_args(argv[1:], argparse.Namespace(command="demo"))
    else:
        args = parser.parse_args(argv)
    from . import demo as _demo  # noqa: F401  (registers the demo agents)

    if args.command == "replay":
        try:
            asyncio.run(replay(args.file, ConsoleSink(), timing=args.timing, speed=args.speed))
        except (OSError, InvalidEvent, ValueError) as exc:
            print(f"agentnb: cannot replay {args.file}: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.list:
        for info in list_agents():
            print(f"{info.name:12} {info.description}")
        return 0
    try:
        agent = get_agent(args.agent)
    except UnknownAgent as exc:
        print(f"agentnb: {exc}", file=sys.stderr)
        return 2
    sinks: list[SinkLike] = [ConsoleSink()]
    if args.record:
        sinks.append(JsonlRecorder(args.record))
    text = " ".join(args.input)
    call_args = (text,) if text else ()
    try:
        run_sync(agent, *call_args, sink=sinks, speed=args.speed)
    except KeyboardInterrupt:
        return 130
    except RunCancelled:
        return 130
    except Exception:  # the console sink has already shown the traceback
        return 1
    return 0
