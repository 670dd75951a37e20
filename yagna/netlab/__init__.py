"""A network of namespaces on one Linux machine: an internet segment, public nodes, and
sites behind NAT routers, with impaired links. ``topology`` describes it, ``plan`` turns
the description into commands (pure), ``testbed`` runs them and records what it made,
``netns`` reaches into a namespace from this process. See docs/testbed.md.
"""
