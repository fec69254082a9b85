package org.pixelpost.train;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;

@org.junit.jupiter.api.Tag("slow") // end to end: left out of the fast lane (mvn -Pfast test)
public class TrainerTest {
    @TempDir static Path shared;
    static Path model, train, val;

    @BeforeAll
    static void setUp() throws Exception {
        model = tinyBase(shared.resolve("base"));
        train = TestData.captionedFolder(shared.resolve("train"), TestData.EMOJI, TestData.CAPTIONS);
        val = TestData.captionedFolder(shared.resolve("val"), TestData.EMOJI_VAL, TestData.CAPTIONS_VAL);
    }

    /** A new tiny DiT over TAEF2 at 64 px, seeded 0, saved as a model folder at {@code dir}. */
    public static Path tinyBase(Path dir) throws Exception {
        Engine.seed(0);
        try (TextToImageModel m = TextToImageModel.create("tiny", TestData.taef2().toString(), 64, 1.0)) {
            m.save(dir);
        }
        return dir;
    }

    static ObjectNode config(Path out, int steps) {
        ObjectNode j = TrainConfig.JSON.createObjectNode();
        j.put("init", model.toString()).put("data", train.toString()).put("out", out.toString()).put("steps", steps)
            .put("batch_size", 4).put("lr", 1e-3).put("log_every", 1).put("seed", 5).put("pixel_weight", 1.0);
        return j;
    }

    static TrainRun.Summary train(ObjectNode j) throws Exception {
        return new TrainRun(TrainConfig.from(j), new TrainRun.Listener() {
            @Override public void step(long step, long total, Map<String, Double> terms) {}
            @Override public void message(String text) {}
        }).run();
    }

    static double median(List<Double> v) {
        List<Double> s = new ArrayList<>(v);
        s.sort(null);
        return s.get(s.size() / 2);
    }

    /** A run's metrics.jsonl without its wall-clock fields. */
    public static List<JsonNode> metrics(Path run) throws Exception {
        List<JsonNode> out = new ArrayList<>();
        ObjectMapper om = new ObjectMapper();
        for (String l : Files.readAllLines(run.resolve("metrics.jsonl"))) {
            ObjectNode n = (ObjectNode) om.readTree(l);
            n.remove("time");
            n.remove("rss_mib");
            out.add(n);
        }
        return out;
    }

    @Test
    void trainingLowersHeldOutLossAndTheSameSeedRepeatsExactly() throws Exception {
        ObjectNode j = config(shared.resolve("run-a"), 40).put("val_data", val.toString()).put("val_every", 40).put("pixel_weight", 0.0)
            .put("log_every", 40);
        train(j);
        // the zero-initialised model predicts no noise: held-out latent loss starts at E[eps^2] ~ 1
        double after = metrics(shared.resolve("run-a")).get(0).get("val_latent").asDouble();
        assertTrue(after < 0.75, "held-out latent loss after 40 steps: " + after);

        ObjectNode a = config(shared.resolve("seed-a"), 6), b = config(shared.resolve("seed-b"), 6);
        train(a);
        train(b);
        assertEquals(metrics(shared.resolve("seed-a")), metrics(shared.resolve("seed-b")), "same seed, same loss curve");
        train(config(shared.resolve("seed-c"), 6).put("seed", 6));
        assertNotEquals(metrics(shared.resolve("seed-a")), metrics(shared.resolve("seed-c")));
        // the run folder holds the resolved config, checkpoints and a loadable model
        JsonNode cfg = new ObjectMapper().readTree(shared.resolve("seed-a/config.json").toFile());
        assertEquals(6, cfg.get("steps").asInt());
        assertEquals(5e-6, cfg.get("weight_decay").asDouble());
        assertTrue(Files.isDirectory(shared.resolve("seed-a/checkpoints/step-000006")));
        try (var files = Files.list(shared.resolve("seed-a/tensorboard"))) {
            assertTrue(files.anyMatch(f -> f.getFileName().toString().startsWith("events.out.tfevents.")));
        }
        try (TextToImageModel m = TextToImageModel.load(shared.resolve("seed-a/model"))) {
            assertEquals(4_030_400, m.denoiser.module().parameterCount());
        }
    }

    @Test
    void aRunKilledAndResumedMatchesAnUninterruptedOne() throws Exception {
        int steps = 24;
        ObjectNode ref = config(shared.resolve("straight"), steps).put("checkpoint_every", 6);
        train(ref);
        Path killed = shared.resolve("killed");
        ObjectNode k = config(killed, steps).put("checkpoint_every", 6);
        Path cfg = shared.resolve("killed.json");
        Files.writeString(cfg, k.toString());
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), "org.pixelpost.cli.Main", "train", "--config", cfg.toString())
            .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        Path ckpt = killed.resolve("checkpoints/step-000012");
        // wait for the checkpoint (the event); the long deadline only stops a hung run
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(30);
        while (!Files.isDirectory(ckpt) && p.isAlive() && System.nanoTime() < deadline) Thread.sleep(50);
        assertTrue(Files.isDirectory(ckpt), "the run reached its step-12 checkpoint");
        p.destroyForcibly(); // SIGKILL: no shutdown hooks, no cleanup
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertFalse(Files.exists(killed.resolve("model")), "the run was killed before it finished");
        train(k.put("resume", "latest"));
        List<JsonNode> a = metrics(shared.resolve("straight")), b = metrics(killed);
        assertEquals(steps, b.size(), "one metrics line per step, none duplicated");
        assertEquals(a, b, "the resumed run's losses equal the uninterrupted run's");
        try (var files = Files.list(killed.resolve("checkpoints"))) {
            assertEquals(List.of("step-000012", "step-000018", "step-000024"),
                files.map(f -> f.getFileName().toString()).sorted().toList(), "the last 3 checkpoints are kept, no temporary left");
        }
    }

    @Test
    void nativeMemoryStaysFlatOverAThousandSteps() throws Exception {
        Path out = shared.resolve("memory");
        ObjectNode j = config(out, 1000).put("batch_size", 1).put("log_every", 50).put("checkpoint_every", 0).put("pixel_weight", 8.0);
        Path cfg = shared.resolve("memory.json");
        Files.writeString(cfg, j.toString());
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        // a fixed, pre-touched heap, so that resident memory moves only with native allocations; and a fixed
        // malloc mmap threshold, so that freed large buffers go back to the system at once instead of staying
        // in the heap at whatever level a transient peak left it (glibc raises the threshold dynamically)
        ProcessBuilder pb = new ProcessBuilder(java, "-Xms384m", "-Xmx384m", "-XX:+AlwaysPreTouch", "-cp", System.getProperty("java.class.path"),
            "org.pixelpost.cli.Main", "train", "--config", cfg.toString()).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD);
        pb.environment().put("MALLOC_MMAP_THRESHOLD_", "131072");
        Process p = pb.start();
        // a safety net against a hung run only; the test is bounded by its step count, not by time
        if (!p.waitFor(60, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            fail("the training run hung");
        }
        assertEquals(0, p.exitValue());
        List<Double> rss = new ArrayList<>();
        for (String l : Files.readAllLines(out.resolve("metrics.jsonl"))) rss.add(new ObjectMapper().readTree(l).get("rss_mib").asDouble());
        assertEquals(20, rss.size());
        // growth = the sustained level at the end against the level after warm-up (steps 300-500), by medians so
        // that a momentary allocator peak does not count but a leak, which keeps climbing, does
        double warm = median(rss.subList(5, 10)), end = median(rss.subList(15, 20));
        assertTrue(end < warm * 1.05, "RSS after warm-up " + warm + " MiB, at the end " + end + " MiB: " + rss);
        // and nothing climbs steadily: the last quarter is flat within 1%
        assertTrue(rss.subList(15, 20).stream().mapToDouble(Double::doubleValue).max().orElseThrow() < rss.get(15) * 1.01, rss.toString());
    }
}
