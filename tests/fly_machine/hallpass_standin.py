#!/usr/bin/python3
"""Boot of the Fly Machine stand-in: what Fly's init does before the image's CMD runs.

Maps fly-local-6pn to the container's IPv6 address in /etc/hosts (Fly's init does the same for
the 6PN address), creates fresh SSH host keys (hallpass keys do not survive a restart either),
starts sshd listening on that address only, then replaces itself with the image's PID 1.
A container without a routable IPv6 address is an error: the stand-in never falls back to IPv4.
"""
import ipaddress
import os
import subprocess
import sys


def six_pn_address() -> str:
    """The interface's global (here: unique local) IPv6 address, as Fly's 6PN address is."""
    with open("/proc/net/if_inet6", encoding="ascii") as table:
        for line in table:
            hex_address, _index, _prefix, scope, _flags, interface = line.split()
            address = ipaddress.IPv6Address(bytes.fromhex(hex_address))
            if interface != "lo" and scope == "00":
                return str(address)
    sys.exit("hallpass-standin: no IPv6 address besides loopback and link-local: "
             "run the container on a Docker network created with --ipv6")


address = six_pn_address()
# Rewritten in place (Docker bind-mounts /etc/hosts); the address may change across restarts.
with open("/etc/hosts", "r+", encoding="utf-8") as hosts:
    kept = [line for line in hosts if "fly-local-6pn" not in line.split()]
    hosts.seek(0)
    hosts.writelines(kept + [f"{address}\tfly-local-6pn\n"])
    hosts.truncate()
# A restarted container keeps its files (a Machine's root FS would be fresh): the old keys go first.
for old_key in ("/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"):
    if os.path.exists(old_key):
        os.remove(old_key)
subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/etc/ssh/ssh_host_ed25519_key"], check=True,
               stdout=subprocess.DEVNULL)
os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-o", f"ListenAddress=[{address}]:22"], stdin=subprocess.DEVNULL)
os.execv("/usr/local/sbin/devbox-boot", ["/usr/local/sbin/devbox-boot"])
