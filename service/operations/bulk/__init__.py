"""Bulk Data export (HL7 Bulk Data Access 2.0): kick-off, durable jobs run in chunks by the
worker under the requester's access, the manifest, and the command-line export."""
