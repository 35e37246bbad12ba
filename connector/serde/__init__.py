"""Avro schemas, framing, the codec, the fast reader and the Schema Registry client."""
