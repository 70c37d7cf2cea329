"""Operations: the HTTP endpoint (health, metrics, webhooks) and the metrics it serves."""
