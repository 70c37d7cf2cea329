"""X (Twitter) API v2: the request path, OAuth 1.0a signing, the cost governor, text and handle
rules. The network adapter that uses them is wired into the core separately."""
