// The API reference at /docs in a real headless Chromium (Debian's /usr/bin/chromium): it
// renders every operation of /openapi.json with only what the binary serves — no CDN, no page
// error — and a screenshot is saved to target/browser/docs.png to look at.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { startTollgate } from "../../clients/typescript/test/harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const shots = resolve(here, "..", "..", "target", "browser");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

let server;
let browser;

before(async () => {
  server = await startTollgate();
  browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("the reference renders every operation from the binary alone", async () => {
  const spec = await (await fetch(`${server.baseUrl}/openapi.json`)).json();
  const operations = Object.values(spec.paths).flatMap((p) =>
    Object.keys(p).filter((m) => ["get", "post", "put", "patch", "delete"].includes(m)),
  ).length;
  // Swagger UI shows tollgate's events (the spec's `webhooks`) as operations too.
  const webhooks = Object.keys(spec.webhooks ?? {}).length;
  assert.ok(webhooks >= 12, "the events are in the spec");
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  const foreign = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.origin !== server.baseUrl && url.protocol !== "data:") foreign.push(r.url());
  });
  page.on("response", (r) => {
    // The browser asks for /favicon.ico by itself; everything the page asks for must be there.
    if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) errors.push(`${r.status()} ${r.url()}`);
  });
  await page.goto(`${server.baseUrl}/docs`);
  await page.waitForSelector(".opblock", { timeout: 20_000 });
  const shown = await page.locator(".opblock").count();
  assert.equal(shown, operations + webhooks, "one block per operation and event of /openapi.json");
  assert.deepEqual(errors, []);
  assert.deepEqual(foreign, [], "nothing is loaded from another origin");

  // Opening an operation shows its parameters and answers.
  await page.locator(".opblock-summary", { hasText: "/v1/plans" }).first().click();
  await page.waitForSelector(".opblock.is-open .responses-wrapper");
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, "docs.png"), fullPage: false });
  await page.close();
});
