/**
 * Debian's chromium as the browser tests drive it (tests/browser.test.ts, tests/web-ui.test.ts):
 * headless, with the flags the probe of this machine kind ran with (no sandbox as root, no
 * GPU, no background traffic).
 */
export const CHROMIUM = "/usr/bin/chromium";
export const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
