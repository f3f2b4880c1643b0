"""Run workers with ``dramatiq eventbus.workers`` (or ``eventbus worker``).

Importing this module configures the broker from the environment, declares the bus actors,
imports the default subscribers and EVENTBUS_SUBSCRIBERS, and declares every queue.
"""

from __future__ import annotations

import logging

from eventbus.app import load_worker

logging.getLogger("eventbus").setLevel(logging.INFO)

broker = load_worker()
