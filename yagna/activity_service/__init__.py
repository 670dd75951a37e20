"""The exe-unit service of a node: activities run for requestors (provider) and driven on providers (requestor).

Public surface: :class:`ActivityService` / :class:`ActivityConfig`, the two
sides, and the protocols in :mod:`yagna.activity_service.protocol`.
"""

from yagna.activity_service.requestor import ActivityFailed, RequestorActivities
from yagna.activity_service.service import ActivityConfig, ActivityService

__all__ = ["ActivityConfig", "ActivityFailed", "ActivityService", "RequestorActivities"]
