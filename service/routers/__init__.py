"""The API's routes, one router per area: jobs (users), agent (workers), ops (health, metrics)."""
