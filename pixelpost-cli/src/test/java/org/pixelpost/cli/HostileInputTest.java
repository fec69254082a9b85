package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32;
import java.util.zip.Deflater;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;

/**
 * Bad input as a careless or hostile user gives it: each case asserts the exit code, that the
 * message names the option, key or file and the problem, and what is (not) left on disk.
 */
class HostileInputTest {
    @TempDir static Path shared;
    static Path model, data;

    @BeforeAll
    static void setUp() throws Exception {
        model = shared.resolve("model");
        String[] r = AutoencodeCommandTest.run("model", "create", "--autoencoder", TestData.taef2().toString(), "--seed", "1", "--out", model.toString());
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].contains("seed 1"), r[1]);
        data = TestData.captionedFolder(shared.resolve("data"), TestData.EMOJI.subList(0, 4), TestData.CAPTIONS.subList(0, 4));
    }

    static String[] run(String... args) {
        return AutoencodeCommandTest.run(args);
    }

    static List<String> train(Path out, String... more) {
        List<String> a = new ArrayList<>(List.of("train", "--init", model.toString(), "--data", data.toString(), "--out", out.toString(),
            "--batch-size", "2"));
        a.addAll(List.of(more));
        if (!a.contains("--log-every")) a.addAll(List.of("--log-every", "1"));
        return a;
    }

    static void assertUsage(String[] r, String... mentions) {
        assertEquals("2", r[0], "a usage error exits 2: " + r[2]);
        for (String m : mentions) assertTrue(r[2].contains(m), "message names " + m + ": " + r[2]);
        assertFalse(r[2].contains("\tat "), "no stack trace: " + r[2]);
    }

    @Test
    void modelCreateNeverDeletesAFolderItDidNotMake(@TempDir Path dir) throws Exception {
        Path runs = Files.createDirectories(dir.resolve("runs"));
        Files.writeString(runs.resolve("notes.txt"), "mine");
        String[] r = run("model", "create", "--autoencoder", TestData.taef2().toString(), "--out", runs.toString());
        assertUsage(r, "--out", runs.toString(), "already holds files", "--overwrite");
        assertEquals("mine", Files.readString(runs.resolve("notes.txt")), "nothing deleted");
        // --out that is a file, and --out under a file
        Path file = Files.writeString(dir.resolve("a-file"), "x");
        assertUsage(run("model", "create", "--out", file.toString()), "--out", "is a file");
        r = run("model", "create", "--out", file.resolve("sub").toString());
        assertEquals("1", r[0]);
        assertTrue(r[2].contains(file.resolve("sub").toString()) && r[2].contains("cannot create the folder"), r[2]);
        // asked for: replaced, and a random seed is drawn and printed
        r = run("model", "create", "--autoencoder", TestData.taef2().toString(), "--out", runs.toString(), "--overwrite");
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].matches("(?s).*\\(seed -?\\d+\\).*"), r[1]);
        assertTrue(Files.isRegularFile(runs.resolve("model_index.json")));
    }

    @Test
    void badNumbersAreRefusedByNameBeforeAnythingIsWritten(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("run");
        assertUsage(run(train(out, "--lr", "NaN").toArray(String[]::new)), "--lr", "NaN");
        assertUsage(run(train(out, "--lr", "-1e-4").toArray(String[]::new)), "--lr", "-1.0E-4", "> 0");
        assertUsage(run(train(out, "--pixel-weight", "Infinity").toArray(String[]::new)), "--pixel-weight", "Infinity");
        assertUsage(run(train(out, "--pixel-weight", "NaN").toArray(String[]::new)), "--pixel-weight", "NaN");
        assertUsage(run(train(out, "--log-every", "0").toArray(String[]::new)), "--log-every", ">= 1");
        assertUsage(run(train(out, "--caption-dropout", "1.5").toArray(String[]::new)), "--caption-dropout", "[0.0, 1.0]");
        Path cfg = dir.resolve("cfg.json");
        Files.writeString(cfg, "{\"batch_size\": 2.7}");
        assertUsage(run("train", "--config", cfg.toString(), "--init", model.toString(), "--data", data.toString(), "--out", out.toString()),
            "\"batch_size\" in " + cfg, "2.7", "an integer");
        Files.writeString(cfg, "{\"steps\": null}");
        assertUsage(run("train", "--config", cfg.toString(), "--init", model.toString(), "--data", data.toString(), "--out", out.toString()),
            "\"steps\" in " + cfg, "null");
        assertFalse(Files.exists(out), "no run folder for a refused run");
        Path samples = dir.resolve("samples");
        assertUsage(run("sample", "--model", model.toString(), "--prompt", "rocket", "--eta", "NaN", "--out", samples.toString()), "--eta", "NaN");
        assertUsage(run("sample", "--model", model.toString(), "--prompt", "rocket", "--steps", "0", "--out", samples.toString()), "--steps");
        assertFalse(Files.exists(samples));
    }

    @Test
    void sampleRefusesAFullFolderAndWarnsAboutLongPrompts(@TempDir Path dir) throws Exception {
        Path out = Files.createDirectories(dir.resolve("s"));
        Files.writeString(out.resolve("keep.png"), "x");
        assertUsage(run("sample", "--model", model.toString(), "--prompt", "rocket", "--out", out.toString()), "--out", "already holds files");
        String longPrompt = "a very long prompt " + "with many many words ".repeat(10);
        String[] r = run("sample", "--model", model.toString(), "--prompt", longPrompt, "--steps", "2", "--out", dir.resolve("t").toString());
        assertEquals("0", r[0], r[2]);
        assertTrue(r[2].contains("truncated") && r[2].contains("32 tokens"), r[2]);
        assertEquals(1, r[2].split("truncated", -1).length - 1, "said once per prompt: " + r[2]);
    }

    @Test
    void theBadImagePolicyHoldsWhenTheCacheExists(@TempDir Path dir) throws Exception {
        Path d = TestData.captionedFolder(dir.resolve("data"), TestData.EMOJI.subList(0, 3), TestData.CAPTIONS.subList(0, 3));
        Files.writeString(d.resolve("broken.png"), "not a png");
        Files.writeString(d.resolve("captions.jsonl"), Files.readString(d.resolve("captions.jsonl")) + "{\"file\": \"broken.png\", \"caption\": \"broken\"}\n");
        List<String> a = new ArrayList<>(List.of("train", "--init", model.toString(), "--data", d.toString(), "--batch-size", "2", "--steps", "1"));
        String[] r = run(concat(a, "--out", dir.resolve("skip").toString()));
        assertEquals("0", r[0], r[2]);
        assertTrue(r[2].contains("broken.png"), "skipped by name: " + r[2]);
        r = run(concat(a, "--out", dir.resolve("fail").toString(), "--on-bad-image", "fail"));
        assertEquals("1", r[0], "the cached set does not hide the bad image: " + r[2]);
        assertTrue(r[2].contains("broken.png") && r[2].contains("--on-bad-image fail"), r[2]);
        assertFalse(Files.exists(dir.resolve("fail")), "a run that failed before its first step leaves no folder it made");
    }

    @Test
    void aDecompressionBombIsRefusedFromItsHeaderAndTheNextImageStillGoes(@TempDir Path dir) throws Exception {
        Path bomb = dir.resolve("bomb.png");
        Files.write(bomb, pngHeaderOnly(42000, 42000));
        Path good = TestData.emojiPngs(Files.createDirectories(dir.resolve("in")), TestData.EMOJI.subList(0, 1)).get(0);
        String[] r = run("autoencode", "--autoencoder", TestData.taef2().toString(), "--out", dir.resolve("out").toString(), bomb.toString(), good.toString());
        assertEquals("1", r[0]);
        assertTrue(r[2].contains("bomb.png") && r[2].contains("42000x42000") && r[2].contains("over the limit"), r[2]);
        assertFalse(r[2].contains("OutOfMemoryError"), r[2]);
        assertTrue(Files.isRegularFile(dir.resolve("out").resolve(good.getFileName().toString().replace(".png", ".recon.png"))), "the good image went through");
    }

    @Test
    void degeneratePairsAreDroppedWithACountOrRefused(@TempDir Path dir) throws Exception {
        Path d = TestData.captionedFolder(dir.resolve("pairs"), TestData.EMOJI.subList(0, 4), TestData.CAPTIONS.subList(0, 4));
        List<String> files = TestData.EMOJI.subList(0, 4).stream().map(e -> e + ".png").toList();
        Files.writeString(d.resolve("pairs.jsonl"), "{\"prompt\": \"a\", \"winner\": \"" + files.get(0) + "\", \"loser\": \"" + files.get(1) + "\"}\n"
            + "{\"prompt\": \"b\", \"winner\": \"" + files.get(2) + "\", \"loser\": \"" + files.get(2) + "\"}\n"
            + "{\"prompt\": \"c\", \"winner\": \"" + files.get(3) + "\", \"loser\": \"" + files.get(1) + "\"}\n");
        List<String> a = new ArrayList<>(List.of("train", "--objective", "simpo", "--beta", "100", "--init", model.toString(), "--data",
            d.resolve("pairs.jsonl").toString(), "--batch-size", "1", "--steps", "1", "--pixel-weight", "0"));
        String[] r = run(concat(a, "--out", dir.resolve("drop").toString()));
        assertEquals("0", r[0], r[2]);
        assertTrue(r[2].contains("1 of 3 pairs") && r[2].contains("dropped"), r[2]);
        r = run(concat(a, "--out", dir.resolve("refuse").toString(), "--on-bad-pair", "fail"));
        assertEquals("1", r[0]);
        assertTrue(r[2].contains("1 of 3 pairs") && r[2].contains("pairs.jsonl"), r[2]);
    }

    @Test
    void aDamagedTrainerStateIsRefusedAndNothingIsOverwritten(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("run");
        String[] r = run(train(out, "--steps", "2", "--checkpoint-every", "1").toArray(String[]::new));
        assertEquals("0", r[0], r[2]);
        Path state = out.resolve("checkpoints/step-000002/trainer.json");
        String metrics = Files.readString(out.resolve("metrics.jsonl"));
        for (String bad : List.of("{\"step\":\"twelve\"}", "", "{\"step\": -3, \"nonfinite\": 0}")) {
            Files.writeString(state, bad);
            r = run(train(out, "--steps", "4", "--resume", "latest").toArray(String[]::new));
            assertEquals("1", r[0], bad + ": " + r[2]);
            assertTrue(r[2].contains("trainer.json"), r[2]);
            assertEquals(metrics, Files.readString(out.resolve("metrics.jsonl")), "the history is untouched");
            assertFalse(Files.exists(out.resolve("checkpoints/step-000003")));
        }
    }

    @Test
    void craftedModelConfigsGetAClearError(@TempDir Path dir) throws Exception {
        for (String edit : List.of("\"hidden_size\": -192", "no depth")) {
            Path m = dir.resolve("m" + edit.length());
            TestData.copyTree(model, m);
            Path cfg = m.resolve("denoiser/config.json");
            JsonNode j = Json.MAPPER.readTree(cfg.toFile());
            if (edit.equals("no depth")) ((com.fasterxml.jackson.databind.node.ObjectNode) j).remove("depth");
            else ((com.fasterxml.jackson.databind.node.ObjectNode) j).put("hidden_size", -192);
            Files.writeString(cfg, j.toString());
            String[] r = run("model", "info", m.toString());
            assertEquals("1", r[0], r[2]);
            assertTrue(r[2].contains(cfg.toString()) && r[2].contains(edit.equals("no depth") ? "depth: is missing" : "hidden_size: -192"), r[2]);
            assertFalse(r[2].contains("\tat ") || r[2].contains("NullPointer"), r[2]);
        }
    }

    @Test
    void sigtermCheckpointsAndASecondRunIntoTheFolderIsRefusedWhileTheFirstRuns(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("run");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
            System.getProperty("java.class.path"), "org.pixelpost.cli.Main"));
        cmd.addAll(train(out, "--steps", "5000", "--checkpoint-every", "0"));
        Path log = dir.resolve("log.txt");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try {
            // wait for the event: a few steps logged (the deadline only stops a hung run)
            long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(20);
            while (p.isAlive() && System.nanoTime() < deadline
                && (!Files.isRegularFile(out.resolve("metrics.jsonl")) || Files.readAllLines(out.resolve("metrics.jsonl")).size() < 3)) Thread.sleep(100);
            assertTrue(p.isAlive(), Files.readString(log));
            // a second run into the same folder, and a resume of it, while the first holds it
            String[] r = run(train(out, "--steps", "5000").toArray(String[]::new));
            assertEquals("1", r[0]);
            assertTrue(r[2].contains("in use by another run") && r[2].contains("process " + p.pid()), r[2]);
            assertEquals("1", run(train(out, "--steps", "5000", "--resume", "latest").toArray(String[]::new))[0]);
            p.destroy(); // SIGTERM
            assertTrue(p.waitFor(10, TimeUnit.MINUTES), "the run stopped");
        } finally {
            p.destroyForcibly();
        }
        String said = Files.readString(log);
        assertEquals(143, p.exitValue(), said);
        assertTrue(said.contains("stopped by SIGTERM") && said.contains("--resume latest"), said);
        List<Path> ckpts;
        try (var s = Files.list(out.resolve("checkpoints"))) {
            ckpts = s.toList();
        }
        assertEquals(1, ckpts.size(), "one checkpoint, no temporary: " + ckpts);
        assertTrue(Files.isRegularFile(ckpts.get(0).resolve("trainer.json")));
        try (var s = Files.walk(out)) {
            assertTrue(s.noneMatch(f -> f.getFileName().toString().contains(".tmp")), "no temporary files left");
        }
        long at = Json.MAPPER.readTree(ckpts.get(0).resolve("trainer.json").toFile()).get("step").asLong();
        // resumed to a nearby end: the history continues without gaps or repeats
        String[] r = run(train(out, "--steps", Long.toString(at + 2), "--resume", "latest").toArray(String[]::new));
        assertEquals("0", r[0], r[2]);
        List<String> lines = Files.readAllLines(out.resolve("metrics.jsonl"));
        for (int i = 0; i < lines.size(); i++) assertEquals(i + 1, Json.MAPPER.readTree(lines.get(i)).get("step").asLong());
        assertEquals(at + 2, lines.size());
    }

    static String[] concat(List<String> a, String... more) {
        List<String> all = new ArrayList<>(a);
        all.addAll(List.of(more));
        return all.toArray(String[]::new);
    }


    /** A valid PNG signature and IHDR claiming {@code w x h} RGB pixels, a one-row IDAT and IEND. */
    static byte[] pngHeaderOnly(int w, int h) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        o.writeBytes(new byte[] {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'});
        chunk(o, "IHDR", ByteBuffer.allocate(13).putInt(w).putInt(h).put((byte) 8).put((byte) 2).put((byte) 0).put((byte) 0).put((byte) 0).array());
        Deflater d = new Deflater();
        d.setInput(new byte[16]);
        d.finish();
        byte[] z = new byte[64];
        int n = d.deflate(z);
        chunk(o, "IDAT", java.util.Arrays.copyOf(z, n));
        chunk(o, "IEND", new byte[0]);
        return o.toByteArray();
    }

    static void chunk(ByteArrayOutputStream o, String type, byte[] data) {
        o.writeBytes(ByteBuffer.allocate(4).putInt(data.length).array());
        byte[] t = type.getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        o.writeBytes(t);
        o.writeBytes(data);
        CRC32 c = new CRC32();
        c.update(t);
        c.update(data);
        o.writeBytes(ByteBuffer.allocate(4).putInt((int) c.getValue()).array());
    }
}
