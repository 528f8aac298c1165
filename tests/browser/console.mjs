// The operator console in a real browser: Playwright (playwright-core)
// driving Debian's headless chromium against a running auditor. Run by
// tests/console_test.go (TestConsoleInBrowser), which starts the services,
// makes the data and passes, in the environment:
//
//   CONSOLE_URL               the auditor's address (http://127.0.0.1:port)
//   CONSOLE_TOKEN             auditor.admin_token
//   CONSOLE_ORDER             the order number to search for
//   CONSOLE_EVENT_ID          the order event's id (dead-lettered on erp)
//   CONSOLE_HOSTILE_EVENT_ID  an event whose payload is HTML
//   CONSOLE_ARTIFACTS         where the screenshots go (default ./artifacts)
//   CHROMIUM                  the browser (default /usr/bin/chromium)
//
// Each step prints what it checked; the first failure stops the run with a
// non-zero exit and a screenshot of the page as it was.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set (tests/console_test.go sets it)`);
  return v;
};
const base = env('CONSOLE_URL');
const token = env('CONSOLE_TOKEN');
const order = env('CONSOLE_ORDER');
const eventId = env('CONSOLE_EVENT_ID');
const hostileId = env('CONSOLE_HOSTILE_EVENT_ID');
const artifacts = path.resolve(env('CONSOLE_ARTIFACTS', 'artifacts'));
const browserPath = env('CHROMIUM', '/usr/bin/chromium');
fs.mkdirSync(artifacts, { recursive: true });

const started = Date.now();
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
const check = (ok, msg) => { if (!ok) throw new Error(msg); };

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: browserPath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 900 },
});
context.setDefaultTimeout(15000);
const page = context.pages()[0] ?? await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
let navigations = 0;
page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });

const shots = [];
async function shot(name) {
  const file = path.join(artifacts, name);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

try {
  // Keyboard first: the skip link is the first stop.
  await page.goto(`${base}/ui/`);
  check(page.url().startsWith(`${base}/ui/login`), `without a session /ui/ should go to the login page, not ${page.url()}`);
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement?.textContent) === 'Skip to content', 'the first Tab stop is not the skip link');
  log('the login page; Tab reaches the skip link first');

  await page.getByLabel('Admin token').fill(token);
  await page.getByLabel('Your name').fill('e2e-oncall');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${base}/ui/`);
  log('logged in with the admin token');

  await page.getByRole('link', { name: 'Events', exact: true }).click();
  await page.getByLabel('Event id contains').fill(order);
  await page.getByLabel('Delivery status').selectOption('dead_lettered');
  await page.getByRole('button', { name: 'Search' }).click();
  const hit = page.getByRole('link', { name: eventId, exact: true });
  await hit.waitFor();
  check(await page.locator('tbody tr').count() === 1, 'the search by order number should find exactly one dead-lettered event');
  log(`found ${eventId} by its order number ${order}`);

  await hit.click();
  await page.waitForURL(/\/ui\/event\?id=/);
  const failed = page.locator('tr.attempt[data-outcome="retryable"]');
  await failed.nth(2).waitFor();
  check(await failed.count() === 3, `want 3 failed attempts, see ${await failed.count()}`);
  const firstAttempt = await failed.first().innerText();
  check(firstAttempt.includes('503') && firstAttempt.includes('<script>window.__pwned = 3</script>'),
    `a failed attempt should show 503 and the partner's body as text: ${firstAttempt}`);
  const erp = page.locator('tr[data-destination="erp"]');
  check((await erp.locator('.delivery-status').innerText()).trim() === 'dead_lettered', 'the erp delivery is not dead_lettered');
  log('the event page shows its three failed attempts (503, the partner\'s body as text) and the dead letter');

  // Replay, then watch the same page (no reload) turn delivered.
  await page.evaluate(() => { window.__sameDocument = true; });
  const before = navigations;
  await erp.getByRole('button', { name: 'Replay' }).click();
  await page.locator('#action-result').getByText('Replay sent.').waitFor();
  log('replayed: the page says the replay was sent');
  await page.locator('tr[data-destination="erp"] .delivery-status', { hasText: /^delivered$/ }).waitFor({ timeout: 30000 });
  check(navigations === before && await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
  check(await page.locator('tr.attempt[data-outcome="delivered"]').count() === 1, 'the replay\'s delivered attempt is not listed');
  log('the delivery turned delivered by itself, without a reload');
  await shot('console-event.png');

  // The alert the dead letter fired, silenced from the overview.
  await page.getByRole('link', { name: 'Overview', exact: true }).click();
  const alert = page.locator('tr.alert-row', { hasText: 'DeliveryDeadLettered' });
  await alert.waitFor();
  check(!(await alert.getAttribute('class')).includes('muted'), 'the alert is muted before any silence');
  await alert.getByRole('link', { name: 'Silence…' }).click();
  await page.waitForURL(/\/ui\/silences\?/);
  const matchers = await page.getByLabel('Matchers, one per line').inputValue();
  check(matchers.includes('rule=DeliveryDeadLettered') && matchers.includes('destination=erp'), `matchers not filled in from the alert: ${matchers}`);
  await page.getByLabel('For').fill('1h');
  await page.getByLabel('Comment').fill('partner maintenance (browser test)');
  await page.getByRole('button', { name: 'Create silence' }).click();
  await page.locator('.notice', { hasText: 'created' }).waitFor();
  log('created a silence from the alert');
  await page.getByRole('link', { name: 'Overview', exact: true }).click();
  await page.locator('tr.alert-row.muted', { hasText: 'DeliveryDeadLettered' }).waitFor();
  check((await page.locator('tr.alert-row', { hasText: 'DeliveryDeadLettered' }).innerText()).includes('muted by'), 'the alert does not name its silence');
  log('the overview shows the firing alert muted by the silence');
  await shot('console-overview.png');

  // A payload that is HTML is shown as text, and nothing in it runs.
  await page.goto(`${base}/ui/event?id=${encodeURIComponent(hostileId)}`);
  const payload = await page.locator('pre.payload').innerText();
  check(payload.includes('<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'), `the hostile payload is not shown as text: ${payload}`);
  check(await page.evaluate(() => window.__pwned) === undefined, 'script from the payload ran');
  check(await page.locator('main img').count() === 0, 'an <img> from the payload is in the page');
  check(await page.locator('script').count() === 1, 'a script other than htmx is in the page');
  log('the hostile payload shows as text and nothing in it ran');

  check(problems.length === 0, `the browser reported: ${problems.join('; ')}`);
  for (const f of shots) console.log(`screenshot: ${f}`);
  log('all checks passed');
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
} catch (err) {
  const file = path.join(artifacts, 'console-failure.png');
  await page.screenshot({ path: file, fullPage: true }).catch(() => {});
  console.error(`FAILED at ${page.url()}: ${err.message}`);
  if (problems.length) console.error(`the browser reported: ${problems.join('; ')}`);
  console.error(`screenshot of the page: ${file}`);
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
  process.exit(1);
}
