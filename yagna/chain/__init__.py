"""Talking to an EVM chain: the local chain process (anvil) for devnets and tests."""
