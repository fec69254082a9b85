// Casts one vote in each named study, as an annotator would in the browser: join, open the study,
// answer its first item (A/B: the left image; alignment: yes to every question), back to the list.
// Usage: node vote-each.mjs BASE_URL NAME:KIND... ; prints one JSON line {"NAME": "you: 1 answered ...", ...}.
import { chromium } from 'playwright-core';

const [base, ...studies] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const result = {};
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  await page.goto(base);
  await page.fill('#name', 'Demo Annotator');
  await page.click('#joinForm button');
  await page.waitForSelector('#studyList button');   // joined: the token is stored before the page is left
  for (const s of studies) {
    const [name, kind] = s.split(':');
    await page.goto(base);
    await page.click(`text=${name} (${kind})`);
    if (kind === 'ab') {
      await page.waitForSelector('#ab:not([hidden])');
      await page.waitForFunction(() => document.getElementById('left').complete && document.getElementById('left').naturalWidth > 0);
      await page.keyboard.press('ArrowLeft');
    } else {
      await page.waitForSelector('#alignment:not([hidden])');
      const n = await page.$$eval('#alQuestions .q', q => q.length);
      for (let i = 0; i < n; i++) await page.keyboard.press('y');
      await page.keyboard.press('Enter');
    }
    await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('you: 1 answered'));
    result[name] = await page.textContent('#status');
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
