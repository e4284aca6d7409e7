"""The media type the POST routes read: ``application/json`` only, checked before a byte of the body is read.

A browser sends a cross-site "simple" POST (no preflight) only as ``text/plain``,
``application/x-www-form-urlencoded`` or ``multipart/form-data``; refusing those with 415 means a web
page cannot write into the capture store through a visitor's browser. JSON over HTTP is UTF-8 (RFC 8259),
so a ``charset`` parameter, when sent, must say so. The header is parsed by the standard library's
e-mail header parser (quoting, case, whitespace), not by hand.
"""

from __future__ import annotations

from email.message import Message

JSON_MEDIA_TYPE = "application/json"
MAX_SHOWN_CHARS = 100


def unsupported_content_type(header: str | None) -> str | None:
    """Why a request with this Content-Type is refused (the 415's detail), or None when it is JSON."""
    if header is None:
        return f"send the body as JSON with Content-Type: {JSON_MEDIA_TYPE} (the request has no Content-Type)"
    message = Message()
    message["content-type"] = header
    media_type = message.get_content_type()  # lower case; text/plain when the header cannot be parsed
    shown = ascii(header[:MAX_SHOWN_CHARS]) + ("..." if len(header) > MAX_SHOWN_CHARS else "")
    if media_type != JSON_MEDIA_TYPE:
        return f"unsupported Content-Type {shown}: send the body as JSON with Content-Type: {JSON_MEDIA_TYPE}"
    charset = message.get_content_charset()  # lower case, or None when absent
    if charset not in (None, "utf-8", "utf8"):
        return f"unsupported charset in Content-Type {shown}: JSON is read as UTF-8"
    return None


__all__ = ["JSON_MEDIA_TYPE", "unsupported_content_type"]
