"""Pydantic contracts at every boundary: queue payloads, worker input/output."""
