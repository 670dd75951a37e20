"""Symbolic links read lexically: does a link climb out of the tree it sits in?

Shared by the Golem image unpacker (exeunit/gvmi.py) and the pipelines' workspace packer
(requestor_sdk/workspace.py): both keep a tree's inner links and refuse the ones that leave it.
"""

from __future__ import annotations

import posixpath


def climbs_out(rel: str, target: str) -> bool:
    """Whether the relative ``target`` of the link at ``rel`` (a path from the tree's root), read
    lexically, ever goes above the root. Absolute targets are the caller's to judge."""
    depth = len([p for p in posixpath.dirname(rel).split("/") if p])
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False
