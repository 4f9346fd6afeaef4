"""RunPod serverless handler: supervises ComfyUI, runs the graph, uploads images to S3.

Must not import the database layer or discord.py (enforced by import-linter).
"""
