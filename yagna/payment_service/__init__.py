"""The payment service of a node: channels, debit notes, vouchers, enforcement, invoices, settlement.

Public surface: :class:`PaymentService` / :class:`PaymentConfig` and :class:`PaymentRequired`.
"""

from yagna.payment_service.requestor import PaymentRequired
from yagna.payment_service.service import PaymentConfig, PaymentService

__all__ = ["PaymentConfig", "PaymentRequired", "PaymentService"]
