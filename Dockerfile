# The dev machine's image: a minimal base, Python and what the Ansible roles need; everything
# else (the user's venv, packages, Jupyter, notebooks) lives on the volume mounted as home.
# Classic-builder syntax only (no BuildKit-only features): Molecule and Debian's engine build it.
ARG BASE_IMAGE=ubuntu:22.04
FROM ${BASE_IMAGE}

# No acl and no sudo: Ansible logs in as root and the modules drop to the dev user themselves.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates git nano \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# Name of the non-root user, no default: every build passes it (fly.toml's [build.args], `make up`
# and `make image` from the facts' dev_user_name). DEVBOX_HOME is where the boot step looks for the
# account record on the volume; `docker run --env DEVBOX_HOME=<home>` (make up) overrides this fallback.
# After the packages: another user rebuilds only what follows.
ARG NONROOT_USER
ENV DEVBOX_HOME=/home/${NONROOT_USER}

RUN test -n "${NONROOT_USER}" || { echo "build with --build-arg NONROOT_USER=<dev_user_name>" >&2; exit 1; }

# Root runs these at boot: root-owned, not writable by anyone else, outside the volume.
COPY boot/devbox_boot.py /usr/local/sbin/devbox-boot
# Its libraries keep the collection's layout, so it imports them by the collection's name as all the code does.
COPY plugins/module_utils/devbox_records.py plugins/module_utils/devbox_address.py plugins/module_utils/devbox_idle.py \
     plugins/module_utils/devbox_files.py \
     plugins/module_utils/devbox_gpu.py \
     plugins/module_utils/devbox_launcher.py plugins/module_utils/devbox_run_as.py plugins/module_utils/devbox_service.py \
     /usr/local/lib/devbox/ansible_collections/devbox/machine/plugins/module_utils/
RUN chmod 0755 /usr/local/sbin/devbox-boot \
    && find /usr/local/lib/devbox -type d -exec chmod 0755 {} + \
    && find /usr/local/lib/devbox -type f -exec chmod 0644 {} +

# PID 1: restore what the ephemeral root FS lost (user, driver init, the registered services), then sleep;
# exits 0 on SIGTERM so a Machine stops promptly and cleanly.
STOPSIGNAL SIGTERM
CMD ["/usr/local/sbin/devbox-boot"]
