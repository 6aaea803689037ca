"""Each node's configuration files: the services', supervisor's, sshd's, the admin's my.cnf.

Written once for the old release; the upgrade keeps them (the new code reads the old
configuration, as in production).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.acceptance.layout import (
    DB_ADDRESS,
    IDENTITY_URL,
    KEYSTONE,
    MEMCACHED_PORT,
    NODES,
    PROGRAMS,
    RABBIT_PORT,
    SITE_OF,
    SSH_PORT,
    WSGI_APPS,
    db_of,
    region_of,
)


@dataclass(frozen=True)
class Secrets:
    db: str  # the database user "openstack"
    admin: str  # keystone's admin
    service: str  # every service user's


def _db(secrets: Secrets, name: str, node: str) -> str:
    """The node's region's database server (keystone's: the identity site's)."""
    return f"mysql+pymysql://openstack:{secrets.db}@{db_of(node)}/{name}"


def _auth(secrets: Secrets, section: str, user: str, node: str) -> str:
    return (
        f"[{section}]\nauth_url = {IDENTITY_URL}\nauth_type = password\n"
        "project_domain_name = Default\nuser_domain_name = Default\nproject_name = service\n"
        f"username = {user}\npassword = {secrets.service}\nregion_name = {region_of(node)}\n"
    )


def _authtoken(secrets: Secrets, user: str, node: str) -> str:
    return (
        _auth(secrets, "keystone_authtoken", user, node)
        + f"www_authenticate_uri = http://{KEYSTONE}:5000\nservice_token_roles_required = true\n"
    )


def transport(node: str) -> str:
    """The region's own virtual host on the one broker: a region's RPC stays its own."""
    return f"rabbit://guest:guest@{DB_ADDRESS}:{RABBIT_PORT}/{SITE_OF[node]}"


def service_files(node: str, secrets: Secrets) -> dict[str, str]:
    """Path on the node -> contents, for the services the node runs."""
    address = NODES[node]
    names = {p.name for p in PROGRAMS[node]}
    files: dict[str, str] = {}
    if "keystone" in names:
        files["/etc/keystone/keystone.conf"] = (
            f"[database]\nconnection = {_db(secrets, 'keystone', node)}\n"
            "[token]\nprovider = fernet\n"
            # keystone-manage doctor warns without a cache. Shared, as deployments run it: an
            # in-memory cache per gunicorn worker kept a catalog from before the endpoints were
            # registered, and tokens from that worker named no image service
            "[cache]\nenabled = true\nbackend = oslo_cache.memcache_pool\n"
            f"memcache_servers = {DB_ADDRESS}:{MEMCACHED_PORT}\n"
            "[fernet_tokens]\nkey_repository = /etc/keystone/fernet-keys\n"
            "[credential]\nkey_repository = /etc/keystone/credential-keys\n"
        )
    if "glance-api" in names:
        files["/etc/glance/glance-api.conf"] = (
            "[DEFAULT]\nenabled_backends = file:file\n"
            f"[database]\nconnection = {_db(secrets, 'glance', node)}\n"
            "[glance_store]\ndefault_backend = file\n"
            "[file]\nfilesystem_store_datadir = /var/lib/glance/images\n"
            "[os_glance_staging_store]\nfilesystem_store_datadir = /var/lib/glance/staging\n"
            "[os_glance_tasks_store]\nfilesystem_store_datadir = /var/lib/glance/tasks\n"
            "[paste_deploy]\nflavor = keystone\n"
            "[oslo_concurrency]\nlock_path = /var/lib/glance/lock\n"
            + _authtoken(secrets, "glance", node)
        )
    if "placement-api" in names:
        files["/etc/placement/placement.conf"] = (
            f"[placement_database]\nconnection = {_db(secrets, 'placement', node)}\n"
            "[api]\nauth_strategy = keystone\n" + _authtoken(secrets, "placement", node)
        )
    if any(n.startswith("nova-") for n in names):
        files["/etc/nova/nova.conf"] = (
            f"[DEFAULT]\ntransport_url = {transport(node)}\nhost = {node}\nmy_ip = {address}\n"
            "state_path = /var/lib/nova\ncompute_driver = fake.FakeDriverWithoutFakeNodes\n"
            "[api]\nauth_strategy = keystone\n"
            f"[api_database]\nconnection = {_db(secrets, 'nova_api', node)}\n"
            f"[database]\nconnection = {_db(secrets, 'nova', node)}\n"
            "[oslo_concurrency]\nlock_path = /var/lib/nova/tmp\n"
            "[upgrade_levels]\ncompute = auto\n"
            "[scheduler]\ndiscover_hosts_in_cells_interval = 5\n"
            "[wsgi]\napi_paste_config = /etc/nova/api-paste.ini\n"
            f"[cinder]\nos_region_name = {region_of(node)}\n"
            # the image service of the node's own region (the catalog has one per region)
            f"[glance]\nregion_name = {region_of(node)}\n"
            "[service_user]\nsend_service_user_token = true\n"
            + _auth(secrets, "service_user", "nova", node).split("\n", 1)[1]
            + _auth(secrets, "placement", "nova", node)
            + _auth(secrets, "neutron", "nova", node)
            + _authtoken(secrets, "nova", node)
        )
    if "neutron-server" in names:  # ML2 without agents: the API nova asks for ports
        files["/etc/neutron/neutron.conf"] = (
            "[DEFAULT]\ncore_plugin = ml2\nservice_plugins =\n"
            f"transport_url = {transport(node)}\n"
            f"host = {node}\nauth_strategy = keystone\n"
            "api_paste_config = /etc/neutron/api-paste.ini\n"
            "api_workers = 2\nrpc_workers = 0\n"  # neutron-status warns of the defaults
            "notify_nova_on_port_status_changes = false\nnotify_nova_on_port_data_changes = false\n"
            f"[database]\nconnection = {_db(secrets, 'neutron', node)}\n"
            "[oslo_concurrency]\nlock_path = /var/lib/neutron/tmp\n"
            + _authtoken(secrets, "neutron", node)
        )
        files["/etc/neutron/plugins/ml2/ml2_conf.ini"] = (
            "[ml2]\ntype_drivers = flat\ntenant_network_types =\nmechanism_drivers =\n"
            "extension_drivers = port_security\n"
        )
    if any(n.startswith("cinder-") for n in names):
        files["/etc/cinder/cinder.conf"] = (
            f"[DEFAULT]\ntransport_url = {transport(node)}\nhost = {node}\nmy_ip = {address}\n"
            "state_path = /var/lib/cinder\nauth_strategy = keystone\n"
            "enabled_backends = fake\napi_paste_config = /etc/cinder/api-paste.ini\n"
            f"[database]\nconnection = {_db(secrets, 'cinder', node)}\n"
            "[oslo_concurrency]\nlock_path = /var/lib/cinder/tmp\n"
            "[fake]\nvolume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver\n"
            "volume_backend_name = fake\n" + _authtoken(secrets, "cinder", node)
        )
    for program in PROGRAMS[node]:
        if program.port:
            files[f"/etc/{program.name.split('-')[0]}/{program.name}/gunicorn.conf.py"] = (
                f"bind = '{address}:{program.port}'\nworkers = 2\ntimeout = 120\n"
                f"graceful_timeout = 5\nproc_name = '{program.name}'\n"
                f"wsgi_app = '{WSGI_APPS[program.name]}'\n"
            )
            if program.name == "neutron-server":
                # neutron's ports query names Port.port_forwardings, a backref SQLAlchemy
                # makes only when the mappers are configured: the first query does it, but a
                # worker whose first request lists ports fails (500) without this
                files[f"/etc/neutron/{program.name}/gunicorn.conf.py"] += (
                    "def post_worker_init(worker):\n"
                    "    from sqlalchemy import orm\n"
                    "    orm.configure_mappers()\n"
                )
    files["/root/.my.cnf"] = f"[client]\nuser = openstack\npassword = {secrets.db}\n"
    files["/etc/supervisor/supervisord.conf"] = supervisord_conf(node)
    return files


def supervisord_conf(node: str) -> str:
    out = [
        "[unix_http_server]\nfile = /run/supervisor/supervisor.sock\nchmod = 0700\n",
        "[supervisord]\nlogfile = /run/supervisor/supervisord.log\n"
        "pidfile = /run/supervisor/supervisord.pid\nnodaemon = true\n",
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        "[supervisorctl]\nserverurl = unix:///run/supervisor/supervisor.sock\n",
    ]
    for program in PROGRAMS[node]:
        service = program.name.split("-")[0]
        out.append(
            f"[program:{program.name}]\ncommand = {program.command}\nautostart = false\n"
            + (f"directory = /etc/{service}/{program.name}\n" if program.port else "")
            + "autorestart = false\nstartsecs = 3\nstopasgroup = true\nkillasgroup = true\n"
            f"redirect_stderr = true\nstdout_logfile = /var/log/{service}/{program.name}.log\n"
        )
    return "\n".join(out)


def sshd_conf(node: str, ssh_dir: str, run_dir: str) -> str:
    return (
        f"Port {SSH_PORT}\nListenAddress {NODES[node]}\n"
        f"HostKey {ssh_dir}/host_key\nAuthorizedKeysFile {ssh_dir}/authorized_keys\n"
        f"PidFile {run_dir}/sshd.pid\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "MaxStartups 200\nMaxSessions 50\nLogLevel ERROR\n"
    )
