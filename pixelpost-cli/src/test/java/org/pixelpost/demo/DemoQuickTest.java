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
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;

class DemoQuickTest {
    static final Demo.Listener QUIET = new Demo.Listener() {
        @Override public void stage(String name) {}
        @Override public void step(long step, long total, Map<String, Double> terms) {}
        @Override public void message(String text) {}
    };

    @Test
    void quickDemoWritesACompleteReportAndResumes(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("demo");
        Demo demo = new Demo(Plan.quick(), out, TestData.emojiTarball(), QUIET);
        Path report = demo.run();
        String html = Files.readString(report);
        for (String section : new String[] {"Stages", "All models", "Headline", "Head to head", "Samples", "Loss curves", "Settings", "<svg"})
            assertTrue(html.contains(section), "report has " + section);
        // the guidance sweep: every guidance of the plan sampled and measured, one chosen, shown in the report
        JsonNode sweep = new ObjectMapper().readTree(out.resolve("guidance/sweep.json").toFile());
        assertEquals(Plan.quick().guidanceSweep().size(), sweep.get("rows").size());
        assertTrue(Plan.quick().guidanceSweep().contains(sweep.get("chosen").asDouble()));
        for (JsonNode r : sweep.get("rows")) {
            assertTrue(Double.isFinite(r.get("judge_mean").asDouble()));
            assertNotNull(ImageIO.read(out.resolve("guidance/g" + Demo.fmt(r.get("guidance").asDouble()) + "/grid.png").toFile()));
        }
        assertTrue(html.contains("id=guidance") && html.contains("(chosen)"), "report has the guidance sweep");
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
        }
        // pairs: winner and loser picked by the judge
        for (String l : Files.readAllLines(out.resolve("pairs/pairs.jsonl"))) {
            JsonNode p = new ObjectMapper().readTree(l);
            assertTrue(p.get("winner_distance").asDouble() <= p.get("loser_distance").asDouble());
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
        new Demo(Plan.quick(), out, TestData.emojiTarball(), counting).run();
        assertEquals(before, Files.getLastModifiedTime(marker));
        assertEquals(0, trainingSteps.get(), "the resumed run only re-reads its results");
    }
}
