"""``market``: properties, the constraint language and matching (sans-io).

Offers and demands are flat dotted properties plus an LDAP-filter constraint
(Golem's model, see ``docs/ARCHITECTURE.md`` and DESIGN.md "Market").
Matching is symmetric and three-valued; only a strict yes matches. The names
below are the public surface; the submodules' other names are details.

Offers, demands and withdrawals travel signed (``market.offers``: build with
``make_*``, check peers' bytes with ``verify_*``, which raise only
:class:`OfferRejected`); a node keeps the live ones in an :class:`OfferBook`.
"""

from market.constraints import (
    MAX_CONSTRAINT_LENGTH,
    MAX_DEPTH,
    And,
    Compare,
    Constraint,
    Empty,
    Like,
    Not,
    Op,
    Or,
    Present,
    Tri,
    evaluate,
    format,
    parse,
)
from market.errors import ConstraintSyntaxError, MarketError, PropertyError
from market.matching import Demand, Matcher, Offer, matches
from market.offer_book import (
    AddResult,
    AddStatus,
    OfferBook,
    TokenBucket,
    WithdrawResult,
    WithdrawStatus,
    due_for_reannounce,
    reannounce_at,
)
from market.offers import (
    DEMAND_DOMAIN,
    OFFER_DOMAIN,
    WITHDRAW_DOMAIN,
    OfferError,
    OfferRejected,
    SignedDemand,
    SignedOffer,
    SignedWithdrawal,
    make_demand,
    make_offer,
    make_withdrawal,
    offer_id,
    verify_demand,
    verify_offer,
    verify_withdrawal,
)
from market.properties import Version, is_negotiable, lookup, validate_properties

__all__ = [
    "MAX_CONSTRAINT_LENGTH",
    "MAX_DEPTH",
    "And",
    "Compare",
    "Constraint",
    "ConstraintSyntaxError",
    "Demand",
    "Empty",
    "Like",
    "MarketError",
    "Matcher",
    "Not",
    "Offer",
    "Op",
    "Or",
    "Present",
    "PropertyError",
    "Tri",
    "Version",
    "evaluate",
    "format",
    "is_negotiable",
    "lookup",
    "matches",
    "parse",
    "validate_properties",
    # signed offers and the offer book
    "DEMAND_DOMAIN",
    "OFFER_DOMAIN",
    "WITHDRAW_DOMAIN",
    "AddResult",
    "AddStatus",
    "OfferBook",
    "OfferError",
    "OfferRejected",
    "SignedDemand",
    "SignedOffer",
    "SignedWithdrawal",
    "TokenBucket",
    "WithdrawResult",
    "WithdrawStatus",
    "due_for_reannounce",
    "make_demand",
    "make_offer",
    "make_withdrawal",
    "offer_id",
    "reannounce_at",
    "verify_demand",
    "verify_offer",
    "verify_withdrawal",
]
