"""The Python SDK for requestor scripts: talks to a local daemon over its REST API.

It imports only ``yagna.core`` from this project, never daemon internals.
"""

from requestor_sdk.errors import DaemonNotFound, SdkError
from requestor_sdk.locate import DaemonLocation, locate

__all__ = ["DaemonLocation", "DaemonNotFound", "SdkError", "locate"]
