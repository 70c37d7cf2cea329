from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('bridge', '0003_delivery_parts')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='OutboundAction',
            name='status',
            field=fields.CharField(description='pending, done, refused or failed', max_length=16),
        ),
        ops.AddField(
            model_name='OutboundAction',
            name='key',
            field=fields.CharField(default='', max_length=64),
        ),
        ops.AddField(
            model_name='OutboundAction',
            name='request',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
