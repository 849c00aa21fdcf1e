"""jupyter_server_settings: any Jupyter setting, except those that would open the server or drop its token.

The value is shaped like jupyter_server_config.json: {section: {setting: value}}, e.g.
{"ServerApp": {"iopub_data_rate_limit": 10000000}, "FileContentsManager": {"delete_to_trash": false}}.
It is merged over the role's own settings, setting by setting. The rule, one place for both the
controller (the input check, devbox_check_inputs, before anything changes) and the machine
(the devbox_services module, where host names resolve). Every key is checked, at any depth (inside a
setting's value too, lists included) and in any section, case-insensitively, each part of a dotted
key on its own:

- settings the role owns are refused with the variable to set instead: ServerApp.ip (jupyter_ip),
  ServerApp.port and port_retries (jupyter_port), any token (jupyter_token);
- settings that would let anyone in are refused: passwords, another login, logout or identity
  provider or authorizer, unauthenticated access, the cookie secret or its file (a public file signs
  a login cookie), cookie options, anything about XSRF, tornado_settings and webapp_settings (merged
  over the server's own settings: cookie_secret, xsrf_cookies, ...), the kernels' message signing key
  (Session.key, keyfile, signature_scheme), a CORS origin of '*' or any origin pattern, Prometheus
  metrics without the token, a Unix socket instead of the checked address, and allow_remote_access
  (the role sets it: fly proxy and published ports need it); so is any key with cookie, xsrf, secret,
  password, login, identity or authoriz in its name;
- any other setting named ip (a kernel's, say) must pass the listening-address rule of
  devbox_address: no wildcard, no public address.

Standard library only.
"""
from __future__ import annotations

# The project's own libraries by the collection's name, the one import style of this tree.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import spelling_problem

SERVER_SECTIONS = ("serverapp", "notebookapp")
# The role's own settings: the variable that sets each one.
OWNED = {"ip": "jupyter_ip", "port": "jupyter_port", "port_retries": "jupyter_port"}
FIX_TOKEN = "leave the login to the role's token (jupyter_token, or the one kept on the volume): drop this setting"
# Settings that would open the server to anyone who reaches its address, anywhere in the file.
OPENING = {
    "password": FIX_TOKEN,
    "hashed_password": FIX_TOKEN,
    "password_required": FIX_TOKEN,
    "allow_password_change": FIX_TOKEN,
    "identity_provider_class": FIX_TOKEN,
    "login_handler_class": FIX_TOKEN,
    "logout_handler_class": FIX_TOKEN,
    "authorizer_class": FIX_TOKEN,
    "cookie_secret": "anyone who knows the secret signs a login cookie: " + FIX_TOKEN,
    "cookie_secret_file": "anyone who can read the file signs a login cookie: " + FIX_TOKEN,
    "cookie_options": FIX_TOKEN,
    "get_secure_cookie_kwargs": FIX_TOKEN,
    "tornado_settings": "Jupyter merges it over its own settings (cookie_secret, xsrf_cookies, ...),"
                        " which would replace its login: drop this setting",
    "webapp_settings": "the old name of tornado_settings, merged over Jupyter's own settings: drop this setting",
    "allow_unauthenticated_access": FIX_TOKEN,
    "authenticate_prometheus": "the metrics stay behind the token: drop this setting",
    "disable_check_xsrf": "XSRF checks stay on: drop this setting",
    "xsrf_cookies": "XSRF checks stay on: drop this setting",
    "allow_origin_pat": "a pattern can match any site: list exact origins in allow_origin instead",
    "allow_remote_access": "the role sets it (fly proxy and published ports need it): drop this setting",
    "sock": "Jupyter listens on jupyter_ip, checked by the role: drop this setting",
}
# Settings of one section only (their names are too common to refuse everywhere).
OPENING_IN = {
    ("session", "key"): "the kernels' messages stay signed with Jupyter's own key: drop this setting",
    ("session", "keyfile"): "the kernels' messages stay signed with Jupyter's own key: drop this setting",
    ("session", "signature_scheme"): "the kernels' messages stay signed with Jupyter's own key: drop this setting",
}
# Any other key with one of these in its name is about the login too.
LOGIN_WORDS = ("cookie", "xsrf", "secret", "password", "login", "identity", "authoriz")
FIX_LOGIN = "it is about Jupyter's login, which stays the role's token: drop this setting"


def _key_problem(section: str, key: str) -> str | None:
    """Why this key must not be set (the fix), 'owned:<variable>' for the role's own settings; None when it may."""
    for part in key.lower().split("."):
        if part == "token":
            return "owned:jupyter_token"
        if section.lower() in SERVER_SECTIONS and part in OWNED:
            return "owned:" + OWNED[part]
        if part in OPENING:
            return OPENING[part]
        if (section.lower(), part) in OPENING_IN:
            return OPENING_IN[(section.lower(), part)]
        if any(word in part for word in LOGIN_WORDS):
            return FIX_LOGIN
    return None


def _value_problem(section: str, where: str, key: str, value, address_problem) -> str | None:
    """The first refused key in this setting's value or under it, with its path."""
    shown = f"jupyter_server_settings.{where}={value!r}"
    fix = _key_problem(section, key)
    if fix and fix.startswith("owned:"):
        return f"{shown} is set by the role: set {fix[len('owned:'):]} instead and drop this setting"
    if fix:
        return f"{shown} would open Jupyter to anyone who reaches it: {fix}"
    last = key.lower().split(".")[-1]
    if last == "allow_origin" and "*" in str(value):
        return f"{shown} would let any web site use Jupyter: list exact origins (https://example.org) instead"
    if last == "ip":
        problem = address_problem(str(value))
        if problem:
            return f"{shown} would open Jupyter's {section} to the network ({problem}): use a private address"
    children = (value.items() if isinstance(value, dict)
                else ((f"[{index}]", item) for index, item in enumerate(value)) if isinstance(value, list) else ())
    for child, item in children:
        child = str(child)
        problem = _value_problem(section, f"{where}{child}" if child.startswith("[") else f"{where}.{child}",
                                 key if child.startswith("[") else child, item, address_problem)
        if problem:
            return problem
    return None


def settings_problem(settings, address_problem=spelling_problem) -> str | None:
    """Why these settings must not be merged into Jupyter's (naming the setting, its value and the fix); None when they may.

    Every key is checked, at any depth. address_problem judges a value of an `ip` setting: the text
    alone on the controller, what a name resolves to on the machine.
    """
    if not isinstance(settings, dict):
        return (f"jupyter_server_settings={settings!r} must be a mapping of sections to settings, "
                "e.g. {ServerApp: {iopub_data_rate_limit: 10000000}}")
    for section, values in settings.items():
        if not isinstance(section, str) or not isinstance(values, dict):
            return (f"jupyter_server_settings.{section}={values!r} must be a mapping of settings: write "
                    f"{{Section: {{setting: value}}}}, e.g. {{ServerApp: {{iopub_data_rate_limit: 10000000}}}}")
        # A dotted section name (ServerApp.tornado_settings) is read by Jupyter as the setting it names.
        head, _, rest = section.partition(".")
        if rest:
            problem = _value_problem(head, section, rest, values, address_problem)
            if problem:
                return problem
        for key, value in values.items():
            problem = _value_problem(head, f"{section}.{key}", str(key), value, address_problem)
            if problem:
                return problem
    return None


def merged(own: dict, settings: dict) -> dict:
    """The role's settings with jupyter_server_settings laid over them, setting by setting."""
    result = {section: dict(values) for section, values in own.items()}
    for section, values in settings.items():
        result.setdefault(section, {}).update(values)
    return result
