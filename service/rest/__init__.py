"""The FHIR REST layer: routing, content negotiation, headers and errors. It never builds SQL."""
