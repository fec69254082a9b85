// Drives the evaluation app like an annotator: join, vote with the keyboard, open a prompt with markup.
// Usage: node vote.mjs BASE_URL SCREENSHOT_PNG ; prints one JSON line with what it saw.
import { chromium } from 'playwright-core';

const [base, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const result = { dialogs: 0 };
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.on('dialog', async d => { result.dialogs++; await d.dismiss(); });
  await page.goto(base);
  await page.fill('#name', 'Browser Annotator');
  await page.click('#joinForm button');
  await page.click('text=ab-browser (ab)');
  const keys = ['ArrowLeft', 'ArrowRight', 'ArrowDown', 'r'];
  for (let i = 0; i < keys.length; i++) {
    await page.waitForSelector('#ab:not([hidden])');
    await page.waitForFunction(() => document.getElementById('left').complete && document.getElementById('left').naturalWidth > 0);
    if (i === 0) {
      await page.click('#left'); // zoom in and out again
      result.zoomed = await page.evaluate(() => document.getElementById('left').classList.contains('zoomed'));
      await page.click('#left');
      await page.screenshot({ path: screenshot });
    }
    await page.keyboard.press(keys[i]);
    await page.waitForFunction(n => document.getElementById('status').textContent.startsWith('you: ' + n + ' answered'), i + 1);
  }
  result.status = await page.textContent('#status');
  await page.goto(base);
  await page.click('text=align-browser (alignment)');
  await page.waitForSelector('#alignment:not([hidden])');
  result.prompt = await page.textContent('#alPrompt');
  result.scriptElements = await page.evaluate(() => document.querySelectorAll('#alPrompt script, #alQuestions script').length);
  result.questions = await page.$$eval('#alQuestions .q span', s => s.map(x => x.textContent));
  // a phone: the task fits the width
  const phone = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })).newPage();
  await phone.goto(base);
  await phone.fill('#name', 'Phone Annotator');
  await phone.click('#joinForm button');
  await phone.click('text=ab-browser (ab)');
  await phone.waitForSelector('#ab:not([hidden])');
  result.phoneOverflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await phone.screenshot({ path: screenshot.replace(/\.png$/, '-phone.png') });
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
