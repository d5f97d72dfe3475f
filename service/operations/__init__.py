"""Named FHIR operations ($everything, $validate, $extract, ...): one module each, one registry.

Each operation is a function of an `OperationCall` (the store, the runtime, the parameters)
returning an `OperationResult`. It reaches data only through the per-request store, so it sees
exactly what the caller may see.
"""
