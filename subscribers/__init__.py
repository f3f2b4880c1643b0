"""Default subscribers for eventbus's built-in topics, one module per domain."""

from . import models, referrals, rewards, users, votes

__all__ = ["models", "referrals", "rewards", "users", "votes"]
