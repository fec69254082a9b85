package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;

class AutoencoderTrainCommandTest {
    @Test
    void trainsAVaeThatAutoencodeMeasuresOnHeldOutImages(@TempDir Path dir) throws Exception {
        Path train = TestData.captionedFolder(dir.resolve("train"), TestData.EMOJI, TestData.CAPTIONS);
        Path val = Files.createDirectories(dir.resolve("val"));
        TestData.emojiPngs(val, TestData.EMOJI_VAL.subList(0, 4));
        Path run = dir.resolve("run");
        String[] r = AutoencodeCommandTest.run("autoencoder", "train", train.toString(), "--val-data", val.toString(), "--out", run.toString(),
            "--image-size", "32", "--block-out-channels", "8,16,16,16", "--norm-num-groups", "4", "--steps", "12", "--batch-size", "4",
            "--checkpoint-every", "6", "--json");
        assertEquals("0", r[0], r[2]);
        JsonNode j = Json.MAPPER.readTree(r[1]);
        assertEquals(48.0, j.get("compression").asDouble());
        assertEquals(12, j.get("steps").asInt());
        assertTrue(r[2].contains("autoencoder [") && r[2].contains("ETA"), "progress is shown: " + r[2]);
        Path model = Path.of(j.get("model").asText());
        JsonNode cfg = Json.MAPPER.readTree(model.resolve("config.json").toFile());
        assertEquals(j.get("scaling_factor").asDouble(), cfg.get("scaling_factor").asDouble(), 1e-12);
        // autoencode reads the folder as a VAE and reports its PSNR on the held-out images, as the trainer measured it
        String[] a = AutoencodeCommandTest.run("autoencode", "--autoencoder", model.toString(), "--size", "32", "--out", dir.resolve("recon").toString(),
            "--json", val.toString());
        assertEquals("0", a[0], a[2]);
        JsonNode aj = Json.MAPPER.readTree(a[1]);
        assertEquals(4, aj.get("images").size());
        assertEquals(j.get("val_psnr").asDouble(), aj.get("mean_psnr").asDouble(), 0.02);
        // a second run into the same folder without --resume is refused, the first run's files untouched
        String[] again = AutoencodeCommandTest.run("autoencoder", "train", train.toString(), "--out", run.toString(), "--image-size", "32",
            "--block-out-channels", "8,16,16,16", "--norm-num-groups", "4", "--steps", "12");
        assertNotEquals("0", again[0]);
        assertTrue(again[2].contains("--resume latest"), again[2]);
        assertTrue(Files.isRegularFile(model.resolve("diffusion_pytorch_model.safetensors")));
    }

    @Test
    void badOptionsAreNamed(@TempDir Path dir) throws Exception {
        Path train = TestData.captionedFolder(dir.resolve("train"), TestData.EMOJI.subList(0, 2), TestData.CAPTIONS.subList(0, 2));
        String[][] cases = {
            {"--downsampling", "6", "--downsampling"},
            {"--block-out-channels", "8,16", "--block-out-channels"},
            {"--loss", "huber", "--loss"},
            {"--image-size", "60", "--image-size"},
        };
        for (String[] c : cases) {
            Path out = dir.resolve("out-" + c[0].substring(2));
            String[] r = AutoencodeCommandTest.run("autoencoder", "train", train.toString(), "--out", out.toString(), c[0], c[1]);
            assertNotEquals("0", r[0], String.join(" ", c));
            assertTrue(r[2].contains(c[2]), String.join(" ", c) + ": " + r[2]);
            assertFalse(Files.exists(out), "nothing written for " + String.join(" ", c));
        }
    }
}
