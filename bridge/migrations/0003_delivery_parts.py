from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('bridge', '0002_quiet_hours')]

    initial = False

    operations = [
        ops.AddField(
            model_name='DeliveryRow',
            name='parts',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
