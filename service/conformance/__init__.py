"""Conformance: the FHIR package under `profiles/`, structural validation, terminology."""
