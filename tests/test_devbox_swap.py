"""The reading of /proc/meminfo and the advice of the swap module and the look (plugins/module_utils/devbox_swap.py)."""
from ansible_collections.devbox.machine.plugins.module_utils import devbox_swap as swap

MEMINFO = "MemTotal:       16318412 kB\nSwapCached:            0 kB\nSwapTotal:       4194300 kB\nSwapFree:        4194300 kB\n"


def test_swap_total_is_read_in_mb():
    assert swap.swap_total_mb(MEMINFO) == 4095


def test_no_swap_line_reads_as_none():
    assert swap.swap_total_mb("MemTotal:       16318412 kB\n") == 0


def test_the_advice_names_the_fly_toml_key_and_the_other_hosts_way():
    text = swap.advice(0, 2048)
    assert "Swap is 0 MB, below swap_min_mb=2048" in text
    assert "`swap_size_mb = 2048` in fly.toml" in text and "mkswap" in text
