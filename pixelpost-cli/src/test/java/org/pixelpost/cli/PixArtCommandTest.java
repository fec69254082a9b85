package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.pipeline.TextToImageModel;

/**
 * A tiny PixArt-alpha pipeline assembled from the parity models (transformer layout, T5, VAE,
 * tokenizer) through the commands: the three published counts, each component's count, convert to
 * the original file and back, sample square and not, train with the pixel term (T5 unloaded), and
 * a LoRA in diffusers' PixArt names exported and read back.
 */
class PixArtCommandTest {
    static String[] run(String... args) {
        return AutoencodeCommandTest.run(args);
    }

    @Test
    void infoConvertSampleTrainAndLora(@TempDir Path dir) throws Exception {
        Path pix = dir.resolve("pixart");
        long transformerCount;
        try (TextToImageModel m = InMemory.tinyPixArt()) {
            transformerCount = m.denoiser.module().parameterCount();
            m.save(pix);
        }
        String[] r = run("model", "info", "pixart-512");
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].contains("pixart-512: 610,856,096 denoiser parameters") && r[1].contains("(match)"), r[1]);
        r = run("model", "info", "pixart-1024");
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].contains("pixart-1024: 611,349,152 denoiser parameters") && r[1].contains("PixArt-XL-2-1024-MS"), r[1]);
        r = run("model", "info", "t5-xxl");
        assertTrue(r[1].contains("4,762,310,656"), r[1]);

        r = run("model", "info", pix.toString(), "--json");
        assertEquals("0", r[0], r[2]);
        JsonNode info = Json.MAPPER.readTree(r[1]);
        assertEquals("PixArtTransformer2DModel", info.get("components").get("denoiser").get("class").asText());
        assertEquals(transformerCount, info.get("components").get("denoiser").get("parameters").asLong());
        assertEquals(53_024, info.get("components").get("text_encoder").get("parameters").asLong(), "the tiny T5's count, from its headers");
        r = run("model", "info", pix.resolve("text_encoder").toString(), "--json");
        assertEquals(53_024, Json.MAPPER.readTree(r[1]).get("parameters").asLong(), r[2]);

        // the original layout and back: the transformer's file comes back byte for byte
        Path orig = dir.resolve("PixArt-tiny.safetensors"), back = dir.resolve("back");
        r = run("model", "convert", "--model", pix.toString(), "--out", orig.toString());
        assertEquals("0", r[0], r[2]);
        r = run("model", "info", orig.toString(), "--json");
        assertEquals("0", r[0], r[2]);
        assertEquals(transformerCount, Json.MAPPER.readTree(r[1]).get("parameters").asLong(), "the original file's own count");
        r = run("model", "convert", "--model", orig.toString(), "--out", back.toString());
        assertEquals("1", r[0], "the transformer alone needs its other components");
        assertTrue(r[2].contains("--configs"), r[2]);
        assertFalse(Files.exists(back), "nothing written");
        r = run("model", "convert", "--model", orig.toString(), "--configs", pix.toString(), "--out", back.toString());
        assertEquals("0", r[0], r[2]);
        assertEquals(-1, Files.mismatch(pix.resolve("transformer/diffusion_pytorch_model.safetensors"), back.resolve("transformer/diffusion_pytorch_model.safetensors")));

        // sampling: PixArt's guidance, square and not; fp16 T5 refused
        Path out = dir.resolve("samples");
        r = run("sample", "--model", back.toString(), "--prompt", "a red circle", "--steps", "3", "--size", "16", "--width", "32", "--out", out.toString(), "--json");
        assertEquals("0", r[0], r[2]);
        assertEquals(4.5, Json.MAPPER.readTree(r[1]).get("guidance").asDouble(), "PixArt's default guidance");
        BufferedImage img = ImageIO.read(out.resolve("000-0.png").toFile());
        assertEquals(32, img.getWidth());
        assertEquals(16, img.getHeight());
        r = run("sample", "--model", back.toString(), "--prompt", "x", "--text-encoder-dtype", "fp16", "--out", dir.resolve("s2").toString());
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("overflow"), r[2]);
        assertFalse(Files.exists(dir.resolve("s2")));
        r = run("sample", "--model", back.toString(), "--prompt", "a red circle", "--steps", "2", "--text-encoder-dtype", "bf16", "--out", dir.resolve("s3").toString());
        assertEquals("0", r[0], r[2]);

        // SFT with the pixel term through the model's VAE: the validation loss (fixed draws) falls; T5 leaves before training
        Path data = TestData.captionedFolder(dir.resolve("data"), TestData.EMOJI.subList(0, 2), TestData.CAPTIONS.subList(0, 2));
        r = run("train", "--init", back.toString(), "--data", data.toString(), "--val-data", data.toString(), "--out", dir.resolve("run").toString(),
            "--steps", "20", "--batch-size", "2", "--pixel-weight", "1", "--lr", "1e-3", "--log-every", "1", "--val-every", "1",
            "--sample-every", "20", "--sample-prompts", "a red circle", "--sample-steps", "2");
        assertEquals("0", r[0], r[2]);
        assertTrue((r[1] + r[2]).contains("text encoder unloaded for training (53,024 parameters"), r[1] + r[2]);
        List<Double> val = new ArrayList<>();
        for (String line : Files.readAllLines(dir.resolve("run/metrics.jsonl"))) val.add(Json.MAPPER.readTree(line).get("val_loss").asDouble());
        assertEquals(20, val.size());
        assertTrue(val.get(19) < val.get(0), "the loss falls: " + val);
        assertTrue(Files.isRegularFile(dir.resolve("run/model/transformer/diffusion_pytorch_model.safetensors")), "the trained model is a PixArt folder again");
        assertEquals(-1, Files.mismatch(pix.resolve("text_encoder/model.safetensors"), dir.resolve("run/model/text_encoder/model.safetensors")),
            "the unloaded T5 is written as it was read");
        try (TextToImageModel trained = TextToImageModel.load(dir.resolve("run/model"))) {
            assertEquals("PixArt-alpha", trained.family().displayName());
        }

        // LoRA on the attention and feed-forward: the file holds diffusers' PixArt names, as diffusers and ComfyUI load them
        Path lrun = dir.resolve("lora-run");
        r = run("train", "--init", back.toString(), "--data", data.toString(), "--out", lrun.toString(), "--steps", "3", "--batch-size", "2",
            "--lora-rank", "4", "--lora-targets", "attention,ff", "--lr", "1e-2", "--pixel-weight", "1");
        assertEquals("0", r[0], r[2]);
        try (SafeTensors st = SafeTensors.open(lrun.resolve("lora.safetensors"))) {
            for (String k : List.of("transformer.transformer_blocks.0.attn1.to_q.lora_A.weight", "transformer.transformer_blocks.0.attn1.to_v.lora_B.weight",
                "transformer.transformer_blocks.1.attn2.to_k.lora_A.weight", "transformer.transformer_blocks.0.ff.net.0.proj.lora_B.weight",
                "transformer.transformer_blocks.1.attn2.to_out.0.lora_A.weight"))
                assertTrue(st.entries().containsKey(k), k + " in " + st.entries().keySet());
            assertTrue(st.entries().keySet().stream().noneMatch(k -> k.contains("qkv") || k.contains("kv_linear")), "no fused names");
        }
        Path kohya = dir.resolve("kohya.safetensors");
        r = run("lora", "export", "--lora", lrun.toString(), "--model", back.toString(), "--format", "kohya", "--out", kohya.toString());
        assertEquals("0", r[0], r[2]);
        r = run("lora", "info", "--lora", kohya.toString(), "--model", back.toString(), "--json");
        assertEquals("0", r[0], r[2]);
        Path s1 = dir.resolve("with-peft"), s2 = dir.resolve("with-kohya");
        assertEquals("0", run("sample", "--model", back.toString(), "--prompt", "a red circle", "--steps", "2", "--lora", lrun.resolve("lora.safetensors").toString(),
            "--out", s1.toString())[0]);
        assertEquals("0", run("sample", "--model", back.toString(), "--prompt", "a red circle", "--steps", "2", "--lora", kohya.toString(), "--out", s2.toString())[0]);
        assertEquals(-1, Files.mismatch(s1.resolve("000-0.png"), s2.resolve("000-0.png")), "both layouts read back to the same adapters");

        // preference tuning: DPO against the model with its adapters off, and SimPO, both with the pixel term
        List<Path> files = TestData.emojiPngs(Files.createDirectories(dir.resolve("pairs")), TestData.EMOJI.subList(0, 4));
        StringBuilder jsonl = new StringBuilder();
        for (int i = 0; i < 4; i += 2)
            jsonl.append("{\"prompt\": \"").append(TestData.CAPTIONS.get(i)).append("\", \"winner\": \"").append(files.get(i).getFileName())
                .append("\", \"loser\": \"").append(files.get(i + 1).getFileName()).append("\"}\n");
        Files.writeString(dir.resolve("pairs/pairs.jsonl"), jsonl);
        for (String objective : List.of("dpo", "simpo")) {
            Path prun = dir.resolve(objective);
            r = run("train", "--objective", objective, "--init", back.toString(), "--data", dir.resolve("pairs").toString(), "--out", prun.toString(),
                "--steps", "2", "--batch-size", "2", "--lora-rank", "2", "--pixel-weight", "1", "--lr", "1e-3", "--log-every", "1");
            assertEquals("0", r[0], r[2]);
            double first = Json.MAPPER.readTree(Files.readAllLines(prun.resolve("metrics.jsonl")).get(0)).get("loss").asDouble();
            if (objective.equals("dpo"))
                assertEquals(2 * Math.log(2), first, 1e-5, "at the first step the adapters are zero: the model is its reference, (1 + mu) ln 2");
            else assertTrue(Double.isFinite(first) && first > 0, "SimPO: " + first);
            assertTrue(Files.isRegularFile(prun.resolve("lora.safetensors")));
        }
    }
}
