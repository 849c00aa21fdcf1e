"""The machine, declared once: the dev user, the layout and the services, on the controller.

Each default is spelled once, in the defaults/main.yml of the role it belongs to (dev_user_name
in dev_user's, jupyter_port in jupyter's, ...). Everything that needs a fact of the machine reads
it through `machine()`: the input check, the services task, `make up` (the volume's mount point,
the published ports, the image's build argument), `make status`, `make ssh-config`, the hints.
The services are one list: the built-in entries (`jupyter_service`, `tensorboard_service`, from
their roles' defaults) followed by the user's `devbox_services`, each of the shape
plugins/module_utils/devbox_service.py checks.
"""
from __future__ import annotations

import os

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible.utils.vars import combine_vars

from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (
    JUPYTER, ServiceError, behind_jupyter, normalize_all)

# plugins/plugin_utils/ -> the top of the repository or of the installed collection, where roles/ is.
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
# The roles whose defaults hold a fact of the machine, in site.yml's order.
ROLES = ("dev_user", "gpu", "swap", "python_env", "jupyter", "tensorboard", "idle_stop")
# The services every machine has, by the variable that holds each entry.
BUILT_IN = {"jupyter": "jupyter_service", "tensorboard": "tensorboard_service"}


def role_defaults(loader: DataLoader, roles=ROLES) -> dict:
    """The defaults of these roles, merged, as Ansible loads them (templates left for later)."""
    defaults = {}
    for role in roles:
        # unsafe: the loader's cached parse itself, not a deep copy of it on every call (nothing here changes it).
        defaults.update(loader.load_from_file(os.path.join(TOP, "roles", role, "defaults", "main.yml"),
                                              trusted_as_template=True, unsafe=True) or {})
    return defaults


def service_entries(value) -> list:
    """The built-in entries and the user's devbox_services, as one list; ServiceError when a user entry
    takes a built-in's name (those are set through their own variables)."""
    user_entries = value("devbox_services", [])
    if not isinstance(user_entries, list):
        raise ServiceError(f"devbox_services must be a list of entries, not {user_entries!r}")
    for entry in user_entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name in BUILT_IN:
            raise ServiceError(f"devbox_services: {name!r} is built in; set {BUILT_IN[name]} or its "
                               f"{name}_* variables (roles/{name}/README.md) instead")
    return [value(variable) for variable in BUILT_IN.values()] + list(user_entries)


def facts(value) -> dict:
    """The machine's facts from value(name[, default]), which returns a variable, templated.

    A service whose ip is "auto" listens on the target's private address when the target names one
    (devbox_private_ip: the local machine's container name, where its published ports arrive); else
    the machine decides (its private IPv4 on a Fly Machine, 127.0.0.1 elsewhere).
    ServiceError when the services are not a usable list (the input check words it for the user).
    """
    services = normalize_all(service_entries(value), list(BUILT_IN.values()))
    private = value("devbox_private_ip", None)
    if private:
        services = [dict(service, ip=private) if service["ip"] == "auto" else service for service in services]
    if any(behind_jupyter(service) for service in services):
        # Jupyter serves them at /proxy/<port>/, behind its own login.
        services = [dict(service, packages=service["packages"] + [value("jupyter_server_proxy_spec")])
                    if service["name"] == JUPYTER else service for service in services]
    return {
        "user": value("dev_user_name"),
        "uid": int(value("dev_user_uid")),
        "gid": int(value("dev_user_gid")),
        "home": value("dev_user_home"),
        "home_is_volume": bool(value("dev_user_home_is_volume")),
        "venv_dir": value("python_env_venv_dir"),
        "project_dir": value("python_env_project_dir"),
        "service_venvs_dir": value("python_env_service_venvs_dir"),
        "services": services,
        # What the project venv holds beside the user's packages: the kernel, and the packages of the
        # services that run from it (python_env installs them, so the machine's lock holds them).
        "project_venv_packages": [value("jupyter_kernel_spec")] + [
            spec for service in services if service["venv"] == "project" for spec in service["packages"]],
    }


def templated_value(templar: Templar):
    """value(name[, default]) over a Templar whose variables are the defaults overlaid with the play's."""
    missing = object()
    templated = {}  # each variable is templated once: the variables do not change while one action runs

    def value(name: str, default=missing):
        variables = templar.available_variables
        if name not in variables:
            if default is missing:
                raise KeyError(f"{name} is not defined: no role default and no value given")
            return default
        if name not in templated:
            templated[name] = templar.template(variables[name])
        return templated[name]
    return value


def play_value(templar: Templar, loader: DataLoader, variables: dict | None):
    """value(name[, default]) inside a play (the actions, the lookup): the roles' defaults overlaid with the
    play's variables, templated by the play's own templar."""
    merged = combine_vars(role_defaults(loader), variables or {})
    return templated_value(templar.copy_with_new_env(available_variables=merged))


def machine(given: dict | None = None) -> dict:
    """The facts outside a play (`make up`, `make status`): the roles' defaults, overlaid with `given`
    (the inventory's host variables and the extra variables, as parsed data)."""
    loader = DataLoader()
    templar = Templar(loader=loader, variables=combine_vars(role_defaults(loader), given or {}))
    return facts(templated_value(templar))


def service_url(service: dict, services: list, address_here: str, ports_here: dict | None) -> str | None:
    """Where the user reaches the service: http://<address_here>:<port here><url_path>, or for a service
    behind Jupyter's login, Jupyter's address with /proxy/<port><url_path>; None when not published."""
    if behind_jupyter(service):
        jupyter = next((other for other in services if other["name"] == JUPYTER), None)
        port = jupyter and (jupyter["port"] if ports_here is None else ports_here.get(jupyter["port"]))
        return f"http://{address_here}:{port}/proxy/{service['port']}{service['url_path']}" if port else None
    port = service["port"] if ports_here is None else ports_here.get(service["port"])
    return f"http://{address_here}:{port}{service['url_path']}" if port else None
