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
      // real size: a whole-number enlargement of the small test images
      result.scale = await page.evaluate(() => { const i = document.getElementById('left'); return i.getBoundingClientRect().width / i.naturalWidth; });
      // the loupe: a click on one image magnifies the same point of both
      const box = await page.locator('#left').boundingBox();
      await page.mouse.click(box.x + box.width * 0.25, box.y + box.height * 0.75);
      await page.waitForSelector('#loupe:not([hidden])');
      result.loupe = await page.evaluate(() => ['loupeLeft', 'loupeRight'].map(id => {
        const c = document.getElementById(id); return [c.dataset.x, c.dataset.y, c.dataset.zoom].join(',');
      }));
      result.loupeNatural = await page.evaluate(() => [document.getElementById('left').naturalWidth, document.getElementById('left').naturalHeight]);
      // the buttons stay in view on a small laptop screen
      await page.setViewportSize({ width: 1366, height: 650 });
      result.buttonsBottom = await page.evaluate(() => document.querySelector('#ab .buttons').getBoundingClientRect().bottom);
      result.viewportHeight = 650;
      await page.screenshot({ path: screenshot });
      await page.keyboard.press('Escape');
      result.loupeClosed = await page.evaluate(() => document.getElementById('loupe').hidden);
      await page.setViewportSize({ width: 1280, height: 800 });
    }
    if (i === 1) {
      // keys with modifiers cast no vote (Ctrl+2, Alt+Left, Meta+3)
      await page.keyboard.press('Control+2');
      await page.keyboard.press('Alt+ArrowLeft');
      await page.keyboard.down('Meta'); await page.keyboard.press('3'); await page.keyboard.up('Meta');
      await page.waitForTimeout(500);
      result.statusAfterModifiers = await page.textContent('#status');
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
  // alignment from the keyboard, after a click on an option (Enter must still submit)
  await page.click('input[name=q0][value=no]');
  await page.keyboard.press('Backspace');   // takes q0's answer back
  await page.keyboard.press('y');           // q0 yes
  await page.keyboard.press('n');           // q1 no
  result.alignmentChecked = await page.evaluate(() => [...document.querySelectorAll('#alQuestions input:checked')].map(i => i.name + '=' + i.value));
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-alignment.png') });
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('you: 1 answered'));
  result.alignmentStatus = await page.textContent('#status');
  // log out: the token leaves storage and the address bar, and the join form is back
  await page.click('#logout');
  await page.waitForSelector('#join:not([hidden])');
  result.tokenAfterLogout = await page.evaluate(() => localStorage.getItem('pixelpostToken'));
  result.searchAfterLogout = await page.evaluate(() => location.search);
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-logout.png') });
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
