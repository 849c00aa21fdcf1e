"""jupyter_server_settings: any Jupyter setting, except those that would open the server or drop its token.

The value is shaped like jupyter_server_config.json: {section: {setting: value}}, e.g.
{"ServerApp": {"iopub_data_rate_limit": 10000000}, "FileContentsManager": {"delete_to_trash": false}}.
It is merged over the role's own settings, setting by setting. The rule, one place for both the
controller (the input check, devbox_check_inputs, before anything changes) and the machine
(the devbox_jupyter module, where host names resolve):

- settings the role owns are refused with the variable to set instead: ServerApp.ip (jupyter_ip),
  ServerApp.port and port_retries (jupyter_port), any token (jupyter_token);
- settings that would let anyone in are refused in every section: passwords, another login or
  identity provider or authorizer, unauthenticated access, turning XSRF checks off, a CORS origin
  of '*' or any origin pattern, Prometheus metrics without the token, a Unix socket instead of the
  checked address, and allow_remote_access (the role sets it: fly proxy and published ports need it);
- any other setting named ip (a kernel's, say) must pass the listening-address rule of
  devbox_address: no wildcard, no public address.

Standard library only.
"""
from __future__ import annotations

# The project's own libraries by the collection's name, the one import style of this tree.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import spelling_problem

SERVER_SECTIONS = ("ServerApp", "NotebookApp")
# The role's own settings: the variable that sets each one.
OWNED = {"ip": "jupyter_ip", "port": "jupyter_port", "port_retries": "jupyter_port"}
FIX_TOKEN = "leave the token to the role (jupyter_token, or the one kept on the volume)"
# Settings that would open the server to anyone who reaches its address, anywhere in the file.
OPENING = {
    "password": FIX_TOKEN,
    "hashed_password": FIX_TOKEN,
    "password_required": FIX_TOKEN,
    "allow_password_change": FIX_TOKEN,
    "identity_provider_class": FIX_TOKEN,
    "login_handler_class": FIX_TOKEN,
    "authorizer_class": FIX_TOKEN,
    "cookie_secret": FIX_TOKEN,
    "allow_unauthenticated_access": FIX_TOKEN,
    "authenticate_prometheus": "the metrics stay behind the token: drop this setting",
    "disable_check_xsrf": "XSRF checks stay on: drop this setting",
    "allow_origin_pat": "a pattern can match any site: list exact origins in allow_origin instead",
    "allow_remote_access": "the role sets it (fly proxy and published ports need it): drop this setting",
    "sock": "Jupyter listens on jupyter_ip, checked by the role: drop this setting",
}


def settings_problem(settings, address_problem=spelling_problem) -> str | None:
    """Why these settings must not be merged into Jupyter's (naming the setting, its value and the fix); None when they may.

    address_problem judges a value of an `ip` setting: the text alone on the controller, what a
    name resolves to on the machine.
    """
    if not isinstance(settings, dict):
        return (f"jupyter_server_settings={settings!r} must be a mapping of sections to settings, "
                "e.g. {ServerApp: {iopub_data_rate_limit: 10000000}}")
    for section, values in settings.items():
        if not isinstance(section, str) or not isinstance(values, dict):
            return (f"jupyter_server_settings.{section}={values!r} must be a mapping of settings: write "
                    f"{{Section: {{setting: value}}}}, e.g. {{ServerApp: {{iopub_data_rate_limit: 10000000}}}}")
        for key, value in values.items():
            where = f"jupyter_server_settings.{section}.{key}={value!r}"
            if key == "token" or (section in SERVER_SECTIONS and key in OWNED):
                variable = "jupyter_token" if key == "token" else OWNED[key]
                return f"{where} is set by the role: set {variable} instead and drop this setting"
            if key in OPENING:
                return f"{where} would open Jupyter to anyone who reaches it: {OPENING[key]}"
            if key == "allow_origin" and "*" in str(value):
                return f"{where} would let any web site use Jupyter: list exact origins (https://example.org) instead"
            if key == "ip":
                problem = address_problem(str(value))
                if problem:
                    return f"{where} would open Jupyter's {section} to the network ({problem}): use a private address"
    return None


def merged(own: dict, settings: dict) -> dict:
    """The role's settings with jupyter_server_settings laid over them, setting by setting."""
    result = {section: dict(values) for section, values in own.items()}
    for section, values in settings.items():
        result.setdefault(section, {}).update(values)
    return result
