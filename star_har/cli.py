"""The ``star-har`` command. Each subcommand lives next to the code it drives and registers itself
through a ``register(subparsers)`` function; heavy imports happen only when a command runs."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import time

from star_har.errors import StarHarError

# How long a stop signal that landed inside an import waits before it is sent again.
_SIGNAL_RETRY_S = 0.05

# Modules providing subcommands, in the order `--help` lists them.
COMMAND_MODULES = ("star_har.info", "star_har.train.cli", "star_har.realtime.cli",
                   "star_har.realtime.engine_cli", "star_har.realtime.demo.cli", "star_har.realtime.gui.cli",
                   "star_har.train.importance_cli")


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes in one line (``star-har run: error: argument --fps: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="star-har",
        description="Real-time human action recognition from RGB frames and skeletons "
                    "(STAR-Transformer and 3D deformable transformer).",
        epilog="Run `star-har COMMAND --help` for the options of a command.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    started_at = time.perf_counter()  # commands report their start-up time from here
    previous = _install_interrupt_handlers() if _main_thread() else {}
    try:
        return _run(argv, started_at)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, also while the command loads
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(argv: list[str] | None, started_at: float) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0) as a return value, like every other outcome
        return int(exc.code or 0)
    args.started_at = started_at
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.handler(args) or 0)
    except StarHarError as exc:  # one readable line for problems the user can fix; -v shows the traceback
        if args.verbose:
            raise
        print(f"star-har {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install_interrupt_handlers() -> dict[int, object]:
    """Route SIGTERM, and Ctrl-C unless it is ignored (``nohup``), to :func:`_interrupt`; returns the
    handlers they replace."""
    signums = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signums.append(signal.SIGINT)
    return {signum: signal.signal(signum, _interrupt) for signum in signums}


def _interrupt(signum, frame) -> None:
    """SIGTERM stops a command the way Ctrl-C does (commands that write files handle both themselves).

    Not inside an import: there the KeyboardInterrupt can surface in a C++ extension's start-up
    (torch's pybind11 callbacks), which aborts the whole process. The signal is sent again shortly
    instead, until it lands outside every import.
    """
    if _importing(frame):
        retry = threading.Timer(_SIGNAL_RETRY_S, os.kill, (os.getpid(), signum))
        retry.daemon = True
        retry.start()
        return
    raise KeyboardInterrupt


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def console() -> None:
    """The ``star-har`` executable: :func:`main`'s status as the exit status."""
    status = main()
    if status == 130:
        # Interrupted: leave at once. A signal that lands inside a library's start-up (torch,
        # MediaPipe) can leave a swallowed KeyboardInterrupt behind that makes the interpreter kill
        # itself with SIGINT on the way out, replacing 130 by -2; the outputs are already finished.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    console()
