"""Dispatcher: claims generation jobs, drives GPU backends (RunPod, local), writes outcomes."""
