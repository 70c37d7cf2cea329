from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('bridge', '0008_approval')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Topic',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('destination', fields.CharField(description='the room, platform:chat_id', max_length=255)),
                ('network', fields.CharField(description='network account of the feed', max_length=32)),
                ('source', fields.CharField(description='the feed: kind:value (follow:<account id>)', max_length=512)),
                ('name', fields.CharField(description="the topic's name: the account's handle or the query", max_length=255)),
                ('thread_id', fields.CharField(description="the chat platform's id of the topic or thread", max_length=64)),
            ],
            options={'table': 'topics', 'app': 'bridge', 'unique_together': (('destination', 'network', 'source'),), 'pk_attr': 'id', 'table_description': 'The chat topic or thread a room keeps for one feed (``/follow alice --topic``): a Telegram'},
            bases=['Timestamped'],
        ),
    ]
