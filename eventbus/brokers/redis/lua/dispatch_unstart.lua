    redis.call("srem", namespace .. ":__started__." .. worker_id, message_id)
