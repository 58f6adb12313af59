"""The warehouse: schema, migrations, engine and small write helpers."""
