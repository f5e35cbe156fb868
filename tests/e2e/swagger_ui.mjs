// A person's path through Swagger UI, in Debian's chromium driven by playwright-core:
// open /swagger-ui/, Authorize with a token, Try it out on Create Visitor with the example body
// (201 with the visitor), Show Visitor by its id (200, the same visitor), List Visitors filtered
// by its e-mail address (200, a page holding it), Delete Visitor (204), Show again (404), and
// Import Visitors with the example NDJSON body (200, a result line per line and the summary).
// Saves screenshots.
import { chromium } from 'playwright-core';

const base = process.env.E2E_BASE;
const token = process.env.E2E_TOKEN;
const shots = process.env.E2E_SCREENSHOTS;
if (!base || !token || !shots) {
  console.error('E2E_BASE, E2E_TOKEN and E2E_SCREENSHOTS must be set');
  process.exit(2);
}

function fail(message) {
  throw new Error(message);
}

async function liveResponse(operation) {
  const status = operation.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor({ timeout: 15000 });
  // A 204 has no body to show.
  const pre = operation.locator('.live-responses-table .response .response-col_description pre').first();
  const body = (await pre.count()) > 0 ? await pre.innerText() : '';
  return { status: (await status.innerText()).trim(), body };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  const outside = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (!['127.0.0.1', 'localhost'].includes(url.hostname) && url.protocol.startsWith('http')) {
      outside.push(request.url());
    }
  });
  const consoleErrors = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });

  await page.goto(`${base}/swagger-ui/`);
  await page.locator('.swagger-ui .info .title').waitFor({ timeout: 15000 });
  const title = await page.locator('.swagger-ui .info .title').innerText();
  if (!title.includes('Visitors API')) fail(`unexpected title: ${title}`);

  // Authorize with the bearer token.
  await page.locator('.auth-wrapper button.authorize').click();
  const dialog = page.locator('.dialog-ux .modal-ux');
  await dialog.locator('input').first().fill(token);
  await dialog.locator('button.authorize').click();
  await dialog.locator('button.btn-done').click();
  console.log('authorized in Swagger UI');

  // Create Visitor: Try it out with the example body.
  const create = page.locator('#operations-Visitors-createVisitor');
  await create.locator('.opblock-summary').click();
  await create.locator('button.try-out__btn').click();
  const example = await create.locator('textarea.body-param__text').inputValue();
  if (!example.includes('visitor1@example.com')) fail(`the example body is not the seed's: ${example}`);
  await create.locator('button.execute').click();
  const created = await liveResponse(create);
  if (created.status !== '201') fail(`Create Visitor answered ${created.status}: ${created.body}`);
  const visitor = JSON.parse(created.body);
  if (visitor.name !== 'Visitor 1' || visitor.email !== 'visitor1@example.com' || !(visitor.id > 0)) {
    fail(`Create Visitor gave ${created.body}`);
  }
  console.log(`Create Visitor: 201, id ${visitor.id}`);
  await page.screenshot({ path: `${shots}/swagger-ui-create.png`, fullPage: true });

  // Show Visitor by its id.
  const show = page.locator('#operations-Visitors-showVisitor');
  await show.locator('.opblock-summary').click();
  await show.locator('button.try-out__btn').click();
  await show.locator('input[placeholder="visitor_id"]').fill(String(visitor.id));
  await show.locator('button.execute').click();
  const shown = await liveResponse(show);
  if (shown.status !== '200') fail(`Show Visitor answered ${shown.status}: ${shown.body}`);
  if (JSON.stringify(JSON.parse(shown.body)) !== JSON.stringify(visitor)) {
    fail(`Show Visitor gave ${shown.body}, Create gave ${created.body}`);
  }
  console.log(`Show Visitor: 200, the same visitor`);
  await show.scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${shots}/swagger-ui.png`, fullPage: true });

  // List Visitors, filtered by the new visitor's e-mail address, two per page.
  const list = page.locator('#operations-Visitors-listVisitors');
  await list.locator('.opblock-summary').click();
  await list.locator('button.try-out__btn').click();
  await list.locator('input[placeholder="page[size]"]').fill('2');
  await list.locator('input[placeholder="email"]').fill('VISITOR1@example.com');
  await list.locator('button.execute').click();
  const listed = await liveResponse(list);
  if (listed.status !== '200') fail(`List Visitors answered ${listed.status}: ${listed.body}`);
  const listPage = JSON.parse(listed.body);
  if (!listPage.visitors.some((v) => v.id === visitor.id) || !('has_more' in listPage.meta)
      || !('next' in listPage.links)) {
    fail(`List Visitors gave ${listed.body}`);
  }
  console.log(`List Visitors: 200, ${listPage.visitors.length} visitor(s), has_more ${listPage.meta.has_more}`);
  await list.scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${shots}/swagger-ui-list.png`, fullPage: true });

  // Delete Visitor by its id, then Show answers 404.
  const erase = page.locator('#operations-Visitors-deleteVisitor');
  await erase.locator('.opblock-summary').click();
  await erase.locator('button.try-out__btn').click();
  await erase.locator('input[placeholder="visitor_id"]').fill(String(visitor.id));
  await erase.locator('button.execute').click();
  const erased = await liveResponse(erase);
  if (erased.status !== '204') fail(`Delete Visitor answered ${erased.status}: ${erased.body}`);
  console.log('Delete Visitor: 204');
  await erase.scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${shots}/swagger-ui-delete.png`, fullPage: true });
  await show.locator('button.execute').click();
  // The previous answer stays on the page until the new one arrives: wait for the 404.
  await show
    .locator('.live-responses-table .response .response-col_status', { hasText: '404' })
    .first()
    .waitFor({ timeout: 15000 });
  console.log('Show Visitor after Delete: 404');

  // Import Visitors: Try it out with the document's example lines. Swagger UI 5 shows a string
  // example of a media type whose name contains "json" as one quoted JSON string, so a person
  // types the lines in, as the operation's description says; they are sent as typed.
  const importOp = page.locator('#operations-Visitors-importVisitors');
  await importOp.locator('.opblock-summary').click();
  await importOp.locator('button.try-out__btn').click();
  const shownExample = await importOp.locator('textarea.body-param__text').inputValue();
  const ndjson = JSON.parse(shownExample);
  if (ndjson.trim().split('\n').length !== 3 || !ndjson.includes('crm-4711')) {
    fail(`the example import body is not the document's three lines: ${shownExample}`);
  }
  await importOp.locator('textarea.body-param__text').fill(ndjson);
  await importOp.locator('button.execute').click();
  const imported = await liveResponse(importOp);
  if (imported.status !== '200') fail(`Import Visitors answered ${imported.status}: ${imported.body}`);
  // Swagger UI tries the answer as one JSON document (its media type names json), fails, and
  // shows it as it came, under "can't parse JSON. Raw result:".
  const raw = imported.body.replace(/^can't parse JSON\.\s+Raw result:\s*/, '');
  const results = raw.trim().split('\n').map((line) => JSON.parse(line));
  const statuses = results.slice(0, -1).map((r) => r.status).join(',');
  if (statuses !== 'created,created,updated'
      || JSON.stringify(results.at(-1)) !== JSON.stringify({ summary: { created: 2, updated: 1, unchanged: 0, failed: 0 } })) {
    fail(`Import Visitors gave ${imported.body}`);
  }
  console.log(`Import Visitors: 200, ${statuses}, then the summary`);
  await importOp.scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${shots}/swagger-ui-import.png`, fullPage: true });

  if (outside.length) fail(`the page reached outside loopback: ${outside.join(', ')}`);
  if (consoleErrors.length) console.log(`console errors: ${consoleErrors.join(' | ')}`);
  console.log(`screenshots: ${shots}/swagger-ui-{create,list,delete,import}.png, ${shots}/swagger-ui.png`);
} finally {
  await browser.close();
}
