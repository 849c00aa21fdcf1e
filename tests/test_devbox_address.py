"""Where Jupyter may listen, the token's form, the home's place: the rules, on the machine and in the input check."""
import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_address
from ansible_collections.devbox.machine.plugins.action.devbox_check_inputs import is_home, is_jupyter_token, is_listen_address

WILDCARDS = ["", "0", "0x0", "00", "0.0.0.0", "::", "[::]", "::ffff:0.0.0.0", "0:0:0:0:0:0:0:0", "*", 0]
NOT_OURS = ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8", "224.0.0.1", "255.255.255.255", "ff02::1",
            "1.2.3.4.5", "a..b", "-bad", " ", "127.0.0.1 ", "fly-local-6pn; rm -rf /"]
PRIVATE = ["127.0.0.1", "127.1", "::1", "10.0.0.2", "172.16.5.4", "192.168.1.10", "100.100.1.1",
           "fdaa:0:18:a7b:196:e274:9ce1:2", "[fdaa::2]", "fe80::1%eth0"]
NAMES = ["auto", "fly-local-6pn", "devbox-local", "my.host.internal."]


@pytest.mark.parametrize("value", WILDCARDS + NOT_OURS)
def test_wildcards_public_and_malformed_addresses_are_refused_on_the_controller(value):
    assert is_listen_address(value) is False
    if isinstance(value, str):
        assert devbox_address.listen_address_problem(value) is not None


@pytest.mark.parametrize("value", [w for w in WILDCARDS if isinstance(w, str)])
def test_every_wildcard_spelling_is_named_as_all_interfaces(value):
    assert "means all interfaces" in devbox_address.listen_address_problem(value)


@pytest.mark.parametrize("value", PRIVATE + NAMES)
def test_private_addresses_and_host_names_pass_the_controller(value):
    assert is_listen_address(value) is True


@pytest.mark.parametrize("value", PRIVATE + ["localhost"])
def test_private_addresses_and_local_names_pass_on_the_machine(value):
    assert devbox_address.listen_address_problem(value) is None


def test_a_name_is_judged_by_what_it_resolves_to(monkeypatch):
    def public(name, *_args, **_kwargs):
        return [(2, 1, 6, "", ("10.0.0.2", 0)), (2, 1, 6, "", ("8.8.8.8", 0))]
    monkeypatch.setattr(devbox_address.socket, "getaddrinfo", public)
    problem = devbox_address.listen_address_problem("sneaky.example")
    assert problem.startswith("'sneaky.example' resolves to 8.8.8.8: 8.8.8.8 is a public address")


def test_the_machines_private_ipv4_is_its_default_routes_interfaces_and_must_be_private(tmp_path, monkeypatch):
    routes = tmp_path / "route"
    routes.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                      "eth1\t00000000\t011513AC\t0002\t0\t0\t0\t00000000\n"  # a default route that is down
                      "eth0\t00000000\t011513AC\t0003\t0\t0\t0\t00000000\n")
    assert devbox_address.default_route_interface(str(routes)) == "eth0"
    assert devbox_address.default_route_interface(str(tmp_path / "none")) is None
    for found, wanted in (("172.19.21.2", "172.19.21.2"), ("8.8.8.8", None), ("127.0.0.2", None), (None, None)):
        monkeypatch.setattr(devbox_address, "interface_ipv4", lambda interface, found=found: found)
        assert devbox_address.machine_private_ipv4(str(routes)) == wanted, found


def test_the_private_ipv4_name_stands_for_the_address_the_machine_has_when_it_is_read(monkeypatch):
    name = devbox_address.PRIVATE_IPV4_NAME
    assert is_listen_address(name) is True and devbox_address.spelling_problem(name) is None
    for found in ("172.19.21.2", "172.19.7.10"):  # a Machine back with another address: the name follows
        monkeypatch.setattr(devbox_address, "machine_private_ipv4", lambda found=found: found)
        assert str(devbox_address.literal_address(name)) == found
        assert devbox_address.listen_address_problem(name) is None
    monkeypatch.setattr(devbox_address, "machine_private_ipv4", lambda: None)
    assert devbox_address.literal_address(name) is None
    assert "no private IPv4 address" in devbox_address.listen_address_problem(name)


def test_an_interfaces_ipv4_is_read_from_the_kernel():
    assert devbox_address.interface_ipv4("lo") == "127.0.0.1"
    assert devbox_address.interface_ipv4("no-such-if0") is None


def test_a_name_that_does_not_resolve_is_named():
    assert "does not resolve on this machine" in devbox_address.listen_address_problem("no-such-host.invalid")


@pytest.mark.parametrize("token, usable", [
    ("a" * 32, True), ("0123456789abcdef" * 3, True), ("Ab-_.~" * 6, True), ("a" * 31, False),
    ("a" * 31 + " ", False), ("'" + "a" * 40 + "'", False), ("a" * 20 + " " + "a" * 20, False),
    ("a" * 40 + "\n", False), ("a" * 40 + "&x=1", False), ("", False), (None, False), (12345678901234567890123456789012345, False)])
def test_tokens_are_url_safe_and_long_enough(token, usable):
    assert is_jupyter_token(token) is usable


@pytest.mark.parametrize("home, usable", [("/home/pythonuser", True), ("/data/dev", True), ("/etc", False),
                                          ("/root/.", False), ("/home/pythonuser/../../etc", False), ("/", False)])
def test_the_home_check_on_the_controller_is_the_modules(home, usable):
    assert is_home(home) is usable
