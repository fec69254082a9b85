package org.pixelpost.cli;

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
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * {@code pixelpost train --nproc-per-node 2}: real worker processes on loopback (Gloo), against one
 * process doing the same work; a worker killed mid-run; the run resumed with one process.
 * Every process runs libtorch on one thread, so that summation order is the same everywhere.
 */
@org.junit.jupiter.api.Tag("slow") // end to end: left out of the fast lane (mvn -Pfast test)
class DistributedTrainTest {
    @TempDir static Path shared;
    static Path model, train, pairs;

    @BeforeAll
    static void setUp() throws Exception {
        model = org.pixelpost.train.TrainerTest.tinyBase(shared.resolve("base"));
        train = TestData.captionedFolder(shared.resolve("train"), TestData.EMOJI, TestData.CAPTIONS);
        // eight preference pairs: a training emoji preferred over a held-out one, under the first's caption
        Path val = TestData.captionedFolder(shared.resolve("val"), TestData.EMOJI_VAL, TestData.CAPTIONS_VAL);
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < TestData.EMOJI.size(); i++)
            b.append(String.format("{\"prompt\": \"%s\", \"winner\": \"%s\", \"loser\": \"%s\"}%n", TestData.CAPTIONS.get(i),
                train.resolve(TestData.EMOJI.get(i) + ".png"), val.resolve(TestData.EMOJI_VAL.get(i) + ".png")));
        pairs = shared.resolve("pairs.jsonl");
        Files.writeString(pairs, b.toString());
    }

    static ObjectNode config(Path out, int steps, int batch, int accum, double pixel) {
        ObjectNode j = new ObjectMapper().createObjectNode();
        j.put("init", model.toString()).put("data", train.toString()).put("out", out.toString()).put("steps", steps)
            .put("batch_size", batch).put("grad_accum", accum).put("lr", 1e-3).put("log_every", 1).put("seed", 5)
            .put("pixel_weight", pixel).put("ema_decay", 0.9).put("max_grad_norm", 0.5);
        return j;
    }

    /** Starts {@code pixelpost train --config FILE [extra]} in a JVM of its own, libtorch on one thread; output to {@code log}. */
    static Process start(ObjectNode config, Path log, String... extra) throws Exception {
        Path cfg = Files.createTempFile(shared, "config", ".json");
        Files.writeString(cfg, config.toString());
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Dpixelpost.threads=1",
            "-cp", System.getProperty("java.class.path"), "org.pixelpost.cli.Main", "train", "--config", cfg.toString(), "--dist-timeout", "120"));
        cmd.addAll(List.of(extra));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    static int finish(Process p, Path log) throws Exception {
        // the long deadline only stops a hung run
        assertTrue(p.waitFor(20, TimeUnit.MINUTES), "the run ended; output:\n" + Files.readString(log));
        return p.exitValue();
    }

    static void run(ObjectNode config, String... extra) throws Exception {
        Path log = Files.createTempFile(shared, "log", ".txt");
        int code = finish(start(config, log, extra), log);
        assertEquals(0, code, "exit status; output:\n" + Files.readString(log));
    }

    static List<JsonNode> metrics(Path run) throws Exception {
        return org.pixelpost.train.TrainerTest.metrics(run);
    }

    static float[] weights(Path run) throws Exception {
        try (Scope s = Scope.open()) {
            Path dir = run.resolve("model/denoiser");
            Path file;
            try (var files = Files.list(dir)) {
                file = files.filter(f -> f.toString().endsWith(".safetensors")).findFirst().orElseThrow();
            }
            List<Float> all = new ArrayList<>();
            for (Map.Entry<String, Tensor> e : new java.util.TreeMap<>(SafeTensors.read(file)).entrySet())
                for (float f : Tensors.toFloats(e.getValue())) all.add(f);
            float[] out = new float[all.size()];
            for (int i = 0; i < out.length; i++) out[i] = all.get(i);
            return out;
        }
    }

    /** Runs one process x 8, two processes x 4 and one process x 4 with accumulation 2 of {@code config}; compares their weights and losses. */
    static void assertTwoProcessesTrainAsOne(String what, java.util.function.BiFunction<Path, int[], ObjectNode> config) throws Exception {
        Path one = shared.resolve(what + "-one-x8"), two = shared.resolve(what + "-two-x4"), accum = shared.resolve(what + "-one-x4-accum2");
        run(config.apply(one, new int[] {8, 1}));
        run(config.apply(two, new int[] {4, 1}), "--nproc-per-node", "2");
        run(config.apply(accum, new int[] {4, 2}));
        float[] a = weights(one), b = weights(two);
        // two processes compute exactly what one process computes over the same two halves of each step's batch
        assertArrayEquals(weights(accum), b, what + ": 2 processes x 4 and 1 process x 4 with accumulation 2 end with the same weights");
        // batch 8 in one piece differs from two halves in float32 summation order only
        double d = 0, m = 0, d2 = 0, m2 = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
            m = Math.max(m, Math.abs(a[i]));
            d2 += (double) (a[i] - b[i]) * (a[i] - b[i]);
            m2 += (double) a[i] * a[i];
        }
        System.out.printf("%s, 20 steps, processes: 2 x batch 4 against 1 x batch 8: max |diff| / max |w| = %.2e, ||diff|| / ||w|| = %.2e%n",
            what, d / m, Math.sqrt(d2 / m2));
        // Adam steps by about lr whatever a gradient's size, so rounding-level differences of near-zero gradients move weights by up to lr
        assertTrue(Math.sqrt(d2 / m2) < 1e-3, what + ": 2 processes x 4 against 1 x 8: relative difference " + Math.sqrt(d2 / m2));
        List<JsonNode> la = metrics(one), lb = metrics(two);
        assertEquals(20, lb.size(), "rank 0 alone logs, one line per step");
        for (int i = 0; i < 20; i++)
            assertEquals(la.get(i).get("loss").asDouble(), lb.get(i).get("loss").asDouble(), 1e-3 * Math.abs(la.get(i).get("loss").asDouble()),
                what + ": the loss of step " + (i + 1) + ", averaged over the processes");
        try (var files = Files.list(two)) {
            assertFalse(files.anyMatch(f -> f.getFileName().toString().startsWith(".") && !f.getFileName().toString().equals(".lock")),
                "no temporary files left");
        }
    }

    @Test
    void twoWorkerProcessesOfBatchFourTrainAsOneProcessOfBatchEightWithThePixelTerm() throws Exception {
        assertTwoProcessesTrainAsOne("sft-pixel", (out, ba) -> config(out, 20, ba[0], ba[1], 1.0));
    }

    @Test
    void twoWorkerProcessesOfBatchFourTrainAsOneProcessOfBatchEightWithDpo() throws Exception {
        assertTwoProcessesTrainAsOne("dpo", (out, ba) -> config(out, 20, ba[0], ba[1], 0.0).put("objective", "dpo").put("data", pairs.toString())
            .put("beta", 500).put("caption_dropout", 0.0));
    }

    @Test
    void aKilledWorkerEndsTheRunAndOneProcessResumesItExactly() throws Exception {
        int steps = 16;
        Path killed = shared.resolve("killed");
        Path log = shared.resolve("killed.log");
        Process launcher = start(config(killed, steps, 4, 1, 0.0).put("checkpoint_every", 4), log, "--nproc-per-node", "2");
        // wait for the launch line and the first checkpoint (events); the long deadline only stops a hung run
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(20);
        Pattern pids = Pattern.compile("pids \\[(\\d+), (\\d+)]");
        Matcher found = null;
        while (System.nanoTime() < deadline && launcher.isAlive()) {
            Matcher mm = pids.matcher(Files.readString(log));
            if (mm.find()) found = mm;
            if (found != null && Files.isDirectory(killed.resolve("checkpoints/step-000004"))) break;
            Thread.sleep(50);
        }
        assertNotNull(found, "the launcher names its workers' pids; output:\n" + Files.readString(log));
        assertTrue(Files.isDirectory(killed.resolve("checkpoints/step-000004")), "the run checkpointed; output:\n" + Files.readString(log));
        long rank1 = Long.parseLong(found.group(2));
        ProcessHandle.of(rank1).orElseThrow().destroyForcibly(); // SIGKILL
        int code = finish(launcher, log);
        String out = Files.readString(log);
        System.out.println("the killed run's output:\n" + out);
        assertNotEquals(0, code, "the launcher fails when a worker is killed; output:\n" + out);
        assertTrue(out.contains("rank 1 (pid " + rank1 + ") was killed by SIGKILL"), "the launcher names the killed rank:\n" + out);
        assertTrue(out.contains("rank 0:") && out.contains("rank 1"), "rank 0 stops with a message naming rank 1:\n" + out);
        assertFalse(Files.exists(killed.resolve("model")), "the run did not finish");
        try (var files = Files.list(killed.resolve("checkpoints"))) {
            assertTrue(files.allMatch(f -> f.getFileName().toString().matches("step-\\d{6}|\\..*")), "only whole checkpoints are listed");
        }
        // one process, the same global batch (4 x 2 accumulation), from the last checkpoint
        run(config(killed, steps, 4, 2, 0.0).put("checkpoint_every", 4).put("resume", "latest"));
        // an uninterrupted one-process run of the same global batch, for reference
        Path straight = shared.resolve("straight");
        run(config(straight, steps, 4, 2, 0.0).put("checkpoint_every", 4));
        assertEquals(metrics(straight), metrics(killed), "two processes then one give exactly the losses of one process throughout");
        assertArrayEquals(weights(straight), weights(killed), "and exactly its weights");
    }
}
