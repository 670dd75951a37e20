"""Chain tests. eth-account is loaded through ``payments.evm.load_eth`` before anything imports
it: py_ecc would otherwise raise the recursion limit of the whole test process (see there)."""

from payments.evm import load_eth

load_eth()
