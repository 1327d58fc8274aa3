"""Recipient pages (no login): one-click unsubscribe, preference center, confirmation.

The signed token in the URL is the only credential. A GET (or HEAD) never changes
anything, because mail scanners fetch every link they see; every change is a POST and
becomes a consent event carrying the request's IP and user agent. A bad, tampered,
expired or foreign token, or one for a person we no longer know, answers a plain
400/404 page and changes nothing.

`common` holds the blueprint and what the pages share; `pages` serves `/u/{token}` and
`/confirm/{token}`, `center` the preference center, `resubscribe` the button on the
unsubscribed page, `rejoin` the way back into a closed account (`/rejoin/{token}`). No
page module imports another.
"""

from mailprefs.web.prefs import center, pages, rejoin, resubscribe  # noqa: F401  (routes on bp)
from mailprefs.web.prefs.common import bp

__all__ = ["bp"]
