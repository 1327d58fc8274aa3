"""The scheduler: APScheduler with its jobs in our database, one elected leader.

- `leader`: leader election on the `leases` table (heartbeat, fencing token).
- `service`: the scheduler process (`flask --app wsgi mailprefs scheduler`, or a thread
  of `make run`): stands by, runs APScheduler only while it leads.
- `jobs`: the job functions (thin: they move database state and outbox rows) and the
  recurring jobs' definitions.
- `housekeeping`: what the housekeeping jobs change.
- `view`: what the dashboard lists and controls.
"""
