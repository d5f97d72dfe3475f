"""Search: parse FHIR search parameters into a typed request, compile it into one SQL query."""
