"""What operators watch: Prometheus metrics (request counts and latencies by FHIR interaction,
gauges read from the database at scrape time) and the log format (text or one JSON object per
line with the request's correlation id). Nothing here reads or labels patient data."""
