"""The names the send jobs run under: one queue, two actors (imported by the jobs and by what builds them)."""

from __future__ import annotations

EMAIL_QUEUE = "email"
SEND_ACTOR = "eventbus.send_email"
CHUNK_ACTOR = "eventbus.send_email_chunk"
