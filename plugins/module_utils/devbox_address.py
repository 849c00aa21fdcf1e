"""Where Jupyter (and every other service) may listen: one private or loopback address, never all
interfaces, never public.

One rule, used in two places: on the controller for what can be judged from the text alone
(the input check, plugins/action/devbox_check_inputs.py, before anything changes) and on the
machine for names, which only resolve there (the service modules, before they write or stop
anything). The launchers on the volume apply it at every start: they import this very file, which
their module keeps under the home's root-owned ~/.devbox/lib/ (devbox_launcher.resolve). Standard
library only.
"""
from __future__ import annotations

import fcntl
import ipaddress
import re
import socket
import struct

FLY_PRIVATE_NAME = "fly-local-6pn"
# Stands for the Machine's private IPv4 address (machine_private_ipv4), found again wherever the name is read
# (every launcher start): a Machine may come back with another one. In no DNS and no hosts file.
PRIVATE_IPV4_NAME = "fly-private-ipv4"
# RFC 1123 host name labels; a last label of digits only would be a number, not a name.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# RFC 6598 shared address space (carrier-grade NAT, Tailscale): not public, not in is_private.
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
# ioctl that reads an interface's IPv4 address (linux/sockios.h).
_SIOCGIFADDR = 0x8915
_RTF_UP = 0x1


def literal_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a literal stands for, in any spelling the C library accepts; None for a name.

    "0", "0x0", "127.1" and "017700000001" are IPv4 addresses to inet_aton (and so to bind and
    getaddrinfo), so they are read the same way here; "[::]" is the URL spelling of "::".
    PRIVATE_IPV4_NAME is the machine's private IPv4 address now (None where it has none).
    """
    if text == PRIVATE_IPV4_NAME:
        found = machine_private_ipv4()
        return ipaddress.ip_address(found) if found else None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why Jupyter must not listen on this address; None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address in _THIS_NETWORK:
        return f"{address} means all interfaces"
    if address.is_loopback:  # before is_reserved, which covers ::1
        return None
    if address.is_multicast or address.is_reserved or address == ipaddress.IPv4Address("255.255.255.255"):
        return f"{address} is not an address of one interface"
    if address.is_private or address in _SHARED:
        return None
    return (f"{address} is a public address; use a private one and reach it through fly proxy "
            "or an SSH tunnel")


def spelling_problem(name) -> str | None:
    """What the text alone says is wrong (no name lookup): the controller's check."""
    if not isinstance(name, str) or not name or name == "*":
        return f"{name!r} means all interfaces"
    if name == PRIVATE_IPV4_NAME:  # judged on the machine, where it stands for an address
        return None
    if any(character.isspace() for character in name):  # inet_aton would ignore what follows a space
        return f"{name!r} is neither an IP address nor a host name"
    address = literal_address(name)
    if address is not None:
        problem = address_problem(address)
        return f"{name!r}: {problem}" if problem else None
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return f"{name!r} is neither an IP address nor a host name"
    return None


def listen_address_problem(name) -> str | None:
    """Why Jupyter must not listen on `name` (an address or a host name resolved here); None when it may.

    Every address the name resolves to must pass: the server binds to one of them.
    """
    problem = spelling_problem(name)
    if problem or literal_address(name) is not None:
        return problem
    if name == PRIVATE_IPV4_NAME:
        return f"{name!r}: this machine has no private IPv4 address on its default route's interface"
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return f"{name!r} does not resolve on this machine: {error}"
    for info in infos:
        problem = address_problem(ipaddress.ip_address(info[4][0].split("%")[0]))
        if problem:
            return f"{name!r} resolves to {info[4][0]}: {problem}"
    return None


def default_route_interface(route_path: str = "/proc/net/route") -> str | None:
    """The interface of the IPv4 default route (eth0 on a Fly Machine), from the kernel's routing table."""
    try:
        with open(route_path) as routes:
            rows = [line.split() for line in routes.readlines()[1:]]
    except OSError:
        return None
    return next((row[0] for row in rows if len(row) > 3 and row[1] == "00000000" and int(row[3], 16) & _RTF_UP), None)


def interface_ipv4(interface: str) -> str | None:
    """The IPv4 address of one interface, as the kernel has it now; None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def machine_private_ipv4(route_path: str = "/proc/net/route") -> str | None:
    """The Machine's private IPv4 address (eth0's, 172.19.x.x on Fly): where Fly Proxy, and so Flycast, reaches
    a Machine's services (Fly's Flycast docs: bind 0.0.0.0, not fly-local-6pn). None unless it is private and not
    loopback. A Machine has no public address on its interfaces; the inventory refuses an app with a public IP,
    so that Fly Proxy does not carry the service to the internet either."""
    interface = default_route_interface(route_path)
    address = interface_ipv4(interface) if interface else None
    if address is None:
        return None
    parsed = ipaddress.ip_address(address)
    return address if not parsed.is_loopback and address_problem(parsed) is None else None


def listen_name(ip: str, hosts_path: str = "/etc/hosts", route_path: str = "/proc/net/route") -> str:
    """For "auto": on a Fly Machine (fly-local-6pn in /etc/hosts) PRIVATE_IPV4_NAME, its private IPv4 address,
    which Flycast reaches (where it has none, fly-local-6pn, which `fly proxy` reaches); elsewhere 127.0.0.1.
    The launchers resolve names at every start: each start finds the IPv4 address the Machine has then."""
    if ip != "auto":
        return ip
    try:
        with open(hosts_path) as hosts:
            on_fly = FLY_PRIVATE_NAME in hosts.read().split()
    except OSError:
        on_fly = False
    if not on_fly:
        return "127.0.0.1"
    return PRIVATE_IPV4_NAME if machine_private_ipv4(route_path) else FLY_PRIVATE_NAME
