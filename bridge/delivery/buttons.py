"""The buttons under a relayed post, and their tokens.

A token is ``action:delivery_id``: the delivery row holds the post and the chat it was sent
to, so the token fits Telegram's 64-byte callback_data, works after a restart, and lets the
core refuse a button pressed anywhere but the chat it was sent to.
"""

from __future__ import annotations

from bridge.model import Action, Button, ButtonAction, Capabilities, Post

LABELS = {
    ButtonAction.OPEN: "Open",
    ButtonAction.REPLY: "Reply",
    ButtonAction.LIKE: "Like",
    ButtonAction.REPOST: "Repost",
    ButtonAction.FOLLOW: "Follow",
}


# The network action each button takes.
ACTIONS = {
    ButtonAction.REPLY: Action.REPLY,
    ButtonAction.LIKE: Action.LIKE,
    ButtonAction.REPOST: Action.REPOST,
    ButtonAction.FOLLOW: Action.FOLLOW,
}


def buttons_for(post: Post, delivery_id: int, capabilities: Capabilities | None = None) -> tuple[Button, ...]:
    """Open (when the post has a link) and the actions that make sense for it and that its
    network allows (``capabilities``): a direct message can only be answered, not liked or
    reposted; X refuses likes and follows to self-serve apps, so it gets no such buttons, and
    a Reply only on the posts it allows replies to (``Capabilities.per_post``)."""
    out = []
    if post.url:
        out.append(Button(ButtonAction.OPEN, LABELS[ButtonAction.OPEN], url=post.url))
    actions = (
        [ButtonAction.REPLY]
        if post.conversation
        else [ButtonAction.REPLY, ButtonAction.LIKE, ButtonAction.REPOST, ButtonAction.FOLLOW]
    )
    if capabilities is not None:
        reply = Action.DM if post.conversation else Action.REPLY
        actions = [a for a in actions if capabilities.allows(reply if a is ButtonAction.REPLY else ACTIONS[a], post)]
    out += [Button(a, LABELS[a], token=make_token(a, delivery_id)) for a in actions]
    return tuple(out)


def make_token(action: ButtonAction, delivery_id: int) -> str:
    return f"{action.value}:{delivery_id}"


def parse_token(token: str) -> tuple[ButtonAction, int] | None:
    """The action and delivery id of a token, or None when it is not one of ours."""
    action, sep, raw_id = token.partition(":")
    if not sep or not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 18:
        return None
    try:
        return ButtonAction(action), int(raw_id)
    except ValueError:
        return None
