# Backup and restore: restic, a current release built from its Go module (Debian's
# package is 0.14) into the tool cache, outside the work tree; pg_dump/pg_restore/psql
# come with Debian's PostgreSQL (30-backends), systemd-analyze with 20-deploy.
# Keep restic_version equal to tailwart.backup.restic.RESTIC_VERSION.
restic_version=v0.18.1
restic_bin="$TAILWART_CACHE/tools/restic-$restic_version/restic"
if [ ! -x "$restic_bin" ]; then
  echo "setup: building restic $restic_version (a few minutes, once)"
  go_module_build github.com/restic/restic "$restic_version" ./cmd/restic "$restic_bin"
fi
apt_need postgresql-client-15
"$restic_bin" version >/dev/null
