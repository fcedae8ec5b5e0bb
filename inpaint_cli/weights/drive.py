"""The way past a download interstitial (Google Drive's "can't scan this file for viruses" page)."""

from __future__ import annotations

import urllib.parse
from html.parser import HTMLParser

FOLLOWED_SCHEMES = ("http", "https")
"""A page from the network may only lead to another page on the network: never `file:` or `ftp:`."""


class ConfirmationPage(HTMLParser):
    """Finds the way past a download interstitial: a form with hidden fields, or a `confirm=` link.

    Google Drive answers large files with a "can't scan for viruses" page whose form (action
    `.../download`, hidden `id`, `export`, `confirm`, `uuid`) leads to the file; older pages had a
    link carrying `confirm=<token>`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.form_action: str | None = None
        self.form_fields: dict[str, str] = {}
        self.confirm_link: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form" and self.form_action is None and values.get("action"):
            self.form_action = values["action"]
            self._in_form = True
        elif tag == "input" and self._in_form and values.get("type") == "hidden" and values.get("name"):
            self.form_fields[values["name"]] = values.get("value", "")
        elif tag == "a" and "confirm=" in values.get("href", "") and self.confirm_link is None:
            self.confirm_link = values["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False

    def next_url(self, base: str) -> str | None:
        """The absolute URL the page leads to, if it has a way through (any scheme: check it)."""
        if self.form_action and "confirm" in self.form_fields:
            query = urllib.parse.urlencode(self.form_fields)
            return f"{urllib.parse.urljoin(base, self.form_action)}?{query}"
        if self.confirm_link:
            return urllib.parse.urljoin(base, self.confirm_link)
        return None


def is_followed(url: str) -> bool:
    """Whether a link found in a downloaded page may be opened."""
    return urllib.parse.urlparse(url).scheme.lower() in FOLLOWED_SCHEMES
