"""The start fast path: a container's running state predicted from its create-time configuration.

After a ``start`` event the registrar would normally inspect the container, and under load
Docker takes tens of milliseconds to answer. When every port the container publishes is bound
to an explicit host port (``-p 127.0.0.1:8080:80``), everything its registrations depend on
was fixed when it was created: name, image, env, labels, exposed ports and their host bindings.
``predict_started`` then builds the state an inspect would show, so the services are
registered without a Docker round trip. The reconciler confirms every prediction with a real
inspect right after (a wrong one is corrected at once), and predicts only when nothing that
exists only at run time matters:

- ephemeral host ports (``-P``, ``127.0.0.1::80``, a port range) are chosen by Docker at start;
- ``--internal`` registers the container's IP, assigned at start;
- a ``container:<id>`` network takes the other container's IP; ``none`` publishes nothing;
- a Docker HEALTHCHECK's status exists only once started (and gates the registration);
- a ``--tags`` template may read any inspect field.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import replace

from discovery.registrar.container import Container, PortBinding
from discovery.registrar.desired import Rules

# How Docker reports a binding requested for every address.
_ANY_IPV4 = "0.0.0.0"


def predict_started(created: Container, rules: Rules) -> Container | None:
    """``created`` (an earlier inspect of the same container) as Docker shows it once started; ``None``
    when that depends on what Docker decides at start (then inspect)."""
    if rules.internal or not rules.tags.static:
        return None
    if created.network_container or created.network_mode == "none" or created.healthcheck or created.publish_all:
        return None
    ports: dict[str, PortBinding | None] = {}
    if created.network_mode != "host":  # host networking: no bindings, exposed ports are the ports
        ports = {key: None for key in created.exposed_ports}  # exposed but not published
        for key, bindings in created.port_bindings.items():
            if len(bindings) != 1 or not _fixed_port(bindings[0].host_port):
                return None
            ports[key] = PortBinding(bindings[0].host_ip or _ANY_IPV4, bindings[0].host_port)
    return replace(
        created,
        status="running",
        running=True,
        paused=False,
        exit_code=0,
        health=None,
        health_output="",
        ports=ports,
    )


def _fixed_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536


__all__ = ["predict_started"]
