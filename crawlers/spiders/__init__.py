"""The spiders: ``feeds`` (RSS/Atom/RDF), ``sitemaps`` (Google-News sitemaps and indexes), ``gdelt``
(GDELT DOC 2.0 search) and ``googlenews`` (Google News RSS search). All share ``base.BaseSpider``."""
