from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('bridge', '0005_revision')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Notice',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('destination', fields.CharField(description='chat target, platform:chat_id[/thread]', max_length=255)),
                ('key', fields.CharField(description='what it tells, so that it is told once (e.g. a gap of a source)', max_length=64)),
                ('text', fields.TextField(description='the notice, plain text', unique=False)),
                ('status', fields.CharField(default='pending', description='pending, sent or failed', max_length=16)),
                ('attempts', fields.IntField(default=0, description='failed attempts so far')),
                ('next_attempt_at', fields.DatetimeField(description='not sent before this time', auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(default='', description="the last failure's reason", unique=False)),
                ('sent_at', fields.DatetimeField(null=True, description='when the chat platform confirmed it', auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notices', 'app': 'bridge', 'unique_together': (('destination', 'key'),), 'indexes': [Index(fields=['status', 'next_attempt_at'])], 'pk_attr': 'id'},
            bases=['Timestamped'],
        ),
    ]
