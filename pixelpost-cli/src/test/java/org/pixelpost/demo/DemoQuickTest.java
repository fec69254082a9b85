package org.pixelpost.demo;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.Map;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import java.util.ArrayList;
import java.util.List;
import org.pixelpost.eval.study.EvalServer;
import org.pixelpost.eval.study.StudyStore;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;

@org.junit.jupiter.api.Tag("slow") // end to end: left out of the fast lane (mvn -Pfast test)
class DemoQuickTest {
    static final Demo.Listener QUIET = new Demo.Listener() {
        @Override public void stage(String name) {}
        @Override public void step(long step, long total, Map<String, Double> terms) {}
        @Override public void message(String text) {}
    };

    @Test
    void quickDemoWritesACompleteReportAndResumes(@TempDir Path dir) throws Exception {
        Path root = dir.resolve("demo");
        List<Demo.Regime> both = Demo.Regime.parse("both");
        Demo demo = new Demo(Plan.quick(), root, TestData.emojiTarball(), both, QUIET);
        Path report = demo.run();
        String html = Files.readString(report);
        for (String section : new String[] {"Stages", "All models", "Headline", "Head to head", "Samples", "Loss curves", "Settings", "<svg",
            "id=mechanism", "high-frequency part", "mean distance A - B [95%]", "id=side-by-side", "id=\"regime-lossy\"", "id=\"regime-taef2\"",
            "What the evidence supports", "Does the effect change with how lossy"})
            assertTrue(html.contains(section), "report has " + section);
        // the lossy regime's autoencoder: a diffusers AutoencoderKL folder, 4 channels at f8, that reloads and is used by the regime's base
        Path aeModel = root.resolve("autoencoder/model");
        try (org.pixelpost.model.autoencoder.Autoencoder ae = org.pixelpost.model.autoencoder.Autoencoders.load(aeModel.toString())) {
            assertEquals(4, ae.latentChannels());
            assertEquals(8, ae.downsampling());
        }
        JsonNode baseInit = new ObjectMapper().readTree(root.resolve("lossy/base-init/model_index.json").toFile());
        assertTrue(baseInit.toString().contains(aeModel.toAbsolutePath().toString()), "the lossy base runs in the trained autoencoder's latent space: " + baseInit);
        // the paper's own headline (SimPO + pixel against DPO) is in the head-to-head tables
        assertTrue(html.contains("SimPO + pixel</td><td>DPO</td>"), "side-by-side row of SimPO + pixel against DPO");
        for (Demo.Regime regime : both) checkRegime(demo, root, root.resolve(regime.id), html);
    }

    private void checkRegime(Demo demo, Path root, Path out, String html) throws Exception {
        // every head-to-head states a verdict from its interval: the three pixel-vs-latent pairs and each group against the base
        long verdicts = html.split("no difference shown|closer</span>|closer</td>", -1).length - 1;
        assertTrue(verdicts >= 2 * 2 * (4 + 10), verdicts + " verdicts, for each of the two judges and the two regimes");
        assertTrue(html.contains("Judge 2") && html.contains("played no part in picking the pairs"), "the second judge is named as such");
        // the guidance sweep: every guidance of the plan sampled and measured, one chosen, shown in the report
        JsonNode sweep = new ObjectMapper().readTree(out.resolve("guidance/sweep.json").toFile());
        assertEquals(Plan.quick().guidanceSweep().size(), sweep.get("rows").size());
        assertTrue(Plan.quick().guidanceSweep().contains(sweep.get("chosen").asDouble()));
        for (JsonNode r : sweep.get("rows")) {
            assertTrue(Double.isFinite(r.get("judge_mean").asDouble()));
            assertNotNull(ImageIO.read(out.resolve("guidance/g" + Demo.fmt(r.get("guidance").asDouble()) + "/grid.png").toFile()));
        }
        assertTrue(html.contains("id=guidance") && html.contains("(chosen)"), "report has the guidance sweep");
        assertTrue(html.contains("id=base-check"), "report says how near the base's samples are to the real images");
        // the base model was trained with caption dropout
        assertEquals(0.1, new ObjectMapper().readTree(out.resolve("base/config.json").toFile()).get("caption_dropout").asDouble());
        for (Demo.Arm a : demo.sftArms()) {
            assertTrue(Files.isDirectory(out.resolve("runs").resolve(a.name()).resolve("model")), a.name());
            assertNotNull(ImageIO.read(out.resolve("eval").resolve(a.name()).resolve("grid.png").toFile()), a.name());
            assertTrue(html.contains(a.name()));
        }
        for (Demo.Arm a : demo.prefArms()) {
            JsonNode m = new ObjectMapper().readTree(out.resolve("eval").resolve(a.name()).resolve("metrics.json").toFile());
            assertTrue(Double.isFinite(m.get("judge_mean").asDouble()), a.name());
            assertEquals(3, m.get("swd").size());
            assertEquals(5, m.get("denoise_error").size());
            assertEquals(5, m.get("denoise_error_hf").size());
            for (String t : new String[] {"100", "900"})
                assertTrue(m.get("denoise_error_hf").get(t).asDouble() < m.get("denoise_error").get(t).asDouble(), "the high band is part of the error");
        }
        // pairs: winner and loser picked by the judge
        for (String l : Files.readAllLines(out.resolve("pairs/pairs.jsonl"))) {
            JsonNode p = new ObjectMapper().readTree(l);
            assertTrue(p.get("winner_distance").asDouble() <= p.get("loser_distance").asDouble());
        }
        // the human studies: four A/B studies of the headline pairs and an alignment study, ready to serve
        JsonNode studies = new ObjectMapper().readTree(out.resolve("studies/studies.json").toFile());
        assertEquals(5, studies.get("studies").size(), studies.toString());
        assertTrue(studies.get("serve").asText().startsWith("pixelpost eval serve --dir "));
        assertTrue(html.contains("id=studies") && html.contains(studies.get("serve").asText()));
        Path browser = Path.of("../pixelpost-eval/src/test/browser");
        boolean ready = Files.isDirectory(browser.resolve("node_modules/playwright-core")) && Files.isExecutable(Path.of("/usr/bin/chromium"));
        if (!ready && System.getenv("CI") != null) fail("CI must install chromium (apt) and playwright-core (npm in pixelpost-eval/src/test/browser)");
        try (StudyStore store = new StudyStore("jdbc:sqlite:" + out.resolve("studies/eval.db"))) {
            List<String> args = new ArrayList<>(List.of("node", browser.resolve("vote-each.mjs").toString()));
            for (JsonNode st : studies.get("studies")) {
                assertTrue(st.get("items").asInt() > 0, st.toString());
                args.add(st.get("name").asText() + ":" + st.get("kind").asText());
            }
            if (ready) {
                // each study opens in the evaluation app, and an annotator casts a vote in it from the browser
                try (EvalServer server = new EvalServer(store, "admin").start("127.0.0.1", 0)) {
                    args.add(2, "http://127.0.0.1:" + server.port() + "/");
                    Process p = new ProcessBuilder(args).redirectErrorStream(true).start();
                    String log = new String(p.getInputStream().readAllBytes());
                    assertTrue(p.waitFor(180, java.util.concurrent.TimeUnit.SECONDS));
                    assertEquals(0, p.exitValue(), log);
                    JsonNode seen = new ObjectMapper().readTree(log.lines().reduce((a, b) -> b).orElse("{}"));
                    for (JsonNode st : studies.get("studies")) assertTrue(seen.path(st.get("name").asText()).asText().startsWith("you: 1 answered"), log);
                }
            } else {
                // no browser here: one annotator answers the first item of each study through the store
                String who = store.join("tester");
                for (JsonNode st : studies.get("studies")) {
                    StudyStore.Item item = store.next(st.get("name").asText(), who);
                    JsonNode answer = new ObjectMapper().readTree(st.get("kind").asText().equals("ab") ? "{\"choice\":\"left\"}" : "{\"answers\":[true,true,true]}");
                    assertEquals(StudyStore.VoteResult.STORED, store.vote(item.id(), who, answer), st.toString());
                }
            }
            for (JsonNode st : studies.get("studies")) assertEquals(1, store.votes(st.get("name").asText()).size(), st.toString());
        }
        // a second run finds every stage done and trains nothing again
        Path marker = out.resolve("runs/sft-latent-s0/model/denoiser/model.safetensors");
        FileTime before = Files.getLastModifiedTime(marker);
        java.util.concurrent.atomic.AtomicLong trainingSteps = new java.util.concurrent.atomic.AtomicLong();
        Demo.Listener counting = new Demo.Listener() {
            @Override public void stage(String name) {}
            @Override public void step(long step, long total, Map<String, Double> terms) { if (terms.containsKey("loss")) trainingSteps.incrementAndGet(); }
            @Override public void message(String text) {}
        };
        new Demo(Plan.quick(), root, TestData.emojiTarball(), List.of(Demo.Regime.parse(out.getFileName().toString()).get(0)), counting).run();
        assertEquals(before, Files.getLastModifiedTime(marker));
        assertEquals(0, trainingSteps.get(), "the resumed run only re-reads its results");
        // and its report folds in the votes cast since
        String again = Files.readString(root.resolve("report.html"));
        for (JsonNode st : studies.get("studies")) assertTrue(again.contains("<h3>" + st.get("name").asText() + "</h3>"), st.toString());
    }
}
