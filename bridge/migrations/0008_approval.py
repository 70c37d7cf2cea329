from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('bridge', '0007_lookup_results')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Draft',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('room', fields.CharField(description='chat target it was written in and is shown in', max_length=255)),
                ('author', fields.CharField(description='platform:user_id of who wrote it', max_length=255)),
                ('author_name', fields.CharField(default='', description='their display name then', max_length=255)),
                ('network', fields.CharField(description='network account it would act on', max_length=32)),
                ('action', fields.CharField(description='post, reply, dm, like, repost or follow', max_length=16)),
                ('subject', fields.CharField(default='', description='what it acts on: a post ref, a handle', max_length=512)),
                ('target_url', fields.CharField(default='', description="where it would go: the parent's link", max_length=1024)),
                ('text', fields.TextField(default='', description='the text to send (edits replace it)', unique=False)),
                ('request', fields.JSONField(description='what the action needs: the parent post, the author', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharField(default='waiting', description='waiting, sending, sent, failed, rejected or expired', max_length=16)),
                ('message_id', fields.CharField(default='', description='the chat message that shows the draft', max_length=64)),
                ('decided_by', fields.CharField(default='', description='platform:user_id of who approved or rejected', max_length=255)),
                ('decided_by_name', fields.CharField(default='', description='their display name then', max_length=255)),
                ('reason', fields.TextField(default='', description='why it was rejected or failed', unique=False)),
                ('result_url', fields.CharField(default='', description='the link of what was sent', max_length=1024)),
                ('expires_at', fields.DatetimeField(description='a waiting draft expires then', auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'drafts', 'app': 'bridge', 'indexes': [Index(fields=['status', 'expires_at'])], 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.CreateModel(
            name='RoomSetting',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('destination', fields.CharField(unique=True, description='chat target, platform:chat_id[/thread]', max_length=255)),
                ('approval', fields.CharField(default='off', description='off, on (texts wait) or all (every action)', max_length=8)),
                ('format', fields.CharField(default='full', description='full or compact relayed posts', max_length=8)),
            ],
            options={'table': 'room_settings', 'app': 'bridge', 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
        ops.AddField(
            model_name='OutboundAction',
            name='approved_by',
            field=fields.CharField(default='', max_length=255),
        ),
        ops.AddField(
            model_name='OutboundAction',
            name='approved_by_name',
            field=fields.CharField(default='', max_length=255),
        ),
    ]
