from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('bridge', '0004_action_keys')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Revision',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('value', fields.BigIntField(default=0, description='bumped by every change to subscriptions, destinations or settings')),
            ],
            options={'table': 'revision', 'app': 'bridge', 'pk_attr': 'id', 'table_description': "The revision of the bridge's settings, bumped by every change to them (one row)."},
            bases=['Model'],
        ),
    ]
