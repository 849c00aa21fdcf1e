import pytest

from ansible_collections.devbox.machine.plugins.action.devbox_check_inputs import is_requirement


@pytest.mark.parametrize("spec", ["numpy", "torch==2.5.1", "jupyterlab>=4,<5", "requests[socks]", "pkg; python_version>'3.8'"])
def test_valid_specifiers(spec):
    assert is_requirement(spec)


@pytest.mark.parametrize("spec", ["", "  ", "numpy===", "torch=2.5", "-r requirements.txt", "not a package", 42, None])
def test_invalid_specifiers(spec):
    assert not is_requirement(spec)
