"""pgo-work: a FHIR R4 server for patient-owned work data, shared under the patient's consent."""

__version__ = "0.1.0"
