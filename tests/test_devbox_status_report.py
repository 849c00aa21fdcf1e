"""`make status` on the controller: every registered service listed, up or down, its URL built from the port
and path status checked (never pasted from the machine), the token only when asked, control characters
escaped, and the services the facts want compared with the records."""
from ansible_collections.devbox.machine.plugins.action.devbox_status_report import (
    escaped, report, service_changes, service_lines)

OPTIONS = {"show_token": False, "token_hint": "`make status SHOW_TOKEN=1` prints the URL with it", "open_hint": "",
           "address_here": "127.0.0.1", "ports_here": {9000: 18870, 6006: 6006, 8501: 8501},
           "unpublished_hint": "`make up` publishes every service's port"}
TOKEN = "a" * 48
FOUND = {"user_exists": True, "lines": ["Venv: /home/alice/project-venv, Python 3.11, 12 packages"], "next_run": [],
         "services": [{"name": "jupyter", "port": 9000, "url_path": "/lab", "healthy": True},
                      {"name": "streamlit", "port": 8501, "url_path": "/", "healthy": False},
                      {"name": "tensorboard", "port": 6006, "url_path": "/", "healthy": True}],
         "service_problems": [], "jupyter_token": {"token": TOKEN}}
WANTED = [{"name": "jupyter", "port": 9000}, {"name": "tensorboard", "port": 6006}]


def options(**changes):
    return dict(OPTIONS, **changes)


def test_every_registered_service_is_listed_with_its_url_here():
    assert service_lines(FOUND, OPTIONS) == [
        "jupyter: up, http://127.0.0.1:18870/lab; token hidden: `make status SHOW_TOKEN=1` prints the URL with it",
        "streamlit: DOWN (nothing of the dev user listens on port 8501); the next run starts it",
        "tensorboard: up, http://127.0.0.1:6006/"]


def test_the_token_only_when_asked_and_only_when_it_is_url_safe():
    hidden = "\n".join(service_lines(FOUND, OPTIONS))
    assert TOKEN not in hidden and "token hidden" in hidden
    assert service_lines(FOUND, options(show_token=True))[0] == f"jupyter: up, http://127.0.0.1:18870/lab?token={TOKEN}"
    odd = dict(FOUND, jupyter_token={"token": "x y\x1b[2J"})
    line = service_lines(odd, options(show_token=True))[0]
    assert "\x1b" not in line and "x y" not in line and "token not shown" in line


def test_an_unpublished_port_and_the_tunnel_default():
    line = service_lines(FOUND, options(ports_here={9000: 18870}))[2]
    assert line == "tensorboard: up on port 6006, not published on this computer: `make up` publishes every service's port"
    tunnel = service_lines(FOUND, options(address_here="localhost", ports_here=None, open_hint="fly proxy 9000 -a app"))
    assert tunnel[0].startswith("jupyter: up, http://localhost:9000/lab;") and tunnel[-1] == "Open it: fly proxy 9000 -a app"


def test_nothing_from_the_machine_reaches_a_url_or_the_terminal_unchecked():
    bad = dict(FOUND, services=[{"name": "evil", "port": 8000, "url_path": "/\x1b]8;;http://x\x07", "healthy": True},
                                {"name": "Evil\n", "port": 8000, "url_path": "/", "healthy": True},
                                {"name": "big", "port": 99999, "url_path": "/", "healthy": True}],
               service_problems=["skipped: /home/u/.devbox/service-x.json\x1b[31m is damaged"],
               lines=["Venv: \x1b[2Jgone"])
    lines = report(bad, [], OPTIONS)
    assert all("\x1b" not in line and "\n" not in line and "\x07" not in line for line in lines)
    assert sum(line.startswith("A service record not shown") for line in lines) == 3
    assert "Venv: \\x1b[2Jgone" in lines
    assert escaped("a\tb\x9bc") == "a\\x09b\\x9bc"


def test_a_down_service_the_facts_no_longer_list_is_said_to_go():
    lines = service_lines(FOUND, OPTIONS, WANTED)
    assert lines[1] == ("streamlit: DOWN (nothing of the dev user listens on port 8501); the next run unregisters it "
                        "(it is no longer in the list)")
    assert service_lines(FOUND, OPTIONS, WANTED + [{"name": "streamlit", "port": 8501}])[1].endswith("the next run starts it")


def test_no_service_registered_is_said():
    assert service_lines(dict(FOUND, services=[]), OPTIONS) == ["Services: none registered (the next run registers them)"]


def test_the_next_run_compares_the_facts_with_the_records():
    assert service_changes(FOUND, WANTED) == ["stop and unregister streamlit"]
    moved = [{"name": "jupyter", "port": 9001}, {"name": "tensorboard", "port": 6006}, {"name": "app", "port": 8600}]
    assert service_changes(FOUND, moved) == ["move jupyter to port 9001 (now 9000)", "register and start app on port 8600",
                                             "stop and unregister streamlit"]
    down = dict(FOUND, services=[dict(FOUND["services"][0], healthy=False)])
    assert service_changes(down, WANTED[:1]) == ["start jupyter"]
    assert report(dict(FOUND, services=FOUND["services"][::2]), WANTED, OPTIONS)[-1] == \
        "Next run: nothing to change, as far as status can tell"


def test_a_machine_without_its_user_lists_no_services():
    lines = report({"user_exists": False, "lines": ["Not provisioned: no user alice on this machine"],
                    "next_run": ["create the user alice and everything in the home"]}, WANTED, OPTIONS)
    assert lines == ["Not provisioned: no user alice on this machine",
                     "Next run: create the user alice and everything in the home"]
