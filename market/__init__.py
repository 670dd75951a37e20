"""``market``: properties, the constraint language and matching (sans-io).

Offers and demands are flat dotted properties plus an LDAP-filter constraint
(Golem's model, see ``docs/ARCHITECTURE.md`` and DESIGN.md "Market").
Matching is symmetric and three-valued; only a strict yes matches. The names
below are the public surface; the submodules' other names are details.

Negotiation is a table-driven state machine (``market.negotiation``) ending
in an agreement both parties sign (``market.agreement``). A provider sells
presets (``market.presets``, ``market.pricing``) within its capacity
(``market.capacity``) under an acceptance policy (``market.policy``); a
requestor ranks proposals with a strategy (``market.strategy``).

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
from market.agreement import Agreement, AgreementInvalid, build_agreement, cosign, sign_agreement, verify_agreement
from market.capacity import Capacity, CapacityLedger, default_limits, machine_capacity
from market.negotiation import LocalProtocolError, Negotiation, NegotiationError, RemoteProtocolError, Role, State
from market.policy import Policy, PolicyConfig, ProposalContext, Rejection
from market.presets import OFFER_CONSTRAINTS, Preset, PresetError, offer_properties
from market.pricing import LinearPricing, PricingError
from market.strategy import Candidate, ProviderRecord, Strategy, StrategyConfig, record_outcome

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
    # negotiation and agreements
    "Agreement",
    "AgreementInvalid",
    "LocalProtocolError",
    "Negotiation",
    "NegotiationError",
    "RemoteProtocolError",
    "Role",
    "State",
    "build_agreement",
    "cosign",
    "sign_agreement",
    "verify_agreement",
    # the provider: presets, pricing, capacity, acceptance policy
    "OFFER_CONSTRAINTS",
    "Capacity",
    "CapacityLedger",
    "LinearPricing",
    "Policy",
    "PolicyConfig",
    "Preset",
    "PresetError",
    "PricingError",
    "ProposalContext",
    "Rejection",
    "default_limits",
    "machine_capacity",
    "offer_properties",
    # the requestor: strategy
    "Candidate",
    "ProviderRecord",
    "Strategy",
    "StrategyConfig",
    "record_outcome",
]
