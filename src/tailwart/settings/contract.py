"""The .env contract: every key tailwart reads, declared once.

Loading, validation, ``.env.example``, the README table, error messages and
the consistency checks all derive from ``KEYS``. Nothing else invents a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import limits
from .kinds import Kind


@dataclass(frozen=True)
class Key:
    name: str
    kind: Kind
    help: str
    group: str
    required: bool = True
    default: str | None = None
    #: example value; for a secret, the prefix of the generated example
    example: str | None = None
    #: passed into the stalwart container (read there through EnvironmentVariable references)
    stalwart: bool = False
    #: an empty value means "unset" (the default); False: an empty value is refused
    empty_is_default: bool = True
    #: a secret the operator generates for tailwart: refused when word-like (only letters,
    #: or only digits), since masking such a value would give it away (masking.py)
    strong: bool = False
    #: a secret written name:password: the password part is the secret (masked alone too)
    pair: bool = False
    #: a required key that may stay unset when this other key is set (its alternative)
    required_unless: str | None = None

    @property
    def secret(self) -> bool:
        return self.kind is Kind.SECRET


MAIL = "Mail identity"
EDGE = "Edge (public caddy-l4 host)"
MAILBOX = "Mailbox (tailnet-only Stalwart)"
POSTGRES = "Postgres (data, full-text search, directory)"
REDIS = "Redis (lookup store)"
GARAGE = "Garage S3 (blobs)"
TLS = "TLS certificates (Stalwart: 465, 993, STARTTLS)"
SMARTHOST = "Outbound relay (smarthost)"
TAILSCALE = "Tailscale and policy patching"
DOCTOR = "Checks (inv doctor)"
BACKUP = "Backup and restore (inv backup, inv restore)"
DNS = "DNS records (inv dns)"

KEYS: tuple[Key, ...] = (
    # --- mail identity
    Key("MAIL_DOMAIN", Kind.FQDN, "the mail domain (right of @)", MAIL, example="example.org"),
    Key(
        "MAIL_HOSTNAME",
        Kind.FQDN,
        "public mail host name: MX target, HELO, certificates",
        MAIL,
        example="mail.example.org",
    ),
    # --- edge
    Key(
        "EDGE_TAILNET_ADDR",
        Kind.HOST_CIDR,
        "the edge's tailnet address, the only source Stalwart trusts for PROXY headers",
        EDGE,
        example="100.64.0.10/32",
    ),
    Key(
        "EDGE_TAILNET_ADDR6",
        Kind.HOST_CIDR,
        "the edge's IPv6 tailnet address (/128): MagicDNS resolves to both, so Stalwart "
        "trusts both",
        EDGE,
        example="fd7a:115c:a1e0::a/128",
    ),
    Key(
        "EDGE_TAG",
        Kind.TAG,
        "tag of the edge node in the tailnet policy",
        EDGE,
        required=False,
        default="tag:reverse-proxy",
    ),
    Key(
        "EDGE_PUBLIC_IP",
        Kind.IP,
        "the edge's public address (DNS checks)",
        EDGE,
        required=False,
        example="203.0.113.25",
    ),
    Key(
        "EDGE_PUBLIC_ADDRESSES",
        Kind.IP_LIST,
        "every public address of every edge host, IPv4 and IPv6 (comma-separated): the A "
        "and AAAA of MAIL_HOSTNAME and its aliases that inv dns publishes (default: "
        "EDGE_PUBLIC_IP)",
        EDGE,
        required=False,
        example="203.0.113.25,2001:db8::25",
    ),
    Key(
        "EDGE_HOSTS",
        Kind.SSH_TARGETS,
        "SSH targets for inv deploy-edge when --host is not given",
        EDGE,
        required=False,
        example="root@edge1.example.org",
    ),
    Key(
        "EDGE_ROOT",
        Kind.ABSPATH,
        "remote directory holding releases, lock and audit log",
        EDGE,
        required=False,
        default="/opt/tailwart-edge",
    ),
    Key(
        "EDGE_KEEP_RELEASES",
        Kind.UINT,
        "how many releases deploy-edge keeps on each host",
        EDGE,
        required=False,
        default="5",
    ),
    Key(
        "EDGE_PUBLIC_PORTS",
        Kind.MAIL_PORTS,
        "mail ports the edge serves to the internet; the others stay tailnet-only (members "
        "reach them on the mailbox directly, without PROXY). 25 must be public",
        EDGE,
        required=False,
        default="25,465,587,143,993",
        empty_is_default=False,
    ),
    Key(
        "EDGE_MAX_SESSIONS",
        Kind.SESSIONS,
        "concurrent client sessions (mostly idle IMAP) each edge host must hold: inv "
        "edge-status and inv doctor say when a host's limits (open files, local ports "
        "toward the mailbox) cap the edge below it",
        EDGE,
        required=False,
        default="20000",
    ),
    # --- mailbox
    Key(
        "STALWART_IMAGE",
        Kind.IMAGE,
        "pinned Stalwart image (inv check refuses v0.15.x and anything older than 0.16.15)",
        MAILBOX,
        required=False,
        default="stalwartlabs/stalwart:v0.16.18",
    ),
    Key(
        "TS_IMAGE",
        Kind.IMAGE,
        "pinned Tailscale sidecar image",
        MAILBOX,
        required=False,
        default="tailscale/tailscale:v1.90.6",
    ),
    Key(
        "MAILBOX_NODE_NAME",
        Kind.LABEL,
        "the sidecar's tailnet node name (TS_HOSTNAME)",
        MAILBOX,
        required=False,
        default="stalwart",
    ),
    Key(
        "MAILBOX_FQDN",
        Kind.FQDN,
        "the mailbox's MagicDNS name, the address the edge dials",
        MAILBOX,
        example="stalwart.tail1234.ts.net",
    ),
    Key(
        "MAILBOX_NODES",
        Kind.FQDN_LIST,
        "every mailbox node's MagicDNS name (comma-separated), MAILBOX_FQDN among them: the "
        "edge dials them all, with health checks (inv drain takes one out); empty: "
        "MAILBOX_FQDN alone",
        MAILBOX,
        required=False,
        example="stalwart.tail1234.ts.net,stalwart-2.tail1234.ts.net",
    ),
    Key(
        "MAILBOX_DOCKER_HOSTS",
        Kind.DOCKER_HOSTS,
        "the docker engine of each mailbox node, in MAILBOX_NODES' order (comma-separated "
        "ssh://user@host[:port] or unix:///path): inv up, ps, logs, restart and down reach "
        "each node's engine there (DOCKER_HOST); empty: the local engine, one node only",
        MAILBOX,
        required=False,
        example="ssh://deploy@mail-a.example.net,ssh://deploy@mail-b.example.net",
    ),
    Key(
        "MAILBOX_TAG",
        Kind.TAG,
        "tag the sidecar advertises",
        MAILBOX,
        required=False,
        default="tag:stalwart",
    ),
    Key(
        "COMPOSE_PROJECT",
        Kind.COMPOSE_PROJECT,
        "docker compose project name",
        MAILBOX,
        required=False,
        default="tailwart-mail",
    ),
    Key(
        "STALWART_RECOVERY_ADMIN",
        Kind.SECRET,
        "Stalwart's recovery administrator: a strong password (openssl rand -hex 24) for "
        "the name admin, or name:password; passed to Stalwart only while it runs in "
        "recovery mode (inv first-start, inv recover)",
        MAILBOX,
        example="admin:",
        stalwart=True,
        strong=True,
        pair=True,
    ),
    Key(
        "STALWART_MANAGEMENT_USER",
        Kind.IDENT,
        "the account tailwart manages Stalwart with (logs in as USER@MAIL_DOMAIN; its "
        "password: STALWART_MANAGEMENT_PASSWORD); only STALWART_MANAGEMENT_NETWORKS may use it",
        MAILBOX,
        required=False,
        default="tailwart-admin",
    ),
    Key(
        "STALWART_MANAGEMENT_PASSWORD",
        Kind.SECRET,
        "password of STALWART_MANAGEMENT_USER, strong (openssl rand -hex 24); created by "
        "inv first-start or inv recover, changed by inv rotate-management",
        MAILBOX,
    ),
    Key(
        "STALWART_METRICS_PASSWORD",
        Kind.SECRET,
        "password of Stalwart's Prometheus endpoint (/metrics/prometheus, user prometheus), "
        "read by inv doctor over the tailnet (openssl rand -hex 24); empty: the endpoint is "
        "off and the doctor's stalwart group is not run",
        MAILBOX,
        required=False,
        stalwart=True,
        strong=True,
    ),
    Key(
        "STALWART_MANAGEMENT_NETWORKS",
        Kind.NETWORKS,
        "the only source networks Stalwart accepts the management credential and the web "
        "admin paths from (default: the tailnet's ranges); an http:// "
        "STALWART_MANAGEMENT_URL may name an address in them",
        MAILBOX,
        required=False,
        default="100.64.0.0/10,fd7a:115c:a1e0::/48",
        # empty is refused: read as "the default" it would open what it meant to close
        empty_is_default=False,
    ),
    Key(
        "STALWART_MANAGEMENT_URL",
        Kind.URL,
        "where inv provision reaches Stalwart's management API (default "
        "http://MAILBOX_FQDN:8080, over the tailnet); http:// only to loopback, a MagicDNS "
        "name (under .ts.net, or MAILBOX_FQDN) or an address in STALWART_MANAGEMENT_NETWORKS; "
        "else https://",
        MAILBOX,
        required=False,
        example="http://stalwart.tail1234.ts.net:8080",
    ),
    Key(
        "OUTBOUND_ADDRESSES",
        Kind.IP_LIST,
        "without STALWART_SMARTHOST: the public addresses the mailbox host sends mail from "
        "(comma-separated), the ip4:/ip6: terms of the domain's SPF (inv dns)",
        MAILBOX,
        required=False,
        example="198.51.100.7",
    ),
    # --- postgres
    Key(
        "STALWART_DB_HOST",
        Kind.HOSTNAME,
        "Postgres host on the tailnet",
        POSTGRES,
        example="postgres.tail1234.ts.net",
    ),
    Key(
        "STALWART_DB_PORT",
        Kind.PORT,
        "Postgres port",
        POSTGRES,
        required=False,
        default="5432",
    ),
    Key(
        "STALWART_DB_NAME",
        Kind.IDENT,
        "database owned by the stalwart role",
        POSTGRES,
        required=False,
        default="stalwart",
    ),
    Key(
        "STALWART_DB_USER",
        Kind.IDENT,
        "Postgres role Stalwart logs in as",
        POSTGRES,
        required=False,
        default="stalwart",
    ),
    Key(
        "STALWART_DB_PASSWORD",
        Kind.SECRET,
        "password of the stalwart role",
        POSTGRES,
        stalwart=True,
        strong=True,
    ),
    Key(
        "PG_ADMIN_USER",
        Kind.IDENT,
        "admin role inv bootstrap connects as (its password: prompt or PG_ADMIN_PASSWORD in the "
        "environment, never stored)",
        POSTGRES,
        required=False,
        default="postgres",
    ),
    # --- redis
    Key(
        "STALWART_REDIS_HOST",
        Kind.HOSTNAME,
        "Redis host on the tailnet (one Redis; with Sentinel leave it out and set "
        "STALWART_REDIS_SENTINELS)",
        REDIS,
        example="redis.tail1234.ts.net",
        required_unless="STALWART_REDIS_SENTINELS",
    ),
    Key(
        "STALWART_REDIS_PORT",
        Kind.PORT,
        "Redis port",
        REDIS,
        required=False,
        default="6379",
    ),
    Key(
        "STALWART_REDIS_DB",
        Kind.UINT,
        "Redis logical DB index reserved for Stalwart",
        REDIS,
        required=False,
        default="3",
    ),
    Key(
        "STALWART_REDIS_PASSWORD",
        Kind.SECRET,
        "Redis AUTH password (URL-safe: hex is safest); with Sentinel, the data nodes' "
        "password (master and replicas)",
        REDIS,
        stalwart=True,
    ),
    Key(
        "STALWART_REDIS_SENTINELS",
        Kind.HOSTPORT_LIST,
        "Redis Sentinel: the sentinels as host:port (comma-separated, usually :26379); "
        "Stalwart and tailwart ask them for the current master (set STALWART_REDIS_MASTER "
        "too; Stalwart then uses DB 0)",
        REDIS,
        required=False,
        example="redis1.tail1234.ts.net:26379,redis2.tail1234.ts.net:26379,"
        "redis3.tail1234.ts.net:26379",
    ),
    Key(
        "STALWART_REDIS_MASTER",
        Kind.IDENT,
        "Redis Sentinel: the master name the sentinels monitor (`sentinel monitor <name>`)",
        REDIS,
        required=False,
        example="mymaster",
    ),
    Key(
        "STALWART_REDIS_SENTINEL_PASSWORD",
        Kind.SECRET,
        "Redis Sentinel: the sentinels' own password (their requirepass), if they have one",
        REDIS,
        required=False,
        stalwart=True,
    ),
    # --- garage
    Key(
        "STALWART_S3_HOST",
        Kind.HOSTNAME,
        "Garage S3 API host on the tailnet",
        GARAGE,
        example="garage.tail1234.ts.net",
    ),
    Key(
        "STALWART_S3_PORT",
        Kind.PORT,
        "Garage S3 API port",
        GARAGE,
        required=False,
        default="3900",
    ),
    Key(
        "STALWART_S3_REGION",
        Kind.IDENT,
        "Garage s3_region (must equal the server's)",
        GARAGE,
        required=False,
        default="garage",
    ),
    Key(
        "STALWART_S3_BUCKET",
        Kind.BUCKET,
        "bucket for Stalwart's blobs",
        GARAGE,
        required=False,
        default="stalwart-mail",
    ),
    Key(
        "STALWART_S3_ACCESS_KEY",
        Kind.IDENT,
        "Garage access key id, imported by inv bootstrap: GK + 24 hex (GK$(openssl rand -hex 12))",
        GARAGE,
        example="GK31c2f218a2e44f485b94239e",
        stalwart=True,
    ),
    Key(
        "STALWART_S3_SECRET_KEY",
        Kind.SECRET,
        "Garage secret access key: 64 hex (openssl rand -hex 32)",
        GARAGE,
        stalwart=True,
        strong=True,
    ),
    Key(
        "GARAGE_ADMIN_URL",
        Kind.URL,
        "Garage admin API (inv bootstrap)",
        GARAGE,
        required=False,
        example="http://garage.tail1234.ts.net:3903",
    ),
    Key(
        "GARAGE_ADMIN_TOKEN",
        Kind.SECRET,
        "Garage admin API bearer token (inv bootstrap)",
        GARAGE,
        required=False,
    ),
    Key(
        "GARAGE_NODES",
        Kind.GARAGE_NODES,
        "several Garage nodes: node-id@zone for each (the id's first 16 hex digits as "
        "`garage status` shows them; comma-separated); inv bootstrap applies this layout "
        "(empty: one node, laid out by inv bootstrap --init-layout)",
        GARAGE,
        required=False,
        example="563e1ac825ee3323@dc1,86f0f26ae4afbd59@dc2,a2b9d3f2e5c1b478@dc3",
    ),
    Key(
        "GARAGE_REPLICATION",
        Kind.UINT,
        "with GARAGE_NODES: the replication_factor of the nodes' garage.toml (tailwart "
        "checks the cluster against it, never sets it)",
        GARAGE,
        required=False,
        default="3",
    ),
    # --- tls
    Key(
        "STALWART_TLS",
        Kind.TLS_MODE,
        "where Stalwart's certificate comes from: ACME http-01 through the JMAP vhost "
        "(acme-http), ACME dns-01 through an RFC 2136 server (acme-dns), or PEM files you "
        "manage (files)",
        TLS,
        required=False,
        default="acme-http",
    ),
    Key(
        "ACME_DIRECTORY",
        Kind.URL,
        "ACME directory (https); Let's Encrypt staging: "
        "https://acme-staging-v02.api.letsencrypt.org/directory",
        TLS,
        required=False,
        default="https://acme-v02.api.letsencrypt.org/directory",
    ),
    Key(
        "ACME_CONTACT",
        Kind.EMAIL,
        "contact address of the ACME account (default: postmaster@MAIL_DOMAIN)",
        TLS,
        required=False,
    ),
    Key(
        "MAIL_HOSTNAME_ALIASES",
        Kind.FQDN_LIST,
        "more names the certificate covers besides MAIL_HOSTNAME (comma-separated)",
        TLS,
        required=False,
        example="imap.example.org,smtp.example.org",
    ),
    Key(
        "ACME_DNS_SERVER",
        Kind.IP,
        "acme-dns: address of the RFC 2136 server that takes the _acme-challenge updates",
        TLS,
        required=False,
        example="192.0.2.53",
    ),
    Key(
        "ACME_DNS_PORT",
        Kind.PORT,
        "acme-dns: its port",
        TLS,
        required=False,
        default="53",
    ),
    Key(
        "ACME_DNS_ZONE",
        Kind.FQDN,
        "acme-dns: the zone the updates go to (default: MAIL_DOMAIN)",
        TLS,
        required=False,
    ),
    Key(
        "ACME_DNS_TSIG_KEY",
        Kind.HOSTNAME,
        "acme-dns: TSIG key name, as the DNS server knows it",
        TLS,
        required=False,
        example="tailwart-acme",
    ),
    Key(
        "ACME_DNS_TSIG_ALGORITHM",
        Kind.TSIG_ALGORITHM,
        "acme-dns: TSIG algorithm",
        TLS,
        required=False,
        default="hmac-sha256",
    ),
    Key(
        "ACME_DNS_TSIG_SECRET",
        Kind.SECRET,
        "acme-dns: TSIG secret, base64 (as knsupdate/nsupdate take it)",
        TLS,
        required=False,
        stalwart=True,
    ),
    Key(
        "STALWART_TLS_CERT_FILE",
        Kind.ABSPATH,
        "files: certificate chain (PEM, leaf first) on the mailbox host, mounted read-only",
        TLS,
        required=False,
        example="/etc/tailwart/tls/fullchain.pem",
    ),
    Key(
        "STALWART_TLS_KEY_FILE",
        Kind.ABSPATH,
        "files: its private key (PEM) on the mailbox host, mounted read-only",
        TLS,
        required=False,
        example="/etc/tailwart/tls/privkey.pem",
    ),
    # --- smarthost
    Key(
        "STALWART_SMARTHOST",
        Kind.HOSTPORT,
        "relay for outbound mail (outbound :25 is usually blocked on a VPS); name it by an "
        "IPv4-reachable host",
        SMARTHOST,
        required=False,
        example="smtp.relay.example.net:587",
    ),
    Key(
        "STALWART_SMARTHOST_USER",
        Kind.LOGIN,
        "smarthost login",
        SMARTHOST,
        required=False,
    ),
    Key(
        "STALWART_SMARTHOST_PASSWORD",
        Kind.SECRET,
        "smarthost password",
        SMARTHOST,
        required=False,
        stalwart=True,
    ),
    Key(
        "STALWART_SMARTHOST_TLS",
        Kind.SMTP_TLS,
        "starttls (port 587) or implicit TLS (port 465)",
        SMARTHOST,
        required=False,
        default="starttls",
    ),
    Key(
        "SPF_INCLUDE",
        Kind.DNS_NAME,
        "with STALWART_SMARTHOST: the domain whose SPF covers the relay's sending addresses "
        "(the relay documents it, e.g. _spf.relay.example.net); inv dns publishes "
        "include:SPF_INCLUDE",
        SMARTHOST,
        required=False,
        example="_spf.relay.example.net",
    ),
    # --- tailscale
    Key(
        "TS_OAUTH_CLIENT_SECRET",
        Kind.SECRET,
        "OAuth client secret the sidecar joins with (tskey-client-…; must own the mailbox tag)",
        TAILSCALE,
        example="tskey-client-",
    ),
    Key(
        "TS_LOGIN_SERVER",
        Kind.URL,
        "headscale URL the sidecar logs in to (empty = Tailscale); TS_OAUTH_CLIENT_SECRET then "
        "holds a tagged headscale pre-auth key",
        TAILSCALE,
        required=False,
    ),
    Key(
        "TS_API_URL",
        Kind.URL,
        "Tailscale API base URL",
        TAILSCALE,
        required=False,
        default="https://api.tailscale.com",
    ),
    Key(
        "TS_TAILNET",
        Kind.TAILNET,
        "tailnet name for the policy API ('-' = the token's own)",
        TAILSCALE,
        required=False,
        default="-",
    ),
    Key(
        "TS_API_CLIENT_ID",
        Kind.IDENT,
        "OAuth client id with the policy_file scope (inv acl)",
        TAILSCALE,
        required=False,
    ),
    Key(
        "TS_API_CLIENT_SECRET",
        Kind.SECRET,
        "OAuth client secret for the policy API (inv acl)",
        TAILSCALE,
        required=False,
    ),
    Key(
        "TS_API_TOKEN",
        Kind.SECRET,
        "API access token, instead of OAuth client credentials",
        TAILSCALE,
        required=False,
    ),
    Key(
        "HEADSCALE_URL",
        Kind.URL,
        "headscale server, for inv acl --headscale",
        TAILSCALE,
        required=False,
    ),
    Key("HEADSCALE_API_KEY", Kind.SECRET, "headscale API key", TAILSCALE, required=False),
    # --- doctor
    Key(
        "DKIM_SELECTOR",
        Kind.IDENT,
        "DKIM selector whose record inv doctor checks",
        DOCTOR,
        required=False,
    ),
    Key(
        "DNS_RESOLVER",
        Kind.HOSTPORT,
        "resolver inv doctor asks (default: the system's)",
        DOCTOR,
        required=False,
    ),
    Key(
        "OUTBOUND_PROBE",
        Kind.HOSTPORT,
        "target for the outbound :25 check when no smarthost is set",
        DOCTOR,
        required=False,
    ),
    Key(
        "DOCTOR_HISTORY_DIR",
        Kind.ABSPATH,
        "where inv doctor --record keeps its runs for --diff (default "
        "~/.local/state/tailwart/doctor)",
        DOCTOR,
        required=False,
    ),
    Key(
        "DOCTOR_HISTORY_KEEP",
        Kind.UINT,
        "recorded doctor runs kept at most; the oldest go first (the newest is always kept)",
        DOCTOR,
        required=False,
        default="120",
    ),
    Key(
        "DOCTOR_HISTORY_DAYS",
        Kind.UINT,
        "recorded doctor runs older than this many days are removed",
        DOCTOR,
        required=False,
        default="90",
    ),
    Key(
        "DOCTOR_REPORT_TO",
        Kind.EMAIL,
        "postmaster address inv doctor --report-to mail sends the report to",
        DOCTOR,
        required=False,
    ),
    Key(
        "DOCTOR_SMTP_HOST",
        Kind.HOSTPORT,
        "submission endpoint the report is mailed through (default MAIL_HOSTNAME:587; "
        "port 465: implicit TLS, else STARTTLS)",
        DOCTOR,
        required=False,
    ),
    Key(
        "DOCTOR_SMTP_USER",
        Kind.LOGIN,
        "account the report is submitted with (also its From: when an address)",
        DOCTOR,
        required=False,
    ),
    Key(
        "DOCTOR_SMTP_PASSWORD",
        Kind.SECRET,
        "password of DOCTOR_SMTP_USER",
        DOCTOR,
        required=False,
    ),
    Key(
        "DOCTOR_LIMITS",
        Kind.DOCTOR_LIMITS,
        "thresholds for Stalwart's own numbers (STALWART_METRICS_PASSWORD set): queue "
        "(messages), queue-hours, failed and deferred deliveries, auth-failures, "
        "store-errors since the last recorded run; and disk-percent, a Garage node's data "
        "disk in use (GARAGE_ADMIN_TOKEN set); a name left out keeps its default",
        DOCTOR,
        required=False,
        default=limits.DEFAULT,
    ),
    Key(
        "DOCTOR_WEBHOOK_URL",
        Kind.URL,
        "URL inv doctor --report-to webhook POSTs the report to as JSON (the second channel, "
        "for when the mailbox is down; only its host is ever printed)",
        DOCTOR,
        required=False,
    ),
    # --- backup
    Key(
        "BACKUP_REPOSITORY",
        Kind.RESTIC_REPO,
        "restic repository inv backup writes to: a local path or an S3 bucket",
        BACKUP,
        required=False,
        example="s3:http://garage.tail1234.ts.net:3900/stalwart-backup",
    ),
    Key(
        "BACKUP_PASSWORD",
        Kind.SECRET,
        "password of the restic repository (encrypts it; lose it and the backups are lost)",
        BACKUP,
        required=False,
        strong=True,
    ),
    Key(
        "BACKUP_S3_ACCESS_KEY",
        Kind.IDENT,
        "access key id for an s3: BACKUP_REPOSITORY (a key granted on the backup bucket)",
        BACKUP,
        required=False,
    ),
    Key(
        "BACKUP_S3_SECRET_KEY",
        Kind.SECRET,
        "secret access key for an s3: BACKUP_REPOSITORY",
        BACKUP,
        required=False,
    ),
    Key(
        "BACKUP_S3_REGION",
        Kind.IDENT,
        "region an s3: BACKUP_REPOSITORY signs for (Garage: its s3_region)",
        BACKUP,
        required=False,
        default="garage",
    ),
    Key(
        "BACKUP_STAGING_DIR",
        Kind.ABSPATH,
        "local mirror of the dump and the blobs that restic reads (needs the mailbox's size in "
        "free space; default ~/.cache/tailwart/backup)",
        BACKUP,
        required=False,
    ),
    Key(
        "BACKUP_KEEP_DAILY",
        Kind.UINT,
        "daily snapshots restic forget --prune keeps",
        BACKUP,
        required=False,
        default="7",
    ),
    Key(
        "BACKUP_KEEP_WEEKLY",
        Kind.UINT,
        "weekly snapshots restic forget --prune keeps",
        BACKUP,
        required=False,
        default="5",
    ),
    Key(
        "BACKUP_KEEP_MONTHLY",
        Kind.UINT,
        "monthly snapshots restic forget --prune keeps",
        BACKUP,
        required=False,
        default="12",
    ),
    # --- dns
    Key(
        "DNS_SERVER",
        Kind.IP,
        "address of the zone's primary that takes RFC 2136 updates and AXFR (inv dns)",
        DNS,
        required=False,
        example="192.0.2.53",
    ),
    Key("DNS_PORT", Kind.PORT, "its port", DNS, required=False, default="53"),
    Key(
        "DNS_ZONE",
        Kind.FQDN,
        "the zone inv dns publishes into (default: MAIL_DOMAIN); MAIL_DOMAIN must be in it",
        DNS,
        required=False,
    ),
    Key(
        "DNS_TSIG_KEY",
        Kind.HOSTNAME,
        "TSIG key name the server knows, allowed to transfer and update the zone",
        DNS,
        required=False,
        example="tailwart-dns",
    ),
    Key(
        "DNS_TSIG_ALGORITHM",
        Kind.TSIG_ALGORITHM,
        "TSIG algorithm",
        DNS,
        required=False,
        default="hmac-sha256",
    ),
    Key(
        "DNS_TSIG_SECRET",
        Kind.SECRET,
        "TSIG secret, base64 (what keymgr -t or tsig-keygen print)",
        DNS,
        required=False,
    ),
    Key(
        "DNS_TTL",
        Kind.UINT,
        "TTL in seconds of the records inv dns publishes",
        DNS,
        required=False,
        default="3600",
    ),
    Key(
        "DNS_REPORT_TO",
        Kind.EMAIL,
        "address DMARC aggregate (rua) and TLS-RPT reports go to, one Stalwart receives "
        "(default: postmaster@MAIL_DOMAIN)",
        DNS,
        required=False,
    ),
    Key(
        "DMARC_POLICY",
        Kind.DMARC_POLICY,
        "the DMARC policy: start with none, read the reports, then quarantine or reject",
        DNS,
        required=False,
        default="none",
    ),
    Key(
        "MTA_STS_MODE",
        Kind.MTA_STS_MODE,
        "MTA-STS policy mode: testing first (reports only), then enforce",
        DNS,
        required=False,
        default="testing",
    ),
    Key(
        "MTA_STS_MAX_AGE",
        Kind.UINT,
        "MTA-STS policy max_age in seconds (RFC 8461: up to 31557600)",
        DNS,
        required=False,
        default="604800",
    ),
)

BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}


#: the name of a ``Key.pair`` value given as a password alone
DEFAULT_PAIR_NAME = "admin"


def split_pair(value: str) -> tuple[str, str]:
    """(name, password) of a ``Key.pair`` value: ``name:password``, or a password alone
    (no ``:``) for the name ``admin``."""
    if ":" not in value:
        return DEFAULT_PAIR_NAME, value
    name, _, password = value.partition(":")
    return name, password


def password_part(value: str) -> str:
    """The password of a ``Key.pair`` value (``split_pair``)."""
    return split_pair(value)[1]


#: variables tailwart derives from the keys above and passes into the stalwart
#: container next to them
DERIVED: dict[str, str] = {
    "STALWART_PUBLIC_URL": "https://MAIL_HOSTNAME: the base of the JMAP session's URLs",
    "STALWART_RECOVERY_MODE": "empty; 1 only while inv first-start runs the recovery step",
    "STALWART_HOSTNAME": "the node's name (MAILBOX_NODE_NAME on MAILBOX_FQDN's node, else the "
    "first label of its MAILBOX_NODES entry): keys the node's cluster id, stable across "
    "recreates",
    "STALWART_ROLE": "the node's x:ClusterRole: empty with one node (every task), primary on "
    "MAILBOX_FQDN's node, secondary on the others",
}
#: variables tailwart sets, empty, for the sidecar block when TS_LOGIN_SERVER is set (unset,
#: the compose file's boilerplate defaults stand); never passed to stalwart
SIDECAR_DERIVED: dict[str, str] = {
    "TS_AUTHKEY_ATTRS": "what follows the key in TS_AUTHKEY (default ?ephemeral=true)",
    "TS_ADVERTISE_TAGS": "TS_EXTRA_ARGS' tag argument (default --advertise-tags=tag:stalwart)",
}
#: variables only the compose file interpolates (never a container variable of their own)
RECOVERY_DERIVED: dict[str, str] = {
    "STALWART_RECOVERY_ADMIN_IN_RECOVERY": "empty; STALWART_RECOVERY_ADMIN only while inv "
    "first-start or inv recover runs Stalwart in recovery mode",
    "STALWART_CONFIG_FILE": "empty (config/config.json next to the compose file); on a node "
    "reached over ssh://, the path tailwart uploads config.json to on that host",
}
#: container variables whose value comes from another compose variable than their own
#: name (the recovery admin: empty unless Stalwart starts in recovery mode)
CONTAINER_SOURCE: dict[str, str] = {
    "STALWART_RECOVERY_ADMIN": "STALWART_RECOVERY_ADMIN_IN_RECOVERY",
}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(key.group for key in KEYS))
#: every variable the stalwart container receives
STALWART_ENV: tuple[str, ...] = tuple(key.name for key in KEYS if key.stalwart) + tuple(DERIVED)
