"""``sednaya-monitor serve``: the analyst search page and the JSON API over the search store.

Pages (no JavaScript needed): ``/`` search (grouped by story or flat), ``/stories``, ``/stories/<id>``,
``/timeline``, ``/watchlists``, ``/watchlists/<name>`` (+ ``/atom.xml``), ``/raw/<content_sha256>``.
API: ``/api/search``, ``/api/stories``, ``/api/stories/<id>``, ``/api/articles``, ``/api/articles/<id>``,
``/api/watchlists`` (POST/DELETE need the bearer token), ``/api/alerts``, ``/api/openapi.json``.
Operations: ``/metrics``, ``/healthz``.
"""

from sednaya_monitor.web.server import RunningServer, WebServer, make_server, serve_in_thread

__all__ = ["RunningServer", "WebServer", "make_server", "serve_in_thread"]
