"""Which `serviceUrl` an incoming activity may name. The bot answers there and stores it with the
conversation for every later post, so an outsider naming their own server could make the bot send
requests anywhere. With Bot Framework credentials, only the service URL the validated token was issued
for; without them (local development), only loopback addresses and the configured TEAMS_SERVICE_URL.
An exported file's upload URL likewise (upload_refusal)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

SERVICE_URL_CLAIM = "serviceurl"  # what Bot Framework's channel tokens carry (ChannelValidation)
UPLOAD_HOST_SUFFIX = ".sharepoint.com"  # where Teams' file consent opens its upload sessions


def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.username or parts.password:
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class ServiceUrls:
    def __init__(self, configured: str, authenticated: bool) -> None:
        self.configured = configured
        self.authenticated = authenticated

    def refusal(self, service_url: Any, claims: Mapping[str, Any] | None) -> str | None:
        """Why an activity naming `service_url` is refused (its token's `claims`), or None."""
        if not isinstance(service_url, str) or not service_url:
            return "no service URL"
        if self.authenticated:
            claimed = (claims or {}).get(SERVICE_URL_CLAIM)
            # Channel tokens are checked against the activity's URL by Bot Framework already; tokens
            # without the claim (emulator, skills) vouch for no URL at all.
            if isinstance(claimed, str) and _same(claimed, service_url):
                return None
            return "a service URL its token was not issued for"
        if is_loopback(service_url) or _same(service_url, self.configured):
            return None
        return "a service URL that is neither loopback nor TEAMS_SERVICE_URL (no credentials are set)"

    def upload_refusal(self, upload_url: Any) -> str | None:
        """Why the bot may not PUT a file to the `uploadUrl` of a file consent's accept, or None. With
        credentials the accept came from Teams, which names its own upload session (https); without
        them, as for service URLs, only loopback or under TEAMS_SERVICE_URL, so a forged accept cannot
        have the agency's numbers sent elsewhere. With credentials the URL must also be https on a
        SharePoint host (the person's OneDrive, where Teams opens the session), so a forged accept cannot
        name any https server: Teams documents bots' files for the commercial cloud and GCC only (not
        GCC High or DoD), whose OneDrive hosts all end .sharepoint.com."""
        if not isinstance(upload_url, str) or not upload_url:
            return "no upload URL"
        if self.authenticated:
            parts = urlsplit(upload_url)
            if parts.scheme != "https":
                return "an upload URL that is not https"
            host = (parts.hostname or "").lower()
            if parts.username or parts.password or not host.endswith(UPLOAD_HOST_SUFFIX):
                return "an upload URL that is not the person's OneDrive (SharePoint)"
            return None
        if is_loopback(upload_url) or upload_url.startswith(self.configured.rstrip("/") + "/"):
            return None
        return "an upload URL that is neither loopback nor under TEAMS_SERVICE_URL (no credentials are set)"
