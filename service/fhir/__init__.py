"""FHIR primitives shared by every layer: errors as OperationOutcomes, dates, units, references.

This package imports nothing else from `service`, so REST, operations, store, access and
conformance can all depend on it without cycles.
"""
