"""Command groups of the `stillhouse` CLI, one module per concern."""
