"""Backup and restore of the whole mailbox: Postgres dump, Garage blobs, manifest, in restic.

One module per job: ``repository`` (where and with what key), ``restic`` (the adapter),
``pgdump`` (dump, restore, row counts), ``blobs`` (bucket mirror, upload, checks),
``manifest`` (what a snapshot holds), ``settings_snapshot`` (the v0.16 settings hook),
``create`` (inv backup), ``restore`` (inv restore), ``schedule`` (timer, cron, retention).
"""
