"""Per-queue configuration from the environment, with the source systems' names and defaults (issue 4)."""

from __future__ import annotations

import pytest

from eventbus.errors import ConfigError
from eventbus.queues import Rate, parse_rate
from eventbus.settings import Settings


def test_the_source_systems_defaults_apply_without_any_variable():
    settings = Settings.from_env({})
    email, xp = settings.queue_config("email"), settings.queue_config("xp")
    webhooks, notifications = settings.queue_config("webhooks"), settings.queue_config("notifications")
    assert (email.concurrency, email.rate_limit, email.attempts) == (5, Rate(10, 1), 5)
    assert (xp.concurrency, xp.rate_limit, xp.attempts) == (10, Rate(50, 1), 3)
    assert (webhooks.concurrency, webhooks.rate_limit, webhooks.attempts) == (3, Rate(20, 1), 5)
    assert webhooks.min_backoff_ms == 5_000
    assert (notifications.concurrency, notifications.rate_limit, notifications.attempts) == (10, Rate(30, 1), 3)
    other = settings.queue_config("reports")
    assert (other.concurrency, other.rate_limit, other.max_retries) == (None, None, settings.max_retries)


def test_the_source_systems_variables_override_them():
    settings = Settings.from_env(
        {
            "EMAIL_QUEUE_CONCURRENCY": "2",
            "EMAIL_QUEUE_RATE_LIMIT": "600/m",
            "NOTIFICATION_QUEUE_CONCURRENCY": "4",
            "WEBHOOK_QUEUE_CONCURRENCY": "1",
            "XP_QUEUE_RATE_LIMIT": "off",
            "EXPORTS_QUEUE_CONCURRENCY": "2",
            "EXPORTS_QUEUE_ATTEMPTS": "7",
            "JOB_MAX_RETRIES": "9",
            "JOB_RETRY_DELAY": "250",
        }
    )
    assert settings.queue_config("email").concurrency == 2
    assert settings.queue_config("email").rate_limit == Rate(600, 60)
    assert settings.queue_config("notifications").concurrency == 4
    assert settings.queue_config("webhooks").concurrency == 1
    assert settings.queue_config("xp").rate_limit is None
    # JOB_* set explicitly replace every queue's built-in retry policy; a queue's own variable wins
    assert settings.queue_config("email").max_retries == 9
    assert settings.queue_config("webhooks").min_backoff_ms == 250
    assert settings.queue_config("exports").concurrency == 2 and settings.queue_config("exports").attempts == 7
    assert settings.queue_config("exports.DQ") == settings.queue_config("exports")


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10/s", Rate(10, 1)), ("600/m", Rate(600, 60)), ("5/10s", Rate(5, 10)), ("100/hour", Rate(100, 3600))],
)
def test_rates_are_read_in_the_usual_forms(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMAIL_QUEUE_RATE_LIMIT": "fast"}, "write it as '10/s'"),
        ({"EMAIL_QUEUE_CONCURRENCY": "lots"}, "not a whole number"),
        ({"EMAIL_QUEUE_ATTEMPTS": "0"}, ">= 1"),
        ({"MAIL_MAX_RETRIES": "-1"}, ">= 0"),
        ({"MAIL_MAX_RETRIES": "many"}, "not a whole number"),
    ],
)
def test_bad_values_are_refused_with_the_fix(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_deliveries_on_a_configured_queue_take_its_retry_policy_unless_the_subscription_sets_one():
    from eventbus.delivery import delivery_message
    from eventbus.subscriber import Subscription

    settings = Settings.from_env({})
    event = {"id": "e1", "topic": "vote.created"}
    on_webhooks = delivery_message(event, Subscription("hook", "vote.created", print, queue="webhooks"), None, settings)
    own = delivery_message(
        event, Subscription("own", "vote.created", print, queue="webhooks", max_retries=1), None, settings
    )
    assert (on_webhooks.options["max_retries"], on_webhooks.options["min_backoff"]) == (4, 5_000)
    assert own.options["max_retries"] == 1


def test_retries_come_from_the_queues_own_variable_then_mail_max_retries_then_job_max_retries():
    both = Settings.from_env({"EMAIL_QUEUE_ATTEMPTS": "2", "MAIL_MAX_RETRIES": "6", "JOB_MAX_RETRIES": "7"})
    assert both.queue_config("email").attempts == 2
    mail = Settings.from_env({"MAIL_MAX_RETRIES": "6", "JOB_MAX_RETRIES": "7"})
    assert mail.queue_config("email").max_retries == 6
    assert mail.queue_config("notifications").max_retries == 7 and mail.queue_config("default").max_retries == 7
    assert Settings.from_env({}).queue_config("email").attempts == 5
