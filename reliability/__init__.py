"""The reliability suite (issue 14): pgo-work's claims proved under faults, from outside.

Run with `scripts/reliability [--quick] [--only NAME,...]`; see docs/reliability.md.
Every scenario starts its own `pgo-work serve` processes on loopback, bounds every loop in
count and time, prints a table of its figures and says whether its targets were met.
"""
