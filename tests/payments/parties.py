"""The fixed keys and channel terms the payments core tests share (deterministic seeds)."""

from payments.voucher import ChannelTerms
from yagna.core.identity import NodeKey

PAYER = NodeKey.from_seed(bytes(range(32)))
PAYEE = NodeKey.from_seed(bytes(range(1, 33)))
MALLORY = NodeKey.from_seed(bytes(range(2, 34)))
TERMS = ChannelTerms(
    network_id="devnet-1",
    driver="testnet-ledger",
    channel_id="ch-0001",
    agreement_id="ag-0001",
    payer=PAYER.node_id,
    payee=PAYEE.node_id,
    currency="tGLM",
    deposit=1_000,
)
