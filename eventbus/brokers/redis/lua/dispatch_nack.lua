        -- The worker's in-memory copy (final attempt's retries, error and traceback) replaces the stale
        -- stored one when a message is dead-lettered.
        local message = ARGS[2] or redis.call("hget", queue_messages, message_id)
