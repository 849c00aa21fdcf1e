#!/usr/bin/python3
"""Boot of the Fly Machine stand-in: what Fly's init does before the image's CMD runs.

Maps fly-local-6pn to the container's address in /etc/hosts (Fly's init does the same for the
6PN address), creates fresh SSH host keys (hallpass keys do not survive a restart either),
starts sshd in the foreground as a child, then replaces itself with the image's PID 1.
"""
import os
import socket
import subprocess

address = socket.gethostbyname(socket.gethostname())
# Rewritten in place (Docker bind-mounts /etc/hosts); the address may change across restarts.
with open("/etc/hosts", "r+", encoding="utf-8") as hosts:
    kept = [line for line in hosts if "fly-local-6pn" not in line.split()]
    hosts.seek(0)
    hosts.writelines(kept + [f"{address}\tfly-local-6pn\n"])
    hosts.truncate()
subprocess.run(["ssh-keygen", "-A"], check=True, stdout=subprocess.DEVNULL)
os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
subprocess.Popen(["/usr/sbin/sshd", "-D", "-e"], stdin=subprocess.DEVNULL)
os.execv("/usr/local/sbin/devbox-boot", ["/usr/local/sbin/devbox-boot"])
