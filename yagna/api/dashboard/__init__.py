"""The node's dashboard: a small server-rendered web page at ``/dashboard`` on the API port.

``routes`` (who may see it: app key or a session from a one-time link), ``sessions``
(tokens and cookies, in memory), ``collect`` (reads the services), ``summary``
(pure sums), ``render`` and ``markup`` (escaping HTML), ``chart`` (inline SVG),
``log_ring`` (recent warnings); the script and style in ``static/``. docs/dashboard.md.
"""

from yagna.api.dashboard.routes import install

__all__ = ["install"]
