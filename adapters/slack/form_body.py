"""A mend for slack_bolt's reading of form-encoded requests.

slack_bolt (1.x, `slack_bolt/request/internals.py` parse_body) takes any form body that
contains the word "payload" anywhere for an interaction, looks for its `payload`
parameter, finds none and reads the request as empty. So `/support my payload failed`
matched no listener, was answered 404 and lost. This global middleware reads such a
body again the plain way. It runs after Bolt has checked the signature (over the raw
body, which it leaves alone) and before any listener is matched.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest

FORM = "application/x-www-form-urlencoded"


async def read_form_body_again(req: AsyncBoltRequest, next) -> None:
    if not req.body and req.raw_body and req.content_type == FORM:
        fields = dict(parse_qsl(req.raw_body, keep_blank_values=True))
        if "payload" not in fields:  # a real interaction Bolt already read
            req.body = fields
            build_async_context(req.context, fields)  # user, team, response_url from it
    await next()
