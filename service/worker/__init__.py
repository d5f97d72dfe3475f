"""Background work driven from durable rows in the database (deliveries, exports).

Nothing here keeps state that must survive: every task finds its work by querying the database,
claims it there (row locks, `FOR UPDATE SKIP LOCKED` on PostgreSQL), and records progress there,
so any number of server instances can run the same tasks and a killed process loses nothing.
"""
