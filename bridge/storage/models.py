"""tortoise-orm models. Explicit table names, a description on every field, retry state as
columns: a database an operator can read with plain SQL."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Timestamped(Model):
    created_at = fields.DatetimeField(auto_now_add=True, description="when the row was written")
    updated_at = fields.DatetimeField(auto_now=True, description="when the row last changed")

    class Meta:
        abstract = True


class Subscription(Timestamped):
    id = fields.IntField(primary_key=True)
    network = fields.CharField(max_length=32, description="network adapter name, e.g. bluesky")
    kind = fields.CharField(max_length=16, description="follow, query or inbox")
    value = fields.CharField(max_length=512, description="account id (follow), query text (query) or '' (inbox)")
    label = fields.CharField(max_length=512, default="", description="what people typed / the handle, for display")
    destination = fields.CharField(max_length=255, description="chat target, platform:chat_id[/thread]")
    filters = fields.JSONField(default=dict, description="include/exclude words, replies, reposts, media_only, thread")
    created_by = fields.CharField(max_length=255, default="", description="platform:user_id, or 'config'")
    enabled = fields.BooleanField(default=True, description="false while switched off")
    start_at = fields.DatetimeField(description="posts created before this are not delivered (start from now)")

    class Meta:
        table = "subscriptions"
        unique_together = (("network", "kind", "value", "destination"),)


class Destination(Timestamped):
    id = fields.IntField(primary_key=True)
    target = fields.CharField(max_length=255, unique=True, description="chat target, platform:chat_id[/thread]")
    paused = fields.BooleanField(default=False, description="true when the chat is gone or closed to the bot")
    reason = fields.TextField(default="", description="why it is paused, or the last permanent failure")
    last_delivery_at = fields.DatetimeField(null=True, description="when a post was last delivered here")
    last_notice_at = fields.DatetimeField(null=True, description="when the room was last told of a failure")
    # quiet hours {start, end, tz}: posts are held then and summarised after. No description:
    # tortoise writes it as an SQL comment that SQLite's ALTER TABLE ADD COLUMN rejects.
    quiet = fields.JSONField(null=True)

    class Meta:
        table = "destinations"


class Cursor(Timestamped):
    id = fields.IntField(primary_key=True)
    network = fields.CharField(max_length=32, description="network adapter name")
    key = fields.CharField(max_length=512, description="the adapter's name for the stream")
    value = fields.TextField(description="opaque position in the stream")

    class Meta:
        table = "cursors"
        unique_together = (("network", "key"),)


class SeenPost(Timestamped):
    id = fields.BigIntField(primary_key=True)
    network = fields.CharField(max_length=32, description="network adapter name")
    native_id = fields.CharField(max_length=512, description="the network's id of the post")
    payload = fields.JSONField(description="the Post as delivered (bridge.serialize)")
    posted_at = fields.DatetimeField(description="the post's own creation time")

    class Meta:
        table = "posts"
        unique_together = (("network", "native_id"),)


class DeliveryRow(Timestamped):
    id = fields.BigIntField(primary_key=True)
    post = fields.ForeignKeyField("bridge.SeenPost", related_name="deliveries", description="the post to deliver")
    destination = fields.CharField(max_length=255, db_index=True, description="chat target")
    subscription_id = fields.IntField(null=True, description="the subscription that produced it (may since be gone)")
    key = fields.CharField(max_length=32, description="idempotency key, stable across retries (Discord nonce)")
    # pending, held (digest or quiet hours: released as a summary at next_attempt_at), sent or failed
    status = fields.CharField(max_length=16, default="pending", description="pending, sent or failed")
    attempts = fields.IntField(default=0, description="failed attempts so far")
    next_attempt_at = fields.DatetimeField(description="not sent before this time")
    chat_message_id = fields.CharField(max_length=64, null=True, description="the chat message carrying the post")
    thread_id = fields.CharField(max_length=64, null=True, description="chat thread opened under it, if any")
    last_error = fields.TextField(default="", description="the last failure's reason")
    sent_at = fields.DatetimeField(null=True, description="when the chat platform confirmed the send")
    # The chat message ids of the parts already delivered ([[ids of part 0], [ids of part 1], ...])
    # of a post sent as several messages: a retry resumes after them. No description: see quiet.
    parts = fields.JSONField(null=True)

    class Meta:
        table = "deliveries"
        unique_together = (("post", "destination"),)
        indexes = (("status", "next_attempt_at"),)


class ChatMessage(Timestamped):
    id = fields.BigIntField(primary_key=True)
    platform = fields.CharField(max_length=32, description="chat platform")
    chat_id = fields.CharField(max_length=64, description="chat id")
    message_id = fields.CharField(max_length=64, description="the platform's message id")
    post = fields.ForeignKeyField("bridge.SeenPost", related_name="messages", description="the post it carries")
    delivery = fields.ForeignKeyField("bridge.DeliveryRow", null=True, related_name="messages", description="its delivery")

    class Meta:
        table = "chat_messages"
        unique_together = (("platform", "chat_id", "message_id"),)


class OutboundAction(Timestamped):
    id = fields.BigIntField(primary_key=True)
    actor = fields.CharField(max_length=255, description="platform:user_id of who asked")
    actor_name = fields.CharField(max_length=255, default="", description="their display name then")
    room = fields.CharField(max_length=255, description="chat target it was asked from")
    network = fields.CharField(max_length=32, default="", description="network acted on")
    action = fields.CharField(max_length=16, description="post, reply, dm, like, repost or follow")
    subject = fields.CharField(max_length=512, default="", description="what it acts on: a post ref, a handle")
    text = fields.TextField(default="", description="the text sent, if any")
    status = fields.CharField(max_length=16, description="pending, done, refused or failed")
    # The following two have no description: tortoise writes it as an SQL comment that
    # SQLite's ALTER TABLE ADD COLUMN rejects.
    # The key the network deduplicates on (Bluesky: the record key), written before the call
    # so that a retry after a crash cannot create twice; "" for refusals.
    key = fields.CharField(max_length=64, default="")
    # What a retry needs to do the action again: {"post": Post JSON} or {"author": …}.
    request = fields.JSONField(null=True)
    result_ref = fields.CharField(max_length=512, default="", description="what the network created")
    result_url = fields.CharField(max_length=1024, default="", description="its link")
    error = fields.TextField(default="", description="why it was refused or failed")
    # Who approved it (a room with /approval on), written with the pending row, never after.
    approved_by = fields.CharField(max_length=255, default="")
    approved_by_name = fields.CharField(max_length=255, default="")

    class Meta:
        table = "outbound_actions"


class RoomSetting(Timestamped):
    id = fields.IntField(primary_key=True)
    destination = fields.CharField(max_length=255, unique=True, description="chat target, platform:chat_id[/thread]")
    approval = fields.CharField(max_length=8, default="off", description="off, on (texts wait) or all (every action)")
    format = fields.CharField(max_length=8, default="full", description="full or compact relayed posts")

    class Meta:
        table = "room_settings"


class Topic(Timestamped):
    """The chat topic or thread a room keeps for one feed (``/follow alice --topic``): a Telegram
    forum topic, a Discord forum post or thread. Kept per room and feed, so a restart, or an
    unfollow and a follow again, posts into the same one."""

    id = fields.IntField(primary_key=True)
    destination = fields.CharField(max_length=255, description="the room, platform:chat_id")
    network = fields.CharField(max_length=32, description="network account of the feed")
    source = fields.CharField(max_length=512, description="the feed: kind:value (follow:<account id>)")
    name = fields.CharField(max_length=255, description="the topic's name: the account's handle or the query")
    thread_id = fields.CharField(max_length=64, description="the chat platform's id of the topic or thread")

    class Meta:
        table = "topics"
        unique_together = (("destination", "network", "source"),)


class Draft(Timestamped):
    id = fields.BigIntField(primary_key=True)
    room = fields.CharField(max_length=255, description="chat target it was written in and is shown in")
    author = fields.CharField(max_length=255, description="platform:user_id of who wrote it")
    author_name = fields.CharField(max_length=255, default="", description="their display name then")
    network = fields.CharField(max_length=32, description="network account it would act on")
    action = fields.CharField(max_length=16, description="post, reply, dm, like, repost or follow")
    subject = fields.CharField(max_length=512, default="", description="what it acts on: a post ref, a handle")
    target_url = fields.CharField(max_length=1024, default="", description="where it would go: the parent's link")
    text = fields.TextField(default="", description="the text to send (edits replace it)")
    request = fields.JSONField(description="what the action needs: the parent post, the author")
    status = fields.CharField(
        max_length=16, default="waiting", description="waiting, sending, sent, failed, rejected or expired"
    )
    message_id = fields.CharField(max_length=64, default="", description="the chat message that shows the draft")
    decided_by = fields.CharField(max_length=255, default="", description="platform:user_id of who approved or rejected")
    decided_by_name = fields.CharField(max_length=255, default="", description="their display name then")
    reason = fields.TextField(default="", description="why it was rejected or failed")
    result_url = fields.CharField(max_length=1024, default="", description="the link of what was sent")
    expires_at = fields.DatetimeField(description="a waiting draft expires then")

    class Meta:
        table = "drafts"
        indexes = (("status", "expires_at"),)


class Notice(Timestamped):
    id = fields.BigIntField(primary_key=True)
    destination = fields.CharField(max_length=255, description="chat target, platform:chat_id[/thread]")
    key = fields.CharField(max_length=64, description="what it tells, so that it is told once (e.g. a gap of a source)")
    text = fields.TextField(description="the notice, plain text")
    status = fields.CharField(max_length=16, default="pending", description="pending, sent or failed")
    attempts = fields.IntField(default=0, description="failed attempts so far")
    next_attempt_at = fields.DatetimeField(description="not sent before this time")
    last_error = fields.TextField(default="", description="the last failure's reason")
    sent_at = fields.DatetimeField(null=True, description="when the chat platform confirmed it")

    class Meta:
        table = "notices"
        unique_together = (("destination", "key"),)
        indexes = (("status", "next_attempt_at"),)


class LookupResult(Timestamped):
    """A /find, /who or /search answer whose buttons may be pressed later: the token of each
    button names this row (and an entry in it), so a press after a restart is answered from
    here, and only in the room the answer was sent to."""

    id = fields.BigIntField(primary_key=True)
    room = fields.CharField(max_length=255, description="chat target the answer was sent to")
    network = fields.CharField(max_length=32, description="account (config section) looked up on")
    kind = fields.CharField(max_length=16, description="find, who or search")
    query = fields.TextField(description="the words, handle or query asked")
    page = fields.JSONField(description="what the answer shows: accounts or the query, and the cursors of its pages")

    class Meta:
        table = "lookup_results"


class AdapterState(Timestamped):
    id = fields.IntField(primary_key=True)
    adapter = fields.CharField(max_length=32, description="adapter name")
    key = fields.CharField(max_length=255, description="the adapter's key, e.g. session")
    value = fields.TextField(description="the saved value (may be a secret: never logged)")

    class Meta:
        table = "adapter_state"
        unique_together = (("adapter", "key"),)


class Revision(Model):
    """The revision of the bridge's settings, bumped by every change to them (one row).

    Subscriptions, destinations (pause, resume, quiet hours) and room settings bump it in the
    change's own transaction. A running bridge compares it with the value it last loaded, so
    a change made by any process (the command line, another worker) reaches it."""

    id = fields.IntField(primary_key=True)
    value = fields.BigIntField(default=0, description="bumped by every change to subscriptions, destinations or settings")

    class Meta:
        table = "revision"


class Worker(Model):
    """One running ``bridge run`` process (several share a Postgres database). Its row is
    written at start, its heartbeat moved on with every lease renewal, and removed at a clean
    stop; a row whose heartbeat is old belongs to a process that died."""

    id = fields.BigIntField(primary_key=True)
    host = fields.CharField(max_length=255, description="the machine's host name")
    pid = fields.IntField(description="the process id on that machine")
    started_at = fields.DatetimeField(description="when the process started")
    heartbeat = fields.DatetimeField(description="the database's clock at the worker's last renewal")

    class Meta:
        table = "workers"


class Lease(Model):
    """A claim on one piece of work that only one worker may do at a time: a room
    (``dest:telegram:-100…``) or a listener (``listen:telegram:updates``). Held while
    ``expires_at`` (the database's clock) is ahead; ``token`` moves on at every new claim, so a
    holder that lost it cannot renew it by mistake."""

    name = fields.CharField(max_length=512, primary_key=True, description="what is claimed")
    holder = fields.BigIntField(null=True, description="the workers.id holding it, null when free")
    expires_at = fields.DatetimeField(description="free for another worker from then on")
    token = fields.BigIntField(default=0, description="fencing token: bumped at every new claim")

    class Meta:
        table = "leases"
        indexes = (("holder",),)
