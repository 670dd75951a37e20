"""The daemon's market service: the network shell around the sans-io ``market`` package.

:class:`~yagna.market_service.service.MarketService` composes the offer
directory (:mod:`.offers`: gossip topics, validation, catch-up), the provider
side (:mod:`.provider`: presets, offers, negotiation, agreements) and the
requestor side (:mod:`.requestor`: demands, proposals, strategy). The
protocols and their message shapes are in :mod:`.protocol`.
"""

from yagna.market_service.service import MarketConfig, MarketService

__all__ = ["MarketConfig", "MarketService"]
