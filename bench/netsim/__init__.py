"""A discrete-event network simulator running the daemon's offer directory on 1,000-10,000 nodes.

:mod:`.overlay` builds the mesh and computes shortest paths, :mod:`.network`
delivers gossip and requests on trio's virtual clock, :mod:`.scenario` runs
the offer-propagation scenario; ``bench/netsim.py`` is the command line.
"""
