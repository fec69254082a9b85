package org.pixelpost.eval.study;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real browser: headless Chromium (Debian's package) driven by playwright-core (npm) joins,
 * votes with the keyboard, and opens a prompt that contains markup. CI installs both; elsewhere
 * the test is skipped when they are missing.
 */
class EvalBrowserTest {
    static final String SCRIPT = "<script>alert('x')</script><b>bold?</b> a cat";

    @Test
    void votesWithTheKeyboardAreStoredAndMarkupStaysText(@TempDir Path dir) throws Exception {
        Path browser = Path.of("src/test/browser");
        boolean ready = Files.isDirectory(browser.resolve("node_modules/playwright-core")) && Files.isExecutable(Path.of("/usr/bin/chromium"));
        if (!ready && System.getenv("CI") != null) fail("CI must install chromium (apt) and playwright-core (npm ci in src/test/browser)");
        Assumptions.assumeTrue(ready, "chromium or playwright-core not installed");

        try (StudyStore store = new StudyStore("jdbc:sqlite:" + dir.resolve("b.db"))) {
            Map<String, Path> m = new LinkedHashMap<>();
            List<String> prompts = List.of("red heart", "rocket");
            m.put("base", StudyFixtures.samples(dir.resolve("a"), prompts, 1, 0xff0000));
            m.put("tuned", StudyFixtures.samples(dir.resolve("b"), prompts, 1, 0x0000ff));
            Studies.create(store, "ab-browser", StudyStore.Kind.AB, m, null, null, 3, 2);
            Path q = dir.resolve("q.json");
            Files.writeString(q, "{" + StudyStore.JSON.writeValueAsString(SCRIPT) + ": [\"is there <i>one</i> cat?\", \"is it green?\"]}");
            Studies.create(store, "align-browser", StudyStore.Kind.ALIGNMENT, Map.of("base", StudyFixtures.samples(dir.resolve("c"), List.of(SCRIPT), 1, 0x00ff00)), q, null, 3, 2);
            try (EvalServer server = new EvalServer(store, "admin").start("127.0.0.1", 0)) {
                Path shot = dir.resolve("ab.png");
                Process p = new ProcessBuilder("node", browser.resolve("vote.mjs").toString(), "http://127.0.0.1:" + server.port() + "/", shot.toString())
                    .redirectErrorStream(true).start();
                String out = new String(p.getInputStream().readAllBytes());
                assertTrue(p.waitFor(120, TimeUnit.SECONDS));
                assertEquals(0, p.exitValue(), out);
                JsonNode r = StudyStore.JSON.readTree(out.lines().reduce((a, b) -> b).orElse("{}"));
                assertEquals(0, r.get("dialogs").asInt(), "no script ran");
                assertEquals(SCRIPT, r.get("prompt").asText(), "the prompt is shown as text");
                assertEquals(0, r.get("scriptElements").asInt());
                assertEquals("is there <i>one</i> cat?", r.get("questions").get(0).asText());
                double scale = r.get("scale").asDouble();
                assertTrue(scale >= 1 && Math.abs(scale - Math.rint(scale)) < 1e-6, "real size, small images enlarged by a whole factor: " + scale);
                assertEquals(r.get("loupe").get(0).asText(), r.get("loupe").get(1).asText(), "both loupes show the same point");
                String[] at = r.get("loupe").get(0).asText().split(",");
                int w = r.get("loupeNatural").get(0).asInt(), h = r.get("loupeNatural").get(1).asInt();
                assertEquals(0.25 * w, Double.parseDouble(at[0]), 1.5, "the point clicked, in image pixels");
                assertEquals(0.75 * h, Double.parseDouble(at[1]), 1.5);
                assertTrue(r.get("buttonsBottom").asDouble() <= r.get("viewportHeight").asDouble(), "the vote buttons are in view at 1366x650: " + r.get("buttonsBottom"));
                assertTrue(r.get("loupeClosed").asBoolean(), "Escape closes the loupe");
                assertTrue(r.get("status").asText().startsWith("you: 4 answered"), r.get("status").asText());
                assertTrue(r.get("statusAfterModifiers").asText().startsWith("you: 1 answered"), "keys with Ctrl, Alt or Meta voted: " + r.get("statusAfterModifiers"));
                assertEquals("[\"q0=yes\",\"q1=no\"]", r.get("alignmentChecked").toString(), "Y / N / Backspace answer the alignment questions");
                assertTrue(r.get("alignmentStatus").asText().startsWith("you: 1 answered"), "Enter submits after a click: " + r.get("alignmentStatus"));
                assertTrue(r.get("tokenAfterLogout").isNull(), "log out forgets the token");
                assertEquals("", r.get("searchAfterLogout").asText());
                assertTrue(ImageIO.read(shot.toFile()).getWidth() >= 1280);
                // the screenshots stay under target/ to be looked at
                Path keep = Files.createDirectories(Path.of("target/browser-screenshots"));
                try (var shots = Files.list(dir)) {
                    for (Path f : shots.filter(f -> f.toString().endsWith(".png")).toList())
                        Files.copy(f, keep.resolve(f.getFileName()), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                }
                assertTrue(r.get("phoneOverflow").asInt() <= 0, "on a phone the page fits its width: overflow " + r.get("phoneOverflow"));
                if (System.getenv("PIXELPOST_KEEP_SCREENSHOTS") != null) {
                    Files.copy(shot, Path.of(System.getenv("PIXELPOST_KEEP_SCREENSHOTS"), "ab.png"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                    Files.copy(dir.resolve("ab-phone.png"), Path.of(System.getenv("PIXELPOST_KEEP_SCREENSHOTS"), "ab-phone.png"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                }
            }
            // the four keys were stored as left, right, tie and reject, as the annotator saw the sides
            // (the store keeps each item's own orientation: a side swapped for this annotator is swapped back)
            List<String> choices = new ArrayList<>();
            try (java.sql.Connection c = java.sql.DriverManager.getConnection("jdbc:sqlite:" + dir.resolve("b.db"));
                 java.sql.ResultSet rs = c.createStatement().executeQuery("SELECT v.item, v.annotator, v.answer FROM votes v JOIN items i ON i.id = v.item "
                     + "WHERE i.study = 'ab-browser'")) {
                while (rs.next()) {
                    String stored = StudyStore.JSON.readTree(rs.getString(3)).get("choice").asText();
                    boolean swapped = EvalServer.swapped(rs.getString(2), rs.getString(1));
                    choices.add(!swapped ? stored : stored.equals("left") ? "right" : stored.equals("right") ? "left" : stored);
                }
            }
            choices.sort(null);
            assertEquals(List.of("left", "reject", "right", "tie"), choices);
        }
    }
}
