"""What a Milvus collection holds, read back the same way on every engine."""


def count(client, name: str, **kwargs) -> int:
    """The number of rows in collection ``name`` (``count(*)``, which every engine answers)."""
    return client.query(name, output_fields=["count(*)"], **kwargs)[0]["count(*)"]
