"""Request forms real clients send that mean the same as the plain request.

* A path with repeated slashes (`//cnf`, `///cnf`, `//ui/en//sim.htm`: clients that join
  a base URL ending in `/` with `/cnf`) is the path with single slashes. Only the literal
  slashes of the raw path are merged; an encoded `%2F` is data and stays.
* A query whose separators are percent-encoded (`cmd%3Dmodbus%26device%3Devse%26read%3Dall`)
  is that query decoded once. This is done only when the raw query has no literal `=` at
  all and does contain an encoded one (`%3D`/`%3d`): every plain query has a literal `=`
  (`cmd=…`), so a value that legitimately contains an encoded `=` or `&`
  (`…&val=a%3Db`) is read exactly as before.

The request is rewritten and served directly, not redirected (aiohttp's own
`normalize_path_middleware` answers a redirect, which some clients do not follow), so
everything after this middleware (authentication, the command) sees the plain form.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

_SLASHES = re.compile(r"/{2,}")
_ENCODED_EQUALS = re.compile(r"%3[dD]")
# What may stay as it is in a query after decoding: the separators, escapes still left
# (a value that was encoded twice) and the characters a query may carry unquoted.
_QUERY_SAFE = "=&;%+/?:@!$'()*,~[]"


def plain_target(raw_target: str) -> tuple[str, str, bool] | None:
    """(path, query, path changed) to serve for a raw request target such as
    `//cnf?cmd%3Dget_dev_info`, or None if the target is already plain."""
    if "//" not in raw_target and "%3" not in raw_target:
        return None  # the usual request: nothing to look at more closely
    path, _, query = raw_target.partition("?")
    plain_path = _SLASHES.sub("/", path)
    plain_query = query
    if "=" not in query and _ENCODED_EQUALS.search(query):
        plain_query = quote(unquote(query), safe=_QUERY_SAFE)
    if plain_path == path and plain_query == query:
        return None
    return plain_path, plain_query, plain_path != path


@web.middleware
async def plain_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve a request in one of the forms above as its plain form."""
    target = plain_target(request.raw_path)
    if target is None:
        return await handler(request)
    path, query, path_changed = target
    plain = request.clone(rel_url=URL.build(path=path, query_string=query, encoded=True))
    if not path_changed:
        return await handler(plain)
    # The router matched the original path (usually to "not found"): match again.
    match = await request.app.router.resolve(plain)
    return await match.handler(plain)
