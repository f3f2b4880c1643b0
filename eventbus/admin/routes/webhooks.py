"""``POST /webhooks/{source}``: signed inbound webhooks, published as ``webhook.<source>.received``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from eventbus.admin.responses import errors
from eventbus.admin.webhooks import SOURCE_PATTERN, receive_webhook, secret_for

router = APIRouter(tags=["webhooks"])


class WebhookAccepted(BaseModel):
    event_id: str
    topic: str


_DESCRIPTION = """Verifies the sender, then publishes `webhook.<source>.received` with the parsed body, once per
delivery id (a repeated delivery answers 202 again and publishes nothing). The secret of a source is
`EVENTBUS_WEBHOOK_SECRET_<SOURCE>` (upper case, '-' as '_'); a source without one answers 404.

* `shopify`: `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(secret, raw body)); delivery id `X-Shopify-Webhook-Id`;
  JSON body.
* `coinpayments`: `HMAC` = hex(HMAC-SHA512(secret, raw body)); form-encoded IPN body; delivery id = field `ipn_id`.
* any other source: `X-Eventbus-Timestamp` (unix seconds, within 300 s of the server clock) and
  `X-Eventbus-Signature: sha256=<hex(HMAC-SHA256(secret, "<timestamp>.<raw body>"))>`; delivery id
  `X-Eventbus-Delivery`; JSON object body (or empty).
"""


@router.post(
    "/webhooks/{source}",
    status_code=202,
    response_model=WebhookAccepted,
    responses=errors(401, 404, 413, 422, 503),
    summary="Receive a signed webhook",
    description=_DESCRIPTION,
)
async def receive(
    source: Annotated[
        str,
        Path(pattern=SOURCE_PATTERN, description="Sender name, e.g. 'shopify', 'coinpayments', 'billing'."),
    ],
    request: Request,
) -> WebhookAccepted:
    settings = request.app.state.settings
    secret_for(settings, source)  # 404 before reading the body of an unknown source
    body = await request.body()
    event = await run_in_threadpool(receive_webhook, settings, source, body, request.headers, time.time())
    return WebhookAccepted(event_id=event.id, topic=event.topic)
