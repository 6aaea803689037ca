"""`rollgate import kolla|osa`: the inventories operators already keep, as Rollgate's."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import click

_FROM = click.option("--from", "source", metavar="RELEASE", help="The release the cloud runs.")
_TO = click.option(
    "--to", "target", metavar="RELEASE", help="The target (default: the next release)."
)
_SKIP = click.option("--skip-level", is_flag=True, help="Default --to: the next SLURP release.")
_CLOUD = click.option("--cloud", metavar="NAME", help="The inventory's cloud name.")
_SITE = click.option("--site", metavar="NAME", help="The site's name (default: its region's).")
_OUT = click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write it to FILE.")


@click.group(name="import")
def import_() -> None:
    """Write a Rollgate inventory from kolla-ansible's or OpenStack-Ansible's."""


def _slug(text: str) -> str:
    from rollgate.core.importers import slug

    return slug(text, "cloud")


def _finish(text: str, output: str | None, what: str) -> int:
    """The inventory validated, then written or printed; one line naming what does not."""
    from rollgate.core.errors import UserError
    from rollgate.core.inventory import InventoryError, parse_inventory

    try:
        inv = parse_inventory(text, output or "<imported>")
    except InventoryError as exc:
        problems = "; ".join(str(p) for p in exc.problems[:5])
        raise UserError(f"the inventory made from {what} does not validate: {problems}") from None
    if output:
        Path(output).write_text(text)
        click.echo(
            f"{output}: {len(inv.nodes)} hosts from {what}, {inv.upgrade.describe()}, method "
            f"{inv.method}; check the lines marked 'not placed', then `rollgate check {output}`"
        )
    else:
        click.echo(text, nl=False)
    return 0


@import_.command()
@click.argument("multinode", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--globals",
    "globals_path",
    type=click.Path(exists=True, dir_okay=False),
    help="kolla's globals.yml (release, enabled services, neutron plugin, engine).",
)
@_FROM
@_TO
@_SKIP
@_CLOUD
@_SITE
@_OUT
def kolla(
    multinode: str,
    globals_path: str | None,
    source: str | None,
    target: str | None,
    skip_level: bool,
    cloud: str | None,
    site: str | None,
    output: str | None,
) -> int:
    """kolla-ansible's inventory MULTINODE (INI or YAML, kolla's groups) and globals.yml as a
    Rollgate inventory of the kolla method. --from defaults to globals' openstack_release."""
    from rollgate.core.importers import inventory_text, releases
    from rollgate.core.importers.kolla import import_kolla

    found, settings = import_kolla(Path(multinode), Path(globals_path) if globals_path else None)
    release = str(settings.get("openstack_release", "")).strip()
    upgrade = releases(source or (release if re.match(r"^\d{4}\.\d$", release) else None),
                       target, skip_level)  # fmt: skip
    region = str(settings.get("openstack_region_name", "RegionOne"))
    text = inventory_text(
        found,
        cloud=cloud or _slug(Path(multinode).resolve().parent.name),
        method="kolla",
        site=site or _slug(region),
        region=region,
        upgrade=upgrade,
        header=[
            f"Imported from kolla-ansible's {multinode}"
            + (f" and {globals_path}" if globals_path else "")
            + f" on {datetime.date.today().isoformat()} by `rollgate import kolla`.",
        ],
    )
    return _finish(text, output, multinode)


@import_.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@_FROM
@_TO
@_SKIP
@_CLOUD
@_SITE
@click.option("--region", default="RegionOne", show_default=True, help="The site's region.")
@_OUT
def osa(
    config: str,
    source: str | None,
    target: str | None,
    skip_level: bool,
    cloud: str | None,
    site: str | None,
    region: str,
    output: str | None,
) -> int:
    """OpenStack-Ansible's openstack_user_config.yml (and conf.d/*.yml beside it) as a Rollgate
    inventory of the virtualenv method (OSA's layout: versioned virtualenvs, systemd)."""
    from rollgate.core.importers import inventory_text, releases
    from rollgate.core.importers.osa import import_osa

    found = import_osa(Path(config))
    text = inventory_text(
        found,
        cloud=cloud or _slug(Path(config).resolve().parent.name),
        method="venv",
        site=site or _slug(region),
        region=region,
        upgrade=releases(source, target, skip_level),
        header=[
            f"Imported from OpenStack-Ansible's {config} (and conf.d/) on "
            f"{datetime.date.today().isoformat()} by `rollgate import osa`.",
        ],
    )
    return _finish(text, output, config)
