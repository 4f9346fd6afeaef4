"""A ComfyUI API-format graph: node id -> {class_type, inputs, _meta}."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel


class ComfyNode(BaseModel):
    """One node; an input is a literal or a link `[source_node_id, output_index]`."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    class_type: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] | None = Field(default=None, alias="_meta")


class ComfyGraph(RootModel[dict[str, ComfyNode]]):
    """The graph ComfyUI's `POST /prompt` takes as `prompt`."""

    def node_types(self) -> set[str]:
        """Every class_type used in the graph."""
        return {node.class_type for node in self.root.values()}
