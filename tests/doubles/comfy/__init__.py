"""A ComfyUI test double: HTTP + websocket on 127.0.0.1, speaking the protocol exactly as
captured from ComfyUI 0.3.64 (tests/fixtures/comfy), with switches for the failures the
worker must survive. Run it as a process: `python -m tests.doubles.comfy --port P ...`.
"""
