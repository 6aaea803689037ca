"""Ubuntu's names: the package that carries each role and the systemd unit that runs it.

Where Ubuntu runs a service under Apache (mod_wsgi), its unit is apache2: keystone and
placement-api (their install guides), cinder-api ("service apache2 restart", cinder's Ubuntu
install guide), and horizon.
"""

from __future__ import annotations

PACKAGES: dict[str, str] = {
    "neutron-l2-agent": "neutron-openvswitch-agent",
    "horizon": "openstack-dashboard",
}

UNITS: dict[str, str] = {
    "keystone": "apache2",
    "placement-api": "apache2",
    "cinder-api": "apache2",
    "neutron-l2-agent": "neutron-openvswitch-agent",
    "horizon": "apache2",
}
