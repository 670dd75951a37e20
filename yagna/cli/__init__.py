"""The ``yagna`` command line."""
