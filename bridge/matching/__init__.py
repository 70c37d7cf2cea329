"""Which subscriptions want a post: the route index and the per-subscription filters."""
