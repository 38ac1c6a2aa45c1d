"""Where webhooks may point: no loopback, private, link-local, shared, reserved or metadata addresses.

A token holder must not be able to make the service POST to ``127.0.0.1:22``, a database on the
private network or a cloud metadata endpoint (``169.254.169.254``, ``fd00:ec2::254``). A URL is
refused unless every address its host resolves to is globally routable (``ipaddress`` ``is_global``,
IPv4-mapped IPv6 unwrapped), or the ``alert_allow_private_targets`` setting is set, or the host (or one of
its addresses) is in ``alert_target_allowlist`` (comma-separated host names, IPs or CIDRs).

Checked at save (literal IPs and names known to be local; :func:`check_url` with ``resolve=False``) and
again before every delivery attempt with the host resolved (a name can be re-pointed after it was saved);
the delivery then connects to the address that was checked (``indexer.alerting.channels.webhook``), and follows
no redirect (a ``3xx`` fails the delivery: a redirect could point inside).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from indexer.alerting.channels.channel import ChannelConfig

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Names that are local or metadata services whatever DNS says (checked at save, before any resolution).
LOCAL_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal", "instance-data", "metadata.azure.com"})


class TargetRefused(ValueError):
    """The URL points at a non-public address; the message names the URL, the address and the setting."""


def check_url(url: str, config: ChannelConfig, *, resolve: bool) -> str | None:
    """Raise :class:`TargetRefused` unless ``url`` may be posted to (see the module docstring).

    ``resolve`` also resolves the host (delivery time) and returns the checked address to connect to
    (the caller pins the connection to it, so a second resolution cannot point elsewhere: DNS
    rebinding); None when nothing was resolved (an IP literal, an allowed host, or resolution failed:
    not a refusal, the delivery then fails as a connection error and is retried).
    """
    if config.alert_allow_private_targets:
        return None
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    names, networks = _allowlist(config.alert_target_allowlist)
    if host in names:
        return None
    literal = _ip(host)
    if literal is not None:
        _check_address(url, literal, networks)
        return None
    if host in LOCAL_NAMES or host.endswith((".localhost", ".internal", ".local")):
        raise TargetRefused(
            f"webhook {url!r}: host {host!r} is a local or metadata name; set alert_allow_private_targets "
            "or list it in alert_target_allowlist to allow it"
        )
    if not resolve:
        return None
    port = urlsplit(url).port or (443 if url.lower().startswith("https") else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return None
    checked: list[str] = []
    for info in infos:
        address = _ip(str(info[4][0]))
        if address is not None:
            _check_address(url, address, networks, via=host)
            checked.append(str(address))
    return checked[0] if checked else None


def _check_address(url: str, address: IpAddress, networks: list[IpNetwork], *, via: str = "") -> None:
    plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
    if any(plain in net for net in networks):
        return
    if plain.is_global and not plain.is_multicast:
        return
    kind = (
        "loopback"
        if plain.is_loopback
        else "link-local (cloud metadata)"
        if plain.is_link_local
        else "private"
        if plain.is_private
        else "non-public"
    )
    where = f" ({via} resolves to {plain})" if via else ""
    raise TargetRefused(
        f"webhook {url!r}: {plain} is a {kind} address{where}; set alert_allow_private_targets "
        "or list it in alert_target_allowlist to allow it"
    )


def _allowlist(allowlist: str) -> tuple[set[str], list[IpNetwork]]:
    names: set[str] = set()
    networks: list[IpNetwork] = []
    for item in (part.strip() for part in allowlist.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item.rstrip(".").lower())
    return names, networks


def _ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
