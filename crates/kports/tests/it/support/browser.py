# Drives Debian's chromium (headless, through chromedriver and selenium) on the kports agent's
# page, for the agent's lab test. Arguments: URL TOKEN SCREENSHOT [CONDITION...], where a
# condition is `cell:NODE:PROTO/PORT:CLASS` (a matrix cell is drawn with that class: open, fail,
# maybe, none) or `agent:NODE:TEXT` (the node list's agent column for NODE contains TEXT).
# It types the token into the page's prompt, then refreshes the page's data (the page's own
# refresh(), no reload) until every condition holds (at most 90 s), saves a screenshot, and
# prints what the page shows as JSON: {"cells": [[node, port, class, text]], "agents":
# {node: text}, "status": line, "ok": bool, "detail": the text the first failing cell opens,
# or null, "failing_rows": the matrix's rows with the status filter on `failing`, "worker_rows":
# with the role filter on `worker`, "heat": whether the matrix is drawn as a heatmap}. It talks
# only to the URL it is given.
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

url, token, shot = sys.argv[1], sys.argv[2], sys.argv[3]
conditions = sys.argv[4:]

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1400,900", "--no-first-run", "--disable-extensions",
          "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--disable-default-apps"):
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(30)


def seen():
    cells = [[td.get_attribute("data-node"), td.get_attribute("data-port"),
              td.get_attribute("data-status"), td.text]
             for td in driver.find_elements(By.CSS_SELECTOR, "#matrix td.cell")]
    agents = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr"):
        tds = tr.find_elements(By.TAG_NAME, "td")
        agents[tr.get_attribute("data-node")] = tds[2].text
    status = driver.find_element(By.ID, "status").text
    return cells, agents, status


def holds(cond, cells, agents):
    kind, rest = cond.split(":", 1)
    if kind == "cell":
        node, port, cls = rest.split(":")
        return any(c[0] == node and c[1] == port and c[2] == cls for c in cells)
    if kind == "agent":
        node, text = rest.split(":", 1)
        return text in agents.get(node, "")
    raise SystemExit("unknown condition " + cond)


ok = False
try:
    driver.get(url)
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "use-token").click()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        loaded = driver.execute_script("return Number(document.body.dataset.loaded || 0)")
        if loaded >= 1:
            cells, agents, status = seen()
            if cells and all(holds(c, cells, agents) for c in conditions):
                ok = True
                break
        time.sleep(1)
        driver.execute_script("refresh()")
    cells, agents, status = seen()
    # The first failing cell, opened: its evidence and cause as the page shows them.
    detail = None
    failing = driver.find_elements(By.CSS_SELECTOR, "#matrix td.cell.fail")
    if failing:
        failing[0].click()
        detail = driver.find_element(By.ID, "detail-body").text
    driver.save_screenshot(shot)
    # The filters: the matrix's node rows with a failing cell, and those of the workers.
    def rows():
        return [th.text.split(" ")[0]
                for th in driver.find_elements(By.CSS_SELECTOR, "#matrix th.node")]
    Select(driver.find_element(By.ID, "f-status")).select_by_value("fail")
    failing_rows = rows()
    Select(driver.find_element(By.ID, "f-status")).select_by_value("")
    Select(driver.find_element(By.ID, "f-role")).select_by_value("worker")
    worker_rows = rows()
    heat = "heat" in (driver.find_element(By.ID, "matrix").get_attribute("class") or "")
    print(json.dumps({"cells": cells, "agents": agents, "status": status, "ok": ok,
                      "detail": detail, "failing_rows": failing_rows,
                      "worker_rows": worker_rows, "heat": heat}))
finally:
    driver.quit()
