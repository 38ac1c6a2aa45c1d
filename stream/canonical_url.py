"""Canonical URLs and article ids: one article is one id, whatever link led to it.

Rules (idempotent: ``canonical_url(canonical_url(u)) == canonical_url(u)``):
scheme and host lower-cased, ``www.`` and default ports dropped, fragment dropped, tracking
parameters dropped (``utm_*``, ``fbclid``, ...), remaining query parameters sorted, AMP variants
(``/amp`` path segment, ``amp=1``, ``outputType=amp``) folded into the article URL, a trailing slash
dropped from every path but the root, percent-escapes normalised.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from stream.errors import ContractError

ID_HEX_CHARS = 32  # DESIGN.md: first 32 hex chars of SHA-256 (128 bits: collisions negligible)

TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
        "ocid",
        "cmpid",
        "cmp",
        "at_medium",
        "at_campaign",
        "at_custom1",
        "at_custom2",
        "at_custom3",
        "at_custom4",
        "ito",
        "xtor",
        "ns_mchannel",
        "ns_source",
        "ns_campaign",
        "ns_linkname",
        "ns_fee",
        "ref",
        "ref_src",
        "ref_url",
        "src",
        "smid",
        "sh",
        "soc_src",
        "soc_trk",
        "rss",
        "feed",
        "from",
        "share",
        "s_cid",
        "ftag",
        "amp",
        "outputtype",
        "__twitter_impression",
        "guccounter",
        "guce_referrer",
        "guce_referrer_sig",
        "spm",
        "vero_id",
        "oly_enc_id",
        "oly_anon_id",
        "rb_clickid",
        "wt.mc_id",
        "wt_mc",
        "cid",
        "mbid",
        "taid",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_", "__hs", "itm_")
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_VARIANTS = ("amp.", "m.", "mobile.")
_AMP_SEGMENT = re.compile(r"(^|/)amp(/|$)", re.IGNORECASE)
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_SAFE_QUERY = "/:@!$'()*,;-._~?"  # not "+": a literal plus in a value stays %2B (a bare "+" is a space)


# Tracking names that some old sites use as the page's own id ("news.php?cid=101", "view.asp?src=55"): they
# are kept when their value is a number (trackers write words: "rss", "home"), and on a script with no other
# parameter whatever their value
AMBIGUOUS_PARAMS = frozenset({"cid", "src", "from", "sh", "share", "feed", "ref", "rss"})
_SCRIPT_PATH = re.compile(r"(^/?$|\.(php\d?|aspx?|jsp|cfm|cgi|pl|py)$)", re.IGNORECASE)


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def _kept_params(query: str, path: str) -> list[tuple[str, str]]:
    """The query's parameters without the tracking ones (sorted), keeping the ambiguous ones
    (``AMBIGUOUS_PARAMS``) that hold a number ("news.php?cid=101&lang=ar", "/article/show?cid=7"), and all of
    them on a script path where they are all that tells one page from another."""
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k]
    ambiguous = [(k, v) for k, v in pairs if k.lower() in AMBIGUOUS_PARAMS]
    kept = [(k, v) for k, v in pairs if not _is_tracking(k)]
    if not kept and _SCRIPT_PATH.search(path):
        return sorted(ambiguous)
    return sorted(kept + [(k, v) for k, v in ambiguous if v.isdigit()])


def _norm_component(text: str, safe: str) -> str:
    return quote(unquote(text), safe=safe)


def canonical_url(url: str) -> str:
    """Canonical form of an absolute http(s) URL.

    Raises:
        ContractError: ``url`` is not an absolute http or https URL (the message quotes it).
    """
    raw = url.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ContractError(f"{url!r} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ContractError(f"{url!r} is not an absolute http(s) URL")
    host = parts.hostname.lower().rstrip(".")
    host = host.removeprefix("www.")
    for variant in _HOST_VARIANTS:  # the same page for phones and for AMP: amp.site.com, m.site.com
        if host.startswith(variant) and host.count(".") >= 2:
            host = host[len(variant) :]
            break
    if not host:
        raise ContractError(f"{url!r} has no host")
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _norm_component(parts.path, _SAFE_PATH)
    path = re.sub(r"/{2,}", "/", path)
    while _AMP_SEGMENT.search(path):
        path = _AMP_SEGMENT.sub(lambda m: "/" if m.group(1) or m.group(2) else "", path, count=1)
        path = re.sub(r"/{2,}", "/", path)
    if path.lower().endswith(".amp"):
        path = path[:-4]
    path = path.rstrip("/") or "/"
    query = urlencode(_kept_params(parts.query, path), quote_via=quote, safe=_SAFE_QUERY)
    return urlunsplit((scheme, netloc, path, query, ""))


def article_id(canonical: str) -> str:
    """Hex SHA-256 (first 32 chars) of an already canonical URL: the bus key and the store ``_id``."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def id_for_url(url: str) -> tuple[str, str]:
    """``(article_id, canonical_url)`` for a URL as found."""
    canonical = canonical_url(url)
    return article_id(canonical), canonical
