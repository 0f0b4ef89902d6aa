// MQTT.js in headless Chromium, driven by playwright-core: opens
// TIDE_PAGE_URL (index.html, served by the Go test with MQTT.js's browser
// bundle), runs the scenario against TIDE_WS_URL in the page and prints one
// line "RESULT <json>" for the Go test (core/listener browser_test.go).
// With TIDE_WS_URL_FORBIDDEN, it also tries a broker that does not allow the
// page's origin, and reports how that went.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { TIDE_WS_URL: url, TIDE_PAGE_URL: pageURL } = process.env;
const executablePath = process.env.TIDE_CHROMIUM || '/usr/bin/chromium';
if (!url || !pageURL) {
  console.error('usage: TIDE_WS_URL=ws://host:port/mqtt TIDE_PAGE_URL=http://host:port/ node browser.mjs');
  process.exit(2);
}
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tide-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on('console', (m) => console.log('console: ' + m.text()));
  page.on('pageerror', (e) => console.log('pageerror: ' + e.message));
  await page.goto(pageURL);
  await page.waitForFunction(() => window.tideReady === true, null, { timeout: 15000 });
  const result = await page.evaluate(
    (a) => window.tideScenario(window.mqtt, a.url, a.opts),
    {
      url,
      opts: {
        clientId: 'mqttjs-browser',
        protocolVersion: Number(process.env.TIDE_MQTT_VERSION || 5),
        retainedTopic: 'web/retained',
        echoTopic: 'web/echo/browser',
      },
    },
  );
  const forbidden = process.env.TIDE_WS_URL_FORBIDDEN;
  if (forbidden) {
    // A broker that does not allow this page's origin: the browser's
    // handshake must fail.
    const r = await page.evaluate(
      (a) => window.tideScenario(window.mqtt, a.url, a.opts),
      { url: forbidden, opts: { clientId: 'mqttjs-forbidden', protocolVersion: 5, retainedTopic: 'x', echoTopic: 'y', timeoutMs: 5000 } },
    );
    result.forbidden = { connected: r.connected, error: r.error };
  }
  result.userAgent = await page.evaluate(() => navigator.userAgent);
  result.origin = await page.evaluate(() => location.origin);
  console.log('RESULT ' + JSON.stringify(result));
} finally {
  await context?.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
