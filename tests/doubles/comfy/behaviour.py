"""The switches a test flips on the double."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Behaviour:
    """How this ComfyUI misbehaves (all off: a healthy, fast ComfyUI)."""

    port: int
    start_delay_s: float = 0.0
    die_on_start: bool = False
    die_during_run: bool = False
    silent_ws: bool = False
    drop_ws: bool = False
    fail_node: str | None = None
    fail_message: str = "Allocation on device failed"
    fail_type: str = "torch.OutOfMemoryError"
    history_lag_s: float = 0.0
    step_time_s: float = 0.005
    node_time_s: float = 0.002
    decode_time_s: float = 0.0  # VAEDecode's own time, on top of node_time_s
    textured: bool = False  # images of noise, sized like real ones (~400 KB at 512x512)
    hang: bool = False
    models: tuple[str, ...] = ()
    embed_metadata: bool = True
    # ComfyUI's folder flags (None: not given; with none given, files stay in memory)
    base_directory: str | None = None
    output_directory: str | None = None
    input_directory: str | None = None
    temp_directory: str | None = None

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> Behaviour:
        parser = argparse.ArgumentParser(prog="python -m tests.doubles.comfy")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--listen", default="127.0.0.1")  # accepted like ComfyUI's
        parser.add_argument("--start-delay", type=float, default=0.0)
        parser.add_argument("--die-on-start", action="store_true")
        parser.add_argument("--die-during-run", action="store_true")
        parser.add_argument("--silent-ws", action="store_true")
        parser.add_argument("--drop-ws", action="store_true")
        parser.add_argument("--fail-node")
        parser.add_argument("--fail-message", default=cls.fail_message)
        parser.add_argument("--fail-type", default=cls.fail_type)
        parser.add_argument("--history-lag", type=float, default=0.0)
        parser.add_argument("--step-time", type=float, default=cls.step_time_s)
        parser.add_argument("--node-time", type=float, default=cls.node_time_s)
        parser.add_argument("--decode-time", type=float, default=cls.decode_time_s)
        parser.add_argument("--textured", action="store_true")
        parser.add_argument("--hang", action="store_true")
        parser.add_argument("--models", default="", help="comma-separated installed models")
        parser.add_argument("--disable-metadata", action="store_true")
        # ComfyUI's comfy/cli_args.py: folders for output, input and temp (see folders.py)
        parser.add_argument("--base-directory")
        parser.add_argument("--output-directory")
        parser.add_argument("--input-directory")
        parser.add_argument("--temp-directory")
        args = parser.parse_args(argv)
        return cls(
            port=args.port,
            start_delay_s=args.start_delay,
            die_on_start=args.die_on_start,
            die_during_run=args.die_during_run,
            silent_ws=args.silent_ws,
            drop_ws=args.drop_ws,
            fail_node=args.fail_node,
            fail_message=args.fail_message,
            fail_type=args.fail_type,
            history_lag_s=args.history_lag,
            step_time_s=args.step_time,
            node_time_s=args.node_time,
            decode_time_s=args.decode_time,
            textured=args.textured,
            hang=args.hang,
            models=tuple(m for m in args.models.split(",") if m),
            embed_metadata=not args.disable_metadata,
            base_directory=args.base_directory,
            output_directory=args.output_directory,
            input_directory=args.input_directory,
            temp_directory=args.temp_directory,
        )
