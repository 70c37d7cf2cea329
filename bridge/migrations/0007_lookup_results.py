from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('bridge', '0006_notices')]

    initial = False

    operations = [
        ops.CreateModel(
            name='LookupResult',
            fields=[
                ('created_at', fields.DatetimeField(description='when the row was written', auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(description='when the row last changed', auto_now=True, auto_now_add=False)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('room', fields.CharField(description='chat target the answer was sent to', max_length=255)),
                ('network', fields.CharField(description='account (config section) looked up on', max_length=32)),
                ('kind', fields.CharField(description='find, who or search', max_length=16)),
                ('query', fields.TextField(description='the words, handle or query asked', unique=False)),
                ('page', fields.JSONField(description='what the answer shows: accounts or the query, and the cursors of its pages', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'lookup_results', 'app': 'bridge', 'pk_attr': 'id', 'table_description': 'A /find, /who or /search answer whose buttons may be pressed later: the token of each'},
            bases=['Timestamped'],
        ),
    ]
