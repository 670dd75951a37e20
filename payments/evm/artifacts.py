"""The compiled contracts shipped with the package (``payments/evm/artifacts/<Name>.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CONTRACTS = ("PaymentChannels", "TestToken")


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    """Creation code, 0x-prefixed hex."""
    deployed_bytecode: str
    compiler: str


@cache
def artifact(name: str) -> Artifact:
    if name not in CONTRACTS:
        raise KeyError(f"no compiled contract {name!r} (known: {', '.join(CONTRACTS)})")
    raw = json.loads((ARTIFACTS / f"{name}.json").read_text())
    return Artifact(name, raw["abi"], raw["bytecode"], raw["deployedBytecode"], raw["compiler"])
