from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('bridge', '0009_topics')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Worker',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('host', fields.CharField(description="the machine's host name", max_length=255)),
                ('pid', fields.IntField(description='the process id on that machine')),
                ('started_at', fields.DatetimeField(description='when the process started', auto_now=False, auto_now_add=False)),
                ('heartbeat', fields.DatetimeField(description="the database's clock at the worker's last renewal", auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'workers', 'app': 'bridge', 'pk_attr': 'id', 'table_description': 'One running ``bridge run`` process (several share a Postgres database). Its row is'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Lease',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, description='what is claimed', max_length=512)),
                ('holder', fields.BigIntField(null=True, description='the workers.id holding it, null when free')),
                ('expires_at', fields.DatetimeField(description='free for another worker from then on', auto_now=False, auto_now_add=False)),
                ('token', fields.BigIntField(default=0, description='fencing token: bumped at every new claim')),
            ],
            options={'table': 'leases', 'app': 'bridge', 'indexes': [Index(fields=['holder'])], 'pk_attr': 'name', 'table_description': 'A claim on one piece of work that only one worker may do at a time: a room'},
            bases=['Model'],
        ),
    ]
