from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='AdapterState',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('adapter', fields.CharField(description='adapter name', max_length=32)),
                ('key', fields.CharField(description="the adapter's key, e.g. session", max_length=255)),
                ('value', fields.TextField(description='the saved value (may be a secret: never logged)', unique=False)),
            ],
            options={'table': 'adapter_state', 'app': 'bridge', 'unique_together': (('adapter', 'key'),), 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.CreateModel(
            name='Cursor',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('network', fields.CharField(description='network adapter name', max_length=32)),
                ('key', fields.CharField(description="the adapter's name for the stream", max_length=512)),
                ('value', fields.TextField(description='opaque position in the stream', unique=False)),
            ],
            options={'table': 'cursors', 'app': 'bridge', 'unique_together': (('network', 'key'),), 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.CreateModel(
            name='Destination',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('target', fields.CharField(unique=True, description='chat target, platform:chat_id[/thread]', max_length=255)),
                ('paused', fields.BooleanField(default=False, description='true when the chat is gone or closed to the bot')),
                ('reason', fields.TextField(default='', description='why it is paused, or the last permanent failure', unique=False)),
                ('last_delivery_at', fields.DatetimeField(null=True, description='when a post was last delivered here', auto_now=False, auto_now_add=False)),
                ('last_notice_at', fields.DatetimeField(null=True, description='when the room was last told of a failure', auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'destinations', 'app': 'bridge', 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.CreateModel(
            name='OutboundAction',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('actor', fields.CharField(description='platform:user_id of who asked', max_length=255)),
                ('actor_name', fields.CharField(default='', description='their display name then', max_length=255)),
                ('room', fields.CharField(description='chat target it was asked from', max_length=255)),
                ('network', fields.CharField(default='', description='network acted on', max_length=32)),
                ('action', fields.CharField(description='post, reply, dm, like, repost or follow', max_length=16)),
                ('subject', fields.CharField(default='', description='what it acts on: a post ref, a handle', max_length=512)),
                ('text', fields.TextField(default='', description='the text sent, if any', unique=False)),
                ('status', fields.CharField(description='done, refused or failed', max_length=16)),
                ('result_ref', fields.CharField(default='', description='what the network created', max_length=512)),
                ('result_url', fields.CharField(default='', description='its link', max_length=1024)),
                ('error', fields.TextField(default='', description='why it was refused or failed', unique=False)),
            ],
            options={'table': 'outbound_actions', 'app': 'bridge', 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.CreateModel(
            name='SeenPost',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('network', fields.CharField(description='network adapter name', max_length=32)),
                ('native_id', fields.CharField(description="the network's id of the post", max_length=512)),
                ('payload', fields.JSONField(description='the Post as delivered (bridge.serialize)', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('posted_at', fields.DatetimeField(description="the post's own creation time", auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'posts', 'app': 'bridge', 'unique_together': (('network', 'native_id'),), 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.CreateModel(
            name='DeliveryRow',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('post', fields.ForeignKeyField('bridge.SeenPost', source_field='post_id', description='the post to deliver', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.CASCADE)),
                ('destination', fields.CharField(db_index=True, description='chat target', max_length=255)),
                ('subscription_id', fields.IntField(null=True, description='the subscription that produced it (may since be gone)')),
                ('key', fields.CharField(description='idempotency key, stable across retries (Discord nonce)', max_length=32)),
                ('status', fields.CharField(default='pending', description='pending, sent or failed', max_length=16)),
                ('attempts', fields.IntField(default=0, description='failed attempts so far')),
                ('next_attempt_at', fields.DatetimeField(description='not sent before this time', auto_now=False, auto_now_add=False)),
                ('chat_message_id', fields.CharField(null=True, description='the chat message carrying the post', max_length=64)),
                ('thread_id', fields.CharField(null=True, description='chat thread opened under it, if any', max_length=64)),
                ('last_error', fields.TextField(default='', description="the last failure's reason", unique=False)),
                ('sent_at', fields.DatetimeField(null=True, description='when the chat platform confirmed the send', auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'deliveries', 'app': 'bridge', 'unique_together': (('post', 'destination'),), 'indexes': [Index(fields=['status', 'next_attempt_at'])], 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.CreateModel(
            name='ChatMessage',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('platform', fields.CharField(description='chat platform', max_length=32)),
                ('chat_id', fields.CharField(description='chat id', max_length=64)),
                ('message_id', fields.CharField(description="the platform's message id", max_length=64)),
                ('post', fields.ForeignKeyField('bridge.SeenPost', source_field='post_id', description='the post it carries', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('delivery', fields.ForeignKeyField('bridge.DeliveryRow', source_field='delivery_id', null=True, description='its delivery', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'chat_messages', 'app': 'bridge', 'unique_together': (('platform', 'chat_id', 'message_id'),), 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.CreateModel(
            name='Subscription',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('network', fields.CharField(description='network adapter name, e.g. bluesky', max_length=32)),
                ('kind', fields.CharField(description='follow, query or inbox', max_length=16)),
                ('value', fields.CharField(description="account id (follow), query text (query) or '' (inbox)", max_length=512)),
                ('label', fields.CharField(default='', description='what people typed / the handle, for display', max_length=512)),
                ('destination', fields.CharField(description='chat target, platform:chat_id[/thread]', max_length=255)),
                ('filters', fields.JSONField(default=dict, description='include/exclude words, replies, reposts, media_only, thread', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_by', fields.CharField(default='', description="platform:user_id, or 'config'", max_length=255)),
                ('enabled', fields.BooleanField(default=True, description='false while switched off')),
                ('start_at', fields.DatetimeField(description='posts created before this are not delivered (start from now)', auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'subscriptions', 'app': 'bridge', 'unique_together': (('network', 'kind', 'value', 'destination'),), 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
    ]
