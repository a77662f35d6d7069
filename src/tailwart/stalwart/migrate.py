"""``inv migrate-stalwart --dry-run``: the data-preserving path from the v0.15.5 stack."""

from __future__ import annotations

from ..settings import Settings

STEPS = """\
Moving this mailbox from Stalwart v0.15.5 (config.toml) to v0.16.18 (config.json + objects).

What is kept (a v0.16 binary migrates the store in place, schema version 5 -> 6):
  - mail: messages, mailboxes, threads, the full-text tables (s_email, s_cal, s_card,
    s_file, s_trace) in Postgres database {db} on {db_host}
  - blobs: bucket {bucket} on Garage ({s3}); v0.16 does not touch them
  - Redis DB {redis_db}: lookup data only, rebuilt as needed
What is wiped by the first start in recovery mode:
  - every setting stored in the database (v0.15 web-admin edits), the directory
    (accounts, domains, groups, lists, OAuth clients), DMARC/TLS/ARF reports, the task
    queue, telemetry, spam samples and quota counters
  - v0.15's config.toml is not read at all: listeners, PROXY trust, routing, logging come
    back only through `inv provision`
Accounts must be re-created as local@{domain} (bare logins get the default domain).

Steps:
  1. Export the directory while v0.15.5 still runs (upstream's migrate_v016.py dump +
     convert); rewrite any "%{{env:X}}%" string it emits into
     {{"@type":"EnvironmentVariable","variableName":"X"}}: the converter copies store
     passwords and S3 keys verbatim.
  2. inv down (both containers), then back up the database: pg_dump {db}.
  3. Set STALWART_IMAGE=stalwartlabs/stalwart:v0.16.18 and STALWART_RECOVERY_ADMIN in .env;
     inv render writes config/config.json (the DataStore only).
  4. Start Stalwart once with STALWART_RECOVERY_MODE=1: the store is migrated (v5 -> v6)
     and nothing is seeded.
  5. inv provision --restart never: stores first (blob S3, in-memory Redis, search).
  6. Load the exported directory (stalwart-cli apply --file export.json).
  7. Stop, start normally (inv up): defaults are seeded for the empty types.
  8. inv provision: listeners with PROXY trust, hostname, domain + DKIM, relay, tracer;
     it restarts Stalwart alone.
  9. Run the quota-recalculation task; check mail over IMAP and through the edge.
Rollback: inv down, restore the pg_dump of step 2, pin v0.15.5 again (an older tailwart).

This is an explanation only: tailwart has not run this path against real servers, so
`inv migrate-stalwart` without --dry-run refuses.
"""


def explain(settings: Settings) -> str:
    return STEPS.format(
        db=settings["STALWART_DB_NAME"],
        db_host=settings["STALWART_DB_HOST"],
        bucket=settings["STALWART_S3_BUCKET"],
        s3=f"{settings['STALWART_S3_HOST']}:{settings['STALWART_S3_PORT']}",
        redis_db=settings["STALWART_REDIS_DB"],
        domain=settings["MAIL_DOMAIN"],
    )
