"""Fuzzing by mutation: replace one node anywhere in a real document (a policy, a notification)
with an arbitrary value. Shared by the fuzz tests."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st


def node_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every node below (and including) ``node``."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += node_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += node_paths(value, (*prefix, index))
    return found


def mutations(document: Any, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Copies of ``document`` with one node below the root replaced by one of ``values``."""

    @st.composite
    def mutated(draw: st.DrawFn) -> Any:
        copied = copy.deepcopy(document)
        path = draw(st.sampled_from(node_paths(copied)[1:]))
        node = copied
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = draw(values)
        return copied

    return mutated()
