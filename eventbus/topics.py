"""Built-in topics and their payload schemas (field names are part of the contract; ``?`` = optional).

Imported by ``eventbus`` itself, so a publisher can publish them without importing the default
subscribers. Text that lands in an email subject must be one line; addresses must be valid.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from eventbus.topic import topic


def _one_line(value: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError("must be one line (no CR, LF or NUL): it is used in email subjects")
    return value


def _address(value: str) -> str:
    from eventbus.mail.message import check_address

    try:
        check_address(value, field="address")
    except Exception as exc:
        raise ValueError(str(exc)) from None
    return value


Line = Annotated[str, AfterValidator(_one_line)]
Email = Annotated[str, AfterValidator(_address)]
Id = str | int


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


@topic("vote.created")
class VoteCreated(_Payload):
    """A user voted for a model; the voter gets a confirmation."""

    voter_email: Email
    model_id: Id
    model_name: Line
    profile_url: str | None = None


@topic("model.progress_milestone")
class ModelProgressMilestone(_Payload):
    """A model reached a vote milestone; its subscribers get a progress update."""

    model_id: Id
    model_name: Line
    milestone: Line | int
    vote_count: int
    subscriber_emails: list[Email]


@topic("model.rank_changed")
class ModelRankChanged(_Payload):
    """A model moved on the leaderboard; its supporters get a rank update."""

    model_id: Id
    model_name: Line
    new_rank: int
    old_rank: int
    vote_count: int
    supporter_emails: list[Email]


@topic("reward.earned")
class RewardEarned(_Payload):
    """A user earned a reward; they get it by email."""

    user_email: Email
    reward_name: Line
    reward_details: str | None = None


@topic("user.registered")
class UserRegistered(_Payload):
    """A user signed up: welcome email, verification email (with a URL), in-app notification."""

    email: Email
    name: Line
    verification_url: str | None = None


@topic("referral.joined")
class ReferralJoined(_Payload):
    """Someone joined through a user's invite."""

    referrer_email: Email
    referred_name: Line


@topic("referral.milestone")
class ReferralMilestone(_Payload):
    """A user reached a referral milestone."""

    user_email: Email
    referral_count: int
    milestone: Line | int
