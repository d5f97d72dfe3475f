"""Benchmarks of the FHIR store and HTTP API; run on demand, not part of the test suite."""
