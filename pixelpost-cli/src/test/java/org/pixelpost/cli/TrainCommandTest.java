package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;

class TrainCommandTest {
    @Test
    void flagsOverrideTheConfigFileAndTheRunKeepsTheResolvedConfig(@TempDir Path dir) throws Exception {
        String[] made = AutoencodeCommandTest.run("model", "create", "--autoencoder", TestData.taef2().toString(), "--out", dir.resolve("m").toString());
        assertEquals("0", made[0], made[2]);
        Path data = TestData.captionedFolder(dir.resolve("data"), TestData.EMOJI.subList(0, 4), TestData.CAPTIONS.subList(0, 4));
        Path cfg = dir.resolve("run.json");
        Files.writeString(cfg, "{\"objective\": \"sft\", \"steps\": 50, \"batch_size\": 2, \"pixel_weight\": 2, \"lr\": 1e-4,"
            + " \"init\": \"" + dir.resolve("m") + "\", \"data\": \"" + data + "\", \"out\": \"" + dir.resolve("run") + "\"}");
        String[] r = AutoencodeCommandTest.run("train", "--config", cfg.toString(), "--steps", "2", "--pixel-decode", "x0", "--flip", "false",
            "--sample-prompts", "red heart", "--sample-prompts", "rocket", "--sample-every", "2", "--sample-steps", "3", "--bf16");
        assertEquals("0", r[0], r[2]);
        JsonNode c = Json.MAPPER.readTree(dir.resolve("run/config.json").toFile());
        assertEquals(2, c.get("steps").asInt(), "the flag wins over the file");
        assertEquals(2.0, c.get("pixel_weight").asDouble(), "the file wins over the default");
        assertEquals("x0", c.get("pixel_decode").asText());
        assertFalse(c.get("flip").asBoolean());
        assertEquals(2, c.get("sample_prompts").size());
        assertEquals(0.9, c.get("adam_beta1").asDouble(), "defaults fill the rest");
        assertTrue(c.get("bf16").asBoolean(), "a bare boolean flag means true");
        JsonNode last = Json.MAPPER.readTree(Files.readAllLines(dir.resolve("run/metrics.jsonl")).get(0));
        assertTrue(Double.isFinite(last.get("loss").asDouble()) && last.get("loss").asDouble() > 0, "bf16 autocast trains: " + last);
        assertTrue(Files.isRegularFile(dir.resolve("run/samples/step-000002.png")));
        assertEquals(1, Files.readAllLines(dir.resolve("run/metrics.jsonl")).size(), "log_every 10 over 2 steps: the final step only");
    }

    @Test
    void microBatchesAtOnceLogTheLossesOfMicroBatchesInTurn(@TempDir Path dir) throws Exception {
        String[] made = AutoencodeCommandTest.run("model", "create", "--autoencoder", TestData.taef2().toString(), "--out", dir.resolve("m").toString());
        assertEquals("0", made[0], made[2]);
        Path data = TestData.captionedFolder(dir.resolve("data"), TestData.EMOJI.subList(0, 4), TestData.CAPTIONS.subList(0, 4));
        java.util.List<java.util.List<Double>> runs = new java.util.ArrayList<>();
        for (String lanes : new String[] {"1", "2"}) {
            Path out = dir.resolve("run-" + lanes);
            String[] r = AutoencodeCommandTest.run("train", "--init", dir.resolve("m").toString(), "--data", data.toString(), "--out", out.toString(),
                "--steps", "3", "--batch-size", "2", "--grad-accum", "2", "--concurrent-micro-batches", lanes, "--pixel-weight", "2", "--log-every", "1");
            assertEquals("0", r[0], r[2]);
            assertEquals(Integer.parseInt(lanes), Json.MAPPER.readTree(out.resolve("config.json").toFile()).get("concurrent_micro_batches").asInt());
            java.util.List<Double> losses = new java.util.ArrayList<>();
            for (String line : Files.readAllLines(out.resolve("metrics.jsonl"))) losses.add(Json.MAPPER.readTree(line).get("loss").asDouble());
            runs.add(losses);
        }
        assertEquals(3, runs.get(0).size());
        // to float precision, as documented: kernels on one thread round differently from two (and two
        // runs of the same command already differ by ~5e-8 from step 2 on this model)
        for (int i = 0; i < 3; i++)
            assertEquals(runs.get(0).get(i), runs.get(1).get(i), 1e-6 * runs.get(0).get(i), "two micro-batches at once log the losses of the two in turn, step " + (i + 1));
    }

    @Test
    void badConfigsAreRefusedByName(@TempDir Path dir) throws Exception {
        Path cfg = dir.resolve("bad.json");
        Files.writeString(cfg, "{\"pixel_wieght\": 8, \"init\": \"x\", \"data\": \"y\", \"out\": \"z\"}");
        String[] r = AutoencodeCommandTest.run("train", "--config", cfg.toString());
        assertEquals("2", r[0], "a usage error");
        assertTrue(r[2].contains("pixel_wieght"), r[2]);
        r = AutoencodeCommandTest.run("train", "--init", "x", "--data", "y", "--out", dir.resolve("o").toString(), "--objective", "ppo");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("ppo"), r[2]);
        r = AutoencodeCommandTest.run("train", "--init", dir.resolve("none").toString(), "--data", "y", "--out", dir.resolve("o").toString(), "--steps", "x");
        assertNotEquals("0", r[0]);
        assertTrue(r[2].contains("--steps") && r[2].contains("not an integer"), r[2]);
        r = AutoencodeCommandTest.run("train", "--init", dir.resolve("none").toString(), "--data", "y", "--out", dir.resolve("o").toString());
        assertEquals("1", r[0]);
        assertTrue(r[2].contains("not a model folder"), r[2]);
        r = AutoencodeCommandTest.run("train", "--init", "x", "--data", "y", "--out", dir.resolve("o").toString(), "--device", "gpu");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("--device") && r[2].contains("'gpu' is not a device"), r[2]);
        if (!org.bytedeco.pytorch.global.torch.cuda_is_available()) {
            // refused before any model is loaded or folder made
            r = AutoencodeCommandTest.run("train", "--init", dir.resolve("none").toString(), "--data", "y", "--out", dir.resolve("o").toString(), "--device", "cuda");
            assertEquals("2", r[0]);
            assertTrue(r[2].contains("--device: cuda: CUDA is not available") && r[2].contains("-Pgpu"), r[2]);
            assertFalse(Files.exists(dir.resolve("o")), "nothing written");
        }
        r = AutoencodeCommandTest.run("train", "--init", "x", "--data", "y", "--out", dir.resolve("o").toString(), "--concurrent-micro-batches", "2");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("--concurrent-micro-batches") && r[2].contains("does not divide grad_accum 1"), r[2]);
        r = AutoencodeCommandTest.run("train", "--init", "x", "--data", "y", "--out", dir.resolve("o").toString(), "--nproc-per-node", "0");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("--nproc-per-node"), r[2]);
    }
}
