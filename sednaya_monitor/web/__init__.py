"""``sednaya-monitor serve``: the analyst search page and the JSON API over the search store (FastAPI + uvicorn).

Pages (no JavaScript needed): ``/`` search (grouped by story or flat), ``/search.csv`` (the search as
CSV), ``/stories`` (with filters), ``/stories/<id>``, ``/timeline``, ``/watchlists``,
``/watchlists/<name>`` (+ ``/atom.xml``), ``/raw/<content_sha256>``.
API (documented at ``/api/openapi.json``, generated from ``models.py``): ``/api/search``,
``/api/stories``, ``/api/stories/<id>``, ``/api/articles``, ``/api/articles/<id>``,
``/api/watchlists`` (POST/DELETE need the bearer token), ``/api/alerts``.
Operations: ``/metrics``, ``/healthz``.
"""

from sednaya_monitor.web.app import create_app
from sednaya_monitor.web.server import RunningServer, WebServer, make_server, serve_in_thread, serve_until_signalled

__all__ = ["RunningServer", "WebServer", "create_app", "make_server", "serve_in_thread", "serve_until_signalled"]
