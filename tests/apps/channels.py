"""A user-defined notification channel that records what it gets in Redis (for the test process to read)."""

from __future__ import annotations

import json
from typing import Any

from eventbus.broker import get_broker
from eventbus.notifications import Notification, register_channel


class RecordingChannel:
    name = "recording"

    def send(self, notification: Notification) -> None:
        broker: Any = get_broker()
        broker.client.rpush(broker.key("test", "recording"), json.dumps(notification.to_dict()))


register_channel(RecordingChannel())
