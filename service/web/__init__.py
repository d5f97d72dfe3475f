"""The web app for people at `/app`: static files only, talking to the public FHIR API and the
built-in authorization server exactly as any PGO or SMART app would (no private endpoints)."""
