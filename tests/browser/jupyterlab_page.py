"""JupyterLab as a user sees it: headless Chromium (Debian's) driven by Selenium, doing what a
person does with the mouse and keyboard: open the URL, click the launcher, type in a cell,
Shift+Enter, Ctrl+S, double-click a file."""
from __future__ import annotations

import os
import tempfile

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless as root, and quiet: without the background-networking flags Chromium keeps calling
# Google's hosts, which a closed network refuses.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900")
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def chromium() -> webdriver.Chrome:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), f"{path} missing: run `python tools/ensure_browser.py` (as root)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={tempfile.mkdtemp(prefix='devbox-chromium-')}",):
        options.add_argument(flag)
    # Both paths given: Selenium uses them and never tries to download a driver.
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class JupyterLab:
    def __init__(self, driver: webdriver.Chrome, timeout: float = 120):
        self.driver, self.timeout = driver, timeout

    def wait(self, condition, what: str, timeout: float | None = None):
        def check(driver):
            try:
                return condition(driver)
            except StaleElementReferenceException:  # JupyterLab re-rendered it under us: look again
                return False
        return WebDriverWait(self.driver, timeout or self.timeout).until(check, f"timed out waiting for {what}")

    def find(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def open(self, url: str) -> None:
        """Open the URL and wait until JupyterLab has drawn its file browser."""
        self.driver.get(url)
        self.wait(lambda d: self.find(".jp-DirListing-content") and self.find("#jp-main-dock-panel"),
                  "JupyterLab to render")

    def new_notebook(self) -> None:
        """Click the launcher's first card under Notebook: the project's kernel, the default."""
        self.wait(lambda d: self.find('.jp-LauncherCard[data-category="Notebook"]'), "the launcher")
        self.find('.jp-LauncherCard[data-category="Notebook"]')[0].click()
        self.wait(lambda d: self.find(f"{NOTEBOOK} .jp-Cell .cm-content"), "the new notebook")
        self.wait_for_kernel()

    def open_file(self, name: str) -> None:
        """Double-click the file in the file browser."""
        item = f'.jp-DirListing-item[title^="Name: {name}"]'
        self.wait(lambda d: any(element.is_displayed() for element in self.find(item)), f"{name} in the file browser")
        ActionChains(self.driver).double_click(next(e for e in self.find(item) if e.is_displayed())).perform()
        self.wait(lambda d: self.find(f"{NOTEBOOK} .jp-Cell .cm-content"), f"{name} to open")
        self.wait_for_kernel()

    def wait_for_kernel(self) -> None:
        """Until the status bar says the kernel is idle: a cell run while it still connects is
        dropped (the toolbar's indicator says "idle" then too, before any kernel exists)."""
        self.wait(lambda d: any(item.text == "Python (project) | Idle" for item in self.find(".jp-StatusBar-Item")),
                  "the kernel to be ready")

    def outputs(self) -> str:
        return "\n".join(output.text for output in self.find(f"{NOTEBOOK} .jp-OutputArea-output"))

    def run_cell(self, code: str, expect: str) -> str:
        """Type into the notebook's last (empty) cell, Shift+Enter, wait for `expect` in an output."""
        editor = self.find(f"{NOTEBOOK} .jp-Cell:last-child .cm-content")[0]
        editor.click()
        editor.send_keys(code)
        ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        self.wait(lambda d: expect in self.outputs(), f"{expect!r} in the notebook's output")
        return self.outputs()

    def save_as(self, name: str) -> None:
        """Ctrl+S; JupyterLab asks for a name on an Untitled notebook's first save: give it."""
        ActionChains(self.driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
        self.wait(lambda d: self.find(".jp-Dialog input"), "the rename dialog of the first save")
        field = self.find(".jp-Dialog input")[0]
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(name, Keys.ENTER)
        self.wait(lambda d: not self.find(".jp-Dialog") and not self.find(".lm-TabBar-tab.jp-mod-dirty"),
                  f"{name} to be saved")

    def toasts(self) -> str:
        return "\n".join(toast.text for toast in self.find(".Toastify__toast"))

    def screenshot(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        assert self.driver.save_screenshot(path), path
