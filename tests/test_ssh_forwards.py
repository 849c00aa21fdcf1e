"""make ssh-config: one LocalForward per service, on this computer's loopback, to where it listens."""
import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_ssh_config import SshConfigError, forward_line, host_block

ENTRY = {"inventory_name": "gpu", "connection": "ssh", "address": "192.0.2.10", "user": "alice",
         "services": [{"name": "jupyter", "port": 9000, "ip": "auto"}, {"name": "streamlit", "port": 8501, "ip": "10.0.0.5"}]}


def test_every_service_gets_a_forward_on_loopback():
    lines, _ = host_block(ENTRY)
    assert "    LocalForward 127.0.0.1:9000 127.0.0.1:9000" in lines
    assert "    LocalForward 127.0.0.1:8501 10.0.0.5:8501" in lines


def test_on_fly_auto_is_reached_through_flycast_not_forwarded_and_ipv6_is_bracketed():
    assert forward_line("m", {"port": 8888, "ip": "auto"}, on_fly=True) is None
    assert forward_line("m", {"port": 8888, "ip": "fdaa::3"}, on_fly=True) == "127.0.0.1:8888 [fdaa::3]:8888"
    lines, notes = host_block(dict(ENTRY, fly_app="my-app"))
    assert not any("LocalForward 127.0.0.1:9000" in text for text in lines)
    assert "    LocalForward 127.0.0.1:8501 10.0.0.5:8501" in lines
    assert any("`fly proxy 9000 my-app.flycast -a my-app`" in note for note in notes)


@pytest.mark.parametrize("service", [{"port": 80, "ip": "auto"}, {"port": True, "ip": "auto"},
                                     {"port": 8888, "ip": "x\n    ProxyCommand evil"}, {"port": 8888, "ip": "-oEvil"}])
def test_a_bad_port_or_address_never_becomes_a_config_line(service):
    with pytest.raises(SshConfigError):
        forward_line("m", service, on_fly=False)
