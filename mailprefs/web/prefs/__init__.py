"""Recipient pages (no login): one-click unsubscribe, preference center, confirmation.

The signed token in the URL is the only credential. A GET (or HEAD) never changes
anything, because mail scanners fetch every link they see; every change is a POST and
becomes a consent event carrying the request's IP and user agent. A bad, tampered,
expired or foreign token, or one for a person we no longer know, answers a plain
400/404 page and changes nothing.

`common` holds the blueprint and what the pages share; `pages` serves the pages a link
opens to do one thing (`/u/{token}` and the resubscribe button of the page it answers,
`/confirm/{token}`, and `/rejoin/{token}`, the way back into a closed account), `center`
the preference center. No page module imports another.
"""

from mailprefs.web.prefs import center, pages  # noqa: F401  (routes on bp)
from mailprefs.web.prefs.common import bp

__all__ = ["bp"]
