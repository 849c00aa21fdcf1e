"""The devbox_jupyter module's own logic."""
import os

from test_module_docs import ROOT, load

jupyter = load(os.path.join(ROOT, "plugins", "modules", "devbox_jupyter.py"))


def test_auto_listens_on_the_fly_private_name_only_on_fly(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\nfdaa::3 fly-local-6pn\n")
    assert jupyter.listen_name("auto", str(hosts)) == "fly-local-6pn"
    hosts.write_text("127.0.0.1 localhost\n")
    assert jupyter.listen_name("auto", str(hosts)) == "127.0.0.1"
    assert jupyter.listen_name("10.0.0.2", str(hosts)) == "10.0.0.2"
